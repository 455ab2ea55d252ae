//! The work queue under pressure: a full queue answers 503 with Retry-After, waiting predicts of
//! one model share a forward pass, fits of one project run one after the other, and a predict
//! sees a whole model, old or new.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bpgg_serve::client::Client;
use serde_json::json;

use crate::util::*;

/// Occupies the engine's only worker until the returned sender is used (or dropped).
fn block_the_worker(
    state: &bpgg_serve::state::AppState,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let state = Arc::clone(state);
    let permit = state.admission.admit(&state.metrics).unwrap();
    let (release, released) = mpsc::channel::<()>();
    let (started, running) = mpsc::channel::<()>();
    let blocker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(state.engine.run(permit, move || {
            started.send(()).unwrap();
            let _ = released.recv();
        }))
        .unwrap();
    });
    running
        .recv_timeout(Duration::from_secs(60))
        .expect("the worker takes the blocking job");
    (release, blocker)
}

/// Polls `ok` every 10 ms for up to a minute.
fn wait_for(what: &str, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let t = TestServer::start_with(|c| c.queue_depth = 1);
    let data = Data::make(&t.dir.path().join("synth"));
    let mut c = t.client();
    let project = project_with_supports(&mut c, &data);
    fit(&mut c, &project, json!({}));
    let state = t.server.state();
    let held = state.admission.admit(&state.metrics).unwrap();
    let path = format!("/v1/projects/{project}/predict");
    let query = std::fs::read(&data.queries[0]).unwrap();
    let busy = expect(503, c.send("POST", &path, &query));
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert!(busy.json().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("--queue"));
    expect(
        503,
        c.send(
            "POST",
            &format!("/v1/projects/{project}/images?role=normal"),
            &query,
        ),
    );
    // Reads need no queue slot.
    expect(200, c.get(&format!("/v1/projects/{project}")));
    drop(held);
    expect(200, c.send("POST", &path, &query));
    let metrics = expect(200, c.get("/metrics")).text();
    assert!(metrics.contains("bpgg_work_rejected_total 2"), "{metrics}");
}

#[test]
fn waiting_predicts_of_one_model_share_a_forward_pass() {
    let t = TestServer::start();
    let data = Data::make(&t.dir.path().join("synth"));
    let mut c = t.client();
    let project = project_with_supports(&mut c, &data);
    fit(&mut c, &project, json!({}));
    let path = format!("/v1/projects/{project}/predict");
    let queries: Vec<Vec<u8>> = data
        .queries
        .iter()
        .map(|q| std::fs::read(q).unwrap())
        .collect();
    // One at a time first: each is its own forward pass.
    let alone: Vec<f64> = queries
        .iter()
        .map(|q| {
            expect(200, c.send("POST", &path, q)).json().unwrap()["image_score"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let state = Arc::clone(t.server.state());
    let (release, blocker) = block_the_worker(&state);
    let addr = t.server.addr();
    let senders: Vec<_> = queries
        .iter()
        .cloned()
        .map(|q| {
            let path = path.clone();
            std::thread::spawn(move || Client::new(addr).send("POST", &path, &q).unwrap())
        })
        .collect();
    wait_for("the predicts to queue up", || {
        state.engine.queued() == queries.len()
    });
    release.send(()).unwrap();
    blocker.join().unwrap();
    let together: Vec<f64> = senders
        .into_iter()
        .map(|s| {
            let r = s.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            r.json().unwrap()["image_score"].as_f64().unwrap()
        })
        .collect();
    for (a, b) in alone.iter().zip(&together) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "alone {a}, batched {b}"
        );
    }
    let metrics = expect(200, c.get("/metrics")).text();
    let n = queries.len();
    assert!(
        metrics.contains(&format!("bpgg_predictions_total {}", 2 * n)),
        "{metrics}"
    );
    // n forward passes alone, one for the n that waited together.
    assert!(
        metrics.contains(&format!("bpgg_predict_batches_total {}", n + 1)),
        "{metrics}"
    );
}

#[test]
fn fits_of_one_project_are_serialised_and_predicts_see_whole_models() {
    let t = TestServer::start_with(|c| c.workers = 2);
    let data = Data::make(&t.dir.path().join("synth"));
    let mut c = t.client();
    let project = project_with_supports(&mut c, &data);
    let first = fit(&mut c, &project, json!({"scoring": "bpgg"}));
    let addr = t.server.addr();
    let path = format!("/v1/projects/{project}/predict");
    let query = std::fs::read(&data.queries[2]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let predictor = {
        let (stop, path, query) = (Arc::clone(&stop), path.clone(), query.clone());
        std::thread::spawn(move || {
            let mut c = Client::new(addr);
            let mut seen: Vec<(String, f64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) || seen.len() < 3 {
                let r = c.send("POST", &path, &query).unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                let p = r.json().unwrap();
                seen.push((
                    p["model_sha256"].as_str().unwrap().to_string(),
                    p["image_score"].as_f64().unwrap(),
                ));
            }
            seen
        })
    };
    let fitters: Vec<_> = [json!({"scoring": "knn"}), json!({"scoring": "hybrid"})]
        .into_iter()
        .map(|options| {
            let project = project.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let summary = fit(&mut Client::new(addr), &project, options);
                (start.elapsed(), summary)
            })
        })
        .collect();
    let fits: Vec<(Duration, serde_json::Value)> =
        fitters.into_iter().map(|f| f.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let seen = predictor.join().unwrap();

    // Serialised: the fit that answered last waited for the other one's whole run.
    let ms = |s: &serde_json::Value| s["ms"].as_u64().unwrap();
    let last = fits.iter().max_by_key(|(latency, _)| *latency).unwrap();
    let total_ms = ms(&fits[0].1) + ms(&fits[1].1);
    assert!(
        last.0.as_millis() as u64 >= total_ms,
        "the later fit took {:?}, less than both fits' work ({total_ms} ms): they overlapped",
        last.0
    );
    // The project's model is the last fit's.
    let info = expect(200, c.get(&format!("/v1/projects/{project}/model/info")))
        .json()
        .unwrap();
    assert_eq!(info["model_sha256"], last.1["model_sha256"]);
    // Every predict named one of the three models, and each model always gave the same score.
    let known: Vec<&str> = [&first, &fits[0].1, &fits[1].1]
        .iter()
        .map(|s| s["model_sha256"].as_str().unwrap())
        .collect();
    let mut score_of: HashMap<&str, f64> = HashMap::new();
    for (sha, score) in &seen {
        assert!(known.contains(&sha.as_str()), "unknown model {sha}");
        let first_score = *score_of.entry(sha).or_insert(*score);
        assert_eq!(first_score, *score, "model {sha} gave two scores");
    }
}

#[test]
fn a_request_past_the_timeout_is_answered_503_and_its_work_still_finishes() {
    let t = TestServer::start_with(|c| c.request_timeout = Duration::from_secs(1));
    let data = Data::make(&t.dir.path().join("synth"));
    let mut c = t.client();
    let project = project_with_supports(&mut c, &data);
    fit(&mut c, &project, json!({}));
    let state = Arc::clone(t.server.state());
    let (release, blocker) = block_the_worker(&state);
    let query = std::fs::read(&data.queries[0]).unwrap();
    let path = format!("/v1/projects/{project}/predict");
    let start = Instant::now();
    let late = expect(503, c.send("POST", &path, &query));
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(late.json().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("--request-timeout"));
    // The abandoned predict keeps its queue slot until the worker has done it.
    assert_eq!(state.admission.admitted(), 2);
    release.send(()).unwrap();
    blocker.join().unwrap();
    wait_for("the abandoned work to finish", || {
        state.admission.admitted() == 0
    });
    expect(200, c.send("POST", &path, &query));
}
