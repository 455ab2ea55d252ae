//! Float anomaly maps on disk: single-channel float32 TIFF (the MVTec AD convention) and NumPy
//! `.npy` (`<f4` or `<f8`, C order, shape `(h, w)`, `(1, h, w)` or `(h, w, 1)`).

use std::io::Cursor;
use std::path::Path;

use crate::data::image_io::Mask;
use crate::io::write_atomic;
use crate::{Error, Result};

/// A `width x height` map of `f32` scores, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatMap {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl FloatMap {
    /// Reads a `.tiff`/`.tif` or `.npy` map (chosen by extension).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    /// [`FloatMap::read`] on bytes already in memory; `path` chooses the format by its extension
    /// and names the map in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::invalid_data(path, "file is empty (0 bytes)"));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let map = match ext.as_deref() {
            Some("npy") => parse_npy(bytes).map_err(|p| Error::invalid_data(path, p))?,
            Some("tif" | "tiff") => parse_tiff(bytes).map_err(|p| Error::invalid_data(path, p))?,
            _ => {
                return Err(Error::invalid_data(
                    path,
                    "anomaly maps must be .tiff/.tif (float32) or .npy",
                ))
            }
        };
        if let Some(i) = map.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_data(
                path,
                format!("map has a non-finite value ({}) at pixel {i}", map.data[i]),
            ));
        }
        Ok(map)
    }

    /// Writes the map as a float32 TIFF, atomically (temp file in the same folder, then rename).
    pub fn write_tiff(&self, path: &Path) -> Result<()> {
        let bytes = self
            .to_tiff_bytes()
            .map_err(|e| Error::invalid_data(path, format!("cannot encode TIFF: {e}")))?;
        write_atomic(path, &bytes)
    }

    /// The map as a single-channel float32 TIFF file's bytes.
    pub fn to_tiff_bytes(&self) -> std::result::Result<Vec<u8>, tiff::TiffError> {
        let mut buf = Cursor::new(Vec::new());
        tiff::encoder::TiffEncoder::new(&mut buf)?
            .write_image::<tiff::encoder::colortype::Gray32Float>(
                self.width as u32,
                self.height as u32,
                &self.data,
            )?;
        Ok(buf.into_inner())
    }

    /// The map resized to `width x height` (bilinear, pixel centres aligned as in image
    /// resizing); a clone when the size is already right.
    pub fn resized(&self, width: usize, height: usize) -> FloatMap {
        if (self.width, self.height) == (width, height) {
            return self.clone();
        }
        let sx = self.width as f32 / width as f32;
        let sy = self.height as f32 / height as f32;
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (self.height - 1) as f32);
            let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
            let y1 = (y0 + 1).min(self.height - 1);
            for x in 0..width {
                let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (self.width - 1) as f32);
                let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
                let x1 = (x0 + 1).min(self.width - 1);
                let at = |yy: usize, xx: usize| self.data[yy * self.width + xx];
                let top = at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx;
                let bot = at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx;
                data.push(top * (1.0 - ty) + bot * ty);
            }
        }
        FloatMap {
            width,
            height,
            data,
        }
    }

    /// The binary mask `map >= threshold`.
    pub fn threshold(&self, threshold: f32) -> Mask {
        Mask {
            width: self.width as u32,
            height: self.height as u32,
            pixels: self.data.iter().map(|&v| v >= threshold).collect(),
        }
    }

    /// Writes the map as `.npy` (`<f4`, shape `(h, w)`), atomically.
    pub fn write_npy(&self, path: &Path) -> Result<()> {
        let mut header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
            self.height, self.width
        );
        // Magic (6) + version (2) + header length (2) + header + '\n', padded to 64 bytes.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        let mut bytes = Vec::with_capacity(10 + header.len() + self.data.len() * 4);
        bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in &self.data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        write_atomic(path, &bytes)
    }
}

fn parse_tiff(bytes: &[u8]) -> std::result::Result<FloatMap, String> {
    use tiff::decoder::{Decoder, DecodingResult, Limits};
    let mut dec = Decoder::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable TIFF: {e}"))?
        .with_limits(Limits::default());
    let (w, h) = dec
        .dimensions()
        .map_err(|e| format!("bad TIFF header: {e}"))?;
    let color = dec
        .colortype()
        .map_err(|e| format!("bad TIFF header: {e}"))?;
    if !matches!(color, tiff::ColorType::Gray(_)) {
        return Err(format!(
            "anomaly map must be single-channel, this TIFF is {color:?}"
        ));
    }
    let data = match dec
        .read_image()
        .map_err(|e| format!("cannot decode TIFF: {e}"))?
    {
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        other => {
            return Err(format!(
                "anomaly map must be float32 (or float64), this TIFF holds {}",
                match other {
                    DecodingResult::U8(_) => "uint8",
                    DecodingResult::U16(_) => "uint16",
                    _ => "another sample type",
                }
            ))
        }
    };
    let (w, h) = (w as usize, h as usize);
    if data.len() != w * h {
        return Err(format!("TIFF holds {} values for {w}x{h}", data.len()));
    }
    Ok(FloatMap {
        width: w,
        height: h,
        data,
    })
}

fn parse_npy(bytes: &[u8]) -> std::result::Result<FloatMap, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "non-text .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        Some(
            header[i + key.len() + 2..]
                .trim_start()
                .strip_prefix(':')?
                .trim_start(),
        )
    };
    let descr = field("descr").ok_or("npy header has no 'descr'")?;
    let elem = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(format!(
            "anomaly map must be little-endian float32 or float64, npy descr is {}",
            descr.split(',').next().unwrap_or(descr)
        ));
    };
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-ordered .npy is not supported; save with C order".into());
    }
    let shape_txt = field("shape").ok_or("npy header has no 'shape'")?;
    let inner = shape_txt
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("bad npy shape")?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad npy shape ({inner})"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let (h, w) = match dims.as_slice() {
        [h, w] | [1, h, w] | [h, w, 1] => (*h, *w),
        _ => return Err(format!("anomaly map must be 2-D, npy shape is ({inner})")),
    };
    let n = h.checked_mul(w).ok_or("npy shape overflows")?;
    let body = &bytes[start + header_len..];
    if body.len() != n.checked_mul(elem).ok_or("npy shape overflows")? {
        return Err(format!(
            "npy data is {} bytes, shape ({inner}) needs {} (truncated?)",
            body.len(),
            n.saturating_mul(elem)
        ));
    }
    let data = if elem == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect()
    };
    Ok(FloatMap {
        width: w,
        height: h,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiff_and_npy_round_trip_and_truncation_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let map = FloatMap {
            width: 3,
            height: 2,
            data: vec![0.0, 0.5, 1.0, -2.0, 3.25, 1e-7],
        };
        let t = dir.path().join("a.tiff");
        map.write_tiff(&t).unwrap();
        assert_eq!(FloatMap::read(&t).unwrap(), map);
        let n = dir.path().join("a.npy");
        map.write_npy(&n).unwrap();
        assert_eq!(FloatMap::read(&n).unwrap(), map);
        let bytes = std::fs::read(&n).unwrap();
        std::fs::write(&n, &bytes[..bytes.len() - 3]).unwrap();
        let err = FloatMap::read(&n).unwrap_err().to_string();
        assert!(err.contains("a.npy") && err.contains("truncated"), "{err}");
        let bytes = std::fs::read(&t).unwrap();
        std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
        let err = FloatMap::read(&t).unwrap_err().to_string();
        assert!(err.contains("a.tiff"), "{err}");
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
