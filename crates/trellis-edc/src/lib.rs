//! Electronic data capture rules, independent of storage and presentation.
//!
//! - [`path`]: the canonical address of a captured value (the store's item key).
//! - [`design`]: a study's forms built from one ODM metadata version, with every edit
//!   check, skip condition and derivation compiled once.
//! - [`entry`]: what a form save means: value checks, derivations, skip logic,
//!   required items and edit checks, reported as findings that open or close queries.
//! - [`export`]: per-form and wide (per-subject) tables of captured values, as CSV.
//! - [`sdv`]: targeted source data verification plans (which items a monitor verifies).
//!
//! Architecture invariant: pure; no I/O, no clock (today's date comes in `Env`).

pub mod design;
pub mod entry;
pub mod export;
pub mod path;
pub mod sdv;

pub use design::{BuildError, BuildFailed, FormDesign, StudyDesign};
pub use entry::{Evaluation, ExternalKey, Finding, FindingKind, LocalKey, evaluate};
pub use path::{FormPath, ItemPath, Oid, PathError, Repeat};
pub use sdv::{SdvPlan, SdvPlanError, SubjectSdv};
