//! The library's errors as Python exceptions, in one place: files → `OSError` (with the errno, so
//! a missing file is a `FileNotFoundError`), everything the caller can fix (bad images, masks,
//! configuration, model files, maps) → `ValueError`, a failed tensor operation → `RuntimeError`.
//! The message is the library's own, followed by a hint in the package's terms where the CLI
//! gives one in its flags' terms.

use bpgg::model::Scoring;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

/// What to do about an error, in the keywords of this package.
fn hint(err: &bpgg::Error) -> Option<&'static str> {
    match err {
        bpgg::Error::ImageTooLarge { .. } => Some("raise max_pixels if the file is genuine"),
        // (Missing defect images: the library's message already names knn scoring.)
        bpgg::Error::MissingSupports {
            defects: false,
            scoring: Scoring::Knn | Scoring::Hybrid,
            ..
        } => Some("give a normal image, or use scoring=\"bpgg\""),
        _ => None,
    }
}

/// Converts a library error.
pub fn to_py(err: bpgg::Error) -> PyErr {
    match err {
        bpgg::Error::Io {
            ref path,
            ref source,
        } => {
            let message = err.to_string();
            match source.raw_os_error() {
                // `OSError(errno, strerror, filename)` picks the subclass (FileNotFoundError,
                // PermissionError, ...) from the errno.
                Some(errno) => PyOSError::new_err((errno, message, path.clone())),
                None => PyOSError::new_err(message),
            }
        }
        bpgg::Error::Tensor(_) => PyRuntimeError::new_err(err.to_string()),
        other => PyValueError::new_err(match hint(&other) {
            Some(hint) => format!("{other} ({hint})"),
            None => other.to_string(),
        }),
    }
}

/// Converts a metrics error (always something about the maps or masks given).
pub fn metrics_to_py(err: bpgg_metrics::Error) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// A `ValueError` with `message`.
pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}
