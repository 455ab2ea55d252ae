//! The one builder of hand-made torch checkpoints for the hostile-pickle tests.

/// A legacy torch checkpoint around `main`: the magic-number, protocol-version and sys_info
/// pickles torch writes first, then `main`, then an empty storage-key list.
pub fn legacy_checkpoint(main: &[u8]) -> Vec<u8> {
    // LONG1 of 10 bytes: 0x1950a86a20f9469cfc6c, little-endian.
    let mut out = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    out.extend_from_slice(b"\x80\x02M\xe9\x03."); // 1001
    out.extend_from_slice(b"\x80\x02}."); // sys_info: {}
    out.extend_from_slice(main);
    out.extend_from_slice(b"\x80\x02].");
    out
}

/// Byte offset of `main` inside [`legacy_checkpoint`].
pub const MAIN_PICKLE_START: usize = 15 + 6 + 4;
