//! Survival analyses against lifelines / statsmodels fixtures (reference/make_reference.py).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use trellis_stats::survival::*;

fn spec(time: &str) -> SurvSpec {
    SurvSpec {
        time: time.into(),
        event: EventSpec::Censor {
            column: "CNSR".into(),
            value: "1".into(),
        },
        by: Some("TRT01A".into()),
        strata: None,
        covariates: vec![],
        reference: vec![],
        factors: vec![],
    }
}

#[test]
fn kaplan_meier_matches_lifelines_all_transforms() {
    let r = reference();
    let ds = load("adtte.csv");
    for (conf, lo_key, hi_key) in [
        (ConfType::LogLog, "loglog_lo", "loglog_hi"),
        (ConfType::Log, "log_lo", "log_hi"),
        (ConfType::Plain, "plain_lo", "plain_hi"),
    ] {
        let res = km_analysis(&ds, &spec("AVAL"), conf, 0.05, &[100.0, 200.0, 365.0]).unwrap();
        let want = r["km"]["groups"].as_array().unwrap();
        assert_eq!(res.groups.len(), want.len());
        for (g, w) in res.groups.iter().zip(want) {
            assert_eq!(g.group, w["group"].as_str().unwrap());
            assert_eq!(g.n, w["n"].as_u64().unwrap());
            assert_eq!(g.events, w["events"].as_u64().unwrap());
            let wc = w["curve"].as_array().unwrap();
            assert_eq!(g.curve.len(), wc.len(), "one point per distinct time");
            for (p, q) in g.curve.iter().zip(wc) {
                close("time", p.time, f(&q["time"]), 0.0);
                assert_eq!(p.n_risk, q["n_risk"].as_u64().unwrap());
                assert_eq!(p.n_event, q["n_event"].as_u64().unwrap());
                close("survival", p.survival, f(&q["survival"]), 1e-12);
                if p.survival > 0.0 {
                    close("se", p.se.unwrap(), f(&q["se"]), 1e-10);
                    close("lo", p.lo.unwrap(), f(&q[lo_key]), 1e-9);
                    close("hi", p.hi.unwrap(), f(&q[hi_key]), 1e-9);
                } else {
                    assert_eq!(p.lo, Some(0.0));
                }
            }
            if conf == ConfType::LogLog {
                assert_eq!(g.median, w["median"].as_f64());
                assert_eq!(g.median_lo, w["median_lo"].as_f64());
                assert_eq!(g.median_hi, w["median_hi"].as_f64());
            }
            for (a, s) in g.at_times.iter().zip(fv(&w["at_survival"])) {
                close("S(at)", a.survival, s, 1e-12);
            }
        }
    }
}

#[test]
fn logrank_matches_lifelines_and_statsmodels() {
    let r = reference();
    let ds = load("adtte.csv");
    let res = km_analysis(&ds, &spec("AVAL"), ConfType::LogLog, 0.05, &[]).unwrap();
    let lr = res.logrank.unwrap();
    close(
        "chisq",
        lr.chisq,
        f(&r["logrank"]["two_groups"]["chisq"]),
        1e-10,
    );
    close("p", lr.p, f(&r["logrank"]["two_groups"]["p"]), 1e-8);
    assert_eq!(lr.df, 1);

    let mut s3 = spec("AVAL");
    s3.by = Some("ARM3".into());
    let lr = km_analysis(&ds, &s3, ConfType::LogLog, 0.05, &[])
        .unwrap()
        .logrank
        .unwrap();
    close(
        "chisq3",
        lr.chisq,
        f(&r["logrank"]["three_groups"]["chisq"]),
        1e-10,
    );
    close("p3", lr.p, f(&r["logrank"]["three_groups"]["p"]), 1e-8);
    assert_eq!(lr.df, 2);

    let mut ss = spec("AVAL");
    ss.strata = Some("STRAT".into());
    let lr = km_analysis(&ds, &ss, ConfType::LogLog, 0.05, &[])
        .unwrap()
        .logrank
        .unwrap();
    close(
        "chisq strat",
        lr.chisq,
        f(&r["logrank"]["stratified"]["chisq"]),
        1e-10,
    );
    close("p strat", lr.p, f(&r["logrank"]["stratified"]["p"]), 1e-8);
    assert!(lr.stratified);
}

#[test]
fn cox_matches_statsmodels_and_lifelines() {
    let r = reference();
    let ds = load("adtte.csv");
    for c in r["cox"].as_array().unwrap() {
        let ties = if c["ties"] == "efron" {
            Ties::Efron
        } else {
            Ties::Breslow
        };
        let mut s = spec(c["time"].as_str().unwrap());
        s.by = None;
        s.covariates = c["terms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        if c["strata"].as_bool() == Some(true) {
            s.strata = Some("STRAT".into());
        }
        let fit = cox_analysis(&ds, &s, ties, 0.05).unwrap();
        let src = c["source"].as_str().unwrap();
        for (j, coef) in fit.coefficients.iter().enumerate() {
            close(src, coef.estimate, fv(&c["estimate"])[j], 1e-7);
            close(src, coef.se, fv(&c["se"])[j], 1e-7);
            close(src, coef.p, fv(&c["p"])[j], 1e-6);
        }
        close("loglik", fit.loglik, f(&c["loglik"]), 1e-10);
        close("loglik0", fit.loglik_null, f(&c["loglik_null"]), 1e-10);
        close("lr", fit.lr_test.chisq, f(&c["lr"]), 1e-7);
        close("wald", fit.wald_test.chisq, f(&c["wald"]), 1e-7);
        close("score", fit.score_test.chisq, f(&c["score"]), 1e-9);
        if let Some(l) = c.get("lifelines") {
            for (j, coef) in fit.coefficients.iter().enumerate() {
                close("lifelines est", coef.estimate, fv(&l["estimate"])[j], 1e-7);
                close("lifelines se", coef.se, fv(&l["se"])[j], 1e-7);
                close("lifelines hr_lo", coef.hr_lo, fv(&l["hr_lo"])[j], 1e-7);
                close("lifelines hr_hi", coef.hr_hi, fv(&l["hr_hi"])[j], 1e-7);
            }
            close("lifelines ll", fit.loglik, f(&l["loglik"]), 1e-10);
            close("lifelines lr", fit.lr_test.chisq, f(&l["lr"]), 1e-7);
        }
        assert_eq!(fit.n, 400);
    }
}

#[test]
fn degenerate_survival_inputs_give_clear_errors() {
    // all censored
    let d = SurvData::new(vec![1.0, 2.0, 3.0, 4.0], vec![false; 4]).unwrap();
    let e = cox(
        &d,
        &[vec![0.0, 1.0, 0.0, 1.0]],
        &["x".into()],
        None,
        Ties::Efron,
        0.05,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("all observations censored"), "{e}");
    let names = vec!["a".to_string(), "b".to_string()];
    let e = logrank(&d, &[0, 1, 0, 1], &names, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no events"), "{e}");
    // KM of an all-censored group: survival stays 1, median not reached
    let km = kaplan_meier("g", &d, ConfType::LogLog, 0.05, &[]).unwrap();
    assert!(km.curve.iter().all(|p| p.survival == 1.0));
    assert_eq!(km.median, None);
    // separation: events only where x = 1 and x = 1 rows fail first
    let d = SurvData::new(
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        vec![true, true, true, false, false, false],
    )
    .unwrap();
    let e = cox(
        &d,
        &[vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]],
        &["x".into()],
        None,
        Ties::Efron,
        0.05,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("converge") || e.contains("singular"), "{e}");
    // constant covariate
    let e = cox(&d, &[vec![2.0; 6]], &["x".into()], None, Ties::Efron, 0.05)
        .unwrap_err()
        .to_string();
    assert!(e.contains("constant"), "{e}");
    // negative time
    assert!(SurvData::new(vec![-1.0], vec![true]).is_err());
}

mod sorting {
    use proptest::prelude::*;
    use trellis_stats::survival::{f64_key, radix_sort_u64, sort_by_time};

    proptest! {
        #[test]
        fn radix_sorts_agree_with_std(v in proptest::collection::vec(0.0f64..1e9, 0..3000), days in any::<bool>()) {
            let v: Vec<f64> = if days { v.iter().map(|x| (x / 1e6).ceil()).collect() } else { v };
            let mut keys: Vec<u64> = v.iter().map(|&x| f64_key(x)).collect();
            let mut want = v.clone();
            want.sort_by(f64::total_cmp);
            radix_sort_u64(&mut keys);
            let want_keys: Vec<u64> = want.iter().map(|&x| f64_key(x)).collect();
            prop_assert_eq!(&keys, &want_keys);
            let mut pairs: Vec<(u64, u32)> = v.iter().enumerate().map(|(i, &x)| (f64_key(x), i as u32)).collect();
            sort_by_time(&mut pairs);
            prop_assert!(pairs.windows(2).all(|w| w[0].0 <= w[1].0));
            prop_assert_eq!(pairs.len(), v.len());
        }
    }
}

#[test]
fn cox_reference_level_flips_the_treatment_term() {
    let ds = load("adtte.csv");
    let mut s = spec("AVAL");
    let a = cox_analysis(&ds, &s, Ties::Efron, 0.05).unwrap();
    s.reference = vec![("TRT01A".into(), "Placebo".into())];
    let b = cox_analysis(&ds, &s, Ties::Efron, 0.05).unwrap();
    assert_eq!(a.coefficients[0].term, "TRT01A=Placebo");
    assert_eq!(b.coefficients[0].term, "TRT01A=Drug A");
    close(
        "flip",
        b.coefficients[0].estimate,
        -a.coefficients[0].estimate,
        1e-9,
    );
    close("loglik", b.loglik, a.loglik, 1e-12);
    s.reference = vec![("TRT01A".into(), "Nope".into())];
    assert!(
        cox_analysis(&ds, &s, Ties::Efron, 0.05)
            .unwrap_err()
            .to_string()
            .contains("Nope")
    );
}

/// The two-thread split of one stratum (used above 100k rows) gives the single-thread answer.
#[test]
fn cox_parallel_split_matches_serial() {
    let n = 120_000;
    let mut state = 12345u64;
    let mut u = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut time = Vec::with_capacity(n);
    let mut event = Vec::with_capacity(n);
    let mut x1 = Vec::with_capacity(n);
    let mut x2 = Vec::with_capacity(n);
    for _ in 0..n {
        let a = (u() < 0.5) as u8 as f64;
        let b = u() - 0.5;
        let t = -u().ln() / (0.5 * (0.4 * a - 0.8 * b).exp());
        let c = 3.0 * u();
        time.push((t.min(c) * 100.0).ceil());
        event.push(t <= c);
        x1.push(a);
        x2.push(b);
    }
    let d = SurvData::new(time, event).unwrap();
    let names = vec!["x1".to_string(), "x2".to_string()];
    let xs = vec![x1, x2];
    let fit_with = |threads: usize, ties: Ties| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| cox(&d, &xs, &names, None, ties, 0.05).unwrap())
    };
    for ties in [Ties::Efron, Ties::Breslow] {
        let a = fit_with(1, ties);
        let b = fit_with(2, ties);
        for (p, q) in a.coefficients.iter().zip(&b.coefficients) {
            close("estimate", q.estimate, p.estimate, 1e-10);
            close("se", q.se, p.se, 1e-10);
        }
        close("loglik", b.loglik, a.loglik, 1e-12);
        close("score", b.score_test.chisq, a.score_test.chisq, 1e-10);
    }
}

/// Large samples take the hash-counting path for tied times and the radix path for
/// continuous ones; both must give the same curve as a direct computation.
#[test]
fn km_large_tied_and_continuous_paths() {
    let n = 20_000;
    let mut state = 99u64;
    let mut u = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    // 0: integer days (counting arrays), 1: continuous (radix sort), 2: few non-integer
    // values (hash counting)
    for mode in 0..3 {
        let tied = mode != 1;
        let mut time = Vec::new();
        let mut event = Vec::new();
        for _ in 0..n {
            let t = -u().ln() * 100.0;
            time.push(match mode {
                0 => t.ceil(),
                1 => t,
                _ => (t / 10.0).ceil() / 4.0 + 0.125,
            });
            event.push(u() < 0.7);
        }
        let d = SurvData::new(time.clone(), event.clone()).unwrap();
        let km = kaplan_meier("g", &d, ConfType::LogLog, 0.05, &[]).unwrap();
        // direct product-limit estimate
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&a, &b| time[a].total_cmp(&time[b]));
        let mut s = 1.0;
        let mut at_risk = n as f64;
        let mut i = 0;
        let mut k = 0;
        while i < n {
            let t = time[idx[i]];
            let (mut dd, mut cc) = (0.0, 0.0);
            while i < n && time[idx[i]] == t {
                if event[idx[i]] {
                    dd += 1.0
                } else {
                    cc += 1.0
                }
                i += 1;
            }
            s *= 1.0 - dd / at_risk;
            let p = &km.curve[k];
            assert_eq!(p.time, t);
            assert_eq!(p.n_risk as f64, at_risk);
            close("S", p.survival, s, 1e-12);
            at_risk -= dd + cc;
            k += 1;
        }
        assert_eq!(k, km.curve.len());
        if tied {
            assert!(
                km.curve.len() < n / 16,
                "tied sample should use the counting path"
            );
        }
    }
}

#[test]
fn survival_at_times_counts_subjects_still_at_risk() {
    let d = SurvData::new(
        vec![1.0, 2.0, 2.0, 3.0, 5.0],
        vec![true, true, false, true, false],
    )
    .unwrap();
    let km = kaplan_meier("g", &d, ConfType::LogLog, 0.05, &[0.5, 2.0, 2.5, 6.0]).unwrap();
    let a = &km.at_times;
    assert_eq!((a[0].n_risk, a[0].survival), (5, 1.0));
    // at t = 2: four subjects have time >= 2; S(2) = 4/5 * 3/4
    assert_eq!(a[1].n_risk, 4);
    close("S(2)", a[1].survival, 0.6, 1e-15);
    assert_eq!(a[2].n_risk, 2);
    close("S(2.5)", a[2].survival, 0.6, 1e-15);
    assert_eq!(a[3].n_risk, 0);
    close("S(6)", a[3].survival, 0.6 * 0.5, 1e-15);
}

#[test]
fn event_column_values_are_checked_and_missing_rows_dropped() {
    use trellis_stats::data::{Column, Dataset};
    let spec = |event: &str| SurvSpec {
        time: "T".into(),
        event: EventSpec::Event(event.into()),
        by: None,
        strata: None,
        covariates: vec![],
        reference: vec![],
        factors: vec![],
    };
    let ds = Dataset {
        columns: vec![
            Column::numeric("T", vec![5.0, 3.0, 8.0, 2.0, f64::NAN]),
            Column::numeric("E", vec![1.0, 0.0, f64::NAN, 1.0, 1.0]),
            Column::numeric("BAD", vec![1.0, 0.0, 0.0, 2.0, 1.0]),
        ],
        ..Default::default()
    };
    let rows = prepare(&ds, &spec("E")).unwrap();
    assert_eq!(rows.dropped, 2, "a missing event and a missing time");
    assert_eq!(rows.data.time, vec![5.0, 3.0, 2.0]);
    assert_eq!(rows.data.event, vec![true, false, true]);
    let Err(e) = prepare(&ds, &spec("BAD")) else {
        panic!("an event value of 2 must be refused");
    };
    let e = e.to_string();
    assert!(e.contains("row 4") && e.contains("value 2"), "{e}");
}
