//! Bad input gets a clear JSON error with the right status, never a panic and never a stored
//! half-thing: bad images, bombs, wrong masks, unknown and hostile ids, oversize bodies, bad
//! options, wrong tokens.

use std::io::{Read, Write};

use bpgg_serve::client::Client;
use serde_json::json;

use crate::util::*;

/// A PNG that declares `w x h` pixels but holds almost nothing: a decompression bomb's header.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // A zlib stream of a few zero bytes: the decoder needs image data to report the size.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn bad_images_and_masks_are_refused_and_not_stored() {
    let t = TestServer::start();
    let data = Data::make(&t.dir.path().join("synth"));
    let mut c = t.client();
    let project = create_project(&mut c, "p");
    let up = format!("/v1/projects/{project}/images?role=defect");
    let good = &data.defects[0].0;
    expect_error(422, c.send("POST", &up, b""), "empty (0 bytes)");
    expect_error(
        422,
        c.send("POST", &up, &good[..good.len() / 2]),
        "request body",
    );
    expect_error(
        422,
        c.send("POST", &up, b"this is not an image"),
        "not an image in a supported format",
    );
    expect_error(
        422,
        c.send("POST", &up, &bomb_png(100_000, 100_000)),
        "more than the limit",
    );
    expect_error(
        400,
        c.send("POST", &format!("/v1/projects/{project}/images"), good),
        "role",
    );
    expect_error(400, c.send("POST", &format!("{up}x"), good), "role must be");
    expect_error(
        400,
        c.send("POST", &format!("{up}&rol=normal"), good),
        "unknown query parameter",
    );
    let images = expect(200, c.get(&format!("/v1/projects/{project}/images")))
        .json()
        .unwrap();
    assert_eq!(images, json!([]), "nothing refused was stored");

    let id = upload(&mut c, &project, "defect", good);
    let mask_path = format!("/v1/projects/{project}/images/{id}/mask");
    let small = {
        let mut buf = std::io::Cursor::new(Vec::new());
        image::GrayImage::new(16, 16)
            .write_to(&mut buf, image::ImageFormat::Png)
            .unwrap();
        buf.into_inner()
    };
    expect_error(
        422,
        c.send("PUT", &mask_path, &small),
        "mask is 16x16 but its image is 64x64",
    );
    expect_error(422, c.send("PUT", &mask_path, b""), "empty");
    expect_error(
        422,
        c.send("PUT", &mask_path, b"garbage"),
        "supported format",
    );
    let image = expect(200, c.get(&format!("/v1/projects/{project}/images")))
        .json()
        .unwrap();
    assert_eq!(image[0]["has_mask"], false);
}

#[test]
fn unknown_and_hostile_ids_are_404_and_touch_no_file() {
    let t = TestServer::start();
    let mut c = t.client();
    let project = create_project(&mut c, "p");
    let nobody = "0123456789abcdef0123456789abcdef";
    expect_error(404, c.get(&format!("/v1/projects/{nobody}")), "no project");
    expect_error(
        404,
        c.get(&format!("/v1/projects/{project}/images/{nobody}")),
        "no image",
    );
    expect_error(
        404,
        c.delete(&format!("/v1/projects/{nobody}")),
        "no project",
    );
    expect_error(
        404,
        c.send("POST", &format!("/v1/projects/{nobody}/predict"), b"x"),
        "no project",
    );
    for hostile in [
        "..%2F..%2Fetc%2Fpasswd",
        "..",
        "%2e%2e",
        "bpgg.sqlite3",
        "0123456789ABCDEF0123456789ABCDEF",
        "%00",
    ] {
        expect(404, c.get(&format!("/v1/projects/{hostile}")));
        expect(
            404,
            c.get(&format!("/v1/projects/{project}/images/{hostile}")),
        );
        expect(
            404,
            c.get(&format!("/v1/projects/{project}/images/{hostile}/mask")),
        );
        expect(404, c.get(&format!("/assets/{hostile}")));
    }
    // A path that is not a route at all.
    expect(404, c.get("/v1/projects/../../etc/passwd"));
    expect(404, c.get("/assets/../bpgg.sqlite3"));
    // Fit options that name files outside the data dir.
    for name in ["../secret", "/etc/passwd", ".hidden", "a/b", ""] {
        expect_error(
            422,
            c.json(
                "POST",
                &format!("/v1/projects/{project}/fit"),
                &json!({"checkpoint": name}),
            ),
            "plain file name",
        );
        expect_error(
            422,
            c.json(
                "POST",
                &format!("/v1/projects/{project}/fit"),
                &json!({"backbone": {"kind": "resnet18", "weights": name}}),
            ),
            "plain file name",
        );
    }
    expect_error(
        422,
        c.json(
            "POST",
            &format!("/v1/projects/{project}/fit"),
            &json!({"checkpoint": "absent.safetensors"}),
        ),
        "no file `absent.safetensors`",
    );
    // A wrong method is 405, in JSON.
    expect_error(405, c.send("PUT", "/v1/projects", b""), "not allowed");
}

#[test]
fn fit_and_predict_refuse_what_cannot_work() {
    let t = TestServer::start();
    let data = Data::make(&t.dir.path().join("synth"));
    let mut c = t.client();
    let project = create_project(&mut c, "p");
    let fit_path = format!("/v1/projects/{project}/fit");
    expect_error(422, c.json("POST", &fit_path, &json!({})), "no images");
    let unmasked = upload(&mut c, &project, "defect", &data.defects[0].0);
    for n in &data.normals {
        upload(&mut c, &project, "normal", n);
    }
    expect_error(
        422,
        c.json("POST", &fit_path, &json!({"size": SIZE})),
        &format!("image {unmasked} is a defect image without a mask"),
    );
    // Malformed options: 400; well-formed but refused by the library: 422.
    expect_error(
        400,
        c.request("POST", &fit_path, Some("application/json"), b"{not json"),
        "fit options",
    );
    expect_error(
        400,
        c.json("POST", &fit_path, &json!({"scorng": "knn"})),
        "unknown field `scorng`",
    );
    expect_error(
        400,
        c.json("POST", &fit_path, &json!({"size": "big"})),
        "fit options",
    );
    expect_error(
        400,
        c.json("POST", &fit_path, &json!({"shots": -1})),
        "shots",
    );
    expect_error(
        400,
        c.json("POST", &fit_path, &json!([1, 2])),
        "JSON object",
    );
    expect_error(
        422,
        c.json("POST", &fit_path, &json!({"size": 8})),
        "size (long side) must be in 16..=4096",
    );
    expect_error(
        422,
        c.json("POST", &fit_path, &json!({"tile": {"size": 100}})),
        "tile size must be a multiple of 16",
    );
    expect_error(
        422,
        c.json("POST", &fit_path, &json!({"tau": -1.0})),
        "invalid configuration",
    );
    expect_error(
        422,
        c.json(
            "POST",
            &fit_path,
            &json!({"scoring": "bpgg", "shots": 0, "size": SIZE}),
        ),
        "needs at least one defect image",
    );
    // With the defect left out (shots 0), a normal-only fit works.
    let summary = fit(&mut c, &project, json!({"shots": 0}));
    assert_eq!(summary["scoring"], "knn");
    assert_eq!(summary["defects"], 0);
    // Predict: bad bodies and parameters.
    let predict = format!("/v1/projects/{project}/predict");
    expect_error(422, c.send("POST", &predict, b""), "empty");
    expect_error(
        422,
        c.send("POST", &predict, &bomb_png(70_000, 70_000)),
        "more than the limit",
    );
    expect_error(
        400,
        c.send("POST", &format!("{predict}?output=heat"), &data.normals[0]),
        "output must be",
    );
    expect_error(
        400,
        c.send(
            "POST",
            &format!("{predict}?threshold=inf"),
            &data.normals[0],
        ),
        "finite",
    );
    // Project names.
    expect_error(
        400,
        c.json("POST", "/v1/projects", &json!({"name": "  "})),
        "1 to 200",
    );
    expect_error(
        400,
        c.json("POST", "/v1/projects", &json!({"nom": "x"})),
        "unknown field",
    );
    expect_error(
        400,
        c.json("POST", "/v1/projects", &json!({"name": "a\u{7}b"})),
        "control",
    );
}

#[test]
fn oversize_bodies_are_413() {
    let t = TestServer::start_with(|c| c.max_body_bytes = 10_000);
    let mut c = t.client();
    let project = create_project(&mut c, "p");
    let big = vec![0u8; 10_001];
    expect_error(
        413,
        c.send(
            "POST",
            &format!("/v1/projects/{project}/images?role=normal"),
            &big,
        ),
        "larger than the limit of 10000 bytes",
    );
    // A body that announces no length (chunked) is cut at the limit too.
    let mut stream = std::net::TcpStream::connect(t.server.addr()).unwrap();
    let head = format!(
        "POST /v1/projects/{project}/images?role=normal HTTP/1.1\r\nHost: x\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    for _ in 0..3 {
        let chunk = vec![b'a'; 4096];
        let _ = stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = stream.write_all(&chunk);
        let _ = stream.write_all(b"\r\n");
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn a_token_guards_every_v1_route_but_not_health_or_the_page() {
    let token = "correct-horse-battery";
    let t = TestServer::start_with(|c| c.token = Some(token.into()));
    let addr = t.server.addr();
    let mut anonymous = Client::new(addr);
    let mut wrong = Client::new(addr).with_token("correct-horse-batterY");
    let mut right = Client::new(addr).with_token(token);
    expect(200, anonymous.get("/healthz"));
    expect(200, anonymous.get("/"));
    let project = create_project(&mut right, "p");
    for route in bpgg_serve::routes::table() {
        let path = route
            .path
            .replace("{id}", &project)
            .replace("{image_id}", "0123456789abcdef0123456789abcdef")
            .replace("{*path}", "x.js");
        for client in [&mut anonymous, &mut wrong] {
            let r = client
                .request(route.method.as_str(), &path, None, b"")
                .unwrap();
            if route.doc.auth {
                assert_eq!(r.status, 401, "{} {path}: {}", route.method, r.text());
                assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"bpgg\""));
            } else {
                assert_ne!(r.status, 401, "{} {path}", route.method);
            }
        }
    }
    expect(200, right.get("/metrics"));
    expect(200, right.get(&format!("/v1/projects/{project}")));
}

#[test]
fn a_public_address_without_a_token_is_refused() {
    let err = bpgg_serve::ServerHandle::spawn(bpgg_serve::ServeConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        data_dir: tempfile::tempdir().unwrap().path().join("never"),
        ..bpgg_serve::ServeConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, bpgg_serve::Error::InsecureBind(_)), "{err}");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let t = TestServer::start_with(|c| c.header_timeout = std::time::Duration::from_secs(1));
    let mut stream = std::net::TcpStream::connect(t.server.addr()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let start = std::time::Instant::now();
    let mut answer = Vec::new();
    // The server closes the connection (possibly after a 408): the read ends, it does not hang.
    stream
        .read_to_end(&mut answer)
        .expect("the server closes the connection");
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // Other clients are served meanwhile and after.
    expect(200, t.client().get("/healthz"));
}
