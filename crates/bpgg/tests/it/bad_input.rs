//! Hostile and broken input at the library level: every case gives an error that names the file
//! and says what is wrong, and nothing panics. Files are made here (no fixtures), except the
//! legacy-pickle header bytes, which are spelled out in `legacy_checkpoint`.
//!
//! Inputs that the fuzzers (`fuzz/`) found are added here as regression cases, named after the
//! target that found them.

use std::path::{Path, PathBuf};

use anyhow::Result;
use bpgg::backbone::weights::{load_state_dict, state_dict_from_bytes, StateDict};
use bpgg::baseline::MemoryBank;
use bpgg::data::float_map::FloatMap;
use bpgg::data::image_io::{
    decode_image_bytes, load_mask, load_rgb, ImageLimits, DEFAULT_MAX_PIXELS,
};
use bpgg::data::FolderDataset;
use bpgg::model::{FittedModel, ModelConfig, Scoring, ThresholdRule};
use candle_core::{Device, Tensor};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};

use crate::pickles::{legacy_checkpoint, MAIN_PICKLE_START};

/// The `Display` text of the error `result` must be.
fn err<T: std::fmt::Debug>(result: bpgg::Result<T>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn d(path: &Path) -> String {
    path.display().to_string()
}

fn limits() -> ImageLimits {
    ImageLimits::default()
}

/// A 32x32 gradient saved in `format`; returns its bytes.
fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(32, 32, |x, y| Rgb([x as u8 * 8, y as u8 * 8, 100]));
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, format).expect("encodes");
    buf.into_inner()
}

// ---------------------------------------------------------------------------------------------
// Images

#[test]
fn zero_byte_images_of_every_format_are_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.png", "a.jpg", "a.tiff", "no_extension"] {
        let path = dir.path().join(name);
        std::fs::write(&path, b"").unwrap();
        assert_eq!(
            err(load_rgb(&path, limits())),
            format!("{}: file is empty (0 bytes)", d(&path))
        );
        assert_eq!(
            err(load_mask(&path, None, limits())),
            format!("{}: file is empty (0 bytes)", d(&path))
        );
    }
}

#[test]
fn truncated_png_jpeg_and_tiff_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            image::ImageFormat::Png,
            "cut.png",
            "cannot decode image: the file is truncated (it ends inside the image data)",
        ),
        (
            image::ImageFormat::Tiff,
            "cut.tiff",
            "cannot decode image: the file is truncated (it ends inside the image data)",
        ),
    ];
    for (format, name, expected) in cases {
        let bytes = encoded(format);
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let text = err(load_rgb(&path, limits()));
        assert_eq!(text, format!("{}: {expected}", d(&path)));
    }
    // JPEG: zune-jpeg says how many bytes a segment lacks.
    let bytes = encoded(image::ImageFormat::Jpeg);
    let path = dir.path().join("cut.jpg");
    for cut in [20, bytes.len() / 2] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let text = err(load_rgb(&path, limits()));
        assert!(
            text.starts_with(&format!(
                "{}: cannot decode image: Format error decoding Jpeg: ",
                d(&path)
            )),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text:?}");
    }
}

#[test]
fn corrupt_png_and_tiff_bodies_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    // PNG: a flipped byte inside IDAT breaks the deflate stream (the decoder skips CRCs).
    let mut png = encoded(image::ImageFormat::Png);
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
    png[idat + 10] ^= 0xff;
    let path = dir.path().join("crc.png");
    std::fs::write(&path, &png).unwrap();
    let text = err(load_rgb(&path, limits()));
    assert!(
        text.starts_with(&format!(
            "{}: cannot decode image: Format error decoding Png: Corrupt deflate stream.",
            d(&path)
        )),
        "{text}"
    );
    // TIFF: the first IFD offset points past the end of the file.
    let mut tiff = encoded(image::ImageFormat::Tiff);
    tiff[4..8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let path = dir.path().join("ifd.tiff");
    std::fs::write(&path, &tiff).unwrap();
    let text = err(load_rgb(&path, limits()));
    assert!(
        text.starts_with(&format!("{}: cannot decode image: ", d(&path))),
        "{text}"
    );
    // Bytes that are no image at all, whatever the extension says.
    let path = dir.path().join("text.png");
    std::fs::write(&path, b"hello, I am a text file").unwrap();
    assert_eq!(
        err(load_rgb(&path, limits())),
        format!(
            "{}: not an image in a supported format (PNG, JPEG, TIFF, BMP, WebP)",
            d(&path)
        )
    );
}

#[test]
fn one_pixel_images_load() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["one.png", "one.tiff", "one.jpg"] {
        let path = dir.path().join(name);
        RgbImage::from_pixel(1, 1, Rgb([200, 10, 10]))
            .save(&path)
            .unwrap();
        let img = load_rgb(&path, limits()).unwrap();
        assert_eq!(img.dimensions(), (1, 1), "{name}");
        let mask = load_mask(&path, Some((1, 1)), limits()).unwrap();
        assert_eq!(mask.pixels.len(), 1, "{name}");
    }
}

/// The CRC-32 of PNG chunks (ISO 3309), bit by bit: only a handful of bytes are checksummed.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A valid PNG header declaring `w x h` 8-bit gray pixels, followed by one tiny IDAT and IEND:
/// under 100 bytes that would decode to `w * h` bytes.
pub fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib stream of a few zero bytes.
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A little-endian TIFF whose only IFD declares `w x h` 8-bit gray pixels in one strip.
pub fn tiff_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    // (tag, type, value): type 3 = SHORT, 4 = LONG; one value each.
    let entries: [(u16, u16, u32); 9] = [
        (256, 4, w),   // ImageWidth
        (257, 4, h),   // ImageLength
        (258, 3, 8),   // BitsPerSample
        (259, 3, 1),   // Compression: none
        (262, 3, 1),   // Photometric: black is zero
        (273, 4, 122), // StripOffsets: just after the IFD
        (277, 3, 1),   // SamplesPerPixel
        (278, 4, h),   // RowsPerStrip
        (279, 4, 4),   // StripByteCounts
    ];
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

#[test]
fn absurd_declared_sizes_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let limit_error = |path: &Path, w: u64, h: u64| {
        format!(
            "{}: image declares {w}x{h} = {} pixels, more than the limit of {DEFAULT_MAX_PIXELS}",
            d(path),
            w * h
        )
    };
    let path = dir.path().join("bomb.png");
    let bomb = png_declaring(100_000, 100_000);
    assert!(bomb.len() < 100);
    std::fs::write(&path, &bomb).unwrap();
    assert_eq!(
        err(load_rgb(&path, limits())),
        limit_error(&path, 100_000, 100_000)
    );
    assert_eq!(
        err(load_mask(&path, None, limits())),
        limit_error(&path, 100_000, 100_000)
    );

    let path = dir.path().join("bomb.tiff");
    std::fs::write(&path, tiff_declaring(100_000, 100_000)).unwrap();
    assert_eq!(
        err(load_rgb(&path, limits())),
        limit_error(&path, 100_000, 100_000)
    );

    // Just over the limit is refused, and raising the limit lets the header through to the
    // decoder (which then finds the data missing).
    let path = dir.path().join("big.png");
    std::fs::write(&path, png_declaring(8193, 8192)).unwrap();
    assert_eq!(
        err(load_rgb(&path, limits())),
        limit_error(&path, 8193, 8192)
    );
    let raised = ImageLimits {
        max_pixels: 8193 * 8192,
    };
    let text = err(load_rgb(&path, raised));
    assert!(
        text.starts_with(&format!("{}: cannot decode image: ", d(&path))),
        "{text}"
    );

    // A zero-width header.
    let path = dir.path().join("empty.tiff");
    std::fs::write(&path, tiff_declaring(0, 10)).unwrap();
    let text = err(load_rgb(&path, limits()));
    assert!(text.starts_with(&d(&path)), "{text}");
}

#[test]
fn from_bytes_decoding_names_the_given_path() {
    let path = Path::new("in-memory/upload.png");
    assert_eq!(
        err(decode_image_bytes(path, b"", limits())),
        "in-memory/upload.png: file is empty (0 bytes)"
    );
    let text = err(decode_image_bytes(
        path,
        &png_declaring(100_000, 1000),
        limits(),
    ));
    assert!(
        text.starts_with("in-memory/upload.png: image declares 100000x1000"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Masks

#[test]
fn masks_of_the_wrong_size_are_refused_never_resized() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m_mask.png");
    GrayImage::new(16, 8).save(&path).unwrap();
    assert_eq!(
        err(load_mask(&path, Some((32, 32)), limits())),
        format!("{}: mask is 16x8 but its image is 32x32", d(&path))
    );
}

#[test]
fn sixteen_bit_masks_load_with_any_nonzero_value_as_defect() {
    let dir = tempfile::tempdir().unwrap();
    for (name, defect_value) in [("labels.png", 1u16), ("full.png", 65535), ("mid.tiff", 255)] {
        let path = dir.path().join(name);
        let img: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_fn(4, 2, |x, _| Luma([if x < 2 { 0 } else { defect_value }]));
        img.save(&path).unwrap();
        let mask = load_mask(&path, Some((4, 2)), limits()).unwrap();
        assert_eq!(
            mask.pixels,
            [false, false, true, true, false, false, true, true],
            "{name}"
        );
    }
    // 8-bit masks keep the > 127 rule (anti-aliased edges, JPEG noise).
    let path = dir.path().join("eight.png");
    GrayImage::from_raw(4, 1, vec![0, 1, 127, 128])
        .unwrap()
        .save(&path)
        .unwrap();
    let mask = load_mask(&path, None, limits()).unwrap();
    assert_eq!(mask.pixels, [false, false, false, true]);
}

#[test]
fn mismatched_stems_name_the_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let defects = dir.path().join("defects");
    let masks = dir.path().join("masks");
    std::fs::create_dir_all(&defects).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    RgbImage::new(8, 8)
        .save(defects.join("part_1.png"))
        .unwrap();
    GrayImage::new(8, 8).save(masks.join("part_2.png")).unwrap();
    assert_eq!(
        err(FolderDataset::open(Some(&defects), Some(&masks), None)),
        format!(
            "{}: defect image has no mask named part_1.png in {}",
            d(&defects.join("part_1.png")),
            d(&masks)
        )
    );
    // An extra mask with no image is named too.
    GrayImage::new(8, 8)
        .save(masks.join("part_1_mask.png"))
        .unwrap();
    assert_eq!(
        err(FolderDataset::open(Some(&defects), Some(&masks), None)),
        format!(
            "{}: mask for an unknown image (no part_2.* in {})",
            d(&masks.join("part_2.png")),
            d(&defects)
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Paths

#[cfg(unix)] // non-UTF-8 file names
#[test]
fn non_utf8_file_names_are_named_lossily_and_still_load() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let dir = tempfile::tempdir().unwrap();
    let name = OsStr::from_bytes(b"bad\xffname.png");
    let path = dir.path().join(name);
    std::fs::write(&path, b"").unwrap();
    let text = err(load_rgb(&path, limits()));
    assert_eq!(
        text,
        format!(
            "{}/bad\u{fffd}name.png: file is empty (0 bytes)",
            d(dir.path())
        )
    );
    RgbImage::new(4, 4).save(&path).unwrap();
    assert_eq!(load_rgb(&path, limits()).unwrap().dimensions(), (4, 4));
    // Folder data sets match such stems too.
    let defects = dir.path().join("defects");
    let masks = dir.path().join("masks");
    std::fs::create_dir_all(&defects).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    RgbImage::new(4, 4).save(defects.join(name)).unwrap();
    GrayImage::new(4, 4).save(masks.join(name)).unwrap();
    let set = FolderDataset::open(Some(&defects), Some(&masks), None).unwrap();
    assert_eq!(set.defects.len(), 1);
}

/// A folder under `root` nested until the path is about `len` bytes long (components of 200).
pub fn long_dir(root: &Path, len: usize) -> PathBuf {
    let mut dir = root.to_path_buf();
    let mut i = 0;
    while dir.as_os_str().len() + 201 < len {
        dir.push(format!("{i:03}{}", "d".repeat(197)));
        i += 1;
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(target_os = "linux")] // PATH_MAX and its error message
#[test]
fn very_long_paths_are_named_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let deep = long_dir(dir.path(), 4000);
    let path = deep.join("broken.png");
    assert!(path.as_os_str().len() > 3800);
    std::fs::write(&path, b"\x89PNG\r\n\x1a\nrest").unwrap();
    let text = err(load_rgb(&path, limits()));
    assert!(
        text.starts_with(&format!("{}: cannot decode image: ", d(&path))),
        "{text}"
    );
    // Beyond PATH_MAX the OS refuses the path; the error still carries all of it.
    let too_long = deep
        .join("x".repeat(200))
        .join("y".repeat(200))
        .join("z.png");
    assert!(too_long.as_os_str().len() > 4096);
    assert_eq!(
        err(load_rgb(&too_long, limits())),
        format!("{}: File name too long (os error 36)", d(&too_long))
    );
}

// ---------------------------------------------------------------------------------------------
// Float maps

#[test]
fn broken_float_maps_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u8.tiff");
    GrayImage::new(4, 4).save(&path).unwrap();
    assert_eq!(
        err(FloatMap::read(&path)),
        format!(
            "{}: anomaly map must be float32 (or float64), this TIFF holds uint8",
            d(&path)
        )
    );
    let path = dir.path().join("rgb.tiff");
    RgbImage::new(4, 4).save(&path).unwrap();
    assert_eq!(
        err(FloatMap::read(&path)),
        format!(
            "{}: anomaly map must be single-channel, this TIFF is RGB(8)",
            d(&path)
        )
    );
    let path = dir.path().join("bomb.tiff");
    std::fs::write(&path, tiff_declaring(100_000, 100_000)).unwrap();
    let text = err(FloatMap::read(&path));
    assert!(text.starts_with(&d(&path)), "{text}");

    let npy = |header: &str| {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 16]);
        bytes
    };
    let cases = [
        (
            "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }",
            "anomaly map must be little-endian float32 or float64, npy descr is '>f4'",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }",
            "npy shape overflows",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }",
            "npy data is 16 bytes, shape (100000, 100000) needs 40000000000 (truncated?)",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }",
            "anomaly map must be 2-D, npy shape is (2, 2, 2)",
        ),
    ];
    for (header, expected) in cases {
        let path = dir.path().join("m.npy");
        std::fs::write(&path, npy(header)).unwrap();
        assert_eq!(
            err(FloatMap::read(&path)),
            format!("{}: {expected}", d(&path))
        );
    }
    let path = dir.path().join("nan.npy");
    FloatMap {
        width: 2,
        height: 1,
        data: vec![0.5, f32::NAN],
    }
    .write_npy(&path)
    .unwrap();
    assert_eq!(
        err(FloatMap::read(&path)),
        format!("{}: map has a non-finite value (NaN) at pixel 1", d(&path))
    );
}

// ---------------------------------------------------------------------------------------------
// Model files

/// A small valid k-NN model, as `fit` would write it (without running a backbone).
fn knn_model() -> Result<FittedModel> {
    let config = ModelConfig {
        scoring: Scoring::Knn,
        ..ModelConfig::default()
    };
    let rows = Tensor::arange(0f32, 24., &Device::Cpu)?.reshape((4, 6))?;
    Ok(FittedModel {
        memory: Some(MemoryBank::from_rows(&rows, &config.knn)?),
        config,
        prototypes: None,
        defect_bank: None,
        knn_scale: None,
        reverse_supports: None,
        threshold: 0.5,
        threshold_rule: ThresholdRule::User,
        image_threshold: 0.5,
        head: None,
    })
}

/// Replaces the first occurrence of `from` in `bytes` by `to` (same length: offsets stay valid).
fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{} not in the file", String::from_utf8_lossy(from)));
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[test]
fn model_files_truncated_foreign_or_from_another_version_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("m.bpgg");
    knn_model()?.save(&path)?;
    let good = std::fs::read(&path)?;
    let load = |bytes: &[u8]| err(FittedModel::from_bytes(&path, bytes, &Device::Cpu));
    let p = d(&path);
    assert!(FittedModel::from_bytes(&path, &good, &Device::Cpu).is_ok());

    assert_eq!(
        load(&good[..good.len() - 1]),
        format!(
            "{p}: not a bpgg model file (invalid safetensors header: MetadataIncompleteBuffer)"
        )
    );
    assert_eq!(
        load(&good[..5]),
        format!("{p}: not a bpgg model file (invalid safetensors header: HeaderTooSmall)")
    );
    assert_eq!(
        load(b""),
        format!("{p}: not a bpgg model file (invalid safetensors header: HeaderTooSmall)")
    );
    assert_eq!(
        load(&patched(
            &good,
            b"\"bpgg_version\":\"3\"",
            b"\"bpgg_version\":\"7\""
        )),
        format!("{p}: model file version 7, this bpgg reads versions 1 to 3; refit it")
    );
    assert_eq!(
        load(&patched(&good, b"bpgg-model", b"bpgg-other")),
        format!("{p}: not a bpgg model file (no bpgg-model header)")
    );
    let text = load(&patched(
        &good,
        br#"\"scoring\":\"knn\""#,
        br#"\"scoring\":\"xyz\""#,
    ));
    assert!(
        text.starts_with(&format!(
            "{p}: model config is invalid: unknown variant `xyz`, expected one of `auto`"
        )),
        "{text}"
    );
    assert_eq!(
        load(&patched(
            &good,
            b"\"threshold\":\"0.5\"",
            b"\"threshold\":\"NaN\""
        )),
        format!("{p}: threshold `NaN` is not a finite number")
    );
    Ok(())
}

/// A safetensors file from a JSON header and a data body.
fn safetensors_bytes(header: &str, body: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn crafted_safetensors_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let body = [0u8; 16];
    let cases: [(Vec<u8>, &str); 8] = [
        // Offsets past the end of the data.
        (
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[400],"data_offsets":[0,1600]}}"#,
                &body,
            ),
            "MetadataIncompleteBuffer",
        ),
        // Two tensors over the same bytes.
        (
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                &body,
            ),
            "InvalidOffset(\"b\")",
        ),
        // Offsets that do not match the shape.
        (
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
                &body,
            ),
            "TensorInvalidInfo",
        ),
        // Reversed offsets.
        (
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}}"#,
                &body,
            ),
            "InvalidOffset(\"a\")",
        ),
        // A header length of 2^64 - 1.
        (
            [u64::MAX.to_le_bytes().as_slice(), b"{}"].concat(),
            "HeaderTooLarge",
        ),
        // A header length beyond the file.
        (
            [1000u64.to_le_bytes().as_slice(), b"{}"].concat(),
            "InvalidHeaderLength",
        ),
        // Not JSON.
        (
            safetensors_bytes("{not json}", &body),
            "InvalidHeaderDeserialization",
        ),
        // A shape whose element count overflows.
        (
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#,
                &body,
            ),
            "ValidationOverflow",
        ),
    ];
    for (bytes, expected) in cases {
        std::fs::write(&path, &bytes).unwrap();
        // As a weight file ...
        let text = err(load_state_dict(&path));
        assert!(
            text.starts_with(&format!(
                "{}: invalid weight file: invalid safetensors header: {expected}",
                d(&path)
            )),
            "{text}"
        );
        // ... and as a model file.
        let text = err(FittedModel::load(&path, &Device::Cpu));
        assert!(
            text.starts_with(&format!(
                "{}: not a bpgg model file (invalid safetensors header: {expected}",
                d(&path)
            )),
            "{text}"
        );
    }
}

#[test]
fn model_files_with_misshapen_or_non_finite_tensors_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("m.bpgg");
    knn_model()?.save(&path)?;
    let good = std::fs::read(&path)?;
    // Rewrite the tensors of a valid file, keeping its metadata.
    let (_, meta) = bpgg::backbone::weights::safetensors_from_bytes_with_metadata(&path, &good)?;
    let meta: std::collections::HashMap<String, String> =
        meta.into_iter().filter(|(k, _)| k != "format").collect();
    let cpu = Device::Cpu;
    let cases: [(Vec<(&str, Tensor)>, &str); 3] = [
        (
            vec![(
                "memory_bank",
                Tensor::zeros(6, candle_core::DType::F32, &cpu)?,
            )],
            "tensor memory_bank has shape [6], expected 2 dimensions",
        ),
        (
            vec![(
                "memory_bank",
                Tensor::new(&[[1f32, f32::INFINITY], [0., 1.]], &cpu)?,
            )],
            "tensor memory_bank holds a NaN or infinite value",
        ),
        (
            vec![
                (
                    "memory_bank",
                    Tensor::ones((2, 6), candle_core::DType::F32, &cpu)?,
                ),
                (
                    "support.features",
                    Tensor::ones((2, 6, 4, 4), candle_core::DType::F32, &cpu)?,
                ),
                (
                    "support.masks",
                    Tensor::ones((3, 1, 8, 8), candle_core::DType::F32, &cpu)?,
                ),
            ],
            "support features [2, 6, 4, 4] and masks [3, 1, 8, 8] must be (s, C, h, w) and \
             (s, 1, S, S)",
        ),
    ];
    for (tensors, expected) in cases {
        let sd = StateDict::new(
            tensors
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect(),
        )?;
        sd.save_safetensors_with_metadata(&path, meta.clone())?;
        assert_eq!(
            err(FittedModel::load(&path, &cpu)),
            format!("{}: {expected}", d(&path))
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Torch checkpoints: pickles that ask for more than a state dict

#[test]
fn pickle_opcodes_beyond_a_state_dict_are_refused_by_name() {
    let path = Path::new("hostile.pth");
    // (main pickle, offset of the refused opcode within it, message)
    let cases: [(&[u8], usize, &str); 10] = [
        (b"\x80\x02ccollections\nOrderedDict\n)\x81.", 28, "unsupported pickle opcode 0x81 (a state dict never needs it)"),
        (b"\x80\x02(ccollections\nOrderedDict\no.", 28, "unsupported pickle opcode 0x6f (a state dict never needs it)"),
        (b"\x80\x02\x82\x01.", 2, "unsupported pickle opcode 0x82 (a state dict never needs it)"),
        (b"\x80\x02P0\n.", 2, "unsupported pickle opcode 0x50 (a state dict never needs it)"),
        (b"\x80\x02]}b.", 4, "BUILD is only accepted on a dict with dict state"),
        (b"\x80\x02})R.", 4, "REDUCE on something that is not an allowed global"),
        (b"\x80\x02ctorch\nFloatStorage\n)R.", 23, "torch.FloatStorage called directly (a state dict never needs it)"),
        (b"\x80\x06}.", 0, "unknown pickle protocol 6"),
        (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(K\x00K\x00))\x89ccollections\nOrderedDict\n)Rtq\x00R.", 73, "tensor rebuild without a storage"),
        (b"\x80\x02(\x8c\x0asubprocess\x8c\x05Popen\x93.", 0, ""),
    ];
    for (main, offset, message) in cases {
        let bytes = legacy_checkpoint(main);
        let text = err(state_dict_from_bytes(path, &bytes).map(|(_, sd)| sd.len()));
        let expected = if message.is_empty() {
            "hostile.pth: invalid weight file: state dict: refusing pickle global \
             subprocess.Popen: a state dict never needs it"
                .to_string()
        } else {
            format!(
                "hostile.pth: invalid weight file: state dict: pickle byte {}: {message}",
                MAIN_PICKLE_START + offset
            )
        };
        assert_eq!(text, expected, "{}", String::from_utf8_lossy(main));
    }
    // A well-formed pickle whose root is not a dict.
    let text = err(state_dict_from_bytes(path, &legacy_checkpoint(b"\x80\x02K\x01.")).map(|_| ()));
    assert_eq!(
        text,
        "hostile.pth: invalid weight file: the checkpoint's top-level object is not a dict"
    );
}
