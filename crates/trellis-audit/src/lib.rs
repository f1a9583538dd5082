//! The Trellis audit trail as data: canonical encoding, hash chain, verification
//! and signed checkpoints.
//!
//! Architecture invariant: no I/O and no knowledge of any database. Storage
//! backends hand rows to [`verify_chain`] and get the same answer on SQLite and
//! PostgreSQL, because the hashed bytes come only from [`EntryBody::canonical_bytes`].
//!
//! Encoding v1 (stable; an auditor can re-implement it):
//! `hash = SHA-256("trellis.audit.v1\0" ‖ chain(16 bytes) ‖ seq(u64 BE) ‖ prev_hash(32) ‖ body)`
//! where `body` is the concatenation, in the order of [`EntryBody`]'s fields, of
//! each field as a tagged value: `0x00` for absent, or `0x01 ‖ len(u32 BE) ‖ bytes`
//! (UUIDs as 16 raw bytes, times as i64 BE microseconds since the Unix epoch in UTC,
//! text as UTF-8).

mod chain;
mod checkpoint;

pub use chain::{
    Chain, ChainError, ChainHead, ChainSummary, ChainVerifier, EntryBody, GENESIS_HASH,
    StoredEntry, entry_hash, verify_chain,
};
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointKey, parse_public_key};
