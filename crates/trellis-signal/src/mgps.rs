//! DuMouchel's MGPS as openEBGM implements it.
//!
//! * Prior: λ ~ P·Gamma(α1, β1) + (1−P)·Gamma(α2, β2) (shape, rate).
//! * Marginal of a count: negative binomial mixture,
//!   f_k(n) = Γ(n+α_k)/(Γ(α_k) n!) · p_k^α_k (1−p_k)^n with p_k = β_k/(β_k+E).
//! * Hyperparameters maximize the likelihood truncated below `N*`
//!   (openEBGM `negLL`/`negLLsquash`): f*_k(n) = f_k(n)/(1 − F_k(N*−1)),
//!   optionally on data squashed by [`auto_squash`] (openEBGM `autoSquash`
//!   defaults), over several starting points (openEBGM `autoHyper` rules:
//!   converged, 0 < α, β < 100, 0 < P < 1, smallest negative log-likelihood,
//!   close to at least one other solution).
//! * Posterior: λ | n ~ Q_n·Gamma(α1+n, β1+E) + (1−Q_n)·Gamma(α2+n, β2+E)
//!   with Q_n from the untruncated marginals; EBGM = exp(E[ln λ]); EB05 and
//!   EB95 are the exact 5% and 95% quantiles of that posterior (solved by a
//!   safeguarded Newton iteration, not openEBGM's 2-decimal bisection).
//!
//! The optimizer is BFGS with analytic gradients in the unconstrained
//! parametrization (ln α1, ln β1, ln α2, ln β2, logit P); the maximum is the
//! same as openEBGM's `nlminb` on the raw parameters when that converges.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::special::{GammaMixture, digamma, gamma_p_lg, gamma_quantile, ln_1p, ln_gamma};

/// Hyperparameters θ = (α1, β1, α2, β2, P).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prior {
    pub alpha1: f64,
    pub beta1: f64,
    pub alpha2: f64,
    pub beta2: f64,
    pub p: f64,
}

impl Prior {
    pub const fn new(alpha1: f64, beta1: f64, alpha2: f64, beta2: f64, p: f64) -> Prior {
        Prior {
            alpha1,
            beta1,
            alpha2,
            beta2,
            p,
        }
    }

    fn to_u(self) -> [f64; 5] {
        [
            self.alpha1.ln(),
            self.beta1.ln(),
            self.alpha2.ln(),
            self.beta2.ln(),
            (self.p / (1.0 - self.p)).ln(),
        ]
    }

    fn from_u(u: &[f64; 5]) -> Prior {
        Prior {
            alpha1: u[0].exp(),
            beta1: u[1].exp(),
            alpha2: u[2].exp(),
            beta2: u[3].exp(),
            p: 1.0 / (1.0 + (-u[4]).exp()),
        }
    }
}

/// Starting points: the openEBGM vignette's five.
pub const DEFAULT_STARTS: [Prior; 5] = [
    Prior::new(0.2, 0.1, 2.0, 4.0, 1.0 / 3.0),
    Prior::new(0.1, 0.2, 10.0, 10.0, 0.2),
    Prior::new(0.3, 0.5, 6.0, 6.0, 0.5),
    Prior::new(0.5, 0.3, 12.0, 12.0, 0.8),
    Prior::new(0.2, 0.2, 5.0, 5.0, 0.4),
];

/// One (possibly squashed) data point: count `n`, expected `e`, weight `w`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitPoint {
    pub n: u32,
    pub e: f64,
    pub w: f64,
}

/// openEBGM `autoSquash` with its defaults: for every count with more than
/// 101 points (in count order), keep the 100/75/50/25/25… largest-E points
/// unsquashed and average the rest, sorted by E, into bins.
///
/// One stable sort by (count, E), then each count's run is squashed in
/// place: the same points, bins and order as squashing count by count.
pub fn auto_squash(points: &[FitPoint]) -> Vec<FitPoint> {
    auto_squash_owned(points.to_vec())
}

/// [`auto_squash`] of points the caller no longer needs (sorted in place).
/// Ties in (count, E) are ordered by weight, so the result does not depend
/// on the input order.
pub fn auto_squash_owned(mut sorted: Vec<FitPoint>) -> Vec<FitPoint> {
    const KEEP: [usize; 4] = [100, 75, 50, 25];
    const CUTS: [usize; 7] = [500, 1000, 10_000, 100_000, 500_000, 1_000_000, 5_000_000];
    const SUPERS: [usize; 8] = [50, 75, 150, 500, 750, 1000, 2000, 5000];
    sorted.par_sort_unstable_by(|a, b| {
        a.n.cmp(&b.n)
            .then(a.e.total_cmp(&b.e))
            .then(a.w.total_cmp(&b.w))
    });
    let mut out = Vec::with_capacity(sorted.len().min(1 << 20));
    let mut pos = 0usize;
    let mut i = 0usize;
    while i < sorted.len() {
        let count = sorted[i].n;
        let mut j = i;
        while j < sorted.len() && sorted[j].n == count {
            j += 1;
        }
        let sel = &sorted[i..j];
        let num = sel.len();
        if num > 101 {
            let keep = KEEP[pos.min(KEEP.len() - 1)];
            pos += 1;
            let to_squash = num - keep;
            let idx = CUTS
                .iter()
                .position(|&c| to_squash < c)
                .unwrap_or(CUTS.len());
            let supers = SUPERS[idx];
            let bin = ((to_squash as f64 / supers as f64).floor() as usize).max(2);
            for chunk in sel[..to_squash].chunks(bin) {
                let mean = chunk.iter().map(|p| p.e).sum::<f64>() / chunk.len() as f64;
                let w = chunk.iter().map(|p| p.w).sum::<f64>();
                out.push(FitPoint {
                    n: count,
                    e: mean,
                    w,
                });
            }
            out.extend_from_slice(&sel[to_squash..]);
        } else {
            out.extend_from_slice(sel);
        }
        i = j;
    }
    out
}

/// Log of the NB marginal and its derivatives (in α and β) for one component.
#[inline]
fn ln_nb(n: f64, alpha: f64, beta: f64, e: f64, lg_n_alpha: f64, lg_alpha: f64, lg_n1: f64) -> f64 {
    lg_n_alpha - lg_alpha - lg_n1 - alpha * ln_1p(e / beta) + n * (e / (beta + e)).ln()
}

/// Terms of one component that depend only on the count `n`:
/// `ln Γ(n+α) − ln Γ(α) − ln n!` and `ψ(n+α) − ψ(α)`.
#[derive(Clone, Copy)]
struct CountTerms {
    lg: f64,
    dg: f64,
}

fn count_terms(n: u32, alpha: f64, lg_alpha: f64, dg_alpha: f64) -> CountTerms {
    let nf = f64::from(n);
    if n <= 64 {
        // Exact recurrences (no cancellation between large ln Γ values): ln Γ(n+α)/Γ(α) = Σ ln(α+k), ψ(n+α) − ψ(α) = Σ 1/(α+k).
        let (mut lg, mut dg, mut lfact) = (0.0, 0.0, 0.0);
        for k in 0..n {
            let x = alpha + f64::from(k);
            lg += x.ln();
            dg += 1.0 / x;
            lfact += f64::from(k + 1).ln();
        }
        return CountTerms { lg: lg - lfact, dg };
    }
    CountTerms {
        lg: ln_gamma(nf + alpha) - lg_alpha - ln_gamma(nf + 1.0),
        dg: digamma(nf + alpha) - dg_alpha,
    }
}

/// Per-component truncated log-density and its gradient in (α, β).
#[inline]
#[allow(clippy::too_many_arguments)]
fn component(
    n: u32,
    e: f64,
    ln_e: f64,
    alpha: f64,
    beta: f64,
    ln_beta: f64,
    n_star: u32,
    terms: CountTerms,
    lower: &[CountTerms],
) -> (f64, f64, f64) {
    let nf = f64::from(n);
    // ln p = −ln(1 + E/β) without cancellation (α·ln p matters when α is large).
    let lp = -ln_1p(e / beta);
    // ln q = ln(E/(β+E)) = ln E − ln β + ln p, since ln(β+E) = ln β − ln p:
    // one logarithm per point and component fewer.
    let lq = ln_e - ln_beta + lp;
    let a_lp = alpha * lp;
    let lf = terms.lg + a_lp + nf * lq;
    let mut da = terms.dg + lp;
    let dbeta_common = alpha * e / beta;
    let inv_be = 1.0 / (beta + e);
    let mut db = (dbeta_common - nf) * inv_be;
    if n_star == 0 {
        return (lf, da, db);
    }
    // The tail 1 − F(N*−1) = 1 − Σ_{m<N*} f(m) and F's derivatives. Its
    // first term, 1 − f(0) = −expm1(α ln p), is computed without
    // cancellation: as α → 0 (a component fitted to a log-series-like tail
    // of counts) 1 − exp(α ln p) would keep only a few significant digits,
    // and the optimizer would chase that rounding noise.
    let em1 = a_lp.exp_m1();
    let f0 = 1.0 + em1;
    let mut tail = -em1;
    let mut dfa = f0 * lp;
    let mut dfb = f0 * dbeta_common * inv_be;
    for (m, t) in lower.iter().enumerate().take(n_star as usize).skip(1) {
        let mf = m as f64;
        let fm = (t.lg + a_lp + mf * lq).exp();
        tail -= fm;
        dfa += fm * (t.dg + lp);
        dfb += fm * (dbeta_common - mf) * inv_be;
    }
    da += dfa / tail;
    db += dfb / tail;
    (lf - tail.ln(), da, db)
}

/// Negative log-likelihood (openEBGM `negLLsquash`; `negLL` when all
/// weights are 1) and its gradient in the unconstrained parametrization.
/// Points sorted by count evaluate fastest (count terms are cached).
pub fn neg_log_lik(prior: &Prior, points: &[FitPoint], n_star: u32) -> (f64, [f64; 5]) {
    let ln_e: Vec<f64> = points.iter().map(|p| p.e.ln()).collect();
    neg_log_lik_with(prior, points, &ln_e, n_star)
}

/// [`neg_log_lik`] with `ln E` of every point given (the optimizer computes
/// them once, not once per evaluation; the result is bit for bit the same).
fn neg_log_lik_with(
    prior: &Prior,
    points: &[FitPoint],
    ln_es: &[f64],
    n_star: u32,
) -> (f64, [f64; 5]) {
    let Prior {
        alpha1,
        beta1,
        alpha2,
        beta2,
        p,
    } = *prior;
    let (lg1, lg2) = (ln_gamma(alpha1), ln_gamma(alpha2));
    let (dg1, dg2) = (digamma(alpha1), digamma(alpha2));
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let (ln_beta1, ln_beta2) = (beta1.ln(), beta2.ln());
    let lower1: Vec<CountTerms> = (0..n_star)
        .map(|m| count_terms(m, alpha1, lg1, dg1))
        .collect();
    let lower2: Vec<CountTerms> = (0..n_star)
        .map(|m| count_terms(m, alpha2, lg2, dg2))
        .collect();
    let (f, g) = points
        .par_chunks(8192)
        .zip(ln_es.par_chunks(8192))
        .map(|(chunk, ln_es)| {
            let mut f = 0.0;
            let mut g = [0.0; 5];
            let mut cached_n = u32::MAX;
            let mut t1 = CountTerms { lg: 0.0, dg: 0.0 };
            let mut t2 = t1;
            for (pt, &ln_e) in chunk.iter().zip(ln_es) {
                if pt.n != cached_n {
                    cached_n = pt.n;
                    t1 = count_terms(pt.n, alpha1, lg1, dg1);
                    t2 = count_terms(pt.n, alpha2, lg2, dg2);
                }
                let (l1, da1, db1) = component(
                    pt.n, pt.e, ln_e, alpha1, beta1, ln_beta1, n_star, t1, &lower1,
                );
                let (l2, da2, db2) = component(
                    pt.n, pt.e, ln_e, alpha2, beta2, ln_beta2, n_star, t2, &lower2,
                );
                let (x1, x2) = (lp + l1, lq + l2);
                // ll = ln(e^x1 + e^x2); r1 = e^(x1 - ll), r2 = 1 - r1.
                let (ll, r1) = if x1 >= x2 {
                    let t = (x2 - x1).exp();
                    (x1 + ln_1p(t), 1.0 / (1.0 + t))
                } else {
                    let t = (x1 - x2).exp();
                    (x2 + ln_1p(t), t / (1.0 + t))
                };
                let r2 = 1.0 - r1;
                f -= pt.w * ll;
                g[0] -= pt.w * r1 * da1 * alpha1;
                g[1] -= pt.w * r1 * db1 * beta1;
                g[2] -= pt.w * r2 * da2 * alpha2;
                g[3] -= pt.w * r2 * db2 * beta2;
                // d ll / dP = (f1* - f2*)/L = r1/P - r2/(1-P); d P/d logit = P(1-P)
                g[4] -= pt.w * (r1 * (1.0 - p) - r2 * p);
            }
            (f, g)
        })
        .collect::<Vec<_>>()
        .into_iter()
        // Chunk sums added in chunk order: a reduction tree shaped by work
        // stealing would round differently from run to run, and on flat
        // likelihoods the optimizer's path (and the fitted prior) with it.
        .fold((0.0, [0.0; 5]), |(fa, ga), (fb, gb)| {
            let mut g = ga;
            for i in 0..5 {
                g[i] += gb[i];
            }
            (fa + fb, g)
        });
    (f, g)
}

/// Result of one start.
#[derive(Debug, Clone, Serialize)]
pub struct StartResult {
    pub start: Prior,
    pub estimate: Prior,
    pub neg_log_lik: f64,
    pub iterations: usize,
    pub converged: bool,
    pub in_bounds: bool,
    /// Index of an earlier start whose run this one shares: the two starts
    /// were the same point (to [`SAME_START`] in the log/logit scale), as
    /// warm starts from one squashed optimum are, so the optimizer was run
    /// once for both.
    pub same_as: Option<usize>,
    /// BFGS's final inverse-Hessian approximation (unconstrained coordinates).
    #[serde(skip)]
    pub inverse_hessian: InverseHessian,
}

/// Starts closer than this in every unconstrained coordinate (ln α, ln β,
/// logit P) are run once: from points that close, BFGS ends at the same
/// optimum to within its own convergence tolerance.
pub const SAME_START: f64 = 1e-6;

/// Fitted prior and diagnostics.
#[derive(Debug, Clone, Serialize)]
pub struct FitResult {
    pub prior: Prior,
    pub loglik: f64,
    pub n_points: usize,
    pub total_weight: f64,
    pub starts: Vec<StartResult>,
    /// Other convergent estimates within openEBGM's tolerances of the chosen one.
    pub num_close: usize,
    pub warnings: Vec<String>,
}

fn dot(a: &[f64; 5], b: &[f64; 5]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// BFGS with a backtracking (Armijo) line search in the unconstrained space.
/// Inverse-Hessian approximation of BFGS in the unconstrained coordinates.
pub type InverseHessian = [[f64; 5]; 5];

/// BFGS from `start`, with `h0` as the initial inverse Hessian when given
/// (the final one of a fit of the same model on squashed points is a far
/// better first guess than a scaled identity). Returns the estimate, its
/// negative log-likelihood, the iterations, convergence and the final
/// inverse Hessian.
fn bfgs(
    start: Prior,
    h0: Option<&InverseHessian>,
    points: &[FitPoint],
    n_star: u32,
) -> (Prior, f64, usize, bool, InverseHessian) {
    let mut u = start.to_u();
    let ln_es: Vec<f64> = points.iter().map(|p| p.e.ln()).collect();
    let eval = |u: &[f64; 5]| {
        let (f, g) = neg_log_lik_with(&Prior::from_u(u), points, &ln_es, n_star);
        if f.is_finite() && g.iter().all(|x| x.is_finite()) {
            (f, g)
        } else {
            (f64::INFINITY, [0.0; 5])
        }
    };
    let (mut f, mut g) = eval(&u);
    if !f.is_finite() {
        return (start, f, 0, false, h0.copied().unwrap_or([[0.0; 5]; 5]));
    }
    let scale = points.iter().map(|p| p.w).sum::<f64>().max(1.0);
    let mut h = [[0.0; 5]; 5];
    for (i, row) in h.iter_mut().enumerate() {
        row[i] = 1.0 / scale;
    }
    if let Some(h0) = h0
        && h0.iter().flatten().all(|x| x.is_finite())
    {
        h = *h0;
    }
    let mut converged = false;
    let mut it = 0;
    let mut stall = 0;
    while it < 500 {
        it += 1;
        if u.iter().any(|x| x.abs() > 35.0) {
            // A parameter ran off to 0 or infinity (outside openEBGM's bounds).
            break;
        }
        let gmax = g.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if gmax <= 1e-10 * scale {
            converged = true;
            break;
        }
        let mut d = [0.0; 5];
        for i in 0..5 {
            d[i] = -(0..5).map(|j| h[i][j] * g[j]).sum::<f64>();
        }
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Reset to steepest descent.
            for (i, row) in h.iter_mut().enumerate() {
                *row = [0.0; 5];
                row[i] = 1.0 / scale;
            }
            for i in 0..5 {
                d[i] = -g[i] / scale;
            }
            slope = dot(&g, &d);
        }
        // Limit the step in the unconstrained space.
        let dmax = d.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut t = if dmax > 2.0 { 2.0 / dmax } else { 1.0 };
        let mut accepted = None;
        let near_flat = gmax <= 1e-4 * scale.sqrt();
        for _ in 0..60 {
            if near_flat && t * slope.abs() < 1e-14 * f.abs() {
                // With the gradient already small, the decrease this step
                // could bring is below the rounding noise of a sum over all
                // points: halving further only costs evaluations (at the
                // optimum it cost up to 38 per start, 40% of a fit's
                // evaluations at 25M reports). With a large gradient and a
                // tiny step (a badly scaled inverse Hessian) it goes on.
                break;
            }
            let mut un = u;
            for i in 0..5 {
                un[i] += t * d[i];
            }
            let (fn_, gn) = eval(&un);
            if fn_.is_finite() && fn_ <= f + 1e-4 * t * slope {
                accepted = Some((un, fn_, gn));
                break;
            }
            t *= 0.5;
        }
        let Some((un, fn_, gn)) = accepted else {
            // No decrease possible along d: at machine precision.
            converged = gmax <= 1e-4 * scale.sqrt();
            break;
        };
        let mut s = [0.0; 5];
        let mut y = [0.0; 5];
        for i in 0..5 {
            s[i] = un[i] - u[i];
            y[i] = gn[i] - g[i];
        }
        let sy = dot(&s, &y);
        let df = f - fn_;
        u = un;
        f = fn_;
        g = gn;
        if sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            let rho = 1.0 / sy;
            let mut hy = [0.0; 5];
            for i in 0..5 {
                hy[i] = (0..5).map(|j| h[i][j] * y[j]).sum();
            }
            let yhy = dot(&y, &hy);
            for i in 0..5 {
                for j in 0..5 {
                    h[i][j] += -rho * (hy[i] * s[j] + s[i] * hy[j])
                        + (rho * rho * yhy + rho) * s[i] * s[j];
                }
            }
        }
        if df.abs() <= 1e-15 * f.abs() && dot(&s, &s).sqrt() < 1e-12 {
            converged = true;
            break;
        }
        // nlminb's "relative convergence" (rel.tol 1e-10, its default, which
        // openEBGM keeps and counts as converged), held for three
        // iterations (after one, a start on the 25M synthetic set stopped
        // 1.8 log-likelihood units short). Where the likelihood is highest
        // on the boundary α → 0 it keeps improving by ever smaller amounts,
        // and stopping on the gradient alone took hundreds of unsquashed
        // evaluations there.
        stall = if df <= 1e-10 * f.abs() { stall + 1 } else { 0 };
        if stall >= 3 {
            converged = true;
            break;
        }
    }
    (Prior::from_u(&u), f, it, converged, h)
}

const PARAM_LIMIT: f64 = 100.0;
/// A fitted shape below this is taken for a component that degenerated
/// toward α → 0 (see the warning in [`fit_prior_from`]).
const DEGENERATE_ALPHA: f64 = 1e-6;
const CLOSE_TOL: [f64; 5] = [0.05, 0.05, 0.2, 0.2, 0.025];

fn in_bounds(p: &Prior) -> bool {
    [p.alpha1, p.beta1, p.alpha2, p.beta2]
        .iter()
        .all(|&x| x > 0.0 && x < PARAM_LIMIT)
        && p.p > 0.0
        && p.p < 1.0
}

fn close(a: &Prior, b: &Prior) -> bool {
    let da = [
        (a.alpha1 - b.alpha1).abs(),
        (a.beta1 - b.beta1).abs(),
        (a.alpha2 - b.alpha2).abs(),
        (a.beta2 - b.beta2).abs(),
        (a.p - b.p).abs(),
    ];
    da.iter().zip(CLOSE_TOL).all(|(d, t)| *d < t)
}

/// Component labelling: openEBGM does not reorder; neither do we, but two
/// starts that converged to the swapped labelling are compared swapped.
fn swapped(p: &Prior) -> Prior {
    Prior::new(p.alpha2, p.beta2, p.alpha1, p.beta1, 1.0 - p.p)
}

/// Fits the prior by maximum likelihood from several starts.
pub fn fit_prior(
    points: &[FitPoint],
    n_star: u32,
    starts: &[Prior],
    on_start_done: &(dyn Fn() + Sync),
) -> Result<FitResult> {
    let cold: Vec<(Prior, Option<InverseHessian>)> = starts.iter().map(|&s| (s, None)).collect();
    fit_prior_from(points, n_star, &cold, on_start_done)
}

/// [`fit_prior`] from starts that may carry an initial inverse Hessian
/// (warm starts: each start's estimate and final inverse Hessian on the
/// squashed points, see [`StartResult::inverse_hessian`]).
pub fn fit_prior_from(
    points: &[FitPoint],
    n_star: u32,
    starts: &[(Prior, Option<InverseHessian>)],
    on_start_done: &(dyn Fn() + Sync),
) -> Result<FitResult> {
    if points.is_empty() {
        return Err(Error::Fit(format!(
            "no pairs with count >= {n_star} to fit the prior"
        )));
    }
    // Sort by count (count terms are cached per run of equal n) and merge
    // points with identical (n, E) into one weighted point: exact, and large
    // unsquashed tables have many ties in E = n1.·n.1/N.
    let mut sorted = points.to_vec();
    sorted.par_sort_unstable_by(|a, b| {
        a.n.cmp(&b.n)
            .then(a.e.total_cmp(&b.e))
            .then(a.w.total_cmp(&b.w))
    });
    let mut merged: Vec<FitPoint> = Vec::with_capacity(sorted.len());
    for p in sorted {
        match merged.last_mut() {
            Some(last) if last.n == p.n && last.e == p.e => last.w += p.w,
            _ => merged.push(p),
        }
    }
    let points = &merged[..];
    // Each start is run once per group of (near-)identical starts.
    // `same_as[i]` names a start that is itself run (the first of its group).
    let mut same_as: Vec<Option<usize>> = Vec::with_capacity(starts.len());
    for (i, (s, _)) in starts.iter().enumerate() {
        let u = s.to_u();
        let same = (0..i)
            .find(|&j| {
                let v = starts[j].0.to_u();
                u.iter().zip(&v).all(|(a, b)| (a - b).abs() <= SAME_START)
            })
            .map(|j| same_as[j].unwrap_or(j));
        same_as.push(same);
    }
    type Run = (Prior, f64, usize, bool, InverseHessian);
    let runs: Vec<Option<Run>> = starts
        .par_iter()
        .zip(&same_as)
        .map(|((start, h0), same)| {
            let run = same
                .is_none()
                .then(|| bfgs(*start, h0.as_ref(), points, n_star));
            on_start_done();
            run
        })
        .collect();
    let results: Vec<StartResult> = starts
        .iter()
        .zip(&same_as)
        .enumerate()
        .map(|(i, (&(start, _), &same))| {
            let (est, nll, iterations, converged, h) =
                runs[same.unwrap_or(i)].unwrap_or((start, f64::NAN, 0, false, [[0.0; 5]; 5]));
            StartResult {
                start,
                estimate: est,
                neg_log_lik: nll,
                iterations,
                converged,
                in_bounds: in_bounds(&est),
                same_as: same,
                inverse_hessian: h,
            }
        })
        .collect();
    let mut warnings = Vec::new();
    let good: Vec<&StartResult> = results
        .iter()
        .filter(|r| r.converged && r.in_bounds && r.neg_log_lik.is_finite())
        .collect();
    let best = if let Some(b) = good
        .iter()
        .min_by(|a, b| a.neg_log_lik.total_cmp(&b.neg_log_lik))
    {
        *b
    } else {
        warnings.push(
            "no start converged inside the parameter space (0 < alpha, beta < 100, 0 < P < 1); \
             the smallest negative log-likelihood overall is reported"
                .into(),
        );
        results
            .iter()
            .filter(|r| r.neg_log_lik.is_finite())
            .min_by(|a, b| a.neg_log_lik.total_cmp(&b.neg_log_lik))
            .ok_or_else(|| Error::Fit("the likelihood is not finite at any start".into()))?
    };
    let num_close = results
        .iter()
        .filter(|r| !std::ptr::eq(*r, best))
        .filter(|r| {
            close(&r.estimate, &best.estimate) || close(&swapped(&r.estimate), &best.estimate)
        })
        .count();
    if num_close == 0 && starts.len() > 1 {
        warnings.push("the chosen estimate is not close to any other start's estimate (openEBGM's autoHyper would reject it)".into());
    }
    let est = best.estimate;
    if est.alpha1.min(est.alpha2) < DEGENERATE_ALPHA {
        // With N* ≥ 1 the likelihood no longer depends on a vanishing α
        // (the component becomes a log-series law of the counts), but the
        // posterior weight of that component, and so EBGM, EB05 and EB95
        // of pairs it would explain, is proportional to α: those measures
        // then depend on where the fit stopped, not on the data.
        warnings.push(format!(
            "a prior component degenerated (alpha1 = {:.3e}, alpha2 = {:.3e}): the likelihood \
             is at its supremum on the boundary alpha -> 0, so the posterior weight of that \
             component is ill-determined; EBGM/EB05/EB95 are not reliable for these data \
             (PRR, ROR and IC are unaffected)",
            est.alpha1, est.alpha2
        ));
    }
    Ok(FitResult {
        prior: best.estimate,
        loglik: -best.neg_log_lik,
        n_points: points.len(),
        total_weight: points.iter().map(|p| p.w).sum(),
        starts: results,
        num_close,
        warnings,
    })
}

/// EBGM, EB05, EB95 and Q_n of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Posterior {
    pub qn: f64,
    pub ebgm: f64,
    pub eb05: f64,
    pub eb95: f64,
}

/// Posterior calculator with per-count tables of ln Γ and ψ.
#[derive(Debug, Clone)]
pub struct PosteriorCalc {
    prior: Prior,
    lg_a1: f64,
    lg_a2: f64,
    table: Vec<[f64; 4]>,
    /// Per count n: 5% and 95% quantiles of Gamma(α1+n, 1) and Gamma(α2+n, 1),
    /// used as Newton starting values (the mixture quantile is close to the
    /// heavier component's).
    start: Vec<[f64; 4]>,
    /// `q·f(q)` at each of those quantiles `q` (f the Gamma(α+n, 1)
    /// density): the scale-free slope of the component's CDF there.
    start_slope: Vec<[f64; 4]>,
    z05: f64,
    z95: f64,
    /// Per count, where many pairs share it: `ln EB05` and `ln EB95` on a
    /// grid in `ln E` (see [`PosteriorCalc::with_start_grids`]).
    grids: Vec<Option<StartGrid>>,
}

const TABLE_LIMIT: u32 = 1 << 14;

/// Exact `ln EB05` and `ln EB95` of one count at `ln E = t0 + i·h`.
#[derive(Debug, Clone)]
struct StartGrid {
    t0: f64,
    inv_h: f64,
    q05: Vec<f64>,
    q95: Vec<f64>,
}

/// Grid step in `ln E`. Cubic interpolation on this grid is within about
/// 1e-10 of `ln EB05`/`ln EB95` where the posterior is smooth in E, so one
/// Newton step from there is exact to machine precision.
const GRID_STEP: f64 = 1.0 / 128.0;
/// A count gets a grid only when it has this many pairs per grid point.
const GRID_PAIRS_PER_POINT: usize = 4;

impl StartGrid {
    /// Cubic (4-point Lagrange) interpolation at `t`; `None` outside the
    /// grid's interior.
    #[inline]
    fn at(&self, t: f64) -> Option<(f64, f64)> {
        let u = (t - self.t0) * self.inv_h;
        // Also refuses NaN.
        if u.is_nan() || u < 1.0 {
            return None;
        }
        let i = u as usize;
        if i + 2 >= self.q05.len() {
            return None;
        }
        let f = u - i as f64;
        // Weights of the points at i-1, i, i+1, i+2 for 0 <= f < 1.
        let w0 = -f * (f - 1.0) * (f - 2.0) / 6.0;
        let w1 = (f + 1.0) * (f - 1.0) * (f - 2.0) / 2.0;
        let w2 = -(f + 1.0) * f * (f - 2.0) / 2.0;
        let w3 = (f + 1.0) * f * (f - 1.0) / 6.0;
        let q = |v: &[f64]| w0 * v[i - 1] + w1 * v[i] + w2 * v[i + 1] + w3 * v[i + 2];
        Some((q(&self.q05), q(&self.q95)))
    }
}

impl PosteriorCalc {
    pub fn new(prior: Prior, max_n: u32) -> PosteriorCalc {
        Self::with_counts(prior, max_n, |_| true)
    }

    /// Like [`PosteriorCalc::new`] for the counts of a pair table: the
    /// per-count start values are computed only for counts that occur.
    pub fn for_counts(prior: Prior, counts: &[u32]) -> PosteriorCalc {
        let max_n = counts.iter().copied().max().unwrap_or(0);
        let mut present = vec![false; max_n.min(TABLE_LIMIT) as usize + 1];
        for &n in counts {
            if let Some(p) = present.get_mut(n as usize) {
                *p = true;
            }
        }
        Self::with_counts(prior, max_n, |n| present[n as usize])
    }

    fn with_counts(
        prior: Prior,
        max_n: u32,
        present: impl Fn(u32) -> bool + Sync,
    ) -> PosteriorCalc {
        let top = max_n.min(TABLE_LIMIT);
        let table: Vec<[f64; 4]> = (0..=top).map(|n| Self::row(&prior, n)).collect();
        let start: Vec<[f64; 4]> = (0..=top)
            .into_par_iter()
            .map(|n| {
                if !present(n) {
                    return [f64::NAN; 4];
                }
                let nf = f64::from(n);
                [
                    gamma_quantile(0.05, prior.alpha1 + nf),
                    gamma_quantile(0.95, prior.alpha1 + nf),
                    gamma_quantile(0.05, prior.alpha2 + nf),
                    gamma_quantile(0.95, prior.alpha2 + nf),
                ]
            })
            .collect();
        let start_slope = start
            .iter()
            .zip(&table)
            .enumerate()
            .map(|(n, (q, row))| {
                let nf = n as f64;
                let slope = |q: f64, a: f64, lg: f64| (a * q.ln() - q - lg).exp();
                let (a1, a2) = (prior.alpha1 + nf, prior.alpha2 + nf);
                [
                    slope(q[0], a1, row[0]),
                    slope(q[1], a1, row[0]),
                    slope(q[2], a2, row[1]),
                    slope(q[3], a2, row[1]),
                ]
            })
            .collect();
        PosteriorCalc {
            prior,
            lg_a1: ln_gamma(prior.alpha1),
            lg_a2: ln_gamma(prior.alpha2),
            table,
            start,
            start_slope,
            z05: -crate::special::Z95,
            z95: crate::special::Z95,
            grids: Vec::new(),
        }
    }

    /// Tabulates start values for the counts shared by many of the pairs
    /// `(counts[k], expected[k])`: the exact quantiles on a grid in `ln E`
    /// over the range of E seen with that count. A pair then needs about one
    /// Newton step per quantile instead of two or three; the result is the
    /// same exact quantile.
    pub fn with_start_grids(mut self, counts: &[u32], expected: &[f64]) -> PosteriorCalc {
        let top = self.start.len();
        // Per count: number of pairs and the range of ln E.
        let empty = || vec![(0usize, f64::INFINITY, f64::NEG_INFINITY); top];
        let ranges = counts
            .par_iter()
            .zip(expected)
            .with_min_len(1 << 16)
            .fold(empty, |mut acc, (&n, &e)| {
                if let Some(r) = acc.get_mut(n as usize)
                    && e > 0.0
                    && e.is_finite()
                {
                    let t = e.ln();
                    r.0 += 1;
                    r.1 = r.1.min(t);
                    r.2 = r.2.max(t);
                }
                acc
            })
            .reduce(empty, |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x = (x.0 + y.0, x.1.min(y.1), x.2.max(y.2));
                }
                a
            });
        let plans: Vec<(u32, f64, usize)> = ranges
            .iter()
            .enumerate()
            .filter_map(|(n, &(pairs, lo, hi))| {
                if n == 0 || pairs == 0 {
                    return None;
                }
                // One step of margin on each side for the interpolation stencil.
                let points = ((hi - lo) / GRID_STEP).ceil() as usize + 4;
                (points * GRID_PAIRS_PER_POINT <= pairs).then_some((
                    n as u32,
                    lo - 1.5 * GRID_STEP,
                    points,
                ))
            })
            .collect();
        let mut grids: Vec<Option<StartGrid>> = vec![None; top];
        for (n, t0, points) in plans {
            let (q05, q95): (Vec<f64>, Vec<f64>) = (0..points)
                .into_par_iter()
                .map(|i| {
                    let e = (t0 + i as f64 * GRID_STEP).exp();
                    let p = self.posterior(n, e);
                    (p.eb05.ln(), p.eb95.ln())
                })
                .unzip();
            if q05.iter().chain(&q95).all(|x| x.is_finite()) {
                grids[n as usize] = Some(StartGrid {
                    t0,
                    inv_h: 1.0 / GRID_STEP,
                    q05,
                    q95,
                });
            }
        }
        self.grids = grids;
        self
    }

    fn row(prior: &Prior, n: u32) -> [f64; 4] {
        let nf = f64::from(n);
        [
            ln_gamma(prior.alpha1 + nf),
            ln_gamma(prior.alpha2 + nf),
            digamma(prior.alpha1 + nf),
            digamma(prior.alpha2 + nf),
        ]
    }

    /// EB05 and EB95 when one component carries almost all the posterior
    /// weight (as for most pairs under priors fitted to spontaneous
    /// reports). The heavier component's quantile `x0` is tabulated by
    /// count, and `F(x0) − p` reduces to `w·(P_minor(x0) − p)` with `w` the
    /// lighter component's weight, so the Newton step from `x0` costs one
    /// incomplete gamma instead of two. Taken only when that step is below
    /// 1e-9 in `ln x` (the rule of [`crate::special::solve_increasing`]:
    /// quadratic convergence leaves an error near 1e-18); otherwise `None`
    /// and the caller runs the full solver.
    #[inline]
    fn minor_component_quantiles(
        &self,
        n: u32,
        l1: f64,
        l2: f64,
        mix: &GammaMixture,
    ) -> Option<(f64, f64)> {
        let q = self.start.get(n as usize)?;
        let d = self.start_slope.get(n as usize)?;
        // `mix.w` is Q_n; 1 − Q_n is recomputed from the log-likelihoods
        // so that, when it is the small weight, it keeps its precision.
        let w1 = mix.w;
        let w2 = 1.0 / (1.0 + (l1 - l2).exp());
        let (major, minor) = if w1 >= w2 { (0, 1) } else { (1, 0) };
        let w = [w1, w2];
        if w[minor].is_nan() || w[minor] >= 1e-6 {
            return None;
        }
        let shape = [mix.a1, mix.a2];
        let rate = [mix.r1, mix.r2];
        let lg = [mix.lg1, mix.lg2];
        let solve = |p: f64, k: usize| -> Option<f64> {
            // k: 0 for the 5% quantile, 1 for the 95% one.
            let x0 = q[2 * major + k] / rate[major];
            if !(x0 > 0.0 && x0.is_finite()) {
                return None;
            }
            let xm = rate[minor] * x0;
            let g = w[minor] * (gamma_p_lg(shape[minor], lg[minor], xm) - p);
            if g == 0.0 {
                return Some(x0);
            }
            let slope = w[major] * d[2 * major + k]
                + w[minor] * (shape[minor] * xm.ln() - xm - lg[minor]).exp();
            let step = g / slope;
            (step.abs() <= 1e-9).then(|| (x0.ln() - step).exp())
        };
        Some((solve(0.05, 0)?, solve(0.95, 1)?))
    }

    /// Posterior of count `n` with expected count `e`.
    pub fn posterior(&self, n: u32, e: f64) -> Posterior {
        let pr = &self.prior;
        let [lgn1, lgn2, dg1, dg2] = match self.table.get(n as usize) {
            Some(r) => *r,
            None => Self::row(pr, n),
        };
        let nf = f64::from(n);
        let lg_n1 = 0.0; // ln n! cancels in Q_n
        let l1 = pr.p.ln() + ln_nb(nf, pr.alpha1, pr.beta1, e, lgn1, self.lg_a1, lg_n1);
        let l2 = (1.0 - pr.p).ln() + ln_nb(nf, pr.alpha2, pr.beta2, e, lgn2, self.lg_a2, lg_n1);
        let qn = 1.0 / (1.0 + (l2 - l1).exp());
        let (r1, r2) = (pr.beta1 + e, pr.beta2 + e);
        let elog = qn * (dg1 - r1.ln()) + (1.0 - qn) * (dg2 - r2.ln());
        let mix = GammaMixture {
            w: qn,
            a1: pr.alpha1 + nf,
            r1,
            lg1: lgn1,
            a2: pr.alpha2 + nf,
            r2,
            lg2: lgn2,
        };
        if let Some((eb05, eb95)) = self.minor_component_quantiles(n, l1, l2, &mix) {
            return Posterior {
                qn,
                ebgm: elog.exp(),
                eb05,
                eb95,
            };
        }
        let grid = self.grids.get(n as usize).and_then(|g| g.as_ref());
        let (eb05, eb95) = match (grid.and_then(|g| g.at(e.ln())), self.start.get(n as usize)) {
            (Some((l05, l95)), _) => (
                mix.quantile_from(0.05, l05.exp()),
                mix.quantile_from(0.95, l95.exp()),
            ),
            (None, Some(q)) if q[0].is_nan() => {
                (mix.quantile(0.05, self.z05), mix.quantile(0.95, self.z95))
            }
            (None, Some(q)) if qn >= 0.5 => (
                mix.quantile_from(0.05, q[0] / r1),
                mix.quantile_from(0.95, q[1] / r1),
            ),
            (None, Some(q)) => (
                mix.quantile_from(0.05, q[2] / r2),
                mix.quantile_from(0.95, q[3] / r2),
            ),
            (None, None) => (mix.quantile(0.05, self.z05), mix.quantile(0.95, self.z95)),
        };
        Posterior {
            qn,
            ebgm: elog.exp(),
            eb05,
            eb95,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts() -> Vec<FitPoint> {
        (0..300)
            .map(|i| FitPoint {
                n: 1 + (i % 7) as u32 * (i % 3) as u32,
                e: 0.05 + (i as f64) * 0.01,
                w: 1.0,
            })
            .collect()
    }

    /// As α → 0 a component truncated at N* = 1 tends to the log-series law
    /// q^n / (n·(−ln p)); the tail 1 − f(0) must keep its precision there
    /// (computed as 1 − exp(α ln p) it kept about four digits at α = 1e-13).
    #[test]
    fn truncated_component_reaches_the_log_series_limit() {
        let (beta, e): (f64, f64) = (6e-4, 2.5);
        let lp = -(e / beta).ln_1p();
        let lq = (e / (beta + e)).ln();
        for alpha in [1e-9, 1e-11, 1e-13, 1e-15] {
            let lower = [count_terms(0, alpha, ln_gamma(alpha), digamma(alpha))];
            for n in [1u32, 2, 7] {
                let terms = count_terms(n, alpha, ln_gamma(alpha), digamma(alpha));
                let (l, _, _) = component(n, e, e.ln(), alpha, beta, beta.ln(), 1, terms, &lower);
                let limit = f64::from(n) * lq - f64::from(n).ln() - (-lp).ln();
                let rel = ((l - limit) / limit).abs();
                assert!(rel < 1e-8, "alpha {alpha} n {n}: {l} vs {limit} ({rel:e})");
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let p = Prior::new(0.4, 0.3, 3.0, 2.0, 0.3);
        for n_star in [1, 2] {
            let points: Vec<FitPoint> = pts().into_iter().filter(|x| x.n >= n_star).collect();
            let (_, g) = neg_log_lik(&p, &points, n_star);
            let u = p.to_u();
            for i in 0..5 {
                let h = 1e-6;
                let mut up = u;
                up[i] += h;
                let mut dn = u;
                dn[i] -= h;
                let fd = (neg_log_lik(&Prior::from_u(&up), &points, n_star).0
                    - neg_log_lik(&Prior::from_u(&dn), &points, n_star).0)
                    / (2.0 * h);
                assert!(
                    (fd - g[i]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "i={i} fd={fd} g={}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn squash_keeps_weight_and_count() {
        let mut points = Vec::new();
        for i in 0..5000 {
            points.push(FitPoint {
                n: 1,
                e: i as f64 * 1e-3,
                w: 1.0,
            });
        }
        for i in 0..150 {
            points.push(FitPoint {
                n: 2,
                e: i as f64 * 1e-2,
                w: 1.0,
            });
        }
        let sq = auto_squash(&points);
        let w: f64 = sq.iter().map(|p| p.w).sum();
        assert_eq!(w, 5150.0);
        // count 1: 4900 to squash -> 150 superpoints of 32 (+ remainder 4) + 100 kept
        assert_eq!(sq.iter().filter(|p| p.n == 1).count(), 154 + 100);
        // count 2 (second position): keep 75, 75 to squash in bins of 2 -> 38 + 75
        assert_eq!(sq.iter().filter(|p| p.n == 2).count(), 38 + 75);
    }

    #[test]
    fn posterior_is_ordered() {
        let calc = PosteriorCalc::new(Prior::new(0.2, 0.1, 2.0, 4.0, 1.0 / 3.0), 100);
        let p = calc.posterior(5, 0.7);
        assert!(p.eb05 < p.ebgm && p.ebgm < p.eb95, "{p:?}");
    }

    #[test]
    fn start_grids_give_the_same_quantiles() {
        // A prior like the ones fitted to FAERS-like data (one component
        // near zero) and one with both components substantial.
        for prior in [
            Prior::new(0.0008, 0.0003, 14.6, 18.7, 0.013),
            Prior::new(0.2, 0.1, 2.0, 4.0, 1.0 / 3.0),
        ] {
            let mut counts = Vec::new();
            let mut expected = Vec::new();
            let mut x = 0.5f64;
            for k in 0..200_000u32 {
                // Deterministic spread of E over 1e-6..100 and counts 1..6.
                x = (x * 3.7 + 0.123).fract();
                counts.push(1 + k % 6);
                expected.push((x * 18.4 - 13.8).exp());
            }
            let plain = PosteriorCalc::new(prior, 10);
            let gridded = PosteriorCalc::new(prior, 10).with_start_grids(&counts, &expected);
            assert!(gridded.grids.iter().flatten().count() >= 5);
            for (&n, &e) in counts.iter().zip(&expected).step_by(97) {
                let (a, b) = (plain.posterior(n, e), gridded.posterior(n, e));
                for (u, v) in [(a.eb05, b.eb05), (a.eb95, b.eb95)] {
                    assert!((u - v).abs() <= 1e-13 * u.abs(), "n={n} e={e}: {u} vs {v}");
                }
                assert_eq!((a.qn, a.ebgm), (b.qn, b.ebgm));
            }
        }
    }

    #[test]
    fn minor_component_shortcut_gives_the_full_solver_quantiles() {
        // Priors whose first component is negligible for most pairs (as
        // fitted to FAERS-like data), and the reverse.
        let mut taken = 0usize;
        for prior in [
            Prior::new(3.9e-13, 0.000625, 15.6, 20.2, 0.0138),
            Prior::new(0.0008, 0.0003, 14.6, 18.7, 0.013),
            Prior::new(14.6, 18.7, 0.0008, 0.0003, 0.987),
        ] {
            let calc = PosteriorCalc::new(prior, 400);
            let mut x = 0.5f64;
            for k in 0..20_000u32 {
                x = (x * 3.7 + 0.123).fract();
                let n = 1 + (k * 7919) % 400;
                let e = (x * 18.4 - 13.8).exp();
                let post = calc.posterior(n, e);
                let nf = f64::from(n);
                let (r1, r2) = (prior.beta1 + e, prior.beta2 + e);
                let (lg1, lg2) = (ln_gamma(prior.alpha1 + nf), ln_gamma(prior.alpha2 + nf));
                let l1 = prior.p.ln()
                    + ln_nb(
                        nf,
                        prior.alpha1,
                        prior.beta1,
                        e,
                        lg1,
                        ln_gamma(prior.alpha1),
                        0.0,
                    );
                let l2 = (1.0 - prior.p).ln()
                    + ln_nb(
                        nf,
                        prior.alpha2,
                        prior.beta2,
                        e,
                        lg2,
                        ln_gamma(prior.alpha2),
                        0.0,
                    );
                let mix = GammaMixture {
                    w: post.qn,
                    a1: prior.alpha1 + nf,
                    r1,
                    lg1,
                    a2: prior.alpha2 + nf,
                    r2,
                    lg2,
                };
                if calc.minor_component_quantiles(n, l1, l2, &mix).is_some() {
                    taken += 1;
                }
                let z = crate::special::Z95;
                let (q05, q95) = (mix.quantile(0.05, -z), mix.quantile(0.95, z));
                // Both are exact quantiles of the same mixture; they differ
                // only by the rounding of P(a, x), which grows with the shape.
                for (got, want) in [(post.eb05, q05), (post.eb95, q95)] {
                    assert!(
                        (got - want).abs() <= 1e-13 * want,
                        "n={n} e={e}: {got} vs {want}"
                    );
                }
            }
        }
        assert!(taken > 30_000, "shortcut taken {taken} times");
    }

    #[test]
    fn identical_starts_share_one_run_and_warm_starts_agree() {
        let points = pts();
        let a = Prior::new(0.2, 0.1, 2.0, 4.0, 1.0 / 3.0);
        let b = Prior::new(0.5, 0.3, 12.0, 12.0, 0.8);
        let fit = fit_prior(&points, 1, &[a, b, a], &|| {}).expect("fit");
        assert_eq!(fit.starts[0].same_as, None);
        assert_eq!(fit.starts[1].same_as, None);
        assert_eq!(fit.starts[2].same_as, Some(0));
        assert_eq!(fit.starts[2].estimate, fit.starts[0].estimate);
        // Restarting from the optimum with its inverse Hessian stays there.
        let best = &fit.starts[0];
        let warm = fit_prior_from(
            &points,
            1,
            &[(best.estimate, Some(best.inverse_hessian))],
            &|| {},
        )
        .expect("warm fit");
        let (x, y) = (warm.prior.to_u(), best.estimate.to_u());
        for (p, q) in x.iter().zip(&y) {
            assert!((p - q).abs() < 1e-6, "{x:?} vs {y:?}");
        }
        assert!(
            warm.starts[0].iterations <= 3,
            "{} iterations",
            warm.starts[0].iterations
        );
    }

    #[test]
    fn likelihood_and_fit_do_not_depend_on_the_thread_count() {
        // Many 8192-point chunks, so that the likelihood is a sum of partial sums.
        let points: Vec<FitPoint> = (0..250_000)
            .map(|i| FitPoint {
                n: 1 + (i % 5) as u32 * (i % 3) as u32,
                e: 0.01 + ((i * 7919) % 10_007) as f64 * 1e-3,
                w: 1.0 + (i % 7) as f64 * 0.1,
            })
            .collect();
        let prior = Prior::new(0.2, 0.1, 2.0, 4.0, 1.0 / 3.0);
        let with = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| {
                let (f, g) = neg_log_lik(&prior, &points, 1);
                let fit =
                    fit_prior(&points[..40_000], 1, &DEFAULT_STARTS[..2], &|| {}).expect("fit");
                (
                    f.to_bits(),
                    g.map(f64::to_bits),
                    fit.prior,
                    fit.loglik.to_bits(),
                )
            })
        };
        let one = with(1);
        for threads in [2, 3, 4, 7] {
            assert_eq!(with(threads), one, "{threads} threads");
        }
    }
}
