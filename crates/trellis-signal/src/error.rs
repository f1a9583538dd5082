//! Library error type.

use std::path::PathBuf;

/// Errors raised by the signal engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("zip archive {path}: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("CSV error in {path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("malformed line {path}:{line}: {reason}")]
    Malformed {
        path: String,
        line: u64,
        reason: String,
    },
    #[error("bad header in {path}: {reason}")]
    Header { path: String, reason: String },
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("prior fit failed: {0}")]
    Fit(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
