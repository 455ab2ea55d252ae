//! Synthetic data sets for tests and the demo: procedural textures with synthetic defects
//! (scratches, cracks, blobs, stains) and exact masks, written in the MVTec layout.
//!
//! Every defect is painted with a hard edge, so its mask is exactly the set of pixels it
//! changed. The same seed writes the same bytes.

use std::path::{Path, PathBuf};

use image::{GrayImage, Rgb, RgbImage};

use crate::data::image_io::Mask;
use crate::data::mvtec::GOOD;
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// The defect kinds the generator paints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefectKind {
    /// A thin straight line, brighter or darker than the surface.
    Scratch,
    /// A dark, jagged random-walk line.
    Crack,
    /// A filled ellipse of another brightness.
    Blob,
    /// An irregular tinted patch.
    Stain,
}

impl DefectKind {
    /// All kinds, in folder order.
    pub const ALL: [DefectKind; 4] = [Self::Blob, Self::Crack, Self::Scratch, Self::Stain];

    /// The folder name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::Crack => "crack",
            Self::Blob => "blob",
            Self::Stain => "stain",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Category folder name.
    pub category: String,
    /// Image side in pixels.
    pub size: u32,
    /// Images in `train/good`.
    pub train_good: usize,
    /// Images in `test/good`.
    pub test_good: usize,
    /// Images per defect type.
    pub per_type: usize,
    /// Defect types to write.
    pub kinds: Vec<DefectKind>,
    /// Seed of everything.
    pub seed: u64,
}

impl Default for SynthConfig {
    /// One category `synthetic_tile`, 128 px, 20 train/good, 8 test/good, 8 per defect type,
    /// all four kinds, seed 0.
    fn default() -> Self {
        Self {
            category: "synthetic_tile".into(),
            size: 128,
            train_good: 20,
            test_good: 8,
            per_type: 8,
            kinds: DefectKind::ALL.to_vec(),
            seed: 0,
        }
    }
}

impl SynthConfig {
    /// Checks the values once, before anything is written.
    pub fn validate(&self) -> Result<()> {
        if !(16..=4096).contains(&self.size) {
            return Err(Error::InvalidConfig(format!(
                "synthetic image size must be 16..=4096 px, got {}",
                self.size
            )));
        }
        if self.category.is_empty() || self.category.contains(['/', '\\']) {
            return Err(Error::InvalidConfig(format!(
                "category name '{}' must be a plain folder name",
                self.category
            )));
        }
        if self.per_type == 0 && !self.kinds.is_empty() {
            return Err(Error::InvalidConfig("per_type must be at least 1".into()));
        }
        Ok(())
    }
}

/// The surface of one product: a few gratings plus value noise, shared by all its images.
#[derive(Debug, Clone)]
struct Surface {
    base: [f32; 3],
    gratings: Vec<(f32, f32, f32, f32)>, // (fx, fy, amplitude, phase)
    noise_amp: f32,
}

impl Surface {
    fn new(rng: &mut SplitMix64) -> Self {
        let g = rng.range_f32(90.0, 150.0);
        let base = [
            g + rng.range_f32(-15.0, 15.0),
            g,
            g + rng.range_f32(-15.0, 15.0),
        ];
        let gratings = (0..3)
            .map(|_| {
                let angle = rng.range_f32(0.0, std::f32::consts::PI);
                let freq = rng.range_f32(0.05, 0.25);
                (
                    freq * angle.cos(),
                    freq * angle.sin(),
                    rng.range_f32(6.0, 16.0),
                    rng.range_f32(0.0, std::f32::consts::TAU),
                )
            })
            .collect();
        Self {
            base,
            gratings,
            noise_amp: rng.range_f32(6.0, 12.0),
        }
    }

    /// One defect-free image: the surface with a random shift and fresh noise.
    fn render(&self, size: u32, rng: &mut SplitMix64) -> RgbImage {
        let (dx, dy) = (rng.range_f32(0.0, 50.0), rng.range_f32(0.0, 50.0));
        let noise = value_noise(size, 8, rng);
        let fine: Vec<f32> = (0..size * size).map(|_| rng.normal()).collect();
        RgbImage::from_fn(size, size, |x, y| {
            let (xf, yf) = (x as f32 + dx, y as f32 + dy);
            let mut v: f32 = self
                .gratings
                .iter()
                .map(|(fx, fy, a, p)| a * (fx * xf + fy * yf + p).sin())
                .sum();
            let i = (y * size + x) as usize;
            v += self.noise_amp * noise[i] + 3.0 * fine[i];
            Rgb(self.base.map(|b| (b + v).clamp(0.0, 255.0) as u8))
        })
    }
}

/// Smooth noise in `[-1, 1]`: random values on a coarse grid, bilinearly interpolated.
fn value_noise(size: u32, cell: u32, rng: &mut SplitMix64) -> Vec<f32> {
    let n = size / cell + 2;
    let grid: Vec<f32> = (0..n * n).map(|_| rng.range_f32(-1.0, 1.0)).collect();
    let mut out = Vec::with_capacity((size * size) as usize);
    for y in 0..size {
        for x in 0..size {
            let (gx, gy) = (x as f32 / cell as f32, y as f32 / cell as f32);
            let (x0, y0) = (gx as u32, gy as u32);
            let (tx, ty) = (gx - x0 as f32, gy - y0 as f32);
            let at = |xx: u32, yy: u32| grid[(yy * n + xx) as usize];
            let top = at(x0, y0) * (1.0 - tx) + at(x0 + 1, y0) * tx;
            let bot = at(x0, y0 + 1) * (1.0 - tx) + at(x0 + 1, y0 + 1) * tx;
            out.push(top * (1.0 - ty) + bot * ty);
        }
    }
    out
}

/// Paints one defect of `kind` on `image` and returns its exact mask (never empty).
pub fn paint_defect(image: &mut RgbImage, kind: DefectKind, rng: &mut SplitMix64) -> Mask {
    let (w, h) = image.dimensions();
    let mut mask = Mask::empty(w, h);
    let s = w.min(h) as f32;
    let mark = |mask: &mut Mask, x: f32, y: f32| {
        if x >= 0.0 && y >= 0.0 && (x as u32) < w && (y as u32) < h {
            mask.pixels[(y as u32 * w + x as u32) as usize] = true;
        }
    };
    match kind {
        DefectKind::Scratch => {
            let (x0, y0) = (rng.range_f32(0.2, 0.8) * s, rng.range_f32(0.2, 0.8) * s);
            let angle = rng.range_f32(0.0, std::f32::consts::TAU);
            let len = rng.range_f32(0.25, 0.5) * s;
            let half_width = rng.range_f32(0.5, 1.5);
            let steps = (len * 2.0) as usize;
            for i in 0..=steps {
                let t = i as f32 / 2.0;
                let (cx, cy) = (x0 + t * angle.cos(), y0 + t * angle.sin());
                let r = half_width.ceil() as i32;
                for oy in -r..=r {
                    for ox in -r..=r {
                        if ((ox * ox + oy * oy) as f32).sqrt() <= half_width {
                            mark(&mut mask, cx + ox as f32, cy + oy as f32);
                        }
                    }
                }
            }
        }
        DefectKind::Crack => {
            let (mut x, mut y) = (rng.range_f32(0.2, 0.8) * s, rng.range_f32(0.2, 0.8) * s);
            let mut angle = rng.range_f32(0.0, std::f32::consts::TAU);
            let steps = (rng.range_f32(0.3, 0.6) * s) as usize;
            for _ in 0..steps {
                angle += rng.range_f32(-0.6, 0.6);
                x += angle.cos();
                y += angle.sin();
                mark(&mut mask, x, y);
                mark(&mut mask, x + 1.0, y);
            }
        }
        DefectKind::Blob | DefectKind::Stain => {
            let (cx, cy) = (rng.range_f32(0.25, 0.75) * s, rng.range_f32(0.25, 0.75) * s);
            let (rx, ry) = (rng.range_f32(0.04, 0.12) * s, rng.range_f32(0.04, 0.12) * s);
            let rot = rng.range_f32(0.0, std::f32::consts::PI);
            // Stains get a wobbly outline: radius modulated by a few harmonics.
            let wobble: Vec<(f32, f32)> = if kind == DefectKind::Stain {
                (2..5)
                    .map(|k| (k as f32, rng.range_f32(0.05, 0.2)))
                    .collect()
            } else {
                Vec::new()
            };
            for y in 0..h {
                for x in 0..w {
                    let (px, py) = (x as f32 - cx, y as f32 - cy);
                    let (u, v) = (
                        px * rot.cos() + py * rot.sin(),
                        -px * rot.sin() + py * rot.cos(),
                    );
                    let theta = v.atan2(u);
                    let scale = 1.0
                        + wobble
                            .iter()
                            .map(|(k, a)| a * (k * theta).sin())
                            .sum::<f32>();
                    if (u / rx).powi(2) + (v / ry).powi(2) <= scale * scale {
                        mark(&mut mask, x as f32, y as f32);
                    }
                }
            }
        }
    }
    if mask.defect_pixels() == 0 {
        // A defect that fell off the image: place one pixel in the centre so the mask is exact.
        mask.pixels[(h / 2 * w + w / 2) as usize] = true;
    }
    let shift: [f32; 3] = match kind {
        DefectKind::Scratch => {
            let d = if rng.next_f32() < 0.5 { -70.0 } else { 70.0 };
            [d; 3]
        }
        DefectKind::Crack => [-80.0; 3],
        DefectKind::Blob => {
            let d = if rng.next_f32() < 0.5 { -45.0 } else { 45.0 };
            [d; 3]
        }
        DefectKind::Stain => [35.0, 10.0, -30.0],
    };
    for (i, px) in image.pixels_mut().enumerate() {
        if mask.pixels[i] {
            for (v, d) in px.0.iter_mut().zip(shift) {
                *v = (f32::from(*v) + d).clamp(0.0, 255.0) as u8;
            }
        }
    }
    mask
}

/// Writes a synthetic data set in the MVTec layout under `out/<category>/` and returns the
/// category folder. Existing files of the same names are overwritten.
pub fn write_synthetic_dataset(out: &Path, config: &SynthConfig) -> Result<PathBuf> {
    config.validate()?;
    let dir = out.join(&config.category);
    let mut rng = SplitMix64::with_label(config.seed, &config.category);
    let surface = Surface::new(&mut rng);
    let save_rgb = |img: &RgbImage, path: PathBuf| -> Result<()> {
        let parent = path.parent().expect("file has a folder");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        img.save(&path)
            .map_err(|source| Error::ImageDecode { path, source })
    };
    let save_gray = |img: &GrayImage, path: PathBuf| -> Result<()> {
        let parent = path.parent().expect("file has a folder");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        img.save(&path)
            .map_err(|source| Error::ImageDecode { path, source })
    };
    for i in 0..config.train_good {
        let img = surface.render(config.size, &mut rng);
        save_rgb(
            &img,
            dir.join("train").join(GOOD).join(format!("{i:03}.png")),
        )?;
    }
    for i in 0..config.test_good {
        let img = surface.render(config.size, &mut rng);
        save_rgb(
            &img,
            dir.join("test").join(GOOD).join(format!("{i:03}.png")),
        )?;
    }
    for kind in &config.kinds {
        for i in 0..config.per_type {
            let mut img = surface.render(config.size, &mut rng);
            let mask = paint_defect(&mut img, *kind, &mut rng);
            save_rgb(
                &img,
                dir.join("test")
                    .join(kind.name())
                    .join(format!("{i:03}.png")),
            )?;
            save_gray(
                &mask.to_gray(),
                dir.join("ground_truth")
                    .join(kind.name())
                    .join(format!("{i:03}_mask.png")),
            )?;
        }
    }
    Ok(dir)
}
