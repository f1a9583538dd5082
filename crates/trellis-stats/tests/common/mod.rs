#![allow(clippy::unwrap_used, dead_code)]
use clap::Parser;
use std::path::{Path, PathBuf};
use trellis_stats::cli::{StatsCommand, run};
use trellis_stats::data::Dataset;

pub mod expected_xport;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("reference/fixtures")
        .join(name)
}

pub fn reference() -> serde_json::Value {
    let s = std::fs::read_to_string(fixture("reference.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

pub fn load(name: &str) -> Dataset {
    Dataset::load(&fixture(name)).unwrap()
}

/// Relative closeness with an absolute floor for values near zero.
#[track_caller]
pub fn close(what: &str, got: f64, want: f64, rel: f64) {
    let tol = rel * want.abs().max(1e-8);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:.15e}, want {want:.15e} (rel diff {:.3e})",
        (got - want).abs() / want.abs().max(1e-300)
    );
}

pub fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap()
}

pub fn fv(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: StatsCommand,
}

/// Runs `trellis stats ARGS...` through `cli::run`, argument parsing included.
pub fn stats(args: &[&str]) -> anyhow::Result<()> {
    let mut v = vec!["stats"];
    v.extend_from_slice(args);
    run(Args::try_parse_from(v)?.cmd)
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}
