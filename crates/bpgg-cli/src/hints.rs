//! What to do about a library error, in the CLI's terms: the library's messages name no flag, so
//! the CLI adds the flag that fixes the problem where there is one.

use bpgg::model::Scoring;

/// The hint for the first library error in `err`'s chain, if any.
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<bpgg::Error>())
        .and_then(hint_for)
}

/// `message` followed by the hint for `err` in parentheses, when there is one.
pub fn with_hint(message: &str, err: &anyhow::Error) -> String {
    match hint(err) {
        Some(hint) => format!("{message} ({hint})"),
        None => message.to_string(),
    }
}

/// `error`'s message followed by its hint (for errors reported without stopping, such as a
/// skipped image).
pub fn describe(error: &bpgg::Error) -> String {
    match hint_for(error) {
        Some(hint) => format!("{error} ({hint})"),
        None => error.to_string(),
    }
}

fn hint_for(err: &bpgg::Error) -> Option<&'static str> {
    match err {
        bpgg::Error::ImageTooLarge { .. } => {
            Some("raise it with --max-pixels if the file is genuine")
        }
        bpgg::Error::MissingSupports {
            scoring: Scoring::Bpgg | Scoring::Hybrid,
            defects: true,
            ..
        } => Some("with normal images only, use --scoring knn"),
        bpgg::Error::MissingSupports { defects: false, .. } => {
            Some("give a normal image (--normal), or use --scoring bpgg")
        }
        bpgg::Error::TrainingRun { exists: true, .. } => {
            Some("pass --resume to continue it or choose another output folder")
        }
        bpgg::Error::TrainingRun { exists: false, .. } => Some("start without --resume"),
        _ => None,
    }
}
