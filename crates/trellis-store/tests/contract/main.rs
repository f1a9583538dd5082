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
