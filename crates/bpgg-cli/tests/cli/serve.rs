//! `bpgg serve` as a process: start-up, refusal of an open address without a token, the
//! downloaded model in `bpgg predict`, kill -9 after acknowledged writes, SIGTERM with requests
//! in flight, and `bpgg bench serve`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bpgg::data::{write_synthetic_dataset, SynthConfig};
use bpgg_serve::client::{Client, Response};
use serde_json::{json, Value};

use crate::util::{bpgg, s, stderr, stdout};

/// A `bpgg serve` process on a free loopback port.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Served {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bpgg"))
            .args(["serve", "--data-dir", s(data_dir), "--bind", "127.0.0.1:0"])
            .env_remove("BPGG_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bpgg serve starts");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains("listening on http://"), "first line: {line}");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in `{line}`"));
        // Keep draining stdout so that the server's last line meets an open pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Self { child, addr }
    }

    fn client(&self) -> Client {
        Client::new(self.addr)
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit (at most two minutes).
    fn wait(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the server did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(status: u16, r: std::io::Result<Response>) -> Response {
    let r = r.expect("the server answers");
    assert_eq!(r.status, status, "{}", r.text());
    r
}

/// Synthetic data at 64 px: (defect image, mask) pairs, normal images, query images.
struct Data {
    defects: Vec<(PathBuf, PathBuf)>,
    normals: Vec<PathBuf>,
    queries: Vec<PathBuf>,
}

fn files(dir: PathBuf) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

fn data(root: &Path) -> Data {
    let category = write_synthetic_dataset(
        root,
        &SynthConfig {
            category: "tile".into(),
            size: 64,
            train_good: 4,
            test_good: 2,
            per_type: 3,
            ..SynthConfig::default()
        },
    )
    .unwrap();
    let defects = files(category.join("test").join("blob"))
        .into_iter()
        .take(2)
        .map(|image| {
            let stem = image.file_stem().unwrap().to_string_lossy().into_owned();
            let mask = category
                .join("ground_truth")
                .join("blob")
                .join(format!("{stem}_mask.png"));
            (image, mask)
        })
        .collect();
    let mut queries = files(category.join("test").join("good"));
    queries.extend(
        files(category.join("test").join("scratch"))
            .into_iter()
            .take(2),
    );
    Data {
        defects,
        normals: files(category.join("train").join("good")),
        queries,
    }
}

/// A fitted project (uploads, masks, fit at 64 px); returns its id and the fit summary.
fn fitted_project(c: &mut Client, d: &Data) -> (String, Value) {
    let project = ok(
        201,
        c.json("POST", "/v1/projects", &json!({"name": "line 3"})),
    )
    .json()
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (image, mask) in &d.defects {
        let up = ok(
            201,
            c.send(
                "POST",
                &format!("/v1/projects/{project}/images?role=defect"),
                &std::fs::read(image).unwrap(),
            ),
        );
        let id = up.json().unwrap()["id"].as_str().unwrap().to_string();
        ok(
            200,
            c.send(
                "PUT",
                &format!("/v1/projects/{project}/images/{id}/mask"),
                &std::fs::read(mask).unwrap(),
            ),
        );
    }
    for image in &d.normals {
        ok(
            201,
            c.send(
                "POST",
                &format!("/v1/projects/{project}/images?role=normal"),
                &std::fs::read(image).unwrap(),
            ),
        );
    }
    let summary = ok(
        200,
        c.json(
            "POST",
            &format!("/v1/projects/{project}/fit"),
            &json!({"size": 64}),
        ),
    )
    .json()
    .unwrap();
    (project, summary)
}

#[test]
fn the_downloaded_model_gives_bpgg_predict_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(&dir.path().join("synth"));
    let server = Served::start(&dir.path().join("data"));
    let mut c = server.client();
    let (project, _) = fitted_project(&mut c, &d);
    let model = ok(200, c.get(&format!("/v1/projects/{project}/model")));
    let model_path = dir.path().join("model.bpgg");
    std::fs::write(&model_path, &model.body).unwrap();
    let out = dir.path().join("out");
    // Distinct names: `bpgg predict` names its outputs by the inputs' stems.
    let queries: Vec<PathBuf> = d
        .queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let copy = dir.path().join(format!("query{i}.png"));
            std::fs::copy(q, &copy).unwrap();
            copy
        })
        .collect();
    let mut args = vec!["-q", "predict", "--model", s(&model_path), "-o", s(&out)];
    args.extend(queries.iter().map(|q| s(q)));
    let run = bpgg(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    let lines = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let cli: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(cli.len(), queries.len());
    for (query, expected) in queries.iter().zip(&cli) {
        let p = ok(
            200,
            c.send(
                "POST",
                &format!("/v1/projects/{project}/predict"),
                &std::fs::read(query).unwrap(),
            ),
        )
        .json()
        .unwrap();
        // f32 values: `bpgg predict` writes them widened to f64, the service as f32.
        let f32_of = |v: &Value| v.as_f64().unwrap() as f32;
        for key in ["image_score", "threshold", "image_threshold"] {
            assert_eq!(
                f32_of(&p[key]),
                f32_of(&expected[key]),
                "{key} of {}",
                query.display()
            );
        }
        for key in ["defective", "defect_area_px", "defect_area_fraction"] {
            assert_eq!(p[key], expected[key], "{key} of {}", query.display());
        }
        let regions =
            |v: &Value| -> Vec<bpgg::model::Region> { serde_json::from_value(v.clone()).unwrap() };
        assert_eq!(regions(&p["regions"]), regions(&expected["regions"]));
        // The map too: the TIFF the service answers is the one `bpgg predict` wrote.
        let tiff = ok(
            200,
            c.send(
                "POST",
                &format!("/v1/projects/{project}/predict?output=map"),
                &std::fs::read(query).unwrap(),
            ),
        );
        let written = std::fs::read(expected["map"].as_str().unwrap()).unwrap();
        assert_eq!(tiff.body, written, "map of {}", query.display());
    }
}

#[test]
fn an_open_address_without_a_token_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_bpgg"))
        .args(["serve", "--data-dir", s(&data_dir), "--bind", "0.0.0.0:0"])
        .env_remove("BPGG_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("without a token"), "{}", stderr(&out));
    assert!(
        !data_dir.exists(),
        "nothing is created when the start is refused"
    );
    let short = Command::new(env!("CARGO_BIN_EXE_bpgg"))
        .args(["serve", "--data-dir", s(&data_dir), "--bind", "0.0.0.0:0"])
        .env("BPGG_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2), "{}", stderr(&short));
    let help = bpgg(&["serve", "--help"]);
    assert!(stdout(&help).contains("BPGG_TOKEN"), "{}", stdout(&help));
}

#[test]
fn kill_9_after_acknowledged_writes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(&dir.path().join("synth"));
    let data_dir = dir.path().join("data");
    let mut server = Served::start(&data_dir);
    let mut c = server.client();
    let (project, summary) = fitted_project(&mut c, &d);
    // One more upload, answered 201, and the process is killed right after the answer.
    let last = ok(
        201,
        c.send(
            "POST",
            &format!("/v1/projects/{project}/images?role=normal"),
            &std::fs::read(&d.queries[0]).unwrap(),
        ),
    )
    .json()
    .unwrap();
    server.child.kill().unwrap();
    server.wait();

    {
        let store = bpgg_serve::store::Store::open(&data_dir).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        let counts = store.counts().unwrap();
        assert_eq!(
            counts.images as usize,
            d.defects.len() + d.normals.len() + 1
        );
        assert_eq!((counts.masks, counts.models), (2, 1));
    }
    let server = Served::start(&data_dir);
    let mut c = server.client();
    let images = ok(200, c.get(&format!("/v1/projects/{project}/images")))
        .json()
        .unwrap();
    let images = images.as_array().unwrap();
    assert_eq!(images.last().unwrap(), &last);
    for image in images {
        let id = image["id"].as_str().unwrap();
        let bytes = ok(200, c.get(&format!("/v1/projects/{project}/images/{id}")));
        assert_eq!(bytes.body.len() as u64, image["bytes"].as_u64().unwrap());
    }
    let info = ok(200, c.get(&format!("/v1/projects/{project}/model/info")))
        .json()
        .unwrap();
    assert_eq!(info, summary);
    let model = ok(200, c.get(&format!("/v1/projects/{project}/model")));
    assert_eq!(
        bpgg_serve::store::BlobStore::hash(&model.body),
        summary["model_sha256"].as_str().unwrap()
    );
    ok(
        200,
        c.send(
            "POST",
            &format!("/v1/projects/{project}/predict"),
            &std::fs::read(&d.queries[1]).unwrap(),
        ),
    );
}

#[test]
fn sigterm_finishes_the_requests_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(&dir.path().join("synth"));
    let mut server = Served::start(&dir.path().join("data"));
    let mut c = server.client();
    let (project, _) = fitted_project(&mut c, &d);
    let addr = server.addr;
    let term_sent: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (project, query) = (
                project.clone(),
                std::fs::read(&d.queries[i % d.queries.len()]).unwrap(),
            );
            let (term_sent, stop) = (Arc::clone(&term_sent), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut c = Client::new(addr);
                let mut answered_after_term = 0;
                while !stop.load(Ordering::Relaxed) {
                    match c.send("POST", &format!("/v1/projects/{project}/predict"), &query) {
                        Ok(r) => {
                            assert_eq!(r.status, 200, "an answer during shutdown: {}", r.text());
                            if term_sent.lock().unwrap().is_some() {
                                answered_after_term += 1;
                            }
                        }
                        // Refused or closed once the server stops accepting: expected.
                        Err(_) => break,
                    }
                }
                answered_after_term
            })
        })
        .collect();
    // Let the clients load the server, then ask it to stop.
    std::thread::sleep(Duration::from_millis(300));
    *term_sent.lock().unwrap() = Some(Instant::now());
    server.signal("-TERM");
    let status = server.wait();
    stop.store(true, Ordering::Relaxed);
    let finished: usize = clients.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(status.success(), "exit status {status}");
    assert!(
        finished >= 1,
        "no request was answered after SIGTERM: none was in flight?"
    );
    assert!(
        Client::new(addr).get("/healthz").is_err(),
        "still accepting after exit"
    );
}

#[test]
fn bench_serve_runs_and_reports() {
    let out = bpgg(&[
        "bench",
        "serve",
        "--clients",
        "2",
        "--requests",
        "210",
        "--images",
        "4",
        "--source-size",
        "64",
        "--size",
        "64",
        "--reference-images",
        "8",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    for needle in [
        "requests/s",
        "p99",
        "0 errors of 210 requests",
        "server RSS",
        "ratio",
        "exited with exit status: 0",
    ] {
        assert!(text.contains(needle), "`{needle}` missing in\n{text}");
    }
}

/// A GPU that a CPU build cannot have stops `bpgg serve` with one line before the data dir is
/// created or a port bound.
#[cfg(not(feature = "cuda"))]
#[test]
fn serve_on_cuda_in_a_cpu_build_is_one_line_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_bpgg"))
        .args(["serve", "--device", "cuda", "--data-dir", s(&data_dir)])
        .args(["--bind", "127.0.0.1:0"])
        .env_remove("BPGG_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: device cuda:0: this bpgg was built without CUDA support"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(!data_dir.exists(), "a data dir was created");
}

/// Starts `bpgg serve --demo` and waits (at most ten minutes) for the line saying the demo
/// project is ready; the server (stopped when dropped) and that line.
fn start_demo(data_dir: &Path) -> (Served, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpgg"))
        .args([
            "serve",
            "--demo",
            "--data-dir",
            s(data_dir),
            "--bind",
            "127.0.0.1:0",
        ])
        .env_remove("BPGG_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("bpgg serve --demo starts");
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut served = Served {
        child,
        addr: "127.0.0.1:0".parse().unwrap(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut addr = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(600))
            .expect("bpgg serve --demo says the demo project is ready");
        if let Some(a) = line
            .split("listening on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        {
            addr = a.parse().ok();
        }
        assert!(!line.contains("could not be made"), "{line}");
        if line.contains("demo project ready") {
            std::thread::spawn(move || rx.into_iter().for_each(drop));
            served.addr = addr.expect("the address came first");
            return (served, line);
        }
    }
}

#[test]
fn serve_demo_opens_with_a_fitted_project_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (served, line) = start_demo(&data_dir);
    let addr = served.addr;
    let mut c = served.client();
    let projects = ok(200, c.get("/v1/projects")).json().unwrap();
    let projects = projects.as_array().unwrap();
    assert_eq!(projects.len(), 1, "{projects:?}");
    let p = &projects[0];
    let id = p["id"].as_str().unwrap();
    assert!(line.contains(&format!("http://{addr}/#/p/{id}")), "{line}");
    assert_eq!(p["defects"], 5);
    assert_eq!(p["masked_defects"], 5);
    assert_eq!(p["normals"], 5);
    assert_eq!(p["model"]["defects"], 5);
    assert_eq!(p["model"]["normals"], 5);
    // The images to check: good and defective ones, none of them a support.
    let check = data_dir.join("demo").join("check");
    assert!(line.contains(s(&check)), "{line}");
    let names: Vec<String> = std::fs::read_dir(&check)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("good_")), "{names:?}");
    assert!(names.iter().any(|n| !n.starts_with("good_")), "{names:?}");
    let query = std::fs::read(check.join(&names[0])).unwrap();
    let prediction = ok(
        200,
        c.send("POST", &format!("/v1/projects/{id}/predict"), &query),
    )
    .json()
    .unwrap();
    assert!(prediction["image_score"].as_f64().unwrap().is_finite());
    drop(served);

    // A second start finds the fitted demo project and makes no other.
    let (served, line) = start_demo(&data_dir);
    let projects = ok(200, served.client().get("/v1/projects")).json().unwrap();
    assert_eq!(projects.as_array().unwrap().len(), 1, "{projects:?}");
    assert!(line.contains(id), "{line}");
}
