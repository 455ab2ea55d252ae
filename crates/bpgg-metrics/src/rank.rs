//! Ranking of scores: one descending sort shared by every threshold metric.
//!
//! Every curve metric of this crate (ROC, precision-recall, F1, PRO) is a sweep of a
//! threshold `t` from the highest score down, predicting "anomalous" for `score >= t`. Only
//! the *distinct* scores matter as thresholds; pixels with equal scores enter the positive
//! set together. This is exactly scikit-learn's `_binary_clf_curve`, which `roc_curve`,
//! `precision_recall_curve` and the MVTec AD `compute_pro` all build on.
//!
//! Each score is packed with a 32-bit payload into one `u64` whose high half is an
//! order-preserving key of the score (inverted, so ascending integer order is descending score
//! order) and whose low half says what the pixel is (`0`: negative; `k > 0`: positive, for PRO
//! the ground-truth region `k - 1`). The packed values are sorted by their high halves with a
//! three-pass LSD radix sort, which is several times faster than a comparison sort for the
//! millions of pixels of a test set.

use crate::error::{Error, Result};

/// Payload of a negative (normal) sample.
pub(crate) const NEGATIVE: u32 = 0;
/// Payload of a positive sample when regions are not tracked.
pub(crate) const POSITIVE: u32 = 1;

/// Below this many entries a comparison sort beats the radix sort's fixed histogram cost.
const RADIX_MIN_LEN: usize = 4096;
/// Bit width of each radix digit (3 digits cover the 32 key bits: 11 + 11 + 10).
const RADIX_BITS: u32 = 11;
const RADIX_BUCKETS: usize = 1 << RADIX_BITS;
/// Bit offsets of the three digits of the key inside a packed entry.
const RADIX_SHIFTS: [u32; 3] = [32, 32 + RADIX_BITS, 32 + 2 * RADIX_BITS];

/// Maps a non-NaN score to a `u32` whose unsigned order is the score's numeric order.
///
/// `-0.0` and `+0.0` are one threshold (as in numpy, where `-0.0 == 0.0`), so both map to the
/// key of `+0.0`.
fn ascending_key(score: f32) -> u32 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Inverse of [`ascending_key`].
fn score_from_ascending_key(key: u32) -> f32 {
    if key >> 31 == 1 {
        f32::from_bits(key & 0x7fff_ffff)
    } else {
        f32::from_bits(!key)
    }
}

/// Packs a score and its payload so that ascending `u64` order is descending score order.
///
/// The caller has rejected NaN.
pub(crate) fn pack(score: f32, payload: u32) -> u64 {
    (u64::from(!ascending_key(score)) << 32) | u64::from(payload)
}

/// The payload of a packed entry.
pub(crate) fn payload(entry: u64) -> u32 {
    entry as u32
}

fn entry_score(entry: u64) -> f32 {
    score_from_ascending_key(!((entry >> 32) as u32))
}

/// Returns [`Error::NanScore`] for the first NaN in `scores`, whose first element has position
/// `offset` in the caller's pooled order.
pub(crate) fn check_no_nan(scores: &[f32], offset: usize) -> Result<()> {
    match scores.iter().position(|s| s.is_nan()) {
        Some(index) => Err(Error::NanScore {
            index: offset + index,
        }),
        None => Ok(()),
    }
}

/// Sorts packed entries by their score keys (the high 32 bits), ascending.
fn sort_by_key(entries: &mut Vec<u64>) {
    if entries.len() < RADIX_MIN_LEN {
        entries.sort_unstable();
        return;
    }
    let mut histograms = vec![[0usize; RADIX_BUCKETS]; RADIX_SHIFTS.len()];
    for &entry in entries.iter() {
        for (histogram, shift) in histograms.iter_mut().zip(RADIX_SHIFTS) {
            histogram[((entry >> shift) as usize) & (RADIX_BUCKETS - 1)] += 1;
        }
    }
    let len = entries.len();
    let mut buffer = vec![0u64; len];
    for (histogram, shift) in histograms.iter_mut().zip(RADIX_SHIFTS) {
        // A digit shared by every entry leaves the order unchanged: skip the pass.
        if histogram.contains(&len) {
            continue;
        }
        let mut offset = 0;
        for count in histogram.iter_mut() {
            let bucket_len = *count;
            *count = offset;
            offset += bucket_len;
        }
        for &entry in entries.iter() {
            let bucket = ((entry >> shift) as usize) & (RADIX_BUCKETS - 1);
            buffer[histogram[bucket]] = entry;
            histogram[bucket] += 1;
        }
        std::mem::swap(entries, &mut buffer);
    }
}

/// Scores sorted once in descending order, with the class of each sample; the shared input of
/// [`roc_auc`](crate::roc_auc), [`average_precision`](crate::average_precision),
/// [`f1_max`](crate::f1_max) and their curves.
///
/// Build it once with [`RankedScores::new`] and call several metric methods on it to pay for
/// the sort only once.
///
/// # Example
/// ```
/// use bpgg_metrics::RankedScores;
/// let ranked = RankedScores::new(&[0.9, 0.8, 0.3, 0.1], &[true, false, true, false])?;
/// assert_eq!(ranked.roc_auc()?, 0.75);
/// assert_eq!(ranked.positives(), 2);
/// # Ok::<(), bpgg_metrics::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RankedScores {
    /// Packed entries (see the module docs), ascending, i.e. descending by score.
    entries: Vec<u64>,
    positives: u64,
    negatives: u64,
}

impl RankedScores {
    /// Sorts `scores` (descending) with their `labels` (`true` = positive / anomalous).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if the slices differ in length, [`Error::EmptyInput`] if they
    /// are empty, [`Error::NanScore`] if a score is NaN. A single class is *not* an error here;
    /// the metrics that need both classes check it.
    pub fn new(scores: &[f32], labels: &[bool]) -> Result<Self> {
        if scores.len() != labels.len() {
            return Err(Error::LengthMismatch {
                what: format!("{} scores but {} labels", scores.len(), labels.len()),
            });
        }
        if scores.is_empty() {
            return Err(Error::EmptyInput {
                what: "no scores".into(),
            });
        }
        check_no_nan(scores, 0)?;
        let entries = scores
            .iter()
            .zip(labels)
            .map(|(&score, &label)| pack(score, if label { POSITIVE } else { NEGATIVE }))
            .collect();
        Ok(Self::from_entries(entries))
    }

    /// Sorts already packed entries (payload `0` negative, anything else positive).
    pub(crate) fn from_entries(mut entries: Vec<u64>) -> Self {
        let positives = entries
            .iter()
            .filter(|&&entry| payload(entry) != NEGATIVE)
            .count() as u64;
        let negatives = entries.len() as u64 - positives;
        sort_by_key(&mut entries);
        Self {
            entries,
            positives,
            negatives,
        }
    }

    /// Number of positive (anomalous) samples.
    pub fn positives(&self) -> u64 {
        self.positives
    }

    /// Number of negative (normal) samples.
    pub fn negatives(&self) -> u64 {
        self.negatives
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always `false`: construction rejects empty input.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The distinct thresholds from the highest score down, with cumulative counts.
    pub(crate) fn steps(&self) -> Steps<'_> {
        Steps {
            rest: &self.entries,
            tp: 0,
            fp: 0,
        }
    }

    /// [`Error::SingleClass`] unless both classes are present.
    pub(crate) fn require_both_classes(&self, metric: &str) -> Result<()> {
        if self.positives == 0 || self.negatives == 0 {
            return Err(Error::SingleClass {
                what: format!(
                    "{metric} needs positives and negatives, got {} positive and {} negative samples",
                    self.positives, self.negatives
                ),
            });
        }
        Ok(())
    }

    /// [`Error::SingleClass`] unless at least one positive is present.
    pub(crate) fn require_positives(&self, metric: &str) -> Result<()> {
        if self.positives == 0 {
            return Err(Error::SingleClass {
                what: format!(
                    "{metric} needs positive samples, got none among {}",
                    self.entries.len()
                ),
            });
        }
        Ok(())
    }
}

/// One distinct threshold of the sweep: everything scoring `>= threshold` is predicted positive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step<'a> {
    pub threshold: f32,
    /// Cumulative true positives (positives with score `>= threshold`).
    pub tp: u64,
    /// Cumulative false positives (negatives with score `>= threshold`).
    pub fp: u64,
    /// The packed entries whose score equals `threshold`.
    pub group: &'a [u64],
}

/// Iterator over the distinct thresholds of a [`RankedScores`], descending.
#[derive(Debug)]
pub(crate) struct Steps<'a> {
    rest: &'a [u64],
    tp: u64,
    fp: u64,
}

impl<'a> Iterator for Steps<'a> {
    type Item = Step<'a>;

    fn next(&mut self) -> Option<Step<'a>> {
        let first = *self.rest.first()?;
        let key = first >> 32;
        let group_len = self
            .rest
            .iter()
            .position(|&entry| entry >> 32 != key)
            .unwrap_or(self.rest.len());
        let (group, rest) = self.rest.split_at(group_len);
        let positives = group
            .iter()
            .filter(|&&entry| payload(entry) != NEGATIVE)
            .count() as u64;
        self.tp += positives;
        self.fp += group_len as u64 - positives;
        self.rest = rest;
        Some(Step {
            threshold: entry_score(first),
            tp: self.tp,
            fp: self.fp,
            group,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_and_orders() {
        let scores = [
            f32::NEG_INFINITY,
            -3.5,
            -f32::MIN_POSITIVE,
            0.0,
            1e-30,
            0.5,
            7.0,
            f32::INFINITY,
        ];
        for pair in scores.windows(2) {
            assert!(ascending_key(pair[0]) < ascending_key(pair[1]), "{pair:?}");
        }
        for &score in &scores {
            assert_eq!(score_from_ascending_key(ascending_key(score)), score);
        }
        assert_eq!(ascending_key(-0.0), ascending_key(0.0));
    }

    #[test]
    fn radix_sort_matches_comparison_sort() {
        let mut state = 0x1234_5678_u64;
        let mut entries: Vec<u64> = (0..50_000)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Few distinct scores, so many ties; payload keeps the index.
                pack(((state >> 40) % 300) as f32 - 150.0, i)
            })
            .collect();
        let mut expected = entries.clone();
        expected.sort_by_key(|&entry| entry >> 32);
        sort_by_key(&mut entries);
        let keys: Vec<u64> = entries.iter().map(|&entry| entry >> 32).collect();
        let expected_keys: Vec<u64> = expected.iter().map(|&entry| entry >> 32).collect();
        assert_eq!(keys, expected_keys);
        // LSD radix sort is stable: ties keep their input order, exactly like a stable sort.
        assert_eq!(entries, expected);
    }

    #[test]
    fn steps_group_ties() {
        let ranked = RankedScores::new(&[0.5, 0.9, 0.5, 0.1], &[true, false, false, true]).unwrap();
        let steps: Vec<(f32, u64, u64)> =
            ranked.steps().map(|s| (s.threshold, s.tp, s.fp)).collect();
        assert_eq!(steps, vec![(0.9, 0, 1), (0.5, 1, 2), (0.1, 2, 2)]);
    }
}
