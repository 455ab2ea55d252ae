//! ROC, PRO and precision-recall curves of a group of maps, thinned for plotting, and their
//! drawing as hand-written SVG (axes, ticks, labels, one polyline per series).

use std::fmt::Write as _;

use bpgg_metrics::MapRef;

use crate::eval::ScoredImage;
use crate::Result;

/// Points kept per curve: enough for a smooth line at report size.
pub const CURVE_POINTS: usize = 200;

/// A curve as `(x, y)` points.
pub type Points = Vec<(f64, f64)>;

/// The three pixel-level curves of one group of images.
#[derive(Debug, Clone, Default)]
pub struct CurveSet {
    /// `(false-positive rate, true-positive rate)`.
    pub roc: Points,
    /// `(false-positive rate, per-region overlap)`, up to the FPR limit.
    pub pro: Points,
    /// `(recall, precision)`.
    pub pr: Points,
}

/// The curves of `images` pooled (pixels of every image together, as the metrics pool them).
/// The PRO curve is cut at `fpr_limit`, the range AUPRO integrates.
pub fn curves_of(images: &[&ScoredImage], fpr_limit: f64) -> Result<CurveSet> {
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    let mut maps = Vec::with_capacity(images.len());
    for i in images {
        scores.extend_from_slice(&i.map);
        labels.extend_from_slice(&i.mask);
        maps.push(MapRef {
            scores: &i.map,
            mask: &i.mask,
            width: i.width,
            height: i.height,
        });
    }
    let roc = bpgg_metrics::roc_curve(&scores, &labels)?.decimated(CURVE_POINTS);
    let pr = bpgg_metrics::pr_curve(&scores, &labels)?.decimated(CURVE_POINTS);
    let pro = bpgg_metrics::pro_curve(&maps)?;
    let cut = pro.fpr.partition_point(|&f| f <= fpr_limit);
    let pro = bpgg_metrics::ProCurve {
        fpr: pro.fpr[..cut].to_vec(),
        pro: pro.pro[..cut].to_vec(),
        thresholds: pro.thresholds[..cut].to_vec(),
    }
    .decimated(CURVE_POINTS);
    let zip = |x: &[f64], y: &[f64]| x.iter().copied().zip(y.iter().copied()).collect();
    Ok(CurveSet {
        roc: zip(&roc.fpr, &roc.tpr),
        pro: zip(&pro.fpr, &pro.pro),
        pr: zip(&pr.recall, &pr.precision),
    })
}

/// Series colours (colour-blind-safe "Okabe-Ito" palette), cycled.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

/// One plot: axes `[0, x_max] × [0, 1]`.
#[derive(Debug, Clone)]
pub struct Plot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_max: f64,
    /// Draw the chance diagonal (ROC).
    pub diagonal: bool,
    /// Legend in the upper right instead of the lower right (for falling curves: PR).
    pub legend_top: bool,
}

const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 42.0;

/// An SVG element (no XML prolog, ready to inline in HTML) of `series` as `(name, points)`.
pub fn svg_plot(plot: &Plot, series: &[(&str, &Points)]) -> String {
    let pw = WIDTH - LEFT - RIGHT;
    let ph = HEIGHT - TOP - BOTTOM;
    let x_max = if plot.x_max > 0.0 { plot.x_max } else { 1.0 };
    let sx = |x: f64| LEFT + (x / x_max).clamp(0.0, 1.0) * pw;
    let sy = |y: f64| TOP + (1.0 - y.clamp(0.0, 1.0)) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="curve" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{t}">"#,
        t = escape(plot.title)
    );
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#888"/>"##
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let (x, y) = (sx(f * x_max), sy(f));
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{b:.1}" stroke="#e4e4e4"/><line x1="{LEFT}" y1="{y:.1}" x2="{r:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{x:.1}" y="{tb:.1}" text-anchor="middle" font-size="11">{xl}</text><text x="{tl:.1}" y="{ty:.1}" text-anchor="end" font-size="11">{f:.1}</text>"##,
            b = TOP + ph,
            r = LEFT + pw,
            tb = TOP + ph + 14.0,
            xl = trim_number(f * x_max),
            tl = LEFT - 4.0,
            ty = y + 4.0,
        );
    }
    if plot.diagonal {
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{b}" x2="{r}" y2="{TOP}" stroke="#bbb" stroke-dasharray="4 3"/>"##,
            b = TOP + ph,
            r = LEFT + pw
        );
    }
    for (k, (_, points)) in series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let mut path = String::new();
        for &(x, y) in points.iter() {
            if x.is_finite() && y.is_finite() {
                let _ = write!(path, "{:.1},{:.1} ", sx(x), sy(y));
            }
        }
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.8"/>"#,
            path.trim_end()
        );
    }
    // Legend where the curves usually are not (ROC and PRO rise to the upper left, PR falls
    // to the lower right), on a white box to stay readable where a curve does pass.
    let lx = LEFT + pw - 8.0;
    let ly0 = if plot.legend_top {
        TOP + 20.0
    } else {
        TOP + ph - 8.0 - 14.0 * (series.len().saturating_sub(1)) as f64
    };
    if !series.is_empty() {
        let longest = series.iter().map(|(n, _)| n.len()).max().unwrap_or(0) as f64;
        let bw = 24.0 + 6.5 * longest;
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="#fff" fill-opacity="0.85" stroke="#ccc"/>"##,
            x = lx - bw,
            y = ly0 - 11.0,
            bh = 14.0 * series.len() as f64 + 4.0
        );
    }
    for (k, (name, _)) in series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let y = ly0 + 14.0 * k as f64;
        let _ = write!(
            s,
            r#"<line x1="{a:.1}" y1="{l:.1}" x2="{b:.1}" y2="{l:.1}" stroke="{colour}" stroke-width="3"/><text x="{tx:.1}" y="{y:.1}" text-anchor="end" font-size="11">{n}</text>"#,
            a = lx - 16.0,
            b = lx - 2.0,
            l = y - 4.0,
            tx = lx - 20.0,
            n = escape(name)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{cx:.1}" y="17" text-anchor="middle" font-size="13" font-weight="bold">{t}</text><text x="{cx:.1}" y="{xb:.1}" text-anchor="middle" font-size="12">{xl}</text><text transform="translate(13 {cy:.1}) rotate(-90)" text-anchor="middle" font-size="12">{yl}</text></svg>"#,
        cx = LEFT + pw / 2.0,
        cy = TOP + ph / 2.0,
        xb = HEIGHT - 6.0,
        t = escape(plot.title),
        xl = escape(plot.x_label),
        yl = escape(plot.y_label),
    );
    s
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Escapes text for HTML and SVG (element content and quoted attributes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_map_gives_corner_curves_and_a_plot() {
        let img = ScoredImage {
            defect_type: "crack".into(),
            width: 4,
            height: 1,
            map: vec![0.9, 0.8, 0.1, 0.2],
            mask: vec![true, true, false, false],
            image_score: 0.9,
        };
        let c = curves_of(&[&img], 0.3).unwrap();
        // A perfect separation passes through (0, 1) on ROC and PRO and has precision 1.
        assert!(c.roc.contains(&(0.0, 1.0)), "{:?}", c.roc);
        assert!(
            c.pro.iter().any(|&(f, p)| f == 0.0 && p == 1.0),
            "{:?}",
            c.pro
        );
        assert!(c.pro.iter().all(|&(f, _)| f <= 0.3));
        // Full recall at precision 1 exists; lower thresholds only add false positives.
        assert!(c.pr.contains(&(1.0, 1.0)), "{:?}", c.pr);
        let svg = svg_plot(
            &Plot {
                title: "ROC <pixels>",
                x_label: "FPR",
                y_label: "TPR",
                x_max: 1.0,
                diagonal: true,
                legend_top: false,
            },
            &[("crack", &c.roc)],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("ROC &lt;pixels&gt;") && svg.contains("<polyline"));
        assert_eq!(trim_number(0.30000001), "0.3");
        assert_eq!(trim_number(0.0), "0");
    }
}
