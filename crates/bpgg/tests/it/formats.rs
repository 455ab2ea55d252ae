//! The image formats people have: BMP and WebP, 16-bit PNG and TIFF (scaled to 8 bits, not
//! clipped), JPEGs with an EXIF orientation (applied, masks checked against the upright size).

use anyhow::Result;
use bpgg::data::image_io::{image_dimensions, load_mask, load_rgb, ImageLimits};
use image::{ImageBuffer, Luma, Rgb, RgbImage};

/// A 6 x 4 picture whose pixels tell where they are: red = 40·x, green = 60·y, blue 200.
fn picture() -> RgbImage {
    RgbImage::from_fn(6, 4, |x, y| Rgb([(40 * x) as u8, (60 * y) as u8, 200]))
}

#[test]
fn bmp_and_webp_decode_to_the_same_pixels_as_png() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let limits = ImageLimits::default();
    let expected = picture();
    for name in ["p.png", "p.bmp", "p.webp"] {
        let path = dir.path().join(name);
        expected.save(&path)?; // WebP is written lossless
        assert_eq!(load_rgb(&path, limits)?, expected, "{name}");
        assert_eq!(image_dimensions(&path)?, (6, 4), "{name}");
    }
    // A gray BMP mask pairs with its image like a PNG one.
    let mask =
        ImageBuffer::<Luma<u8>, _>::from_fn(6, 4, |x, _| Luma([if x < 2 { 255 } else { 0 }]));
    let path = dir.path().join("m.bmp");
    mask.save(&path)?;
    assert_eq!(load_mask(&path, Some((6, 4)), limits)?.defect_pixels(), 8);
    Ok(())
}

#[test]
fn sixteen_bit_png_and_tiff_are_scaled_not_clipped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let limits = ImageLimits::default();
    // Values across the whole 16-bit range, including ones far above 255.
    let values: [u16; 6] = [0, 257, 1000, 32768, 60000, 65535];
    let gray = ImageBuffer::<Luma<u16>, _>::from_fn(6, 1, |x, _| Luma([values[x as usize]]));
    let rgb = ImageBuffer::<Rgb<u16>, _>::from_fn(6, 1, |x, _| {
        let v = values[x as usize];
        Rgb([v, 65535 - v, v / 2])
    });
    let scaled = |v: u16| (f64::from(v) * 255.0 / 65535.0).round() as u8;
    for ext in ["png", "tiff"] {
        let path = dir.path().join(format!("gray16.{ext}"));
        gray.save(&path)?;
        let img = load_rgb(&path, limits)?;
        let got: Vec<u8> = img.pixels().map(|p| p[0]).collect();
        let want: Vec<u8> = values.iter().map(|&v| scaled(v)).collect();
        assert_eq!(got, want, "{ext}");
        assert_eq!(want, [0, 1, 4, 128, 233, 255]);

        let path = dir.path().join(format!("rgb16.{ext}"));
        rgb.save(&path)?;
        let img = load_rgb(&path, limits)?;
        for (x, p) in img.pixels().enumerate() {
            let v = values[x];
            assert_eq!(
                p.0,
                [scaled(v), scaled(65535 - v), scaled(v / 2)],
                "{ext} x={x}"
            );
        }
    }
    Ok(())
}

/// A JPEG of `image` with an EXIF APP1 segment holding only `Orientation = orientation`.
fn jpeg_with_orientation(image: &RgbImage, orientation: u16) -> Result<Vec<u8>> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 100).encode_image(image)?;
    // TIFF header (little endian), one IFD entry: tag 0x0112, type SHORT, count 1, value.
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    Ok(out)
}

#[test]
fn exif_orientation_of_a_jpeg_is_applied() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let limits = ImageLimits::default();
    // Large flat quadrants survive JPEG compression: left half dark, right half bright.
    let stored = RgbImage::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([20, 20, 20])
        } else {
            Rgb([230, 230, 230])
        }
    });
    // EXIF 6: the camera was turned, view rotated 90° clockwise: stored left becomes top.
    let path = dir.path().join("camera.jpg");
    std::fs::write(&path, jpeg_with_orientation(&stored, 6)?)?;
    assert_eq!(image_dimensions(&path)?, (16, 32));
    let upright = load_rgb(&path, limits)?;
    assert_eq!(upright.dimensions(), (16, 32));
    assert!(
        upright.get_pixel(8, 4)[0] < 60,
        "top is the stored left (dark)"
    );
    assert!(
        upright.get_pixel(8, 28)[0] > 190,
        "bottom is the stored right (bright)"
    );
    // A mask drawn on the upright picture matches it; one of the stored size does not.
    let mask_path = dir.path().join("camera_mask.png");
    ImageBuffer::<Luma<u8>, _>::new(16, 32).save(&mask_path)?;
    load_mask(&mask_path, Some(upright.dimensions()), limits)?;
    assert!(load_mask(&mask_path, Some((32, 16)), limits).is_err());
    // EXIF 3 (upside down) keeps the size and turns the picture.
    std::fs::write(&path, jpeg_with_orientation(&stored, 3)?)?;
    let turned = load_rgb(&path, limits)?;
    assert_eq!(turned.dimensions(), (32, 16));
    assert!(turned.get_pixel(4, 8)[0] > 190 && turned.get_pixel(28, 8)[0] < 60);
    // Without the segment nothing changes.
    let plain = dir.path().join("plain.jpg");
    stored.save(&plain)?;
    assert_eq!(load_rgb(&plain, limits)?.dimensions(), (32, 16));
    Ok(())
}
