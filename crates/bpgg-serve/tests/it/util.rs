//! Helpers shared by the service tests.

use std::path::{Path, PathBuf};

use bpgg::data::{write_synthetic_dataset, SynthConfig};
use bpgg_serve::client::{Client, Response};
use bpgg_serve::{ServeConfig, ServerHandle};

/// The model size the tests fit at (small: fast on a loaded 2-core machine).
pub const SIZE: u32 = 64;

/// A server on a free loopback port with a fresh data dir (kept alive with the server).
pub struct TestServer {
    pub server: ServerHandle,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// With the configuration changed by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = ServeConfig {
            data_dir: dir.path().join("data"),
            bind: "127.0.0.1:0".parse().unwrap(),
            ..ServeConfig::default()
        };
        tweak(&mut config);
        let server = ServerHandle::spawn(config).expect("the server starts");
        Self { server, dir }
    }

    pub fn client(&self) -> Client {
        Client::new(self.server.addr())
    }
}

/// Synthetic supports and queries: `size` px images in MVTec layout under `root`.
pub struct Data {
    pub defects: Vec<(Vec<u8>, Vec<u8>)>,
    pub normals: Vec<Vec<u8>>,
    pub queries: Vec<PathBuf>,
}

impl Data {
    pub fn make(root: &Path) -> Self {
        let category = write_synthetic_dataset(
            root,
            &SynthConfig {
                category: "tile".into(),
                size: SIZE,
                train_good: 4,
                test_good: 2,
                per_type: 3,
                ..SynthConfig::default()
            },
        )
        .expect("synthetic data");
        let files = |dir: PathBuf| -> Vec<PathBuf> {
            let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            f.sort();
            f
        };
        let defects = files(category.join("test").join("blob"))
            .into_iter()
            .take(2)
            .map(|image| {
                let stem = image.file_stem().unwrap().to_string_lossy().into_owned();
                let mask = category
                    .join("ground_truth")
                    .join("blob")
                    .join(format!("{stem}_mask.png"));
                (std::fs::read(image).unwrap(), std::fs::read(mask).unwrap())
            })
            .collect();
        let normals = files(category.join("train").join("good"))
            .into_iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        let mut queries = files(category.join("test").join("good"));
        queries.extend(
            files(category.join("test").join("crack"))
                .into_iter()
                .take(2),
        );
        Self {
            defects,
            normals,
            queries,
        }
    }
}

/// Sends a request and checks its status; returns the answer.
pub fn expect(status: u16, response: std::io::Result<Response>) -> Response {
    let r = response.expect("the server answers");
    assert_eq!(r.status, status, "answer: {}", r.text());
    r
}

/// A JSON error answer with `status` whose message contains `needle`.
pub fn expect_error(status: u16, response: std::io::Result<Response>, needle: &str) {
    let r = expect(status, response);
    let message = r.json().expect("errors are JSON")["error"]
        .as_str()
        .expect("an error message")
        .to_string();
    assert!(
        message.contains(needle),
        "{status}: `{message}` should contain `{needle}`"
    );
}

/// Creates a project; returns its id.
pub fn create_project(client: &mut Client, name: &str) -> String {
    let r = expect(
        201,
        client.json("POST", "/v1/projects", &serde_json::json!({ "name": name })),
    );
    r.json().unwrap()["id"].as_str().unwrap().to_string()
}

/// Uploads an image with a role; returns its id.
pub fn upload(client: &mut Client, project: &str, role: &str, bytes: &[u8]) -> String {
    let r = expect(
        201,
        client.send(
            "POST",
            &format!("/v1/projects/{project}/images?role={role}"),
            bytes,
        ),
    );
    r.json().unwrap()["id"].as_str().unwrap().to_string()
}

/// A project with the data's defect images (with masks) and normal images.
pub fn project_with_supports(client: &mut Client, data: &Data) -> String {
    let project = create_project(client, "tiles");
    for (image, mask) in &data.defects {
        let id = upload(client, &project, "defect", image);
        expect(
            200,
            client.send(
                "PUT",
                &format!("/v1/projects/{project}/images/{id}/mask"),
                mask,
            ),
        );
    }
    for image in &data.normals {
        upload(client, &project, "normal", image);
    }
    project
}

/// Fits with `options` (plus the test size); returns the summary.
pub fn fit(
    client: &mut Client,
    project: &str,
    mut options: serde_json::Value,
) -> serde_json::Value {
    options["size"] = SIZE.into();
    expect(
        200,
        client.json("POST", &format!("/v1/projects/{project}/fit"), &options),
    )
    .json()
    .unwrap()
}
