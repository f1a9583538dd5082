//! Contingency tables: Fisher's exact test (2×2 here; r×c in [`crate::exact`]), Pearson
//! chi-square (r×c, Yates for 2×2), Cochran–Mantel–Haenszel for stratified 2×2 tables,
//! Breslow–Day homogeneity test, and the generalised CMH statistics for r×c×K tables.
//!
//! Conventions: the two-sided Fisher p-value sums the tables whose probability is at most
//! the observed one times (1 + 1e-7) (R `fisher.test`; scipy uses a tighter 1e-14 relative
//! tolerance, which differs only for near-ties). The reported odds ratio is the sample odds
//! ratio ad/bc (scipy). CMH is reported without and with the 0.5 continuity correction
//! (statsmodels `correction=False`/`True`; R's default is corrected). The Mantel–Haenszel
//! pooled odds ratio CI uses the Robins–Breslow–Greenland variance. The generalised CMH
//! statistics use table scores (SAS `SCORES=TABLE`) and are not continuity-corrected; for a
//! 2×2×K table all three equal the uncorrected CMH chi-square.

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

/// One generalised CMH statistic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CmhStatistic {
    pub statistic: f64,
    pub df: usize,
    pub p: f64,
}

/// Generalised Cochran–Mantel–Haenszel statistics for K strata of r×c tables (SAS PROC FREQ
/// `CMH`, table scores).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CmhGeneral {
    /// Strata used (those with at least two observations).
    pub strata: usize,
    /// Row and column scores (SAS `SCORES=TABLE`).
    pub row_scores: Vec<f64>,
    pub col_scores: Vec<f64>,
    /// Nonzero correlation (df 1).
    pub correlation: CmhStatistic,
    /// Row mean scores differ (df r − 1).
    pub row_mean_scores: CmhStatistic,
    /// General association (df (r − 1)(c − 1)).
    pub general_association: CmhStatistic,
}

/// Generalised CMH statistics (Landis, Heyman & Koch 1978) of `tables[h][i][j]` with the
/// given row and column scores.
///
/// For stratum h with n_h observations and row / column proportions p, q, the cell counts
/// have mean n_h (p ⊗ q) and covariance n_h²/(n_h − 1) (V_p ⊗ V_q), V_p = diag(p) − pp'. With
/// B = B_r ⊗ B_c the statistic is G'V⁻¹G, G = Σ_h B(n_h − m_h), V = Σ_h B Var(n_h) B'; since
/// B Var B' = n_h²/(n_h − 1)(B_r V_p B_r') ⊗ (B_c V_q B_c'), only the two small factors are
/// formed per stratum. B_r is [I 0] (first r − 1 rows) or the row scores, B_c likewise.
/// Strata with fewer than two observations are left out (their variance is 0/0).
pub fn cmh_general(
    tables: &[Vec<Vec<u64>>],
    row_scores: &[f64],
    col_scores: &[f64],
) -> Result<CmhGeneral> {
    let (r, c) = (row_scores.len(), col_scores.len());
    if r < 2 || c < 2 {
        return Err(StatsError::Invalid(
            "generalised CMH needs at least 2 rows and 2 columns".into(),
        ));
    }
    if tables
        .iter()
        .any(|t| t.len() != r || t.iter().any(|row| row.len() != c))
    {
        return Err(StatsError::Invalid(format!(
            "generalised CMH: every stratum must be a {r}×{c} table"
        )));
    }
    if row_scores.iter().chain(col_scores).any(|v| !v.is_finite()) {
        return Err(StatsError::Invalid(
            "generalised CMH: scores must be finite".into(),
        ));
    }
    let used: Vec<&Vec<Vec<u64>>> = tables
        .iter()
        .filter(|t| t.iter().flatten().sum::<u64>() >= 2)
        .collect();
    if used.is_empty() {
        return degenerate("generalised CMH: no stratum has more than one observation");
    }
    // B factors as row-major matrices: (rows of B, columns = r or c)
    let first = |k: usize| -> Vec<f64> {
        let mut m = vec![0.0; (k - 1) * k];
        for i in 0..k - 1 {
            m[i * k + i] = 1.0;
        }
        m
    };
    let stat = |br: &[f64], sr: usize, bc: &[f64], sc: usize, name: &str| -> Result<CmhStatistic> {
        let dim = sr * sc;
        let mut g = vec![0.0; dim];
        let mut v = vec![0.0; dim * dim];
        let mut scale = vec![0.0; dim];
        for t in &used {
            let n = t.iter().flatten().sum::<u64>() as f64;
            let rt: Vec<f64> = t.iter().map(|row| row.iter().sum::<u64>() as f64).collect();
            let ct: Vec<f64> = (0..c)
                .map(|j| t.iter().map(|row| row[j]).sum::<u64>() as f64)
                .collect();
            // deviation from expectation, projected: G += B_r D B_c'
            let mut bd = vec![0.0; sr * c];
            for a in 0..sr {
                for j in 0..c {
                    let mut s = 0.0;
                    for i in 0..r {
                        s += br[a * r + i] * (t[i][j] as f64 - rt[i] * ct[j] / n);
                    }
                    bd[a * c + j] = s;
                }
            }
            for a in 0..sr {
                for b in 0..sc {
                    g[a * sc + b] += (0..c).map(|j| bd[a * c + j] * bc[b * c + j]).sum::<f64>();
                }
            }
            let ar = project(br, sr, &rt, n);
            let ac = project(bc, sc, &ct, n);
            let f = n * n / (n - 1.0);
            // Σ b² p bounds b'V_p b from above: the scale a variance is judged zero against
            let ur = sq_norms(br, sr, &rt, n);
            let uc = sq_norms(bc, sc, &ct, n);
            for a in 0..sr {
                for b in 0..sc {
                    scale[a * sc + b] += f * ur[a] * uc[b];
                }
            }
            for a in 0..sr {
                for b in 0..sc {
                    for a2 in 0..sr {
                        for b2 in 0..sc {
                            v[(a * sc + b) * dim + a2 * sc + b2] +=
                                f * ar[a * sr + a2] * ac[b * sc + b2];
                        }
                    }
                }
            }
        }
        // Work with the correlation-like matrix D^-1/2 V D^-1/2 (D = the scales), so that a
        // variance that is zero up to rounding is recognised as such.
        let d: Vec<f64> = scale.iter().map(|x| x.sqrt()).collect();
        let mut w = v.clone();
        for i in 0..dim {
            for j in 0..dim {
                w[i * dim + j] = if d[i] > 0.0 && d[j] > 0.0 {
                    v[i * dim + j] / (d[i] * d[j])
                } else {
                    0.0
                };
            }
        }
        let tiny = (0..dim).any(|i| w[i * dim + i] < 1e-10);
        let l = (if tiny {
            Err(0)
        } else {
            crate::linalg::cholesky(&w, dim)
        })
        .map_err(|_| {
            StatsError::Degenerate(format!(
                "generalised CMH: the covariance matrix of the {name} statistic is singular \
                 (a row or column level, or all score variation, occurs only in strata with \
                 fewer than two observations or in a single row or column of every stratum)"
            ))
        })?;
        let gs: Vec<f64> = g.iter().zip(&d).map(|(a, b)| a / b).collect();
        let x = crate::linalg::chol_solve(&l, dim, &gs);
        let q: f64 = gs.iter().zip(&x).map(|(a, b)| a * b).sum();
        let df = dim;
        Ok(CmhStatistic {
            statistic: q,
            df,
            p: chi2_sf(q, df as f64),
        })
    };
    let (ir, ic) = (first(r), first(c));
    // Deviations sum to zero over rows and over columns, so shifting the scores changes
    // nothing; centred scores keep the zero-variance check meaningful for scores such as
    // 1000, 1001, 1002.
    let centre = |x: &[f64]| -> Vec<f64> {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        x.iter().map(|v| v - m).collect()
    };
    let (rsc, csc) = (centre(row_scores), centre(col_scores));
    Ok(CmhGeneral {
        strata: used.len(),
        row_scores: row_scores.to_vec(),
        col_scores: col_scores.to_vec(),
        correlation: stat(&rsc, 1, &csc, 1, "correlation")?,
        row_mean_scores: stat(&ir, r - 1, &csc, 1, "row mean scores")?,
        general_association: stat(&ir, r - 1, &ic, c - 1, "general association")?,
    })
}

/// Σ_i b_ai² p_i for each row a of B (s×k row-major), p = totals / n.
fn sq_norms(b: &[f64], s: usize, totals: &[f64], n: f64) -> Vec<f64> {
    let k = totals.len();
    (0..s)
        .map(|a| {
            (0..k)
                .map(|i| b[a * k + i] * b[a * k + i] * totals[i] / n)
                .sum()
        })
        .collect()
}

/// B V B' for V = diag(p) − pp', p = totals / n (B is s×k row-major).
fn project(b: &[f64], s: usize, totals: &[f64], n: f64) -> Vec<f64> {
    let k = totals.len();
    let p: Vec<f64> = totals.iter().map(|x| x / n).collect();
    let bp: Vec<f64> = (0..s)
        .map(|a| (0..k).map(|i| b[a * k + i] * p[i]).sum())
        .collect();
    let mut out = vec![0.0; s * s];
    for a in 0..s {
        for a2 in 0..s {
            let d: f64 = (0..k).map(|i| b[a * k + i] * b[a2 * k + i] * p[i]).sum();
            out[a * s + a2] = d - bp[a] * bp[a2];
        }
    }
    out
}

/// Fisher's exact test for tables other than 2×2 (and Monte Carlo on request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FisherMode {
    /// Exact p-value (network algorithm); a table too large for it is an error that names
    /// the alternatives.
    Exact,
    /// Monte Carlo p-value from `samples` permuted tables, seeded.
    MonteCarlo { samples: u64, seed: u64 },
    /// No r×c Fisher test (2×2 tables still get the exact 2×2 test).
    None,
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
    /// 2×2 tables: exact test with one-sided p-values and the sample odds ratio.
    pub fisher: Option<Fisher>,
    /// Tables other than 2×2 (and any table with Monte Carlo): Fisher–Freeman–Halton test.
    pub fisher_rxc: Option<crate::exact::FisherRxc>,
    pub strata: Option<String>,
    pub strata_levels: Vec<String>,
    /// 2×2×K only: CMH with and without continuity correction, MH odds ratio, Breslow–Day.
    pub cmh: Option<Cmh>,
    /// With strata: generalised CMH statistics with table scores (any r×c×K).
    pub cmh_general: Option<CmhGeneral>,
    pub dropped_rows: usize,
}

/// SAS `SCORES=TABLE`: a numeric column's values, otherwise the level positions 1, 2, ….
fn table_scores(ds: &Dataset, col: &str, levels: &[String]) -> Result<Vec<f64>> {
    if ds.column(col)?.is_numeric() {
        levels
            .iter()
            .map(|l| {
                l.parse::<f64>()
                    .map_err(|_| StatsError::Invalid(format!("{col}: level `{l}` is not a number")))
            })
            .collect()
    } else {
        Ok((1..=levels.len()).map(|k| k as f64).collect())
    }
}

/// [`freq_with`] with the exact r×c Fisher test.
pub fn freq(
    ds: &Dataset,
    row: &str,
    col: &str,
    strata: Option<&str>,
    alpha: f64,
) -> Result<FreqResult> {
    freq_with(ds, row, col, strata, alpha, FisherMode::Exact)
}

/// Cross-tabulates `row` × `col` (levels sorted), runs chi-square and Fisher's exact test
/// (2×2 routine for 2×2 tables, r×c otherwise as `fisher` says); with `strata`, the
/// generalised CMH statistics and, for 2×2×K, CMH, MH odds ratio and Breslow–Day.
pub fn freq_with(
    ds: &Dataset,
    row: &str,
    col: &str,
    strata: Option<&str>,
    alpha: f64,
    fisher: FisherMode,
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
    let fisher2 =
        two.then(|| fisher_exact([[table[0][0], table[0][1]], [table[1][0], table[1][1]]]));
    let fisher_rxc = match fisher {
        FisherMode::Exact if !two => Some(crate::exact::fisher_exact_rxc(&table)?),
        FisherMode::MonteCarlo { samples, seed } => {
            Some(crate::exact::fisher_monte_carlo(&table, samples, seed)?)
        }
        _ => None,
    };
    let (cmh_res, cmh_gen, sl) = match &s {
        Some(sv) => {
            let sv = sv.subset(&keep);
            let sl = sv.levels;
            let mut tabs = vec![vec![vec![0u64; cl.len()]; rl.len()]; sl.len()];
            for i in 0..ri.len() {
                tabs[sv.codes[i] as usize][ri[i] as usize][ci[i] as usize] += 1;
            }
            let rs = table_scores(ds, row, &rl)?;
            let cs = table_scores(ds, col, &cl)?;
            let general = cmh_general(&tabs, &rs, &cs)?;
            let classic = if two {
                let t2: Vec<[[u64; 2]; 2]> = tabs
                    .iter()
                    .map(|t| [[t[0][0], t[0][1]], [t[1][0], t[1][1]]])
                    .collect();
                Some(cmh(&t2, alpha)?)
            } else {
                None
            };
            (classic, Some(general), sl)
        }
        None => (None, None, Vec::new()),
    };
    Ok(FreqResult {
        row: row.into(),
        col: col.into(),
        row_levels: rl,
        col_levels: cl,
        table,
        chisq,
        fisher: fisher2,
        fisher_rxc,
        strata: strata.map(|x| x.to_string()),
        strata_levels: sl,
        cmh: cmh_res,
        cmh_general: cmh_gen,
        dropped_rows: dropped,
    })
}
