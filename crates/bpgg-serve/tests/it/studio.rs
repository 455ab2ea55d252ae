//! The studio's embedded files as the server serves them. (The page itself is tested in real
//! headless Chromium by `e2e/studio.test.mjs`.)

use std::io::{Read, Write};
use std::net::TcpStream;

use bpgg_serve::assets::ASSETS;

use crate::util::{expect, TestServer};

#[test]
fn every_studio_file_is_served_with_its_type_and_revalidated() {
    let t = TestServer::start();
    let mut c = t.client();
    for asset in ASSETS {
        let path = if asset.path == "index.html" {
            "/".to_string()
        } else {
            format!("/{}", asset.path)
        };
        let r = expect(200, c.get(&path));
        assert_eq!(r.body, asset.bytes, "{path}");
        assert_eq!(r.header("content-type"), Some(asset.content_type), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(r.header("etag"), Some(asset.etag().as_str()), "{path}");
    }
    // The files differ, and so do their tags.
    let mut tags: Vec<String> = ASSETS.iter().map(|a| a.etag()).collect();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), ASSETS.len());
}

/// A request with an `If-None-Match` header over a raw connection (the crate's client sends no
/// custom headers): the status code and the whole answer.
fn conditional_get(addr: std::net::SocketAddr, path: &str, etag: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    (status, answer)
}

#[test]
fn an_unchanged_studio_file_answers_304() {
    let t = TestServer::start();
    let app = ASSETS.iter().find(|a| a.path == "assets/app.js").unwrap();
    let (status, answer) = conditional_get(t.server.addr(), "/assets/app.js", &app.etag());
    assert_eq!(status, 304, "{answer}");
    assert!(answer
        .to_lowercase()
        .contains(&format!("etag: {}", app.etag())));
    let (status, _) = conditional_get(t.server.addr(), "/assets/app.js", "\"stale\"");
    assert_eq!(status, 200);
    let index = ASSETS.iter().find(|a| a.path == "index.html").unwrap();
    let (status, _) = conditional_get(t.server.addr(), "/", &index.etag());
    assert_eq!(status, 304);
}

/// What a file names between `open` and `close` (attribute values, import specifiers).
fn references<'a>(text: &'a str, open: &str, close: char) -> Vec<&'a str> {
    text.match_indices(open)
        .filter_map(|(i, _)| {
            let rest = &text[i + open.len()..];
            rest.find(close).map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn the_page_names_only_embedded_files_and_no_other_host() {
    let find = |path: &str| ASSETS.iter().any(|a| a.path == path);
    let index = std::str::from_utf8(bpgg_serve::assets::find("index.html").unwrap().bytes).unwrap();
    let mut named = 0;
    for r in references(index, "src=\"", '"')
        .into_iter()
        .chain(references(index, "href=\"", '"'))
    {
        if let Some(path) = r.strip_prefix("/assets/") {
            assert!(find(&format!("assets/{path}")), "index.html names {r}");
            named += 1;
        } else {
            // The only other links are the service's own routes and in-page anchors.
            assert!(
                r.starts_with("/v1/") || r.starts_with('#'),
                "index.html names {r}"
            );
        }
    }
    assert!(named >= 3, "the page loads its script, style and icon");
    for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
        let text = std::str::from_utf8(asset.bytes).unwrap();
        for spec in references(text, "from './", '\'') {
            assert!(
                find(&format!("assets/{spec}")),
                "{} imports ./{spec}",
                asset.path
            );
        }
    }
    for asset in ASSETS {
        let text = String::from_utf8_lossy(asset.bytes);
        // An SVG's XML namespace is a name, not a fetch.
        let text = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for scheme in ["http://", "https://", "url(//", "src=\"//", "@import"] {
            assert!(!text.contains(scheme), "{} contains {scheme}", asset.path);
        }
    }
}
