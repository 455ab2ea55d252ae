//! Counters and histograms for `GET /metrics`, written in the Prometheus text exposition format
//! (version 0.0.4) by hand: a few counters do not need a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::store::Counts;

/// Upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS_S: [f64; 14] = [
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each bound (not cumulative; summed when rendered).
    buckets: [u64; LATENCY_BUCKETS_S.len()],
    sum_s: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|&b| seconds <= b) {
            self.buckets[i] += 1;
        }
        self.sum_s += seconds;
        self.count += 1;
    }
}

/// Everything `/metrics` reports besides the store's counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route template, method, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route template → latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
    in_flight: AtomicI64,
    fits: AtomicU64,
    fit_failures: AtomicU64,
    predictions: AtomicU64,
    predict_batches: AtomicU64,
    rejected_busy: AtomicU64,
}

impl Metrics {
    /// A request entered the service.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered. `route` is the route's template (`/v1/projects/{id}`), never
    /// the raw path, so that ids do not become label values.
    pub fn request_finished(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        *lock(&self.requests)
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        lock(&self.latency)
            .entry(route.to_string())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// A fit finished (`ok`) or failed.
    pub fn fit_finished(&self, ok: bool) {
        if ok {
            self.fits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.fit_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One forward pass scored `images` images.
    pub fn predict_batch(&self, images: usize) {
        self.predict_batches.fetch_add(1, Ordering::Relaxed);
        self.predictions.fetch_add(images as u64, Ordering::Relaxed);
    }

    /// A request was turned away because the work queue was full.
    pub fn rejected_busy(&self) {
        self.rejected_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The text exposition, with the store's counts and the work admitted now.
    pub fn render(&self, counts: Option<Counts>, admitted_work: usize) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# HELP bpgg_http_requests_total HTTP requests answered, by route template, method \
             and status.\n# TYPE bpgg_http_requests_total counter"
        );
        for ((route, method, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                text,
                "bpgg_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(
            text,
            "# HELP bpgg_http_request_duration_seconds Time from a request's headers to its \
             answer, by route template.\n# TYPE bpgg_http_request_duration_seconds histogram"
        );
        for (route, h) in lock(&self.latency).iter() {
            let route = escape(route);
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS_S.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    text,
                    "bpgg_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "bpgg_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 bpgg_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 bpgg_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum_s, h.count
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut single = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        single(
            "bpgg_http_requests_in_flight",
            "gauge",
            "Requests being served now.",
            self.in_flight().to_string(),
        );
        single(
            "bpgg_work_admitted",
            "gauge",
            "Requests with CPU work (decode, fit, predict) admitted now, queued or running.",
            admitted_work.to_string(),
        );
        single(
            "bpgg_work_rejected_total",
            "counter",
            "Requests answered 503 because the work queue was full.",
            load(&self.rejected_busy).to_string(),
        );
        single(
            "bpgg_fits_total",
            "counter",
            "Fits that produced a model.",
            load(&self.fits).to_string(),
        );
        single(
            "bpgg_fit_failures_total",
            "counter",
            "Fits that failed (bad supports, bad options).",
            load(&self.fit_failures).to_string(),
        );
        single(
            "bpgg_predictions_total",
            "counter",
            "Images scored by predict.",
            load(&self.predictions).to_string(),
        );
        single(
            "bpgg_predict_batches_total",
            "counter",
            "Forward passes of predict (predictions / batches = mean batch size).",
            load(&self.predict_batches).to_string(),
        );
        if let Some(c) = counts {
            for (name, help, value) in [
                ("bpgg_projects", "Projects in the store.", c.projects),
                ("bpgg_images_stored", "Images in the store.", c.images),
                ("bpgg_masks_stored", "Masks in the store.", c.masks),
                (
                    "bpgg_models_stored",
                    "Fitted models in the store.",
                    c.models,
                ),
            ] {
                single(name, "gauge", help, value.to_string());
            }
        }
        text
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        for ms in [1, 1, 30, 700] {
            m.request_started();
            m.request_finished("/v1/x", "GET", 200, Duration::from_millis(ms));
        }
        let text = m.render(Some(Counts::default()), 0);
        assert!(text
            .contains("bpgg_http_requests_total{route=\"/v1/x\",method=\"GET\",status=\"200\"} 4"));
        assert!(text
            .contains("bpgg_http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.002\"} 2"));
        assert!(text
            .contains("bpgg_http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.05\"} 3"));
        assert!(
            text.contains("bpgg_http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"1\"} 4")
        );
        assert!(text.contains("bpgg_http_request_duration_seconds_count{route=\"/v1/x\"} 4"));
        assert!(text.contains("bpgg_http_requests_in_flight 0"));
        assert!(text.contains("bpgg_images_stored 0"));
    }
}
