//! Trellis disproportionality signal detection (issue 4).
//!
//! Pipeline: read spontaneous reports (FAERS ASCII extracts or a generic
//! `report_id,drug,event[,strata...]` CSV) into a compact per-report layout
//! ([`data::Dataset`]), count every drug–event pair ([`count`]), compute PRR,
//! ROR, the BCPNN information component and DuMouchel's MGPS empirical Bayes
//! geometric mean ([`measures`], [`mgps`]) and write `results.csv`,
//! `results.prior.json` and optionally an HTML report ([`output`], [`html`]).

pub mod bench;
pub mod cli;
pub mod count;
pub mod data;
pub mod error;
pub mod faers;
pub mod html;
pub mod measures;
pub mod mgps;
pub mod output;
pub mod pairs_csv;
pub mod pipeline;
pub mod special;
pub mod synth;

pub use error::{Error, Result};
