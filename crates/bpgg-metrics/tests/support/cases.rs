//! Deterministic test sets, generated identically here and in `scripts/metrics_reference.py`
//! (see its docstring, section "Generator"), so that only expected numbers are committed.

/// splitmix64: a tiny PRNG that is easy to write bit-identically in Python.
#[derive(Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The parameters of one generated test set (field meanings: the script's docstring).
#[derive(Debug, Clone, Copy)]
pub struct CaseSpec {
    pub name: &'static str,
    pub seed: u64,
    pub n_maps: usize,
    pub width: usize,
    pub height: usize,
    pub defect_pct: u64,
    pub max_blobs: u64,
    pub max_radius: u64,
    pub diagonal_pairs: u64,
    pub bits: u32,
    pub signal: u64,
    pub max_offset: u64,
}

/// Expected values from the Python reference; the first four check the generator itself.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub pixels: usize,
    pub defect_pixels: usize,
    pub regions: usize,
    pub level_sum: u64,
    pub pixel_auroc: f64,
    pub pixel_ap: f64,
    pub f1_max: f64,
    pub f1_threshold: f64,
    /// AUPRO at each of `GOLDEN_FPR_LIMITS`.
    pub aupro: [f64; 3],
    pub image_auroc: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
pub struct GoldenCase {
    pub spec: CaseSpec,
    pub expected: Expected,
}

/// One generated map, owned.
#[derive(Debug, Clone)]
pub struct OwnedMap {
    pub scores: Vec<f32>,
    pub mask: Vec<bool>,
    pub width: usize,
    pub height: usize,
}

/// A generated test set with the sum of its integer score levels (a generator checksum).
#[derive(Debug, Clone)]
pub struct Generated {
    pub maps: Vec<OwnedMap>,
    pub level_sum: u64,
}

/// Draws one elliptic blob and sets its pixels.
fn set_blob(mask: &mut [bool], spec: &CaseSpec, rng: &mut SplitMix64) {
    let (width, height) = (spec.width, spec.height);
    let cx = rng.below(width as u64) as i64;
    let cy = rng.below(height as u64) as i64;
    let rx = rng.below(spec.max_radius + 1) as i64;
    let ry = rng.below(spec.max_radius + 1) as i64;
    let (ax, ay) = (2 * rx + 1, 2 * ry + 1);
    for y in (cy - ry).max(0)..=(cy + ry).min(height as i64 - 1) {
        for x in (cx - rx).max(0)..=(cx + rx).min(width as i64 - 1) {
            let (dx, dy) = (2 * (x - cx), 2 * (y - cy));
            if dx * dx * ay * ay + dy * dy * ax * ax <= ax * ax * ay * ay {
                mask[y as usize * width + x as usize] = true;
            }
        }
    }
}

/// Expands a spec into maps, drawing exactly as the Python generator does.
pub fn generate(spec: &CaseSpec) -> Generated {
    let mut rng = SplitMix64::new(spec.seed);
    let (width, height) = (spec.width, spec.height);
    let scale = (-(spec.bits as i32) as f32).exp2();
    let mut level_sum = 0;
    let maps = (0..spec.n_maps)
        .map(|_| {
            let defective = rng.below(100) < spec.defect_pct;
            let offset = rng.below(spec.max_offset + 1);
            let mut mask = vec![false; width * height];
            if defective {
                let blobs = if spec.max_blobs > 0 {
                    1 + rng.below(spec.max_blobs)
                } else {
                    0
                };
                for _ in 0..blobs {
                    set_blob(&mut mask, spec, &mut rng);
                }
                for _ in 0..spec.diagonal_pairs {
                    let x = rng.below(width as u64 - 1) as usize;
                    let y = rng.below(height as u64 - 1) as usize;
                    mask[y * width + x] = true;
                    mask[(y + 1) * width + x + 1] = true;
                }
            }
            let scores = mask
                .iter()
                .map(|&defect| {
                    let level =
                        rng.below(1 << spec.bits) + offset + if defect { spec.signal } else { 0 };
                    level_sum += level;
                    level as f32 * scale
                })
                .collect();
            OwnedMap {
                scores,
                mask,
                width,
                height,
            }
        })
        .collect();
    Generated { maps, level_sum }
}
