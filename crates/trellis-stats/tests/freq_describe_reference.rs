//! Fisher, chi-square, CMH (scipy/statsmodels) and descriptive summaries (numpy).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use trellis_stats::describe::*;
use trellis_stats::freq::*;

fn t2(v: &serde_json::Value) -> [[u64; 2]; 2] {
    let g = |i: usize, j: usize| v[i][j].as_u64().unwrap();
    [[g(0, 0), g(0, 1)], [g(1, 0), g(1, 1)]]
}

#[test]
fn fisher_and_chisq_match_scipy() {
    let r = reference();
    for e in r["fisher"]["tables"].as_array().unwrap() {
        let t = t2(&e["table"]);
        let fz = fisher_exact(t);
        close("two-sided", fz.p_two_sided, f(&e["two-sided"]), 1e-9);
        close("less", fz.p_less, f(&e["less"]), 1e-9);
        close("greater", fz.p_greater, f(&e["greater"]), 1e-9);
        match e["odds_ratio"].as_f64() {
            Some(o) if o.is_finite() => close("or", fz.odds_ratio.unwrap(), o, 1e-12),
            _ => assert!(fz.odds_ratio.is_none() || fz.odds_ratio == Some(0.0)),
        }
        let tab: Vec<Vec<u64>> = t.iter().map(|r| r.to_vec()).collect();
        let c = chi_square(&tab).unwrap();
        close("chisq", c.chisq, f(&e["chisq"]), 1e-10);
        close("chisq p", c.p, f(&e["chisq_p"]), 1e-8);
        close("yates", c.chisq_yates.unwrap(), f(&e["chisq_yates"]), 1e-10);
        close("yates p", c.p_yates.unwrap(), f(&e["chisq_yates_p"]), 1e-8);
    }
    let x = &r["chisq_rxc"];
    let tab: Vec<Vec<u64>> = x["table"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect()
        })
        .collect();
    let c = chi_square(&tab).unwrap();
    close("rxc", c.chisq, f(&x["chisq"]), 1e-10);
    close("rxc p", c.p, f(&x["p"]), 1e-8);
    assert_eq!(c.df, 4);
    assert!(c.chisq_yates.is_none());
}

#[test]
fn freq_and_cmh_on_dataset_match_statsmodels() {
    let r = reference();
    let ds = load("adfreq.csv");
    let res = freq(&ds, "TRT", "RESP", Some("CENTER"), 0.05).unwrap();
    let w = &r["freq_2x2"];
    for i in 0..2 {
        for j in 0..2 {
            assert_eq!(res.table[i][j], w["table"][i][j].as_u64().unwrap());
        }
    }
    close("chisq", res.chisq.chisq, f(&w["chisq"]), 1e-10);
    close(
        "fisher",
        res.fisher.as_ref().unwrap().p_two_sided,
        f(&w["fisher_p"]),
        1e-9,
    );
    let c = res.cmh.unwrap();
    let w = &r["cmh"];
    close("cmh", c.chisq, f(&w["chisq"]), 1e-10);
    close("cmh p", c.p, f(&w["p"]), 1e-8);
    close(
        "cmh corr",
        c.chisq_corrected,
        f(&w["chisq_corrected"]),
        1e-10,
    );
    close("cmh corr p", c.p_corrected, f(&w["p_corrected"]), 1e-8);
    close("or", c.or_mh, f(&w["or_mh"]), 1e-12);
    close("se", c.log_or_se, f(&w["logor_se"]), 1e-10);
    close("lo", c.or_lo, f(&w["or_lo"]), 1e-10);
    close("hi", c.or_hi, f(&w["or_hi"]), 1e-10);
    close("bd", c.breslow_day.unwrap(), f(&w["breslow_day"]), 1e-8);
    close(
        "bd p",
        c.breslow_day_p.unwrap(),
        f(&w["breslow_day_p"]),
        1e-7,
    );
}

#[test]
fn degenerate_tables() {
    assert!(
        chi_square(&[vec![0, 0], vec![3, 4]])
            .unwrap_err()
            .to_string()
            .contains("row 1")
    );
    assert!(chi_square(&[vec![1, 2]]).is_err());
    assert!(cmh(&[[[1, 0], [0, 0]]], 0.05).is_err());
}

#[test]
fn describe_matches_numpy() {
    let r = reference();
    let ds = load("adtte.csv");
    let w = &r["describe"];
    for (def, q1k, q3k) in [
        (QuantileDef::Sas5, "q1_sas5", "q3_sas5"),
        (QuantileDef::R7, "q1_r7", "q3_r7"),
    ] {
        let d = describe(&ds, &["AGE".into(), "SEX".into()], Some("TRT01A"), def).unwrap();
        assert_eq!(d.groups.last().unwrap(), "Total");
        let VarSummary::Continuous { groups, .. } = &d.variables[0] else {
            panic!()
        };
        for (g, e) in groups.iter().zip(w["groups"].as_array().unwrap()) {
            assert_eq!(g.group, e["group"].as_str().unwrap());
            assert_eq!(g.n, e["n"].as_u64().unwrap());
            close("mean", g.mean.unwrap(), f(&e["mean"]), 1e-12);
            close("sd", g.sd.unwrap(), f(&e["sd"]), 1e-12);
            close("median", g.median.unwrap(), f(&e["median"]), 1e-12);
            close("q1", g.q1.unwrap(), f(&e[q1k]), 1e-12);
            close("q3", g.q3.unwrap(), f(&e[q3k]), 1e-12);
            close("min", g.min.unwrap(), f(&e["min"]), 0.0);
            close("max", g.max.unwrap(), f(&e["max"]), 0.0);
        }
        assert_eq!(groups[2].n, 400);
        let VarSummary::Categorical { levels, .. } = &d.variables[1] else {
            panic!()
        };
        for lc in levels {
            for (gi, g) in d.groups[..2].iter().enumerate() {
                assert_eq!(
                    lc.counts[gi],
                    w["sex_counts"][g][&lc.level].as_u64().unwrap()
                );
            }
            let tot: u64 = lc.counts[..2].iter().sum();
            assert_eq!(lc.counts[2], tot);
        }
    }
    // quantile definitions on a tiny known sample: SAS 5 and R 7 differ
    let x = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(quantile(&x, 0.25, QuantileDef::Sas5), Some(1.5));
    assert_eq!(quantile(&x, 0.25, QuantileDef::R7), Some(1.75));
}
