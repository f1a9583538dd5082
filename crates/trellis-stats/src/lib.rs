pub mod cli;
pub mod data;
pub mod dist;
pub mod error;
pub mod linalg;
pub mod linear;
pub mod survival;
pub mod xport;
pub use error::{Result, StatsError};
