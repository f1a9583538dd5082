//! Linear models / ANCOVA (type III tests, LS means) and logistic regression.
//!
//! ANCOVA conventions: factors use sum-to-zero ("effects") coding with the last level as
//! the −1 row (patsy `C(x, Sum)`), so type III sums of squares are the Wald quadratic forms
//! `b_T' (V_TT)^{-1} b_T` of each term's coefficients (statsmodels `anova_lm(typ=3)`, SAS
//! type III for main-effects models). LS means are estimated at the mean of each continuous
//! covariate with equal weights over the levels of the other factors (SAS `LSMEANS`,
//! emmeans). Only main effects are supported (no interaction terms).
//!
//! The design is reduced to per-cell sufficient statistics (a cell is a combination of
//! factor levels), so fitting costs one pass over the rows regardless of the number of
//! factor levels.

use crate::data::{Codes, ColumnData, Dataset, TermKind};
use crate::dist::{chi2_sf, f_sf, norm_p2, norm_ppf, t_p2, t_ppf};
use crate::error::{Result, StatsError, degenerate};
use crate::linalg;
use serde::Serialize;

/// One row of the type III table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TypeIII {
    pub term: String,
    pub df: usize,
    pub ss: f64,
    pub f: f64,
    pub p: f64,
}

/// A least-squares mean with its CI.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LsMean {
    pub level: String,
    pub n: u64,
    pub estimate: f64,
    pub se: f64,
    pub lo: f64,
    pub hi: f64,
}

/// A pairwise difference of LS means (`a − b`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LsDiff {
    pub a: String,
    pub b: String,
    pub estimate: f64,
    pub se: f64,
    pub lo: f64,
    pub hi: f64,
    pub t: f64,
    pub p: f64,
}

/// One model coefficient (effects coding).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Coef {
    pub term: String,
    pub estimate: f64,
    pub se: f64,
}

/// ANCOVA result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AncovaFit {
    pub response: String,
    pub n: u64,
    pub df_resid: f64,
    pub mse: f64,
    pub r2: f64,
    pub type3: Vec<TypeIII>,
    pub treatment: String,
    pub lsmeans: Vec<LsMean>,
    pub diffs: Vec<LsDiff>,
    pub coefficients: Vec<Coef>,
    pub alpha: f64,
    pub dropped_rows: usize,
}

/// Column roles of a linear model.
#[derive(Debug, Clone)]
pub struct LinearSpec {
    pub response: String,
    /// Treatment factor: LS means and pairwise differences are given for its levels.
    pub treatment: String,
    /// Other terms: character columns and those listed in `factors` are factors,
    /// numeric columns continuous covariates.
    pub covariates: Vec<String>,
    pub factors: Vec<String>,
}

struct Factor {
    name: String,
    levels: Vec<String>,
    idx: Vec<u32>,
    counts: Vec<u64>,
}

fn factor_of(ds: &Dataset, name: &str, keep: &[bool]) -> Result<Factor> {
    let c = ds.codes(name)?.subset(keep);
    let mut counts = vec![0u64; c.levels.len()];
    for &i in &c.codes {
        counts[i as usize] += 1;
    }
    Ok(Factor {
        name: name.to_string(),
        levels: c.levels,
        idx: c.codes,
        counts,
    })
}

/// Fits `response ~ treatment + covariates` and returns type III tests and LS means.
pub fn ancova(ds: &Dataset, spec: &LinearSpec, alpha: f64) -> Result<AncovaFit> {
    let y_all = ds.numeric(&spec.response)?;
    let n_all = y_all.len();
    let mut factor_names = vec![spec.treatment.clone()];
    let mut cont_names = Vec::new();
    for c in &spec.covariates {
        if c == &spec.treatment {
            continue;
        }
        let declared = spec.factors.iter().any(|f| f.eq_ignore_ascii_case(c));
        match ds.term_kind(c, declared, Some("--factors"))? {
            TermKind::Factor => factor_names.push(c.clone()),
            TermKind::Continuous => cont_names.push(c.clone()),
        }
    }
    let cols: Vec<&crate::data::Column> = factor_names
        .iter()
        .chain(&cont_names)
        .map(|c| ds.column(c))
        .collect::<Result<_>>()?;
    let keep: Vec<bool> = (0..n_all)
        .map(|i| !y_all[i].is_nan() && cols.iter().all(|c| c.missing_code(i).is_none()))
        .collect();
    let dropped = keep.iter().filter(|k| !**k).count();
    let y: Vec<f64> = (0..n_all).filter(|&i| keep[i]).map(|i| y_all[i]).collect();
    let n = y.len();
    let factors: Vec<Factor> = factor_names
        .iter()
        .map(|f| factor_of(ds, f, &keep))
        .collect::<Result<_>>()?;
    for f in &factors {
        if f.levels.len() < 2 {
            return degenerate(format!(
                "factor `{}` has a single level among complete rows; it cannot be in the model",
                f.name
            ));
        }
    }
    let z: Vec<Vec<f64>> = cont_names
        .iter()
        .map(|c| {
            let v = ds.numeric(c)?;
            Ok((0..n_all).filter(|&i| keep[i]).map(|i| v[i]).collect())
        })
        .collect::<Result<_>>()?;
    let q = z.len();
    let fdims: Vec<usize> = factors.iter().map(|f| f.levels.len() - 1).collect();
    let p = 1 + fdims.iter().sum::<usize>() + q;
    if n <= p {
        return degenerate(format!(
            "{n} complete rows for {p} model parameters: no residual degrees of freedom"
        ));
    }
    // centring
    let ybar = y.iter().sum::<f64>() / n as f64;
    let zbar: Vec<f64> = z.iter().map(|c| c.iter().sum::<f64>() / n as f64).collect();
    // cells
    let ncell: usize = factors.iter().map(|f| f.levels.len()).product();
    if ncell > 4_000_000 {
        return Err(StatsError::Invalid(format!(
            "{ncell} factor-level combinations: too many for the cell-based design"
        )));
    }
    let stride = q + 1; // per cell: sums of z (q) and y
    let qq = stride * (stride + 1) / 2; // cross products of (z, y)
    let mut cnt = vec![0u64; ncell];
    let mut sums = vec![0.0; ncell * stride];
    let mut cross = vec![0.0; ncell * qq];
    let mut v = vec![0.0; stride];
    for i in 0..n {
        let mut cell = 0usize;
        for f in &factors {
            cell = cell * f.levels.len() + f.idx[i] as usize;
        }
        for (j, c) in z.iter().enumerate() {
            v[j] = c[i] - zbar[j];
        }
        v[q] = y[i] - ybar;
        cnt[cell] += 1;
        let s = &mut sums[cell * stride..cell * stride + stride];
        let cr = &mut cross[cell * qq..cell * qq + qq];
        let mut k = 0;
        for a in 0..stride {
            s[a] += v[a];
            for b in 0..=a {
                cr[k] += v[a] * v[b];
                k += 1;
            }
        }
    }
    // build X'X (p×p), X'y, y'y
    let mut xtx = vec![0.0; p * p];
    let mut xty = vec![0.0; p];
    let mut yty = 0.0;
    let mut u = vec![0.0; p - q];
    for cell in 0..ncell {
        let c = cnt[cell];
        if c == 0 {
            continue;
        }
        // decode levels
        let mut rem = cell;
        let mut lv = vec![0usize; factors.len()];
        for (fi, f) in factors.iter().enumerate().rev() {
            lv[fi] = rem % f.levels.len();
            rem /= f.levels.len();
        }
        u.iter_mut().for_each(|x| *x = 0.0);
        u[0] = 1.0;
        let mut off = 1;
        for (fi, &d) in fdims.iter().enumerate() {
            if lv[fi] == d {
                for k in 0..d {
                    u[off + k] = -1.0;
                }
            } else {
                u[off + lv[fi]] = 1.0;
            }
            off += d;
        }
        let m = p - q;
        let s = &sums[cell * stride..cell * stride + stride];
        let cr = &cross[cell * qq..cell * qq + qq];
        let cf = c as f64;
        for a in 0..m {
            if u[a] == 0.0 {
                continue;
            }
            for b in 0..m {
                xtx[a * p + b] += cf * u[a] * u[b];
            }
            for j in 0..q {
                xtx[a * p + m + j] += u[a] * s[j];
                xtx[(m + j) * p + a] += u[a] * s[j];
            }
            xty[a] += u[a] * s[q];
        }
        let tri = |a: usize, b: usize| {
            let (a, b) = if a >= b { (a, b) } else { (b, a) };
            cr[a * (a + 1) / 2 + b]
        };
        for j in 0..q {
            for k in 0..q {
                xtx[(m + j) * p + m + k] += tri(j, k);
            }
            xty[m + j] += tri(q, j);
        }
        yty += tri(q, q);
    }
    let names = design_names(&factors, &cont_names);
    let l = linalg::cholesky(&xtx, p).map_err(|j| {
        StatsError::Degenerate(format!(
            "singular design: column `{}` is a linear combination of earlier columns (collinear covariates or confounded factors)",
            names[j]
        ))
    })?;
    let beta = linalg::chol_solve(&l, p, &xty);
    let vinv = linalg::chol_inverse(&l, p);
    let rss = (yty - beta.iter().zip(&xty).map(|(b, v)| b * v).sum::<f64>()).max(0.0);
    let df_resid = (n - p) as f64;
    let mse = rss / df_resid;
    if mse <= 1e-13 * (yty / n as f64).max(f64::MIN_POSITIVE) {
        return degenerate(
            "residual variance is zero (perfect fit): F tests and CIs are undefined",
        );
    }
    let r2 = 1.0 - rss / yty;
    // type III
    let mut type3 = Vec::new();
    let mut term_cols: Vec<(String, Vec<usize>, Option<f64>)> = Vec::new();
    // intercept: uncentred intercept = β0 − Σ βz zbar + ybar
    {
        let mut lvec = vec![0.0; p];
        lvec[0] = 1.0;
        for j in 0..q {
            lvec[p - q + j] = -zbar[j];
        }
        let est = dot(&lvec, &beta) + ybar;
        let var = linalg::quad(&vinv, p, &lvec, &lvec);
        let ss = est * est / var;
        type3.push(TypeIII {
            term: "Intercept".into(),
            df: 1,
            ss,
            f: ss / mse,
            p: f_sf(ss / mse, 1.0, df_resid),
        });
    }
    let mut off = 1;
    for (f, &d) in factors.iter().zip(&fdims) {
        term_cols.push((f.name.clone(), (off..off + d).collect(), None));
        off += d;
    }
    for (j, c) in cont_names.iter().enumerate() {
        term_cols.push((c.clone(), vec![off + j], None));
    }
    for (name, idx, _) in &term_cols {
        let vt = linalg::submatrix(&vinv, p, idx);
        let bt: Vec<f64> = idx.iter().map(|&i| beta[i]).collect();
        let k = idx.len();
        let lt = linalg::cholesky(&vt, k)
            .map_err(|_| StatsError::Degenerate(format!("term `{name}` is not estimable")))?;
        let sol = linalg::chol_solve(&lt, k, &bt);
        let ss = dot(&bt, &sol);
        let fstat = ss / k as f64 / mse;
        type3.push(TypeIII {
            term: name.clone(),
            df: k,
            ss,
            f: fstat,
            p: f_sf(fstat, k as f64, df_resid),
        });
    }
    // LS means for the treatment (factor 0)
    let trt = &factors[0];
    let tq = t_ppf(1.0 - alpha / 2.0, df_resid);
    let lvec_for = |level: usize| {
        let mut lv = vec![0.0; p];
        lv[0] = 1.0;
        let d = fdims[0];
        if level == d {
            for k in 0..d {
                lv[1 + k] = -1.0;
            }
        } else {
            lv[1 + level] = 1.0;
        }
        lv
    };
    let lsmeans: Vec<LsMean> = (0..trt.levels.len())
        .map(|a| {
            let lv = lvec_for(a);
            let est = dot(&lv, &beta) + ybar;
            let se = (mse * linalg::quad(&vinv, p, &lv, &lv)).sqrt();
            LsMean {
                level: trt.levels[a].clone(),
                n: trt.counts[a],
                estimate: est,
                se,
                lo: est - tq * se,
                hi: est + tq * se,
            }
        })
        .collect();
    let mut diffs = Vec::new();
    for a in 0..trt.levels.len() {
        for b in a + 1..trt.levels.len() {
            let la = lvec_for(a);
            let lb = lvec_for(b);
            let lv: Vec<f64> = la.iter().zip(&lb).map(|(x, y)| x - y).collect();
            let est = dot(&lv, &beta);
            let se = (mse * linalg::quad(&vinv, p, &lv, &lv)).sqrt();
            let t = est / se;
            diffs.push(LsDiff {
                a: trt.levels[a].clone(),
                b: trt.levels[b].clone(),
                estimate: est,
                se,
                lo: est - tq * se,
                hi: est + tq * se,
                t,
                p: t_p2(t, df_resid),
            });
        }
    }
    let coefficients = names
        .iter()
        .enumerate()
        .map(|(j, name)| Coef {
            term: name.clone(),
            estimate: if j == 0 {
                beta[0] + ybar - (0..q).map(|k| beta[p - q + k] * zbar[k]).sum::<f64>()
            } else {
                beta[j]
            },
            se: if j == 0 {
                let mut lvec = vec![0.0; p];
                lvec[0] = 1.0;
                for k in 0..q {
                    lvec[p - q + k] = -zbar[k];
                }
                (mse * linalg::quad(&vinv, p, &lvec, &lvec)).sqrt()
            } else {
                (mse * vinv[j * p + j]).sqrt()
            },
        })
        .collect();
    Ok(AncovaFit {
        response: spec.response.clone(),
        n: n as u64,
        df_resid,
        mse,
        r2,
        type3,
        treatment: trt.name.clone(),
        lsmeans,
        diffs,
        coefficients,
        alpha,
        dropped_rows: dropped,
    })
}

fn design_names(factors: &[Factor], cont: &[String]) -> Vec<String> {
    let mut v = vec!["Intercept".to_string()];
    for f in factors {
        for l in &f.levels[..f.levels.len() - 1] {
            v.push(format!("{}[S.{}]", f.name, l));
        }
    }
    v.extend(cont.iter().cloned());
    v
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---------------------------------------------------------------------------------------
// Logistic regression
// ---------------------------------------------------------------------------------------

/// One logistic-regression coefficient with its odds ratio.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogitCoef {
    pub term: String,
    pub estimate: f64,
    pub se: f64,
    pub or: f64,
    pub or_lo: f64,
    pub or_hi: f64,
    pub z: f64,
    pub p: f64,
}

/// Logistic regression result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogisticFit {
    pub response: String,
    pub event_value: String,
    pub n: u64,
    pub events: u64,
    pub coefficients: Vec<LogitCoef>,
    pub loglik: f64,
    pub loglik_null: f64,
    pub lr_chisq: f64,
    pub lr_df: usize,
    pub lr_p: f64,
    pub iterations: usize,
    pub alpha: f64,
    pub dropped_rows: usize,
}

/// Logistic regression of `response` (numeric 0/1, or any column with `event_value` marking
/// the event) on an intercept plus covariates. Character covariates (and those in
/// `factors`) become indicators with the first sorted level as reference.
pub fn logistic(
    ds: &Dataset,
    response: &str,
    event_value: Option<&str>,
    covariates: &[String],
    factors: &[String],
    reference: &[(String, String)],
    alpha: f64,
) -> Result<LogisticFit> {
    let rc = ds.column(response)?;
    let n_all = rc.data.len();
    if event_value.is_none() && ds.looks_numeric(response)? {
        // a 0/1 column with bad cells: name them rather than ask for --event-value
        ds.numeric(response)?;
    }
    let yv: Vec<Option<bool>> = (0..n_all)
        .map(|i| {
            if rc.missing_code(i).is_some() {
                return Ok(None);
            }
            match (event_value, &rc.data) {
                (Some(ev), _) => Ok(Some(rc.text(i) == ev)),
                (None, ColumnData::Numeric { values, .. }) => match values[i] {
                    1.0 => Ok(Some(true)),
                    0.0 => Ok(Some(false)),
                    x => Err(StatsError::Invalid(format!(
                        "response `{response}` {}: {x}; expected 0/1 or give --event-value",
                        ds.locate(i)
                    ))),
                },
                (None, ColumnData::Char(_)) => Err(StatsError::Invalid(format!(
                    "response `{response}` is character: give --event-value"
                ))),
            }
        })
        .collect::<Result<_>>()?;
    let cols: Vec<&crate::data::Column> = covariates
        .iter()
        .map(|c| ds.column(c))
        .collect::<Result<_>>()?;
    let keep: Vec<bool> = (0..n_all)
        .map(|i| yv[i].is_some() && cols.iter().all(|c| c.missing_code(i).is_none()))
        .collect();
    let dropped = keep.iter().filter(|k| !**k).count();
    let y: Vec<f64> = (0..n_all)
        .filter(|&i| keep[i])
        .map(|i| if yv[i] == Some(true) { 1.0 } else { 0.0 })
        .collect();
    let n = y.len();
    let mut xcols: Vec<Vec<f64>> = vec![vec![1.0; n]];
    let mut names = vec!["Intercept".to_string()];
    for c in &cols {
        let declared = factors.iter().any(|f| f.eq_ignore_ascii_case(&c.name));
        if ds.term_kind(&c.name, declared, Some("--factors"))? == TermKind::Factor {
            let mut f = factor_of(ds, &c.name, &keep)?;
            if let Some((_, r)) = reference
                .iter()
                .find(|(col, _)| col.eq_ignore_ascii_case(&c.name))
            {
                let coded = Codes {
                    levels: f.levels,
                    codes: f.idx,
                }
                .with_reference(r)?;
                f.levels = coded.levels;
                f.idx = coded.codes;
            }
            if f.levels.len() < 2 {
                return degenerate(format!("covariate `{}` has a single level", c.name));
            }
            for (l, name) in f.levels.iter().enumerate().skip(1) {
                xcols.push(
                    f.idx
                        .iter()
                        .map(|&k| (k as usize == l) as u8 as f64)
                        .collect(),
                );
                names.push(format!("{}={}", c.name, name));
            }
        } else {
            let v = ds.numeric(&c.name)?;
            xcols.push((0..n_all).filter(|&i| keep[i]).map(|i| v[i]).collect());
            names.push(c.name.clone());
        }
    }
    let events = y.iter().filter(|&&v| v == 1.0).count();
    if events == 0 || events == n {
        return degenerate(format!(
            "response `{response}` has {} among {n} complete rows: all outcomes identical, nothing to model",
            if events == 0 {
                "no events"
            } else {
                "only events"
            }
        ));
    }
    let p = xcols.len();
    if n <= p {
        return degenerate(format!("{n} complete rows for {p} parameters"));
    }
    // row-major design
    let mut x = vec![0.0; n * p];
    for (j, c) in xcols.iter().enumerate() {
        for i in 0..n {
            x[i * p + j] = c[i];
        }
    }
    let ybar = events as f64 / n as f64;
    let ll0 = events as f64 * ybar.ln() + (n - events) as f64 * (1.0 - ybar).ln();
    let mut beta = vec![0.0; p];
    beta[0] = (ybar / (1.0 - ybar)).ln();
    // Fixed-size chunks summed in chunk order: the result does not depend on the number
    // of threads.
    let eval = |beta: &[f64]| -> (f64, Vec<f64>, Vec<f64>) {
        use rayon::prelude::*;
        const CH: usize = 32_768;
        let parts: Vec<(f64, Vec<f64>, Vec<f64>)> = (0..n.div_ceil(CH))
            .into_par_iter()
            .map(|c| {
                let mut ll = 0.0;
                let mut g = vec![0.0; p];
                let mut h = vec![0.0; p * p];
                for i in c * CH..((c + 1) * CH).min(n) {
                    let xi = &x[i * p..i * p + p];
                    let eta = dot(xi, beta);
                    // log(1+exp(eta)) stably
                    let l1pe = if eta > 0.0 {
                        eta + (-eta).exp().ln_1p()
                    } else {
                        eta.exp().ln_1p()
                    };
                    ll += y[i] * eta - l1pe;
                    let mu = 1.0 / (1.0 + (-eta).exp());
                    let w = mu * (1.0 - mu);
                    let r = y[i] - mu;
                    for a in 0..p {
                        g[a] += r * xi[a];
                        let wa = w * xi[a];
                        for b in 0..=a {
                            h[a * p + b] += wa * xi[b];
                        }
                    }
                }
                (ll, g, h)
            })
            .collect();
        let mut ll = 0.0;
        let mut g = vec![0.0; p];
        let mut h = vec![0.0; p * p];
        for (l, gg, hh) in parts {
            ll += l;
            g.iter_mut().zip(&gg).for_each(|(a, b)| *a += b);
            h.iter_mut().zip(&hh).for_each(|(a, b)| *a += b);
        }
        for a in 0..p {
            for b in 0..a {
                h[b * p + a] = h[a * p + b];
            }
        }
        (ll, g, h)
    };
    let (mut ll, mut g, mut h) = eval(&beta);
    let mut converged = false;
    let mut iterations = 0;
    for it in 0..60 {
        iterations = it + 1;
        let l = linalg::cholesky(&h, p).map_err(|j| {
            StatsError::Degenerate(format!(
                "logistic regression: information matrix singular at `{}` (collinear covariates, or complete/quasi-complete separation)",
                names[j]
            ))
        })?;
        let step = linalg::chol_solve(&l, p, &g);
        let mut scale = 1.0;
        let mut accepted = false;
        for _ in 0..30 {
            let cand: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b + scale * s).collect();
            let (llc, gc, hc) = eval(&cand);
            if llc.is_finite() && llc >= ll - 1e-12 * ll.abs().max(1.0) {
                beta = cand;
                ll = llc;
                g = gc;
                h = hc;
                accepted = true;
                break;
            }
            scale *= 0.5;
        }
        if !accepted {
            break;
        }
        let maxstep = step
            .iter()
            .zip(&beta)
            .map(|(s, b)| (scale * s).abs() / b.abs().max(1.0))
            .fold(0.0, f64::max);
        if maxstep < 1e-10 {
            converged = true;
            break;
        }
    }
    // separation: fitted probabilities of exactly 0/1 or a diverging coefficient
    let max_abs_eta = (0..n)
        .map(|i| dot(&x[i * p..i * p + p], &beta).abs())
        .fold(0.0, f64::max);
    if !converged || ll > -1e-6 || max_abs_eta > 40.0 {
        return degenerate(format!(
            "logistic regression: complete or quasi-complete separation (the likelihood has no finite maximum; max |linear predictor| {max_abs_eta:.1}); consider exact or Firth logistic regression"
        ));
    }
    let l = linalg::cholesky(&h, p).map_err(|_| {
        StatsError::Degenerate("logistic regression: singular information at the estimate".into())
    })?;
    let vc = linalg::chol_inverse(&l, p);
    let zq = norm_ppf(1.0 - alpha / 2.0);
    let coefficients = (0..p)
        .map(|j| {
            let se = vc[j * p + j].sqrt();
            let z = beta[j] / se;
            LogitCoef {
                term: names[j].clone(),
                estimate: beta[j],
                se,
                or: beta[j].exp(),
                or_lo: (beta[j] - zq * se).exp(),
                or_hi: (beta[j] + zq * se).exp(),
                z,
                p: norm_p2(z),
            }
        })
        .collect();
    let lr = 2.0 * (ll - ll0);
    Ok(LogisticFit {
        response: response.to_string(),
        event_value: event_value.unwrap_or("1").to_string(),
        n: n as u64,
        events: events as u64,
        coefficients,
        loglik: ll,
        loglik_null: ll0,
        lr_chisq: lr,
        lr_df: p - 1,
        lr_p: chi2_sf(lr, (p - 1) as f64),
        iterations,
        alpha,
        dropped_rows: dropped,
    })
}
