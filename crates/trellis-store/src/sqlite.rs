//! SQLite backend: one writer connection (`BEGIN IMMEDIATE`, so a write never
//! fails half-way on a lock upgrade) and a pool of read-only connections.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

crate::backend::backend_impl!(
    sqlx::Sqlite,
    sqlx::SqliteConnection,
    begin = "BEGIN IMMEDIATE",
    lock_suffix = ""
);
crate::backend::bulk_sqlite!();

mod fast;
pub(crate) use fast::FastWriter;

pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/sqlite/0001_foundation.sql"),
    ),
    (2, "edc", include_str!("../migrations/sqlite/0002_edc.sql")),
    (3, "sdv", include_str!("../migrations/sqlite/0003_sdv.sql")),
    (
        4,
        "audit indexes",
        include_str!("../migrations/sqlite/0004_audit_indexes.sql"),
    ),
    (
        5,
        "item values without rowid",
        include_str!("../migrations/sqlite/0005_item_values_without_rowid.sql"),
    ),
];

/// Opens (and with `create`, creates) the database file.
pub(crate) async fn open(
    path: &Path,
    create: bool,
    synchronous_full: bool,
    readers: u32,
    max_batch: usize,
    counters: std::sync::Arc<crate::WriteCounters>,
) -> Result<(Pool, Pool, FastWriter)> {
    if !create && !path.exists() {
        return Err(StoreError::BadUrl(format!(
            "SQLite database {} does not exist (use `trellis migrate` or `serve --demo` to create one, or check the path)",
            path.display()
        )));
    }
    if create
        && let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::BadUrl(format!("cannot create directory {}: {e}", dir.display()))
        })?;
    }
    let base = SqliteConnectOptions::from_str("sqlite://")
        .map_err(StoreError::Database)?
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        // The write path's padded bulk statements stay prepared, and a bulk read's rows
        // cross from the worker thread without waiting for the reader row by row.
        .connect_with(
            base.clone()
                .create_if_missing(create)
                .statement_cache_capacity(256)
                // Multi-row upserts keep a statement journal; in memory it costs no file writes.
                .pragma("temp_store", "memory")
                .row_buffer_size(1024),
        )
        .await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(readers.max(1))
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(base.read_only(true))
        .await?;
    let fast = FastWriter::open(
        path,
        synchronous_full,
        max_batch,
        counters,
        writer.clone(),
        tokio::runtime::Handle::current(),
    )?;
    Ok((writer, reader, fast))
}
