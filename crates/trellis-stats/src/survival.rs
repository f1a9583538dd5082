//! Survival analysis: Kaplan–Meier, log-rank (optionally stratified), Cox proportional hazards.
//!
//! Conventions (see the crate README):
//! * Kaplan–Meier variance is Greenwood's. The confidence interval transform is a parameter:
//!   `log-log` (default; SAS LIFETEST and lifelines), `log` (R `survfit` default) or `plain`.
//!   Where the standard error is undefined (S = 1 before any event, S = 0 after the last
//!   subject fails) the bounds are reported as S itself (S = 1) or null (S = 0).
//! * The median is the first time with S(t) ≤ 0.5 (lifelines); its CI is [first t with
//!   lower band ≤ 0.5, first t with upper band ≤ 0.5]; null when not reached.
//! * Log-rank uses the hypergeometric variance; the stratified test sums O−E and V over strata.
//! * Cox: Efron (default) or Breslow ties, strata with shared coefficients, Newton–Raphson
//!   with step halving, convergence when the next Newton step is below 1e-10 (relative; that
//!   step is applied without another evaluation).

use crate::data::{Codes, NA_CODE, TermKind};
use crate::dist::{chi2_sf, norm_p2, norm_ppf};
use crate::error::{Result, StatsError, degenerate};
use crate::linalg;
use serde::Serialize;

/// Pointwise confidence-interval transform for the survival function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfType {
    #[default]
    LogLog,
    Log,
    Plain,
}

/// Tie handling in the Cox partial likelihood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ties {
    #[default]
    Efron,
    Breslow,
}

/// Sorts `(time, payload)` pairs by time ascending with an LSD radix sort on the IEEE bits
/// (skipping byte positions where all keys agree). Times must not be NaN.
pub fn sort_by_time(keys: &mut Vec<(u64, u32)>) {
    let n = keys.len();
    if n < 256 {
        keys.sort_unstable_by_key(|k| k.0);
        return;
    }
    const BITS: u32 = 11;
    const NB: usize = 1 << BITS;
    let mut tmp = vec![(0u64, 0u32); n];
    let mut shift = 0u32;
    while shift < 64 {
        let mut counts = vec![0usize; NB];
        for k in keys.iter() {
            counts[((k.0 >> shift) as usize) & (NB - 1)] += 1;
        }
        if counts.contains(&n) {
            shift += BITS;
            continue;
        }
        let mut acc = 0;
        for c in counts.iter_mut() {
            let v = *c;
            *c = acc;
            acc += v;
        }
        for k in keys.iter() {
            let b = ((k.0 >> shift) as usize) & (NB - 1);
            tmp[counts[b]] = *k;
            counts[b] += 1;
        }
        std::mem::swap(keys, &mut tmp);
        shift += BITS;
    }
}

/// Order-preserving map of an f64 to u64.
pub fn f64_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

/// Survival times and event indicators, with missing rows already removed.
///
/// The times are borrowed from the dataset when no row was dropped: a copy of a 1M-row
/// column is 8 MB of fresh pages, as long as the whole Kaplan–Meier count on day-tied times.
#[derive(Debug, Clone)]
pub struct SurvData<'a> {
    pub time: std::borrow::Cow<'a, [f64]>,
    pub event: Vec<bool>,
}

impl<'a> SurvData<'a> {
    /// Validates times (finite, non-negative) and builds the data.
    pub fn new(
        time: impl Into<std::borrow::Cow<'a, [f64]>>,
        event: Vec<bool>,
    ) -> Result<SurvData<'a>> {
        let time = time.into();
        if time.len() != event.len() {
            return Err(StatsError::Invalid("time and event lengths differ".into()));
        }
        // Counted without a branch per row (vectorises); the row is looked for only when
        // something is wrong.
        let bad = |t: f64| !t.is_finite() | (t < 0.0);
        let any_bad = time.iter().map(|&t| usize::from(bad(t))).sum::<usize>() > 0;
        if let Some(i) = any_bad.then(|| time.iter().position(|&t| bad(t))).flatten() {
            return Err(StatsError::Invalid(format!(
                "survival time {} in row {} is not a finite non-negative number",
                time[i],
                i + 1
            )));
        }
        Ok(SurvData { time, event })
    }
}

/// One point of a Kaplan–Meier curve (a distinct observed time).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KmPoint {
    pub time: f64,
    pub n_risk: u64,
    pub n_event: u64,
    pub n_censor: u64,
    pub survival: f64,
    /// Greenwood standard error of S(t); null where undefined.
    pub se: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

/// Survival estimate at a requested time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KmAt {
    pub time: f64,
    pub n_risk: u64,
    pub survival: f64,
    pub se: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

/// Kaplan–Meier estimate for one group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KmGroup {
    pub group: String,
    pub n: u64,
    pub events: u64,
    pub median: Option<f64>,
    pub median_lo: Option<f64>,
    pub median_hi: Option<f64>,
    pub curve: Vec<KmPoint>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub at_times: Vec<KmAt>,
}

/// Kaplan–Meier fit for one sample. `alpha` is 0.05 for 95% intervals.
pub fn kaplan_meier(
    group: &str,
    data: &SurvData,
    conf: ConfType,
    alpha: f64,
    at: &[f64],
) -> Result<KmGroup> {
    let n = data.time.len();
    if n == 0 {
        return degenerate(format!("group `{group}` has no observations"));
    }
    let group_idx = vec![0usize; n];
    let cells = Cells::build(data, &group_idx, 1, None, 1);
    km_from_cells(group, &cells, 0, conf, alpha, at)
}

/// Sorted time keys of events and censorings for each (stratum, group) cell.
pub(crate) struct Cells {
    k: usize,
    ns: usize,
    /// (time key, count) runs in time order
    ev: Vec<Vec<(u64, u64)>>,
    ce: Vec<Vec<(u64, u64)>>,
}

fn run_total(runs: &[(u64, u64)]) -> u64 {
    runs.iter().map(|r| r.1).sum()
}

impl Cells {
    /// Fast path for integer-valued times (days, weeks) in a modest range: counting arrays.
    ///
    /// One pass, chunk by chunk: a chunk is checked (integer-valued, within the range
    /// limit) and then counted while it is still in cache, so the time column is read from
    /// memory once; continuous times give up on the first chunk. `t as i32 as f64 == t`
    /// instead of `t.trunc()`, which is a libm call per row without SSE4.1; this vectorises
    /// (times are finite and ≥ 0 here; beyond i32 the cast saturates and the limit refuses).
    fn build_integer(
        data: &SurvData,
        group: &[usize],
        k: usize,
        strata: Option<&[usize]>,
        ns: usize,
    ) -> Option<Cells> {
        const CHUNK: usize = 2048;
        let n = data.time.len();
        let cells = ns * k;
        // the largest time + 1 accepted: at most 2^20 days and 4 counters per row per cell
        let limit = (1usize << 20).min(4 * n.max(1024) / cells);
        // counts[2 * (t * cells + c) + event]: time-major, so growing keeps the layout;
        // events and censorings interleaved, so the flag indexes instead of branching.
        let mut counts: Vec<u64> = Vec::new();
        let mut range = 0usize;
        // counter index of each row of the chunk; filled by the vectorised check, so the
        // counting loop is a bare increment
        let mut slots = [0usize; CHUNK];
        for (start, chunk) in (0..).step_by(CHUNK).zip(data.time.chunks(CHUNK)) {
            let events = &data.event[start..start + chunk.len()];
            let slots = &mut slots[..chunk.len()];
            let mut integer = true;
            let mut max = 0i32;
            for ((slot, &t), &e) in slots.iter_mut().zip(chunk).zip(events) {
                let d = t as i32;
                integer &= f64::from(d) == t;
                max = max.max(d);
                *slot = (d as usize).wrapping_mul(2 * cells) | usize::from(e);
            }
            let max = max as usize;
            if !integer || max >= limit {
                return None;
            }
            if max >= range {
                // doubling, so that ascending times cost O(range) in all
                range = (max + 1).max(2 * range).min(limit);
                counts.resize(2 * cells * range, 0);
            }
            // with one cell (no groups, no strata) the all-zero group column is never read
            if cells > 1 {
                for (i, slot) in (start..).zip(slots.iter_mut()) {
                    *slot += 2 * (strata.map_or(0, |s| s[i]) * k + group[i]);
                }
            }
            for &slot in slots.iter() {
                counts[slot] += 1;
            }
        }
        let mut ev = vec![Vec::new(); cells];
        let mut ce = vec![Vec::new(); cells];
        for (t, row) in counts.chunks_exact(2 * cells).enumerate() {
            let key = f64_key(t as f64);
            for (c, pair) in row.chunks_exact(2).enumerate() {
                if pair[0] > 0 {
                    ce[c].push((key, pair[0]));
                }
                if pair[1] > 0 {
                    ev[c].push((key, pair[1]));
                }
            }
        }
        Some(Cells { k, ns, ev, ce })
    }
}

/// Distinct keys with their counts, in key order: counted in a hash table when there are
/// few distinct values (day-valued times), otherwise radix-sorted and run-length encoded.
fn sorted_runs(mut v: Vec<u64>) -> Vec<(u64, u64)> {
    if v.len() >= 4096 {
        let limit = v.len() / 16;
        let mut map: std::collections::HashMap<u64, u64, crate::data::FxBuild> =
            std::collections::HashMap::with_capacity_and_hasher(4096, crate::data::FxBuild);
        let mut few = true;
        for &k in &v {
            *map.entry(k).or_insert(0) += 1;
            if map.len() > limit {
                few = false;
                break;
            }
        }
        if few {
            let mut runs: Vec<(u64, u64)> = map.into_iter().collect();
            runs.sort_unstable();
            return runs;
        }
    }
    radix_sort_u64(&mut v);
    let mut runs: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for k in v {
        match runs.last_mut() {
            Some(last) if last.0 == k => last.1 += 1,
            _ => runs.push((k, 1)),
        }
    }
    runs
}

impl Cells {
    fn build(
        data: &SurvData,
        group: &[usize],
        k: usize,
        strata: Option<&[usize]>,
        ns: usize,
    ) -> Cells {
        use rayon::prelude::*;
        if let Some(c) = Cells::build_integer(data, group, k, strata, ns) {
            return c;
        }
        let mut ev = vec![Vec::new(); ns * k];
        let mut ce = vec![Vec::new(); ns * k];
        for i in 0..data.time.len() {
            let c = strata.map_or(0, |s| s[i]) * k + group[i];
            let key = f64_key(data.time[i]);
            if data.event[i] {
                ev[c].push(key);
            } else {
                ce[c].push(key);
            }
        }
        let ev: Vec<Vec<(u64, u64)>> = ev.into_par_iter().map(sorted_runs).collect();
        let ce: Vec<Vec<(u64, u64)>> = ce.into_par_iter().map(sorted_runs).collect();
        Cells { k, ns, ev, ce }
    }
}

/// LSD radix sort of u64 keys, 11-bit digits, histograms in one pass, constant digits skipped.
pub fn radix_sort_u64(v: &mut Vec<u64>) {
    let n = v.len();
    if n < 512 {
        v.sort_unstable();
        return;
    }
    const BITS: u32 = 11;
    const NB: usize = 1 << BITS;
    const PASSES: usize = 6;
    let mut hist = vec![[0usize; NB]; PASSES];
    for &x in v.iter() {
        for (p, h) in hist.iter_mut().enumerate() {
            h[((x >> (p as u32 * BITS)) as usize) & (NB - 1)] += 1;
        }
    }
    let mut tmp = vec![0u64; n];
    for (p, h) in hist.iter_mut().enumerate() {
        if h.contains(&n) {
            continue;
        }
        let mut acc = 0;
        for c in h.iter_mut() {
            let x = *c;
            *c = acc;
            acc += x;
        }
        let shift = p as u32 * BITS;
        for &x in v.iter() {
            let b = ((x >> shift) as usize) & (NB - 1);
            tmp[h[b]] = x;
            h[b] += 1;
        }
        std::mem::swap(v, &mut tmp);
    }
}

/// Walks several sorted key lists in step: calls `f(key, counts)` for each distinct key,
/// with `counts[j]` the number of occurrences in list `j`.
fn walk(lists: &[&[(u64, u64)]], mut f: impl FnMut(u64, &[u64])) {
    let m = lists.len();
    let mut pos = vec![0usize; m];
    let mut cnt = vec![0u64; m];
    loop {
        let mut min = u64::MAX;
        let mut any = false;
        for j in 0..m {
            if let Some(&(x, _)) = lists[j].get(pos[j]) {
                any = true;
                min = min.min(x);
            }
        }
        if !any {
            break;
        }
        for j in 0..m {
            cnt[j] = match lists[j].get(pos[j]) {
                Some(&(x, c)) if x == min => {
                    pos[j] += 1;
                    c
                }
                _ => 0,
            };
        }
        f(min, &cnt);
    }
}

/// Kaplan–Meier for group `g` of `cells` (pooled over strata).
fn km_from_cells(
    group: &str,
    cells: &Cells,
    g: usize,
    conf: ConfType,
    alpha: f64,
    at: &[f64],
) -> Result<KmGroup> {
    let mut lists: Vec<&[(u64, u64)]> = Vec::new();
    let mut n = 0usize;
    for s in 0..cells.ns {
        let c = s * cells.k + g;
        lists.push(&cells.ev[c]);
        n += (run_total(&cells.ev[c]) + run_total(&cells.ce[c])) as usize;
    }
    let ne = lists.len();
    for s in 0..cells.ns {
        lists.push(&cells.ce[s * cells.k + g]);
    }
    if n == 0 {
        return degenerate(format!("group `{group}` has no observations"));
    }
    let z = norm_ppf(1.0 - alpha / 2.0);
    let mut curve = Vec::new();
    let mut s = 1.0f64;
    let mut gw = 0.0f64; // Greenwood sum
    let mut at_risk = n as u64;
    let mut events_total = 0u64;
    walk(&lists, |k, cnt| {
        let d: u64 = cnt[..ne].iter().sum();
        let c: u64 = cnt[ne..].iter().sum();
        let t = data_time_from_key(k);
        if d > 0 {
            s *= 1.0 - d as f64 / at_risk as f64;
            if d < at_risk {
                gw += d as f64 / (at_risk as f64 * (at_risk - d) as f64);
            } else {
                gw = f64::INFINITY;
            }
        }
        events_total += d;
        curve.push(KmPoint {
            time: t,
            n_risk: at_risk,
            n_event: d,
            n_censor: c,
            survival: s,
            // Greenwood sum for now; replaced by the SE and bounds below
            se: Some(gw),
            lo: None,
            hi: None,
        });
        at_risk -= d + c;
    });
    {
        use rayon::prelude::*;
        curve.par_iter_mut().with_min_len(4096).for_each(|p| {
            let (se, lo, hi) = bounds(p.survival, p.se.unwrap_or(f64::INFINITY), conf, z);
            p.se = se;
            p.lo = lo;
            p.hi = hi;
        });
    }
    let first_le = |f: &dyn Fn(&KmPoint) -> Option<f64>| {
        curve
            .iter()
            .find(|p| f(p).is_some_and(|v| v <= 0.5))
            .map(|p| p.time)
    };
    let median = first_le(&|p| Some(p.survival));
    // A band that becomes undefined (S = 0) counts as having reached 0.
    let median_lo = first_le(&|p| p.lo);
    let median_hi = first_le(&|p| p.hi);
    let mut at_times = Vec::with_capacity(at.len());
    for &t in at {
        let idx = curve.partition_point(|p| p.time <= t);
        if idx == 0 {
            at_times.push(KmAt {
                time: t,
                n_risk: n as u64,
                survival: 1.0,
                se: Some(0.0),
                lo: Some(1.0),
                hi: Some(1.0),
            });
        } else {
            let p = &curve[idx - 1];
            // at risk at t: subjects whose time is ≥ t
            let j = curve.partition_point(|q| q.time < t);
            let n_risk = curve.get(j).map_or(0, |q| q.n_risk);
            at_times.push(KmAt {
                time: t,
                n_risk,
                survival: p.survival,
                se: p.se,
                lo: p.lo,
                hi: p.hi,
            });
        }
    }
    Ok(KmGroup {
        group: group.to_string(),
        n: n as u64,
        events: events_total,
        median,
        median_lo,
        median_hi,
        curve,
        at_times,
    })
}

fn data_time_from_key(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// Standard error and CI of S given the Greenwood sum.
fn bounds(s: f64, gw: f64, conf: ConfType, z: f64) -> (Option<f64>, Option<f64>, Option<f64>) {
    if s <= 0.0 || !gw.is_finite() {
        // S = 0 (everyone left has failed): the estimate is exact zero, as in lifelines.
        return (None, Some(0.0), Some(0.0));
    }
    let se = s * gw.sqrt();
    if gw == 0.0 {
        return (Some(0.0), Some(s), Some(s));
    }
    let (lo, hi) = match conf {
        ConfType::Plain => ((s - z * se).max(0.0), (s + z * se).min(1.0)),
        ConfType::Log => {
            let w = z * gw.sqrt();
            (s * (-w).exp(), (s * w.exp()).min(1.0))
        }
        ConfType::LogLog => {
            if s >= 1.0 {
                (s, s)
            } else {
                let v = s.ln();
                let th = (-v).ln();
                let sd = gw.sqrt() / v.abs();
                ((-(th + z * sd).exp()).exp(), (-(th - z * sd).exp()).exp())
            }
        }
    };
    (Some(se), Some(lo), Some(hi))
}

/// Result of a log-rank test.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogRank {
    pub chisq: f64,
    pub df: usize,
    pub p: f64,
    /// Observed and expected events per group (summed over strata).
    pub observed: Vec<f64>,
    pub expected: Vec<f64>,
    pub groups: Vec<String>,
    pub stratified: bool,
}

/// Log-rank test of `k` groups (`group[i]` in `0..k`), stratified when `strata` is given.
pub fn logrank(
    data: &SurvData,
    group: &[usize],
    group_names: &[String],
    strata: Option<&[usize]>,
) -> Result<LogRank> {
    let k = group_names.len();
    if k < 2 {
        return degenerate("log-rank test needs at least two groups");
    }
    let ns = strata.map_or(1, |s| s.iter().copied().max().map_or(1, |m| m + 1));
    let cells = Cells::build(data, group, k, strata, ns);
    let (o, e, v) = logrank_sums(&cells);
    logrank_finish(o, e, v, group_names, strata.is_some())
}

fn logrank_finish(
    o: Vec<f64>,
    e: Vec<f64>,
    v: Vec<f64>,
    group_names: &[String],
    stratified: bool,
) -> Result<LogRank> {
    let k = o.len();
    let total_events: f64 = o.iter().sum();
    if total_events == 0.0 {
        return degenerate("log-rank test: no events in any group (all observations censored)");
    }
    // chi-square on the first k-1 groups
    let m = k - 1;
    let idx: Vec<usize> = (0..m).collect();
    let vs = linalg::submatrix(&v, k, &idx);
    let diff: Vec<f64> = (0..m).map(|g| o[g] - e[g]).collect();
    let l = linalg::cholesky(&vs, m).map_err(|_| {
        StatsError::Degenerate(
            "log-rank variance matrix is singular (a group has no subjects at risk at any event time)"
                .into(),
        )
    })?;
    let sol = linalg::chol_solve(&l, m, &diff);
    let chisq: f64 = diff.iter().zip(&sol).map(|(a, b)| a * b).sum();
    Ok(LogRank {
        chisq,
        df: m,
        p: chi2_sf(chisq, m as f64),
        observed: o,
        expected: e,
        groups: group_names.to_vec(),
        stratified,
    })
}

/// Observed, expected and the covariance of O − E per group, summed over strata.
fn logrank_sums(cells: &Cells) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let k = cells.k;
    let mut o = vec![0.0; k];
    let mut e = vec![0.0; k];
    let mut v = vec![0.0; k * k];
    let mut nr = vec![0.0f64; k];
    for st in 0..cells.ns {
        let mut lists: Vec<&[(u64, u64)]> = Vec::with_capacity(2 * k);
        for (g, n_g) in nr.iter_mut().enumerate() {
            let c = st * k + g;
            *n_g = (run_total(&cells.ev[c]) + run_total(&cells.ce[c])) as f64;
            lists.push(&cells.ev[c]);
        }
        for g in 0..k {
            lists.push(&cells.ce[st * k + g]);
        }
        walk(&lists, |_, cnt| {
            let nt: f64 = nr.iter().sum();
            let dt: f64 = cnt[..k].iter().sum::<u64>() as f64;
            if dt > 0.0 {
                for g in 0..k {
                    o[g] += cnt[g] as f64;
                    e[g] += dt * nr[g] / nt;
                }
                if nt > 1.0 {
                    let f = dt * (nt - dt) / (nt - 1.0);
                    for g in 0..k {
                        for h in 0..k {
                            let delta = if g == h { 1.0 } else { 0.0 };
                            v[g * k + h] += f * nr[g] / nt * (delta - nr[h] / nt);
                        }
                    }
                }
            }
            for g in 0..k {
                nr[g] -= (cnt[g] + cnt[k + g]) as f64;
            }
        });
    }
    (o, e, v)
}

// ---------------------------------------------------------------------------------------
// Cox proportional hazards
// ---------------------------------------------------------------------------------------

/// A chi-square test statistic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChiTest {
    pub chisq: f64,
    pub df: usize,
    pub p: f64,
}

impl ChiTest {
    pub fn new(chisq: f64, df: usize) -> ChiTest {
        ChiTest {
            chisq,
            df,
            p: chi2_sf(chisq, df as f64),
        }
    }
}

/// One Cox model coefficient.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CoxCoef {
    pub term: String,
    pub estimate: f64,
    pub se: f64,
    pub hr: f64,
    pub hr_lo: f64,
    pub hr_hi: f64,
    pub z: f64,
    pub p: f64,
}

/// A fitted Cox model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CoxFit {
    pub coefficients: Vec<CoxCoef>,
    pub loglik: f64,
    pub loglik_null: f64,
    pub n: u64,
    pub events: u64,
    pub ties: Ties,
    pub strata: usize,
    pub iterations: usize,
    /// 1 − confidence level of the HR intervals.
    pub alpha: f64,
    pub lr_test: ChiTest,
    pub wald_test: ChiTest,
    pub score_test: ChiTest,
    /// Covariance matrix of the estimates, row-major.
    pub vcov: Vec<f64>,
}

/// A tie block: rows of one stratum sharing one time, `nd` of them events. In the sorted
/// layout the rows are `from..to`.
#[derive(Debug, Clone, Copy)]
struct Block {
    from: u32,
    to: u32,
    nd: u32,
    new_stratum: bool,
}

/// Where the rows of a Cox design live.
enum Layout<'a> {
    /// Few tie blocks (day-valued times): the rows stay in input order, read straight from
    /// the covariate columns, and carry the index of their block; per-block sums fit in cache.
    Input {
        cols: &'a [Vec<f64>],
        event: &'a [bool],
        block_of: Vec<u32>,
    },
    /// Many tie blocks (continuous times): centred covariates gathered row-major in
    /// processing order (stratum, time descending).
    Sorted { x: Vec<f64>, event: Vec<bool> },
}

/// Prepared design for Cox fitting.
struct CoxDesign<'a> {
    p: usize,
    /// covariate means (the model is fitted to centred covariates)
    means: Vec<f64>,
    layout: Layout<'a>,
    /// tie blocks in processing order; a new stratum starts where `new_stratum` is true.
    blocks: Vec<Block>,
    /// Σ (x − mean) over the event rows: the constant part of the score and log-likelihood.
    xsum_events: Vec<f64>,
    /// Sorted layout: ranges of block indices of roughly `CHUNK_ROWS` rows (work units).
    chunks: Vec<(usize, usize)>,
}

const CHUNK_ROWS: usize = 16_384;
/// Largest number of tie blocks kept in the input-order layout.
const MAX_INPUT_BLOCKS: usize = 1 << 16;

/// Block index of every row when all times are small non-negative integers (days), by
/// counting instead of sorting; `None` when the times are not like that or there are too
/// many distinct values.
fn integer_blocks(
    data: &SurvData,
    strata: Option<&[usize]>,
    ns: usize,
) -> Option<(Vec<u32>, Vec<Block>)> {
    let n = data.time.len();
    let mut max = 0u64;
    for &t in data.time.iter() {
        if !((0.0..4_194_304.0).contains(&t) && t == t.trunc()) {
            return None;
        }
        max = max.max(t as u64);
    }
    let m = max as usize + 1;
    if ns.checked_mul(m)? > 1 << 22 {
        return None;
    }
    // counts of rows and events per (stratum, time)
    let mut rows = vec![0u32; ns * m];
    let mut evs = vec![0u32; ns * m];
    for i in 0..n {
        let c = strata.map_or(0, |s| s[i]) * m + data.time[i] as usize;
        rows[c] += 1;
        evs[c] += data.event[i] as u32;
    }
    // blocks in processing order: stratum ascending, time descending
    let mut id = vec![u32::MAX; ns * m];
    let mut blocks = Vec::new();
    for s in 0..ns {
        let mut first = true;
        for t in (0..m).rev() {
            let c = s * m + t;
            if rows[c] > 0 {
                if blocks.len() >= MAX_INPUT_BLOCKS {
                    return None;
                }
                id[c] = blocks.len() as u32;
                blocks.push(Block {
                    from: 0,
                    to: 0,
                    nd: evs[c],
                    new_stratum: first,
                });
                first = false;
            }
        }
    }
    let block_of = (0..n)
        .map(|i| id[strata.map_or(0, |s| s[i]) * m + data.time[i] as usize])
        .collect();
    Some((block_of, blocks))
}

fn cox_design<'a>(
    data: &'a SurvData<'_>,
    x_cols: &'a [Vec<f64>],
    strata: Option<&[usize]>,
) -> CoxDesign<'a> {
    use rayon::prelude::*;
    let n = data.time.len();
    let p = x_cols.len();
    let ns = strata.map_or(1, |s| s.iter().copied().max().map_or(1, |m| m + 1));
    let means: Vec<f64> = x_cols
        .iter()
        .map(|c| c.iter().sum::<f64>() / n as f64)
        .collect();
    let mut xsum_events = vec![0.0; p];
    for (j, c) in x_cols.iter().enumerate() {
        let s: f64 = c
            .iter()
            .zip(&data.event)
            .filter(|(_, e)| **e)
            .map(|(v, _)| v)
            .sum();
        let d = data.event.iter().filter(|&&e| e).count() as f64;
        xsum_events[j] = s - d * means[j];
    }
    if let Some((block_of, blocks)) = integer_blocks(data, strata, ns) {
        return CoxDesign {
            p,
            means,
            layout: Layout::Input {
                cols: x_cols,
                event: &data.event,
                block_of,
            },
            blocks,
            xsum_events,
            chunks: Vec::new(),
        };
    }
    // bucket by stratum, then sort each bucket by time descending; the payload carries the
    // row index and the event flag (bit 31)
    let mut sizes = vec![0usize; ns];
    if let Some(s) = strata {
        s.iter().for_each(|&k| sizes[k] += 1);
    } else {
        sizes[0] = n;
    }
    let mut buckets: Vec<Vec<(u64, u32)>> = sizes.iter().map(|&k| Vec::with_capacity(k)).collect();
    for i in 0..n {
        let b = strata.map_or(0, |s| s[i]);
        let payload = i as u32 | ((data.event[i] as u32) << 31);
        buckets[b].push((!f64_key(data.time[i]), payload));
    }
    buckets.par_iter_mut().for_each(sort_by_time);
    let mut blocks = Vec::new();
    let mut row = 0usize;
    for keys in &buckets {
        let mut a = 0usize;
        while a < keys.len() {
            let mut b = a + 1;
            while b < keys.len() && keys[b].0 == keys[a].0 {
                b += 1;
            }
            let nd = keys[a..b].iter().filter(|k| k.1 >> 31 == 1).count();
            blocks.push(Block {
                from: (row + a) as u32,
                to: (row + b) as u32,
                nd: nd as u32,
                new_stratum: a == 0,
            });
            a = b;
        }
        row += keys.len();
    }
    if blocks.len() <= MAX_INPUT_BLOCKS {
        let mut block_of = vec![0u32; n];
        let keys = buckets.concat();
        for (bi, b) in blocks.iter().enumerate() {
            for k in &keys[b.from as usize..b.to as usize] {
                block_of[(k.1 & 0x7fff_ffff) as usize] = bi as u32;
            }
        }
        return CoxDesign {
            p,
            means,
            layout: Layout::Input {
                cols: x_cols,
                event: &data.event,
                block_of,
            },
            blocks,
            xsum_events,
            chunks: Vec::new(),
        };
    }
    // centred covariates, gathered row-major in sorted order straight from the columns
    let mut x = vec![0.0; n * p];
    let mut event = vec![false; n];
    let mut row = 0usize;
    for keys in &buckets {
        x[row * p..(row + keys.len()) * p]
            .par_chunks_mut(CHUNK_ROWS * p)
            .zip(event[row..row + keys.len()].par_chunks_mut(CHUNK_ROWS))
            .zip(keys.par_chunks(CHUNK_ROWS))
            .for_each(|((out, ev), ks)| {
                for (r, k) in ks.iter().enumerate() {
                    let i = (k.1 & 0x7fff_ffff) as usize;
                    ev[r] = k.1 >> 31 == 1;
                    for (j, c) in x_cols.iter().enumerate() {
                        out[r * p + j] = c[i] - means[j];
                    }
                }
            });
        row += keys.len();
    }
    let mut chunks = Vec::new();
    let mut start = 0usize;
    for (bi, b) in blocks.iter().enumerate() {
        if (b.to - blocks[start].from) as usize >= CHUNK_ROWS || bi + 1 == blocks.len() {
            chunks.push((start, bi + 1));
            start = bi + 1;
        }
    }
    CoxDesign {
        p,
        means,
        layout: Layout::Sorted { x, event },
        blocks,
        xsum_events,
        chunks,
    }
}

/// Σ ln xᵢ as the logarithm of running products (one `ln` per few dozen terms instead of one
/// per term); factors outside [1e-100, 1e100] are logged directly so products never overflow.
struct LogSum {
    acc: f64,
    prod: f64,
}

impl LogSum {
    fn new() -> LogSum {
        LogSum {
            acc: 0.0,
            prod: 1.0,
        }
    }
    #[inline]
    fn push(&mut self, v: f64) {
        if v > 1e-100 && v < 1e100 {
            self.prod *= v;
            if !(self.prod > 1e-200 && self.prod < 1e200) {
                self.acc += self.prod.ln();
                self.prod = 1.0;
            }
        } else {
            self.acc += v.ln();
        }
    }
    fn total(&self) -> f64 {
        self.acc + self.prod.ln()
    }
}

/// The sequential part of an evaluation: running risk-set sums and the per-block scalars.
struct Scan {
    p: usize,
    ties: Ties,
    s0: f64,
    s1: Vec<f64>,
    logs: LogSum,
    /// Σ_b B0·S1S1ᵀ − B1(S1D1ᵀ + D1S1ᵀ) + B2·D1D1ᵀ, packed lower triangle
    outer: Vec<f64>,
}

impl Scan {
    fn new(p: usize, ties: Ties) -> Scan {
        Scan {
            p,
            ties,
            s0: 0.0,
            s1: vec![0.0; p],
            logs: LogSum::new(),
            outer: vec![0.0; p * (p + 1) / 2],
        }
    }
    /// Whether a block with `nd` events needs its event sums D0, D1.
    fn needs_d(&self, nd: u32) -> bool {
        self.ties == Ties::Efron && nd >= 2
    }
    /// Closes a block whose rows have been added to `s0`, `s1`; returns (A0, A1).
    fn close(&mut self, nd: u32, d0: f64, d1: &[f64]) -> (f64, f64) {
        let p = self.p;
        let s0 = self.s0;
        if nd == 0 {
            return (0.0, 0.0);
        }
        if !self.needs_d(nd) {
            let w = nd as f64;
            let inv = 1.0 / s0;
            for _ in 0..nd {
                self.logs.push(s0);
            }
            let b0 = w * inv * inv;
            let mut q = 0;
            for j in 0..p {
                let v = b0 * self.s1[j];
                for k in 0..=j {
                    self.outer[q] += v * self.s1[k];
                    q += 1;
                }
            }
            return (w * inv, 0.0);
        }
        let (mut a0, mut a1, mut b0, mut b1, mut b2) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for l in 0..nd {
            let f = l as f64 / nd as f64;
            let phi = s0 - f * d0;
            self.logs.push(phi);
            let inv = 1.0 / phi;
            let inv2 = inv * inv;
            a0 += inv;
            a1 += f * inv;
            b0 += inv2;
            b1 += f * inv2;
            b2 += f * f * inv2;
        }
        let s1 = &self.s1;
        let mut q = 0;
        for j in 0..p {
            for k in 0..=j {
                self.outer[q] +=
                    b0 * s1[j] * s1[k] - b1 * (s1[j] * d1[k] + d1[j] * s1[k]) + b2 * d1[j] * d1[k];
                q += 1;
            }
        }
        (a0, a1)
    }
}

/// Adds w·x (first p entries) and w·xxᵀ (packed lower triangle) to `acc`.
#[inline]
fn add_weighted(acc: &mut [f64], xi: &[f64], w: f64) {
    let p = xi.len();
    let (g, s2) = acc.split_at_mut(p);
    let mut q = 0;
    for j in 0..p {
        let v = w * xi[j];
        g[j] += v;
        for &xk in &xi[..=j] {
            s2[q] += v * xk;
            q += 1;
        }
    }
}

/// Log partial likelihood, score and information (negative Hessian, row-major p×p).
///
/// For each tie block b with d events, Efron's terms are sums over l = 0..d−1 with
/// fₗ = l/d and φₗ = S0 − fₗ·D0 (S: the risk set including the block, D: the block's events;
/// Breslow: fₗ = 0). They reduce to scalars per block: Σ ln φₗ, A0 = Σ 1/φₗ, A1 = Σ fₗ/φₗ
/// and B0, B1, B2 = Σ fₗᵏ/φₗ². The information is
/// Σ_b [A0·S2 − A1·D2 − (B0·S1S1ᵀ − B1(S1D1ᵀ + D1S1ᵀ) + B2·D1D1ᵀ)] and the score
/// Σ x_events − Σ_b (A0·S1 − A1·D1). The S2, D2, S1, D1 parts are linear in the rows, so they
/// are rewritten as Σᵢ wᵢrᵢxᵢxᵢᵀ (and Σᵢ wᵢrᵢxᵢ) with wᵢ = H(bᵢ) − [event]·A1(bᵢ), where H(b)
/// sums A0 over the blocks from b to the end of its stratum.
///
/// So an evaluation is: (1) rᵢ = exp(xᵢβ) (and, in the input-order layout, the per-block
/// sums S0, S1, D0, D1), in parallel; (2) a sequential scan over the blocks, O(p) per row in
/// the sorted layout and O(p²) per block; (3) the weighted sums, the only O(p²) work per row,
/// in parallel.
fn cox_eval(
    des: &CoxDesign,
    beta: &[f64],
    ties: Ties,
    buf: &mut (Vec<f64>, Vec<f64>, Vec<f64>),
) -> (f64, Vec<f64>, Vec<f64>) {
    use rayon::prelude::*;
    let p = des.p;
    let np = p * (p + 1) / 2;
    let nb = des.blocks.len();
    let (r, h, a1) = buf;
    h.resize(nb, 0.0);
    a1.resize(nb, 0.0);
    let mut scan = Scan::new(p, ties);
    let parts: Vec<Vec<f64>> = match &des.layout {
        Layout::Input {
            cols,
            event,
            block_of,
        } => {
            let n = event.len();
            r.resize(n, 0.0);
            // (1) rᵢ and per-block sums [S0, D0, S1 (p), D1 (p)] over thread-sized row ranges
            let k = 2 + 2 * p;
            let parts_n = rayon::current_num_threads().min(n / 65_536).max(1);
            let per = n.div_ceil(parts_n);
            let sums: Vec<Vec<f64>> = r
                .par_chunks_mut(per)
                .enumerate()
                .map(|(t, rr)| {
                    let base = t * per;
                    let mut acc = vec![0.0; nb * k];
                    let mut xi = vec![0.0; p];
                    for (o, ri) in rr.iter_mut().enumerate() {
                        let i = base + o;
                        let mut eta = 0.0;
                        for (j, c) in cols.iter().enumerate() {
                            xi[j] = c[i] - des.means[j];
                            eta += xi[j] * beta[j];
                        }
                        let rv = eta.exp();
                        *ri = rv;
                        let a = &mut acc[block_of[i] as usize * k..][..k];
                        a[0] += rv;
                        for j in 0..p {
                            a[2 + j] += rv * xi[j];
                        }
                        if event[i] {
                            a[1] += rv;
                            for j in 0..p {
                                a[2 + p + j] += rv * xi[j];
                            }
                        }
                    }
                    acc
                })
                .collect();
            let mut tot = sums[0].clone();
            for s in &sums[1..] {
                tot.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            }
            // (2) scan over blocks
            for (bi, blk) in des.blocks.iter().enumerate() {
                if blk.new_stratum {
                    scan.s0 = 0.0;
                    scan.s1.iter_mut().for_each(|v| *v = 0.0);
                }
                let a = &tot[bi * k..(bi + 1) * k];
                scan.s0 += a[0];
                scan.s1
                    .iter_mut()
                    .zip(&a[2..2 + p])
                    .for_each(|(s, v)| *s += v);
                let (x0, x1) = scan.close(blk.nd, a[1], &a[2 + p..]);
                h[bi] = x0;
                a1[bi] = x1;
            }
            suffix_h(des, h);
            // (3) weighted sums in input order
            let (r, h, a1) = (&r[..], &h[..], &a1[..]);
            (0..n.div_ceil(CHUNK_ROWS))
                .into_par_iter()
                .map(|c| {
                    let mut acc = vec![0.0; p + np];
                    let mut xi = vec![0.0; p];
                    for i in c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(n) {
                        let b = block_of[i] as usize;
                        let w = if event[i] { h[b] - a1[b] } else { h[b] };
                        if w == 0.0 {
                            continue;
                        }
                        for (j, col) in cols.iter().enumerate() {
                            xi[j] = col[i] - des.means[j];
                        }
                        add_weighted(&mut acc, &xi, w * r[i]);
                    }
                    acc
                })
                .collect()
        }
        Layout::Sorted { x, event } => {
            let n = event.len();
            r.resize(n, 0.0);
            // (1) relative risks
            r.par_chunks_mut(CHUNK_ROWS)
                .zip(x.par_chunks(CHUNK_ROWS * p))
                .for_each(|(rr, xs)| {
                    for (ri, xi) in rr.iter_mut().zip(xs.chunks_exact(p)) {
                        let v: f64 = xi.iter().zip(beta).map(|(x, b)| x * b).sum();
                        *ri = v.exp();
                    }
                });
            // (2) sequential scan over the rows, block by block
            let mut d1 = vec![0.0; p];
            for (bi, blk) in des.blocks.iter().enumerate() {
                if blk.new_stratum {
                    scan.s0 = 0.0;
                    scan.s1.iter_mut().for_each(|v| *v = 0.0);
                }
                let (from, to) = (blk.from as usize, blk.to as usize);
                let need_d = scan.needs_d(blk.nd);
                let mut d0 = 0.0;
                if need_d {
                    d1.iter_mut().for_each(|v| *v = 0.0);
                }
                for (i, xi) in (from..to).zip(x[from * p..to * p].chunks_exact(p)) {
                    let ri = r[i];
                    scan.s0 += ri;
                    for (s, v) in scan.s1.iter_mut().zip(xi) {
                        *s += ri * v;
                    }
                    if need_d && event[i] {
                        d0 += ri;
                        for (s, v) in d1.iter_mut().zip(xi) {
                            *s += ri * v;
                        }
                    }
                }
                let (x0, x1) = scan.close(blk.nd, d0, &d1);
                h[bi] = x0;
                a1[bi] = x1;
            }
            suffix_h(des, h);
            // (3) weighted sums over chunks of blocks
            let (r, h, a1) = (&r[..], &h[..], &a1[..]);
            des.chunks
                .par_iter()
                .map(|&(b_from, b_to)| {
                    let mut acc = vec![0.0; p + np];
                    for (bi, blk) in des.blocks[b_from..b_to].iter().enumerate() {
                        let hb = h[b_from + bi];
                        if hb == 0.0 {
                            continue;
                        }
                        let ab = a1[b_from + bi];
                        let (from, to) = (blk.from as usize, blk.to as usize);
                        for (i, xi) in (from..to).zip(x[from * p..to * p].chunks_exact(p)) {
                            let w = if event[i] { hb - ab } else { hb };
                            add_weighted(&mut acc, xi, w * r[i]);
                        }
                    }
                    acc
                })
                .collect()
        }
    };
    let ll = beta
        .iter()
        .zip(&des.xsum_events)
        .map(|(b, s)| b * s)
        .sum::<f64>()
        - scan.logs.total();
    let mut grad = des.xsum_events.clone();
    let mut info_packed: Vec<f64> = scan.outer.iter().map(|v| -v).collect();
    for part in parts {
        grad.iter_mut().zip(&part[..p]).for_each(|(a, b)| *a -= b);
        info_packed
            .iter_mut()
            .zip(&part[p..])
            .for_each(|(a, b)| *a += b);
    }
    let mut info = vec![0.0; p * p];
    let mut q = 0;
    for j in 0..p {
        for k in 0..=j {
            info[j * p + k] = info_packed[q];
            info[k * p + j] = info_packed[q];
            q += 1;
        }
    }
    (ll, grad, info)
}

/// H(b) = Σ A0 over the blocks from b to the end of b's stratum (in place over A0).
fn suffix_h(des: &CoxDesign, h: &mut [f64]) {
    for bi in (0..h.len().saturating_sub(1)).rev() {
        if !des.blocks[bi + 1].new_stratum {
            h[bi] += h[bi + 1];
        }
    }
}

/// Fits a Cox model. `x_cols` are covariate columns (no missing values), `names` their terms.
pub fn cox(
    data: &SurvData,
    x_cols: &[Vec<f64>],
    names: &[String],
    strata: Option<&[usize]>,
    ties: Ties,
    alpha: f64,
) -> Result<CoxFit> {
    let n = data.time.len();
    let p = x_cols.len();
    if p == 0 {
        return Err(StatsError::Invalid(
            "Cox model needs at least one covariate".into(),
        ));
    }
    let events = data.event.iter().filter(|&&e| e).count();
    if events == 0 {
        return degenerate("Cox model: no events (all observations censored); nothing to estimate");
    }
    for (j, c) in x_cols.iter().enumerate() {
        if c.iter().any(|v| !v.is_finite()) {
            return Err(StatsError::Invalid(format!(
                "covariate `{}` has missing or non-finite values",
                names[j]
            )));
        }
        let first = c.first().copied().unwrap_or(0.0);
        if c.iter().all(|&v| v == first) {
            return degenerate(format!(
                "covariate `{}` is constant; its coefficient is not estimable",
                names[j]
            ));
        }
    }
    let des = cox_design(data, x_cols, strata);
    let mut beta = vec![0.0; p];
    let mut buf = (Vec::new(), Vec::new(), Vec::new());
    let (ll0, g0, i0) = cox_eval(&des, &beta, ties, &mut buf);
    let l0 = linalg::cholesky(&i0, p).map_err(|j| {
        StatsError::Degenerate(format!(
            "Cox model: information matrix is singular at term `{}` (collinear covariates or no variation within risk sets)",
            names[j]
        ))
    })?;
    let score_sol = linalg::chol_solve(&l0, p, &g0);
    let score_chisq: f64 = g0.iter().zip(&score_sol).map(|(a, b)| a * b).sum();
    let (mut ll, mut grad, mut info) = (ll0, g0, i0);
    let mut iterations = 0;
    let mut converged = false;
    for it in 0..100 {
        iterations = it + 1;
        let l = linalg::cholesky(&info, p).map_err(|j| {
            StatsError::Degenerate(format!(
                "Cox model: information matrix became singular at term `{}` (possible monotone likelihood: a covariate separates events)",
                names[j]
            ))
        })?;
        let step = linalg::chol_solve(&l, p, &grad);
        let maxstep = step
            .iter()
            .zip(&beta)
            .map(|(s, b)| s.abs() / b.abs().max(1.0))
            .fold(0.0, f64::max);
        if maxstep < 1e-10 {
            // Converged: the remaining Newton step is below 1e-10 (relative). It is applied
            // without another pass over the data; the log-likelihood moves by the quadratic
            // model's gᵀΔ/2 (the error is third order in Δ) and the information is the one at
            // the last evaluated point (it differs from the information at the estimate by
            // O(Δ), i.e. ~1e-10 relative).
            ll += 0.5 * grad.iter().zip(&step).map(|(g, s)| g * s).sum::<f64>();
            beta.iter_mut().zip(&step).for_each(|(b, s)| *b += s);
            converged = true;
            break;
        }
        let mut scale = 1.0;
        let mut accepted = false;
        for _ in 0..30 {
            let cand: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b + scale * s).collect();
            let (ll_c, g_c, i_c) = cox_eval(&des, &cand, ties, &mut buf);
            if ll_c.is_finite() && ll_c >= ll - 1e-12 * ll.abs().max(1.0) {
                beta = cand;
                ll = ll_c;
                grad = g_c;
                info = i_c;
                accepted = true;
                break;
            }
            scale *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    if beta.iter().any(|b| b.abs() > 50.0) || !converged {
        return degenerate(format!(
            "Cox model did not converge (coefficients {:?}); likely monotone likelihood / separation",
            beta
        ));
    }
    let l = linalg::cholesky(&info, p).map_err(|_| {
        StatsError::Degenerate("Cox model: singular information at the estimate".into())
    })?;
    let vcov = linalg::chol_inverse(&l, p);
    let z = norm_ppf(1.0 - alpha / 2.0);
    let coefficients = (0..p)
        .map(|j| {
            let se = vcov[j * p + j].sqrt();
            let zz = beta[j] / se;
            CoxCoef {
                term: names[j].clone(),
                estimate: beta[j],
                se,
                hr: beta[j].exp(),
                hr_lo: (beta[j] - z * se).exp(),
                hr_hi: (beta[j] + z * se).exp(),
                z: zz,
                p: norm_p2(zz),
            }
        })
        .collect();
    let wald = linalg::quad(&info, p, &beta, &beta);
    Ok(CoxFit {
        coefficients,
        loglik: ll,
        loglik_null: ll0,
        n: n as u64,
        events: events as u64,
        ties,
        strata: strata.map_or(1, |s| s.iter().copied().max().map_or(1, |m| m + 1)),
        iterations,
        alpha,
        lr_test: ChiTest::new(2.0 * (ll - ll0), p),
        wald_test: ChiTest::new(wald, p),
        score_test: ChiTest::new(score_chisq, p),
        vcov,
    })
}

// ---------------------------------------------------------------------------------------
// Dataset-level analyses (column selection, grouping, missing-value handling)
// ---------------------------------------------------------------------------------------

/// How the event indicator is given.
#[derive(Debug, Clone)]
pub enum EventSpec {
    /// Column with 1 = event, 0 = censored.
    Event(String),
    /// Column whose value equal to `value` means censored (ADaM `CNSR`, value 1); anything else is an event.
    Censor { column: String, value: String },
}

/// Columns of a survival analysis.
#[derive(Debug, Clone)]
pub struct SurvSpec {
    pub time: String,
    pub event: EventSpec,
    pub by: Option<String>,
    pub strata: Option<String>,
    pub covariates: Vec<String>,
    /// Reference levels of character covariates (`column`, `level`); default: first sorted level.
    pub reference: Vec<(String, String)>,
    /// Covariates to enter as factors (indicators) even when numeric (Cox `--factors`).
    pub factors: Vec<String>,
}

/// Rows of a dataset prepared for survival analysis (rows with any missing input dropped).
pub struct SurvRows<'a> {
    pub data: SurvData<'a>,
    pub group: Vec<usize>,
    pub group_names: Vec<String>,
    pub stratum: Option<Vec<usize>>,
    pub strata_names: Vec<String>,
    /// covariate design columns and term names (character covariates become indicators).
    pub x: Vec<Vec<f64>>,
    pub terms: Vec<String>,
    pub dropped: usize,
}

/// Selects and validates the columns of a survival analysis.
pub fn prepare<'a>(ds: &'a crate::data::Dataset, spec: &SurvSpec) -> Result<SurvRows<'a>> {
    let time = ds.numeric(&spec.time)?;
    let n = time.len();
    // Per row: 1 event, 0 censored, MISSING_EVENT missing; checked before it is mapped,
    // so the common path is a few vectorisable passes and few fresh pages (a 1M-row
    // Kaplan–Meier spent as long in page faults as in arithmetic).
    const MISSING_EVENT: u8 = 2;
    let mut ev: Vec<u8> = match &spec.event {
        EventSpec::Event(c) => {
            let v = ds.numeric(c)?;
            // 0 and 1 are the roots of x(x − 1): counted without a branch per row (events
            // and censorings alternate at random, so a branch mispredicts half the time);
            // the position is looked for only when something is wrong.
            let invalid = |x: f64| (x * (x - 1.0) != 0.0) & !x.is_nan();
            let any_invalid = v.iter().map(|&x| usize::from(invalid(x))).sum::<usize>() > 0;
            if let Some(i) = any_invalid
                .then(|| v.iter().position(|&x| invalid(x)))
                .flatten()
            {
                return Err(StatsError::Invalid(format!(
                    "event column `{c}` {}: value {}; expected 1 (event) or 0 (censored)",
                    ds.locate(i),
                    v[i]
                )));
            }
            v.iter()
                .map(|&x| {
                    if x.is_nan() {
                        MISSING_EVENT
                    } else {
                        u8::from(x == 1.0)
                    }
                })
                .collect()
        }
        EventSpec::Censor { column, value } => {
            let col = ds.column(column)?;
            let num_value = value.parse::<f64>().ok();
            if num_value.is_some() && ds.looks_numeric(column)? {
                // a 0/1 CNSR column with bad cells: those rows would silently count as events
                ds.numeric(column)?;
            }
            (0..n)
                .map(|i| {
                    if col.missing_code(i).is_some() {
                        return MISSING_EVENT;
                    }
                    let censored = match (&col.data, num_value) {
                        (crate::data::ColumnData::Numeric { values, .. }, Some(v)) => {
                            values[i] == v
                        }
                        _ => col.text(i) == *value,
                    };
                    u8::from(!censored)
                })
                .collect()
        }
    };
    let by = spec.by.as_ref().map(|c| ds.codes(c)).transpose()?;
    let strata = spec.strata.as_ref().map(|c| ds.codes(c)).transpose()?;
    // Factors enter as indicators: covariates listed in `factors`, and character columns
    // unless they are mostly numbers (a numeric column with bad cells: an error naming them).
    let mut cov_cols = Vec::new();
    let mut cov_kinds = Vec::new();
    for c in &spec.covariates {
        let declared = spec.factors.iter().any(|f| f.eq_ignore_ascii_case(c));
        cov_kinds.push(ds.term_kind(c, declared, Some("--factors"))?);
        cov_cols.push(ds.column(c)?);
    }
    // Incomplete rows are marked in the event bytes, one column at a time with a select
    // instead of a chain of branches per row (these passes vectorise), then counted.
    fn mark(ev: &mut [u8], missing: impl Iterator<Item = bool>) {
        for (e, m) in ev.iter_mut().zip(missing) {
            *e = if m { MISSING_EVENT } else { *e };
        }
    }
    mark(&mut ev, time.iter().map(|t| t.is_nan()));
    for codes in [&by, &strata].into_iter().flatten() {
        mark(&mut ev, codes.codes.iter().map(|&c| c == NA_CODE));
    }
    for c in &cov_cols {
        mark(&mut ev, (0..n).map(|i| c.missing_code(i).is_some()));
    }
    let dropped = ev.iter().filter(|&&e| e == MISSING_EVENT).count();
    let m = n - dropped;
    // Rows to keep, only needed when some are dropped and other columns follow them.
    let keep: Vec<bool> = if dropped == 0 {
        Vec::new()
    } else {
        ev.iter().map(|&e| e != MISSING_EVENT).collect()
    };
    let (t, e): (std::borrow::Cow<[f64]>, Vec<bool>) = if dropped == 0 {
        // The time column borrowed, and the event bytes become the flags in place: no
        // fresh allocation.
        (
            std::borrow::Cow::Borrowed(time),
            ev.into_iter().map(|c| c == 1).collect(),
        )
    } else {
        let (t, e): (Vec<f64>, Vec<bool>) = time
            .iter()
            .zip(&ev)
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|((&t, &c), _)| (t, c == 1))
            .unzip();
        (t.into(), e)
    };
    let subset = |c: Codes| if dropped == 0 { c } else { c.subset(&keep) };
    if t.is_empty() {
        return degenerate(
            "no complete rows: every row has a missing time, event, group or covariate",
        );
    }
    let as_usize = |c: Codes| -> (Vec<usize>, Vec<String>) {
        (c.codes.iter().map(|&k| k as usize).collect(), c.levels)
    };
    let (group, group_names) = match by {
        Some(b) => as_usize(subset(b)),
        None => (vec![0; t.len()], vec!["All".to_string()]),
    };
    let (stratum, strata_names) = match strata {
        Some(s) => {
            let (i, l) = as_usize(subset(s));
            (Some(i), l)
        }
        None => (None, Vec::new()),
    };
    let mut x = Vec::new();
    let mut terms = Vec::new();
    for (c, kind) in cov_cols.iter().zip(&cov_kinds) {
        match (&c.data, kind) {
            (crate::data::ColumnData::Numeric { values, .. }, TermKind::Continuous) => {
                let col: Vec<f64> = if dropped == 0 {
                    values.clone()
                } else {
                    let mut col = Vec::with_capacity(m);
                    col.extend(
                        values
                            .iter()
                            .zip(&keep)
                            .filter(|(_, k)| **k)
                            .map(|(v, _)| *v),
                    );
                    col
                };
                x.push(col);
                terms.push(c.name.clone());
            }
            _ => {
                let mut coded = subset(ds.codes(&c.name)?);
                if let Some((_, r)) = spec
                    .reference
                    .iter()
                    .find(|(col, _)| col.eq_ignore_ascii_case(&c.name))
                {
                    coded = coded.with_reference(r)?;
                }
                let Codes {
                    codes: idx,
                    levels: lv,
                } = coded;
                if lv.len() < 2 {
                    return degenerate(format!("covariate `{}` has a single level", c.name));
                }
                for (l, name) in lv.iter().enumerate().skip(1) {
                    x.push(
                        idx.iter()
                            .map(|&k| (k as usize == l) as u8 as f64)
                            .collect(),
                    );
                    terms.push(format!("{}={}", c.name, name));
                }
            }
        }
    }
    Ok(SurvRows {
        data: SurvData::new(t, e)?,
        group,
        group_names,
        stratum,
        strata_names,
        x,
        terms,
        dropped,
    })
}

/// Kaplan–Meier by group plus the log-rank test (stratified when strata are given).
#[derive(Debug, Clone, Serialize)]
pub struct KmResult {
    pub groups: Vec<KmGroup>,
    pub logrank: Option<LogRank>,
    pub conf_type: ConfType,
    pub alpha: f64,
    pub dropped_rows: usize,
}

/// Runs Kaplan–Meier for each level of `spec.by` and the log-rank test between them.
pub fn km_analysis(
    ds: &crate::data::Dataset,
    spec: &SurvSpec,
    conf: ConfType,
    alpha: f64,
    at: &[f64],
) -> Result<KmResult> {
    let rows = prepare(ds, spec)?;
    let k = rows.group_names.len();
    let ns = rows.strata_names.len().max(1);
    let cells = Cells::build(&rows.data, &rows.group, k, rows.stratum.as_deref(), ns);
    let groups = rows
        .group_names
        .iter()
        .enumerate()
        .map(|(g, name)| km_from_cells(name, &cells, g, conf, alpha, at))
        .collect::<Result<Vec<_>>>()?;
    let logrank = if k >= 2 {
        let (o, e, v) = logrank_sums(&cells);
        Some(logrank_finish(
            o,
            e,
            v,
            &rows.group_names,
            rows.stratum.is_some(),
        )?)
    } else {
        None
    };
    Ok(KmResult {
        groups,
        logrank,
        conf_type: conf,
        alpha,
        dropped_rows: rows.dropped,
    })
}

/// Cox model on dataset columns: covariates from `spec.covariates` (and `spec.by`, if
/// given, as an indicator set placed first).
pub fn cox_analysis(
    ds: &crate::data::Dataset,
    spec: &SurvSpec,
    ties: Ties,
    alpha: f64,
) -> Result<CoxFit> {
    let mut spec2 = spec.clone();
    if let Some(b) = &spec.by
        && !spec2.covariates.contains(b)
    {
        spec2.covariates.insert(0, b.clone());
    }
    spec2.by = None;
    let rows = prepare(ds, &spec2)?;
    cox(
        &rows.data,
        &rows.x,
        &rows.terms,
        rows.stratum.as_deref(),
        ties,
        alpha,
    )
}

/// Log-rank test between the levels of `spec.by` (stratified by `spec.strata` if given)
/// without computing the Kaplan–Meier curves.
pub fn logrank_analysis(ds: &crate::data::Dataset, spec: &SurvSpec) -> Result<LogRank> {
    if spec.by.is_none() {
        return Err(StatsError::Invalid(
            "log-rank test needs a group column (--by)".into(),
        ));
    }
    let rows = prepare(ds, spec)?;
    logrank(
        &rows.data,
        &rows.group,
        &rows.group_names,
        rows.stratum.as_deref(),
    )
}
