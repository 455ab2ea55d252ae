//! `bpgg serve`: the HTTP service (crate `bpgg-serve`) with the command line's settings.

use std::io::Write;
use std::process::ExitCode;

use crate::args::ServeArgs;

/// Whoever started the server may have stopped reading its output: a failed write to stdout
/// must not turn a clean stop into a panic.
fn say(line: String) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config()?;
    let data_dir = config.data_dir.clone();
    let token = config.token.clone();
    let outcome = bpgg_serve::serve_until_signal(config, |addr| {
        say(format!(
            "bpgg serve: listening on http://{addr} (data dir {}); SIGTERM or Ctrl-C stops it",
            data_dir.display()
        ));
        if args.demo {
            // Once the server runs (so that settings it refuses leave nothing behind), and
            // through its own API, as a user of the studio would: it answers once this
            // callback has returned.
            let (token, data_dir) = (token.clone(), data_dir.clone());
            let made = move || -> anyhow::Result<(String, std::path::PathBuf)> {
                let demo = demo::write_data(&data_dir)?;
                Ok((demo::set_up(addr, token, &demo)?, demo.queries))
            };
            std::thread::spawn(move || match made() {
                Ok((url, queries)) => say(format!(
                    "bpgg serve: demo project ready: open {url} and drop the images of {} into \
                     \"Check new images\"",
                    queries.display()
                )),
                Err(e) => say(format!(
                    "bpgg serve: the demo project could not be made: {e:#}"
                )),
            });
        }
    });
    match outcome {
        Ok(()) => {
            say("bpgg serve: stopped".into());
            Ok(ExitCode::SUCCESS)
        }
        // Settings that must not start a server at all: the usage-error status, as clap's.
        Err(e @ (bpgg_serve::Error::InsecureBind(_) | bpgg_serve::Error::Config(_))) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

/// `bpgg serve --demo`: a project made from synthetic data, fitted, through the HTTP API.
mod demo {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};

    use anyhow::{bail, Context};
    use bpgg::data::{write_synthetic_dataset, SynthConfig};
    use bpgg_serve::client::{Client, Response};
    use serde_json::json;

    /// The demo project's name (a second start finds it and reuses it).
    pub const PROJECT: &str = "Demo: synthetic tiles";
    /// Side of the synthetic images and of the model input.
    const SIZE: u32 = 128;
    const DEFECTS: usize = 5;
    const NORMALS: usize = 5;

    /// The demo's files.
    #[derive(Debug, Clone)]
    pub struct DemoData {
        /// Defect images and their masks.
        pub defects: Vec<(PathBuf, PathBuf)>,
        pub normals: Vec<PathBuf>,
        /// New images for the studio's "Check new images" (good and defective, mixed).
        pub queries: PathBuf,
    }

    fn pngs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Writes the synthetic data set under `data_dir/demo` (once) and picks the supports: one
    /// defect image of each kind in turn, the first good training images; the test images not
    /// used as supports are copied, under names that say what they are, to `demo/check`.
    pub fn write_data(data_dir: &Path) -> anyhow::Result<DemoData> {
        let root = data_dir.join("demo");
        let synth = SynthConfig {
            size: SIZE,
            ..SynthConfig::default()
        };
        let category = root.join(&synth.category);
        if !category.join("test").is_dir() {
            write_synthetic_dataset(&root, &synth)
                .with_context(|| format!("writing the demo data under {}", root.display()))?;
        }
        let mut kinds: Vec<String> = std::fs::read_dir(category.join("test"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|k| k != "good")
            .collect();
        kinds.sort();
        let by_kind: Vec<Vec<PathBuf>> = kinds
            .iter()
            .map(|k| pngs(&category.join("test").join(k)))
            .collect::<anyhow::Result<_>>()?;
        let mut defects = Vec::new();
        for i in 0..DEFECTS {
            let (k, j) = (i % kinds.len(), i / kinds.len());
            let image = by_kind[k][j].clone();
            let stem = image.file_stem().unwrap_or_default().to_string_lossy();
            let mask = category
                .join("ground_truth")
                .join(&kinds[k])
                .join(format!("{stem}_mask.png"));
            defects.push((image, mask));
        }
        let normals = pngs(&category.join("train").join("good"))?
            .into_iter()
            .take(NORMALS)
            .collect();
        let queries = root.join("check");
        std::fs::create_dir_all(&queries)?;
        for (kind, files) in std::iter::once((
            "good".to_string(),
            pngs(&category.join("test").join("good"))?,
        ))
        .chain(kinds.iter().cloned().zip(by_kind.iter().cloned()))
        {
            for f in files
                .iter()
                .filter(|f| !defects.iter().any(|(d, _)| d == *f))
            {
                let name = format!(
                    "{kind}_{}",
                    f.file_name().unwrap_or_default().to_string_lossy()
                );
                std::fs::copy(f, queries.join(name))?;
            }
        }
        Ok(DemoData {
            defects,
            normals,
            queries,
        })
    }

    fn ok(r: std::io::Result<Response>, what: &str) -> anyhow::Result<Response> {
        let r = r.with_context(|| what.to_string())?;
        if !(200..300).contains(&r.status) {
            bail!("{what}: {} {}", r.status, r.text());
        }
        Ok(r)
    }

    /// Creates and fits the demo project unless it exists; its studio URL.
    pub fn set_up(
        addr: SocketAddr,
        token: Option<String>,
        data: &DemoData,
    ) -> anyhow::Result<String> {
        let mut c = Client::new(addr).with_timeout(std::time::Duration::from_secs(600));
        if let Some(t) = token {
            c = c.with_token(t);
        }
        let projects = ok(c.get("/v1/projects"), "listing the projects")?.json()?;
        let mut existing = None;
        for p in projects.as_array().into_iter().flatten() {
            if p["name"] != PROJECT {
                continue;
            }
            let id = p["id"].as_str().unwrap_or_default();
            if p["model"].is_null() {
                // Left unfitted by an interrupted start: made again.
                ok(
                    c.delete(&format!("/v1/projects/{id}")),
                    "removing an unfitted demo project",
                )?;
            } else {
                existing = Some(p.clone());
            }
        }
        let id = match existing {
            Some(p) => p["id"].as_str().unwrap_or_default().to_string(),
            None => {
                let p = ok(
                    c.json("POST", "/v1/projects", &json!({ "name": PROJECT })),
                    "creating the demo project",
                )?
                .json()?;
                let id = p["id"].as_str().unwrap_or_default().to_string();
                for (image, mask) in &data.defects {
                    let r = ok(
                        c.send(
                            "POST",
                            &format!("/v1/projects/{id}/images?role=defect"),
                            &std::fs::read(image)?,
                        ),
                        "uploading a demo defect image",
                    )?
                    .json()?;
                    let image_id = r["id"].as_str().unwrap_or_default();
                    ok(
                        c.send(
                            "PUT",
                            &format!("/v1/projects/{id}/images/{image_id}/mask"),
                            &std::fs::read(mask)?,
                        ),
                        "uploading a demo mask",
                    )?;
                }
                for image in &data.normals {
                    ok(
                        c.send(
                            "POST",
                            &format!("/v1/projects/{id}/images?role=normal"),
                            &std::fs::read(image)?,
                        ),
                        "uploading a demo good image",
                    )?;
                }
                ok(
                    c.json(
                        "POST",
                        &format!("/v1/projects/{id}/fit"),
                        &json!({ "size": SIZE }),
                    ),
                    "fitting the demo project",
                )?;
                id
            }
        };
        Ok(format!("http://{addr}/#/p/{id}"))
    }
}
