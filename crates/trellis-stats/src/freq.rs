//! Contingency tables: Fisher's exact test (2×2), Pearson chi-square (r×c, Yates for 2×2),
//! Cochran–Mantel–Haenszel for stratified 2×2 tables, Breslow–Day homogeneity test.
//!
//! Conventions: the two-sided Fisher p-value sums the tables whose probability is at most
//! the observed one times (1 + 1e-7) (R `fisher.test`; scipy uses a tighter 1e-14 relative
//! tolerance, which differs only for near-ties). The reported odds ratio is the sample odds
//! ratio ad/bc (scipy). CMH is reported without and with the 0.5 continuity correction
//! (statsmodels `correction=False`/`True`; R's default is corrected). The Mantel–Haenszel
//! pooled odds ratio CI uses the Robins–Breslow–Greenland variance.

use crate::data::{Dataset, NA_CODE};
use crate::dist::{chi2_sf, ln_factorial, norm_ppf};
use crate::error::{Result, StatsError, degenerate};
use serde::Serialize;

/// Fisher's exact test on a 2×2 table `[[a, b], [c, d]]`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Fisher {
    pub p_two_sided: f64,
    pub p_less: f64,
    pub p_greater: f64,
    /// Sample odds ratio ad/bc; null when undefined (0/0).
    pub odds_ratio: Option<f64>,
}

/// Fisher's exact test.
pub fn fisher_exact(t: [[u64; 2]; 2]) -> Fisher {
    let [[a, b], [c, d]] = t;
    let r1 = a + b;
    let c1 = a + c;
    let n = a + b + c + d;
    let lo = c1.saturating_sub(n - r1);
    let hi = r1.min(c1);
    let lf = |k: u64| {
        ln_factorial(r1) + ln_factorial(n - r1) + ln_factorial(c1) + ln_factorial(n - c1)
            - ln_factorial(n)
            - ln_factorial(k)
            - ln_factorial(r1 - k)
            - ln_factorial(c1 - k)
            - ln_factorial(n + k - r1 - c1)
    };
    let pmf: Vec<f64> = (lo..=hi).map(|k| lf(k).exp()).collect();
    let obs = pmf[(a - lo) as usize];
    let total: f64 = pmf.iter().sum();
    let p_less: f64 = pmf[..=(a - lo) as usize].iter().sum::<f64>() / total;
    let p_greater: f64 = pmf[(a - lo) as usize..].iter().sum::<f64>() / total;
    let thr = obs * (1.0 + 1e-7);
    let p2: f64 = pmf.iter().filter(|&&v| v <= thr).sum::<f64>() / total;
    let num = (a * d) as f64;
    let den = (b * c) as f64;
    let odds_ratio = if den > 0.0 {
        Some(num / den)
    } else if num > 0.0 {
        Some(f64::INFINITY)
    } else {
        None
    };
    Fisher {
        p_two_sided: p2.min(1.0),
        p_less: p_less.min(1.0),
        p_greater: p_greater.min(1.0),
        odds_ratio: odds_ratio.filter(|v| v.is_finite()),
    }
}

/// Pearson chi-square test of independence.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChiSquare {
    pub chisq: f64,
    pub df: usize,
    pub p: f64,
    /// Yates-corrected statistic (2×2 tables only).
    pub chisq_yates: Option<f64>,
    pub p_yates: Option<f64>,
    /// Number of cells with expected count below 5.
    pub cells_expected_below_5: usize,
}

/// Pearson chi-square on an r×c table of counts.
pub fn chi_square(t: &[Vec<u64>]) -> Result<ChiSquare> {
    let r = t.len();
    let c = t.first().map_or(0, |x| x.len());
    if r < 2 || c < 2 || t.iter().any(|row| row.len() != c) {
        return Err(StatsError::Invalid(
            "chi-square needs an r×c table with r, c ≥ 2".into(),
        ));
    }
    let rows: Vec<f64> = t.iter().map(|row| row.iter().sum::<u64>() as f64).collect();
    let cols: Vec<f64> = (0..c)
        .map(|j| t.iter().map(|row| row[j]).sum::<u64>() as f64)
        .collect();
    let n: f64 = rows.iter().sum();
    if let Some(i) = rows.iter().position(|&v| v == 0.0) {
        return degenerate(format!(
            "chi-square: row {} of the table is empty (expected counts zero)",
            i + 1
        ));
    }
    if let Some(j) = cols.iter().position(|&v| v == 0.0) {
        return degenerate(format!(
            "chi-square: column {} of the table is empty (expected counts zero)",
            j + 1
        ));
    }
    let mut chisq = 0.0;
    let mut yates = 0.0;
    let mut small = 0;
    for i in 0..r {
        for j in 0..c {
            let e = rows[i] * cols[j] / n;
            if e < 5.0 {
                small += 1;
            }
            let o = t[i][j] as f64;
            chisq += (o - e) * (o - e) / e;
            let dd = ((o - e).abs() - 0.5f64.min((o - e).abs())).max(0.0);
            yates += dd * dd / e;
        }
    }
    let df = (r - 1) * (c - 1);
    let two = r == 2 && c == 2;
    Ok(ChiSquare {
        chisq,
        df,
        p: chi2_sf(chisq, df as f64),
        chisq_yates: two.then_some(yates),
        p_yates: two.then(|| chi2_sf(yates, 1.0)),
        cells_expected_below_5: small,
    })
}

/// Cochran–Mantel–Haenszel test for K strata of 2×2 tables.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cmh {
    pub strata: usize,
    pub chisq: f64,
    pub p: f64,
    pub chisq_corrected: f64,
    pub p_corrected: f64,
    pub or_mh: f64,
    pub log_or_se: f64,
    pub or_lo: f64,
    pub or_hi: f64,
    pub breslow_day: Option<f64>,
    pub breslow_day_p: Option<f64>,
}

/// CMH test, Mantel–Haenszel odds ratio (RBG CI) and Breslow–Day test.
pub fn cmh(tables: &[[[u64; 2]; 2]], alpha: f64) -> Result<Cmh> {
    let used: Vec<&[[u64; 2]; 2]> = tables
        .iter()
        .filter(|t| t.iter().flatten().sum::<u64>() > 1)
        .collect();
    if used.is_empty() {
        return degenerate("CMH: no stratum has more than one observation");
    }
    let (mut sa, mut se, mut sv) = (0.0, 0.0, 0.0);
    let (mut r_num, mut s_den) = (0.0, 0.0);
    let (mut pr, mut ps_qr, mut qs) = (0.0, 0.0, 0.0);
    for t in &used {
        let [[a, b], [c, d]] = **t;
        let (a, b, c, d) = (a as f64, b as f64, c as f64, d as f64);
        let n = a + b + c + d;
        let r1 = a + b;
        let r2 = c + d;
        let c1 = a + c;
        let c2 = b + d;
        sa += a;
        se += r1 * c1 / n;
        sv += r1 * r2 * c1 * c2 / (n * n * (n - 1.0));
        let rk = a * d / n;
        let sk = b * c / n;
        let pk = (a + d) / n;
        let qk = (b + c) / n;
        r_num += rk;
        s_den += sk;
        pr += pk * rk;
        ps_qr += pk * sk + qk * rk;
        qs += qk * sk;
    }
    if sv <= 0.0 {
        return degenerate("CMH: zero variance (a margin is empty in every stratum)");
    }
    let diff = sa - se;
    let chisq = diff * diff / sv;
    let dc = (diff.abs() - 0.5).max(0.0);
    let chisq_c = dc * dc / sv;
    if r_num == 0.0 || s_den == 0.0 {
        return degenerate(
            "CMH: Mantel–Haenszel odds ratio is 0 or infinite (zero cells in every stratum)",
        );
    }
    let or = r_num / s_den;
    let var =
        pr / (2.0 * r_num * r_num) + ps_qr / (2.0 * r_num * s_den) + qs / (2.0 * s_den * s_den);
    let lse = var.sqrt();
    let z = norm_ppf(1.0 - alpha / 2.0);
    let (bd, bdp) = match breslow_day(&used, or) {
        Some(x) => (Some(x), Some(chi2_sf(x, (used.len() - 1) as f64))),
        None => (None, None),
    };
    Ok(Cmh {
        strata: used.len(),
        chisq,
        p: chi2_sf(chisq, 1.0),
        chisq_corrected: chisq_c,
        p_corrected: chi2_sf(chisq_c, 1.0),
        or_mh: or,
        log_or_se: lse,
        or_lo: (or.ln() - z * lse).exp(),
        or_hi: (or.ln() + z * lse).exp(),
        breslow_day: bd,
        breslow_day_p: bdp,
    })
}

/// Breslow–Day statistic (without Tarone's adjustment) for a common odds ratio `or`.
fn breslow_day(tables: &[&[[u64; 2]; 2]], or: f64) -> Option<f64> {
    if tables.len() < 2 {
        return None;
    }
    let mut stat = 0.0;
    for t in tables {
        let [[a, b], [c, d]] = **t;
        let (a, b, c, d) = (a as f64, b as f64, c as f64, d as f64);
        let r1 = a + b;
        let c1 = a + c;
        let n = a + b + c + d;
        let lo = (c1 - (n - r1)).max(0.0);
        let hi = r1.min(c1);
        // solve (x (n - r1 - c1 + x)) / ((r1 - x)(c1 - x)) = or for x in (lo, hi)
        let qa = 1.0 - or;
        let qb = (n - r1 - c1) + or * (r1 + c1);
        let qc = -or * r1 * c1;
        let x = if qa.abs() < 1e-12 {
            -qc / qb
        } else {
            let disc = (qb * qb - 4.0 * qa * qc).max(0.0).sqrt();
            let x1 = (-qb + disc) / (2.0 * qa);
            let x2 = (-qb - disc) / (2.0 * qa);
            if x1 >= lo - 1e-9 && x1 <= hi + 1e-9 {
                x1
            } else {
                x2
            }
        };
        let v = 1.0 / (1.0 / x + 1.0 / (r1 - x) + 1.0 / (c1 - x) + 1.0 / (n - r1 - c1 + x));
        if !v.is_finite() || v <= 0.0 {
            continue;
        }
        stat += (a - x) * (a - x) / v;
    }
    Some(stat)
}

/// Frequency analysis of two columns (optionally stratified) of a dataset.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FreqResult {
    pub row: String,
    pub col: String,
    pub row_levels: Vec<String>,
    pub col_levels: Vec<String>,
    pub table: Vec<Vec<u64>>,
    pub chisq: ChiSquare,
    pub fisher: Option<Fisher>,
    pub strata: Option<String>,
    pub strata_levels: Vec<String>,
    pub cmh: Option<Cmh>,
    pub dropped_rows: usize,
}

/// Cross-tabulates `row` × `col` (levels sorted), runs chi-square and, for 2×2, Fisher;
/// with `strata`, CMH over the per-stratum 2×2 tables.
pub fn freq(
    ds: &Dataset,
    row: &str,
    col: &str,
    strata: Option<&str>,
    alpha: f64,
) -> Result<FreqResult> {
    let r = ds.codes(row)?;
    let c = ds.codes(col)?;
    let s = strata.map(|x| ds.codes(x)).transpose()?;
    let n = r.codes.len();
    let keep: Vec<bool> = (0..n)
        .map(|i| {
            r.codes[i] != NA_CODE
                && c.codes[i] != NA_CODE
                && s.as_ref().is_none_or(|s| s.codes[i] != NA_CODE)
        })
        .collect();
    let dropped = keep.iter().filter(|k| !**k).count();
    let (r, c) = (r.subset(&keep), c.subset(&keep));
    let (rl, cl) = (r.levels, c.levels);
    let (ri, ci) = (r.codes, c.codes);
    let mut table = vec![vec![0u64; cl.len()]; rl.len()];
    for (&a, &b) in ri.iter().zip(&ci) {
        table[a as usize][b as usize] += 1;
    }
    if rl.len() < 2 || cl.len() < 2 {
        return degenerate(format!(
            "{row} × {col}: need at least two levels of each (have {} and {})",
            rl.len(),
            cl.len()
        ));
    }
    let chisq = chi_square(&table)?;
    let two = rl.len() == 2 && cl.len() == 2;
    let fisher =
        two.then(|| fisher_exact([[table[0][0], table[0][1]], [table[1][0], table[1][1]]]));
    let (cmh_res, sl) = match &s {
        Some(sv) => {
            if !two {
                return Err(StatsError::Invalid(
                    "CMH is implemented for 2×2×K tables only".into(),
                ));
            }
            let sv = sv.subset(&keep);
            let sl = sv.levels;
            let mut tabs = vec![[[0u64; 2]; 2]; sl.len()];
            for i in 0..ri.len() {
                tabs[sv.codes[i] as usize][ri[i] as usize][ci[i] as usize] += 1;
            }
            (Some(cmh(&tabs, alpha)?), sl)
        }
        None => (None, Vec::new()),
    };
    Ok(FreqResult {
        row: row.into(),
        col: col.into(),
        row_levels: rl,
        col_levels: cl,
        table,
        chisq,
        fisher,
        strata: strata.map(|x| x.to_string()),
        strata_levels: sl,
        cmh: cmh_res,
        dropped_rows: dropped,
    })
}
