//! Fisher's exact test for r×c tables (Freeman–Halton extension), exactly by a network
//! algorithm, or by a seeded Monte Carlo permutation p-value.
//!
//! The two-sided p-value is the total probability, under independence with both margins
//! fixed (multiple hypergeometric), of the tables whose probability is at most the observed
//! table's times (1 + 1e-7): R's `fisher.test` for 2×2 tables (`relErr`) and
//! [`crate::freq::fisher_exact`]. R's r×c path (FEXACT) instead adds 3.45e-7 to the log
//! probability (≈ 1 + 3.45e-7), and scipy (2×2 only, no r×c test) uses 1 + 1e-14; the three
//! differ only for a table whose probability lies within that tiny band above the observed
//! one, a near-tie that floating point cannot resolve reliably in any of them.
//!
//! Algorithm (Mehta & Patel's network idea with simple bounds): the table is filled one
//! column at a time (columns in ascending order of their totals, the smaller dimension as
//! rows); a node is the multiset of remaining row totals, and each node keeps the distinct
//! "past" scores `S = Σ ln n_ij!` of the partial tables that reach it with their
//! multiplicities. For every node, cheap bounds on the smallest and largest score of any
//! completion (each remaining column spread as evenly / as unevenly as the remaining row
//! totals allow, the same with rows and columns exchanged, and a Lagrangian lower bound)
//! decide for each past score whether all completions qualify (their total probability is
//! a closed-form multinomial sum), none does, or the node must be expanded. When two columns
//! are left, a completion is fixed by the next column alone: the node's completion scores are
//! sorted once with cumulative probabilities, and every past score is settled by a binary
//! search (meet in the middle). The work and the stored entries are counted and the
//! computation refused, not left to run, when either exceeds its budget.

use crate::error::{Result, StatsError};
use serde::Serialize;
use std::collections::HashMap;

/// Relative tolerance of the two-sided p-value: tables with probability ≤ P_obs·(1 + 1e-7)
/// count as at least as extreme as the observed one.
pub const REL_TOL: f64 = 1e-7;

/// Default work budget of [`fisher_exact_rxc`] (generated columns × (1 + past scores they
/// extend)): about 5 s on one core of the development machine. Each stage's work is known
/// before it runs, so a table beyond the budget is refused without spending it.
pub const DEFAULT_MAX_WORK: u64 = 200_000_000;

/// Most nodes (counted 4×) plus past scores kept for one stage (memory bound, ≈100 bytes each).
const MAX_STORED: u64 = 4_000_000;

/// Largest total the exact algorithm accepts (its log-factorial table is kept in memory; far
/// below this the number of tables already exceeds the work budget unless the table is tiny).
const MAX_EXACT_N: u64 = 1_000_000;

/// Largest total the Monte Carlo test accepts (two labels per observation and the
/// log-factorial table are kept in memory: about 16 bytes per observation).
const MAX_MC_N: u64 = 10_000_000;

/// How the p-value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FisherMethod {
    Exact,
    MonteCarlo,
}

/// Fisher's exact test on an r×c table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FisherRxc {
    pub method: FisherMethod,
    /// Two-sided p-value (Monte Carlo: `(1 + hits) / (samples + 1)`, as R's
    /// `simulate.p.value`).
    pub p_two_sided: f64,
    /// Probability of the observed table given its margins (SAS "Table Probability (P)").
    pub table_probability: f64,
    /// Monte Carlo only: number of permuted tables and the seed.
    pub samples: Option<u64>,
    pub seed: Option<u64>,
    /// Monte Carlo only: the 99% binomial (normal approximation) half-width of the p-value.
    pub mc_half_width_99: Option<f64>,
    /// Exact only: work steps used (for tuning the budget; not part of the JSON output).
    #[serde(skip)]
    pub steps: u64,
}

/// Margins of a table after validation; rows and columns with a zero total are dropped
/// (they enter every table's probability as 0! = 1, so nothing changes).
struct Prepared {
    cells: Vec<Vec<u64>>,
    rows: Vec<u64>,
    cols: Vec<u64>,
    n: u64,
}

fn prepare(t: &[Vec<u64>], what: &str) -> Result<Prepared> {
    let r = t.len();
    let c = t.first().map_or(0, |x| x.len());
    if r < 2 || c < 2 || t.iter().any(|row| row.len() != c) {
        return Err(StatsError::Invalid(format!(
            "{what} needs a rectangular table with at least 2 rows and 2 columns (got {r} row(s))"
        )));
    }
    let rows: Vec<u64> = t.iter().map(|row| row.iter().sum()).collect();
    let cols: Vec<u64> = (0..c).map(|j| t.iter().map(|row| row[j]).sum()).collect();
    let n: u64 = rows.iter().sum();
    if n == 0 {
        return Err(StatsError::Degenerate(format!(
            "{what}: the table is empty"
        )));
    }
    let keep_r: Vec<usize> = (0..r).filter(|&i| rows[i] > 0).collect();
    let keep_c: Vec<usize> = (0..c).filter(|&j| cols[j] > 0).collect();
    let cells: Vec<Vec<u64>> = keep_r
        .iter()
        .map(|&i| keep_c.iter().map(|&j| t[i][j]).collect())
        .collect();
    Ok(Prepared {
        cells,
        rows: keep_r.iter().map(|&i| rows[i]).collect(),
        cols: keep_c.iter().map(|&j| cols[j]).collect(),
        n,
    })
}

fn ln_fact_table(n: u64) -> Vec<f64> {
    let mut lf = Vec::with_capacity(n as usize + 1);
    lf.push(0.0);
    // Summing logs accumulates ~1e-16·k relative error, far below the 1e-7 tolerance and
    // identical for every table, so comparisons between tables are unaffected in practice.
    let mut acc = 0.0f64;
    for k in 1..=n {
        acc += (k as f64).ln();
        lf.push(acc);
    }
    lf
}

/// ln of the tolerance factor, in score units (score = Σ ln n_ij!, larger = less likely).
fn ln_tol() -> f64 {
    REL_TOL.ln_1p()
}

/// Sum of exp(x) over many terms without underflow of small p-values.
struct LogSum {
    m: f64,
    s: f64,
}

impl LogSum {
    fn new() -> Self {
        LogSum {
            m: f64::NEG_INFINITY,
            s: 0.0,
        }
    }
    fn add(&mut self, lx: f64) {
        if lx > self.m {
            self.s = self.s * (self.m - lx).exp() + 1.0;
            self.m = lx;
        } else {
            self.s += (lx - self.m).exp();
        }
    }
    fn value(&self) -> f64 {
        if self.s == 0.0 {
            0.0
        } else {
            self.s * self.m.exp()
        }
    }
}

/// min Σ ln n_i! over n with Σ n_i = total, 0 ≤ n_i ≤ caps_i (caps ascending, Σ caps ≥
/// total): spread as evenly as the caps allow (the even vector is majorised by every other).
fn spread(total: u64, caps: &[u64], lf: &[f64]) -> f64 {
    let mut rem = total;
    let mut s = 0.0;
    for (i, &cap) in caps.iter().enumerate() {
        let left = (caps.len() - i) as u64;
        let q = rem / left;
        if cap <= q {
            s += lf[cap as usize];
            rem -= cap;
        } else {
            let extra = rem % left;
            return s + extra as f64 * lf[q as usize + 1] + (left - extra) as f64 * lf[q as usize];
        }
    }
    s
}

/// max Σ ln n_i! under the same constraints: fill the largest caps first (this vector
/// majorises every other, and Σ ln n! is Schur-convex).
fn concentrate(total: u64, caps: &[u64], lf: &[f64]) -> f64 {
    let mut rem = total;
    let mut s = 0.0;
    for &cap in caps.iter().rev() {
        if rem == 0 {
            break;
        }
        let x = cap.min(rem);
        s += lf[x as usize];
        rem -= x;
    }
    s
}

/// Bounds (lower on the minimum, upper on the maximum) of the completion score from a node
/// with remaining row totals `rem` (ascending) and remaining columns `cols` (ascending).
fn bounds(rem: &[u64], cols: &[u64], lf: &[f64]) -> (f64, f64) {
    let lb_c: f64 = cols.iter().map(|&c| spread(c, rem, lf)).sum();
    let lb_r: f64 = rem.iter().map(|&r| spread(r, cols, lf)).sum();
    let ub_c: f64 = cols.iter().map(|&c| concentrate(c, rem, lf)).sum();
    let ub_r: f64 = rem.iter().map(|&r| concentrate(r, cols, lf)).sum();
    let lb = lb_c.max(lb_r).max(lagrange_lb(rem, cols, lf));
    let ub = ub_c.min(ub_r);
    // Sums in another order than the tables' own scores: widen by far more than rounding,
    // so a bound never settles a completion that lies on the threshold.
    let slack = 1e-9 * (1.0 + lb.abs().max(ub.abs()));
    (lb - slack, ub + slack)
}

/// Lagrangian lower bound on min Σ ln n_ij! over tables with row totals `rows` and column
/// totals `cols`: for any multipliers u, v,
/// Σ_ij min_{0 ≤ x ≤ min(r_i, c_j)} (ln x! − (u_i + v_j) x) + Σ u_i r_i + Σ v_j c_j
/// is at most the minimum (weak duality; the inner minimum is at x = ⌊e^(u_i+v_j)⌋, clipped).
/// Starts from the independence table (u_i + v_j = ln(r_i c_j / n)) and takes a few
/// iterative-proportional-fitting steps, keeping the best value.
fn lagrange_lb(rows: &[u64], cols: &[u64], lf: &[f64]) -> f64 {
    let n: u64 = rows.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let half = 0.5 * (n as f64).ln();
    let mut u: Vec<f64> = rows
        .iter()
        .map(|&r| (r.max(1) as f64).ln() - half)
        .collect();
    let mut v: Vec<f64> = cols
        .iter()
        .map(|&c| (c.max(1) as f64).ln() - half)
        .collect();
    let mut best = f64::NEG_INFINITY;
    let mut rs = vec![0u64; rows.len()];
    let mut cs = vec![0u64; cols.len()];
    for _ in 0..4 {
        let mut val: f64 = rows
            .iter()
            .zip(&u)
            .map(|(&r, ui)| r as f64 * ui)
            .sum::<f64>()
            + cols
                .iter()
                .zip(&v)
                .map(|(&c, vj)| c as f64 * vj)
                .sum::<f64>();
        rs.iter_mut().for_each(|x| *x = 0);
        cs.iter_mut().for_each(|x| *x = 0);
        for (i, &r) in rows.iter().enumerate() {
            for (j, &c) in cols.iter().enumerate() {
                let t = u[i] + v[j];
                let cap = r.min(c);
                let x = if t <= 0.0 {
                    0
                } else {
                    (t.exp().floor().min(cap as f64)) as u64
                };
                val += lf[x as usize] - t * x as f64;
                rs[i] += x;
                cs[j] += x;
            }
        }
        best = best.max(val);
        for (ui, (&r, &got)) in u.iter_mut().zip(rows.iter().zip(&rs)) {
            *ui += ((r as f64 + 0.5) / (got as f64 + 0.5)).ln();
        }
        for (vj, (&c, &got)) in v.iter_mut().zip(cols.iter().zip(&cs)) {
            *vj += ((c as f64 + 0.5) / (got as f64 + 0.5)).ln();
        }
    }
    best
}

/// Past scores are merged when they agree to 1e-9 (equal scores reached along different
/// paths differ only by rounding, ~1e-13).
fn past_key(s: f64) -> i64 {
    (s * 1e9).round() as i64
}

/// A node to expand: its remaining row totals and the (score, multiplicity) pasts to extend.
type Planned = (Vec<u64>, Vec<(f64, f64)>);

struct Node {
    rem: Vec<u64>,
    /// quantised score → (score, number of partial tables with that score)
    pasts: HashMap<i64, (f64, f64), crate::data::FxBuild>,
}

fn too_large(r: usize, c: usize, n: u64, why: &str) -> StatsError {
    StatsError::Degenerate(format!(
        "Fisher's exact test: the {r}×{c} table (n = {n}) is too large for exact computation \
         ({why}); use the Monte Carlo p-value (--fisher mc, with --mc-samples and --seed) or \
         the chi-square test"
    ))
}

/// Fisher's exact test on an r×c table with the default work budget.
pub fn fisher_exact_rxc(t: &[Vec<u64>]) -> Result<FisherRxc> {
    fisher_exact_rxc_with(t, DEFAULT_MAX_WORK)
}

/// Fisher's exact test on an r×c table, refusing when more than `max_work` steps would be
/// needed. Rows or columns with a zero total are ignored; a table with fewer than two
/// non-empty rows or columns has only one table with its margins, so p = 1.
pub fn fisher_exact_rxc_with(t: &[Vec<u64>], max_work: u64) -> Result<FisherRxc> {
    let p = prepare(t, "Fisher's exact test")?;
    let (r0, c0) = (t.len(), t.first().map_or(0, |x| x.len()));
    if p.n > MAX_EXACT_N {
        return Err(too_large(r0, c0, p.n, "n above 1,000,000"));
    }
    let exact = |p2: f64, pt: f64| FisherRxc {
        method: FisherMethod::Exact,
        p_two_sided: p2.min(1.0),
        table_probability: pt.min(1.0),
        samples: None,
        seed: None,
        mc_half_width_99: None,
        steps: 0,
    };
    if p.rows.len() < 2 || p.cols.len() < 2 {
        return Ok(exact(1.0, 1.0));
    }
    let lf = ln_fact_table(p.n);
    // Key dimension = the smaller one (fewer distinct nodes); stages = the other.
    let transpose = p.rows.len() > p.cols.len();
    let (mut keyd, mut stages) = if transpose {
        (p.cols.clone(), p.rows.clone())
    } else {
        (p.rows.clone(), p.cols.clone())
    };
    keyd.sort_unstable();
    stages.sort_unstable();
    let l_obs: f64 = p.cells.iter().flatten().map(|&x| lf[x as usize]).sum();
    let ln_k: f64 = keyd.iter().map(|&x| lf[x as usize]).sum::<f64>()
        + stages.iter().map(|&x| lf[x as usize]).sum::<f64>()
        - lf[p.n as usize];
    let table_probability = (ln_k - l_obs).exp();
    let thr = l_obs - ln_tol();

    // Mixed-radix node keys: the i-th smallest remaining total never exceeds the i-th
    // smallest original total, so bases keyd[i] + 1 make the key injective.
    let mut radix = Vec::with_capacity(keyd.len());
    let mut m: u128 = 1;
    for &x in &keyd {
        radix.push(m);
        m = m
            .checked_mul(x as u128 + 1)
            .ok_or_else(|| too_large(r0, c0, p.n, "row totals too large to index"))?;
    }
    let encode = |v: &[u64]| -> u128 { v.iter().zip(&radix).map(|(&x, &b)| x as u128 * b).sum() };

    let nst = stages.len();
    // suffix sums of ln C_j! and of C_j
    let mut lcf = vec![0.0; nst + 1];
    let mut csum = vec![0u64; nst + 1];
    for k in (0..nst).rev() {
        lcf[k] = lcf[k + 1] + lf[stages[k] as usize];
        csum[k] = csum[k + 1] + stages[k];
    }

    let mut acc = LogSum::new();
    let mut work: u64 = 0;
    let mut cur: HashMap<u128, Node, crate::data::FxBuild> = HashMap::default();
    let mut start = Node {
        rem: keyd.clone(),
        pasts: HashMap::default(),
    };
    start.pasts.insert(0, (0.0, 1.0));
    cur.insert(encode(&keyd), start);
    let nk = keyd.len();
    let mut child_rem = vec![0u64; nk];
    // Stages 0..nst−2 create nodes; at stage nst−2 the last two columns are settled
    // together for all past scores of a node at once (meet in the middle).
    for k in 0..nst - 1 {
        let mut next: HashMap<u128, Node, crate::data::FxBuild> = HashMap::default();
        let (mut nodes_stored, mut pasts_stored) = (0u64, 0u64);
        // Settle what the bounds settle and plan the rest, so that a stage whose work would
        // exceed the budget is refused before it starts rather than after the budget is spent.
        let mut plan: Vec<Planned> = Vec::with_capacity(cur.len());
        let mut planned = 0.0f64;
        for node in cur.into_values() {
            let rem = node.rem;
            let (lb, ub) = bounds(&rem, &stages[k..], &lf);
            let ln_total =
                lf[csum[k] as usize] - rem.iter().map(|&x| lf[x as usize]).sum::<f64>() - lcf[k];
            let mut expand: Vec<(f64, f64)> = Vec::new();
            for &(s, cnt) in node.pasts.values() {
                if s + lb >= thr {
                    acc.add(cnt.ln() + ln_k - s + ln_total);
                } else if s + ub >= thr {
                    expand.push((s, cnt));
                }
            }
            if expand.is_empty() {
                continue;
            }
            let children = count_columns(&rem, stages[k]);
            planned += if k + 2 == nst {
                children + expand.len() as f64
            } else {
                children * (1.0 + expand.len() as f64)
            };
            plan.push((rem, expand));
        }
        if work as f64 + planned > max_work as f64 {
            return Err(too_large(
                r0,
                c0,
                p.n,
                &format!(
                    "about {:.1e} steps needed, budget {max_work}",
                    work as f64 + planned
                ),
            ));
        }
        // The plan is an estimate; the steps actually taken are held to the budget too.
        let within_budget = |work: u64| {
            if work > max_work {
                Err(too_large(
                    r0,
                    c0,
                    p.n,
                    &format!("more than {max_work} steps"),
                ))
            } else {
                Ok(())
            }
        };
        for (rem, expand) in &plan {
            let rem = rem.as_slice();
            let mut cols = Columns::new(rem, stages[k]);
            if k + 2 == nst {
                // Two columns left: a completion is fixed by the next column n, with score
                // f(n) = Σ ln n_i! + Σ ln (rem_i − n_i)!. Sort the f's (largest first) with
                // cumulative ln Σ exp(−f); each past score S then takes the prefix f ≥ thr − S.
                let mut fs: Vec<f64> = Vec::new();
                loop {
                    work += 1;
                    within_budget(work)?;
                    fs.push(
                        cols.n
                            .iter()
                            .zip(rem)
                            .map(|(&x, &r)| lf[x as usize] + lf[(r - x) as usize])
                            .sum(),
                    );
                    if !cols.advance() {
                        break;
                    }
                }
                fs.sort_unstable_by(|a, b| b.total_cmp(a));
                let mut cum = Vec::with_capacity(fs.len());
                let mut c = LogSum::new();
                for &f in &fs {
                    c.add(-f);
                    cum.push(c.m + c.s.ln());
                }
                work += expand.len() as u64;
                for &(s, cnt) in expand {
                    let m = fs.partition_point(|&f| f >= thr - s);
                    if m > 0 {
                        acc.add(cnt.ln() + ln_k - s + cum[m - 1]);
                    }
                }
                continue;
            }
            loop {
                work += 1 + expand.len() as u64;
                within_budget(work)?;
                let sc: f64 = cols.n.iter().map(|&x| lf[x as usize]).sum();
                for j in 0..nk {
                    child_rem[j] = rem[j] - cols.n[j];
                }
                child_rem.sort_unstable();
                let e = match next.entry(encode(&child_rem)) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        nodes_stored += 1;
                        v.insert(Node {
                            rem: child_rem.clone(),
                            pasts: HashMap::default(),
                        })
                    }
                };
                let before = e.pasts.len();
                for &(s, cnt) in expand {
                    let ns = s + sc;
                    e.pasts
                        .entry(past_key(ns))
                        .and_modify(|v| v.1 += cnt)
                        .or_insert((ns, cnt));
                }
                pasts_stored += (e.pasts.len() - before) as u64;
                if pasts_stored + 4 * nodes_stored > MAX_STORED {
                    return Err(too_large(
                        r0,
                        c0,
                        p.n,
                        &format!("more than {MAX_STORED} intermediate entries"),
                    ));
                }
                if !cols.advance() {
                    break;
                }
            }
        }
        cur = next;
    }
    let mut res = exact(acc.value(), table_probability);
    res.steps = work;
    Ok(res)
}

/// Number of columns `n` with Σ n_i = `total` and 0 ≤ n_i ≤ caps_i (as f64: only its size
/// matters), by dynamic programming over the rows; for large totals an upper bound (the
/// uncapped count, or the product of all but the largest cap + 1), which can only make the
/// planned work larger.
fn count_columns(caps: &[u64], total: u64) -> f64 {
    if caps.len() as u64 * total > 20_000 {
        let k = caps.len() as f64;
        let uncapped =
            (ln_gamma_int(total as f64 + k) - ln_gamma_int(total as f64 + 1.0) - ln_gamma_int(k))
                .exp();
        let mut c: Vec<u64> = caps.to_vec();
        c.sort_unstable();
        c.pop();
        let product: f64 = c.iter().map(|&x| (x + 1) as f64).product();
        return uncapped.min(product);
    }
    let t = total as usize;
    let mut ways = vec![0.0f64; t + 1];
    ways[0] = 1.0;
    for &cap in caps {
        // new[s] = Σ_{x=0..min(cap, s)} ways[s − x], as a running window sum
        let mut next = vec![0.0f64; t + 1];
        let mut window = 0.0;
        for s in 0..=t {
            window += ways[s];
            if s > cap as usize {
                window -= ways[s - cap as usize - 1];
            }
            next[s] = window;
        }
        ways = next;
    }
    ways[t]
}

/// ln Γ(x) for the positive integers used above (sizes only: statrs' accuracy suffices).
fn ln_gamma_int(x: f64) -> f64 {
    statrs::function::gamma::ln_gamma(x)
}

/// All columns `n` with Σ n_i = `total` and 0 ≤ n_i ≤ caps_i, in odometer order.
struct Columns<'a> {
    caps: &'a [u64],
    /// cap_after[i] = Σ_{j ≥ i} caps_j: what rows i.. can still absorb
    cap_after: Vec<u64>,
    /// left[i] = total − Σ_{j < i} n_j
    left: Vec<u64>,
    n: Vec<u64>,
}

impl<'a> Columns<'a> {
    /// Needs Σ caps ≥ total (true for a node's remaining row totals and the next column).
    fn new(caps: &'a [u64], total: u64) -> Self {
        let k = caps.len();
        let mut cap_after = vec![0u64; k + 1];
        for i in (0..k).rev() {
            cap_after[i] = cap_after[i + 1] + caps[i];
        }
        let mut c = Columns {
            caps,
            cap_after,
            left: vec![0; k + 1],
            n: vec![0; k],
        };
        c.left[0] = total;
        c.fill_from(0);
        c
    }

    /// Rows i.. take their smallest feasible values; the last row takes the rest.
    fn fill_from(&mut self, i: usize) {
        let k = self.caps.len();
        for j in i..k {
            let v = if j + 1 == k {
                self.left[j]
            } else {
                self.left[j].saturating_sub(self.cap_after[j + 1])
            };
            self.n[j] = v;
            self.left[j + 1] = self.left[j] - v;
        }
    }

    /// Next column; false when all have been visited.
    fn advance(&mut self) -> bool {
        let k = self.caps.len();
        for i in (0..k.saturating_sub(1)).rev() {
            if self.n[i] < self.caps[i].min(self.left[i]) {
                self.n[i] += 1;
                self.left[i + 1] = self.left[i] - self.n[i];
                self.fill_from(i + 1);
                return true;
            }
        }
        false
    }
}

/// SplitMix64: a small seeded generator, so Monte Carlo p-values are reproducible.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform integer in 0..bound (Lemire's multiply-shift with rejection: unbiased).
    fn below(&mut self, bound: u64) -> u64 {
        loop {
            let m = (self.next() as u128) * (bound as u128);
            let lo = m as u64;
            if lo >= bound.wrapping_neg() % bound {
                return (m >> 64) as u64;
            }
        }
    }
}

/// Largest n × samples the Monte Carlo test accepts (about 10 s of shuffling).
const MAX_MC_WORK: u128 = 20_000_000_000;

/// Monte Carlo version of [`fisher_exact_rxc`]: `samples` tables with the observed margins
/// drawn by permuting the column labels of the n observations (a uniform permutation gives
/// exactly the multiple hypergeometric distribution), seeded. p = (1 + number of tables at
/// most P_obs·(1 + 1e-7) likely) / (samples + 1), R's `simulate.p.value` convention, which
/// is never 0 and is a valid p-value. Costs O(samples · n).
pub fn fisher_monte_carlo(t: &[Vec<u64>], samples: u64, seed: u64) -> Result<FisherRxc> {
    let p = prepare(t, "Fisher's exact test (Monte Carlo)")?;
    if samples == 0 {
        return Err(StatsError::Invalid(
            "Monte Carlo needs at least one sample".into(),
        ));
    }
    if p.n > MAX_MC_N {
        return Err(StatsError::Invalid(format!(
            "Monte Carlo: n = {} is above the limit of {MAX_MC_N}; use the chi-square test",
            p.n
        )));
    }
    if (p.n as u128) * (samples as u128) > MAX_MC_WORK {
        return Err(StatsError::Invalid(format!(
            "Monte Carlo: n × samples = {} × {samples} is above the limit of {MAX_MC_WORK}; use fewer samples or the chi-square test",
            p.n
        )));
    }
    let lf = ln_fact_table(p.n);
    let (nr, nc) = (p.rows.len(), p.cols.len());
    let l_obs: f64 = p.cells.iter().flatten().map(|&x| lf[x as usize]).sum();
    let ln_k: f64 = p.rows.iter().map(|&x| lf[x as usize]).sum::<f64>()
        + p.cols.iter().map(|&x| lf[x as usize]).sum::<f64>()
        - lf[p.n as usize];
    let thr = l_obs - ln_tol();
    let mut row_of: Vec<u32> = Vec::with_capacity(p.n as usize);
    let mut col_of: Vec<u32> = Vec::with_capacity(p.n as usize);
    for (i, &ri) in p.rows.iter().enumerate() {
        row_of.extend(std::iter::repeat_n(i as u32, ri as usize));
    }
    for (j, &cj) in p.cols.iter().enumerate() {
        col_of.extend(std::iter::repeat_n(j as u32, cj as usize));
    }
    let mut rng = SplitMix(seed);
    let mut counts = vec![0u64; nr * nc];
    let mut hits: u64 = 0;
    for _ in 0..samples {
        // Fisher–Yates: uniform whatever the previous order
        for i in (1..col_of.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            col_of.swap(i, j);
        }
        counts.iter_mut().for_each(|c| *c = 0);
        for (&a, &b) in row_of.iter().zip(&col_of) {
            counts[a as usize * nc + b as usize] += 1;
        }
        let s: f64 = counts.iter().map(|&x| lf[x as usize]).sum();
        if s >= thr {
            hits += 1;
        }
    }
    let pv = (1 + hits) as f64 / (samples + 1) as f64;
    Ok(FisherRxc {
        method: FisherMethod::MonteCarlo,
        p_two_sided: pv,
        table_probability: (ln_k - l_obs).exp().min(1.0),
        samples: Some(samples),
        seed: Some(seed),
        mc_half_width_99: Some(2.5758 * (pv * (1.0 - pv) / samples as f64).sqrt()),
        steps: 0,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every table with the given margins, by brute force (small tables only).
    fn brute(t: &[Vec<u64>]) -> f64 {
        let r = t.len();
        let c = t[0].len();
        let rows: Vec<u64> = t.iter().map(|x| x.iter().sum()).collect();
        let cols: Vec<u64> = (0..c).map(|j| t.iter().map(|x| x[j]).sum()).collect();
        let n: u64 = rows.iter().sum();
        let lf = ln_fact_table(n);
        let score = |m: &[u64]| m.iter().map(|&x| lf[x as usize]).sum::<f64>();
        let ln_k = score(&rows) + score(&cols) - lf[n as usize];
        let obs: Vec<u64> = t.iter().flatten().copied().collect();
        let thr = score(&obs) - ln_tol();
        let mut cells = vec![0u64; r * c];
        let mut p = 0.0;
        fn rec(
            k: usize,
            r: usize,
            c: usize,
            rows: &[u64],
            cols: &[u64],
            cells: &mut Vec<u64>,
            f: &mut dyn FnMut(&[u64]),
        ) {
            if k == r * c {
                f(cells);
                return;
            }
            let (i, j) = (k / c, k % c);
            let used_r: u64 = (0..j).map(|jj| cells[i * c + jj]).sum();
            let used_c: u64 = (0..i).map(|ii| cells[ii * c + j]).sum();
            let hi = (rows[i] - used_r).min(cols[j] - used_c);
            let lo = if j + 1 == c || i + 1 == r { hi } else { 0 };
            for v in lo..=hi {
                if (j + 1 == c && v != rows[i] - used_r) || (i + 1 == r && v != cols[j] - used_c) {
                    continue;
                }
                cells[k] = v;
                rec(k + 1, r, c, rows, cols, cells, f);
            }
            cells[k] = 0;
        }
        rec(0, r, c, &rows, &cols, &mut cells, &mut |m| {
            let s = score(m);
            if s >= thr {
                p += (ln_k - s).exp();
            }
        });
        p
    }

    #[test]
    fn column_counts() {
        // by enumeration, on small cases (the DP path) and the bound on a large one
        for (caps, total) in [
            (vec![3u64, 1, 4], 5u64),
            (vec![0, 2, 2], 3),
            (vec![5, 5], 10),
        ] {
            let mut c = Columns::new(&caps, total);
            let mut k = 1.0;
            while c.advance() {
                k += 1.0;
            }
            assert_eq!(count_columns(&caps, total), k, "{caps:?} {total}");
        }
        let big = count_columns(&[4000, 5000, 6000], 7000);
        let mut c = Columns::new(&[4000, 5000, 6000], 7000);
        let mut k = 1.0;
        while c.advance() {
            k += 1.0;
        }
        assert!(big >= k && big <= 3.0 * k, "{big} vs {k}");
    }

    #[test]
    fn agrees_with_brute_force_and_2x2() {
        for t in [
            vec![vec![3, 1, 4], vec![1, 5, 9], vec![2, 6, 5]],
            vec![vec![2, 7, 1, 8], vec![2, 8, 1, 8], vec![2, 8, 4, 5]],
            vec![vec![1, 2], vec![2, 1], vec![3, 0]],
            vec![vec![5, 0, 0], vec![0, 5, 0], vec![0, 0, 5]],
            vec![vec![4, 4], vec![4, 4]],
        ] {
            let a = fisher_exact_rxc(&t).unwrap().p_two_sided;
            let b = brute(&t);
            assert!((a - b).abs() <= 1e-12 * b, "{t:?}: {a} vs {b}");
        }
        let f2 = crate::freq::fisher_exact([[12, 5], [3, 10]]);
        let g = fisher_exact_rxc(&[vec![12, 5], vec![3, 10]]).unwrap();
        assert!((f2.p_two_sided - g.p_two_sided).abs() < 1e-14);
    }
}
