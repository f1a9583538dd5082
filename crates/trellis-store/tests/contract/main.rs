//! The storage contract: every behaviour runs against SQLite and PostgreSQL.
//!
//! PostgreSQL comes from `TRELLIS_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates and drops
//! its own database. Without a reachable server the PostgreSQL half is skipped
//! with a loud message, unless `TRELLIS_REQUIRE_PG=1` (as in CI) makes it fail.
#![allow(clippy::unwrap_used)]

mod copy;
mod edc;
mod harness;
mod story;
mod tamper;

/// A PostgreSQL server that is not there is named with the reason, not a pool timeout.
#[tokio::test]
async fn unreachable_postgres_says_why() {
    let url =
        trellis_store::DatabaseUrl::parse("postgres://trellis@127.0.0.1:1/nothing_here").unwrap();
    let err = match trellis_store::Store::open(&url, &trellis_store::StoreOptions::default()).await
    {
        Ok(_) => panic!("a server on port 1?"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("timed out"), "{err}");
}
