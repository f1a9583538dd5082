//! MMRM against the independent numpy reference (`reference/mmrm_reference.py`, fixtures
//! `admmrm.csv` and `mmrm_reference.json`).
//!
//! Tolerances: estimates, SEs, LS means, CIs and the deviance 1e-7 relative; Satterthwaite
//! df and p-values 1e-6 relative. The reference obtains df by numerical differentiation of
//! the deviance (second differences with Richardson extrapolation), which is accurate to
//! about 1e-8 relative; the observed differences are ≈1e-8 for df and ≤1e-8 elsewhere.
//! Estimates, CI limits and t statistics are compared relative to max(|value|, SE) (t: 1):
//! a treatment difference close to zero (4.6e-3 with SE 1.2 in the AR(1) model) agrees to
//! 2e-9 absolute, which is 4e-7 of its own size but 1.6e-9 of its SE. Both optimisers stop
//! at a gradient of about 1e-10, so agreement beyond that is not expected.
#![allow(clippy::unwrap_used, clippy::needless_range_loop)] // index loops mirror the matrix formulas
mod common;
use common::*;
use trellis_stats::data::{Column, ColumnData, Dataset};
use trellis_stats::mmrm::*;

fn mmrm_reference() -> serde_json::Value {
    let s = std::fs::read_to_string(fixture("mmrm_reference.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn spec_for(m: &serde_json::Value) -> MmrmSpec {
    MmrmSpec {
        response: "CHG".into(),
        subject: "USUBJID".into(),
        visit: "AVISIT".into(),
        treatment: "TRT01P".into(),
        reference: Some("Placebo".into()),
        covariates: m["covariates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect(),
        visit_by_covariate: m["visit_by_covariate"].as_bool().unwrap(),
        cov: match m["cov"].as_str().unwrap() {
            "us" => CovStructure::Us,
            "cs" => CovStructure::Cs,
            "ar1" => CovStructure::Ar1,
            other => panic!("unknown structure {other}"),
        },
        df: match m["df_method"].as_str().unwrap() {
            "satterthwaite" => DfMethod::Satterthwaite,
            "kr" => DfMethod::KenwardRoger,
            other => panic!("unknown df method {other}"),
        },
        ..Default::default()
    }
}

/// `|got − want| ≤ rel · max(|want|, scale)`.
#[track_caller]
fn close_s(what: &str, got: f64, want: f64, scale: f64, rel: f64) {
    close(
        what,
        got,
        want,
        rel * want.abs().max(scale) / want.abs().max(1e-8),
    );
}

fn check_model(name: &str) {
    let r = &mmrm_reference()["models"][name];
    let ds = load("admmrm.csv");
    let fit = mmrm(&ds, &spec_for(r), 0.05).unwrap();
    const EST: f64 = 1e-7;
    const DF: f64 = 1e-6;
    close("deviance", fit.deviance, f(&r["deviance"]), 1e-10);
    close("aic", fit.aic, f(&r["aic"]), 1e-10);
    close("bic", fit.bic, f(&r["bic"]), 1e-10);
    close("loglik", fit.loglik, f(&r["loglik"]), 1e-10);
    assert_eq!(fit.n_obs, r["n_obs"].as_u64().unwrap());
    assert_eq!(fit.n_subjects, r["n_subjects"].as_u64().unwrap());
    assert_eq!(fit.n_theta, r["n_theta"].as_u64().unwrap() as usize);
    assert_eq!(fit.dropped_rows, 1, "the one row with a missing response");
    assert_eq!(fit.visits, ["Week 2", "Week 4", "Week 8", "Week 12"]);
    for (gr, wr) in fit
        .covariance
        .iter()
        .zip(r["covariance"].as_array().unwrap())
    {
        for (g, w) in gr.iter().zip(fv(wr)) {
            close("covariance", *g, w, EST);
        }
    }
    let want = r["coefficients"].as_array().unwrap();
    assert_eq!(fit.coefficients.len(), want.len());
    for (g, w) in fit.coefficients.iter().zip(want) {
        assert_eq!(g.term, w["term"].as_str().unwrap());
        close_s(&g.term, g.estimate, f(&w["estimate"]), g.se, EST);
        close(&g.term, g.se, f(&w["se"]), EST);
        close(&g.term, g.df, f(&w["df"]), DF);
        close_s(&g.term, g.t, f(&w["t"]), 1.0, EST);
        close(&g.term, g.p, f(&w["p"]), DF);
    }
    let want = r["type3"].as_array().unwrap();
    assert_eq!(fit.type3.len(), want.len());
    for (g, w) in fit.type3.iter().zip(want) {
        assert_eq!(g.term, w["term"].as_str().unwrap());
        assert_eq!(g.num_df as u64, w["num_df"].as_u64().unwrap());
        close(&g.term, g.f, f(&w["f"]), EST);
        close(&g.term, g.den_df, f(&w["den_df"]), DF);
        // p-values far in the tail (1e-40) move 1e-6 relative for a 1e-8 change in df
        close(&g.term, g.p, f(&w["p"]), 1e-5);
    }
    let want = r["lsmeans"].as_array().unwrap();
    assert_eq!(fit.lsmeans.len(), want.len());
    for (g, w) in fit.lsmeans.iter().zip(want) {
        assert_eq!(g.arm, w["arm"].as_str().unwrap());
        assert_eq!(g.visit, w["visit"].as_str().unwrap());
        assert_eq!(g.n, w["n"].as_u64().unwrap());
        let what = format!("lsmean {} {}", g.arm, g.visit);
        close_s(&what, g.estimate, f(&w["estimate"]), g.se, EST);
        close(&what, g.se, f(&w["se"]), EST);
        close(&what, g.df, f(&w["df"]), DF);
        close_s(&what, g.lo, f(&w["lo"]), g.se, EST);
        close_s(&what, g.hi, f(&w["hi"]), g.se, EST);
    }
    let want = r["diffs"].as_array().unwrap();
    assert_eq!(fit.diffs.len(), want.len());
    for (g, w) in fit.diffs.iter().zip(want) {
        assert_eq!(g.arm, w["arm"].as_str().unwrap());
        assert_eq!(g.reference, "Placebo");
        assert_eq!(g.visit, w["visit"].as_str().unwrap());
        let what = format!("diff {} {}", g.arm, g.visit);
        close_s(&what, g.estimate, f(&w["estimate"]), g.se, EST);
        close(&what, g.se, f(&w["se"]), EST);
        close(&what, g.df, f(&w["df"]), DF);
        close_s(&what, g.lo, f(&w["lo"]), g.se, EST);
        close_s(&what, g.hi, f(&w["hi"]), g.se, EST);
        close_s(&what, g.t, f(&w["t"]), 1.0, EST);
        close(&what, g.p, f(&w["p"]), DF);
    }
    assert!(fit.max_gradient < 1e-6, "gradient {}", fit.max_gradient);
}

#[test]
fn unstructured_with_baseline_by_visit_matches_reference() {
    check_model("us_base_vbc");
}

#[test]
fn unstructured_with_factor_covariate_matches_reference() {
    check_model("us_base_region");
}

#[test]
fn compound_symmetry_matches_reference() {
    check_model("cs_base");
}

#[test]
fn ar1_matches_reference() {
    check_model("ar1_base");
}

/// Kenward–Roger: the reference computes P, Q, R and W by numerical differentiation in
/// SAS's parametrisation; here they are analytic.
#[test]
fn kenward_roger_unstructured_matches_reference() {
    check_model("us_base_vbc_kr");
}

#[test]
fn kenward_roger_cs_matches_reference() {
    check_model("cs_base_kr");
}

#[test]
fn kenward_roger_ar1_matches_reference() {
    check_model("ar1_base_kr");
}

/// The KR adjustment only inflates: every SE at least the model-based one, same df.
#[test]
fn kenward_roger_inflates_standard_errors() {
    let ds = load("admmrm.csv");
    let a = mmrm(&ds, &base_spec(), 0.05).unwrap();
    let mut s = base_spec();
    s.df = DfMethod::KenwardRoger;
    let b = mmrm(&ds, &s, 0.05).unwrap();
    assert_eq!(b.df_method, DfMethod::KenwardRoger);
    for (x, y) in a.diffs.iter().zip(&b.diffs) {
        assert!(y.se > x.se && y.se < 1.1 * x.se, "{} {}", x.se, y.se);
        close("df", y.df, x.df, 1e-12);
        close("estimate", y.estimate, x.estimate, 1e-12);
    }
}

fn base_spec() -> MmrmSpec {
    MmrmSpec {
        response: "CHG".into(),
        subject: "USUBJID".into(),
        visit: "AVISIT".into(),
        treatment: "TRT01P".into(),
        reference: Some("Placebo".into()),
        covariates: vec!["BASE".into()],
        visit_by_covariate: true,
        ..Default::default()
    }
}

fn take_rows(ds: &Dataset, rows: &[usize]) -> Dataset {
    let mut out = ds.clone();
    for c in out.columns.iter_mut() {
        c.data = match &c.data {
            ColumnData::Numeric { values, .. } => ColumnData::Numeric {
                values: rows.iter().map(|&i| values[i]).collect(),
                special: vec![],
            },
            ColumnData::Char(v) => ColumnData::Char(rows.iter().map(|&i| v[i].clone()).collect()),
        };
    }
    out
}

/// Row order does not matter (subjects are grouped and visits ordered internally).
#[test]
fn row_order_does_not_change_the_fit() {
    let ds = load("admmrm.csv");
    let a = mmrm(&ds, &base_spec(), 0.05).unwrap();
    let n = ds.nrows();
    let rev: Vec<usize> = (0..n).map(|i| (i * 7919) % n).collect();
    let mut seen = rev.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), n, "permutation");
    let b = mmrm(&take_rows(&ds, &rev), &base_spec(), 0.05).unwrap();
    close("deviance", b.deviance, a.deviance, 1e-10);
    for (x, y) in a.diffs.iter().zip(&b.diffs) {
        close("diff", y.estimate, x.estimate, 1e-8);
        close("df", y.df, x.df, 1e-6);
    }
}

/// A visit order given explicitly changes the display order only (US is order-free).
#[test]
fn explicit_visit_order() {
    let ds = load("admmrm.csv");
    let mut s = base_spec();
    s.visit_by_covariate = false;
    let a = mmrm(&ds, &s, 0.05).unwrap();
    s.visit_order = Some(
        ["Week 12", "Week 8", "Week 4", "Week 2"]
            .map(String::from)
            .to_vec(),
    );
    let b = mmrm(&ds, &s, 0.05).unwrap();
    assert_eq!(b.visits, ["Week 12", "Week 8", "Week 4", "Week 2"]);
    close("deviance", b.deviance, a.deviance, 1e-10);
    let la = a
        .lsmeans
        .iter()
        .find(|m| m.visit == "Week 8" && m.arm == "High");
    let lb = b
        .lsmeans
        .iter()
        .find(|m| m.visit == "Week 8" && m.arm == "High");
    close("lsmean", lb.unwrap().estimate, la.unwrap().estimate, 1e-8);
    close("lsmean df", lb.unwrap().df, la.unwrap().df, 1e-6);
    s.visit_order = Some(vec!["Week 2".into()]);
    let e = mmrm(&ds, &s, 0.05).unwrap_err().to_string();
    assert!(e.contains("not in the given visit order"), "{e}");
}

#[test]
fn duplicate_visit_within_subject_is_refused() {
    let ds = load("admmrm.csv");
    let n = ds.nrows();
    let mut rows: Vec<usize> = (0..n).collect();
    rows.push(0);
    let e = mmrm(&take_rows(&ds, &rows), &base_spec(), 0.05)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than one row at visit"), "{e}");
}

/// An arm never observed at one visit makes the treatment × visit column inestimable.
#[test]
fn empty_treatment_visit_cell_is_a_singular_design() {
    let ds = load("admmrm.csv");
    let trt = ds.column("TRT01P").unwrap();
    let vis = ds.column("AVISIT").unwrap();
    let rows: Vec<usize> = (0..ds.nrows())
        .filter(|&i| !(trt.text(i) == "High" && vis.text(i) == "Week 8"))
        .collect();
    let e = mmrm(&take_rows(&ds, &rows), &base_spec(), 0.05)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("singular design") && e.contains("TRT01P=High:AVISIT=Week 8"),
        "{e}"
    );
}

/// Week 4 and Week 8 never observed in the same subject: σ(Week 4, Week 8) has no data.
#[test]
fn visit_pair_never_observed_together_is_refused_for_us_only() {
    let ds = load("admmrm.csv");
    let subj = ds.column("USUBJID").unwrap();
    let vis = ds.column("AVISIT").unwrap();
    let with8: std::collections::HashSet<String> = (0..ds.nrows())
        .filter(|&i| vis.text(i) == "Week 8")
        .map(|i| subj.text(i))
        .collect();
    let rows: Vec<usize> = (0..ds.nrows())
        .filter(|&i| !(vis.text(i) == "Week 4" && with8.contains(&subj.text(i))))
        .collect();
    let d = take_rows(&ds, &rows);
    let mut s = base_spec();
    s.visit_by_covariate = false;
    let e = mmrm(&d, &s, 0.05).unwrap_err().to_string();
    assert!(
        e.contains("visits `Week 4` and `Week 8` are never observed in the same subject"),
        "{e}"
    );
    s.cov = CovStructure::Cs;
    let fit = mmrm(&d, &s, 0.05).unwrap();
    assert!(fit.diffs.iter().all(|x| x.se.is_finite() && x.df > 10.0));
}

#[test]
fn unknown_reference_arm_is_refused() {
    let ds = load("admmrm.csv");
    let mut s = base_spec();
    s.reference = Some("Placebo ".into());
    let e = mmrm(&ds, &s, 0.05).unwrap_err().to_string();
    assert!(e.contains("reference level `Placebo ` not found"), "{e}");
}

/// Zero residual variance at a visit: a clear error, not NaN output.
#[test]
fn constant_response_is_refused() {
    let n = 40;
    let subj: Vec<String> = (0..n).map(|i| format!("S{}", i / 2)).collect();
    let vis: Vec<String> = (0..n).map(|i| format!("V{}", i % 2 + 1)).collect();
    let trt: Vec<String> = (0..n)
        .map(|i| if (i / 2) % 2 == 0 { "A" } else { "B" }.to_string())
        .collect();
    let ds = Dataset {
        columns: vec![
            Column::character("USUBJID", subj),
            Column::character("AVISIT", vis),
            Column::character("TRT01P", trt),
            Column::numeric("CHG", vec![1.0; n]),
        ],
        ..Default::default()
    };
    let s = MmrmSpec {
        response: "CHG".into(),
        subject: "USUBJID".into(),
        visit: "AVISIT".into(),
        treatment: "TRT01P".into(),
        ..Default::default()
    };
    let e = mmrm(&ds, &s, 0.05).unwrap_err().to_string();
    assert!(e.contains("no residual variation"), "{e}");
}

/// Simulated data with a known covariance: a large sample recovers it (a check that does
/// not depend on any reference implementation).
#[test]
fn recovers_the_simulation_covariance() {
    let sigma = [[4.0, 2.0, 1.0], [2.0, 5.0, 2.5], [1.0, 2.5, 6.0]];
    // Cholesky of sigma
    let mut l = [[0.0f64; 3]; 3];
    for i in 0..3 {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            l[i][j] = if i == j {
                (sigma[i][i] - s).sqrt()
            } else {
                (sigma[i][j] - s) / l[j][j]
            };
        }
    }
    let mut state = 7u64;
    let mut unif = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let (mut s, mut v, mut t, mut y) = (vec![], vec![], vec![], vec![]);
    for i in 0..4000 {
        let z: Vec<f64> = (0..3)
            .map(|_| {
                let (a, b) = (unif(), unif());
                (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
            })
            .collect();
        let arm = i % 2;
        for j in 0..3 {
            if j == 2 && i % 5 == 0 {
                continue; // dropout at the last visit
            }
            let e: f64 = (0..=j).map(|k| l[j][k] * z[k]).sum();
            s.push(format!("S{i}"));
            v.push(format!("V{}", j + 1));
            t.push(if arm == 0 { "P" } else { "D" }.to_string());
            y.push(1.0 + 0.5 * j as f64 - arm as f64 * (j as f64) + e);
        }
    }
    let ds = Dataset {
        columns: vec![
            Column::character("USUBJID", s),
            Column::character("AVISIT", v),
            Column::character("TRT01P", t),
            Column::numeric("CHG", y),
        ],
        ..Default::default()
    };
    let spec = MmrmSpec {
        response: "CHG".into(),
        subject: "USUBJID".into(),
        visit: "AVISIT".into(),
        treatment: "TRT01P".into(),
        reference: Some("P".into()),
        ..Default::default()
    };
    let fit = mmrm(&ds, &spec, 0.05).unwrap();
    for i in 0..3 {
        for j in 0..3 {
            let want = sigma[i][j];
            let got = fit.covariance[i][j];
            // sampling SD of a covariance estimate at n ≈ 2000 per arm is ≈ 0.1–0.2
            assert!((got - want).abs() < 0.6, "Σ[{i}][{j}] = {got}, want {want}");
        }
    }
    // true differences D − P: 0, −1, −2
    for (d, want) in fit.diffs.iter().zip([0.0, -1.0, -2.0]) {
        assert!(
            (d.estimate - want).abs() < 4.0 * d.se,
            "{} {}",
            d.visit,
            d.estimate
        );
        // with ≈ 4000 subjects the Satterthwaite df is large
        assert!(d.df > 1000.0, "df {}", d.df);
    }
}

/// Rescaling the response by c scales estimates and SEs by c, leaves df and p unchanged and
/// shifts the REML deviance by 2(n − p) log c; adding a constant moves only the intercept and
/// the LS means. Checks that need no reference implementation.
#[test]
fn response_scale_and_shift_equivariance() {
    let ds = load("admmrm.csv");
    let base = mmrm(&ds, &base_spec(), 0.05).unwrap();
    let y = ds.numeric("CHG").unwrap().to_vec();
    let with_y = |f: &dyn Fn(f64) -> f64| {
        let mut d = ds.clone();
        let col = d.columns.iter_mut().find(|c| c.name == "CHG").unwrap();
        col.data = ColumnData::Numeric {
            values: y.iter().map(|&v| f(v)).collect(),
            special: vec![],
        };
        mmrm(&d, &base_spec(), 0.05).unwrap()
    };
    let c = 10.0;
    let scaled = with_y(&|v| c * v);
    let n = base.n_obs as f64;
    let p = base.coefficients.len() as f64;
    close(
        "deviance shift",
        scaled.deviance - base.deviance,
        2.0 * (n - p) * c.ln(),
        1e-9,
    );
    for (a, b) in base.diffs.iter().zip(&scaled.diffs) {
        close("estimate", b.estimate, c * a.estimate, 1e-7);
        close("se", b.se, c * a.se, 1e-7);
        close("df", b.df, a.df, 1e-6);
        close("p", b.p, a.p, 1e-6);
    }
    let shifted = with_y(&|v| v + 100.0);
    close("deviance", shifted.deviance, base.deviance, 1e-10);
    close(
        "intercept",
        shifted.coefficients[0].estimate,
        base.coefficients[0].estimate + 100.0,
        1e-9,
    );
    for (a, b) in base.lsmeans.iter().zip(&shifted.lsmeans) {
        close("lsmean", b.estimate, a.estimate + 100.0, 1e-9);
        close("lsmean se", b.se, a.se, 1e-7);
    }
    for (a, b) in base.coefficients.iter().zip(&shifted.coefficients).skip(1) {
        close_s(&a.term, b.estimate, a.estimate, a.se, 1e-7);
    }
}
