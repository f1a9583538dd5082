//! ANCOVA and logistic regression against statsmodels fixtures.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use trellis_stats::data::{Column, Dataset};
use trellis_stats::linear::*;

fn spec() -> LinearSpec {
    LinearSpec {
        response: "CHG".into(),
        treatment: "TRT01P".into(),
        covariates: vec!["SITEID".into(), "BASE".into()],
        factors: vec![],
    }
}

#[test]
fn ancova_type3_and_lsmeans_match_statsmodels() {
    let r = &reference()["ancova"];
    let ds = load("adeff.csv");
    let fit = ancova(&ds, &spec(), 0.05).unwrap();
    close("mse", fit.mse, f(&r["mse"]), 1e-9);
    close("df", fit.df_resid, f(&r["df_resid"]), 0.0);
    close("r2", fit.r2, f(&r["r2"]), 1e-9);
    let want = r["type3"].as_array().unwrap();
    // statsmodels rows: Intercept, C(TRT01P, Sum), C(SITEID, Sum), BASE, Residual
    for (got, w) in fit.type3.iter().zip(want) {
        close(&got.term, got.ss, f(&w["ss"]), 1e-8);
        close(&got.term, got.df as f64, f(&w["df"]), 0.0);
        close(&got.term, got.f, f(&w["f"]), 1e-8);
        close(&got.term, got.p, f(&w["p"]), 1e-6);
    }
    assert_eq!(fit.type3.len() + 1, want.len());
    for (got, w) in fit.lsmeans.iter().zip(r["lsmeans"].as_array().unwrap()) {
        assert_eq!(got.level, w["level"].as_str().unwrap());
        close("lsmean", got.estimate, f(&w["estimate"]), 1e-9);
        close("lsmean se", got.se, f(&w["se"]), 1e-9);
        close("lsmean lo", got.lo, f(&w["lo"]), 1e-9);
        close("lsmean hi", got.hi, f(&w["hi"]), 1e-9);
    }
    for (got, w) in fit.diffs.iter().zip(r["pairs"].as_array().unwrap()) {
        assert_eq!(got.a, w["a"].as_str().unwrap());
        assert_eq!(got.b, w["b"].as_str().unwrap());
        close("diff", got.estimate, f(&w["estimate"]), 1e-9);
        close("diff se", got.se, f(&w["se"]), 1e-9);
        close("diff lo", got.lo, f(&w["lo"]), 1e-9);
        close("diff hi", got.hi, f(&w["hi"]), 1e-9);
        close("diff p", got.p, f(&w["p"]), 1e-7);
    }
    for (got, w) in fit.coefficients.iter().zip(fv(&r["params"])) {
        close(&got.term, got.estimate, w, 1e-8);
    }
}

#[test]
fn logistic_matches_statsmodels() {
    let r = &reference()["logistic"];
    let ds = load("adeff.csv");
    let fit = logistic(
        &ds,
        "RESP",
        None,
        &["TRT01P".into(), "BASE".into()],
        &[],
        &[],
        0.05,
    )
    .unwrap();
    let terms: Vec<&str> = r["terms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for (j, c) in fit.coefficients.iter().enumerate() {
        let want_term = if j == 0 { "Intercept" } else { terms[j] };
        assert_eq!(c.term, want_term);
        close("est", c.estimate, fv(&r["estimate"])[j], 1e-8);
        close("se", c.se, fv(&r["se"])[j], 1e-8);
        close("p", c.p, fv(&r["p"])[j], 1e-7);
        close("or_lo", c.or_lo, fv(&r["or_lo"])[j], 1e-8);
        close("or_hi", c.or_hi, fv(&r["or_hi"])[j], 1e-8);
    }
    close("ll", fit.loglik, f(&r["loglik"]), 1e-11);
    // statsmodels fits the null model iteratively; ours is the closed form
    close("ll0", fit.loglik_null, f(&r["loglik_null"]), 1e-9);
    close("lr", fit.lr_chisq, f(&r["lr"]), 1e-8);
    close("lr p", fit.lr_p, f(&r["lr_p"]), 1e-6);
}

#[test]
fn degenerate_linear_inputs() {
    // perfect separation
    let ds = Dataset {
        name: "D".into(),
        columns: vec![
            Column::numeric("Y", vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
            Column::numeric("X", vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ],
        ..Default::default()
    };
    let e = logistic(&ds, "Y", None, &["X".into()], &[], &[], 0.05)
        .unwrap_err()
        .to_string();
    assert!(e.contains("separation"), "{e}");
    // quasi-complete separation
    let ds = Dataset {
        name: "D".into(),
        columns: vec![
            Column::numeric("Y", vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]),
            Column::numeric("X", vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]),
        ],
        ..Default::default()
    };
    let e = logistic(&ds, "Y", None, &["X".into()], &[], &[], 0.05)
        .unwrap_err()
        .to_string();
    assert!(e.contains("separation"), "{e}");
    // all outcomes equal
    let ds = Dataset {
        name: "D".into(),
        columns: vec![
            Column::numeric("Y", vec![1.0; 5]),
            Column::numeric("X", vec![1.0, 2.0, 3.0, 4.0, 5.0]),
        ],
        ..Default::default()
    };
    assert!(
        logistic(&ds, "Y", None, &["X".into()], &[], &[], 0.05)
            .unwrap_err()
            .to_string()
            .contains("only events")
    );
    // singular ANCOVA design: X2 = 2 * X1
    let ds = Dataset {
        name: "D".into(),
        columns: vec![
            Column::numeric("Y", vec![1.0, 2.0, 3.5, 4.0, 5.5, 6.0, 8.0]),
            Column::character(
                "T",
                ["a", "b", "a", "b", "a", "b", "a"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            Column::numeric("X1", vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
            Column::numeric("X2", vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]),
        ],
        ..Default::default()
    };
    let s = LinearSpec {
        response: "Y".into(),
        treatment: "T".into(),
        covariates: vec!["X1".into(), "X2".into()],
        factors: vec![],
    };
    let e = ancova(&ds, &s, 0.05).unwrap_err().to_string();
    assert!(e.contains("singular design") && e.contains("X2"), "{e}");
    // single-level treatment
    let s = LinearSpec {
        response: "Y".into(),
        treatment: "X1".into(),
        covariates: vec![],
        factors: vec![],
    };
    let ds1 = Dataset {
        name: "D".into(),
        columns: vec![
            Column::numeric("Y", vec![1.0, 2.0]),
            Column::numeric("X1", vec![1.0, 1.0]),
        ],
        ..Default::default()
    };
    assert!(
        ancova(&ds1, &s, 0.05)
            .unwrap_err()
            .to_string()
            .contains("single level")
    );
}

#[test]
fn logistic_reference_level() {
    let ds = load("adeff.csv");
    let cov = ["TRT01P".to_string(), "BASE".to_string()];
    let a = logistic(&ds, "RESP", None, &cov, &[], &[], 0.05).unwrap();
    let r = [("TRT01P".to_string(), "Placebo".to_string())];
    let b = logistic(&ds, "RESP", None, &cov, &[], &r, 0.05).unwrap();
    assert_eq!(a.coefficients[2].term, "TRT01P=Placebo");
    assert_eq!(b.coefficients[1].term, "TRT01P=High");
    assert_eq!(b.coefficients[2].term, "TRT01P=Low");
    // High vs Placebo = −(Placebo vs High)
    close(
        "flip",
        b.coefficients[1].estimate,
        -a.coefficients[2].estimate,
        1e-8,
    );
    close("ll", b.loglik, a.loglik, 1e-12);
}

/// Replicating the data k times leaves the MLE unchanged and divides SEs by √k; with
/// 72,000 rows this covers the chunked (parallel) likelihood evaluation.
#[test]
fn logistic_on_replicated_data_uses_every_chunk() {
    use trellis_stats::data::ColumnData;
    let ds = load("adeff.csv");
    let k = 300;
    let rep = Dataset {
        name: "R".into(),
        columns: ds
            .columns
            .iter()
            .map(|c| {
                let mut c2 = c.clone();
                c2.data = match &c.data {
                    ColumnData::Numeric { values, .. } => ColumnData::Numeric {
                        values: values.repeat(k),
                        special: vec![],
                    },
                    ColumnData::Char(v) => {
                        ColumnData::Char((0..k).flat_map(|_| v.iter().cloned()).collect())
                    }
                };
                c2
            })
            .collect(),
        ..Default::default()
    };
    let cov = ["TRT01P".to_string(), "BASE".to_string()];
    let a = logistic(&ds, "RESP", None, &cov, &[], &[], 0.05).unwrap();
    let b = logistic(&rep, "RESP", None, &cov, &[], &[], 0.05).unwrap();
    assert_eq!(b.n, 240 * k as u64);
    for (p, q) in a.coefficients.iter().zip(&b.coefficients) {
        close("estimate", q.estimate, p.estimate, 1e-8);
        close("se", q.se * (k as f64).sqrt(), p.se, 1e-8);
    }
    close("loglik", b.loglik, a.loglik * k as f64, 1e-10);
}
