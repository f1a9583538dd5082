//! End-to-end tests of `trellis stats` through `cli::run` (argument parsing included).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

fn json_of(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.json");
    let mut a = args.to_vec();
    let o = out.to_str().unwrap().to_string();
    a.extend_from_slice(&["--out", &o]);
    stats(&a).unwrap();
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

#[test]
fn km_json_has_the_documented_shape_from_xpt_input() {
    let dir = tempfile::tempdir().unwrap();
    let xpt = dir.path().join("adtte.xpt");
    let csv = fixture("adtte.csv");
    stats(&[
        "convert",
        "--data",
        csv.to_str().unwrap(),
        "--out",
        xpt.to_str().unwrap(),
    ])
    .unwrap();
    let j = json_of(&[
        "km",
        "--data",
        xpt.to_str().unwrap(),
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--censor-value",
        "1",
        "--by",
        "TRT01A",
        "--format",
        "json",
    ]);
    let r = reference();
    let groups = j["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    for (g, w) in groups.iter().zip(r["km"]["groups"].as_array().unwrap()) {
        for key in [
            "group",
            "n",
            "events",
            "median",
            "median_lo",
            "median_hi",
            "curve",
        ] {
            assert!(g.get(key).is_some(), "missing {key}");
        }
        assert_eq!(g["median"], w["median"]);
        let p = &g["curve"][0];
        for key in ["time", "n_risk", "n_event", "survival", "lo", "hi"] {
            assert!(p.get(key).is_some(), "missing curve.{key}");
        }
        assert_eq!(
            g["curve"].as_array().unwrap().len(),
            w["curve"].as_array().unwrap().len()
        );
    }
    close(
        "logrank",
        f(&j["logrank"]["chisq"]),
        f(&r["logrank"]["two_groups"]["chisq"]),
        1e-10,
    );
    assert_eq!(j["logrank"]["df"], 1);
    assert!(j["logrank"]["p"].is_number());
}

#[test]
fn km_median_not_reached_is_null() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    std::fs::write(&p, "T,E\n1,1\n2,1\n3,0\n4,0\n5,0\n6,0\n7,0\n").unwrap();
    let j = json_of(&[
        "km",
        "--data",
        p.to_str().unwrap(),
        "--time",
        "T",
        "--event",
        "E",
    ]);
    assert!(j["groups"][0]["median"].is_null());
    assert!(j["logrank"].is_null());
}

#[test]
fn cox_json_shape_and_values() {
    let csv = fixture("adtte.csv");
    let j = json_of(&[
        "cox",
        "--data",
        csv.to_str().unwrap(),
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--covariates",
        "TRTN,AGE,X1,SEXN",
        "--ties",
        "efron",
    ]);
    let r = reference();
    let want = &r["cox"][0];
    let coefs = j["coefficients"].as_array().unwrap();
    assert_eq!(coefs.len(), 4);
    for (c, w) in coefs.iter().zip(fv(&want["estimate"])) {
        for key in ["term", "estimate", "se", "hr", "hr_lo", "hr_hi", "p"] {
            assert!(c.get(key).is_some(), "missing {key}");
        }
        close("estimate", f(&c["estimate"]), w, 1e-7);
    }
    close("loglik", f(&j["loglik"]), f(&want["loglik"]), 1e-10);
    assert_eq!(j["n"], 400);
    assert!(j["events"].as_u64().unwrap() > 0);
}

#[test]
fn html_rtf_csv_tables_and_svg_figures_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let csv = fixture("adtte.csv");
    let d = csv.to_str().unwrap();
    let svg = dir.path().join("km.svg");
    let html = dir.path().join("km.html");
    stats(&[
        "km",
        "--data",
        d,
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--by",
        "TRT01A",
        "--format",
        "html",
        "--out",
        html.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--at",
        "180,365",
    ])
    .unwrap();
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(h.contains("<table>") && h.contains("Drug A\n(N=") && h.contains("Log-rank test"));
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("Number at risk") && s.contains("<path"));

    let rtf = dir.path().join("demo.rtf");
    stats(&[
        "describe",
        "--data",
        d,
        "--vars",
        "AGE,SEX",
        "--by",
        "TRT01A",
        "--format",
        "rtf",
        "--out",
        rtf.to_str().unwrap(),
    ])
    .unwrap();
    let r = std::fs::read_to_string(&rtf).unwrap();
    assert!(r.starts_with("{\\rtf1") && r.contains("Mean (SD)") && r.ends_with('}'));
    assert_eq!(
        r.matches('{').count() - r.matches("\\{").count(),
        r.matches('}').count() - r.matches("\\}").count()
    );

    let forest = dir.path().join("forest.svg");
    let out = dir.path().join("cox.csv");
    stats(&[
        "cox",
        "--data",
        d,
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--by",
        "TRT01A",
        "--covariates",
        "AGE,SEX",
        "--strata",
        "STRAT",
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
        "--plot",
        forest.to_str().unwrap(),
    ])
    .unwrap();
    let c = std::fs::read_to_string(&out).unwrap();
    assert!(c.contains("TRT01A=Placebo") && c.contains("SEX=M"), "{c}");
    assert!(
        std::fs::read_to_string(&forest)
            .unwrap()
            .contains("Hazard ratio")
    );

    let eff = fixture("adeff.csv");
    let j = json_of(&[
        "ancova",
        "--data",
        eff.to_str().unwrap(),
        "--response",
        "CHG",
        "--by",
        "TRT01P",
        "--covariates",
        "SITEID,BASE",
    ]);
    assert_eq!(j["type3"].as_array().unwrap().len(), 4);
    assert_eq!(j["lsmeans"].as_array().unwrap().len(), 3);
    let j = json_of(&[
        "logistic",
        "--data",
        eff.to_str().unwrap(),
        "--response",
        "RESP",
        "--covariates",
        "TRT01P,BASE",
    ]);
    assert_eq!(j["coefficients"].as_array().unwrap().len(), 4);
    let fq = fixture("adfreq.csv");
    let j = json_of(&[
        "freq",
        "--data",
        fq.to_str().unwrap(),
        "--row",
        "TRT",
        "--col",
        "RESP",
        "--strata",
        "CENTER",
    ]);
    assert!(j["cmh"]["chisq"].is_number() && j["fisher"]["p_two_sided"].is_number());
}

#[test]
fn convert_round_trips_csv_through_xpt() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("e.xpt");
    let c2 = dir.path().join("e2.csv");
    let src = fixture("adeff.csv");
    stats(&[
        "convert",
        "--data",
        src.to_str().unwrap(),
        "--out",
        x.to_str().unwrap(),
        "--label",
        "Efficacy",
    ])
    .unwrap();
    stats(&[
        "convert",
        "--data",
        x.to_str().unwrap(),
        "--out",
        c2.to_str().unwrap(),
    ])
    .unwrap();
    let a = trellis_stats::data::Dataset::load(&src).unwrap();
    let b = trellis_stats::data::Dataset::load(&c2).unwrap();
    assert_eq!(a.columns.len(), b.columns.len());
    for (p, q) in a.columns.iter().zip(&b.columns) {
        assert_eq!(p.data, q.data, "{}", p.name);
    }
    let xd = trellis_stats::data::Dataset::load(&x).unwrap();
    assert_eq!(xd.name, "E");
    assert_eq!(xd.label, "Efficacy");
}

#[test]
fn bad_invocations_give_clear_errors() {
    let csv = fixture("adtte.csv");
    let d = csv.to_str().unwrap();
    let e = stats(&["km", "--data", d, "--time", "AVAL"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--event") && e.contains("--censor"), "{e}");
    let e = format!(
        "{:#}",
        stats(&["km", "--data", d, "--time", "NOPE", "--censor", "CNSR"]).unwrap_err()
    );
    assert!(e.contains("NOPE") && e.contains("AVAL"), "{e}");
    let e = format!(
        "{:#}",
        stats(&[
            "km",
            "--data",
            "/nonexistent.xpt",
            "--time",
            "T",
            "--event",
            "E"
        ])
        .unwrap_err()
    );
    assert!(e.contains("/nonexistent.xpt"), "{e}");
    let e = format!(
        "{:#}",
        stats(&[
            "cox",
            "--data",
            d,
            "--time",
            "AVAL",
            "--censor",
            "CNSR",
            "--covariates",
            "TRT01A",
            "--alpha",
            "2"
        ])
        .unwrap_err()
    );
    assert!(e.contains("alpha"), "{e}");
}

#[test]
fn png_figures_are_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("km.png");
    let d = fixture("adtte.csv");
    let r = stats(&[
        "km",
        "--data",
        d.to_str().unwrap(),
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--by",
        "TRT01A",
        "--plot",
        png.to_str().unwrap(),
        "--out",
        dir.path().join("km.json").to_str().unwrap(),
    ]);
    check_km_png(r, &png);
}

#[test]
fn confidence_level_follows_alpha_in_tables_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let d = fixture("adtte.csv");
    let html = dir.path().join("c.html");
    let svg = dir.path().join("f.svg");
    stats(&[
        "cox",
        "--data",
        d.to_str().unwrap(),
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--covariates",
        "AGE",
        "--alpha",
        "0.1",
        "--format",
        "html",
        "--out",
        html.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ])
    .unwrap();
    assert!(
        std::fs::read_to_string(&html)
            .unwrap()
            .contains("Hazard ratio (90% CI)")
    );
    assert!(
        std::fs::read_to_string(&svg)
            .unwrap()
            .contains("Estimate (90% CI)")
    );
}

#[test]
fn mmrm_json_and_tables() {
    let csv = fixture("admmrm.csv");
    let c = csv.to_str().unwrap();
    let base = [
        "mmrm",
        "--data",
        c,
        "--response",
        "CHG",
        "--subject",
        "USUBJID",
        "--visit",
        "AVISIT",
        "--by",
        "TRT01P",
        "--ref",
        "TRT01P=Placebo",
        "--covariates",
        "BASE",
        "--visit-by-covariate",
    ];
    let j = json_of(&base);
    for k in [
        "deviance",
        "aic",
        "bic",
        "loglik",
        "covariance",
        "coefficients",
        "vcov",
        "lsmeans",
        "diffs",
        "visits",
        "arms",
        "theta",
    ] {
        assert!(j.get(k).is_some(), "missing {k}");
    }
    assert_eq!(j["cov"], "us");
    assert_eq!(j["df_method"], "satterthwaite");
    assert_eq!(j["reference"], "Placebo");
    assert_eq!(j["lsmeans"].as_array().unwrap().len(), 12);
    assert_eq!(j["diffs"].as_array().unwrap().len(), 8);
    let want = &serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(fixture("mmrm_reference.json")).unwrap(),
    )
    .unwrap()["models"]["us_base_vbc"];
    close("deviance", f(&j["deviance"]), f(&want["deviance"]), 1e-10);

    let dir = tempfile::tempdir().unwrap();
    for (fmt, needle) in [
        ("csv", "Week 12,High,39,"),
        ("html", "Difference vs Placebo (SE)"),
        ("rtf", "Estimated covariance matrix (unstructured)"),
    ] {
        let out = dir.path().join(format!("t.{fmt}"));
        let mut a = base.to_vec();
        a.extend_from_slice(&["--format", fmt, "--out", out.to_str().unwrap()]);
        stats(&a).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains(needle), "{fmt}: {text}");
    }
    // CS and AR(1) through the CLI
    for cov in ["cs", "ar1"] {
        let mut a = base.to_vec();
        a.extend_from_slice(&["--cov", cov]);
        let j = json_of(&a);
        assert_eq!(j["cov"], cov);
        assert_eq!(j["n_theta"], 2);
    }
    // Kenward–Roger through the CLI
    let mut a = base.to_vec();
    a.extend_from_slice(&["--df", "kr"]);
    let k = json_of(&a);
    assert_eq!(k["df_method"], "kenward-roger");
    let want_kr = &serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(fixture("mmrm_reference.json")).unwrap(),
    )
    .unwrap()["models"]["us_base_vbc_kr"];
    close(
        "KR diff SE",
        f(&k["diffs"][7]["se"]),
        f(&want_kr["diffs"][7]["se"]),
        1e-7,
    );
    // a column that does not exist is named
    let mut a = base.to_vec();
    a[8] = "VISIT";
    let e = stats(&a).unwrap_err();
    assert!(
        format!("{e:#}").contains("column `VISIT` not found"),
        "{e:#}"
    );
}

/// The same analysis from an XPORT file (the usual ADaM delivery) and with a numeric visit
/// column.
#[test]
fn mmrm_from_xpt_and_numeric_visit() {
    let dir = tempfile::tempdir().unwrap();
    let xpt = dir.path().join("admmrm.xpt");
    let csv = fixture("admmrm.csv");
    stats(&[
        "convert",
        "--data",
        csv.to_str().unwrap(),
        "--out",
        xpt.to_str().unwrap(),
    ])
    .unwrap();
    let args = |data: &str, visit: &str| -> Vec<String> {
        [
            "mmrm",
            "--data",
            data,
            "--response",
            "CHG",
            "--subject",
            "USUBJID",
            "--visit",
            visit,
            "--by",
            "TRT01P",
            "--ref",
            "TRT01P=Placebo",
            "--covariates",
            "BASE",
            "--visit-by-covariate",
        ]
        .map(String::from)
        .to_vec()
    };
    let a = args(xpt.to_str().unwrap(), "AVISIT");
    let j = json_of(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let want = &serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(fixture("mmrm_reference.json")).unwrap(),
    )
    .unwrap()["models"]["us_base_vbc"];
    close("deviance", f(&j["deviance"]), f(&want["deviance"]), 1e-10);
    // AVISITN (1..4) orders the visits the same way; the row with AVISITN 5 has no CHG
    let a = args(csv.to_str().unwrap(), "AVISITN");
    let n = json_of(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_eq!(n["visits"], serde_json::json!(["1", "2", "3", "4"]));
    close("deviance", f(&n["deviance"]), f(&want["deviance"]), 1e-10);
    close(
        "last diff",
        f(&n["diffs"][7]["estimate"]),
        f(&want["diffs"][7]["estimate"]),
        1e-7,
    );
}

#[test]
fn freq_rxc_with_strata_fisher_modes_and_footnotes() {
    let cat = fixture("adcat.csv");
    let base = [
        "freq",
        "--data",
        cat.to_str().unwrap(),
        "--row",
        "DOSE",
        "--col",
        "GRADE",
        "--strata",
        "SITE",
    ];
    let j = json_of(&base);
    assert_eq!(j["fisher_rxc"]["method"], "exact");
    assert!(j["fisher_rxc"]["p_two_sided"].as_f64().unwrap() < 1e-3);
    assert!(j["fisher"].is_null() && j["cmh"].is_null());
    for k in ["correlation", "row_mean_scores", "general_association"] {
        assert!(j["cmh_general"][k]["statistic"].is_number(), "{k}");
    }
    assert_eq!(j["cmh_general"]["general_association"]["df"], 6);
    assert_eq!(j["cmh_general"]["row_scores"][2], 40.0);
    // Monte Carlo: seeded, so the same call gives the same number
    let mut mc = base.to_vec();
    mc.extend_from_slice(&["--fisher", "mc", "--mc-samples", "2000", "--seed", "5"]);
    let a = json_of(&mc);
    let b = json_of(&mc);
    assert_eq!(a["fisher_rxc"]["method"], "monte_carlo");
    assert_eq!(a["fisher_rxc"]["samples"], 2000);
    assert_eq!(
        a["fisher_rxc"]["p_two_sided"],
        b["fisher_rxc"]["p_two_sided"]
    );
    let mut none = base.to_vec();
    none.extend_from_slice(&["--fisher", "none"]);
    assert!(json_of(&none)["fisher_rxc"].is_null());
    // HTML: the tests are footnotes, as for 2×2 tables
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("t.html");
    let mut h = base.to_vec();
    h.extend_from_slice(&["--format", "html", "--out", html.to_str().unwrap()]);
    stats(&h).unwrap();
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        text.contains("Fisher's exact test (r x c): two-sided p &lt; .0001"),
        "{text}"
    );
    assert!(
        text.contains("general association = 29.291 (df 6, p &lt; .0001)"),
        "{text}"
    );
}

#[test]
fn freq_refuses_exact_fisher_on_a_large_table_and_names_the_alternatives() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("big.csv");
    let mut s = String::from("A,B\n");
    for i in 0..1600u32 {
        // 8 × 8 levels, nearly uniform: far too many tables for exact enumeration
        s.push_str(&format!("a{},b{}\n", (i * 7) % 8, (i * 11 + i / 8) % 8));
    }
    std::fs::write(&csv, s).unwrap();
    let args = [
        "freq",
        "--data",
        csv.to_str().unwrap(),
        "--row",
        "A",
        "--col",
        "B",
    ];
    let e = format!("{:#}", stats(&args).unwrap_err());
    assert!(
        e.contains("too large for exact computation") && e.contains("--fisher mc"),
        "{e}"
    );
    let mut mc = args.to_vec();
    mc.extend_from_slice(&["--fisher", "mc", "--mc-samples", "200"]);
    let j = json_of(&mc);
    assert_eq!(j["fisher_rxc"]["method"], "monte_carlo");
    assert!(j["chisq"]["p"].is_number());
}
