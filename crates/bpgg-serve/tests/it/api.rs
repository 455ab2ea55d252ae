//! The API end to end: projects, images, masks, fit, predict in every output, model download,
//! metrics, the OpenAPI document, and a restart on the same data dir.

use std::collections::BTreeSet;

use bpgg::data::float_map::FloatMap;
use bpgg::data::image_io::{decode_mask_bytes, load_rgb, ImageLimits};
use bpgg::model::FittedModel;
use candle_core::Device;
use serde_json::{json, Value};

use crate::util::*;

/// The keys of a JSON object.
fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

/// The properties a schema of the served OpenAPI document declares.
fn schema_keys(doc: &Value, name: &str) -> BTreeSet<String> {
    keys(&doc["components"]["schemas"][name]["properties"])
}

#[test]
fn the_whole_flow_from_project_to_prediction() {
    let t = TestServer::start();
    let data = Data::make(&t.dir.path().join("synth"));
    let mut c = t.client();
    assert_eq!(expect(200, c.get("/healthz")).text(), "ok");
    let doc = expect(200, c.get("/v1/openapi.json")).json().unwrap();
    assert_eq!(doc["openapi"], "3.0.3");

    let project = create_project(&mut c, "tiles");
    let listed = expect(200, c.get("/v1/projects")).json().unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(keys(&listed[0]), schema_keys(&doc, "Project"));

    // Images and masks.
    let (image, mask) = &data.defects[0];
    let defect = upload(&mut c, &project, "defect", image);
    let downloaded = expect(
        200,
        c.get(&format!("/v1/projects/{project}/images/{defect}")),
    );
    assert_eq!(&downloaded.body, image);
    assert_eq!(downloaded.header("content-type"), Some("image/png"));
    expect_error(
        404,
        c.get(&format!("/v1/projects/{project}/images/{defect}/mask")),
        "has none",
    );
    let with_mask = expect(
        200,
        c.send(
            "PUT",
            &format!("/v1/projects/{project}/images/{defect}/mask"),
            mask,
        ),
    )
    .json()
    .unwrap();
    assert_eq!(with_mask["has_mask"], true);
    assert_eq!(keys(&with_mask), schema_keys(&doc, "Image"));
    let stored_mask = expect(
        200,
        c.get(&format!("/v1/projects/{project}/images/{defect}/mask")),
    );
    let limits = ImageLimits::default();
    assert_eq!(
        decode_mask_bytes(
            "stored".as_ref(),
            &stored_mask.body,
            Some((SIZE, SIZE)),
            limits
        )
        .unwrap(),
        decode_mask_bytes("sent".as_ref(), mask, Some((SIZE, SIZE)), limits).unwrap(),
        "the stored mask is the one sent, binarised"
    );
    let (image2, mask2) = &data.defects[1];
    let defect2 = upload(&mut c, &project, "defect", image2);
    expect(
        200,
        c.send(
            "PUT",
            &format!("/v1/projects/{project}/images/{defect2}/mask"),
            mask2,
        ),
    );
    let mut normals = Vec::new();
    for n in &data.normals {
        normals.push(upload(&mut c, &project, "normal", n));
    }
    // A stray image: uploaded as a defect, then made normal, then deleted.
    let stray = upload(&mut c, &project, "defect", &data.normals[0]);
    let changed = expect(
        200,
        c.json(
            "PATCH",
            &format!("/v1/projects/{project}/images/{stray}"),
            &json!({"role": "normal"}),
        ),
    );
    assert_eq!(changed.json().unwrap()["role"], "normal");
    expect(
        204,
        c.delete(&format!("/v1/projects/{project}/images/{stray}")),
    );
    expect(
        404,
        c.get(&format!("/v1/projects/{project}/images/{stray}")),
    );
    let images = expect(200, c.get(&format!("/v1/projects/{project}/images")))
        .json()
        .unwrap();
    let images = images.as_array().unwrap();
    assert_eq!(images.len(), 2 + data.normals.len());
    assert_eq!(images[0]["id"], defect.as_str());
    assert_eq!(
        (images[0]["width"].as_u64(), images[0]["height"].as_u64()),
        (Some(64), Some(64))
    );

    // Fit.
    expect_error(
        409,
        c.send("POST", &format!("/v1/projects/{project}/predict"), image),
        "fit it first",
    );
    let summary = fit(&mut c, &project, json!({}));
    assert_eq!(keys(&summary), schema_keys(&doc, "FitSummary"));
    assert_eq!(summary["scoring"], "hybrid");
    assert_eq!(
        (summary["defects"].as_u64(), summary["normals"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(summary["config"]["size"], SIZE);
    let info = expect(200, c.get(&format!("/v1/projects/{project}/model/info")))
        .json()
        .unwrap();
    assert_eq!(info, summary);
    let shown = expect(200, c.get(&format!("/v1/projects/{project}")))
        .json()
        .unwrap();
    assert_eq!(shown["model"], summary);
    assert_eq!(
        (shown["defects"].as_u64(), shown["masked_defects"].as_u64()),
        (Some(2), Some(2))
    );

    // The model file, and the library's own answer with it.
    let model_file = expect(200, c.get(&format!("/v1/projects/{project}/model")));
    assert_eq!(
        bpgg_serve::store::BlobStore::hash(&model_file.body),
        summary["model_sha256"].as_str().unwrap()
    );
    assert!(model_file
        .header("content-disposition")
        .is_some_and(|d| d.contains("tiles.bpgg")));
    let model = FittedModel::from_bytes("m".as_ref(), &model_file.body, &Device::Cpu).unwrap();
    let encoder = model.encoder(&Device::Cpu).unwrap();
    assert_eq!(
        summary["image_threshold"].as_f64().unwrap() as f32,
        model.image_threshold
    );

    for query in &data.queries {
        let bytes = std::fs::read(query).unwrap();
        let path = format!("/v1/projects/{project}/predict");
        let p = expect(200, c.send("POST", &path, &bytes)).json().unwrap();
        assert_eq!(keys(&p), schema_keys(&doc, "Prediction"));
        let expected = &model
            .predict_images(&encoder, &[load_rgb(query, limits).unwrap()], None)
            .unwrap()[0];
        assert_eq!(
            p["image_score"].as_f64().unwrap() as f32,
            expected.image_score
        );
        assert_eq!(p["threshold"].as_f64().unwrap() as f32, expected.threshold);
        assert_eq!(
            p["image_threshold"].as_f64().unwrap() as f32,
            expected.image_threshold
        );
        assert_eq!(p["defective"], expected.defective);
        assert_eq!(
            p["defect_area_px"].as_u64().unwrap() as usize,
            expected.defect_area_px()
        );
        let regions: Vec<bpgg::model::Region> =
            serde_json::from_value(p["regions"].clone()).unwrap();
        assert_eq!(regions, expected.regions);
        assert_eq!(p["model_sha256"], summary["model_sha256"]);

        let tiff = expect(200, c.send("POST", &format!("{path}?output=map"), &bytes));
        assert_eq!(tiff.header("content-type"), Some("image/tiff"));
        let map = FloatMap::from_bytes("map.tiff".as_ref(), &tiff.body).unwrap();
        assert_eq!(map, expected.map);
        let raw = expect(
            200,
            c.send("POST", &format!("{path}?output=map&format=f32"), &bytes),
        );
        assert_eq!(raw.header("x-map-width"), Some("64"));
        assert_eq!(
            raw.header("x-image-score"),
            Some(expected.image_score.to_string().as_str())
        );
        let floats: Vec<f32> = raw
            .body
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(floats, expected.map.data);
        let as_json = expect(
            200,
            c.send("POST", &format!("{path}?output=map&format=json"), &bytes),
        )
        .json()
        .unwrap();
        assert_eq!(as_json["width"], 64);
        assert_eq!(as_json["data"].as_array().unwrap().len(), 64 * 64);
        let overlay = expect(
            200,
            c.send("POST", &format!("{path}?output=overlay"), &bytes),
        );
        let overlay = image::load_from_memory(&overlay.body).unwrap();
        assert_eq!((overlay.width(), overlay.height()), (64, 64));
        let mask = expect(200, c.send("POST", &format!("{path}?output=mask"), &bytes));
        let mask = decode_mask_bytes("m".as_ref(), &mask.body, Some((64, 64)), limits).unwrap();
        assert_eq!(mask, expected.mask);
        // Another threshold changes the mask, not the score.
        let low = expect(200, c.send("POST", &format!("{path}?threshold=0"), &bytes))
            .json()
            .unwrap();
        assert_eq!(low["defect_area_px"], 64 * 64);
        assert_eq!(low["image_score"], p["image_score"]);
    }

    // Rename, then delete: everything goes, files included.
    let renamed = expect(
        200,
        c.json(
            "PATCH",
            &format!("/v1/projects/{project}"),
            &json!({"name": "tiles v2"}),
        ),
    );
    assert_eq!(renamed.json().unwrap()["name"], "tiles v2");
    expect(204, c.delete(&format!("/v1/projects/{project}")));
    expect(404, c.get(&format!("/v1/projects/{project}")));
    expect(404, c.get(&format!("/v1/projects/{project}/model")));
    let blobs = walk_files(&t.dir.path().join("data").join("blobs"));
    assert!(blobs.is_empty(), "files left after deletion: {blobs:?}");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn metrics_count_requests_fits_and_images() {
    let t = TestServer::start();
    let data = Data::make(&t.dir.path().join("synth"));
    let mut c = t.client();
    let project = project_with_supports(&mut c, &data);
    fit(&mut c, &project, json!({"scoring": "bpgg"}));
    let bytes = std::fs::read(&data.queries[0]).unwrap();
    expect(
        200,
        c.send("POST", &format!("/v1/projects/{project}/predict"), &bytes),
    );
    expect(404, c.get("/nowhere"));
    let text = expect(200, c.get("/metrics")).text();
    for line in [
        "bpgg_http_requests_total{route=\"/v1/projects/{id}/predict\",method=\"POST\",status=\"200\"} 1",
        "bpgg_http_requests_total{route=\"/v1/projects/{id}/fit\",method=\"POST\",status=\"200\"} 1",
        "bpgg_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "bpgg_http_request_duration_seconds_count{route=\"/v1/projects/{id}/predict\"} 1",
        "bpgg_fits_total 1",
        "bpgg_predictions_total 1",
        "bpgg_projects 1",
        "bpgg_masks_stored 2",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    let images = 2 + data.normals.len();
    assert!(
        text.contains(&format!("bpgg_images_stored {images}")),
        "{text}"
    );
    assert!(!text.contains(&project), "ids never become label values");
}

#[test]
fn the_info_route_lists_defaults_limits_and_checkpoints() {
    let t = TestServer::start_with(|c| c.max_body_bytes = 12345);
    let checkpoints = t.dir.path().join("data").join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    std::fs::write(checkpoints.join("best.safetensors"), b"x").unwrap();
    let info = expect(200, t.client().get("/v1/info")).json().unwrap();
    assert_eq!(info["limits"]["max_body_bytes"], 12345);
    assert_eq!(info["device"], "cpu");
    assert_eq!(info["checkpoints"], json!(["best.safetensors"]));
    assert_eq!(
        info["model_defaults"],
        serde_json::to_value(bpgg::model::ModelConfig::default()).unwrap()
    );
    let doc = expect(200, t.client().get("/v1/openapi.json"))
        .json()
        .unwrap();
    assert_eq!(keys(&info), schema_keys(&doc, "Info"));
    // The studio's page is served without a token.
    let page = expect(200, t.client().get("/"));
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    expect(404, t.client().get("/assets/nothing.js"));
}

#[test]
fn everything_is_there_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = Data::make(&dir.path().join("synth"));
    let data_dir = dir.path().join("data");
    let config = bpgg_serve::ServeConfig {
        data_dir: data_dir.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
        ..bpgg_serve::ServeConfig::default()
    };
    let bytes = std::fs::read(&data.queries[0]).unwrap();
    let (project, before, images_before) = {
        let server = bpgg_serve::ServerHandle::spawn(config.clone()).unwrap();
        let mut c = bpgg_serve::client::Client::new(server.addr());
        let project = project_with_supports(&mut c, &data);
        fit(&mut c, &project, json!({}));
        let p = expect(
            200,
            c.send("POST", &format!("/v1/projects/{project}/predict"), &bytes),
        );
        let images = expect(200, c.get(&format!("/v1/projects/{project}/images")))
            .json()
            .unwrap();
        server.stop().unwrap();
        (project, p.json().unwrap(), images)
    };
    let server = bpgg_serve::ServerHandle::spawn(config).unwrap();
    let mut c = bpgg_serve::client::Client::new(server.addr());
    let images = expect(200, c.get(&format!("/v1/projects/{project}/images")))
        .json()
        .unwrap();
    assert_eq!(images, images_before);
    // The model is loaded from the store on first use, and scores as before.
    let after = expect(
        200,
        c.send("POST", &format!("/v1/projects/{project}/predict"), &bytes),
    );
    assert_eq!(after.json().unwrap(), before);
    assert_eq!(server.state().store.integrity_check().unwrap(), "ok");
}

#[test]
fn a_data_dir_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    {
        let conn =
            rusqlite::Connection::open(data_dir.join(bpgg_serve::store::DATABASE_FILE)).unwrap();
        conn.pragma_update(None, "user_version", bpgg_serve::store::SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = bpgg_serve::ServerHandle::spawn(bpgg_serve::ServeConfig {
        data_dir: data_dir.clone(),
        bind: "127.0.0.1:0".parse().unwrap(),
        ..bpgg_serve::ServeConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("newer bpgg"), "{err}");
    assert!(err.contains(&data_dir.display().to_string()), "{err}");
}
