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

/// A KM figure asked for as PNG: 900×620 at scale 2 (1800×1240 pixels), or, on a machine
/// without any font, a clear refusal rather than a figure without labels.
#[track_caller]
pub fn check_km_png(rendered: anyhow::Result<()>, png: &Path) {
    match rendered {
        Ok(()) => {
            let b = std::fs::read(png).expect("PNG written");
            assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(u32::from_be_bytes([b[16], b[17], b[18], b[19]]), 1800);
            assert_eq!(u32::from_be_bytes([b[20], b[21], b[22], b[23]]), 1240);
        }
        Err(e) => assert!(format!("{e:#}").contains("system font"), "{e:#}"),
    }
}
