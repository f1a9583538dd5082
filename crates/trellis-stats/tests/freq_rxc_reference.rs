//! Fisher's exact test for r×c tables and the generalised CMH statistics against
//! `reference/freq_rxc_reference.py` (brute-force enumeration; Landis–Heyman–Koch matrix
//! formulas), plus properties that need no reference.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use proptest::prelude::*;
use trellis_stats::exact::*;
use trellis_stats::freq::*;

fn rxc_reference() -> serde_json::Value {
    let s = std::fs::read_to_string(fixture("freq_rxc_reference.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn mat(v: &serde_json::Value) -> Vec<Vec<u64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        })
        .collect()
}

fn strata(v: &serde_json::Value) -> Vec<Vec<Vec<u64>>> {
    v.as_array().unwrap().iter().map(mat).collect()
}

fn check_cmh(what: &str, got: &CmhGeneral, want: &serde_json::Value) {
    for (name, g) in [
        ("correlation", &got.correlation),
        ("row_mean_scores", &got.row_mean_scores),
        ("general_association", &got.general_association),
    ] {
        let w = &want[name];
        close(
            &format!("{what} {name}"),
            g.statistic,
            f(&w["statistic"]),
            1e-9,
        );
        close(&format!("{what} {name} p"), g.p, f(&w["p"]), 1e-9);
        assert_eq!(g.df as u64, w["df"].as_u64().unwrap(), "{what} {name} df");
    }
    assert_eq!(got.strata as u64, want["strata"].as_u64().unwrap());
}

#[test]
fn fisher_rxc_matches_brute_force_enumeration() {
    let r = rxc_reference();
    let tables = r["fisher_rxc"]["tables"].as_array().unwrap();
    assert!(tables.len() >= 10);
    for e in tables {
        let t = mat(&e["table"]);
        let got = fisher_exact_rxc(&t).unwrap();
        let what = format!("{t:?}");
        close(&what, got.p_two_sided, f(&e["p_two_sided"]).min(1.0), 1e-9);
        close(
            &format!("{what} P(table)"),
            got.table_probability,
            f(&e["table_probability"]),
            1e-9,
        );
        assert_eq!(got.method, FisherMethod::Exact);
    }
}

#[test]
fn fisher_rxc_matches_published_r_value() {
    // R's ?fisher.test: Job satisfaction by income, fisher.test(Job) prints p-value = 0.7827.
    let job = vec![
        vec![1, 3, 10, 6],
        vec![2, 3, 10, 7],
        vec![1, 6, 14, 12],
        vec![0, 1, 9, 11],
    ];
    let p = fisher_exact_rxc(&job).unwrap().p_two_sided;
    assert_eq!(format!("{p:.4}"), "0.7827", "{p}");
}

#[test]
fn cmh_general_matches_matrix_reference() {
    let r = rxc_reference();
    let cases = r["cmh_general"]["cases"].as_array().unwrap();
    assert!(
        cases.len() >= 4,
        "the 2×2×K case needs reference.json when generating"
    );
    for (k, e) in cases.iter().enumerate() {
        let got = cmh_general(
            &strata(&e["tables"]),
            &fv(&e["row_scores"]),
            &fv(&e["col_scores"]),
        )
        .unwrap();
        check_cmh(&format!("case {k}"), &got, e);
    }
}

#[test]
fn cmh_general_on_2x2xk_equals_uncorrected_cmh() {
    let r = reference();
    let tabs = strata(&r["cmh"]["tables"]);
    let g = cmh_general(&tabs, &[1.0, 2.0], &[1.0, 2.0]).unwrap();
    let t2: Vec<[[u64; 2]; 2]> = tabs
        .iter()
        .map(|t| [[t[0][0], t[0][1]], [t[1][0], t[1][1]]])
        .collect();
    let c = cmh(&t2, 0.05).unwrap();
    for s in [&g.correlation, &g.row_mean_scores, &g.general_association] {
        close("vs cmh", s.statistic, c.chisq, 1e-12);
        close("vs statsmodels", s.statistic, f(&r["cmh"]["chisq"]), 1e-10);
        assert_eq!(s.df, 1);
    }
}

#[test]
fn freq_on_dataset_matches_reference() {
    let r = rxc_reference();
    let w = &r["adcat"];
    let ds = load("adcat.csv");
    let res = freq(&ds, "DOSE", "GRADE", Some("SITE"), 0.05).unwrap();
    assert_eq!(res.row_levels, ["0", "10", "40"]);
    assert_eq!(res.col_levels, ["1", "2", "3", "4"]);
    assert_eq!(res.table, mat(&w["table"]));
    assert!(res.fisher.is_none() && res.cmh.is_none());
    let fz = res.fisher_rxc.as_ref().unwrap();
    close(
        "fisher",
        fz.p_two_sided,
        f(&w["fisher"]["p_two_sided"]),
        1e-9,
    );
    close(
        "P(table)",
        fz.table_probability,
        f(&w["fisher"]["table_probability"]),
        1e-9,
    );
    let g = res.cmh_general.as_ref().unwrap();
    // numeric columns: the values are the table scores
    assert_eq!(g.row_scores, [0.0, 10.0, 40.0]);
    assert_eq!(g.col_scores, [1.0, 2.0, 3.0, 4.0]);
    check_cmh("adcat", g, &w["cmh_general"]);
    // the 2×2×K output is unchanged and now also carries the generalised statistics
    let two = freq(&load("adfreq.csv"), "TRT", "RESP", Some("CENTER"), 0.05).unwrap();
    let c = two.cmh.unwrap();
    let g = two.cmh_general.unwrap();
    close("2x2", g.general_association.statistic, c.chisq, 1e-12);
    assert!(two.fisher.is_some() && two.fisher_rxc.is_none());
}

#[test]
fn degenerate_inputs_give_errors_or_documented_results() {
    // single row or column: error naming the shape
    let e = fisher_exact_rxc(&[vec![1, 2, 3]]).unwrap_err().to_string();
    assert!(e.contains("at least 2 rows"), "{e}");
    assert!(fisher_exact_rxc(&[vec![1], vec![2]]).is_err());
    assert!(fisher_exact_rxc(&[vec![1, 2], vec![3]]).is_err());
    // empty table
    let e = fisher_exact_rxc(&[vec![0, 0], vec![0, 0]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");
    // only one non-empty row: a single table has these margins, p = 1
    let one = fisher_exact_rxc(&[vec![0, 0, 0], vec![3, 1, 2]]).unwrap();
    assert_eq!((one.p_two_sided, one.table_probability), (1.0, 1.0));
    // a zero row or column changes nothing
    let a =
        fisher_exact_rxc(&[vec![3, 1, 0], vec![1, 4, 0], vec![0, 0, 0], vec![2, 2, 0]]).unwrap();
    let b = fisher_exact_rxc(&[vec![3, 1], vec![1, 4], vec![2, 2]]).unwrap();
    close("zero margins", a.p_two_sided, b.p_two_sided, 1e-13);
    // CMH: no usable stratum; singular covariance; wrong shapes; bad scores
    let e = cmh_general(&[vec![vec![1, 0], vec![0, 0]]], &[1.0, 2.0], &[1.0, 2.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than one observation"), "{e}");
    let e = cmh_general(
        &[vec![vec![3, 2, 0], vec![1, 4, 0]]],
        &[1.0, 2.0],
        &[1.0, 2.0, 3.0],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("singular") && e.contains("general association"),
        "{e}"
    );
    assert!(
        cmh_general(
            &[vec![vec![1, 2], vec![3, 4]]],
            &[1.0, 2.0],
            &[1.0, 2.0, 3.0]
        )
        .is_err()
    );
    assert!(
        cmh_general(
            &[vec![vec![1, 2], vec![3, 4]]],
            &[1.0, f64::NAN],
            &[1.0, 2.0]
        )
        .is_err()
    );
    // large scores with a small spread are not mistaken for constant ones
    let t = vec![
        vec![vec![5, 2, 1], vec![1, 3, 6]],
        vec![vec![4, 4, 1], vec![2, 2, 5]],
    ];
    let a = cmh_general(&t, &[1.0, 2.0], &[0.0, 1.0, 2.0]).unwrap();
    let b = cmh_general(&t, &[1e7, 1e7 + 1.0], &[1e7, 1e7 + 1.0, 1e7 + 2.0]).unwrap();
    close(
        "shifted",
        b.correlation.statistic,
        a.correlation.statistic,
        1e-6,
    );
    close(
        "shifted",
        b.row_mean_scores.statistic,
        a.row_mean_scores.statistic,
        1e-6,
    );
    // equal row scores: the correlation statistic has no variance
    let e = cmh_general(&[vec![vec![3, 2], vec![1, 4]]], &[1.0, 1.0], &[1.0, 2.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("correlation"), "{e}");
}

#[test]
fn too_large_tables_are_refused_quickly_with_the_alternatives() {
    // 8×8, n = 1286: the planned work of the first stage already exceeds the budget
    let big: Vec<Vec<u64>> = (0..8)
        .map(|i| (0..8).map(|j| 15 + ((i * 7 + j * 3) % 11) as u64).collect())
        .collect();
    let t0 = std::time::Instant::now();
    let e = fisher_exact_rxc(&big).unwrap_err().to_string();
    assert!(
        e.contains("too large") && e.contains("steps needed") && e.contains("--fisher mc"),
        "{e}"
    );
    assert!(t0.elapsed().as_secs() < 5);
    // 5×6, n = 1050: refused when the intermediate entries outgrow the memory budget
    let big: Vec<Vec<u64>> = (0..5)
        .map(|i| (0..6).map(|j| 30 + ((i * 7 + j * 3) % 11) as u64).collect())
        .collect();
    let e = fisher_exact_rxc(&big).unwrap_err().to_string();
    assert!(e.contains("intermediate entries"), "{e}");
    // a tiny budget refuses even small tables: the budget is what stops the work
    let e = fisher_exact_rxc_with(&[vec![3, 1, 4], vec![1, 5, 9], vec![2, 6, 5]], 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("budget 10"), "{e}");
    // totals beyond what the tables of log factorials are kept for: refused before any work
    let huge = vec![vec![600_000, 600_000], vec![1, 1], vec![2, 0]];
    let e = fisher_exact_rxc(&huge).unwrap_err().to_string();
    assert!(e.contains("n above 1,000,000"), "{e}");
    let huge = vec![vec![6_000_000, 6_000_000], vec![1, 1]];
    let e = fisher_monte_carlo(&huge, 10, 1).unwrap_err().to_string();
    assert!(e.contains("above the limit"), "{e}");
}

#[test]
fn monte_carlo_is_seeded_and_close_to_exact() {
    let t = vec![vec![8, 2, 1], vec![1, 7, 3], vec![0, 2, 9], vec![3, 3, 3]];
    let exact = fisher_exact_rxc(&t).unwrap().p_two_sided;
    let t2 = vec![vec![2, 7, 1, 8], vec![2, 8, 1, 8], vec![2, 8, 4, 5]];
    let exact2 = fisher_exact_rxc(&t2).unwrap().p_two_sided;
    let a = fisher_monte_carlo(&t2, 4000, 7).unwrap();
    let b = fisher_monte_carlo(&t2, 4000, 7).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.method, FisherMethod::MonteCarlo);
    assert_eq!((a.samples, a.seed), (Some(4000), Some(7)));
    let hw = a.mc_half_width_99.unwrap();
    assert!(
        (a.p_two_sided - exact2).abs() < 1.5 * hw + 1e-3,
        "{a:?} vs {exact2}"
    );
    let c = fisher_monte_carlo(&t2, 4000, 8).unwrap();
    assert_ne!(a.p_two_sided, c.p_two_sided);
    // a small exact p: (1 + hits)/(B + 1) stays positive and near it
    let m = fisher_monte_carlo(&t, 2000, 1).unwrap();
    assert!(m.p_two_sided > 0.0 && m.p_two_sided < 0.01 && exact < 0.001);
    assert!(fisher_monte_carlo(&t, 0, 1).is_err());
}

fn transpose(t: &[Vec<u64>]) -> Vec<Vec<u64>> {
    (0..t[0].len())
        .map(|j| t.iter().map(|r| r[j]).collect())
        .collect()
}

fn table_strategy() -> impl Strategy<Value = Vec<Vec<u64>>> {
    (2usize..=4, 2usize..=4)
        .prop_flat_map(|(r, c)| prop::collection::vec(prop::collection::vec(0u64..=6, c), r))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn fisher_rxc_is_a_probability_and_invariant(t in table_strategy(), rot in 0usize..4, rotc in 0usize..4) {
        let n: u64 = t.iter().flatten().sum();
        prop_assume!(n > 0);
        let p = fisher_exact_rxc(&t).unwrap();
        prop_assert!(p.p_two_sided > 0.0 && p.p_two_sided <= 1.0, "{:?}", p);
        prop_assert!(p.table_probability > 0.0 && p.table_probability <= p.p_two_sided * (1.0 + 1e-9));
        let q = fisher_exact_rxc(&transpose(&t)).unwrap();
        prop_assert!((p.p_two_sided - q.p_two_sided).abs() <= 1e-9 * p.p_two_sided, "transpose {} vs {}", p.p_two_sided, q.p_two_sided);
        let mut u = t.clone();
        let k = rot % u.len();
        u.rotate_left(k);
        for row in u.iter_mut() {
            let kc = rotc % row.len();
            row.rotate_right(kc);
        }
        let last = u.len() - 1;
        u.swap(0, last);
        let s = fisher_exact_rxc(&u).unwrap();
        prop_assert!((p.p_two_sided - s.p_two_sided).abs() <= 1e-9 * p.p_two_sided, "permuted {} vs {}", p.p_two_sided, s.p_two_sided);
    }

    #[test]
    fn fisher_rxc_on_2x2_equals_the_2x2_routine(a in 0u64..40, b in 0u64..40, c in 0u64..40, d in 0u64..40) {
        prop_assume!(a + b + c + d > 0);
        let two = fisher_exact([[a, b], [c, d]]).p_two_sided;
        let rxc = fisher_exact_rxc(&[vec![a, b], vec![c, d]]).unwrap().p_two_sided;
        prop_assert!((two - rxc).abs() <= 1e-9 * two, "{} vs {}", two, rxc);
    }

    #[test]
    fn cmh_general_invariances(
        tabs in prop::collection::vec(prop::collection::vec(prop::collection::vec(1u64..8, 3), 3), 1..4),
        scale in 0.5f64..4.0,
        shift in -5.0f64..5.0,
    ) {
        let rs = [1.0, 2.0, 4.0];
        let cs = [0.0, 1.0, 3.0];
        let g = cmh_general(&tabs, &rs, &cs).unwrap();
        for s in [&g.correlation, &g.row_mean_scores, &g.general_association] {
            prop_assert!(s.statistic >= -1e-12 && s.p >= 0.0 && s.p <= 1.0);
        }
        prop_assert!(g.correlation.statistic <= g.row_mean_scores.statistic * (1.0 + 1e-9) + 1e-12);
        prop_assert!(g.row_mean_scores.statistic <= g.general_association.statistic * (1.0 + 1e-9) + 1e-12);
        // affine changes of the scores leave every statistic unchanged
        let rs2: Vec<f64> = rs.iter().map(|x| scale * x + shift).collect();
        let cs2: Vec<f64> = cs.iter().map(|x| -scale * x + shift).collect();
        let h = cmh_general(&tabs, &rs2, &cs2).unwrap();
        for (a, b) in [(&g.correlation, &h.correlation), (&g.row_mean_scores, &h.row_mean_scores), (&g.general_association, &h.general_association)] {
            prop_assert!((a.statistic - b.statistic).abs() <= 1e-8 * a.statistic.max(1e-6));
        }
        // permuting rows (with their scores) changes nothing
        let perm: Vec<Vec<Vec<u64>>> = tabs.iter().map(|t| vec![t[2].clone(), t[0].clone(), t[1].clone()]).collect();
        let k = cmh_general(&perm, &[rs[2], rs[0], rs[1]], &cs).unwrap();
        prop_assert!((g.correlation.statistic - k.correlation.statistic).abs() <= 1e-8 * g.correlation.statistic.max(1e-6));
        prop_assert!((g.general_association.statistic - k.general_association.statistic).abs() <= 1e-8 * g.general_association.statistic.max(1e-6));
        prop_assert!((g.row_mean_scores.statistic - k.row_mean_scores.statistic).abs() <= 1e-8 * g.row_mean_scores.statistic.max(1e-6));
    }
}
