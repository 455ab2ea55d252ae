//! The studio's static files, embedded in the binary and served at `/` and `/assets/...`
//! without a token (the page asks for one when the API needs it). Until the studio is built,
//! `/` is a short page pointing at the API.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path without the leading slash: `index.html`, `assets/app.js`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

impl Asset {
    /// The page is revalidated on every load; the files it names may be cached.
    pub fn cache_control(&self) -> &'static str {
        if self.path == "index.html" {
            "no-cache"
        } else {
            "public, max-age=3600"
        }
    }
}

/// Every embedded file.
pub static ASSETS: &[Asset] = &[Asset {
    path: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../assets/index.html"),
}];

/// The embedded file at `path`, if any (an exact match: no path is ever built from `path`).
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
