//! Counting pass: the 2×2 table of every drug–event pair with at least one
//! report, and the (optionally stratified) expected count.
//!
//! Two conventions (see the crate README):
//! * **report-based** (default; FDA, openEBGM): `a` = reports mentioning both,
//!   `n1.` = reports mentioning the drug, `n.1` = reports mentioning the
//!   event, `N` = reports with at least one drug and one event.
//! * **cell-sum** (PhViD, vigipy): `n1.`, `n.1` and `N` are row, column and
//!   grand sums of the pair counts.
//!
//! `E = (n1./N)·n.1`, or with strata `E = Σ_s (n1.,s/N_s)·n.1,s`.

use rayon::prelude::*;

use crate::data::{Dataset, Layout};

/// Counting convention for the margins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Convention {
    #[default]
    ReportBased,
    CellSum,
}

/// Per-pair counts and expected counts, ordered by (drug id, event id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairTable {
    pub drug: Vec<u32>,
    pub event: Vec<u32>,
    pub a: Vec<u32>,
    /// `n1.` per drug id.
    pub drug_total: Vec<u64>,
    /// `n.1` per event id.
    pub event_total: Vec<u64>,
    /// `N`.
    pub n_total: u64,
    /// Expected count per pair (stratified if strata were given).
    pub expected: Vec<f64>,
    pub n_strata: usize,
}

impl PairTable {
    pub fn len(&self) -> usize {
        self.a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// `(a, b, c, d)` of pair `k`.
    pub fn cells(&self, k: usize) -> (u64, u64, u64, u64) {
        let a = u64::from(self.a[k]);
        let n1 = self.drug_total[self.drug[k] as usize];
        let m1 = self.event_total[self.event[k] as usize];
        let b = n1 - a;
        let c = m1 - a;
        let d = self.n_total - a - b - c;
        (a, b, c, d)
    }
}

/// Stratum margins: `drug[i*S+s]`, `event[j*S+s]`, `total[s]`.
struct Margins {
    s: usize,
    drug: Vec<u64>,
    event: Vec<u64>,
    total: Vec<u64>,
}

impl Margins {
    fn new(n_drugs: usize, n_events: usize, s: usize) -> Self {
        Margins {
            s,
            drug: vec![0; n_drugs * s],
            event: vec![0; n_events * s],
            total: vec![0; s],
        }
    }
}

/// Counts all pairs of `ds` under `convention`, with a progress callback
/// receiving the number of drugs done.
pub fn count_pairs(
    ds: &Dataset,
    convention: Convention,
    progress: &(dyn Fn(u64) + Sync),
) -> PairTable {
    let n_drugs = ds.drug_names.len();
    let n_events = ds.event_names.len();
    let s = ds.n_strata();
    let stratum = |r: usize| -> usize {
        if s == 1 {
            0
        } else {
            ds.report_stratum[r] as usize
        }
    };
    let mut margins = Margins::new(n_drugs, n_events, s);
    let (drug, event, a) = match &ds.layout {
        Layout::CrossProduct { drugs, events } => {
            let valid = |r: usize| !drugs.row(r).is_empty() && !events.row(r).is_empty();
            // Margins.
            for r in 0..ds.n_reports {
                if !valid(r) {
                    continue;
                }
                let st = stratum(r);
                let (nd, ne) = (drugs.row(r).len() as u64, events.row(r).len() as u64);
                let (wd, we, wn) = match convention {
                    Convention::ReportBased => (1, 1, 1),
                    Convention::CellSum => (ne, nd, nd * ne),
                };
                for &d in drugs.row(r) {
                    margins.drug[d as usize * s + st] += wd;
                }
                for &e in events.row(r) {
                    margins.event[e as usize * s + st] += we;
                }
                margins.total[st] += wn;
            }
            // Transpose: drug -> reports.
            let mut off = vec![0usize; n_drugs + 1];
            for r in 0..ds.n_reports {
                if valid(r) {
                    for &d in drugs.row(r) {
                        off[d as usize + 1] += 1;
                    }
                }
            }
            for i in 0..n_drugs {
                off[i + 1] += off[i];
            }
            let mut fill = off.clone();
            let mut by_drug = vec![0u32; off[n_drugs]];
            for r in 0..ds.n_reports {
                if valid(r) {
                    for &d in drugs.row(r) {
                        by_drug[fill[d as usize]] = r as u32;
                        fill[d as usize] += 1;
                    }
                }
            }
            drop(fill);
            let per_drug: Vec<Vec<(u32, u32)>> = (0..n_drugs)
                .into_par_iter()
                .map_init(
                    || (vec![0u32; n_events], Vec::<u32>::new()),
                    |(counter, touched), d| {
                        // Reports in groups: the group's event rows are looked up
                        // first (independent loads, whose cache misses overlap),
                        // then counted.
                        for group in by_drug[off[d]..off[d + 1]].chunks(16) {
                            let mut rows: [&[u32]; 16] = [&[]; 16];
                            for (row, &r) in rows.iter_mut().zip(group) {
                                *row = events.row(r as usize);
                            }
                            // Touch each row's first item, again as independent loads.
                            let mut first = 0u32;
                            for row in &rows[..group.len()] {
                                first ^= row.first().copied().unwrap_or(0);
                            }
                            std::hint::black_box(first);
                            for row in &rows[..group.len()] {
                                for &e in *row {
                                    let c = &mut counter[e as usize];
                                    if *c == 0 {
                                        touched.push(e);
                                    }
                                    *c += 1;
                                }
                            }
                        }
                        touched.sort_unstable();
                        let out = touched
                            .iter()
                            .map(|&e| {
                                let c = std::mem::take(&mut counter[e as usize]);
                                (e, c)
                            })
                            .collect();
                        touched.clear();
                        progress(1);
                        out
                    },
                )
                .collect();
            let total: usize = per_drug.iter().map(Vec::len).sum();
            let (mut drug, mut event, mut a) = (
                Vec::with_capacity(total),
                Vec::with_capacity(total),
                Vec::with_capacity(total),
            );
            for (d, list) in per_drug.into_iter().enumerate() {
                for (e, c) in list {
                    drug.push(d as u32);
                    event.push(e);
                    a.push(c);
                }
            }
            (drug, event, a)
        }
        Layout::Triples(triples) => {
            // Margins: triples are sorted by (report, drug, event).
            let mut i = 0usize;
            let mut evs: Vec<u32> = Vec::new();
            while i < triples.len() {
                let r = triples[i].0;
                let mut j = i;
                while j < triples.len() && triples[j].0 == r {
                    j += 1;
                }
                let st = stratum(r as usize);
                let rows = &triples[i..j];
                match convention {
                    Convention::ReportBased => {
                        let mut last = u32::MAX;
                        for t in rows {
                            if t.1 != last {
                                margins.drug[t.1 as usize * s + st] += 1;
                                last = t.1;
                            }
                        }
                        evs.clear();
                        evs.extend(rows.iter().map(|t| t.2));
                        evs.sort_unstable();
                        evs.dedup();
                        for &e in &evs {
                            margins.event[e as usize * s + st] += 1;
                        }
                        margins.total[st] += 1;
                    }
                    Convention::CellSum => {
                        for t in rows {
                            margins.drug[t.1 as usize * s + st] += 1;
                            margins.event[t.2 as usize * s + st] += 1;
                        }
                        margins.total[st] += rows.len() as u64;
                    }
                }
                i = j;
            }
            let mut keys: Vec<u64> = triples
                .iter()
                .map(|t| (u64::from(t.1) << 32) | u64::from(t.2))
                .collect();
            keys.par_sort_unstable();
            let (mut drug, mut event, mut a) = (Vec::new(), Vec::new(), Vec::new());
            let mut k = 0usize;
            while k < keys.len() {
                let mut m = k;
                while m < keys.len() && keys[m] == keys[k] {
                    m += 1;
                }
                drug.push((keys[k] >> 32) as u32);
                event.push(keys[k] as u32);
                a.push((m - k) as u32);
                k = m;
            }
            progress(n_drugs as u64);
            (drug, event, a)
        }
    };

    let drug_total: Vec<u64> = (0..n_drugs)
        .map(|i| margins.drug[i * s..(i + 1) * s].iter().sum())
        .collect();
    let event_total: Vec<u64> = (0..n_events)
        .map(|j| margins.event[j * s..(j + 1) * s].iter().sum())
        .collect();
    let n_total: u64 = margins.total.iter().sum();
    let expected = expected_counts(&drug, &event, &margins, &drug_total, &event_total, n_total);
    PairTable {
        drug,
        event,
        a,
        drug_total,
        event_total,
        n_total,
        expected,
        n_strata: margins.s,
    }
}

fn expected_counts(
    drug: &[u32],
    event: &[u32],
    m: &Margins,
    drug_total: &[u64],
    event_total: &[u64],
    n_total: u64,
) -> Vec<f64> {
    let s = m.s;
    if s == 1 {
        let n = n_total as f64;
        return drug
            .par_iter()
            .zip(event.par_iter())
            .map(|(&d, &e)| (drug_total[d as usize] as f64 / n) * event_total[e as usize] as f64)
            .collect();
    }
    // Per drug: the non-empty strata with weight n1.,s / N_s.
    let n_drugs = drug_total.len();
    let weights: Vec<Vec<(u32, f64)>> = (0..n_drugs)
        .into_par_iter()
        .map(|i| {
            (0..s)
                .filter(|&st| m.drug[i * s + st] > 0 && m.total[st] > 0)
                .map(|st| (st as u32, m.drug[i * s + st] as f64 / m.total[st] as f64))
                .collect()
        })
        .collect();
    drug.par_iter()
        .zip(event.par_iter())
        .map(|(&d, &e)| {
            let row = &m.event[e as usize * s..(e as usize + 1) * s];
            weights[d as usize]
                .iter()
                .map(|&(st, w)| w * row[st as usize] as f64)
                .sum()
        })
        .collect()
}
