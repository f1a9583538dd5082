//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("reference/fixtures")
        .join(name)
}

/// Rows of a CSV keyed by (drug, event), values by column name.
pub struct Table {
    pub columns: Vec<String>,
    pub rows: HashMap<(String, String), Vec<String>>,
    pub order: Vec<(String, String)>,
}

impl Table {
    pub fn load(path: &Path) -> Table {
        let mut rdr = csv::Reader::from_path(path).unwrap();
        let columns: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
        let mut rows = HashMap::new();
        let mut order = Vec::new();
        for rec in rdr.records() {
            let rec = rec.unwrap();
            let key = (rec[0].to_owned(), rec[1].to_owned());
            order.push(key.clone());
            rows.insert(key, rec.iter().map(str::to_owned).collect());
        }
        Table {
            columns,
            rows,
            order,
        }
    }

    pub fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    pub fn get(&self, key: &(String, String), name: &str) -> f64 {
        parse(&self.rows[key][self.col(name)])
    }
}

pub fn parse(s: &str) -> f64 {
    match s {
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        "nan" | "NaN" => f64::NAN,
        _ => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
    }
}

/// Relative difference, treating equal non-finite values as equal.
pub fn rel(a: f64, b: f64) -> f64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        return 0.0;
    }
    if !a.is_finite() || !b.is_finite() {
        return f64::INFINITY;
    }
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

/// Asserts `|a-b| <= tol·max(|a|,|b|) + abs_tol` for every common column.
pub fn compare(ours: &Table, reference: &Table, cols: &[&str], tol: f64, abs_tol: f64) -> f64 {
    assert_eq!(
        ours.rows.len(),
        reference.rows.len(),
        "different number of pairs"
    );
    let mut worst = 0.0f64;
    for key in &reference.order {
        assert!(ours.rows.contains_key(key), "missing pair {key:?}");
        for c in cols {
            let (x, y) = (ours.get(key, c), reference.get(key, c));
            let ok = rel(x, y) <= tol || (x - y).abs() <= abs_tol;
            assert!(
                ok,
                "{key:?} {c}: ours {x} reference {y} (rel {})",
                rel(x, y)
            );
            if x.is_finite() && y.is_finite() {
                worst = worst.max(rel(x, y));
            }
        }
    }
    worst
}

pub fn load_prior(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Relative distance between two priors, allowing the component swap.
pub fn prior_distance(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let g = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let direct = ["alpha1", "beta1", "alpha2", "beta2", "p"]
        .iter()
        .map(|k| rel(g(a, k), g(b, k)))
        .fold(0.0, f64::max);
    let swapped = [
        ("alpha1", "alpha2"),
        ("beta1", "beta2"),
        ("alpha2", "alpha1"),
        ("beta2", "beta1"),
    ]
    .iter()
    .map(|(x, y)| rel(g(a, x), g(b, y)))
    .fold(rel(g(a, "p"), 1.0 - g(b, "p")), f64::max);
    direct.min(swapped)
}
