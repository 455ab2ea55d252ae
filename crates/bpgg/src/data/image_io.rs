//! Reading images and masks from disk, with the checks every file gets.
//!
//! Formats: PNG, JPEG, TIFF, BMP and WebP, recognised from the bytes. Images are returned as
//! 8-bit RGB: grayscale is expanded, 16-bit samples are scaled to 8 bits over their whole range
//! (`round(v · 255 / 65535)`, never clipped), and an orientation recorded in the file (the EXIF
//! orientation of a camera JPEG, the TIFF orientation tag) is applied, so the pixels are the
//! upright picture a viewer shows; sizes (and the mask-size check) are those of the upright
//! picture. Masks are binary [`Mask`]s where a pixel of an 8-bit mask is defect when its gray
//! value is **greater than 127** (anti-aliased or JPEG-compressed masks are binarised the same way
//! everywhere). A 16-bit mask is lossless and often holds small labels (0/1, 0/255), so there
//! **any nonzero** value is defect.
//!
//! Every file goes through one decoder, [`decode_image_bytes`], which also serves callers that
//! hold the bytes in memory (and the fuzzers): the path only names the file in errors.

use std::io::{BufReader, Cursor};
use std::path::Path;

use image::metadata::Orientation;
use image::{ColorType, DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};

use crate::{Error, Result};

/// The largest image, in pixels, that is decoded without `--max-pixels` being raised.
/// 64 Mpx is 8192 x 8192: larger declared sizes are treated as decompression bombs.
pub const DEFAULT_MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Gray values above this are defect pixels in an 8-bit mask (16-bit masks: any nonzero value).
pub const MASK_THRESHOLD: u8 = 127;

/// The problem reported for a file that ends before its image data does.
const TRUNCATED: &str =
    "cannot decode image: the file is truncated (it ends inside the image data)";

/// Allocation headroom given to a decoder beyond the decoded buffer itself.
const DECODER_SCRATCH_BYTES: u64 = 64 << 20;

/// Limits applied when decoding any image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest `width * height` accepted.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// A binary defect mask, row-major, `true` = defect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<bool>,
}

impl Mask {
    /// An all-normal mask.
    pub fn empty(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![false; width as usize * height as usize],
        }
    }

    /// Binarises a gray image (value > [`MASK_THRESHOLD`] is defect).
    pub fn from_gray(gray: &GrayImage) -> Self {
        Self {
            width: gray.width(),
            height: gray.height(),
            pixels: gray.as_raw().iter().map(|&v| v > MASK_THRESHOLD).collect(),
        }
    }

    /// As a gray image with 0 / 255.
    pub fn to_gray(&self) -> GrayImage {
        let raw = self
            .pixels
            .iter()
            .map(|&d| if d { 255 } else { 0 })
            .collect();
        GrayImage::from_raw(self.width, self.height, raw).expect("mask buffer matches its size")
    }

    /// Number of defect pixels.
    pub fn defect_pixels(&self) -> usize {
        self.pixels.iter().filter(|&&d| d).count()
    }

    /// Share of the image that is defect, in `[0, 1]`.
    pub fn coverage(&self) -> f64 {
        if self.pixels.is_empty() {
            0.0
        } else {
            self.defect_pixels() as f64 / self.pixels.len() as f64
        }
    }
}

/// Reads the (upright) size of an image from its header without decoding the pixels.
pub fn image_dimensions(path: &Path) -> Result<(u32, u32)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Err(empty_file(path));
    }
    let reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if reader.format().is_none() {
        return Err(unsupported_format(path));
    }
    let decode_error = |source| Error::ImageDecode {
        path: path.to_path_buf(),
        source,
    };
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (w, h) = decoder.dimensions();
    Ok(upright_size(
        w,
        h,
        decoder.orientation().map_err(decode_error)?,
    ))
}

/// The size of a `w x h` picture once `orientation` is applied.
fn upright_size(w: u32, h: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    }
}

/// Decodes an image file as 8-bit RGB.
///
/// The format is detected from the contents, not the extension. Zero-byte, truncated and corrupt
/// files, and files whose declared size exceeds `limits`, give an error naming the file.
pub fn load_rgb(path: &Path, limits: ImageLimits) -> Result<RgbImage> {
    Ok(decode_image_bytes(path, &read_file(path)?, limits)?.to_rgb8())
}

/// Decodes an image and reports how many channels the file stores (1 gray, 2 gray+alpha,
/// 3 RGB, 4 RGBA) besides returning it as RGB.
pub fn load_rgb_with_channels(path: &Path, limits: ImageLimits) -> Result<(RgbImage, u8)> {
    let img = decode_image_bytes(path, &read_file(path)?, limits)?;
    let channels = img.color().channel_count();
    Ok((img.to_rgb8(), channels))
}

/// Decodes a mask file and binarises it.
///
/// When `expected` is given, the mask must have exactly that `(width, height)`: a mask of another
/// size than its image is an error, never silently resized.
pub fn load_mask(path: &Path, expected: Option<(u32, u32)>, limits: ImageLimits) -> Result<Mask> {
    decode_mask_bytes(path, &read_file(path)?, expected, limits)
}

/// [`load_mask`] on bytes already in memory; `path` only names them in errors.
pub fn decode_mask_bytes(
    path: &Path,
    bytes: &[u8],
    expected: Option<(u32, u32)>,
    limits: ImageLimits,
) -> Result<Mask> {
    let img = decode_image_bytes(path, bytes, limits)?;
    let (width, height) = (img.width(), img.height());
    if let Some((w, h)) = expected {
        if (width, height) != (w, h) {
            return Err(Error::invalid_data(
                path,
                format!("mask is {width}x{height} but its image is {w}x{h}"),
            ));
        }
    }
    let sixteen_bit = matches!(
        img.color(),
        ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16
    );
    if sixteen_bit {
        let pixels = img.to_luma16().as_raw().iter().map(|&v| v > 0).collect();
        return Ok(Mask {
            width,
            height,
            pixels,
        });
    }
    Ok(Mask::from_gray(&img.to_luma8()))
}

/// Decodes an image held in memory (PNG, JPEG, TIFF, BMP or WebP, detected from the bytes), with
/// the orientation recorded in the file applied; `path` only names it in errors.
///
/// Before any pixel is decoded, the declared size is checked against `limits` (a small file can
/// declare a huge image: a decompression bomb), and the decoder's allocations are capped to what
/// that size needs.
pub fn decode_image_bytes(
    path: &Path,
    bytes: &[u8],
    limits: ImageLimits,
) -> Result<image::DynamicImage> {
    if bytes.is_empty() {
        return Err(empty_file(path));
    }
    let decode_error = |source: image::ImageError| match source {
        // The decoders report a cut file as a bare I/O "unexpected end of file".
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::invalid_data(path, TRUNCATED)
        }
        source => Error::ImageDecode {
            path: path.to_path_buf(),
            source,
        },
    };
    let reader = || -> Result<ImageReader<Cursor<&[u8]>>> {
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::io(path, e))?;
        if reader.format().is_none() {
            return Err(unsupported_format(path));
        }
        Ok(reader)
    };
    let mut decoder = reader()?.into_decoder().map_err(decode_error)?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels == 0 {
        return Err(Error::invalid_data(
            path,
            format!("image has no pixels ({w}x{h})"),
        ));
    }
    if pixels > limits.max_pixels {
        return Err(Error::ImageTooLarge {
            path: path.to_path_buf(),
            width: w,
            height: h,
            limit: limits.max_pixels,
        });
    }
    let mut decoder_limits = image::Limits::default();
    // Room for the decoded buffer at 16 bits x 4 channels, plus decoder scratch.
    decoder_limits.max_alloc = Some(
        pixels
            .saturating_mul(8)
            .saturating_add(DECODER_SCRATCH_BYTES),
    );
    decoder_limits
        .reserve(decoder.total_bytes())
        .map_err(decode_error)?;
    decoder.set_limits(decoder_limits).map_err(decode_error)?;
    let orientation = decoder.orientation().map_err(decode_error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    Ok(image)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn empty_file(path: &Path) -> Error {
    Error::invalid_data(path, "file is empty (0 bytes)")
}

fn unsupported_format(path: &Path) -> Error {
    Error::invalid_data(
        path,
        "not an image in a supported format (PNG, JPEG, TIFF, BMP, WebP)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_threshold_is_strictly_above_127() {
        let g = GrayImage::from_raw(4, 1, vec![0, 127, 128, 255]).unwrap();
        assert_eq!(Mask::from_gray(&g).pixels, vec![false, false, true, true]);
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").unwrap();
        let err = load_rgb(&empty, ImageLimits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("empty.png") && err.contains("0 bytes"),
            "{err}"
        );

        let garbage = dir.path().join("garbage.png");
        std::fs::write(&garbage, b"this is not an image at all").unwrap();
        let err = load_rgb(&garbage, ImageLimits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("garbage.png") && err.contains("supported format"),
            "{err}"
        );

        let good = dir.path().join("good.png");
        RgbImage::from_pixel(32, 32, image::Rgb([10, 20, 30]))
            .save(&good)
            .unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.path().join("cut.png");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_rgb(&cut, ImageLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut.png"), "{err}");

        let err = load_rgb(&good, ImageLimits { max_pixels: 100 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the limit"), "{err}");

        let mask = dir.path().join("m.png");
        GrayImage::new(16, 16).save(&mask).unwrap();
        let err = load_mask(&mask, Some((32, 32)), ImageLimits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.png: mask is 16x16 but its image is 32x32"),
            "{err}"
        );
    }
}
