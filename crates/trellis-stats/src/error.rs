//! Library error type.

use std::path::PathBuf;

/// Errors from reading data and running analyses.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    RawIo(#[from] std::io::Error),
    /// A malformed XPORT file: names the 80-byte record (1-based) and the byte offset.
    #[error("XPORT: {message} (record {record}, byte offset {offset})")]
    Xport {
        message: String,
        record: u64,
        offset: u64,
    },
    /// A dataset that cannot be written as XPORT v5 (names, labels, values out of range).
    #[error("XPORT write: {0}")]
    XportWrite(String),
    #[error("CSV: {0}")]
    Csv(String),
    #[error("column `{0}` not found in dataset (available: {1})")]
    NoColumn(String, String),
    /// A character column where numbers are needed; `detail` names the values that are not
    /// numbers and their lines.
    #[error("column `{column}` must be numeric, but {detail}")]
    NotNumeric { column: String, detail: String },
    /// Data that do not support the requested analysis (all censored, singular design, ...).
    #[error("{0}")]
    Degenerate(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StatsError>;

pub(crate) fn degenerate<T>(msg: impl Into<String>) -> Result<T> {
    Err(StatsError::Degenerate(msg.into()))
}
