//! Property tests: order invariance, id renaming, counts bounded by margins.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use trellis_signal::count::{Convention, count_pairs};
use trellis_signal::pairs_csv::{CsvOptions, read_pairs_csv};

/// Reports as (drug set, event set, stratum).
fn reports() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>, u8)>> {
    prop::collection::vec(
        (
            prop::collection::vec(0u8..8, 1..4),
            prop::collection::vec(0u8..10, 1..4),
            0u8..3,
        ),
        1..60,
    )
}

fn csv_text(reports: &[(Vec<u8>, Vec<u8>, u8)], ids: &[String], order: &[usize]) -> String {
    let mut rows = Vec::new();
    for (i, (drugs, events, s)) in reports.iter().enumerate() {
        for d in drugs {
            for e in events {
                rows.push(format!("{},D{d},E{e},S{s}", ids[i]));
            }
        }
    }
    let mut text = String::from("report_id,drug,event,stratum\n");
    for &k in order {
        if let Some(r) = rows.get(k) {
            text.push_str(r);
            text.push('\n');
        }
    }
    text
}

/// Pairs `(drug, event, a, E)`, drug totals, event totals and N.
type Counted = (Vec<(String, String, u32, f64)>, Vec<u64>, Vec<u64>, u64);

fn results(text: &str, convention: Convention) -> Counted {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.csv");
    std::fs::write(&p, text).unwrap();
    let opts = CsvOptions {
        strata: vec!["stratum".into()],
        strict: true,
    };
    let ds = read_pairs_csv(&p, &opts).unwrap();
    let t = count_pairs(&ds, convention, &|_| {});
    let rows = (0..t.len())
        .map(|k| {
            (
                ds.drug_names[t.drug[k] as usize].clone(),
                ds.event_names[t.event[k] as usize].clone(),
                t.a[k],
                t.expected[k],
            )
        })
        .collect();
    (rows, t.drug_total, t.event_total, t.n_total)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn invariant_to_row_order_and_id_renaming(reps in reports(), seed in any::<u64>()) {
        let ids: Vec<String> = (0..reps.len()).map(|i| format!("r{i}")).collect();
        let n_rows: usize = reps.iter().map(|(d, e, _)| d.len() * e.len()).sum();
        let order: Vec<usize> = (0..n_rows).collect();
        let base = results(&csv_text(&reps, &ids, &order), Convention::ReportBased);
        // Shuffle rows and rename ids with a seed-dependent bijection.
        let mut shuffled = order.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let renamed: Vec<String> = (0..reps.len()).map(|i| format!("id-{}-{}", seed % 97, reps.len() - i)).collect();
        let other = results(&csv_text(&reps, &renamed, &shuffled), Convention::ReportBased);
        prop_assert_eq!(base.0.len(), other.0.len());
        for (a, b) in base.0.iter().zip(&other.0) {
            prop_assert_eq!(&a.0, &b.0);
            prop_assert_eq!(&a.1, &b.1);
            prop_assert_eq!(a.2, b.2);
            prop_assert!((a.3 - b.3).abs() <= 1e-12 * a.3.abs());
        }
        prop_assert_eq!(base.1, other.1);
        prop_assert_eq!(base.2, other.2);
        prop_assert_eq!(base.3, other.3);
    }

    #[test]
    fn pair_counts_never_exceed_margins(reps in reports(), cell_sum in any::<bool>()) {
        let ids: Vec<String> = (0..reps.len()).map(|i| format!("r{i}")).collect();
        let n_rows: usize = reps.iter().map(|(d, e, _)| d.len() * e.len()).sum();
        let order: Vec<usize> = (0..n_rows).collect();
        let conv = if cell_sum { Convention::CellSum } else { Convention::ReportBased };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        std::fs::write(&p, csv_text(&reps, &ids, &order)).unwrap();
        let ds = read_pairs_csv(&p, &CsvOptions::default()).unwrap();
        let t = count_pairs(&ds, conv, &|_| {});
        let distinct_reports = {
            let mut v: Vec<&String> = ids.iter().collect();
            v.sort(); v.dedup(); v.len() as u64
        };
        if !cell_sum {
            prop_assert_eq!(t.n_total, distinct_reports);
        }
        for k in 0..t.len() {
            let a = u64::from(t.a[k]);
            let n1 = t.drug_total[t.drug[k] as usize];
            let m1 = t.event_total[t.event[k] as usize];
            prop_assert!(a >= 1);
            prop_assert!(a <= n1 && a <= m1);
            prop_assert!(n1 + m1 - a <= t.n_total);
            // Unstratified E = n1 * m1 / N.
            let e = n1 as f64 * m1 as f64 / t.n_total as f64;
            prop_assert!((t.expected[k] - e).abs() <= 1e-9 * e);
        }
    }
}
