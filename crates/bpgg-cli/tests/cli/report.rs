//! `bpgg eval --report`: the page opens in headless Chromium without console errors, every
//! image decodes, every curve is drawn, and a screenshot shows something.
//!
//! Without Chromium the browser part prints SKIPPED and passes, unless `BPGG_REQUIRE_CHROMIUM=1`
//! (CI) makes it fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bpgg::data::{write_synthetic_dataset, SynthConfig};

use crate::util::{bpgg, s, stderr, stdout};

/// Longest a single Chromium run may take before the test kills it.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn eval_report_opens_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = SynthConfig {
        category: "tile".into(),
        size: 64,
        train_good: 4,
        test_good: 3,
        per_type: 3,
        ..SynthConfig::default()
    };
    write_synthetic_dataset(&data, &config).unwrap();
    let report = dir.path().join("report");
    let out = bpgg(&[
        "eval",
        "--data",
        s(&data),
        "--category",
        "tile",
        "--shots",
        "1",
        "--normal-shots",
        "2",
        "--seeds",
        "1",
        "--size",
        "64",
        "--report",
        s(&report),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("report:"), "{}", stdout(&out));
    let index = report.join("index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    // Four defect types: a ROC, PRO and PR line each; a table row each.
    assert_eq!(html.matches("<polyline").count(), 12);
    for t in ["blob", "crack", "scratch", "stain", "mean over types"] {
        assert!(html.contains(&format!("<td>{t}</td>")), "no row {t}");
    }
    let images = html.matches("<img ").count();
    assert!(images > 8, "{images} images");
    // Self-contained: nothing fetched from the network.
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));

    let Some(browser) = chromium() else {
        if std::env::var("BPGG_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!("BPGG_REQUIRE_CHROMIUM=1 but no chromium on PATH");
        }
        eprintln!(
            "SKIPPED: the browser check of the report needs `chromium` on PATH \
             (Debian: apt-get install chromium)"
        );
        return;
    };
    let url = format!("file://{}", index.display());
    let profile = tempfile::tempdir().unwrap();
    let dom = run_browser(
        &browser,
        profile.path(),
        &["--dump-dom", "--enable-logging=stderr", "--v=0", &url],
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(dom.status.success(), "chromium failed: {log}");
    let ok = attribute(&dom_text, "data-images-ok").expect("the page's self-check ran");
    assert_eq!(
        ok,
        format!("{images}/{images}"),
        "images decoded / on the page"
    );
    assert_eq!(attribute(&dom_text, "data-curves").as_deref(), Some("12"));
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("net::ERR"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");

    let shot = dir.path().join("report.png");
    let profile = tempfile::tempdir().unwrap();
    let run = run_browser(
        &browser,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
            "--hide-scrollbars",
            &url,
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let png = image::open(&shot).expect("a screenshot").to_rgb8();
    assert_eq!(png.dimensions(), (1280, 1600));
    let mut colours: Vec<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    // Text, curves and heat maps: far more than a blank or error page's handful of colours.
    assert!(colours.len() > 500, "{} colours", colours.len());
}

/// The Chromium binary on PATH, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium with a fresh profile and no network chatter; kills it after
/// [`BROWSER_TIMEOUT`].
fn run_browser(browser: &Path, profile: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let start = Instant::now();
    // Read the pipes on threads so a chatty browser cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > BROWSER_TIMEOUT {
            child.kill().ok();
            panic!("chromium did not finish in {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// The value of `name="..."` in `html`.
fn attribute(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}
