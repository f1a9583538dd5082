//! Copying a whole installation between databases (e.g. SQLite to PostgreSQL),
//! verbatim: audit entries keep their hashes, so the chains still verify.

use uuid::Uuid;

use crate::{Backend, Result, Store, StoreError, postgres, sqlite};

/// Every table's rows in backend-neutral types (column order as in the schema).
#[allow(clippy::type_complexity)]
pub(crate) struct Rows {
    pub organizations: Vec<(Uuid, String, String, i64)>,
    pub users: Vec<(
        Uuid,
        String,
        String,
        Option<String>,
        Uuid,
        String,
        String,
        String,
        i64,
        bool,
        i64,
        Option<i64>,
        Option<String>,
        i64,
    )>,
    pub studies: Vec<(Uuid, Uuid, String, String, String, i64)>,
    pub sites: Vec<(Uuid, Uuid, String, String, String, String, i64)>,
    pub subjects: Vec<(Uuid, Uuid, Uuid, String, String, i64)>,
    pub items: Vec<(Uuid, Uuid, String, Option<String>, i64)>,
    pub grants: Vec<(
        Uuid,
        Uuid,
        String,
        Option<Uuid>,
        Option<Uuid>,
        i64,
        Uuid,
        Option<i64>,
    )>,
    pub api_tokens: Vec<(Uuid, Vec<u8>, Uuid, String, i64, Option<i64>)>,
    pub signatures: Vec<(
        Uuid,
        Uuid,
        Uuid,
        String,
        String,
        i64,
        String,
        String,
        Vec<u8>,
    )>,
    pub metadata_versions: Vec<(Uuid, String, String, String, i64, String, Vec<u8>, i64)>,
    pub subject_versions: Vec<(Uuid, Uuid, String, i64)>,
    pub queries: Vec<(
        Uuid,
        Uuid,
        Uuid,
        String,
        Option<String>,
        String,
        Uuid,
        i64,
        i64,
    )>,
    pub query_messages: Vec<(Uuid, Uuid, i64, String, Uuid, String, i64, String)>,
    pub verifications: Vec<(Uuid, Uuid, String, Option<String>, Uuid, i64)>,
    pub locks: Vec<(Uuid, Uuid, String, String, Uuid, i64)>,
    pub sdv_plans: Vec<(Uuid, String, Uuid, i64)>,
}

macro_rules! on_target {
    ($to:expr, |$m:ident, $tx:ident| $body:block) => {
        match &$to.inner.backend {
            Backend::Sqlite { writer, .. } => {
                use sqlite as $m;
                let mut $tx = $m::begin_restore(writer).await?;
                $body
                $tx.commit().await?;
            }
            Backend::Postgres { pool } => {
                use postgres as $m;
                let mut $tx = $m::begin_restore(pool).await?;
                $body
                $tx.commit().await?;
            }
        }
    };
}

/// Copies everything from `from` into the empty, migrated `to` in one transaction.
/// Returns the number of rows copied. Sessions are not copied: users sign in again.
pub async fn copy_installation(from: &Store, to: &Store) -> Result<u64> {
    let target_empty = match &to.inner.backend {
        Backend::Sqlite { reader, .. } => sqlite::is_empty(reader).await?,
        Backend::Postgres { pool } => postgres::is_empty(pool).await?,
    };
    if !target_empty {
        return Err(StoreError::invalid(
            "to",
            "the target database is not empty; copy only into a new, empty database",
        ));
    }
    // Verify the source first: never propagate a broken trail silently.
    from.verify_audit(None).await?;
    let rows = match &from.inner.backend {
        Backend::Sqlite { reader, .. } => sqlite::dump_rows(reader).await?,
        Backend::Postgres { pool } => postgres::dump_rows(pool).await?,
    };
    let heads = from.chain_heads().await?;
    let checkpoints = from.checkpoints().await?;
    let mut n = (rows.organizations.len()
        + rows.users.len()
        + rows.studies.len()
        + rows.sites.len()
        + rows.subjects.len()
        + rows.items.len()
        + rows.grants.len()
        + rows.api_tokens.len()
        + rows.signatures.len()
        + rows.metadata_versions.len()
        + rows.subject_versions.len()
        + rows.queries.len()
        + rows.query_messages.len()
        + rows.verifications.len()
        + rows.locks.len()
        + rows.sdv_plans.len()
        + heads.len()
        + checkpoints.len()) as u64;
    on_target!(to, |m, tx| {
        m::restore_rows(&mut tx, &rows).await?;
        for (chain, head) in &heads {
            let mut after = 0;
            loop {
                let page = from.chain_page(*chain, after, 5000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                n += page.len() as u64;
                m::restore_entries(&mut tx, &page).await?;
            }
            m::restore_head(&mut tx, *chain, *head).await?;
        }
        for cp in &checkpoints {
            m::restore_checkpoint(&mut tx, cp).await?;
        }
    });
    Ok(n)
}
