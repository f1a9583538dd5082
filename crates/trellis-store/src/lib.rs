//! Trellis storage: one API over SQLite (the embedded default) and PostgreSQL
//! (production), with the single audited write path.
//!
//! Architecture invariants:
//! - Only this crate contains SQL.
//! - Every change to regulated data is a [`Mutation`] inside a [`WriteRequest`]
//!   passed to [`Store::write`]; the audit entries it implies are chained and
//!   inserted in the same transaction. There is no other way to change that data.
//! - Writes are group-committed: concurrent requests share one transaction and
//!   one fsync, each isolated by a savepoint, and none is acknowledged before the
//!   commit is durable.

mod backend;
mod copy;
mod error;
mod model;
mod postgres;
mod sqlite;
mod url;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
pub use trellis_audit::{Chain, ChainHead, ChainSummary, Checkpoint, StoredEntry};
use trellis_audit::{ChainError, ChainVerifier};
use trellis_domain::{StudyId, SubjectId, UserId};

pub use copy::copy_installation;
pub use error::{Result, StoreError};
pub use model::*;
pub use url::DatabaseUrl;

/// How to open the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Create the SQLite file if it does not exist (never implied by a mere URL).
    pub create: bool,
    /// SQLite `synchronous=FULL` (the default): an acknowledged write survives power loss.
    pub sqlite_synchronous_full: bool,
    pub sqlite_readers: u32,
    pub pg_max_connections: u32,
    /// Concurrent group-commit writers on PostgreSQL (SQLite always has one).
    pub pg_writers: usize,
    /// Most requests that share one commit. Small on purpose: requesters acknowledged by
    /// one commit come back together, so a batch that takes everyone waiting makes the
    /// writer idle while they prepare their next request and then serve them all at once
    /// (a convoy). With 16, 32 HTTP clients settle into two groups that alternate between
    /// the writer and their own work (4,600 saves/s against 3,300–4,100 with 64).
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            create: false,
            sqlite_synchronous_full: true,
            sqlite_readers: 8,
            pg_max_connections: 16,
            pg_writers: 4,
            max_batch: 16,
        }
    }
}

#[derive(Clone)]
enum Backend {
    Sqlite {
        writer: sqlite::Pool,
        reader: sqlite::Pool,
        fast: Arc<sqlite::FastWriter>,
    },
    Postgres {
        pool: postgres::Pool,
    },
}

type Job = (WriteRequest, oneshot::Sender<Result<Receipt>>);

/// What the group-commit writers have done since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed (or attempted) for batches of requests.
    pub batches: u64,
    /// Requests those batches carried, accepted or refused.
    pub requests: u64,
    /// Time the writers spent running batches, from BEGIN to the answers.
    pub busy: std::time::Duration,
    /// The part of `busy` spent in COMMIT (on SQLite: writing the log and syncing it).
    pub committing: std::time::Duration,
}

impl WriteStats {
    /// Requests per commit: how well concurrent writes share their commits.
    pub fn requests_per_batch(&self) -> f64 {
        self.requests as f64 / self.batches.max(1) as f64
    }
}

/// Counters behind [`WriteStats`], shared by a store's writers.
#[derive(Debug, Default)]
pub(crate) struct WriteCounters {
    batches: std::sync::atomic::AtomicU64,
    requests: std::sync::atomic::AtomicU64,
    busy_ns: std::sync::atomic::AtomicU64,
    commit_ns: std::sync::atomic::AtomicU64,
}

impl WriteCounters {
    pub(crate) fn batch(&self, requests: usize, busy: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.batches.fetch_add(1, Relaxed);
        self.requests.fetch_add(requests as u64, Relaxed);
        self.busy_ns.fetch_add(nanos(busy), Relaxed);
    }

    pub(crate) fn commit(&self, took: std::time::Duration) {
        self.commit_ns
            .fetch_add(nanos(took), std::sync::atomic::Ordering::Relaxed);
    }

    fn snapshot(&self) -> WriteStats {
        use std::sync::atomic::Ordering::Relaxed;
        WriteStats {
            batches: self.batches.load(Relaxed),
            requests: self.requests.load(Relaxed),
            busy: std::time::Duration::from_nanos(self.busy_ns.load(Relaxed)),
            committing: std::time::Duration::from_nanos(self.commit_ns.load(Relaxed)),
        }
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

struct Inner {
    backend: Backend,
    url: DatabaseUrl,
    /// One queue per writer task; a request goes to the writer of its first chain,
    /// so one chain's writes batch together instead of contending for its head.
    writers: Vec<mpsc::Sender<Job>>,
    counters: Arc<WriteCounters>,
    /// Studies read so far. A study's row never changes after it is created (no mutation
    /// updates or deletes one), so every request can find its study without a query; a
    /// mutation that ever changes a study must clear its entry here.
    studies: std::sync::RwLock<HashMap<StudyId, Study>>,
}

/// The storage handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Dispatches a read to the backend's function of the same name.
macro_rules! read {
    ($self:ident, $f:ident ( $($arg:expr),* )) => {
        match &$self.inner.backend {
            Backend::Sqlite { reader, .. } => sqlite::$f(reader $(, $arg)*).await,
            Backend::Postgres { pool } => postgres::$f(pool $(, $arg)*).await,
        }
    };
}

/// Dispatches to the pool that may write (sessions and checkpoints).
macro_rules! write_direct {
    ($self:ident, $f:ident ( $($arg:expr),* )) => {
        match &$self.inner.backend {
            Backend::Sqlite { writer, .. } => sqlite::$f(writer $(, $arg)*).await,
            Backend::Postgres { pool } => postgres::$f(pool $(, $arg)*).await,
        }
    };
}

impl Store {
    pub async fn open(url: &DatabaseUrl, opts: &StoreOptions) -> Result<Store> {
        let counters = Arc::new(WriteCounters::default());
        let backend = match url {
            DatabaseUrl::Sqlite(path) => {
                let (writer, reader, fast) = sqlite::open(
                    path,
                    opts.create,
                    opts.sqlite_synchronous_full,
                    opts.sqlite_readers,
                    opts.max_batch.max(1),
                    counters.clone(),
                )
                .await?;
                Backend::Sqlite {
                    writer,
                    reader,
                    fast: Arc::new(fast),
                }
            }
            DatabaseUrl::Postgres(u) => Backend::Postgres {
                pool: postgres::open(u, opts.pg_max_connections).await?,
            },
        };
        let n = match &backend {
            Backend::Sqlite { .. } => 1,
            Backend::Postgres { .. } => opts.pg_writers.max(1),
        };
        let mut writers = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(4096);
            tokio::spawn(run_writer(
                backend.clone(),
                rx,
                opts.max_batch.max(1),
                counters.clone(),
            ));
            writers.push(tx);
        }
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                url: url.clone(),
                writers,
                counters,
                studies: std::sync::RwLock::new(HashMap::new()),
            }),
        })
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.inner.url
    }

    pub fn backend_name(&self) -> &'static str {
        self.inner.url.backend()
    }

    /// Batches, requests and writer time since the store was opened (for benchmarks and
    /// diagnosis: few requests per batch, or a writer busy all the time, say where a
    /// write load's limit is).
    pub fn write_stats(&self) -> WriteStats {
        self.inner.counters.snapshot()
    }

    /// Applies the schema migrations that have not run yet.
    pub async fn migrate(&self) -> Result<()> {
        use sqlx::SqlSafeStr as _;
        use sqlx::migrate::{Migration, MigrationType, Migrator};
        let list = match &self.inner.backend {
            Backend::Sqlite { .. } => sqlite::MIGRATIONS,
            Backend::Postgres { .. } => postgres::MIGRATIONS,
        };
        let migrations = list
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    (*d).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let migrator = Migrator::with_migrations(migrations);
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => migrator.run(writer).await?,
            Backend::Postgres { pool } => migrator.run(pool).await?,
        }
        Ok(())
    }

    /// The one write path for regulated data: applies the request's mutations
    /// and their audit entries in one transaction, and returns once it is durable.
    pub async fn write(&self, req: WriteRequest) -> Result<Receipt> {
        let (tx, rx) = oneshot::channel();
        let chain = req
            .mutations
            .first()
            .map_or(Chain::Installation, Mutation::chain);
        let lane = (chain.id().as_u128() % self.inner.writers.len() as u128) as usize;
        self.inner.writers[lane]
            .send((req, tx))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        rx.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Re-computes every chain (or one) and checks it against its recorded head.
    /// Returns the first integrity problem as `StoreError::Integrity`.
    pub async fn verify_audit(&self, only: Option<Chain>) -> Result<Vec<ChainSummary>> {
        let heads = self.chain_heads().await?;
        let mut chains: Vec<Chain> = heads.iter().map(|(c, _)| *c).collect();
        chains.extend(read!(self, entry_chains())?);
        chains.sort();
        chains.dedup();
        if let Some(c) = only {
            chains.retain(|x| *x == c);
        }
        let mut out = Vec::new();
        for chain in chains {
            let mut v = ChainVerifier::new(chain);
            loop {
                let page = read!(self, chain_page(chain, v.head().seq, 5000))?;
                if page.is_empty() {
                    break;
                }
                for e in &page {
                    v.push(e)?;
                }
            }
            let recorded = heads.iter().find(|(c, _)| *c == chain).map(|(_, h)| *h);
            // Entries without a head row mean the head was deleted.
            let recorded = match recorded {
                Some(h) => h,
                None => {
                    return Err(ChainError::HeadMismatch {
                        chain,
                        expected: 0,
                        found: v.head().seq,
                    }
                    .into());
                }
            };
            out.push(v.finish(Some(recorded))?);
        }
        Ok(out)
    }

    pub async fn chain_heads(&self) -> Result<Vec<(Chain, ChainHead)>> {
        read!(self, chain_heads())
    }
    pub async fn chain_page(
        &self,
        chain: Chain,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredEntry>> {
        read!(self, chain_page(chain, after_seq, limit))
    }
    pub async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<StoredEntry>> {
        read!(self, audit_entries(filter))
    }
    pub async fn studies(&self) -> Result<Vec<Study>> {
        read!(self, studies())
    }
    pub async fn study(&self, id: StudyId) -> Result<Option<Study>> {
        let cached = self
            .inner
            .studies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let found: Option<Study> = read!(self, study(id))?;
        if let Some(study) = &found {
            self.inner
                .studies
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, study.clone());
        }
        Ok(found)
    }
    pub async fn study_by_code(&self, code: &str) -> Result<Option<Study>> {
        read!(self, study_by_code(code))
    }
    pub async fn organizations(&self) -> Result<Vec<Organization>> {
        read!(self, organizations())
    }
    pub async fn sites(&self, study: StudyId) -> Result<Vec<Site>> {
        read!(self, sites(study))
    }
    pub async fn subjects(&self, study: StudyId) -> Result<Vec<Subject>> {
        read!(self, subjects(study))
    }
    /// Every captured value of a study (one read for study-wide views such as SDV
    /// progress), by subject and item key.
    pub async fn study_item_values(
        &self,
        study: StudyId,
    ) -> Result<Vec<(SubjectId, String, Option<String>)>> {
        read!(self, study_item_values(study))
    }
    /// One subject of a study.
    pub async fn subject(&self, study: StudyId, subject: SubjectId) -> Result<Option<Subject>> {
        read!(self, subject(study, subject))
    }
    /// A subject with its metadata version (assigned, else the study's first) and its
    /// site's time zone, in one read (what opening a form needs).
    pub async fn subject_context(
        &self,
        study: StudyId,
        subject: SubjectId,
    ) -> Result<Option<SubjectContext>> {
        read!(self, subject_context(study, subject))
    }
    pub async fn item_values(
        &self,
        study: StudyId,
        subject: SubjectId,
    ) -> Result<Vec<(String, Option<String>)>> {
        read!(self, item_values(study, subject))
    }
    pub async fn users(&self) -> Result<Vec<User>> {
        read!(self, users())
    }
    pub async fn user(&self, id: UserId) -> Result<Option<User>> {
        read!(self, user(id))
    }
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        read!(self, user_by_name(username))
    }
    /// A user with their organization's kind and grants, in one read (what every
    /// authenticated request needs).
    pub async fn account(&self, id: UserId) -> Result<Option<Account>> {
        read!(self, account(id))
    }
    /// The account an unrevoked API token belongs to, in one read.
    pub async fn account_by_api_token(&self, token_hash: &[u8; 32]) -> Result<Option<Account>> {
        read!(self, account_by_api_token(token_hash))
    }
    pub async fn grants(&self, user: Option<UserId>) -> Result<Vec<RoleGrant>> {
        read!(self, grants(user))
    }
    pub async fn signatures(&self, study: StudyId) -> Result<Vec<SignatureRow>> {
        read!(self, signatures(study))
    }
    /// A study's metadata versions in the order they were added.
    pub async fn metadata_versions(&self, study: StudyId) -> Result<Vec<MetadataVersionRow>> {
        read!(self, metadata_versions(study))
    }
    /// The ODM 1.3.2 text of one metadata version.
    pub async fn metadata_version_odm(&self, study: StudyId, oid: &str) -> Result<Option<String>> {
        read!(self, metadata_version_odm(study, oid))
    }
    /// Which metadata version each subject's forms follow.
    pub async fn subject_versions(&self, study: StudyId) -> Result<Vec<(SubjectId, String)>> {
        read!(self, subject_versions(study))
    }
    /// A study's queries (of one subject, if given) with their messages, oldest first.
    pub async fn queries(
        &self,
        study: StudyId,
        subject: Option<SubjectId>,
    ) -> Result<Vec<QueryRow>> {
        read!(self, queries(study, subject))
    }
    /// A subject's context (as [`Store::subject_context`]), item values and queries without
    /// their threads, read in one statement: what a form save needs before it writes.
    /// `None` if the study has no such subject.
    pub async fn subject_form(
        &self,
        study: StudyId,
        subject: SubjectId,
    ) -> Result<Option<SubjectForm>> {
        read!(self, subject_form(study, subject))
    }
    /// Source data verifications of a study (of one subject, if given).
    pub async fn verifications(
        &self,
        study: StudyId,
        subject: Option<SubjectId>,
    ) -> Result<Vec<VerificationRow>> {
        read!(self, verifications(study, subject))
    }
    /// The study's targeted SDV plan, if one was set.
    pub async fn sdv_plan(&self, study: StudyId) -> Result<Option<SdvPlanRow>> {
        read!(self, sdv_plan(study))
    }
    /// Freezes and locks of a study (study-wide, casebooks, forms).
    pub async fn locks(&self, study: StudyId) -> Result<Vec<LockRow>> {
        read!(self, locks(study))
    }
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        read!(self, checkpoints())
    }
    pub async fn api_token_user(&self, token_hash: &[u8; 32]) -> Result<Option<UserId>> {
        read!(self, api_token_user(token_hash))
    }
    pub async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRow>> {
        read!(self, session(token_hash))
    }

    pub async fn create_session(&self, s: &SessionRow) -> Result<()> {
        write_direct!(self, create_session(s))
    }
    pub async fn touch_session(
        &self,
        token_hash: &[u8; 32],
        at: trellis_domain::UtcMicros,
    ) -> Result<()> {
        write_direct!(self, touch_session(token_hash, at))
    }
    pub async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<()> {
        write_direct!(self, delete_session(token_hash))
    }
    /// Checkpoints are signed statements about the chain, not audited data: stored append-only.
    pub async fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        write_direct!(self, insert_checkpoint(cp))
    }

    /// A consistent online snapshot into a new file (SQLite `VACUUM INTO`).
    /// PostgreSQL installations are backed up with the server's own tools.
    pub async fn backup_to(&self, path: &std::path::Path) -> Result<()> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                if path.exists() {
                    return Err(StoreError::invalid(
                        "out",
                        format!("{} already exists; choose a new file", path.display()),
                    ));
                }
                let p = path
                    .to_str()
                    .ok_or_else(|| StoreError::invalid("out", "path is not valid UTF-8"))?;
                sqlx::query("VACUUM INTO $1")
                    .bind(p)
                    .execute(reader)
                    .await?;
                Ok(())
            }
            Backend::Postgres { .. } => Err(StoreError::invalid(
                "database",
                "for PostgreSQL use pg_dump or pg_basebackup (consistent online snapshots by the server itself)",
            )),
        }
    }

    pub async fn close(&self) {
        match &self.inner.backend {
            Backend::Sqlite {
                writer,
                reader,
                fast,
            } => {
                fast.close().await;
                reader.close().await;
                writer.close().await;
            }
            Backend::Postgres { pool } => pool.close().await,
        }
    }
}

async fn run_writer(
    backend: Backend,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    counters: Arc<WriteCounters>,
) {
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        // The first request to arrive wakes this task at once, often while the
        // requesters acknowledged by the previous commit are still queued to run and
        // resubmit; yielding lets them, so a batch takes everyone who is ready instead
        // of alternating small and large batches. Stops as soon as a round brings none.
        loop {
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            if batch.len() >= max_batch {
                break;
            }
            tokio::task::yield_now().await;
            if rx.is_empty() {
                break;
            }
        }
        match &backend {
            // Batches of item saves run on its rusqlite connection, others on the sqlx path, in order.
            Backend::Sqlite { fast, .. } => fast.submit(batch),
            Backend::Postgres { pool } => postgres::commit_batch(pool, batch, &counters).await,
        }
    }
}
