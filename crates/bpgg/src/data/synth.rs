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
    /// A cluster of small dark or bright pits.
    Pits,
    /// A patch where the texture is wiped out (the surface's mean level, a little noise).
    Smudge,
    /// A long, smoothly curving band of another brightness.
    Fold,
}

impl DefectKind {
    /// The four classic kinds, in folder order (what the demo and `bpgg data synth` write).
    pub const ALL: [DefectKind; 4] = [Self::Blob, Self::Crack, Self::Scratch, Self::Stain];

    /// Every kind, in folder order.
    pub const EXTENDED: [DefectKind; 7] = [
        Self::Blob,
        Self::Crack,
        Self::Fold,
        Self::Pits,
        Self::Scratch,
        Self::Smudge,
        Self::Stain,
    ];

    /// The folder name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::Crack => "crack",
            Self::Blob => "blob",
            Self::Stain => "stain",
            Self::Pits => "pits",
            Self::Smudge => "smudge",
            Self::Fold => "fold",
        }
    }

    /// The kind of a folder name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::EXTENDED.into_iter().find(|k| k.name() == name)
    }
}

/// The surface texture of a synthetic product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Texture {
    /// A few sine gratings plus value noise (the classic synthetic tile).
    Gratings,
    /// Fine streaks along one direction (brushed or rolled metal).
    Brushed,
    /// Two crossing square-ish gratings with thread noise (woven fabric).
    Weave,
    /// Dense small speckles over soft noise (cast or sintered parts).
    Grain,
    /// A regular grid of round dimples (perforated sheet, meshes, arrays of parts).
    Dimples,
    /// Low-frequency shading only (moulded plastic, painted surfaces).
    Smooth,
}

impl Texture {
    /// Every texture.
    pub const ALL: [Texture; 6] = [
        Self::Gratings,
        Self::Brushed,
        Self::Weave,
        Self::Grain,
        Self::Dimples,
        Self::Smooth,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gratings => "gratings",
            Self::Brushed => "brushed",
            Self::Weave => "weave",
            Self::Grain => "grain",
            Self::Dimples => "dimples",
            Self::Smooth => "smooth",
        }
    }

    /// The texture of a command-line name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
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
    /// The surface texture; `None` draws one from the seed and the category name.
    pub texture: Option<Texture>,
    /// Each defect's size is multiplied by a factor drawn in `[1/v, v]` (log-uniform) and its
    /// contrast by one in `[1/v, 1]`: subtle and large defects next to the usual ones. 1 keeps
    /// every defect at its kind's usual size and contrast.
    pub variety: f32,
    /// Every defect's size relative to the image is multiplied by this factor (1: blobs of
    /// 8-24% of the side; 0.025 on 2048 px images: blobs of about 8 px).
    pub defect_scale: f32,
    /// Seed of everything.
    pub seed: u64,
}

impl Default for SynthConfig {
    /// One category `synthetic_tile`, 128 px, 20 train/good, 8 test/good, 8 per defect type,
    /// the four classic kinds on the gratings texture, no size or contrast variety, defect scale 1,
    /// seed 0.
    fn default() -> Self {
        Self {
            category: "synthetic_tile".into(),
            size: 128,
            train_good: 20,
            test_good: 8,
            per_type: 8,
            kinds: DefectKind::ALL.to_vec(),
            texture: Some(Texture::Gratings),
            variety: 1.0,
            defect_scale: 1.0,
            seed: 0,
        }
    }
}

impl SynthConfig {
    /// Checks the values once, before anything is written.
    pub fn validate(&self) -> Result<()> {
        if !(16..=16384).contains(&self.size) {
            return Err(Error::InvalidConfig(format!(
                "synthetic image size must be 16..=16384 px, got {}",
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
        if !(self.variety.is_finite() && (1.0..=8.0).contains(&self.variety)) {
            return Err(Error::InvalidConfig(format!(
                "synthetic defect variety must be in 1..=8, got {}",
                self.variety
            )));
        }
        if !(self.defect_scale.is_finite() && self.defect_scale > 0.0 && self.defect_scale <= 4.0) {
            return Err(Error::InvalidConfig(format!(
                "synthetic defect scale must be in (0, 4], got {}",
                self.defect_scale
            )));
        }
        Ok(())
    }
}

/// The surface of one product, shared by all its images: a texture with its parameters.
#[derive(Debug, Clone)]
struct Surface {
    texture: Texture,
    base: [f32; 3],
    gratings: Vec<(f32, f32, f32, f32)>, // (fx, fy, amplitude, phase)
    noise_amp: f32,
    /// Orientation of the texture (radians).
    angle: f32,
    /// Period of the texture's structure (pixels).
    period: f32,
    /// Amplitude of the texture's structure (grey levels).
    amp: f32,
}

impl Surface {
    fn new(texture: Texture, rng: &mut SplitMix64) -> Self {
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
        let noise_amp = rng.range_f32(6.0, 12.0);
        let (angle, period, amp) = match texture {
            // The classic tile draws nothing more, so its images stay as they were.
            Texture::Gratings => (0.0, 0.0, 0.0),
            Texture::Brushed => (
                rng.range_f32(0.0, std::f32::consts::PI),
                rng.range_f32(1.0, 3.0),
                rng.range_f32(8.0, 20.0),
            ),
            Texture::Weave => (
                rng.range_f32(-0.2, 0.2),
                rng.range_f32(5.0, 12.0),
                rng.range_f32(10.0, 25.0),
            ),
            Texture::Grain => (0.0, rng.range_f32(1.0, 3.0), rng.range_f32(10.0, 25.0)),
            Texture::Dimples => (
                rng.range_f32(0.0, std::f32::consts::FRAC_PI_2),
                rng.range_f32(10.0, 24.0),
                rng.range_f32(25.0, 50.0),
            ),
            Texture::Smooth => (
                rng.range_f32(0.0, std::f32::consts::TAU),
                rng.range_f32(32.0, 64.0),
                rng.range_f32(10.0, 30.0),
            ),
        };
        Self {
            texture,
            base,
            gratings,
            noise_amp,
            angle,
            period,
            amp,
        }
    }

    /// One defect-free image: the surface with a random shift and fresh noise.
    fn render(&self, size: u32, rng: &mut SplitMix64) -> RgbImage {
        let (dx, dy) = (rng.range_f32(0.0, 50.0), rng.range_f32(0.0, 50.0));
        let noise = value_noise(size, 8, rng);
        let fine: Vec<f32> = (0..size * size).map(|_| rng.normal()).collect();
        let texture = self.texture_values(size, dx, dy, rng);
        RgbImage::from_fn(size, size, |x, y| {
            let i = (y * size + x) as usize;
            let v = texture[i] + self.noise_amp * noise[i] + 3.0 * fine[i];
            Rgb(self.base.map(|b| (b + v).clamp(0.0, 255.0) as u8))
        })
    }

    /// The texture's own values (before the shared noise) of one image shifted by `(dx, dy)`.
    fn texture_values(&self, size: u32, dx: f32, dy: f32, rng: &mut SplitMix64) -> Vec<f32> {
        let n = (size * size) as usize;
        let (cos, sin) = (self.angle.cos(), self.angle.sin());
        // Coordinates of pixel i, shifted and rotated by the texture's angle.
        let along = |i: usize| {
            let (x, y) = ((i as u32 % size) as f32 + dx, (i as u32 / size) as f32 + dy);
            (x * cos + y * sin, -x * sin + y * cos)
        };
        match self.texture {
            Texture::Gratings => (0..n)
                .map(|i| {
                    let (xf, yf) = ((i as u32 % size) as f32 + dx, (i as u32 / size) as f32 + dy);
                    self.gratings
                        .iter()
                        .map(|(fx, fy, a, p)| a * (fx * xf + fy * yf + p).sin())
                        .sum()
                })
                .collect(),
            Texture::Brushed => {
                // A random profile across the streaks, each streak fading in and out along them.
                let span = (2.0 * size as f32 + 200.0) as usize;
                let profile: Vec<f32> = (0..span).map(|_| rng.normal()).collect();
                let fade = value_noise(size, 32, rng);
                (0..n)
                    .map(|i| {
                        let (_, v) = along(i);
                        let k = ((v / self.period).round() as isize).rem_euclid(span as isize);
                        self.amp * profile[k as usize] * (0.6 + 0.4 * fade[i])
                    })
                    .collect()
            }
            Texture::Weave => {
                let threads = value_noise(size, 4, rng);
                (0..n)
                    .map(|i| {
                        let (u, v) = along(i);
                        let (pu, pv) = (u / self.period, v / self.period);
                        // Over-under: the warp shows on one checker colour, the weft on the other.
                        let over = (pu.floor() as i64 + pv.floor() as i64).rem_euclid(2) == 0;
                        let thread = if over {
                            (std::f32::consts::PI * pv.rem_euclid(1.0)).sin()
                        } else {
                            (std::f32::consts::PI * pu.rem_euclid(1.0)).sin()
                        };
                        self.amp * (thread - 0.5) + 0.3 * self.amp * threads[i]
                    })
                    .collect()
            }
            Texture::Grain => {
                let cell = self.period.round().max(1.0) as u32;
                let speckle = value_noise(size, cell, rng);
                (0..n).map(|i| self.amp * speckle[i]).collect()
            }
            Texture::Dimples => (0..n)
                .map(|i| {
                    let (u, v) = along(i);
                    let (fu, fv) = (
                        (u / self.period).rem_euclid(1.0) - 0.5,
                        (v / self.period).rem_euclid(1.0) - 0.5,
                    );
                    let r = (fu * fu + fv * fv).sqrt();
                    // A soft-edged round dimple of radius 0.3 periods in each cell.
                    -self.amp * (1.0 - ((r - 0.3) / 0.06).clamp(0.0, 1.0))
                })
                .collect(),
            Texture::Smooth => {
                let cell = self.period.round().max(1.0) as u32;
                let shade = value_noise(size, cell, rng);
                (0..n)
                    .map(|i| {
                        let (u, _) = along(i);
                        self.amp * shade[i] + 0.1 * self.amp * (u / size as f32)
                    })
                    .collect()
            }
        }
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
    paint_defect_scaled(image, kind, 1.0, 1.0, rng)
}

/// [`paint_defect`] with the defect's size multiplied by `scale` and its brightness change by
/// `contrast`.
pub fn paint_defect_scaled(
    image: &mut RgbImage,
    kind: DefectKind,
    scale: f32,
    contrast: f32,
    rng: &mut SplitMix64,
) -> Mask {
    let (w, h) = image.dimensions();
    let mut mask = Mask::empty(w, h);
    let s = w.min(h) as f32 * scale;
    let centre = |rng: &mut SplitMix64, lo: f32, hi: f32| {
        let s = w.min(h) as f32;
        (rng.range_f32(lo, hi) * s, rng.range_f32(lo, hi) * s)
    };
    let disc = |mask: &mut Mask, cx: f32, cy: f32, radius: f32| {
        let r = radius.ceil() as i32;
        for oy in -r..=r {
            for ox in -r..=r {
                let (x, y) = (cx + ox as f32, cy + oy as f32);
                if ((ox * ox + oy * oy) as f32).sqrt() <= radius
                    && x >= 0.0
                    && y >= 0.0
                    && (x as u32) < w
                    && (y as u32) < h
                {
                    mask.pixels[(y as u32 * w + x as u32) as usize] = true;
                }
            }
        }
    };
    let mark = |mask: &mut Mask, x: f32, y: f32| {
        if x >= 0.0 && y >= 0.0 && (x as u32) < w && (y as u32) < h {
            mask.pixels[(y as u32 * w + x as u32) as usize] = true;
        }
    };
    match kind {
        DefectKind::Scratch => {
            let (x0, y0) = centre(rng, 0.2, 0.8);
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
            let (mut x, mut y) = centre(rng, 0.2, 0.8);
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
        DefectKind::Blob | DefectKind::Stain | DefectKind::Smudge => {
            let (cx, cy) = centre(rng, 0.25, 0.75);
            let (rx, ry) = (rng.range_f32(0.04, 0.12) * s, rng.range_f32(0.04, 0.12) * s);
            let rot = rng.range_f32(0.0, std::f32::consts::PI);
            // Stains and smudges get a wobbly outline: radius modulated by a few harmonics.
            let wobble: Vec<(f32, f32)> = if kind != DefectKind::Blob {
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
                    let radius = 1.0
                        + wobble
                            .iter()
                            .map(|(k, a)| a * (k * theta).sin())
                            .sum::<f32>();
                    if (u / rx).powi(2) + (v / ry).powi(2) <= radius * radius {
                        mark(&mut mask, x as f32, y as f32);
                    }
                }
            }
        }
        DefectKind::Pits => {
            let (cx, cy) = centre(rng, 0.2, 0.8);
            let count = 3 + rng.below(7);
            for _ in 0..count {
                let (a, d) = (
                    rng.range_f32(0.0, std::f32::consts::TAU),
                    rng.range_f32(0.0, 0.07) * s,
                );
                let r = (rng.range_f32(0.006, 0.02) * s).max(0.7);
                disc(&mut mask, cx + d * a.cos(), cy + d * a.sin(), r);
            }
        }
        DefectKind::Fold => {
            // A band along a gentle sine around a straight line.
            let (x0, y0) = centre(rng, 0.2, 0.8);
            let angle = rng.range_f32(0.0, std::f32::consts::TAU);
            let len = rng.range_f32(0.3, 0.6) * s;
            let (amp, freq) = (
                rng.range_f32(0.01, 0.05) * s,
                rng.range_f32(1.0, 3.0) * std::f32::consts::TAU / len.max(1.0),
            );
            let half_width = rng.range_f32(1.0, 3.0) * scale.max(0.5);
            let (c, sn) = (angle.cos(), angle.sin());
            for i in 0..=(len * 2.0) as usize {
                let t = i as f32 / 2.0;
                let off = amp * (freq * t).sin();
                disc(
                    &mut mask,
                    x0 + t * c - off * sn,
                    y0 + t * sn + off * c,
                    half_width,
                );
            }
        }
    }
    if mask.defect_pixels() == 0 {
        // A defect that fell off the image: place one pixel in the centre so the mask is exact.
        mask.pixels[(h / 2 * w + w / 2) as usize] = true;
    }
    let signed = |rng: &mut SplitMix64, d: f32| if rng.next_f32() < 0.5 { -d } else { d };
    let shift: [f32; 3] = match kind {
        DefectKind::Scratch => [signed(rng, 70.0); 3],
        DefectKind::Crack => [-80.0; 3],
        DefectKind::Blob => [signed(rng, 45.0); 3],
        DefectKind::Stain => [35.0, 10.0, -30.0],
        DefectKind::Pits => [signed(rng, 60.0); 3],
        DefectKind::Fold => [signed(rng, 40.0); 3],
        DefectKind::Smudge => {
            // The texture is wiped out: every pixel goes to the region's mean (with a little
            // noise), moved towards it by `contrast`.
            let (mut sum, mut count) = ([0f64; 3], 0usize);
            for (i, px) in image.pixels().enumerate() {
                if mask.pixels[i] {
                    for (s, v) in sum.iter_mut().zip(px.0) {
                        *s += f64::from(v);
                    }
                    count += 1;
                }
            }
            let mean = sum.map(|s| (s / count as f64) as f32);
            for (i, px) in image.pixels_mut().enumerate() {
                if mask.pixels[i] {
                    let noise = rng.normal();
                    for (v, m) in px.0.iter_mut().zip(mean) {
                        let old = f32::from(*v);
                        *v = (old + contrast * (m + 2.0 * noise - old)).clamp(0.0, 255.0) as u8;
                    }
                }
            }
            return mask;
        }
    };
    let shift = shift.map(|d| d * contrast);
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
    let texture = match config.texture {
        Some(t) => t,
        None => Texture::ALL[rng.below(Texture::ALL.len())],
    };
    let surface = Surface::new(texture, &mut rng);
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
            let mask = if config.variety > 1.0 {
                let ln = config.variety.ln();
                let scale = rng.range_f32(-ln, ln).exp();
                let contrast = rng.range_f32(-ln, 0.0).exp();
                paint_defect_scaled(
                    &mut img,
                    *kind,
                    config.defect_scale * scale,
                    contrast,
                    &mut rng,
                )
            } else {
                paint_defect_scaled(&mut img, *kind, config.defect_scale, 1.0, &mut rng)
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_on_every_texture_changes_the_pixels_of_its_mask() {
        for (t, texture) in Texture::ALL.into_iter().enumerate() {
            let mut rng = SplitMix64::new(t as u64);
            let surface = Surface::new(texture, &mut rng);
            let clean = surface.render(96, &mut rng);
            // A texture is not flat: its pixels spread over more than a few grey levels.
            let grey: Vec<u8> = clean.pixels().map(|p| p.0[1]).collect();
            let (lo, hi) = (grey.iter().min().unwrap(), grey.iter().max().unwrap());
            assert!(hi - lo > 20, "{texture:?}: grey levels {lo}..{hi}");
            for kind in DefectKind::EXTENDED {
                let mut img = clean.clone();
                let mask = paint_defect(&mut img, kind, &mut rng);
                assert!(mask.defect_pixels() > 0, "{texture:?} {kind:?}: empty mask");
                let changed_outside = img
                    .pixels()
                    .zip(clean.pixels())
                    .enumerate()
                    .filter(|(i, (a, b))| a != b && !mask.pixels[*i])
                    .count();
                assert_eq!(changed_outside, 0, "{texture:?} {kind:?}");
                let changed_inside = img
                    .pixels()
                    .zip(clean.pixels())
                    .enumerate()
                    .filter(|(i, (a, b))| a != b && mask.pixels[*i])
                    .count();
                assert!(
                    changed_inside * 2 >= mask.defect_pixels(),
                    "{texture:?} {kind:?}: {changed_inside} of {} mask pixels changed",
                    mask.defect_pixels()
                );
            }
        }
    }

    #[test]
    fn defect_scale_grows_the_defect() {
        let mut small = 0;
        let mut large = 0;
        for seed in 0..8 {
            for (scale, total) in [(0.5f32, &mut small), (2.0, &mut large)] {
                let mut img = RgbImage::from_pixel(128, 128, Rgb([120, 120, 120]));
                let mut rng = SplitMix64::new(seed);
                *total += paint_defect_scaled(&mut img, DefectKind::Blob, scale, 1.0, &mut rng)
                    .defect_pixels();
            }
        }
        // Area grows with the square of the scale: 16x here, at least 8x whatever the draws.
        assert!(large > 8 * small, "{small} vs {large}");
    }

    #[test]
    fn a_drawn_texture_depends_on_the_category_and_variety_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SynthConfig {
            size: 32,
            train_good: 1,
            test_good: 0,
            per_type: 1,
            kinds: DefectKind::EXTENDED.to_vec(),
            texture: None,
            variety: 2.0,
            ..SynthConfig::default()
        };
        let cat = write_synthetic_dataset(dir.path(), &config).unwrap();
        for kind in DefectKind::EXTENDED {
            assert!(cat
                .join("ground_truth")
                .join(kind.name())
                .join("000_mask.png")
                .is_file());
            assert_eq!(DefectKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(Texture::from_name("weave"), Some(Texture::Weave));
        config.variety = 0.5;
        assert!(config.validate().is_err());
    }
}
