//! Comparison with the independent numpy/scipy reference
//! (`reference/make_fixtures.py`, output committed under `reference/fixtures`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Table, compare, fixture, load_prior, prior_distance, rel};
use trellis_signal::count::Convention;
use trellis_signal::mgps::{DEFAULT_STARTS, FitPoint, Prior, fit_prior};
use trellis_signal::pairs_csv::CsvOptions;
use trellis_signal::pipeline::{Input, RunConfig, Squash, run};

const COUNTS: &[&str] = &["a", "b", "c", "d"];
const FREQ: &[&str] = &[
    "PRR", "PRR_lo", "PRR_hi", "chisq", "ROR", "ROR_lo", "ROR_hi", "IC", "IC025", "IC975",
];
const EB: &[&str] = &["EBGM", "EB05", "EB95"];

fn prior_of(v: &serde_json::Value) -> Prior {
    let g = |k: &str| v[k].as_f64().unwrap();
    Prior::new(g("alpha1"), g("beta1"), g("alpha2"), g("beta2"), g("p"))
}

fn config(strata: &[&str], out: &std::path::Path) -> RunConfig {
    RunConfig::new(
        Input::Pairs {
            path: fixture("pairs_small.csv"),
            options: CsvOptions {
                strata: strata.iter().map(|s| s.to_string()).collect(),
                strict: true,
            },
        },
        out.to_owned(),
    )
}

#[test]
fn report_based_measures_match_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.csv");
    let reference = Table::load(&fixture("ref_report.csv"));
    let mut cfg = config(&[], &out);
    // Posterior under the reference prior: isolates EBGM/EB05/EB95 from the fit.
    cfg.fixed_prior = Some(prior_of(&load_prior(&fixture("ref_report.prior.json"))));
    run(&cfg).unwrap();
    let ours = Table::load(&out);
    compare(&ours, &reference, COUNTS, 0.0, 0.0);
    let w = compare(&ours, &reference, &["E"], 1e-12, 0.0);
    eprintln!("E worst rel {w:e}");
    // IC025/IC975 cross zero: 1e-9 relative or 1e-12 absolute.
    let w = compare(&ours, &reference, FREQ, 1e-9, 1e-12);
    eprintln!("PRR..IC975 worst rel {w:e}");
    let w = compare(&ours, &reference, EB, 1e-6, 0.0);
    eprintln!("EBGM/EB05/EB95 worst rel {w:e}");
}

#[test]
fn squashed_prior_fit_matches_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.csv");
    let cfg = config(&[], &out);
    run(&cfg).unwrap();
    let ours = load_prior(&out.with_extension("prior.json"));
    let reference = load_prior(&fixture("ref_report.prior.json"));
    let d = prior_distance(&ours, &reference);
    let ll = rel(
        ours["loglik"].as_f64().unwrap(),
        reference["loglik"].as_f64().unwrap(),
    );
    eprintln!("prior rel distance {d:e}, loglik rel {ll:e}\nours {ours}\nref  {reference}");
    assert!(d < 1e-4, "prior differs: {d}");
    assert!(ll < 1e-4, "loglik differs: {ll}");
    // End to end (our own fitted prior): EBGM etc. still close to the reference.
    let t = Table::load(&out);
    let r = Table::load(&fixture("ref_report.csv"));
    compare(&t, &r, EB, 1e-4, 0.0);
}

#[test]
fn unsquashed_prior_fit_matches_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.csv");
    let mut cfg = config(&[], &out);
    cfg.squash = Squash::Off;
    run(&cfg).unwrap();
    let ours = load_prior(&out.with_extension("prior.json"));
    let reference = load_prior(&fixture("ref_report_nosquash.prior.json"));
    let d = prior_distance(&ours, &reference);
    let ll = rel(
        ours["loglik"].as_f64().unwrap(),
        reference["loglik"].as_f64().unwrap(),
    );
    eprintln!("prior rel distance {d:e}, loglik rel {ll:e}");
    assert!(d < 1e-4 && ll < 1e-4, "ours {ours} reference {reference}");
}

#[test]
fn stratified_expected_counts_and_posterior_match_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.csv");
    let reference = Table::load(&fixture("ref_strat.csv"));
    let mut cfg = config(&["sex", "agegrp"], &out);
    cfg.fixed_prior = Some(prior_of(&load_prior(&fixture("ref_strat.prior.json"))));
    run(&cfg).unwrap();
    let ours = Table::load(&out);
    compare(&ours, &reference, COUNTS, 0.0, 0.0);
    compare(&ours, &reference, &["E"], 1e-12, 0.0);
    compare(&ours, &reference, FREQ, 1e-9, 1e-12);
    compare(&ours, &reference, EB, 1e-6, 0.0);
    // The stratified fit itself.
    let mut cfg = config(&["sex", "agegrp"], &out);
    cfg.squash = Squash::Auto;
    run(&cfg).unwrap();
    let d = prior_distance(
        &load_prior(&out.with_extension("prior.json")),
        &load_prior(&fixture("ref_strat.prior.json")),
    );
    assert!(d < 1e-4, "stratified prior differs by {d}");
}

#[test]
fn cell_sum_convention_matches_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.csv");
    let mut cfg = config(&[], &out);
    cfg.convention = Convention::CellSum;
    cfg.fixed_prior = Some(Prior::new(0.2, 0.1, 2.0, 4.0, 1.0 / 3.0));
    run(&cfg).unwrap();
    let ours = Table::load(&out);
    let reference = Table::load(&fixture("ref_cellsum.csv"));
    compare(&ours, &reference, COUNTS, 0.0, 0.0);
    compare(&ours, &reference, &["E", "PRR", "ROR", "chisq"], 1e-9, 0.0);
}

fn fitpoints() -> Vec<FitPoint> {
    csv::Reader::from_path(fixture("fitpoints.csv"))
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            FitPoint {
                n: r[0].parse().unwrap(),
                e: r[1].parse().unwrap(),
                w: 1.0,
            }
        })
        .collect()
}

#[test]
fn truncated_likelihood_fit_matches_reference_n_star_1() {
    let pts = fitpoints();
    let fit = fit_prior(&pts, 1, &DEFAULT_STARTS, &|| {}).unwrap();
    let ours = serde_json::json!({
        "alpha1": fit.prior.alpha1, "beta1": fit.prior.beta1,
        "alpha2": fit.prior.alpha2, "beta2": fit.prior.beta2,
        "p": fit.prior.p, "loglik": fit.loglik,
    });
    let reference = load_prior(&fixture("fitpoints_nstar1.prior.json"));
    let d = prior_distance(&ours, &reference);
    let ll = rel(fit.loglik, reference["loglik"].as_f64().unwrap());
    eprintln!("N*=1: prior rel {d:e}, loglik rel {ll:e}");
    assert!(d < 1e-4 && ll < 1e-4, "ours {ours} reference {reference}");
}

/// At N* = 2 these points' likelihood peaks on the boundary (the second
/// component becomes a point mass: alpha2, beta2 -> inf, alpha2/beta2 fixed),
/// so only the identifiable quantities are compared.
#[test]
fn truncated_likelihood_fit_matches_reference_n_star_2() {
    let pts: Vec<FitPoint> = fitpoints().into_iter().filter(|p| p.n >= 2).collect();
    let fit = fit_prior(&pts, 2, &DEFAULT_STARTS, &|| {}).unwrap();
    let r = load_prior(&fixture("fitpoints_nstar2.prior.json"));
    let g = |k: &str| r[k].as_f64().unwrap();
    let p = fit.prior;
    // Label the point-mass component as component 2, like the reference.
    let (a1, b1, a2, b2, w) = if p.alpha1 > p.alpha2 {
        (p.alpha2, p.beta2, p.alpha1, p.beta1, 1.0 - p.p)
    } else {
        (p.alpha1, p.beta1, p.alpha2, p.beta2, p.p)
    };
    let ll = rel(fit.loglik, g("loglik"));
    eprintln!("N*=2: ours {p:?} loglik {} reference {r}", fit.loglik);
    assert!(
        ll < 1e-6,
        "loglik ours {} reference {}",
        fit.loglik,
        g("loglik")
    );
    assert!(
        fit.loglik >= g("loglik") - 1e-3,
        "reference found a higher likelihood"
    );
    for (x, y, name) in [
        (a1, g("alpha1"), "alpha1"),
        (b1, g("beta1"), "beta1"),
        (w, g("p"), "p"),
    ] {
        assert!(rel(x, y) < 1e-3, "{name}: ours {x} reference {y}");
    }
    assert!(
        rel(a2 / b2, g("alpha2") / g("beta2")) < 1e-3,
        "mean of the point-mass component"
    );
    assert!(
        a2 > 1e4,
        "expected a degenerate second component, got alpha2 = {a2}"
    );
}
