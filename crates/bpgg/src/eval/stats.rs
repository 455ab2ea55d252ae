//! Mean and standard deviation of metrics over seeds.

use serde::Serialize;

use super::summary::MetricValues;

/// Mean and (population) standard deviation of one number over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

impl MeanStd {
    /// Of a non-empty list; `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Some(Self {
            mean,
            std: var.sqrt(),
        })
    }
}

/// Every metric of `bpgg score` as mean ± std over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricStats {
    pub pixel_auroc: MeanStd,
    pub aupro: MeanStd,
    pub pixel_ap: MeanStd,
    pub f1_max: MeanStd,
    pub image_auroc: Option<MeanStd>,
    /// Seeds aggregated.
    pub seeds: usize,
}

impl MetricStats {
    /// Aggregates per-seed metrics (at least one).
    pub fn of(values: &[MetricValues]) -> Option<Self> {
        let pick = |f: fn(&MetricValues) -> f64| -> Option<MeanStd> {
            MeanStd::of(&values.iter().map(f).collect::<Vec<_>>())
        };
        let image: Vec<f64> = values.iter().filter_map(|m| m.image_auroc).collect();
        Some(Self {
            pixel_auroc: pick(|m| m.pixel_auroc)?,
            aupro: pick(|m| m.aupro)?,
            pixel_ap: pick(|m| m.pixel_ap)?,
            f1_max: pick(|m| m.f1_max)?,
            image_auroc: MeanStd::of(&image),
            seeds: values.len(),
        })
    }
}
