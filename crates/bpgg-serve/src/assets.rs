//! The studio's static files, embedded in the binary and served at `/` and `/assets/...`
//! without a token (the page asks for one when the API needs it). Plain ES modules, HTML and
//! CSS with no build step: nothing to install to build the binary, and what is served is what is
//! in `assets/`.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path without the leading slash: `index.html`, `assets/app.js`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

impl Asset {
    /// Every file is revalidated on every load (with its [`Asset::etag`], so an unchanged file
    /// costs a `304`): the page and its modules always come from the same binary.
    pub fn cache_control(&self) -> &'static str {
        "no-cache"
    }

    /// A strong entity tag: the first 16 bytes of the SHA-256 of the file, in hex and quotes.
    pub fn etag(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.bytes);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    }
}

const JS: &str = "text/javascript; charset=utf-8";

/// An [`Asset`] at `path`, embedded from `assets/FILE`.
macro_rules! embed {
    ($path:literal, $file:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../assets/", $file)),
        }
    };
}

/// Every embedded file.
pub static ASSETS: &[Asset] = &[
    embed!("index.html", "index.html", "text/html; charset=utf-8"),
    embed!("assets/app.js", "app.js", JS),
    embed!("assets/api.js", "api.js", JS),
    embed!("assets/ui.js", "ui.js", JS),
    embed!("assets/painter.js", "painter.js", JS),
    embed!("assets/heat.js", "heat.js", JS),
    embed!("assets/studio.css", "studio.css", "text/css; charset=utf-8"),
    embed!("assets/icon.svg", "icon.svg", "image/svg+xml"),
];

/// The embedded file at `path`, if any (an exact match: no path is ever built from `path`).
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
