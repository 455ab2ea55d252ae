//! A self-contained HTML report: one `index.html` (inline CSS, JS and SVG curves, no network)
//! with its PNG panels beside it in the same folder.
//!
//! [`ReportWriter`] takes episodes (from `bpgg eval`) or single predictions (from
//! `bpgg predict`) as they finish and renders their panels to disk right away, so memory stays
//! bounded by one episode. Curves and the gallery come from the episodes of one seed
//! ([`ReportConfig::seed`], 0 by default) and one shot count; the metrics table covers every
//! seed (mean ± std).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::curves::{curves_of, escape, svg_plot, CurveSet, Plot};
use super::panel::{outlined, panel, GROUND_TRUTH_COLOUR};
use crate::data::float_map::FloatMap;
use crate::data::image_io::{load_mask, load_rgb, Mask};
use crate::data::transform::{resize_image, resize_mask};
use crate::data::{ImageLimits, Sample, GOOD};
use crate::eval::{EpisodeMaps, EvalReport, MeanStd, MetricStats};
use crate::io::write_atomic;
use crate::{Error, Result};

/// Folder (inside the report folder) of the PNGs.
const ASSETS: &str = "img";

/// What goes into a report and how big it gets.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// Most panels in the gallery (the worst ones are kept).
    pub max_panels: usize,
    /// Panels kept per episode; `bpgg eval` sets it to `max_panels / types`.
    pub panels_per_episode: usize,
    /// Side of each panel cell in pixels (images are downsized to it).
    pub cell_size: u32,
    /// Side of the support thumbnails in pixels.
    pub thumb_size: u32,
    /// The seed whose episodes give the curves, supports and gallery.
    pub seed: u64,
    /// The shot count whose episodes give them; `None`: the first one seen.
    pub shots: Option<usize>,
    /// FPR limit of the PRO curve.
    pub fpr_limit: f64,
    /// Decompression-bomb limit for every image read.
    pub limits: ImageLimits,
}

impl Default for ReportConfig {
    /// 60 panels, 12 per episode, 160 px cells, 112 px thumbnails, seed 0, FPR limit 0.3.
    fn default() -> Self {
        Self {
            max_panels: 60,
            panels_per_episode: 12,
            cell_size: 160,
            thumb_size: 112,
            seed: 0,
            shots: None,
            fpr_limit: bpgg_metrics::DEFAULT_FPR_LIMIT,
            limits: ImageLimits::default(),
        }
    }
}

/// The run the report is about, printed at the top of the page.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Page title, e.g. `bpgg eval — magnetic_tile`.
    pub title: String,
    /// The command line that produced the report.
    pub command_line: String,
    /// Settings (model configuration and run options) as JSON.
    pub settings: serde_json::Value,
}

/// One gallery panel.
#[derive(Debug, Clone)]
struct GalleryItem {
    /// PNG path relative to the report folder.
    file: String,
    name: String,
    /// `good`, a defect type, or empty when unknown (predictions).
    defect_type: String,
    /// The episode (defect type of its supports) that scored it; empty for predictions.
    episode: String,
    /// Maximum of the anomaly map.
    score: f32,
    threshold: f32,
}

/// A row of support thumbnails: the defect supports of one episode, or normal supports shared
/// by one or more episodes (with a fixed seed every type draws the same ones).
#[derive(Debug, Clone)]
struct SupportRow {
    /// The episodes (defect types) the row belongs to.
    episodes: Vec<String>,
    /// The images, to recognise a normal row another episode shares.
    images: Vec<PathBuf>,
    /// `(file, caption)`.
    items: Vec<(String, String)>,
}

/// Builds a report folder; see the module docs.
#[derive(Debug)]
pub struct ReportWriter {
    dir: PathBuf,
    config: ReportConfig,
    gallery: Vec<GalleryItem>,
    supports: Vec<SupportRow>,
    normal_supports: Vec<SupportRow>,
    curves: BTreeMap<String, CurveSet>,
    shots: Option<usize>,
    written: usize,
}

impl ReportWriter {
    /// Creates the report folder (and its image folder).
    pub fn new(dir: &Path, config: ReportConfig) -> Result<Self> {
        if config.cell_size < 16 || config.thumb_size < 16 || config.max_panels == 0 {
            return Err(Error::InvalidConfig(
                "report cells and thumbnails need at least 16 px and one panel".into(),
            ));
        }
        let assets = dir.join(ASSETS);
        std::fs::create_dir_all(&assets).map_err(|e| Error::io(&assets, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            shots: config.shots,
            config,
            gallery: Vec::new(),
            supports: Vec::new(),
            normal_supports: Vec::new(),
            curves: BTreeMap::new(),
            written: 0,
        })
    }

    /// Takes one evaluation episode: if it has the report's seed and shot count, computes its
    /// curves and renders its supports and its worst queries (half the defect images with the
    /// lowest maximum score, half the defect-free ones with the highest).
    pub fn add_episode(&mut self, episode: &EpisodeMaps) -> Result<()> {
        if episode.seed != self.config.seed {
            return Ok(());
        }
        let shots = *self.shots.get_or_insert(episode.shots);
        if episode.shots != shots {
            return Ok(());
        }
        let t = &episode.defect_type;
        let group: Vec<_> = episode
            .maps
            .iter()
            .filter(|m| &m.defect_type == t || m.defect_type == GOOD)
            .collect();
        if group.iter().any(|m| m.defect_type == GOOD) && group.iter().any(|m| &m.defect_type == t)
        {
            self.curves
                .insert(t.clone(), curves_of(&group, self.config.fpr_limit)?);
        }
        self.add_supports(episode)?;

        let score = |i: usize| episode.maps[i].image_score;
        let mut defects: Vec<usize> = (0..episode.maps.len())
            .filter(|&i| episode.maps[i].defect_type != GOOD)
            .collect();
        let mut normals: Vec<usize> = (0..episode.maps.len())
            .filter(|&i| episode.maps[i].defect_type == GOOD)
            .collect();
        defects.sort_by(|&a, &b| score(a).total_cmp(&score(b)));
        normals.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
        let want = self.config.panels_per_episode.max(1);
        let n_normals = normals.len().min(want / 2);
        let n_defects = defects.len().min(want - n_normals);
        for &i in defects[..n_defects].iter().chain(&normals[..n_normals]) {
            if self.gallery.len() >= self.config.max_panels {
                break;
            }
            let (sample, scored) = (&episode.queries[i], &episode.maps[i]);
            let image = load_rgb(&sample.image, self.config.limits)?;
            let cell = self.cell(&image);
            let map = FloatMap {
                width: scored.width,
                height: scored.height,
                data: scored.map.clone(),
            };
            let gt = Mask {
                width: scored.width as u32,
                height: scored.height as u32,
                pixels: scored.mask.clone(),
            };
            let picture = panel(&cell, &map, episode.threshold, Some(&gt));
            let file = self.save(&picture)?;
            self.gallery.push(GalleryItem {
                file,
                name: sample_name(sample),
                defect_type: sample.defect_type.clone(),
                episode: t.clone(),
                score: score(i),
                threshold: episode.threshold,
            });
        }
        Ok(())
    }

    /// Takes one prediction (no ground truth) with its image score. The gallery keeps the
    /// `max_panels` highest scores; the panels of the others are deleted again.
    pub fn add_prediction(
        &mut self,
        name: &str,
        image: &RgbImage,
        map: &FloatMap,
        score: f32,
        threshold: f32,
    ) -> Result<()> {
        if self.gallery.len() >= self.config.max_panels {
            let (lowest, low_score) = self
                .gallery
                .iter()
                .enumerate()
                .map(|(i, g)| (i, g.score))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("gallery is full, so not empty");
            if low_score >= score {
                return Ok(());
            }
            let old = self.gallery.swap_remove(lowest);
            let path = self.dir.join(&old.file);
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        let cell = self.cell(image);
        let file = self.save(&panel(&cell, map, threshold, None))?;
        self.gallery.push(GalleryItem {
            file,
            name: name.to_string(),
            defect_type: String::new(),
            episode: String::new(),
            score,
            threshold,
        });
        Ok(())
    }

    /// Writes `index.html` and returns its path.
    pub fn finish(self, run: &RunInfo, eval: Option<&EvalReport>) -> Result<PathBuf> {
        let path = self.dir.join("index.html");
        let html = self.render(run, eval);
        write_atomic(&path, html.as_bytes())?;
        Ok(path)
    }

    fn add_supports(&mut self, episode: &EpisodeMaps) -> Result<()> {
        let t = &episode.defect_type;
        let items = self.thumbnails(&episode.defect_support)?;
        self.supports.push(SupportRow {
            episodes: vec![t.clone()],
            images: episode
                .defect_support
                .iter()
                .map(|s| s.image.clone())
                .collect(),
            items,
        });
        let images: Vec<PathBuf> = episode
            .normal_support
            .iter()
            .map(|s| s.image.clone())
            .collect();
        if images.is_empty() {
            return Ok(());
        }
        if let Some(row) = self.normal_supports.iter_mut().find(|r| r.images == images) {
            row.episodes.push(t.clone());
            return Ok(());
        }
        let items = self.thumbnails(&episode.normal_support)?;
        self.normal_supports.push(SupportRow {
            episodes: vec![t.clone()],
            images,
            items,
        });
        Ok(())
    }

    /// Thumbnails (longer side `thumb_size`) with the defect outlined, and their captions.
    fn thumbnails(&mut self, samples: &[Sample]) -> Result<Vec<(String, String)>> {
        let mut items = Vec::with_capacity(samples.len());
        for s in samples {
            let image = load_rgb(&s.image, self.config.limits)?;
            let thumb = fit_inside(&image, self.config.thumb_size);
            let thumb = match &s.mask {
                Some(p) => {
                    let mask = load_mask(p, Some(image.dimensions()), self.config.limits)?;
                    let mask = resize_mask(&mask, thumb.width(), thumb.height());
                    outlined(&thumb, &mask, GROUND_TRUTH_COLOUR, 2)
                }
                None => thumb,
            };
            items.push((self.save(&thumb)?, format!("{} {}", s.defect_type, s.stem)));
        }
        Ok(items)
    }

    /// The image resized to the panel cell; see [`fit_inside`].
    fn cell(&self, image: &RgbImage) -> RgbImage {
        fit_inside(image, self.config.cell_size)
    }

    fn save(&mut self, picture: &RgbImage) -> Result<String> {
        let rel = format!("{ASSETS}/{:04}.png", self.written);
        self.written += 1;
        let path = self.dir.join(&rel);
        let mut buf = std::io::Cursor::new(Vec::new());
        picture
            .write_to(&mut buf, image::ImageFormat::Png)
            .map_err(|e| Error::invalid_data(&path, format!("cannot encode PNG: {e}")))?;
        write_atomic(&path, buf.get_ref())?;
        Ok(rel)
    }

    fn render(&self, run: &RunInfo, eval: Option<&EvalReport>) -> String {
        let mut h = String::new();
        let title = escape(&run.title);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title}</title><style>{CSS}</style></head><body>\n<h1>{title}</h1>\n"
        );
        if let Some(report) = eval {
            h.push_str(&metrics_section(report, self.config.fpr_limit));
        }
        if !self.curves.is_empty() {
            h.push_str(&self.curves_section());
        }
        if !self.supports.is_empty() {
            h.push_str(&self.supports_section());
        }
        h.push_str(&self.gallery_section(eval.is_some()));
        let _ = write!(
            h,
            "<h2>Run</h2>\n<p>Command line:</p><pre>{}</pre>\n<details><summary>Settings (JSON)</summary><pre>{}</pre></details>\n",
            escape(&run.command_line),
            escape(&serde_json::to_string_pretty(&run.settings).unwrap_or_default())
        );
        let _ = write!(h, "<script>{JS}</script>\n</body></html>\n");
        h
    }

    fn scope(&self) -> String {
        match self.shots {
            Some(k) => format!("seed {} with {k} defect shot(s)", self.config.seed),
            None => format!("seed {}", self.config.seed),
        }
    }

    fn curves_section(&self) -> String {
        let mut h = format!(
            "<h2>Curves</h2>\n<p class=\"note\">Pixel-level, per defect type (its defect images \
             pooled with the defect-free ones), from the episodes of {}. PRO is drawn up to \
             the FPR limit {} that AUPRO integrates.</p>\n<div class=\"curves\">",
            self.scope(),
            self.config.fpr_limit
        );
        let series = |f: fn(&CurveSet) -> &Vec<(f64, f64)>| -> Vec<(&str, &Vec<(f64, f64)>)> {
            self.curves
                .iter()
                .map(|(t, c)| (t.as_str(), f(c)))
                .collect()
        };
        let plots = [
            (
                Plot {
                    title: "ROC",
                    x_label: "false-positive rate",
                    y_label: "true-positive rate",
                    x_max: 1.0,
                    diagonal: true,
                    legend_top: false,
                },
                series(|c| &c.roc),
            ),
            (
                Plot {
                    title: "PRO",
                    x_label: "false-positive rate",
                    y_label: "per-region overlap",
                    x_max: self.config.fpr_limit,
                    diagonal: false,
                    legend_top: false,
                },
                series(|c| &c.pro),
            ),
            (
                Plot {
                    title: "Precision-recall",
                    x_label: "recall",
                    y_label: "precision",
                    x_max: 1.0,
                    diagonal: false,
                    legend_top: true,
                },
                series(|c| &c.pr),
            ),
        ];
        for (plot, s) in &plots {
            h.push_str(&svg_plot(plot, s));
        }
        h.push_str("</div>\n");
        h
    }

    fn supports_section(&self) -> String {
        let mut h = format!(
            "<h2>Support images</h2>\n<p class=\"note\">What each episode of {} was fitted on; \
             defects outlined in <span class=\"gt\">green</span>.</p>\n",
            self.scope()
        );
        let all_types = self.supports.len();
        let normal_rows = self.normal_supports.iter().map(|r| {
            let label = if r.episodes.len() == all_types && all_types > 1 {
                "good (every type)".to_string()
            } else {
                format!("good ({})", r.episodes.join(", "))
            };
            (label, r)
        });
        let rows = self
            .supports
            .iter()
            .map(|r| (r.episodes.join(", "), r))
            .chain(normal_rows);
        for (label, row) in rows {
            let _ = write!(
                h,
                "<div class=\"supports\"><div class=\"rowlabel\">{}</div>",
                escape(&label)
            );
            for (file, caption) in &row.items {
                let _ = write!(
                    h,
                    "<figure><img src=\"{}\" alt=\"{c}\"><figcaption>{c}</figcaption></figure>",
                    escape(file),
                    c = escape(caption)
                );
            }
            h.push_str("</div>\n");
        }
        h
    }

    fn gallery_section(&self, with_truth: bool) -> String {
        let mut h = String::from("<h2>Gallery</h2>\n");
        if with_truth {
            let _ = write!(
                h,
                "<p class=\"note\">The worst queries of {}: defect images with the lowest \
                 maximum score (misses) and defect-free images with the highest (false alarms). \
                 Each panel: image · ground truth in <span class=\"gt\">green</span> · anomaly \
                 map (legend ticks: 0, threshold, 2×threshold) · predicted defects in \
                 <span class=\"pred\">cyan</span>. \"Score / thr\" is the map's maximum over the \
                 episode's threshold: a defect image below 1 is missed, a good one above 1 is a \
                 false alarm.</p>\n<div class=\"sort\">Sort: \
                 <button data-sort=\"misses\" class=\"on\">worst misses first</button>\
                 <button data-sort=\"score\">highest score</button>\
                 <button data-sort=\"type\">by type</button></div>\n",
                self.scope()
            );
        } else {
            h.push_str(
                "<p class=\"note\">Highest-scoring images first. Each panel: image · anomaly map \
                 (legend ticks: 0, threshold, 2×threshold) · predicted defects in \
                 <span class=\"pred\">cyan</span>.</p>\n<div class=\"sort\">Sort: \
                 <button data-sort=\"score\" class=\"on\">highest score</button>\
                 <button data-sort=\"name\">by name</button></div>\n",
            );
        }
        let _ = write!(
            h,
            "<div id=\"gallery\" data-default=\"{}\">",
            if with_truth { "misses" } else { "score" }
        );
        for g in &self.gallery {
            let ratio = if g.threshold > 0.0 {
                g.score / g.threshold
            } else {
                g.score
            };
            // Misses first: defect images by ratio ascending, then normals by ratio descending.
            let miss_key = if g.defect_type == GOOD {
                1000.0 - f64::from(ratio)
            } else {
                f64::from(ratio)
            };
            let verdict = match (g.defect_type.as_str(), ratio >= 1.0) {
                ("", _) => String::new(),
                (GOOD, true) => " <b class=\"bad\">false alarm</b>".into(),
                (GOOD, false) => " ok".into(),
                (_, true) => " found".into(),
                (_, false) => " <b class=\"bad\">missed</b>".into(),
            };
            let kind = if g.episode.is_empty() || g.defect_type == g.episode {
                escape(&g.defect_type)
            } else {
                format!("{} ({} model)", escape(&g.defect_type), escape(&g.episode))
            };
            let _ = write!(
                h,
                "<figure class=\"panel\" data-score=\"{s}\" data-miss=\"{miss_key}\" data-type=\"{t}\" \
                 data-name=\"{n}\"><img src=\"{f}\" alt=\"{n}\" loading=\"eager\"><figcaption>{kind} \
                 <b>{n}</b> · score {s:.3} / thr {thr:.3} = {ratio:.2}{verdict}</figcaption></figure>",
                s = g.score,
                t = escape(&format!("{} {}", g.episode, g.defect_type)),
                n = escape(&g.name),
                f = escape(&g.file),
                thr = g.threshold,
            );
        }
        h.push_str("</div>\n");
        h
    }
}

fn metrics_section(report: &EvalReport, fpr_limit: f64) -> String {
    let mut h = format!(
        "<h2>Metrics</h2>\n<p class=\"note\">Per defect type: mean ± standard deviation over \
         seeds. Pixel metrics pool the type's defect images with every defect-free image; \
         AUPRO is integrated up to FPR {fpr_limit}.</p>\n",
    );
    let ms = |v: MeanStd| format!("{:.3} <small>± {:.3}</small>", v.mean, v.std);
    let row = |name: &str, m: &MetricStats, class: &str| {
        format!(
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            ms(m.pixel_auroc),
            ms(m.aupro),
            ms(m.pixel_ap),
            ms(m.f1_max),
            m.image_auroc.map_or("–".into(), ms),
            m.seeds
        )
    };
    for (k, by_type) in &report.per_type {
        let _ = write!(
            h,
            "<table class=\"metrics\"><caption>{} — {k} defect shot(s), {:.1} ms per query \
             image</caption><thead><tr><th>defect type</th><th>pixel AUROC</th><th>AUPRO</th>\
             <th>pixel AP</th><th>F1-max</th><th>image AUROC</th><th>seeds</th></tr></thead><tbody>",
            escape(&report.category),
            report.ms_per_query.get(k).copied().unwrap_or(f64::NAN)
        );
        for (t, m) in by_type {
            h.push_str(&row(t, m, ""));
        }
        if let Some(m) = report.overall.get(k) {
            h.push_str(&row("mean over types", m, "mean"));
        }
        h.push_str("</tbody></table>\n");
    }
    h
}

/// The image resized so that its longer side is `side` (aspect ratio kept): large images
/// shrink to keep the page small, small ones grow to stay legible.
fn fit_inside(image: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let scale = f64::from(side) / f64::from(w.max(h));
    let (nw, nh) = (
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    );
    resize_image(image, nw, nh)
}

fn sample_name(s: &Sample) -> String {
    format!("{}/{}", s.defect_type, s.stem)
}

const CSS: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#1c1c1c;background:#fafafa}\
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:24px 0 6px;border-bottom:1px solid #ddd}\
.note{color:#555;max-width:70em}.gt{color:#1a9e2c;font-weight:bold}.pred{color:#0098b0;font-weight:bold}\
table.metrics{border-collapse:collapse;margin:8px 0 16px}table.metrics caption{text-align:left;font-weight:bold;padding:4px 0}\
table.metrics td,table.metrics th{border:1px solid #ddd;padding:3px 10px;text-align:right}\
table.metrics td:first-child,table.metrics th:first-child{text-align:left}table.metrics tr.mean{font-weight:bold;background:#f0f0f0}\
small{color:#777}.curves{display:flex;flex-wrap:wrap;gap:12px}.curves svg{background:#fff;border:1px solid #ddd}\
.supports{display:flex;flex-wrap:wrap;align-items:flex-start;gap:6px;margin:6px 0}\
.rowlabel{width:110px;font-weight:bold;padding-top:4px}figure{margin:0}figcaption{font-size:12px;color:#444}\
#gallery{display:flex;flex-wrap:wrap;gap:12px 18px}.panel img{display:block;max-width:100%}\
.bad{color:#c0392b}.sort button{margin-right:6px;padding:3px 10px;border:1px solid #aaa;background:#fff;border-radius:4px;cursor:pointer}\
.sort button.on{background:#333;color:#fff}pre{background:#f0f0f0;padding:8px;overflow:auto;max-height:24em}";

/// Sorting buttons, and a self-check the browser test reads: `data-images-ok="N/M"` (images
/// decoded of images on the page) and `data-curves` (SVG plots) on `<body>`.
const JS: &str = r#"
(function(){
  var g=document.getElementById('gallery');
  function sortBy(k){
    if(!g)return;
    var items=Array.prototype.slice.call(g.children);
    var num=function(e,a){return parseFloat(e.dataset[a]);};
    items.sort(function(a,b){
      if(k==='score')return num(b,'score')-num(a,'score');
      if(k==='name')return a.dataset.name<b.dataset.name?-1:1;
      if(k==='type'&&a.dataset.type!==b.dataset.type)return a.dataset.type<b.dataset.type?-1:1;
      return num(a,'miss')-num(b,'miss');
    });
    items.forEach(function(e){g.appendChild(e);});
    document.querySelectorAll('.sort button').forEach(function(b){
      b.classList.toggle('on',b.dataset.sort===k);});
  }
  document.querySelectorAll('.sort button').forEach(function(b){
    b.addEventListener('click',function(){sortBy(b.dataset.sort);});});
  if(g)sortBy(g.dataset.default);
  function check(){
    var imgs=document.images,ok=0;
    for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0)ok++;}
    document.body.dataset.imagesOk=ok+'/'+imgs.length;
    document.body.dataset.curves=String(document.querySelectorAll('svg.curve polyline').length);
  }
  check();
  window.addEventListener('load',check);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_gallery_keeps_the_highest_scores_and_their_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = ReportConfig {
            max_panels: 2,
            cell_size: 16,
            ..ReportConfig::default()
        };
        let mut writer = ReportWriter::new(dir.path(), config).unwrap();
        let image = RgbImage::from_pixel(8, 8, image::Rgb([90, 90, 90]));
        for (name, peak) in [("a", 0.2f32), ("b", 0.9), ("c", 0.5), ("d", 0.1)] {
            let map = FloatMap {
                width: 4,
                height: 4,
                data: vec![peak; 16],
            };
            writer
                .add_prediction(name, &image, &map, peak, 0.4)
                .unwrap();
        }
        let names: Vec<&str> = writer.gallery.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"b") && names.contains(&"c"), "{names:?}");
        let pngs = std::fs::read_dir(dir.path().join(ASSETS)).unwrap().count();
        assert_eq!(pngs, 2, "evicted panels are deleted");
        let page = writer
            .finish(&RunInfo::default(), None)
            .map(|p| std::fs::read_to_string(p).unwrap())
            .unwrap();
        assert_eq!(page.matches("class=\"panel\"").count(), 2);
        assert!(page.contains("data-default=\"score\"") && !page.contains("<table"));
    }
}
