//! The model's working resolution: at which size an image is looked at ([`InputSize`]) and
//! whether it is encoded whole or in overlapping tiles ([`TileConfig`]).
//!
//! Both are fields of [`super::ModelConfig`] (`size` and `tile`); `docs/ARCHITECTURE.md`
//! ("Resolution") explains the pipeline they drive, [`super::tiling`] carries it out.
//!
//! JSON forms of `size`: `256` (long side 256 px, aspect kept), `"640x480"` (exactly 640 x 480),
//! `"native"` (the image's own size), `{"scale": 0.5}` (the image's own size times 0.5).
//! `tile`: absent or `null` (whole images) or `{"size": 256, "overlap": 32}`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The side of the default square working size (the usual MVTec protocol's 256 x 256 px).
pub const DEFAULT_IMAGE_SIZE: u32 = 256;

/// Input sides are padded up to a multiple of this many pixels, so that the stride-8 and
/// stride-16 stages of every backbone divide them evenly and a tile's feature cells line up
/// with the whole image's.
pub const INPUT_MULTIPLE: u32 = 16;

/// Smallest and largest side accepted for `size` and `tile.size`, in pixels.
pub const MIN_SIDE: u32 = 16;
pub const MAX_SIDE: u32 = 4096;

/// Largest scale factor of [`InputSize::Scale`].
pub const MAX_SCALE: f32 = 8.0;

/// The largest image encoded in one piece, in pixels (after resizing and padding). Bigger
/// working images need tiles: the backbone's activations grow with the pixel count.
pub const MAX_UNTILED_PIXELS: u64 = 4096 * 4096;

/// Default tile side, pixels.
pub const DEFAULT_TILE_SIZE: u32 = 256;

/// Default overlap of neighbouring tiles, pixels: four cells of the stride-8 feature grid,
/// over which neighbouring tiles' scores are blended.
pub const DEFAULT_TILE_OVERLAP: u32 = 32;

/// At which size the model looks at an image: the size its anomaly map is computed at (and
/// `bpgg eval` compares at) before the map is brought back to the image's own size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputSize {
    /// The long side becomes this many pixels; the aspect ratio is kept. JSON: a number.
    LongSide(u32),
    /// Exactly `width x height` (the aspect ratio is not kept). JSON: `"640x480"`.
    Exact { width: u32, height: u32 },
    /// The image's own size times this factor; `1` is native resolution. JSON: `"native"` or
    /// `{"scale": 0.5}`.
    Scale(f32),
}

impl Default for InputSize {
    /// [`DEFAULT_IMAGE_SIZE`] x [`DEFAULT_IMAGE_SIZE`]: the setting the results table was
    /// measured with. On magnetic_tile it scored a higher pixel AP than the long side 256 (aspect
    /// kept), see `docs/ARCHITECTURE.md` ("Resolution").
    fn default() -> Self {
        Self::Exact {
            width: DEFAULT_IMAGE_SIZE,
            height: DEFAULT_IMAGE_SIZE,
        }
    }
}

impl InputSize {
    /// Native resolution.
    pub const NATIVE: InputSize = InputSize::Scale(1.0);

    /// Checks the sides and the factor.
    pub fn validate(&self) -> Result<()> {
        let side = |name: &str, v: u32| -> Result<()> {
            if (MIN_SIDE..=MAX_SIDE).contains(&v) {
                Ok(())
            } else {
                Err(Error::InvalidConfig(format!(
                    "{name} must be in {MIN_SIDE}..={MAX_SIDE} pixels, got {v}"
                )))
            }
        };
        match *self {
            Self::LongSide(n) => side("size (long side)", n),
            Self::Exact { width, height } => {
                side("size (width)", width)?;
                side("size (height)", height)
            }
            Self::Scale(s) => {
                if s.is_finite() && s > 0.0 && s <= MAX_SCALE {
                    Ok(())
                } else {
                    Err(Error::InvalidConfig(format!(
                        "scale must be in (0, {MAX_SCALE}], got {s}"
                    )))
                }
            }
        }
    }

    /// The working size of a `width x height` image (each side at least 1 pixel).
    pub fn working_size(&self, width: u32, height: u32) -> (u32, u32) {
        let scaled = |v: u32, f: f64| ((f64::from(v) * f).round() as u32).max(1);
        match *self {
            Self::LongSide(n) => {
                let f = f64::from(n) / f64::from(width.max(height).max(1));
                if width >= height {
                    (n, scaled(height, f).min(n))
                } else {
                    (scaled(width, f).min(n), n)
                }
            }
            Self::Exact { width, height } => (width, height),
            Self::Scale(s) => (scaled(width, f64::from(s)), scaled(height, f64::from(s))),
        }
    }
}

impl fmt::Display for InputSize {
    /// `256`, `640x480`, `native` or `x0.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::LongSide(n) => write!(f, "{n}"),
            Self::Exact { width, height } => write!(f, "{width}x{height}"),
            Self::Scale(1.0) => f.write_str("native"),
            Self::Scale(s) => write!(f, "x{s}"),
        }
    }
}

impl FromStr for InputSize {
    type Err = Error;

    /// `N` (long side), `WxH` (exact), `native`; what `--size` takes.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidConfig(format!(
                "size `{s}`: expected N (long side, aspect kept), WxH (exact size) or native"
            ))
        };
        let s = s.trim();
        if s.eq_ignore_ascii_case("native") {
            return Ok(Self::NATIVE);
        }
        let size = match s.split_once(['x', 'X']) {
            Some((w, h)) => Self::Exact {
                width: w.trim().parse().map_err(|_| bad())?,
                height: h.trim().parse().map_err(|_| bad())?,
            },
            None => Self::LongSide(s.parse().map_err(|_| bad())?),
        };
        size.validate()?;
        Ok(size)
    }
}

impl Serialize for InputSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match *self {
            Self::LongSide(n) => serializer.serialize_u32(n),
            Self::Scale(s) if s != 1.0 => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("scale", &s)?;
                map.end()
            }
            other => serializer.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for InputSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct SizeVisitor;

        impl<'de> Visitor<'de> for SizeVisitor {
            type Value = InputSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a long side in pixels (256), an exact size (\"640x480\"), \"native\" or \
                     {\"scale\": 0.5}",
                )
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<InputSize, E> {
                let n =
                    u32::try_from(v).map_err(|_| E::custom(format!("size {v} is too large")))?;
                Ok(InputSize::LongSide(n))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<InputSize, E> {
                Err(E::custom(format!("size must be positive, got {v}")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<InputSize, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<InputSize, A::Error> {
                let mut scale = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "scale" => scale = Some(map.next_value::<f32>()?),
                        other => return Err(de::Error::unknown_field(other, &["scale"])),
                    }
                }
                scale
                    .map(InputSize::Scale)
                    .ok_or_else(|| de::Error::missing_field("scale"))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Tiles: the working image is cut into overlapping `size x size` tiles, each tile is
/// encoded and scored on its own, and the scores are stitched back with the overlaps blended,
/// so that memory does not grow with the image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TileConfig {
    /// Tile side in pixels of the working image. Default [`DEFAULT_TILE_SIZE`].
    pub size: u32,
    /// Least overlap of neighbouring tiles in pixels (tiles are spread evenly, so some overlap
    /// more); the scores are blended linearly across it. Default [`DEFAULT_TILE_OVERLAP`].
    pub overlap: u32,
}

impl Default for TileConfig {
    fn default() -> Self {
        Self {
            size: DEFAULT_TILE_SIZE,
            overlap: DEFAULT_TILE_OVERLAP,
        }
    }
}

impl TileConfig {
    /// Checks the tile side (a multiple of [`INPUT_MULTIPLE`] in `32..=4096`) and that the
    /// overlap is a multiple of 8 below half the tile.
    pub fn validate(&self) -> Result<()> {
        if !(32..=MAX_SIDE).contains(&self.size) || !self.size.is_multiple_of(INPUT_MULTIPLE) {
            return Err(Error::InvalidConfig(format!(
                "tile size must be a multiple of {INPUT_MULTIPLE} in 32..={MAX_SIDE}, got {}",
                self.size
            )));
        }
        if !self.overlap.is_multiple_of(8) || self.overlap * 2 > self.size {
            return Err(Error::InvalidConfig(format!(
                "tile overlap must be a multiple of 8 and at most half the tile ({}), got {}",
                self.size / 2,
                self.overlap
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_print_and_round_trip_through_json() {
        let cases = [
            ("256", InputSize::LongSide(256), "256"),
            (
                "640x480",
                InputSize::Exact {
                    width: 640,
                    height: 480,
                },
                "\"640x480\"",
            ),
            ("native", InputSize::NATIVE, "\"native\""),
        ];
        for (text, size, json) in cases {
            assert_eq!(text.parse::<InputSize>().unwrap(), size);
            assert_eq!(serde_json::to_string(&size).unwrap(), json);
            assert_eq!(serde_json::from_str::<InputSize>(json).unwrap(), size);
        }
        let half = InputSize::Scale(0.5);
        let json = serde_json::to_string(&half).unwrap();
        assert_eq!(json, r#"{"scale":0.5}"#);
        assert_eq!(serde_json::from_str::<InputSize>(&json).unwrap(), half);
        for bad in ["abc", "640x", "0", "640x480x3", "-5", "99999"] {
            assert!(bad.parse::<InputSize>().is_err(), "{bad}");
        }
        for bad in [r#"{"scal": 2}"#, "-3", "1.5", "true"] {
            assert!(serde_json::from_str::<InputSize>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn working_sizes_keep_the_aspect_or_follow_the_rule() {
        let long = InputSize::LongSide(256);
        assert_eq!(long.working_size(4096, 256), (256, 16));
        assert_eq!(long.working_size(300, 600), (128, 256));
        assert_eq!(long.working_size(5000, 1), (256, 1));
        assert_eq!(
            InputSize::Exact {
                width: 64,
                height: 32
            }
            .working_size(7, 9),
            (64, 32)
        );
        assert_eq!(InputSize::Scale(2.0).working_size(103, 400), (206, 800));
        assert_eq!(InputSize::NATIVE.working_size(4096, 256), (4096, 256));
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(InputSize::Scale(0.0).validate().is_err());
        assert!(InputSize::Scale(f32::NAN).validate().is_err());
        assert!(InputSize::LongSide(8).validate().is_err());
        for (size, overlap) in [(100, 0), (16, 0), (256, 12), (256, 136)] {
            assert!(TileConfig { size, overlap }.validate().is_err());
        }
        TileConfig::default().validate().unwrap();
    }
}
