//! Mixed model for repeated measures (MMRM): REML with an unstructured (or compound-symmetry,
//! or AR(1)) within-subject covariance, Satterthwaite degrees of freedom, LS means by visit and
//! treatment differences against a reference arm (the primary analysis table of a continuous
//! endpoint over visits; SAS `PROC MIXED ... REPEATED / TYPE=UN`, R `mmrm`).
//!
//! Model: `y = Xβ + ε`, subjects independent, `Var(ε_i) = Σ[o_i, o_i]` where `o_i` are the
//! visits subject `i` was observed at (missing visits simply drop out: each subject uses the
//! sub-matrix of its observed visits).
//!
//! Fixed effects (treatment coding, the R / SAS `solution` convention): intercept, treatment,
//! visit, treatment × visit, covariates (numeric: continuous; character or listed in `factors`:
//! indicators against the first sorted level or the `--ref` level) and, with
//! `visit_by_covariate`, continuous covariate × visit.
//!
//! Covariance parametrisation (as the R package `mmrm`): unstructured `Σ = L Lᵀ` with
//! `θ = (log diag L, strictly lower L row by row)`; compound symmetry `σ²((1−ρ)I + ρJ)` with
//! `θ = (log σ², logit of ρ rescaled to (−1/(m−1), 1))`; AR(1) `σ² ρ^|j−k|` (visit positions)
//! with `θ = (log σ², atanh ρ)`. Results do not depend on the parametrisation.
//!
//! Computation: one pass over the rows accumulates, per missing-visit pattern and pair of
//! visits `(a, b)`, the cross products `Σ_i z_ia z_ibᵀ` of `z = (x, y)`. After that the REML
//! deviance
//! `D(θ) = Σ_i log|Σ_i| + log|XᵀV⁻¹X| + rᵀV⁻¹r + (n − p) log 2π`
//! and its analytic gradient `∂D/∂θ_j = tr(F ∂Σ/∂θ_j)`, with
//! `F = Σ_patterns embed(n_k W_k − W_k Q_k W_k)`, `W_k = Σ_k⁻¹`,
//! `Q_k = Σ_i (X_i Φ X_iᵀ + r_i r_iᵀ)`, `Φ = (XᵀV⁻¹X)⁻¹`, cost nothing that depends on
//! the number of subjects. The optimiser is Newton's method with the analytic observed Hessian
//! (`MmrmData::hessian_analytic`; a unit test checks it against differences of the
//! gradient), a Levenberg shift when it is not positive definite and an Armijo line search.
//!
//! Inference: `Cov(β̂) = Φ(θ̂)` (model-based, as SAS and `mmrm` defaults). Satterthwaite
//! degrees of freedom of a contrast `l`: `ν = 2 (lᵀΦl)² / (gᵀ A g)` with `g_j = lᵀ (∂Φ/∂θ_j) l`
//! (analytic: `∂Φ/∂θ_j = Φ Xᵀ V⁻¹ (∂V/∂θ_j) V⁻¹ X Φ`) and `A = 2 H⁻¹`, `H` the Hessian of `D`
//! at `θ̂`. LS means are evaluated with continuous covariates at their mean over the analysis
//! rows (and covariate × visit columns at that mean times the visit indicator) and equal
//! weights over the levels of factor covariates: the emmeans and SAS `LSMEANS` defaults.
//!
//! Kenward–Roger (`DfMethod::KenwardRoger`): `Cov(β̂) = Φ_A = Φ + 2Φ{Σ_hj W_hj (Q_hj −
//! P_h Φ P_j − ¼ R_hj)}Φ` (Kenward & Roger 1997; mmrm's `kenward.Rmd`) with `P_h = Xᵀ ∂V⁻¹/∂φ_h X`,
//! `Q_hj = Xᵀ ∂V⁻¹/∂φ_h V ∂V⁻¹/∂φ_j X`, `R_hj = Xᵀ V⁻¹ ∂²V/∂φ_h∂φ_j V⁻¹ X` and `W` the
//! covariance of the covariance parameters, evaluated in SAS's parametrisation φ (only `R`
//! depends on it): UN entries `σ_ab` and CS `(σ₁, σ²)` are linear, so `R = 0` there (this is
//! mmrm's "Kenward-Roger-Linear", which its tests match to SAS `DDFM=KR`), AR(1) `(σ², ρ)`.
//! The df of a one-dimensional contrast reduce to the Satterthwaite formula with the
//! unadjusted Φ (mmrm's `h_kr_df` with one row), which is what is reported.
//!
//! Type III F tests are written as LS-mean contrasts (treatment averaged over visits, visit
//! averaged over arms, interaction contrasts; covariates), with Satterthwaite denominator df
//! as SAS / mmrm `h_df_md_sat` or the Kenward–Roger F test (`h_kr_df`).

use crate::data::Dataset;
use crate::dist::{f_sf, t_p2, t_ppf};
use crate::error::{Result, StatsError, degenerate};
use crate::linalg;
use serde::Serialize;
use std::collections::HashMap;

/// Within-subject covariance structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CovStructure {
    /// Unstructured: m(m+1)/2 parameters.
    #[default]
    Us,
    /// Compound symmetry (homogeneous): variance and one correlation.
    Cs,
    /// First-order autoregressive over visit positions (homogeneous).
    Ar1,
}

/// Degrees-of-freedom method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DfMethod {
    /// Satterthwaite approximation (SAS `DDFM=SATTERTHWAITE`, mmrm default).
    #[default]
    Satterthwaite,
    /// Kenward–Roger: SEs from the Kenward–Roger adjusted covariance of β̂ (SAS
    /// `DDFM=KR`), df as for Satterthwaite (see the module notes).
    #[value(name = "kr")]
    #[serde(rename = "kenward-roger")]
    KenwardRoger,
}

/// Column roles and options of an MMRM.
#[derive(Debug, Clone, Default)]
pub struct MmrmSpec {
    pub response: String,
    pub subject: String,
    pub visit: String,
    pub treatment: String,
    /// Reference arm (default: first sorted level).
    pub reference: Option<String>,
    /// Further terms: character columns and those in `factors` are factors, numeric ones
    /// continuous.
    pub covariates: Vec<String>,
    pub factors: Vec<String>,
    /// Reference levels of factor covariates (default: first sorted level).
    pub factor_refs: Vec<(String, String)>,
    /// Adds continuous covariate × visit terms (e.g. baseline × visit).
    pub visit_by_covariate: bool,
    pub cov: CovStructure,
    pub df: DfMethod,
    /// Visit order; default: natural sort of the visit values ("Week 2" < "Week 12").
    pub visit_order: Option<Vec<String>>,
}

/// A fixed-effect coefficient.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MmrmCoef {
    pub term: String,
    pub estimate: f64,
    pub se: f64,
    pub df: f64,
    pub t: f64,
    pub p: f64,
}

/// LS mean of one arm at one visit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MmrmLsMean {
    pub visit: String,
    pub arm: String,
    /// Observations of this arm at this visit.
    pub n: u64,
    pub estimate: f64,
    pub se: f64,
    pub df: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Difference of LS means `arm − reference` at one visit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MmrmDiff {
    pub visit: String,
    pub arm: String,
    pub reference: String,
    pub estimate: f64,
    pub se: f64,
    pub df: f64,
    pub lo: f64,
    pub hi: f64,
    pub t: f64,
    pub p: f64,
}

/// A type III F test of a model term (SAS "Type 3 Tests of Fixed Effects").
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MmrmFTest {
    pub term: String,
    pub num_df: usize,
    pub den_df: f64,
    pub f: f64,
    pub p: f64,
}

/// MMRM result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MmrmFit {
    pub response: String,
    pub subject: String,
    pub visit: String,
    pub treatment: String,
    pub reference: String,
    pub cov: CovStructure,
    pub df_method: DfMethod,
    pub method: &'static str,
    pub n_obs: u64,
    pub n_subjects: u64,
    pub visits: Vec<String>,
    pub arms: Vec<String>,
    /// REML deviance `−2 log L_R` (SAS "-2 Res Log Likelihood", mmrm "Deviance").
    pub deviance: f64,
    pub loglik: f64,
    /// `deviance + 2 q` (q covariance parameters; SAS and mmrm REML convention).
    pub aic: f64,
    /// `deviance + q log(subjects)`.
    pub bic: f64,
    pub n_theta: usize,
    pub theta: Vec<f64>,
    pub iterations: usize,
    /// Largest |∂D/∂θ| at the estimate.
    pub max_gradient: f64,
    /// Estimated covariance matrix over `visits`.
    pub covariance: Vec<Vec<f64>>,
    pub coefficients: Vec<MmrmCoef>,
    /// Covariance of the fixed effects, in `coefficients` order.
    pub vcov: Vec<Vec<f64>>,
    /// Type III F tests (treatment, visit, treatment × visit, covariates).
    pub type3: Vec<MmrmFTest>,
    pub lsmeans: Vec<MmrmLsMean>,
    pub diffs: Vec<MmrmDiff>,
    pub alpha: f64,
    pub dropped_rows: usize,
}

// ---------------------------------------------------------------------------------------
// Sufficient statistics and the REML engine (independent of the dataset representation)
// ---------------------------------------------------------------------------------------

/// One missing-visit pattern: the visits observed (ascending positions), how many subjects
/// have it, and the cross-product blocks `Σ_i z_ia z_ibᵀ` for `a ≥ b` (row-major P×P, P = p+1).
#[derive(Debug, Clone)]
struct Pattern {
    visits: Vec<usize>,
    n: usize,
    blocks: Vec<f64>,
    /// Per block, the positions of its non-zero entries (design rows are mostly indicator
    /// zeros: with 10 visits about 3% of a block is non-zero).
    nz: Vec<Vec<u32>>,
}

/// The data an MMRM fit needs: per-pattern cross products of `(x, y)`.
#[derive(Debug, Clone)]
struct MmrmData {
    m: usize,
    p: usize,
    patterns: Vec<Pattern>,
    n_obs: usize,
    n_subj: usize,
}

fn tri(a: usize, b: usize) -> usize {
    a * (a + 1) / 2 + b
}

impl MmrmData {
    /// Records the non-zero entries of every block (after all subjects are added).
    fn finalize(&mut self) {
        let pp2 = (self.p + 1) * (self.p + 1);
        for pat in &mut self.patterns {
            pat.nz = pat
                .blocks
                .chunks(pp2)
                .map(|blk| {
                    (0..pp2 as u32)
                        .filter(|&i| blk[i as usize] != 0.0)
                        .collect()
                })
                .collect();
        }
    }

    /// Empty statistics for m visits and p fixed effects (filled by `Builder::add_subject`).
    fn new(m: usize, p: usize) -> MmrmData {
        MmrmData {
            m,
            p,
            patterns: Vec::new(),
            n_obs: 0,
            n_subj: 0,
        }
    }
}

struct Builder {
    data: MmrmData,
    index: HashMap<Vec<usize>, usize>,
    /// f64 values held in `blocks` (memory guard).
    stored: usize,
}

/// Subjects per accumulation chunk.
const CHUNK: usize = 4096;
/// Chunks accumulated concurrently before merging.
const CHUNKS_PER_BATCH: usize = 8;
/// Largest number of cross-product values one chunk may hold (160 MB).
const MAX_STORED: usize = 20_000_000;

impl Builder {
    /// `rows`: one subject's observations sorted by visit position; each row is a sparse
    /// `z = (x, y)` (the y entry has column index p).
    fn add_subject(&mut self, visits: &[usize], rows: &[Vec<(usize, f64)>]) -> Result<()> {
        let pp = self.data.p + 1;
        let s = visits.len();
        let k = match self.index.get(visits) {
            Some(&k) => k,
            None => {
                self.stored += s * (s + 1) / 2 * pp * pp;
                if self.stored > MAX_STORED {
                    return Err(StatsError::Invalid(format!(
                        "{} distinct missing-visit patterns with {} fixed effects need more than {} MB of cross products per {CHUNK} subjects; reduce the number of visits or model terms",
                        self.data.patterns.len() + 1,
                        self.data.p,
                        MAX_STORED * 8 / 1_000_000
                    )));
                }
                self.data.patterns.push(Pattern {
                    visits: visits.to_vec(),
                    n: 0,
                    blocks: vec![0.0; s * (s + 1) / 2 * pp * pp],
                    nz: Vec::new(),
                });
                let k = self.data.patterns.len() - 1;
                self.index.insert(visits.to_vec(), k);
                k
            }
        };
        let pat = &mut self.data.patterns[k];
        pat.n += 1;
        for a in 0..s {
            for b in 0..=a {
                let blk = &mut pat.blocks[tri(a, b) * pp * pp..(tri(a, b) + 1) * pp * pp];
                for &(r, va) in &rows[a] {
                    let row = &mut blk[r * pp..r * pp + pp];
                    for &(c, vb) in &rows[b] {
                        row[c] += va * vb;
                    }
                }
            }
        }
        self.data.n_obs += s;
        self.data.n_subj += 1;
        Ok(())
    }
}

impl Builder {
    /// Adds another builder's patterns (same m and p).
    fn merge(&mut self, other: Builder) {
        for pat in other.data.patterns {
            match self.index.get(&pat.visits) {
                Some(&k) => {
                    let mine = &mut self.data.patterns[k];
                    mine.n += pat.n;
                    for (a, b) in mine.blocks.iter_mut().zip(&pat.blocks) {
                        *a += b;
                    }
                }
                None => {
                    self.index
                        .insert(pat.visits.clone(), self.data.patterns.len());
                    self.data.patterns.push(pat);
                }
            }
        }
        self.data.n_obs += other.data.n_obs;
        self.data.n_subj += other.data.n_subj;
    }
}

/// Covariance parameters ↔ Σ.
struct CovModel {
    kind: CovStructure,
    m: usize,
}

impl CovModel {
    fn n_theta(&self) -> usize {
        match self.kind {
            CovStructure::Us => self.m * (self.m + 1) / 2,
            CovStructure::Cs | CovStructure::Ar1 => 2,
        }
    }

    fn cs_bounds(&self) -> f64 {
        -1.0 / (self.m as f64 - 1.0).max(1.0)
    }

    /// Lower-triangular factor for US (row-major m×m).
    fn us_l(&self, theta: &[f64]) -> Vec<f64> {
        let m = self.m;
        let mut l = vec![0.0; m * m];
        let mut k = m;
        for i in 0..m {
            l[i * m + i] = theta[i].exp();
            for j in 0..i {
                l[i * m + j] = theta[k];
                k += 1;
            }
        }
        l
    }

    fn sigma(&self, theta: &[f64]) -> Vec<f64> {
        let m = self.m;
        let mut s = vec![0.0; m * m];
        match self.kind {
            CovStructure::Us => {
                let l = self.us_l(theta);
                for i in 0..m {
                    for j in 0..=i {
                        let v: f64 = (0..=j).map(|k| l[i * m + k] * l[j * m + k]).sum();
                        s[i * m + j] = v;
                        s[j * m + i] = v;
                    }
                }
            }
            CovStructure::Cs => {
                let s2 = theta[0].exp();
                let lo = self.cs_bounds();
                let rho = lo + (1.0 - lo) / (1.0 + (-theta[1]).exp());
                for i in 0..m {
                    for j in 0..m {
                        s[i * m + j] = if i == j { s2 } else { s2 * rho };
                    }
                }
            }
            CovStructure::Ar1 => {
                let s2 = theta[0].exp();
                let rho = theta[1].tanh();
                for i in 0..m {
                    for j in 0..m {
                        s[i * m + j] = s2 * rho.powi(i.abs_diff(j) as i32);
                    }
                }
            }
        }
        s
    }

    /// `⟨F, ∂²Σ/∂θ_h∂θ_j⟩` for all h, j (q×q) for a symmetric m×m `f`.
    fn d2_contract(&self, theta: &[f64], f: &[f64]) -> Vec<f64> {
        let m = self.m;
        let q = self.n_theta();
        let mut out = vec![0.0; q * q];
        match self.kind {
            CovStructure::Us => {
                let l = self.us_l(theta);
                // θ_h moves L[r_h, c_h] with ∂L/∂θ_h = s_h
                let mut ent = Vec::with_capacity(q);
                for i in 0..m {
                    ent.push((i, i, l[i * m + i]));
                }
                for i in 0..m {
                    for j in 0..i {
                        ent.push((i, j, 1.0));
                    }
                }
                for (h, &(rh, ch, sh)) in ent.iter().enumerate() {
                    for (j, &(rj, cj, sj)) in ent.iter().enumerate() {
                        if ch == cj {
                            out[h * q + j] += 2.0 * sh * sj * f[rh * m + rj];
                        }
                    }
                }
                for i in 0..m {
                    let fl: f64 = (0..m).map(|b| f[i * m + b] * l[b * m + i]).sum();
                    out[i * q + i] += 2.0 * l[i * m + i] * fl;
                }
            }
            CovStructure::Cs | CovStructure::Ar1 => {
                let ds = self.dsigma(theta);
                let s2 = theta[0].exp();
                let d11: Vec<f64> = match self.kind {
                    CovStructure::Cs => {
                        let lo = self.cs_bounds();
                        let sg = 1.0 / (1.0 + (-theta[1]).exp());
                        let rho2 = (1.0 - lo) * sg * (1.0 - sg) * (1.0 - 2.0 * sg);
                        (0..m * m)
                            .map(|k| if k / m != k % m { s2 * rho2 } else { 0.0 })
                            .collect()
                    }
                    _ => {
                        let rho = theta[1].tanh();
                        let r1 = 1.0 - rho * rho;
                        let r2 = -2.0 * rho * r1;
                        (0..m * m)
                            .map(|k| {
                                let d = (k / m).abs_diff(k % m) as i32;
                                let df = d as f64;
                                let a = if d >= 2 {
                                    df * (df - 1.0) * rho.powi(d - 2) * r1 * r1
                                } else {
                                    0.0
                                };
                                let b = if d >= 1 {
                                    df * rho.powi(d - 1) * r2
                                } else {
                                    0.0
                                };
                                s2 * (a + b)
                            })
                            .collect()
                    }
                };
                let dot_f = |d: &[f64]| d.iter().zip(f).map(|(x, y)| x * y).sum::<f64>();
                // ∂²/∂θ0² = Σ = ∂Σ/∂θ0; ∂²/∂θ0∂θ1 = ∂Σ/∂θ1
                out[0] = dot_f(&ds[0]);
                out[1] = dot_f(&ds[1]);
                out[2] = out[1];
                out[3] = dot_f(&d11);
            }
        }
        out
    }

    /// `∂Σ/∂θ_j` for every j (row-major m×m each).
    fn dsigma(&self, theta: &[f64]) -> Vec<Vec<f64>> {
        let m = self.m;
        match self.kind {
            CovStructure::Us => {
                let l = self.us_l(theta);
                // Σ = L Lᵀ: ∂Σ/∂L_ij = e_i (L row j)ᵀ + (L row j) e_iᵀ
                let mut out = Vec::with_capacity(self.n_theta());
                let d_of = |i: usize, j: usize, scale: f64| {
                    let mut d = vec![0.0; m * m];
                    for c in 0..m {
                        // ∂(L Lᵀ)[i, c] = L[c, j] (the entry L_ij affects row i of L)
                        d[i * m + c] += scale * l[c * m + j];
                        d[c * m + i] += scale * l[c * m + j];
                    }
                    d
                };
                for i in 0..m {
                    out.push(d_of(i, i, l[i * m + i]));
                }
                for i in 0..m {
                    for j in 0..i {
                        out.push(d_of(i, j, 1.0));
                    }
                }
                out
            }
            CovStructure::Cs => {
                let s = self.sigma(theta);
                let s2 = theta[0].exp();
                let lo = self.cs_bounds();
                let sg = 1.0 / (1.0 + (-theta[1]).exp());
                let drho = (1.0 - lo) * sg * (1.0 - sg);
                let mut d1 = vec![0.0; m * m];
                for i in 0..m {
                    for j in 0..m {
                        if i != j {
                            d1[i * m + j] = s2 * drho;
                        }
                    }
                }
                vec![s, d1]
            }
            CovStructure::Ar1 => {
                let s = self.sigma(theta);
                let s2 = theta[0].exp();
                let rho = theta[1].tanh();
                let drho = 1.0 - rho * rho;
                let mut d1 = vec![0.0; m * m];
                for i in 0..m {
                    for j in 0..m {
                        let k = i.abs_diff(j);
                        if k > 0 {
                            d1[i * m + j] = s2 * k as f64 * rho.powi(k as i32 - 1) * drho;
                        }
                    }
                }
                vec![s, d1]
            }
        }
    }
}

/// The covariance parameters SAS uses (Kenward–Roger is not invariant to the
/// parametrisation through its second-derivative term): UN the entries `σ_ab` (a ≥ b, row
/// by row), CS `(σ₁, σ²)` with `Σ = σ₁J + σ²I`, AR(1) `(σ², ρ)`.
struct Natural {
    /// `∂φ/∂θ` (q×q, row-major: row = φ).
    g: Vec<f64>,
    /// `∂Σ/∂φ_h` (m×m each).
    d1: Vec<Vec<f64>>,
    /// The non-zero second derivatives `∂²Σ/∂φ_h∂φ_j` as `(h, j, m×m)`.
    d2: Vec<(usize, usize, Vec<f64>)>,
}

impl Natural {
    /// `Σ_hj w_hj ∂²Σ/∂φ_h∂φ_j` (m×m) for weights `w` (q×q).
    fn d2w(&self, w: &[f64], q: usize, m: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * m];
        for (h, j, d) in &self.d2 {
            let c = w[h * q + j];
            for (o, x) in out.iter_mut().zip(d) {
                *o += c * x;
            }
        }
        out
    }
}

impl CovModel {
    fn natural(&self, theta: &[f64]) -> Natural {
        let m = self.m;
        let q = self.n_theta();
        let ds = self.dsigma(theta);
        let sig = self.sigma(theta);
        let mut g = vec![0.0; q * q];
        let mut d1 = Vec::with_capacity(q);
        match self.kind {
            CovStructure::Us => {
                let mut h = 0;
                for a in 0..m {
                    for b in 0..=a {
                        for (j, d) in ds.iter().enumerate() {
                            g[h * q + j] = d[a * m + b];
                        }
                        let mut e = vec![0.0; m * m];
                        e[a * m + b] = 1.0;
                        e[b * m + a] = 1.0;
                        d1.push(e);
                        h += 1;
                    }
                }
                Natural { g, d1, d2: vec![] }
            }
            CovStructure::Cs => {
                for (j, d) in ds.iter().enumerate() {
                    g[j] = d[1];
                    g[q + j] = d[0] - d[1];
                }
                d1.push(vec![1.0; m * m]);
                let mut id = vec![0.0; m * m];
                for a in 0..m {
                    id[a * m + a] = 1.0;
                }
                d1.push(id);
                Natural { g, d1, d2: vec![] }
            }
            CovStructure::Ar1 => {
                let s2 = sig[0];
                let rho = sig[1] / s2;
                for (j, d) in ds.iter().enumerate() {
                    g[j] = d[0];
                    g[q + j] = (d[1] - rho * d[0]) / s2;
                }
                let pw = |k: i32| if k < 0 { 0.0 } else { rho.powi(k) };
                let mut a0 = vec![0.0; m * m];
                let mut a1 = vec![0.0; m * m];
                let mut a01 = vec![0.0; m * m];
                let mut a11 = vec![0.0; m * m];
                for a in 0..m {
                    for b in 0..m {
                        let k = a.abs_diff(b) as i32;
                        let kf = k as f64;
                        a0[a * m + b] = pw(k);
                        a1[a * m + b] = s2 * kf * pw(k - 1);
                        a01[a * m + b] = kf * pw(k - 1);
                        a11[a * m + b] = s2 * kf * (kf - 1.0) * pw(k - 2);
                    }
                }
                d1.push(a0);
                d1.push(a1);
                // ∂²Σ/∂σ²² = 0
                Natural {
                    g,
                    d1,
                    d2: vec![(0, 1, a01.clone()), (1, 0, a01), (1, 1, a11)],
                }
            }
        }
    }
}

/// Everything known at one θ.
struct Eval {
    dev: f64,
    beta: Vec<f64>,
    /// `(XᵀV⁻¹X)⁻¹`
    phi: Vec<f64>,
    /// Per pattern `Σ_k⁻¹` (s×s).
    w: Vec<Vec<f64>>,
}

impl MmrmData {
    /// `Σ_k Σ_{a,b} E_k[a,b] B_k[a,b]` (a symmetric P×P matrix) for symmetric weights `E_k`.
    fn weighted(&self, e: &[Vec<f64>]) -> Vec<f64> {
        let pp = self.p + 1;
        let mut g = vec![0.0; pp * pp];
        for (pat, ek) in self.patterns.iter().zip(e) {
            let s = pat.visits.len();
            for a in 0..s {
                for b in 0..=a {
                    let wv = if a == b {
                        0.5 * ek[a * s + a]
                    } else {
                        ek[a * s + b]
                    };
                    if wv == 0.0 {
                        continue;
                    }
                    let blk = &pat.blocks[tri(a, b) * pp * pp..(tri(a, b) + 1) * pp * pp];
                    for &i in &pat.nz[tri(a, b)] {
                        g[i as usize] += wv * blk[i as usize];
                    }
                }
            }
        }
        // G + Gᵀ
        let mut t = vec![0.0; pp * pp];
        for r in 0..pp {
            for c in 0..pp {
                t[r * pp + c] = g[r * pp + c] + g[c * pp + r];
            }
        }
        t
    }

    /// REML deviance at θ; `None` when Σ or XᵀV⁻¹X is not positive definite there.
    fn eval(&self, cm: &CovModel, theta: &[f64]) -> Option<Eval> {
        if theta.iter().any(|t| !t.is_finite()) {
            return None;
        }
        let m = self.m;
        let p = self.p;
        let pp = p + 1;
        let sig = cm.sigma(theta);
        let mut w = Vec::with_capacity(self.patterns.len());
        let mut logdet = 0.0;
        for pat in &self.patterns {
            let s = pat.visits.len();
            let sub = linalg::submatrix(&sig, m, &pat.visits);
            let l = linalg::cholesky(&sub, s).ok()?;
            logdet += pat.n as f64 * linalg::chol_logdet(&l, s);
            w.push(linalg::chol_inverse(&l, s));
        }
        let t = self.weighted(&w);
        let mut xtx = vec![0.0; p * p];
        let mut xty = vec![0.0; p];
        for r in 0..p {
            xtx[r * p..r * p + p].copy_from_slice(&t[r * pp..r * pp + p]);
            xty[r] = t[r * pp + p];
        }
        let yty = t[p * pp + p];
        let l = linalg::cholesky(&xtx, p).ok()?;
        let beta = linalg::chol_solve(&l, p, &xty);
        let quad = yty - beta.iter().zip(&xty).map(|(b, v)| b * v).sum::<f64>();
        let dev = logdet
            + linalg::chol_logdet(&l, p)
            + quad
            + (self.n_obs - p) as f64 * (2.0 * std::f64::consts::PI).ln();
        if !dev.is_finite() {
            return None;
        }
        let phi = linalg::chol_inverse(&l, p);
        Some(Eval { dev, beta, phi, w })
    }

    /// `∂D/∂Σ` as the symmetric m×m matrix F (see the module notes).
    /// `u = (−β, 1)`: `z·u` is the residual of a row.
    fn resid_vec(&self, ev: &Eval) -> Vec<f64> {
        let mut u = vec![0.0; self.p + 1];
        for (ur, b) in u.iter_mut().zip(&ev.beta) {
            *ur = -b;
        }
        u[self.p] = 1.0;
        u
    }

    /// Per pattern `Q_k = Σ_i (X_i Φ X_iᵀ + r_i r_iᵀ)` (s×s).
    fn q_mats(&self, ev: &Eval) -> Vec<Vec<f64>> {
        let p = self.p;
        let pp = p + 1;
        // K = [[Φ, 0], [0, 0]] + u uᵀ with u = (−β, 1)
        let u = self.resid_vec(ev);
        let mut k = vec![0.0; pp * pp];
        for r in 0..pp {
            for c in 0..pp {
                k[r * pp + c] = u[r] * u[c]
                    + if r < p && c < p {
                        ev.phi[r * p + c]
                    } else {
                        0.0
                    };
            }
        }
        self.patterns
            .iter()
            .map(|pat| {
                let s = pat.visits.len();
                let mut q = vec![0.0; s * s];
                for a in 0..s {
                    for b in 0..=a {
                        let blk = &pat.blocks[tri(a, b) * pp * pp..(tri(a, b) + 1) * pp * pp];
                        let v: f64 = pat.nz[tri(a, b)]
                            .iter()
                            .map(|&i| blk[i as usize] * k[i as usize])
                            .sum();
                        q[a * s + b] = v;
                        q[b * s + a] = v;
                    }
                }
                q
            })
            .collect()
    }

    /// `∂D/∂Σ` as the symmetric m×m matrix F (see the module notes).
    fn f_matrix(&self, ev: &Eval) -> Vec<f64> {
        self.f_from_q(ev, &self.q_mats(ev))
    }

    fn f_from_q(&self, ev: &Eval, qs: &[Vec<f64>]) -> Vec<f64> {
        let m = self.m;
        let mut f = vec![0.0; m * m];
        for ((pat, w), q) in self.patterns.iter().zip(&ev.w).zip(qs) {
            let s = pat.visits.len();
            // n W − W Q W
            let wqw = matmul(&matmul(w, q, s), w, s);
            for a in 0..s {
                for b in 0..s {
                    f[pat.visits[a] * m + pat.visits[b]] +=
                        pat.n as f64 * w[a * s + b] - wqw[a * s + b];
                }
            }
        }
        f
    }

    /// Analytic Hessian of the REML deviance:
    /// `∂²D/∂θ_j∂θ_k = tr(PV_jk) − yᵀPV_jkPy − tr(PV_jPV_k) + 2yᵀPV_jPV_kPy`, with
    /// `tr(PV_jPV_k) = Σ_i tr(W D_j W D_k) − 2 Σ_i tr(W D_j W D_k W X_iΦX_iᵀ) + tr(ΦT_jΦT_k)`
    /// and `yᵀPV_jPV_kPy = Σ_i r_iᵀW D_j W D_k W r_i − g_jᵀΦg_k`, `T_j = XᵀV⁻¹V_jV⁻¹X`,
    /// `g_j = XᵀV⁻¹V_jV⁻¹r`. The first two terms are `⟨F, ∂²Σ/∂θ_j∂θ_k⟩`.
    fn hessian_analytic(&self, cm: &CovModel, theta: &[f64], ev: &Eval) -> Vec<f64> {
        let m = self.m;
        let p = self.p;
        let pp = p + 1;
        let q = cm.n_theta();
        let ds = cm.dsigma(theta);
        let qs = self.q_mats(ev);
        let f = self.f_from_q(ev, &qs);
        let mut h = cm.d2_contract(theta, &f);
        let u = self.resid_vec(ev);
        let mut e_j: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(self.patterns.len()); q];
        let mut g = vec![vec![0.0; p]; q];
        for ((pat, w), qk) in self.patterns.iter().zip(&ev.w).zip(&qs) {
            let s = pat.visits.len();
            let n = pat.n as f64;
            let uj: Vec<Vec<f64>> = ds
                .iter()
                .map(|d| matmul(w, &linalg::submatrix(d, m, &pat.visits), s))
                .collect();
            let wq = matmul(w, qk, s);
            let yk: Vec<Vec<f64>> = uj.iter().map(|x| matmul(x, &wq, s)).collect();
            let tr = |a: &[f64], b: &[f64]| -> f64 {
                let mut t = 0.0;
                for i in 0..s {
                    for k in 0..s {
                        t += a[i * s + k] * b[k * s + i];
                    }
                }
                t
            };
            for j in 0..q {
                for k in 0..=j {
                    let v = -n * tr(&uj[j], &uj[k]) + 2.0 * tr(&uj[j], &yk[k]);
                    h[j * q + k] += v;
                    if k != j {
                        h[k * q + j] += v;
                    }
                }
            }
            // v_ab = Σ_i x_ia r_ib (p-vectors)
            let mut vab = vec![vec![0.0; p]; s * s];
            for a in 0..s {
                for b in 0..=a {
                    let blk = &pat.blocks[tri(a, b) * pp * pp..(tri(a, b) + 1) * pp * pp];
                    for &i in &pat.nz[tri(a, b)] {
                        let (r, c) = (i as usize / pp, i as usize % pp);
                        let x = blk[i as usize];
                        if r < p {
                            vab[a * s + b][r] += x * u[c];
                        }
                        if a != b && c < p {
                            vab[b * s + a][c] += x * u[r];
                        }
                    }
                }
            }
            for j in 0..q {
                let ej = matmul(&uj[j], w, s);
                for a in 0..s {
                    for b in 0..s {
                        let c = ej[a * s + b];
                        if c != 0.0 {
                            for (gr, vr) in g[j].iter_mut().zip(&vab[a * s + b]) {
                                *gr += c * vr;
                            }
                        }
                    }
                }
                e_j[j].push(ej);
            }
        }
        // T_j and the Φ terms
        let pt: Vec<Vec<f64>> = e_j
            .iter()
            .map(|e| {
                let t = self.weighted(e);
                let mut txx = vec![0.0; p * p];
                for r in 0..p {
                    txx[r * p..r * p + p].copy_from_slice(&t[r * pp..r * pp + p]);
                }
                matmul(&ev.phi, &txx, p)
            })
            .collect();
        let phig: Vec<Vec<f64>> = g
            .iter()
            .map(|gj| {
                (0..p)
                    .map(|r| (0..p).map(|c| ev.phi[r * p + c] * gj[c]).sum())
                    .collect()
            })
            .collect();
        for j in 0..q {
            for k in 0..=j {
                let mut t = 0.0;
                for a in 0..p {
                    for b in 0..p {
                        t += pt[j][a * p + b] * pt[k][b * p + a];
                    }
                }
                let v = -t - 2.0 * dot(&g[j], &phig[k]);
                h[j * q + k] += v;
                if k != j {
                    h[k * q + j] += v;
                }
            }
        }
        h
    }

    fn gradient(&self, cm: &CovModel, theta: &[f64], ev: &Eval) -> Vec<f64> {
        let f = self.f_matrix(ev);
        cm.dsigma(theta)
            .iter()
            .map(|d| d.iter().zip(&f).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// `∂Φ/∂θ_j = Φ (Σ_k Σ_ab (W ∂Σ_j W)[a,b] B_ab^{XX}) Φ` for every j.
    fn dphi(&self, cm: &CovModel, theta: &[f64], ev: &Eval) -> Vec<Vec<f64>> {
        let m = self.m;
        let p = self.p;
        let pp = p + 1;
        cm.dsigma(theta)
            .iter()
            .map(|ds| {
                let e: Vec<Vec<f64>> = self
                    .patterns
                    .iter()
                    .zip(&ev.w)
                    .map(|(pat, w)| {
                        let s = pat.visits.len();
                        let sub = linalg::submatrix(ds, m, &pat.visits);
                        matmul(&matmul(w, &sub, s), w, s)
                    })
                    .collect();
                let t = self.weighted(&e);
                let mut txx = vec![0.0; p * p];
                for r in 0..p {
                    txx[r * p..r * p + p].copy_from_slice(&t[r * pp..r * pp + p]);
                }
                matmul(&matmul(&ev.phi, &txx, p), &ev.phi, p)
            })
            .collect()
    }

    /// Kenward–Roger adjusted covariance of β̂ (on the centred design):
    /// `Φ_A = Φ + 2Φ{Σ_hj W_hj (Q_hj − P_h Φ P_j − ¼ R_hj)}Φ` in the SAS parametrisation,
    /// with `W = G A Gᵀ`, `A = 2H⁻¹` the covariance of θ̂ and `G = ∂φ/∂θ`.
    fn kr_adjusted(&self, cm: &CovModel, theta: &[f64], ev: &Eval, hinv: &[f64]) -> Vec<f64> {
        let m = self.m;
        let p = self.p;
        let pp = p + 1;
        let q = cm.n_theta();
        let nat = cm.natural(theta);
        // W = G (2 H⁻¹) Gᵀ
        let mut gh = vec![0.0; q * q];
        for i in 0..q {
            for j in 0..q {
                gh[i * q + j] = (0..q)
                    .map(|k| nat.g[i * q + k] * 2.0 * hinv[k * q + j])
                    .sum();
            }
        }
        let mut w = vec![0.0; q * q];
        for i in 0..q {
            for j in 0..q {
                w[i * q + j] = (0..q).map(|k| gh[i * q + k] * nat.g[j * q + k]).sum();
            }
        }
        let xx = |t: &[f64]| -> Vec<f64> {
            let mut o = vec![0.0; p * p];
            for r in 0..p {
                o[r * p..r * p + p].copy_from_slice(&t[r * pp..r * pp + p]);
            }
            o
        };
        // per pattern U_h = W_k D_h (s×s)
        let mut th = vec![Vec::new(); q]; // T_h = Xᵀ V⁻¹ D_h V⁻¹ X = −P_h
        let mut ksum: Vec<Vec<f64>> = Vec::with_capacity(self.patterns.len());
        let mut e_h: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(self.patterns.len()); q];
        for (pat, wk) in self.patterns.iter().zip(&ev.w) {
            let s = pat.visits.len();
            let u: Vec<Vec<f64>> = nat
                .d1
                .iter()
                .map(|d| matmul(wk, &linalg::submatrix(d, m, &pat.visits), s))
                .collect();
            for h in 0..q {
                e_h[h].push(matmul(&u[h], wk, s));
            }
            // Σ_hj W_hj U_h U_j W_k
            let mut acc = vec![0.0; s * s];
            for h in 0..q {
                let mut vh = vec![0.0; s * s];
                for j in 0..q {
                    let c = w[h * q + j];
                    if c != 0.0 {
                        for (a, b) in vh.iter_mut().zip(&u[j]) {
                            *a += c * b;
                        }
                    }
                }
                let t = matmul(&u[h], &vh, s);
                for (a, b) in acc.iter_mut().zip(&t) {
                    *a += b;
                }
            }
            let mut kk = matmul(&acc, wk, s);
            for a in 0..s {
                for b in 0..a {
                    let v = 0.5 * (kk[a * s + b] + kk[b * s + a]);
                    kk[a * s + b] = v;
                    kk[b * s + a] = v;
                }
            }
            ksum.push(kk);
        }
        for h in 0..q {
            th[h] = xx(&self.weighted(&e_h[h]));
        }
        let qsum = xx(&self.weighted(&ksum));
        let d2 = nat.d2w(&w, q, m);
        let rw: Vec<Vec<f64>> = self
            .patterns
            .iter()
            .zip(&ev.w)
            .map(|(pat, wk)| {
                let s = pat.visits.len();
                matmul(
                    &matmul(wk, &linalg::submatrix(&d2, m, &pat.visits), s),
                    wk,
                    s,
                )
            })
            .collect();
        let rsum = xx(&self.weighted(&rw));
        // S = Σ_hj W_hj T_h Φ T_j
        let mut ssum = vec![0.0; p * p];
        for h in 0..q {
            let mut yh = vec![0.0; p * p];
            for j in 0..q {
                let c = w[h * q + j];
                if c != 0.0 {
                    for (a, b) in yh.iter_mut().zip(&th[j]) {
                        *a += c * b;
                    }
                }
            }
            let t = matmul(&matmul(&th[h], &ev.phi, p), &yh, p);
            for (a, b) in ssum.iter_mut().zip(&t) {
                *a += b;
            }
        }
        let mut mid = vec![0.0; p * p];
        for i in 0..p * p {
            mid[i] = qsum[i] - ssum[i] - 0.25 * rsum[i];
        }
        let adj = matmul(&matmul(&ev.phi, &mid, p), &ev.phi, p);
        let mut out = vec![0.0; p * p];
        for i in 0..p {
            for j in 0..p {
                out[i * p + j] = ev.phi[i * p + j] + (adj[i * p + j] + adj[j * p + i]);
            }
        }
        out
    }

    /// Hessian of D by central differences of the analytic gradient, Richardson-extrapolated
    /// over steps 2h and h (the test oracle for `MmrmData::hessian_analytic`).
    #[cfg(test)]
    fn hessian(&self, cm: &CovModel, theta: &[f64], h0: f64) -> Option<Vec<f64>> {
        let q = theta.len();
        let grad_at = |t: &[f64]| -> Option<Vec<f64>> {
            let ev = self.eval(cm, t)?;
            Some(self.gradient(cm, t, &ev))
        };
        let mut h = vec![0.0; q * q];
        for j in 0..q {
            let step = h0 * theta[j].abs().max(1.0);
            let mut cols = Vec::with_capacity(2);
            for mult in [1.0, 2.0] {
                let mut tp = theta.to_vec();
                let mut tm = theta.to_vec();
                tp[j] += mult * step;
                tm[j] -= mult * step;
                let gp = grad_at(&tp)?;
                let gm = grad_at(&tm)?;
                cols.push(
                    gp.iter()
                        .zip(&gm)
                        .map(|(a, b)| (a - b) / (2.0 * mult * step))
                        .collect::<Vec<f64>>(),
                );
            }
            for i in 0..q {
                h[i * q + j] = (4.0 * cols[0][i] - cols[1][i]) / 3.0;
            }
        }
        for i in 0..q {
            for j in 0..i {
                let v = 0.5 * (h[i * q + j] + h[j * q + i]);
                h[i * q + j] = v;
                h[j * q + i] = v;
            }
        }
        Some(h)
    }

    /// OLS residual variances per visit, as starting values.
    fn start(&self, cm: &CovModel) -> Result<Vec<f64>> {
        let p = self.p;
        let pp = p + 1;
        let ident: Vec<Vec<f64>> = self
            .patterns
            .iter()
            .map(|pat| {
                let s = pat.visits.len();
                let mut e = vec![0.0; s * s];
                for a in 0..s {
                    e[a * s + a] = 1.0;
                }
                e
            })
            .collect();
        let t = self.weighted(&ident);
        let mut xtx = vec![0.0; p * p];
        let mut xty = vec![0.0; p];
        for r in 0..p {
            xtx[r * p..r * p + p].copy_from_slice(&t[r * pp..r * pp + p]);
            xty[r] = t[r * pp + p];
        }
        let l = linalg::cholesky(&xtx, p).map_err(|j| StatsError::Degenerate(format!("{j}")))?;
        let beta = linalg::chol_solve(&l, p, &xty);
        let mut u = vec![0.0; pp];
        for (ur, b) in u.iter_mut().zip(&beta) {
            *ur = -b;
        }
        u[p] = 1.0;
        let mut ss = vec![0.0; self.m];
        let mut cnt = vec![0.0; self.m];
        for pat in &self.patterns {
            for (a, &v) in pat.visits.iter().enumerate() {
                let blk = &pat.blocks[tri(a, a) * pp * pp..(tri(a, a) + 1) * pp * pp];
                ss[v] += linalg::quad(blk, pp, &u, &u);
                cnt[v] += pat.n as f64;
            }
        }
        let var: Vec<f64> = ss.iter().zip(&cnt).map(|(s, c)| s / c).collect();
        for (vis, v) in var.iter().enumerate() {
            if !(*v > 0.0 && v.is_finite()) {
                return degenerate(format!(
                    "visit position {} has no residual variation (constant response after the fixed effects)",
                    vis + 1
                ));
            }
        }
        Ok(match cm.kind {
            CovStructure::Us => {
                let mut t: Vec<f64> = var.iter().map(|v| 0.5 * v.ln()).collect();
                t.extend(std::iter::repeat_n(0.0, self.m * (self.m - 1) / 2));
                t
            }
            _ => vec![(var.iter().sum::<f64>() / self.m as f64).ln(), 0.0],
        })
    }
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

/// Raw REML solution on the (centred) design.
struct Solution {
    theta: Vec<f64>,
    ev: Eval,
    hess: Vec<f64>,
    grad: Vec<f64>,
    iterations: usize,
}

fn optimise(data: &MmrmData, cm: &CovModel) -> Result<Solution> {
    let q = cm.n_theta();
    let mut theta = data.start(cm)?;
    let mut ev = data.eval(cm, &theta).ok_or_else(|| {
        StatsError::Degenerate("MMRM: the starting covariance is not positive definite".into())
    })?;
    let mut grad = data.gradient(cm, &theta, &ev);
    let max_iter = 200;
    for it in 1..=max_iter {
        let h = data.hessian_analytic(cm, &theta, &ev);
        // Levenberg shift until positive definite
        let maxdiag = (0..q).map(|i| h[i * q + i].abs()).fold(1e-12, f64::max);
        let mut lambda = 0.0;
        let mut step = None;
        for _ in 0..60 {
            let mut hs = h.clone();
            for i in 0..q {
                hs[i * q + i] += lambda;
            }
            if let Ok(l) = linalg::cholesky(&hs, q) {
                step = Some(linalg::chol_solve(&l, q, &grad));
                break;
            }
            lambda = if lambda == 0.0 {
                1e-8 * maxdiag
            } else {
                lambda * 10.0
            };
        }
        let Some(step) = step else {
            return degenerate("MMRM: the REML Hessian could not be regularised");
        };
        let decrement: f64 = step.iter().zip(&grad).map(|(s, g)| s * g).sum();
        // Armijo line search along −step
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..50 {
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a - t * s).collect();
            match data.eval(cm, &cand) {
                Some(e) if e.dev <= ev.dev - 1e-4 * t * decrement => {
                    accepted = Some((cand, e));
                    break;
                }
                _ => {}
            }
            t *= 0.5;
        }
        let mut converged_now = decrement.abs() < 1e-14 * ev.dev.abs().max(1.0)
            || step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-11;
        match accepted {
            Some((c, e)) => {
                theta = c;
                ev = e;
                grad = data.gradient(cm, &theta, &ev);
            }
            // no representable decrease left: at the optimum to machine precision
            None if converged_now || decrement.abs() < 1e-10 * ev.dev.abs().max(1.0) => {
                converged_now = true;
            }
            None => {
                return degenerate(format!(
                    "MMRM did not converge: no decrease of the REML deviance along the Newton direction at iteration {it} (deviance {:.6}, max |gradient| {:.3e}); the covariance may be near singular — try a simpler structure (--cov cs or ar1)",
                    ev.dev,
                    grad.iter().map(|g| g.abs()).fold(0.0, f64::max)
                ));
            }
        }
        if converged_now || accepted_is_tiny(&step, t) {
            let hess = data.hessian_analytic(cm, &theta, &ev);
            if linalg::cholesky(&hess, q).is_err() {
                return degenerate(
                    "MMRM converged to a point where the REML Hessian is not positive definite (covariance parameters not identifiable, e.g. a visit with too few subjects or a correlation at ±1)",
                );
            }
            let gmax = grad.iter().map(|g| g.abs()).fold(0.0, f64::max);
            if gmax > 1e-4 * ev.dev.abs().max(1.0) {
                return degenerate(format!(
                    "MMRM did not converge: max |gradient| {gmax:.3e} at the final iterate"
                ));
            }
            return Ok(Solution {
                theta,
                ev,
                hess,
                grad,
                iterations: it,
            });
        }
    }
    degenerate(format!(
        "MMRM did not converge in {max_iter} Newton iterations (deviance {:.6}, max |gradient| {:.3e})",
        ev.dev,
        grad.iter().map(|g| g.abs()).fold(0.0, f64::max)
    ))
}

fn accepted_is_tiny(step: &[f64], t: f64) -> bool {
    t == 1.0 && step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-9
}

// ---------------------------------------------------------------------------------------
// Dataset → design
// ---------------------------------------------------------------------------------------

/// Natural sort key: digit runs compare as numbers ("Week 2" < "Week 12").
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for ch in s.chars() {
            let d = ch.is_ascii_digit();
            match out.last_mut() {
                Some((k, t)) if *k == d => t.push(ch),
                _ => out.push((d, ch.to_string())),
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x.0, y.0) {
            (true, true) => {
                let xs = x.1.trim_start_matches('0');
                let ys = y.1.trim_start_matches('0');
                xs.len().cmp(&ys.len()).then_with(|| xs.cmp(ys))
            }
            (false, false) => x.1.cmp(&y.1),
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

enum Term {
    Factor {
        name: String,
        levels: Vec<String>,
        codes: Vec<u32>,
    },
    Continuous {
        name: String,
        values: Vec<f64>,
        mean: f64,
    },
}

/// Fits the MMRM and returns the CSR quantities.
pub fn mmrm(ds: &Dataset, spec: &MmrmSpec, alpha: f64) -> Result<MmrmFit> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::Invalid(format!(
            "alpha must be in (0, 1), got {alpha}"
        )));
    }
    let y_all = ds.numeric(&spec.response)?;
    let n_all = y_all.len();
    let mut used = vec![
        spec.subject.as_str(),
        spec.visit.as_str(),
        spec.treatment.as_str(),
    ];
    for c in &spec.covariates {
        used.push(c.as_str());
    }
    let cols: Vec<&crate::data::Column> =
        used.iter().map(|c| ds.column(c)).collect::<Result<_>>()?;
    for c in &spec.covariates {
        for r in [&spec.subject, &spec.visit, &spec.treatment, &spec.response] {
            if c.eq_ignore_ascii_case(r) {
                return Err(StatsError::Invalid(format!(
                    "covariate `{c}` is already the response, subject, visit or treatment column"
                )));
            }
        }
    }
    let keep: Vec<bool> = (0..n_all)
        .map(|i| !y_all[i].is_nan() && cols.iter().all(|c| c.missing_code(i).is_none()))
        .collect();
    let dropped = keep.iter().filter(|k| !**k).count();
    let rows: Vec<usize> = (0..n_all).filter(|&i| keep[i]).collect();
    let n = rows.len();
    if n == 0 {
        return degenerate("no complete rows (response, subject, visit, treatment, covariates)");
    }
    let y: Vec<f64> = rows.iter().map(|&i| y_all[i]).collect();
    let subj = ds.codes(&spec.subject)?.subset(&keep);
    // visits in natural order (or as given)
    let vcodes = ds.codes(&spec.visit)?.subset(&keep);
    let mut vorder: Vec<usize> = (0..vcodes.levels.len()).collect();
    match &spec.visit_order {
        Some(order) => {
            for l in &vcodes.levels {
                if !order.iter().any(|o| o == l) {
                    return Err(StatsError::Invalid(format!(
                        "visit `{l}` is not in the given visit order ({})",
                        order.join(", ")
                    )));
                }
            }
            vorder.sort_by_key(|&k| order.iter().position(|o| *o == vcodes.levels[k]));
        }
        None => vorder.sort_by(|&a, &b| natural_cmp(&vcodes.levels[a], &vcodes.levels[b])),
    }
    let mut vrank = vec![0usize; vorder.len()];
    for (r, &k) in vorder.iter().enumerate() {
        vrank[k] = r;
    }
    let visits: Vec<String> = vorder.iter().map(|&k| vcodes.levels[k].clone()).collect();
    let vpos: Vec<usize> = vcodes.codes.iter().map(|&c| vrank[c as usize]).collect();
    let m = visits.len();
    if m > 40 {
        return Err(StatsError::Invalid(format!(
            "{m} distinct visits: too many for an MMRM (at most 40)"
        )));
    }
    if m < 2 && spec.cov != CovStructure::Us {
        return degenerate("a single visit: use ANCOVA instead of an MMRM");
    }
    // treatment
    let mut tc = ds.codes(&spec.treatment)?.subset(&keep);
    if let Some(r) = &spec.reference {
        tc = tc.with_reference(r)?;
    }
    let arms = tc.levels.clone();
    if arms.len() < 2 {
        return degenerate(format!(
            "treatment `{}` has a single level among complete rows",
            spec.treatment
        ));
    }
    let reference = arms[0].clone();
    // covariates
    let mut terms = Vec::new();
    for c in &spec.covariates {
        let col = ds.column(c)?;
        let declared = spec.factors.iter().any(|f| f.eq_ignore_ascii_case(c));
        if ds.term_kind(c, declared, Some("--factors"))? == crate::data::TermKind::Factor {
            let mut codes = ds.codes(c)?.subset(&keep);
            if let Some((_, r)) = spec
                .factor_refs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(c))
            {
                codes = codes.with_reference(r)?;
            }
            if codes.levels.len() < 2 {
                return degenerate(format!(
                    "factor `{c}` has a single level among complete rows; it cannot be in the model"
                ));
            }
            terms.push(Term::Factor {
                name: col.name.clone(),
                levels: codes.levels,
                codes: codes.codes,
            });
        } else {
            let v = ds.numeric(c)?;
            let values: Vec<f64> = rows.iter().map(|&i| v[i]).collect();
            let mean = values.iter().sum::<f64>() / n as f64;
            terms.push(Term::Continuous {
                name: col.name.clone(),
                values,
                mean,
            });
        }
    }
    // column layout
    let na = arms.len();
    let mut names = vec!["Intercept".to_string()];
    let col_trt = names.len();
    for a in &arms[1..] {
        names.push(format!("{}={a}", spec.treatment));
    }
    let col_vis = names.len();
    for v in &visits[1..] {
        names.push(format!("{}={v}", spec.visit));
    }
    let col_tv = names.len();
    for a in &arms[1..] {
        for v in &visits[1..] {
            names.push(format!("{}={a}:{}={v}", spec.treatment, spec.visit));
        }
    }
    let mut term_cols = Vec::new();
    for t in &terms {
        term_cols.push(names.len());
        match t {
            Term::Factor { name, levels, .. } => {
                for l in &levels[1..] {
                    names.push(format!("{name}={l}"));
                }
            }
            Term::Continuous { name, .. } => names.push(name.clone()),
        }
    }
    let mut vbc_cols = vec![usize::MAX; terms.len()];
    if spec.visit_by_covariate {
        for (k, t) in terms.iter().enumerate() {
            if let Term::Continuous { name, .. } = t {
                vbc_cols[k] = names.len();
                for v in &visits[1..] {
                    names.push(format!("{name}:{}={v}", spec.visit));
                }
            }
        }
    }
    let p = names.len();
    let ybar = y.iter().sum::<f64>() / n as f64;
    // sparse centred rows z = (x̃, y − ȳ)
    let zrow = |r: usize| -> Vec<(usize, f64)> {
        let mut z = Vec::with_capacity(8);
        z.push((0, 1.0));
        let a = tc.codes[r] as usize;
        let v = vpos[r];
        if a > 0 {
            z.push((col_trt + a - 1, 1.0));
        }
        if v > 0 {
            z.push((col_vis + v - 1, 1.0));
        }
        if a > 0 && v > 0 {
            z.push((col_tv + (a - 1) * (m - 1) + v - 1, 1.0));
        }
        for (k, t) in terms.iter().enumerate() {
            match t {
                Term::Factor { codes, .. } => {
                    let l = codes[r] as usize;
                    if l > 0 {
                        z.push((term_cols[k] + l - 1, 1.0));
                    }
                }
                Term::Continuous { values, mean, .. } => {
                    let x = values[r] - mean;
                    z.push((term_cols[k], x));
                    if vbc_cols[k] != usize::MAX && v > 0 {
                        z.push((vbc_cols[k] + v - 1, x));
                    }
                }
            }
        }
        z.push((p, y[r] - ybar));
        z
    };
    // group rows by subject, ordered by visit
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by_key(|&r| (subj.codes[r], vpos[r]));
    // subject boundaries in `order`
    let mut bounds = vec![0usize];
    for k in 1..n {
        if subj.codes[order[k]] != subj.codes[order[k - 1]] {
            bounds.push(k);
        }
    }
    bounds.push(n);
    // Cross products per pattern, accumulated over fixed chunks of subjects in parallel and
    // merged in chunk order: the sums do not depend on the number of threads. At most
    // CHUNKS_PER_BATCH chunk accumulators exist at a time.
    let n_subj = bounds.len() - 1;
    let n_chunks = n_subj.div_ceil(CHUNK);
    let chunk = |c: usize| -> Result<Builder> {
        let mut b = Builder {
            data: MmrmData::new(m, p),
            index: HashMap::new(),
            stored: 0,
        };
        for k in c * CHUNK..((c + 1) * CHUNK).min(n_subj) {
            let rs = &order[bounds[k]..bounds[k + 1]];
            let vs: Vec<usize> = rs.iter().map(|&r| vpos[r]).collect();
            if let Some(w) = vs.windows(2).find(|w| w[0] == w[1]) {
                return Err(StatsError::Invalid(format!(
                    "subject `{}` has more than one row at visit `{}`",
                    subj.levels[subj.codes[rs[0]] as usize], visits[w[0]]
                )));
            }
            let zs: Vec<Vec<(usize, f64)>> = rs.iter().map(|&r| zrow(r)).collect();
            b.add_subject(&vs, &zs)?;
        }
        Ok(b)
    };
    let mut b = Builder {
        data: MmrmData::new(m, p),
        index: HashMap::new(),
        stored: 0,
    };
    let mut c0 = 0;
    while c0 < n_chunks {
        let c1 = (c0 + CHUNKS_PER_BATCH).min(n_chunks);
        let parts: Vec<Result<Builder>> = {
            use rayon::prelude::*;
            (c0..c1).into_par_iter().map(chunk).collect()
        };
        for part in parts {
            b.merge(part?);
        }
        c0 = c1;
    }
    let mut data = b.data;
    data.finalize();
    if data.n_obs <= p {
        return degenerate(format!(
            "{} observations for {p} fixed effects: no residual degrees of freedom",
            data.n_obs
        ));
    }
    // singular design check on XᵀX
    {
        let pp = p + 1;
        let ident: Vec<Vec<f64>> = data
            .patterns
            .iter()
            .map(|pat| {
                let s = pat.visits.len();
                let mut e = vec![0.0; s * s];
                for a in 0..s {
                    e[a * s + a] = 1.0;
                }
                e
            })
            .collect();
        let t = data.weighted(&ident);
        let mut xtx = vec![0.0; p * p];
        for r in 0..p {
            xtx[r * p..r * p + p].copy_from_slice(&t[r * pp..r * pp + p]);
        }
        linalg::cholesky(&xtx, p).map_err(|j| {
            StatsError::Degenerate(format!(
                "singular design: column `{}` is a linear combination of earlier columns (an empty treatment × visit cell, collinear covariates or confounded factors)",
                names[j]
            ))
        })?;
    }
    // US needs every pair of visits observed together in some subject
    if spec.cov == CovStructure::Us {
        let mut together = vec![false; m * m];
        for pat in &data.patterns {
            for &a in &pat.visits {
                for &b in &pat.visits {
                    together[a * m + b] = true;
                }
            }
        }
        for a in 0..m {
            for b in 0..a {
                if !together[a * m + b] {
                    return degenerate(format!(
                        "visits `{}` and `{}` are never observed in the same subject: their covariance is not estimable with an unstructured matrix (use --cov cs or ar1)",
                        visits[b], visits[a]
                    ));
                }
            }
        }
    }
    let cm = CovModel { kind: spec.cov, m };
    let sol = optimise(&data, &cm)?;
    let q = cm.n_theta();

    // back to uncentred coefficients: β = C⁻¹β̃ with C⁻¹ = I − N
    let mut cinv = vec![0.0; p * p];
    for i in 0..p {
        cinv[i * p + i] = 1.0;
    }
    for (k, t) in terms.iter().enumerate() {
        if let Term::Continuous { mean, .. } = t {
            cinv[term_cols[k]] = -mean; // row 0 (intercept), column of the covariate
            if vbc_cols[k] != usize::MAX {
                for v in 1..m {
                    cinv[(col_vis + v - 1) * p + vbc_cols[k] + v - 1] = -mean;
                }
            }
        }
    }
    let transform = |a: &[f64]| -> Vec<f64> {
        // C⁻¹ A C⁻ᵀ
        let mut ca = vec![0.0; p * p];
        for i in 0..p {
            for k in 0..p {
                let c = cinv[i * p + k];
                if c != 0.0 {
                    for j in 0..p {
                        ca[i * p + j] += c * a[k * p + j];
                    }
                }
            }
        }
        let mut out = vec![0.0; p * p];
        for i in 0..p {
            for j in 0..p {
                let mut s = 0.0;
                for k in 0..p {
                    s += ca[i * p + k] * cinv[j * p + k];
                }
                out[i * p + j] = s;
            }
        }
        out
    };
    let mut beta: Vec<f64> = (0..p)
        .map(|i| (0..p).map(|k| cinv[i * p + k] * sol.ev.beta[k]).sum())
        .collect();
    beta[0] += ybar;
    let phi = transform(&sol.ev.phi);
    let dphi: Vec<Vec<f64>> = data
        .dphi(&cm, &sol.theta, &sol.ev)
        .iter()
        .map(|d| transform(d))
        .collect();
    // A = 2 H⁻¹
    let lh = linalg::cholesky(&sol.hess, q).map_err(|_| {
        StatsError::Degenerate("MMRM: REML Hessian not positive definite at the estimate".into())
    })?;
    let hinv = linalg::chol_inverse(&lh, q);
    // covariance used for SEs: model-based Φ, or the Kenward–Roger adjusted Φ_A
    let vcov = match spec.df {
        DfMethod::Satterthwaite => phi.clone(),
        DfMethod::KenwardRoger => transform(&data.kr_adjusted(&cm, &sol.theta, &sol.ev, &hinv)),
    };
    // (variance for the SE, df): df = 2 (lᵀΦl)² / (gᵀ A g) with the unadjusted Φ for both
    // methods (one-dimensional Kenward–Roger df reduce to this; mmrm does the same)
    let sat = |l: &[f64]| -> (f64, f64) {
        let v = linalg::quad(&phi, p, l, l);
        let g: Vec<f64> = dphi.iter().map(|d| linalg::quad(d, p, l, l)).collect();
        let denom = 2.0 * linalg::quad(&hinv, q, &g, &g);
        // a contrast whose variance does not depend on θ has infinite df: cap it (t ≈ normal)
        let df = 2.0 * v * v / denom;
        let df = if df.is_nan() || df > 1e9 { 1e9 } else { df };
        (linalg::quad(&vcov, p, l, l), df)
    };
    let coefficients: Vec<MmrmCoef> = (0..p)
        .map(|j| {
            let mut l = vec![0.0; p];
            l[j] = 1.0;
            let (v, df) = sat(&l);
            let se = v.sqrt();
            let t = beta[j] / se;
            MmrmCoef {
                term: names[j].clone(),
                estimate: beta[j],
                se,
                df,
                t,
                p: t_p2(t, df),
            }
        })
        .collect();
    // LS means
    let lvec = |a: usize, v: usize| -> Vec<f64> {
        let mut l = vec![0.0; p];
        l[0] = 1.0;
        if a > 0 {
            l[col_trt + a - 1] = 1.0;
        }
        if v > 0 {
            l[col_vis + v - 1] = 1.0;
        }
        if a > 0 && v > 0 {
            l[col_tv + (a - 1) * (m - 1) + v - 1] = 1.0;
        }
        for (k, t) in terms.iter().enumerate() {
            match t {
                Term::Factor { levels, .. } => {
                    for j in 1..levels.len() {
                        l[term_cols[k] + j - 1] = 1.0 / levels.len() as f64;
                    }
                }
                Term::Continuous { mean, .. } => {
                    l[term_cols[k]] = *mean;
                    if vbc_cols[k] != usize::MAX && v > 0 {
                        l[vbc_cols[k] + v - 1] = *mean;
                    }
                }
            }
        }
        l
    };
    // Type III F tests. Hypotheses in terms of LS-mean vectors (equal weights over the other
    // factor's levels: SAS type III / emmeans joint tests), so they do not depend on coding.
    let avg = |rows: &[Vec<f64>]| -> Vec<f64> {
        let mut o = vec![0.0; p];
        for r in rows {
            for (a, b) in o.iter_mut().zip(r) {
                *a += b / rows.len() as f64;
            }
        }
        o
    };
    let sub = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
    let mut tests: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
    tests.push((
        spec.treatment.clone(),
        (1..na)
            .map(|a| {
                let d: Vec<Vec<f64>> = (0..m).map(|v| sub(&lvec(a, v), &lvec(0, v))).collect();
                avg(&d)
            })
            .collect(),
    ));
    if m > 1 {
        tests.push((
            spec.visit.clone(),
            (1..m)
                .map(|v| {
                    let d: Vec<Vec<f64>> = (0..na).map(|a| sub(&lvec(a, v), &lvec(a, 0))).collect();
                    avg(&d)
                })
                .collect(),
        ));
        let mut rows = Vec::new();
        for a in 1..na {
            for v in 1..m {
                rows.push(sub(
                    &sub(&lvec(a, v), &lvec(0, v)),
                    &sub(&lvec(a, 0), &lvec(0, 0)),
                ));
            }
        }
        tests.push((format!("{}*{}", spec.treatment, spec.visit), rows));
    }
    for (k, t) in terms.iter().enumerate() {
        match t {
            Term::Factor { name, levels, .. } => {
                let rows = (1..levels.len())
                    .map(|j| {
                        let mut l = vec![0.0; p];
                        l[term_cols[k] + j - 1] = 1.0;
                        l
                    })
                    .collect();
                tests.push((name.clone(), rows));
            }
            Term::Continuous { name, .. } => {
                let mut l = vec![0.0; p];
                l[term_cols[k]] = 1.0;
                if vbc_cols[k] != usize::MAX {
                    // average slope over visits
                    for v in 1..m {
                        l[vbc_cols[k] + v - 1] = 1.0 / m as f64;
                    }
                }
                tests.push((name.clone(), vec![l]));
                if vbc_cols[k] != usize::MAX && m > 1 {
                    let rows = (1..m)
                        .map(|v| {
                            let mut l = vec![0.0; p];
                            l[vbc_cols[k] + v - 1] = 1.0;
                            l
                        })
                        .collect();
                    tests.push((format!("{name}*{}", spec.visit), rows));
                }
            }
        }
    }
    let type3 = tests
        .iter()
        .map(|(term, rows)| {
            let (f, num_df, den_df) = match spec.df {
                DfMethod::Satterthwaite => f_test_satterthwaite(rows, &beta, &phi, &dphi, &hinv)?,
                DfMethod::KenwardRoger => f_test_kr(rows, &beta, &phi, &vcov, &dphi, &hinv)?,
            };
            Ok(MmrmFTest {
                term: term.clone(),
                num_df,
                den_df,
                f,
                p: f_sf(f, num_df as f64, den_df),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut counts = vec![0u64; na * m];
    for r in 0..n {
        counts[tc.codes[r] as usize * m + vpos[r]] += 1;
    }
    let mut lsmeans = Vec::new();
    let mut diffs = Vec::new();
    for v in 0..m {
        for a in 0..na {
            let l = lvec(a, v);
            let (var, df) = sat(&l);
            let est = dot(&l, &beta);
            let se = var.sqrt();
            let tq = t_ppf(1.0 - alpha / 2.0, df);
            lsmeans.push(MmrmLsMean {
                visit: visits[v].clone(),
                arm: arms[a].clone(),
                n: counts[a * m + v],
                estimate: est,
                se,
                df,
                lo: est - tq * se,
                hi: est + tq * se,
            });
        }
        let l0 = lvec(0, v);
        for (a, arm) in arms.iter().enumerate().skip(1) {
            let l: Vec<f64> = lvec(a, v).iter().zip(&l0).map(|(x, y)| x - y).collect();
            let (var, df) = sat(&l);
            let est = dot(&l, &beta);
            let se = var.sqrt();
            let tq = t_ppf(1.0 - alpha / 2.0, df);
            let t = est / se;
            diffs.push(MmrmDiff {
                visit: visits[v].clone(),
                arm: arm.clone(),
                reference: reference.clone(),
                estimate: est,
                se,
                df,
                lo: est - tq * se,
                hi: est + tq * se,
                t,
                p: t_p2(t, df),
            });
        }
    }
    let sig = cm.sigma(&sol.theta);
    let dev = sol.ev.dev;
    Ok(MmrmFit {
        response: spec.response.clone(),
        subject: spec.subject.clone(),
        visit: spec.visit.clone(),
        treatment: spec.treatment.clone(),
        reference,
        cov: spec.cov,
        df_method: spec.df,
        method: "REML",
        n_obs: data.n_obs as u64,
        n_subjects: data.n_subj as u64,
        visits,
        arms,
        deviance: dev,
        loglik: -dev / 2.0,
        aic: dev + 2.0 * q as f64,
        bic: dev + q as f64 * (data.n_subj as f64).ln(),
        n_theta: q,
        theta: sol.theta.clone(),
        iterations: sol.iterations,
        max_gradient: sol.grad.iter().map(|g| g.abs()).fold(0.0, f64::max),
        covariance: (0..m).map(|i| sig[i * m..i * m + m].to_vec()).collect(),
        coefficients,
        vcov: (0..p).map(|i| vcov[i * p..i * p + p].to_vec()).collect(),
        type3,
        lsmeans,
        diffs,
        alpha,
        dropped_rows: dropped,
    })
}

/// Eigen-decomposition of a small symmetric matrix (cyclic Jacobi): eigenvalues in
/// decreasing order and the eigenvectors as rows.
fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
        if off <= 1e-30 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for pi in 0..n {
            for qi in pi + 1..n {
                let apq = a[pi * n + qi];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[qi * n + qi] - a[pi * n + pi]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let sn = t * c;
                for k in 0..n {
                    let akp = a[k * n + pi];
                    let akq = a[k * n + qi];
                    a[k * n + pi] = c * akp - sn * akq;
                    a[k * n + qi] = sn * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[pi * n + k];
                    let aqk = a[qi * n + k];
                    a[pi * n + k] = c * apk - sn * aqk;
                    a[qi * n + k] = sn * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + pi];
                    let vkq = v[k * n + qi];
                    v[k * n + pi] = c * vkp - sn * vkq;
                    v[k * n + qi] = sn * vkp + c * vkq;
                }
            }
        }
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&x, &y| a[y * n + y].total_cmp(&a[x * n + x]));
    let vals = idx.iter().map(|&i| a[i * n + i]).collect();
    let vecs = idx
        .iter()
        .map(|&i| (0..n).map(|k| v[k * n + i]).collect())
        .collect();
    (vals, vecs)
}

/// `L M Lᵀ` for rows `l` (c×p) and M (p×p).
fn lml(l: &[Vec<f64>], mm: &[f64], p: usize) -> Vec<f64> {
    let c = l.len();
    let mut o = vec![0.0; c * c];
    for i in 0..c {
        for j in 0..=i {
            let v = linalg::quad(mm, p, &l[i], &l[j]);
            o[i * c + j] = v;
            o[j * c + i] = v;
        }
    }
    o
}

/// One-dimensional Satterthwaite df of `l`.
fn sat_df(l: &[f64], phi: &[f64], dphi: &[Vec<f64>], hinv: &[f64]) -> f64 {
    let p = l.len();
    let q = dphi.len();
    let v = linalg::quad(phi, p, l, l);
    let g: Vec<f64> = dphi.iter().map(|d| linalg::quad(d, p, l, l)).collect();
    let df = 2.0 * v * v / (2.0 * linalg::quad(hinv, q, &g, &g));
    if df.is_nan() || df > 1e9 { 1e9 } else { df }
}

/// Satterthwaite F test of `L β = 0` (SAS `DDFM=SATTERTHWAITE`; mmrm `h_df_md_sat`): the
/// contrast covariance is diagonalised, each eigen-direction gets its one-dimensional df
/// ν_k, and the denominator df is `2E/(E − r)` with `E = Σ ν_k/(ν_k − 2)`.
fn f_test_satterthwaite(
    rows: &[Vec<f64>],
    beta: &[f64],
    phi: &[f64],
    dphi: &[Vec<f64>],
    hinv: &[f64],
) -> Result<(f64, usize, f64)> {
    let p = beta.len();
    let c = rows.len();
    let cov = lml(rows, phi, p);
    let (vals, vecs) = sym_eigen(&cov, c);
    let tol = f64::EPSILON.sqrt() * vals[0].max(0.0);
    let rank = vals.iter().filter(|&&x| x > tol).count();
    if rank == 0 {
        return degenerate("F test: the hypothesis has no estimable direction");
    }
    let mut fsum = 0.0;
    let mut nus = Vec::with_capacity(rank);
    for k in 0..rank {
        let lk: Vec<f64> = (0..p)
            .map(|j| (0..c).map(|i| vecs[k][i] * rows[i][j]).sum())
            .collect();
        let est = dot(&lk, beta);
        fsum += est * est / vals[k];
        nus.push(sat_df(&lk, phi, dphi, hinv));
    }
    let f = fsum / rank as f64;
    let df = if rank == 1 {
        nus[0]
    } else if nus
        .windows(2)
        .all(|w| (w[0] - w[1]).abs() < f64::EPSILON.sqrt())
    {
        nus.iter().sum::<f64>() / rank as f64
    } else if nus.iter().any(|&nu| nu <= 2.0) {
        2.0
    } else {
        let e: f64 = nus.iter().map(|nu| nu / (nu - 2.0)).sum();
        2.0 * e / (e - rank as f64)
    };
    Ok((f, rank, df))
}

/// Kenward–Roger F test (Kenward & Roger 1997; mmrm `h_kr_df`): Wald F with the adjusted
/// covariance, scaled by λ, on (c, m) df.
fn f_test_kr(
    rows: &[Vec<f64>],
    beta: &[f64],
    phi: &[f64],
    phi_a: &[f64],
    dphi: &[Vec<f64>],
    hinv: &[f64],
) -> Result<(f64, usize, f64)> {
    let p = beta.len();
    let c = rows.len();
    let q = dphi.len();
    let nl = c as f64;
    let inv = |a: &[f64]| -> Result<Vec<f64>> {
        let l = linalg::cholesky(a, c).map_err(|_| {
            StatsError::Degenerate("F test: contrast covariance is singular".into())
        })?;
        Ok(linalg::chol_inverse(&l, c))
    };
    // M = Lᵀ (L Φ Lᵀ)⁻¹ L
    let s0 = inv(&lml(rows, phi, p))?;
    let mut mm = vec![0.0; p * p];
    for i in 0..c {
        for j in 0..c {
            let w = s0[i * c + j];
            for a in 0..p {
                for b in 0..p {
                    mm[a * p + b] += rows[i][a] * w * rows[j][b];
                }
            }
        }
    }
    // M Φ P_h Φ = −M ∂Φ/∂θ_h
    let mp: Vec<Vec<f64>> = dphi.iter().map(|d| matmul(&mm, d, p)).collect();
    let tr = |a: &[f64]| (0..p).map(|i| a[i * p + i]).sum::<f64>();
    let trs: Vec<f64> = mp.iter().map(|x| tr(x)).collect();
    let (mut a1, mut a2) = (0.0, 0.0);
    for i in 0..q {
        for j in 0..q {
            let w = 2.0 * hinv[i * q + j];
            a1 += w * trs[i] * trs[j];
            a2 += w * tr(&matmul(&mp[i], &mp[j], p));
        }
    }
    let b = (a1 + 6.0 * a2) / (2.0 * nl);
    let e_star = 1.0 / (1.0 - a2 / nl);
    let g = ((nl + 1.0) * a1 - (nl + 4.0) * a2) / ((nl + 2.0) * a2);
    let denom = 3.0 * nl + 2.0 - 2.0 * g;
    let (c1, c2, c3) = (g / denom, (nl - g) / denom, (nl + 2.0 - g) / denom);
    let v_star = 2.0 / nl * (1.0 + c1 * b) / (1.0 - c2 * b).powi(2) / (1.0 - c3 * b);
    let rho = v_star / (2.0 * e_star * e_star);
    let mdf = 4.0 + (nl + 2.0) / (nl * rho - 1.0);
    let lambda = mdf / (e_star * (mdf - 2.0));
    let lb: Vec<f64> = rows.iter().map(|r| dot(r, beta)).collect();
    let sa = inv(&lml(rows, phi_a, p))?;
    let f = linalg::quad(&sa, c, &lb, &lb) / nl;
    if !(mdf.is_finite() && mdf > 0.0 && lambda.is_finite()) {
        return degenerate(
            "Kenward-Roger F test: degrees of freedom undefined for this hypothesis",
        );
    }
    Ok((lambda * f, c, mdf))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn natural_order_of_visits() {
        let mut v = vec!["Week 12", "Week 2", "Baseline", "Week 4", "VIS10", "VIS9"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["Baseline", "VIS9", "VIS10", "Week 2", "Week 4", "Week 12"]
        );
    }

    /// The analytic gradient agrees with central differences of the deviance.
    #[test]
    fn analytic_gradient_matches_finite_differences() {
        // two patterns, p = 2 (intercept + slope), m = 3
        let mut b = Builder {
            data: MmrmData::new(3, 2),
            index: HashMap::new(),
            stored: 0,
        };
        let mut s = 1u64;
        let mut u = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64) / (1u64 << 53) as f64 - 0.5
        };
        for i in 0..40 {
            let vis: Vec<usize> = if i % 3 == 0 {
                vec![0, 2]
            } else {
                vec![0, 1, 2]
            };
            let rows: Vec<Vec<(usize, f64)>> = vis
                .iter()
                .map(|&v| vec![(0, 1.0), (1, v as f64 + u()), (2, 3.0 * u() + v as f64)])
                .collect();
            b.add_subject(&vis, &rows).unwrap();
        }
        let mut data = b.data;
        data.finalize();
        for kind in [CovStructure::Us, CovStructure::Cs, CovStructure::Ar1] {
            let cm = CovModel { kind, m: 3 };
            let theta: Vec<f64> = (0..cm.n_theta()).map(|j| 0.1 * j as f64 - 0.2).collect();
            let ev = data.eval(&cm, &theta).unwrap();
            let g = data.gradient(&cm, &theta, &ev);
            for j in 0..theta.len() {
                let h = 1e-5;
                let mut tp = theta.clone();
                let mut tm = theta.clone();
                tp[j] += h;
                tm[j] -= h;
                let fd = (data.eval(&cm, &tp).unwrap().dev - data.eval(&cm, &tm).unwrap().dev)
                    / (2.0 * h);
                assert!(
                    (fd - g[j]).abs() < 1e-6 * g[j].abs().max(1.0),
                    "{kind:?} θ{j}: analytic {} vs numeric {fd}",
                    g[j]
                );
            }
            // analytic Hessian against differences of the analytic gradient
            let ha = data.hessian_analytic(&cm, &theta, &ev);
            let hn = data.hessian(&cm, &theta, 1e-3).unwrap();
            for (k, (a, n)) in ha.iter().zip(&hn).enumerate() {
                assert!(
                    (a - n).abs() < 1e-6 * n.abs().max(1.0),
                    "{kind:?} H[{k}]: analytic {a} vs numeric {n}"
                );
            }
            // ∂Φ/∂θ against differences of Φ
            let dphi = data.dphi(&cm, &theta, &ev);
            for j in 0..theta.len() {
                let h = 1e-6;
                let mut tp = theta.clone();
                let mut tm = theta.clone();
                tp[j] += h;
                tm[j] -= h;
                let pp = data.eval(&cm, &tp).unwrap().phi;
                let pm = data.eval(&cm, &tm).unwrap().phi;
                for k in 0..4 {
                    let fd = (pp[k] - pm[k]) / (2.0 * h);
                    assert!((fd - dphi[j][k]).abs() < 1e-6 * fd.abs().max(1e-3));
                }
            }
        }
    }
}
