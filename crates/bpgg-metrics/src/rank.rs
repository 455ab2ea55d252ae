//! Ranking of scores: one descending sort shared by every threshold metric.
//!
//! Every curve metric of this crate (ROC, precision-recall, F1, PRO) is a sweep of a
//! threshold `t` from the highest score down, predicting "anomalous" for `score >= t`. Only
//! the *distinct* scores matter as thresholds; samples with equal scores enter the positive
//! set together. This is exactly scikit-learn's `_binary_clf_curve`, which `roc_curve`,
//! `precision_recall_curve` and the MVTec AD `compute_pro` all build on.
//!
//! Each score becomes a `u32` key whose ascending unsigned order is descending score order.
//! Negatives are kept as bare keys; positives as `key << 32 | payload`, where the payload is
//! the ground-truth region number for PRO (`0` when regions are not tracked). Both lists are
//! sorted by key with a two-pass LSD radix sort, and the sweep merges them. Keeping the
//! (usually far more numerous) negatives at 4 bytes halves the memory traffic of the sort,
//! which dominates the cost of the metrics on millions of pixels.

use crate::error::{Error, Result};

/// Payload of a positive sample when regions are not tracked.
const NO_REGION: u32 = 0;

/// Below this many items a comparison sort beats the radix sort's fixed histogram cost.
const RADIX_MIN_LEN: usize = 1 << 16;
/// Bit width of each radix digit: two 16-bit digits cover the 32 key bits. Measured on 6.5M
/// pixels, two 16-bit passes beat three 11-bit or four 8-bit passes.
const RADIX_BITS: u32 = 16;
const RADIX_BUCKETS: usize = 1 << RADIX_BITS;
/// Bit offsets of the digits inside a key.
const RADIX_SHIFTS: [u32; 2] = [0, RADIX_BITS];

/// Maps a non-NaN score to a `u32` whose unsigned order is the *reverse* of the score's
/// numeric order, so that ascending keys visit scores from the highest down.
///
/// `-0.0` and `+0.0` are one threshold (as in numpy, where `-0.0 == 0.0`), so both map to the
/// key of `+0.0`.
pub(crate) fn descending_key(score: f32) -> u32 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    let ascending = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    !ascending
}

/// Inverse of [`descending_key`].
fn score_from_descending_key(key: u32) -> f32 {
    let ascending = !key;
    if ascending >> 31 == 1 {
        f32::from_bits(ascending & 0x7fff_ffff)
    } else {
        f32::from_bits(!ascending)
    }
}

/// Packs a positive sample's score key with its payload.
///
/// The caller has rejected NaN.
pub(crate) fn pack_positive(score: f32, payload: u32) -> u64 {
    (u64::from(descending_key(score)) << 32) | u64::from(payload)
}

/// The payload of a packed positive.
pub(crate) fn payload(entry: u64) -> u32 {
    entry as u32
}

fn positive_key(entry: u64) -> u32 {
    (entry >> 32) as u32
}

/// Returns [`Error::NanScore`] for the first NaN in `scores`, whose first element has position
/// `offset` in the caller's pooled order.
/// Checks a score/label pair of slices: same length, not empty, no NaN score.
pub(crate) fn check_scores_and_labels(scores: &[f32], labels: &[bool]) -> Result<()> {
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
    check_no_nan(scores, 0)
}

pub(crate) fn check_no_nan(scores: &[f32], offset: usize) -> Result<()> {
    match scores.iter().position(|s| s.is_nan()) {
        Some(index) => Err(Error::NanScore {
            index: offset + index,
        }),
        None => Ok(()),
    }
}

/// Sorts `items` by `key`, ascending; stable on the radix path.
fn sort_by_key<T: Copy + Default>(items: &mut Vec<T>, key: impl Fn(T) -> u32) {
    if items.len() < RADIX_MIN_LEN {
        items.sort_unstable_by_key(|&item| key(item));
        return;
    }
    let digit = |item: T, shift: u32| ((key(item) >> shift) as usize) & (RADIX_BUCKETS - 1);
    // One histogram per digit, all filled in a single read of the items.
    let mut histograms = vec![0usize; RADIX_BUCKETS * RADIX_SHIFTS.len()];
    for &item in items.iter() {
        for (pass, shift) in RADIX_SHIFTS.into_iter().enumerate() {
            histograms[pass * RADIX_BUCKETS + digit(item, shift)] += 1;
        }
    }
    let len = items.len();
    let mut buffer = vec![T::default(); len];
    for (histogram, shift) in histograms.chunks_exact_mut(RADIX_BUCKETS).zip(RADIX_SHIFTS) {
        // A digit shared by every item leaves the order unchanged: skip the pass.
        if histogram.contains(&len) {
            continue;
        }
        // Counts become the first output position of each bucket.
        let mut offset = 0;
        for count in histogram.iter_mut() {
            let bucket_len = *count;
            *count = offset;
            offset += bucket_len;
        }
        for &item in items.iter() {
            let next = &mut histogram[digit(item, shift)];
            buffer[*next] = item;
            *next += 1;
        }
        std::mem::swap(items, &mut buffer);
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
    /// Keys ([`descending_key`]) of the negatives, ascending.
    negatives: Vec<u32>,
    /// Packed positives ([`pack_positive`]), ascending by key.
    positives: Vec<u64>,
}

impl RankedScores {
    /// Sorts `scores` (descending) with their `labels` (`true` = positive / anomalous).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if the slices differ in length, [`Error::EmptyInput`] if they
    /// are empty, [`Error::NanScore`] if a score is NaN. A single class is *not* an error here;
    /// the metrics that need both classes check it.
    pub fn new(scores: &[f32], labels: &[bool]) -> Result<Self> {
        check_scores_and_labels(scores, labels)?;
        let positive_count = labels.iter().filter(|&&label| label).count();
        let mut negatives = Vec::with_capacity(scores.len() - positive_count);
        let mut positives = Vec::with_capacity(positive_count);
        for (&score, &label) in scores.iter().zip(labels) {
            if label {
                positives.push(pack_positive(score, NO_REGION));
            } else {
                negatives.push(descending_key(score));
            }
        }
        Ok(Self::from_parts(negatives, positives))
    }

    /// Sorts negative keys ([`descending_key`]) and packed positives ([`pack_positive`]).
    pub(crate) fn from_parts(mut negatives: Vec<u32>, mut positives: Vec<u64>) -> Self {
        sort_by_key(&mut negatives, |key| key);
        sort_by_key(&mut positives, positive_key);
        Self {
            negatives,
            positives,
        }
    }

    /// Number of positive (anomalous) samples.
    pub fn positives(&self) -> u64 {
        self.positives.len() as u64
    }

    /// Number of negative (normal) samples.
    pub fn negatives(&self) -> u64 {
        self.negatives.len() as u64
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.negatives.len() + self.positives.len()
    }

    /// Always `false`: construction rejects empty input.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `metric` over the distinct thresholds, from the highest score down, in one pass.
    /// Combine metrics with tuples to compute several in the same pass.
    pub(crate) fn sweep(&self, metric: &mut impl SweepMetric) {
        for step in self.steps() {
            metric.visit(&step);
        }
    }

    /// The distinct thresholds from the highest score down, with cumulative counts.
    pub(crate) fn steps(&self) -> Steps<'_> {
        Steps {
            negatives: &self.negatives,
            positives: &self.positives,
            tp: 0,
            fp: 0,
        }
    }

    /// [`Error::SingleClass`] unless both classes are present.
    pub(crate) fn require_both_classes(&self, metric: &str) -> Result<()> {
        if self.positives.is_empty() || self.negatives.is_empty() {
            return Err(Error::SingleClass {
                what: format!(
                    "{metric} needs positives and negatives, got {} positive and {} negative samples",
                    self.positives(),
                    self.negatives()
                ),
            });
        }
        Ok(())
    }

    /// [`Error::SingleClass`] unless at least one positive is present.
    pub(crate) fn require_positives(&self, metric: &str) -> Result<()> {
        if self.positives.is_empty() {
            return Err(Error::SingleClass {
                what: format!(
                    "{metric} needs positive samples, got none among {}",
                    self.len()
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
    /// The packed positives ([`pack_positive`]) whose score equals `threshold`.
    pub new_positives: &'a [u64],
}

/// A metric accumulated over the threshold sweep of a [`RankedScores`].
pub(crate) trait SweepMetric {
    /// Takes the next (lower) distinct threshold into account.
    fn visit(&mut self, step: &Step<'_>);
}

impl<A: SweepMetric, B: SweepMetric> SweepMetric for (A, B) {
    fn visit(&mut self, step: &Step<'_>) {
        self.0.visit(step);
        self.1.visit(step);
    }
}

/// Iterator over the distinct thresholds of a [`RankedScores`], descending: a merge of the
/// sorted negatives and positives.
#[derive(Debug)]
pub(crate) struct Steps<'a> {
    negatives: &'a [u32],
    positives: &'a [u64],
    tp: u64,
    fp: u64,
}

impl<'a> Iterator for Steps<'a> {
    type Item = Step<'a>;

    fn next(&mut self) -> Option<Step<'a>> {
        let key = match (
            self.negatives.first(),
            self.positives.first().map(|&entry| positive_key(entry)),
        ) {
            (None, None) => return None,
            (Some(&negative), None) => negative,
            (None, Some(positive)) => positive,
            (Some(&negative), Some(positive)) => negative.min(positive),
        };
        let new_negatives = self
            .negatives
            .iter()
            .position(|&other| other != key)
            .unwrap_or(self.negatives.len());
        let new_positives = self
            .positives
            .iter()
            .position(|&entry| positive_key(entry) != key)
            .unwrap_or(self.positives.len());
        let (group, rest) = self.positives.split_at(new_positives);
        self.positives = rest;
        self.negatives = &self.negatives[new_negatives..];
        self.tp += new_positives as u64;
        self.fp += new_negatives as u64;
        Some(Step {
            threshold: score_from_descending_key(key),
            tp: self.tp,
            fp: self.fp,
            new_positives: group,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_and_reverses_order() {
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
            assert!(
                descending_key(pair[0]) > descending_key(pair[1]),
                "{pair:?}"
            );
        }
        for &score in &scores {
            assert_eq!(score_from_descending_key(descending_key(score)), score);
        }
        assert_eq!(descending_key(-0.0), descending_key(0.0));
    }

    #[test]
    fn radix_sort_matches_a_stable_comparison_sort() {
        let mut state = 0x1234_5678_u64;
        // More items than RADIX_MIN_LEN, so that the radix path runs.
        let mut entries: Vec<u64> = (0..2 * RADIX_MIN_LEN as u32)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Few distinct scores, so many ties; the payload keeps the input position.
                pack_positive(((state >> 40) % 300) as f32 - 150.0, i)
            })
            .collect();
        let mut keys: Vec<u32> = entries.iter().map(|&entry| positive_key(entry)).collect();
        let mut expected = entries.clone();
        expected.sort_by_key(|&entry| positive_key(entry));
        sort_by_key(&mut entries, positive_key);
        // LSD radix sort is stable: ties keep their input order, exactly like a stable sort.
        assert_eq!(entries, expected);
        sort_by_key(&mut keys, |key| key);
        let expected_keys: Vec<u32> = expected.iter().map(|&entry| positive_key(entry)).collect();
        assert_eq!(keys, expected_keys);
    }

    #[test]
    fn steps_merge_classes_and_group_ties() {
        let ranked = RankedScores::new(
            &[0.5, 0.9, 0.5, 0.1, 0.7],
            &[true, false, false, true, true],
        )
        .unwrap();
        let steps: Vec<(f32, u64, u64, usize)> = ranked
            .steps()
            .map(|s| (s.threshold, s.tp, s.fp, s.new_positives.len()))
            .collect();
        assert_eq!(
            steps,
            vec![
                (0.9, 0, 1, 0),
                (0.7, 1, 1, 1),
                (0.5, 2, 2, 1),
                (0.1, 3, 2, 1)
            ]
        );
    }
}
