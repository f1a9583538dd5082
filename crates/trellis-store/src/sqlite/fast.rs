//! The SQLite write path for batches made only of item saves (what data entry sends),
//! on a connection owned by one thread.
//!
//! sqlx runs each SQLite statement by handing it to the connection's worker thread and
//! waiting for the answer: two thread switches per statement. Here the whole batch (read
//! heads and current values, plan in memory with the same code as the sqlx path, write,
//! commit) runs on this thread with direct calls; the async side only queues batches.
//! Batches holding anything else run, in their turn, on the sqlx path driven from this same
//! thread, so only one of the two connections writes at a time.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension as _, TransactionBehavior, params};
use trellis_audit::{Chain, ChainHead, StoredEntry};
use trellis_domain::UtcMicros;
use uuid::Uuid;

use super::{ItemKey, Items, Job, Pool, plan_request, save_only};
use crate::WriteCounters;
use crate::error::{Result, StoreError};
use crate::model::Mutation;

/// Owns the thread; dropping the sender (at `close` or when the store goes) ends it.
pub(crate) struct FastWriter {
    tx: Mutex<Option<std::sync::mpsc::Sender<Vec<Job>>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl FastWriter {
    /// Opens the writer's connection and starts its thread. `pool` is the sqlx writer,
    /// which the thread drives (through `runtime`) for batches this path does not take.
    pub(crate) fn open(
        path: &Path,
        synchronous_full: bool,
        max_batch: usize,
        counters: Arc<WriteCounters>,
        pool: Pool,
        runtime: tokio::runtime::Handle,
    ) -> Result<FastWriter> {
        let conn = open_connection(path)?;
        conn.set_prepared_statement_cache_capacity(32);
        conn.execute_batch(if synchronous_full {
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;"
        } else {
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;"
        })?;
        let checkpointer = Checkpointer::start(path)?;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Job>>();
        let thread = std::thread::Builder::new()
            .name("trellis-sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                let mut queued = std::collections::VecDeque::new();
                while let Ok(first) = rx.recv() {
                    // Everything that arrived while the last batch ran is taken at once, so
                    // the thread goes straight from one commit to the next; small batches
                    // queued behind each other merge up to the store's `max_batch`.
                    queued.push_back(first);
                    queued.extend(rx.try_iter());
                    while let Some(mut jobs) = queued.pop_front() {
                        if !jobs.iter().all(|(r, _)| save_only(r)) {
                            runtime.block_on(super::commit_batch(&pool, jobs, &counters));
                            continue;
                        }
                        while let Some(next) = queued.front() {
                            if jobs.len() + next.len() > max_batch
                                || !next.iter().all(|(r, _)| save_only(r))
                            {
                                break;
                            }
                            jobs.extend(queued.pop_front().into_iter().flatten());
                        }
                        if checkpointer.wal_frames.load(Ordering::Relaxed) > WAL_CAP_FRAMES {
                            // The checkpointer has backfilled all but the last batches; finishing
                            // here, before BEGIN, lets this transaction restart the log.
                            checkpoint(&conn, &checkpointer.wal_frames);
                        }
                        if let Some(back) = run(&mut conn, jobs, &counters) {
                            runtime.block_on(super::commit_batch(&pool, back, &counters));
                        }
                        let _ = checkpointer.wake.try_send(());
                    }
                }
                checkpointer.stop();
            })
            .map_err(|e| {
                StoreError::invalid(
                    "database",
                    format!("cannot start the SQLite writer thread: {e}"),
                )
            })?;
        Ok(FastWriter {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a batch for the thread, which answers each requester after its commit.
    pub(crate) fn submit(&self, jobs: Vec<Job>) {
        let refused = match self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            Some(tx) => tx.send(jobs).err().map(|e| e.0),
            None => Some(jobs),
        };
        for (_, reply) in refused.into_iter().flatten() {
            let _ = reply.send(Err(StoreError::Unavailable));
        }
    }

    /// Stops the thread after the batches queued before and closes its connection.
    pub(crate) async fn close(&self) {
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// WAL frames beyond which the writer checkpoints before its next batch (32 MiB of 4 KiB
/// pages). Under a load that never pauses, the checkpointer never sees the log fully
/// backfilled at the moment the writer begins, so the log would not restart without this.
const WAL_CAP_FRAMES: i64 = 8192;

/// Copies committed WAL frames into the database file on its own connection and thread,
/// so the writer's commits do not pay for it (SQLite's automatic checkpoint runs inside
/// the commit that crosses its threshold). Woken after commits, at most every 20 ms, so a
/// page written by many batches is copied once per round.
struct Checkpointer {
    wake: std::sync::mpsc::SyncSender<()>,
    wal_frames: Arc<AtomicI64>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer> {
        let conn = open_connection(path)?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let wal_frames = Arc::new(AtomicI64::new(0));
        let frames = wal_frames.clone();
        let thread = std::thread::Builder::new()
            .name("trellis-sqlite-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    checkpoint(&conn, &frames);
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Closing: leave the database file complete.
                checkpoint(&conn, &frames);
            })
            .map_err(|e| {
                StoreError::invalid(
                    "database",
                    format!("cannot start the SQLite checkpoint thread: {e}"),
                )
            })?;
        Ok(Checkpointer {
            wake,
            wal_frames,
            thread,
        })
    }

    fn stop(self) {
        drop(self.wake);
        let _ = self.thread.join();
    }
}

/// A connection to an existing database, used from one thread, waiting up to 10 s for the
/// write lock (sessions and checkpoint records are written on the sqlx connection).
fn open_connection(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// A passive checkpoint (it never waits for or blocks the writer); records the log's length.
fn checkpoint(conn: &rusqlite::Connection, wal_frames: &AtomicI64) {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
        Ok(frames) => wal_frames.store(frames, Ordering::Relaxed),
        Err(e) => tracing::debug!(error = %e, "WAL checkpoint did not run"),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(sqlx::Error::Protocol(format!("SQLite: {e}")))
    }
}

/// Runs one batch; `Some(jobs)` hands it back untouched (and uncounted: the general
/// path counts it when it runs it).
fn run(
    conn: &mut rusqlite::Connection,
    jobs: Vec<Job>,
    counters: &WriteCounters,
) -> Option<Vec<Job>> {
    let started = Instant::now();
    let mut committed = false;
    let outcome = write_batch(conn, &jobs, &mut committed, counters);
    if outcome.is_ok() || committed {
        counters.batch(jobs.len(), started.elapsed());
    }
    match outcome {
        Ok(results) => {
            for ((_, reply), r) in jobs.into_iter().zip(results) {
                // The requester may have gone away; the write stands either way.
                let _ = reply.send(r);
            }
            None
        }
        Err(e) if committed => {
            // COMMIT itself failed: SQLite has rolled the transaction back.
            let msg = e.to_string();
            for (_, reply) in jobs {
                let _ = reply.send(Err(StoreError::Database(sqlx::Error::Protocol(format!(
                    "batch not committed: {msg}"
                )))));
            }
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "SQLite save batch failed before commit; retrying it on the general path");
            Some(jobs)
        }
    }
}

fn uuid_blob(u: &Uuid) -> &[u8] {
    u.as_bytes()
}

fn blob_uuid(v: Vec<u8>, what: &str) -> Result<Uuid> {
    Uuid::from_slice(&v)
        .map_err(|_| StoreError::invalid(what.to_owned(), "stored id is not 16 bytes"))
}

/// The batch in one `BEGIN IMMEDIATE` transaction; `committed` is set when COMMIT is attempted.
fn write_batch(
    conn: &mut rusqlite::Connection,
    jobs: &[Job],
    committed: &mut bool,
    counters: &WriteCounters,
) -> Result<Vec<Result<crate::model::Receipt>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = UtcMicros::from_timestamp(jiff::Timestamp::now());

    let mut chains: Vec<Chain> = jobs
        .iter()
        .flat_map(|(r, _)| r.mutations.iter().map(Mutation::chain))
        .collect();
    chains.sort();
    chains.dedup();
    let mut heads = BTreeMap::new();
    {
        let mut read =
            tx.prepare_cached("SELECT seq, hash FROM chain_heads WHERE chain_id = ?1")?;
        let mut genesis = tx.prepare_cached("INSERT INTO chain_heads (chain_id, seq, hash) VALUES (?1, 0, ?2) ON CONFLICT (chain_id) DO NOTHING")?;
        for c in chains {
            let id = c.id();
            let mut row = read
                .query_row([uuid_blob(&id)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()?;
            if row.is_none() {
                // A chain's first batch (rare): its head starts at genesis.
                genesis.execute(params![
                    uuid_blob(&id),
                    trellis_audit::GENESIS_HASH.as_slice()
                ])?;
                row = Some(read.query_row([uuid_blob(&id)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?);
            }
            if let Some((seq, hash)) = row {
                heads.insert(
                    c,
                    ChainHead {
                        seq: u64::try_from(seq).unwrap_or(0),
                        hash: super::hash32(hash, "chain_heads.hash")?,
                    },
                );
            }
        }
    }
    let start_heads = heads.clone();

    let mut items = load_items(&tx, jobs)?;
    let mut deferred: Vec<StoredEntry> = Vec::new();
    let results: Vec<_> = jobs
        .iter()
        .map(|(req, _)| plan_request(&mut items, &mut heads, req, now, &mut deferred))
        .collect();

    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_entries (chain_id, seq, entry_id, recorded_at, actor_id, actor_name, action, entity_type, entity_id, field, old_value, new_value, reason, request_id, site_id, subject_id, prev_hash, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        for e in &deferred {
            let b = &e.body;
            let chain = e.chain.id();
            insert.execute(params![
                uuid_blob(&chain),
                i64::try_from(e.seq).unwrap_or(i64::MAX),
                uuid_blob(&b.entry_id),
                b.recorded_at.as_micros(),
                uuid_blob(&b.actor_id),
                b.actor_name,
                b.action,
                b.entity_type,
                b.entity_id,
                b.field,
                b.old_value,
                b.new_value,
                b.reason,
                b.request_id,
                b.site_id.as_ref().map(uuid_blob),
                b.subject_id.as_ref().map(uuid_blob),
                e.prev_hash.as_slice(),
                e.hash.as_slice(),
            ])?;
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO item_values (study_id, subject_id, item_key, value, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (study_id, subject_id, item_key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )?;
        for ((st, su, k), v) in &items.dirty {
            upsert.execute(params![uuid_blob(st), uuid_blob(su), k, v, now.as_micros()])?;
        }
        let mut store_head =
            tx.prepare_cached("UPDATE chain_heads SET seq = ?2, hash = ?3 WHERE chain_id = ?1")?;
        for (c, h) in &heads {
            if start_heads.get(c) != Some(h) {
                store_head.execute(params![
                    uuid_blob(&c.id()),
                    i64::try_from(h.seq).unwrap_or(i64::MAX),
                    h.hash.as_slice()
                ])?;
            }
        }
    }
    *committed = true;
    let committing = Instant::now();
    tx.commit()?;
    counters.commit(committing.elapsed());
    Ok(results)
}

/// The sites of the saves' subjects, the freezes and locks of their studies and the
/// current values of every key they touch: point lookups on primary keys.
fn load_items(tx: &rusqlite::Transaction<'_>, jobs: &[Job]) -> Result<Items> {
    let mut items = Items::default();
    let mut studies = Vec::new();
    let mut site =
        tx.prepare_cached("SELECT site_id FROM subjects WHERE study_id = ?1 AND subject_id = ?2")?;
    let mut value = tx.prepare_cached(
        "SELECT value FROM item_values WHERE study_id = ?1 AND subject_id = ?2 AND item_key = ?3",
    )?;
    let mut seen: HashSet<ItemKey> = HashSet::new();
    for m in jobs.iter().flat_map(|(r, _)| r.mutations.iter()) {
        let Mutation::SaveItems {
            study,
            subject,
            values,
        } = m
        else {
            continue;
        };
        let (st, su) = (study.as_uuid(), subject.as_uuid());
        if let std::collections::hash_map::Entry::Vacant(v) = items.sites.entry((st, su)) {
            if let Some(s) = site
                .query_row(params![uuid_blob(&st), uuid_blob(&su)], |r| {
                    r.get::<_, Vec<u8>>(0)
                })
                .optional()?
            {
                v.insert(blob_uuid(s, "subjects.site_id")?);
            }
            studies.push(st);
        }
        for (k, _) in values {
            let key: ItemKey = (st, su, k.clone());
            if seen.contains(&key) {
                continue;
            }
            if let Some(v) = value
                .query_row(params![uuid_blob(&st), uuid_blob(&su), k], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .optional()?
            {
                items.rows.insert(key.clone(), v);
            }
            seen.insert(key);
        }
    }
    studies.sort_unstable();
    studies.dedup();
    let mut locks =
        tx.prepare_cached("SELECT subject_id, scope, state FROM data_locks WHERE study_id = ?1")?;
    for st in studies {
        let mut rows = locks.query([uuid_blob(&st)])?;
        while let Some(r) = rows.next()? {
            let subject = blob_uuid(r.get(0)?, "data_locks.subject_id")?;
            items
                .locks
                .entry((st, subject))
                .or_default()
                .push((r.get(1)?, r.get(2)?));
        }
    }
    Ok(items)
}
