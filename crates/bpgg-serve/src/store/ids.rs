//! Opaque ids: 128 random bits as 32 lowercase hex digits. They name rows, never files.

/// Hex digits of an id.
const ID_LEN: usize = 32;

/// A fresh random id.
pub fn new_id() -> String {
    let mut bytes = [0u8; ID_LEN / 2];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex(&bytes)
}

/// Whether `s` has the shape of an id (anything else is answered 404 before any lookup).
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh_and_well_formed() {
        let (a, b) = (new_id(), new_id());
        assert!(is_id(&a) && is_id(&b), "{a} {b}");
        assert_ne!(a, b);
        for bad in [
            "",
            "../etc/passwd",
            &a[..31],
            &a.to_uppercase(),
            &format!("{a}0"),
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }
}
