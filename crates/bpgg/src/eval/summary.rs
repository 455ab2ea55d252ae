//! Metric summaries per defect type and overall, the shape `bpgg score` and `bpgg eval` print
//! and write as JSON.
//!
//! Per defect type `t`, metrics pool the images of `t` with every defect-free image (as the
//! MVTec AD evaluation does per category); `overall` pools every image.

use std::collections::BTreeMap;

use bpgg_metrics::MapRef;
use serde::{Deserialize, Serialize};

use super::table::{markdown_table, METRIC_COLUMNS};
use crate::data::GOOD;
use crate::Result;

/// One scored image: its anomaly map and ground truth at the same size.
#[derive(Debug, Clone)]
pub struct ScoredImage {
    /// `good` or the defect type.
    pub defect_type: String,
    pub width: usize,
    pub height: usize,
    /// Anomaly scores, row-major.
    pub map: Vec<f32>,
    /// Ground truth, row-major, `true` = defect.
    pub mask: Vec<bool>,
    /// The image-level score image AUROC ranks by: the model's own
    /// ([`crate::model::FittedModel::score`]), or the maximum of the map when only maps are
    /// known (`bpgg score`).
    pub image_score: f32,
}

/// Every metric of one group of images. Keys match the JSON of `bpgg score` and `bpgg eval`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricValues {
    pub pixel_auroc: f64,
    pub aupro: f64,
    pub pixel_ap: f64,
    pub f1_max: f64,
    /// The map value at which F1 is maximal.
    pub f1_threshold: f64,
    /// `None` when the group has only one image class.
    pub image_auroc: Option<f64>,
    /// Images in the group.
    pub images: usize,
}

/// Metrics per defect type and overall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub per_type: BTreeMap<String, MetricValues>,
    pub overall: MetricValues,
}

/// Computes the metrics of each defect type (with the defect-free images) and overall.
pub fn summarize(images: &[ScoredImage], fpr_limit: f64) -> Result<Summary> {
    let types: std::collections::BTreeSet<&str> = images
        .iter()
        .map(|i| i.defect_type.as_str())
        .filter(|t| *t != GOOD)
        .collect();
    let mut per_type = BTreeMap::new();
    for t in &types {
        let group: Vec<&ScoredImage> = images
            .iter()
            .filter(|i| i.defect_type == *t || i.defect_type == GOOD)
            .collect();
        per_type.insert((*t).to_string(), metrics_of(&group, fpr_limit)?);
    }
    let all: Vec<&ScoredImage> = images.iter().collect();
    Ok(Summary {
        per_type,
        overall: metrics_of(&all, fpr_limit)?,
    })
}

fn metrics_of(group: &[&ScoredImage], fpr_limit: f64) -> Result<MetricValues> {
    let maps: Vec<MapRef> = group
        .iter()
        .map(|i| MapRef {
            scores: &i.map,
            mask: &i.mask,
            width: i.width,
            height: i.height,
        })
        .collect();
    let labels: Vec<bool> = group.iter().map(|i| i.defect_type != GOOD).collect();
    let scores: Vec<f32> = group.iter().map(|i| i.image_score).collect();
    let m = bpgg_metrics::evaluate_with_image_scores(&maps, &labels, &scores, fpr_limit)?;
    Ok(MetricValues {
        pixel_auroc: m.pixel_auroc,
        aupro: m.aupro,
        pixel_ap: m.pixel_ap,
        f1_max: m.f1_max,
        f1_threshold: f64::from(m.f1_threshold),
        image_auroc: m.image_auroc,
        images: group.len(),
    })
}

impl Summary {
    /// A markdown table: one row per defect type, then `mean` (over types) and `overall`
    /// (all pixels pooled).
    pub fn markdown_table(&self) -> String {
        let row = |name: &str, m: &MetricValues| {
            let mut cells = vec![name.to_string(), m.images.to_string()];
            cells.extend(
                [m.pixel_auroc, m.aupro, m.pixel_ap, m.f1_max]
                    .map(|v| format!("{v:.3}"))
                    .into_iter()
                    .chain([m.image_auroc.map_or("-".into(), |v| format!("{v:.3}"))]),
            );
            cells
        };
        let mut rows: Vec<Vec<String>> = self.per_type.iter().map(|(t, m)| row(t, m)).collect();
        if let Some(mean) = self.mean_over_types() {
            rows.push(row("mean", &mean));
        }
        rows.push(row("overall", &self.overall));
        let mut header = vec!["type", "images"];
        header.extend(METRIC_COLUMNS);
        markdown_table(&header, &rows)
    }

    /// The unweighted mean of the per-type metrics (how papers report a category); `images`
    /// is the largest group (the groups share the defect-free images).
    pub fn mean_over_types(&self) -> Option<MetricValues> {
        let values: Vec<&MetricValues> = self.per_type.values().collect();
        let images = values.iter().map(|m| m.images).max().unwrap_or(0);
        MetricValues::mean(&values, images)
    }
}

impl MetricValues {
    /// The unweighted mean of each metric over `values` (image AUROC over those that have one),
    /// with `images` as the image count; `None` when `values` is empty.
    pub fn mean(values: &[&MetricValues], images: usize) -> Option<MetricValues> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = |f: fn(&MetricValues) -> f64| values.iter().map(|m| f(m)).sum::<f64>() / n;
        let image: Vec<f64> = values.iter().filter_map(|m| m.image_auroc).collect();
        Some(MetricValues {
            pixel_auroc: mean(|m| m.pixel_auroc),
            aupro: mean(|m| m.aupro),
            pixel_ap: mean(|m| m.pixel_ap),
            f1_max: mean(|m| m.f1_max),
            f1_threshold: mean(|m| m.f1_threshold),
            image_auroc: (!image.is_empty())
                .then(|| image.iter().sum::<f64>() / image.len() as f64),
            images,
        })
    }
}
