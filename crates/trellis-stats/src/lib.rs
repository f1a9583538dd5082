//! Trellis biostatistics engine (issue 5).
//!
//! * [`xport`]: SAS XPORT v5 transport files, read and write (IBM-370 floats, special missing values).
//! * [`data`]: column-oriented datasets read from CSV or XPORT.
//! * [`survival`]: Kaplan–Meier, log-rank (stratified), Cox proportional hazards.
//! * [`linear`]: linear models / ANCOVA with type III tests and LS means; logistic regression.
//! * [`mmrm`]: mixed model for repeated measures (REML, unstructured/CS/AR(1) covariance,
//!   Satterthwaite df, LS means by visit).
//! * [`freq`]: Fisher's exact test (2×2), Pearson chi-square, Cochran–Mantel–Haenszel (2×2×K).
//! * [`exact`]: Fisher's exact test for r×c tables (network algorithm; seeded Monte Carlo).
//! * [`describe`]: descriptive summaries by group.

pub mod cli;
pub mod data;
pub mod describe;
pub mod dist;
pub mod error;
pub mod exact;
pub mod freq;
pub mod linalg;
pub mod linear;
pub mod mmrm;
pub mod render;
pub mod survival;
pub mod xport;

pub use error::{Result, StatsError};
