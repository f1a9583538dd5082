//! Frequentist and BCPNN measures of one 2×2 table.
//!
//! * PRR = [a/(a+b)] / [c/(c+d)], SE(ln PRR) = sqrt(1/a − 1/(a+b) + 1/c − 1/(c+d)).
//! * ROR = ad/(bc), SE(ln ROR) = sqrt(1/a + 1/b + 1/c + 1/d).
//! * 95% CIs are exp(ln x ± z·SE) with z = Φ⁻¹(0.975).
//! * χ² is Pearson's with Yates' correction:
//!   N(|ad − bc| − N/2)² / [(a+b)(c+d)(a+c)(b+d)] (used as is, without
//!   clamping |ad − bc| − N/2 at zero).
//! * IC = log2((a + 0.5)/(E + 0.5)) (Norén's shrinkage), and
//!   IC025/IC975 = log2 of the exact 2.5%/97.5% quantiles of
//!   Gamma(a + 0.5, rate E + 0.5). Because the rate only scales the
//!   distribution, IC025 = log2 Q(0.025; a + 0.5, 1) − log2(E + 0.5): the
//!   quantile is solved once per distinct `a` ([`IcTable`]).
//!
//! Continuity correction: none by default (tables with a zero cell give
//! infinite or undefined PRR/ROR and CIs, written as `inf`/`NaN`). Optionally
//! `k` (e.g. 0.5, Haldane–Anscombe as vigipy does) is added to all four cells
//! of tables that have a zero cell, for PRR, ROR, their CIs and χ².

use hashbrown::HashMap;
use rayon::prelude::*;

use crate::special::gamma_quantile;

/// `z = Φ⁻¹(0.975)`.
pub fn z975() -> f64 {
    crate::special::Z975
}

/// PRR, ROR, χ² and IC of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Disproportionality {
    pub prr: f64,
    pub prr_lo: f64,
    pub prr_hi: f64,
    pub chisq: f64,
    pub ror: f64,
    pub ror_lo: f64,
    pub ror_hi: f64,
    pub ic: f64,
    pub ic025: f64,
    pub ic975: f64,
}

/// `log2` of the 2.5% and 97.5% quantiles of Gamma(a + 0.5, 1), per `a`.
#[derive(Debug, Clone, Default)]
pub struct IcTable {
    dense: Vec<(f64, f64)>,
    sparse: HashMap<u32, (f64, f64)>,
}

const DENSE_LIMIT: u32 = 1 << 16;

fn ic_quantiles(a: u32) -> (f64, f64) {
    let s = f64::from(a) + 0.5;
    (
        gamma_quantile(0.025, s).log2(),
        gamma_quantile(0.975, s).log2(),
    )
}

impl IcTable {
    /// Tabulates the quantiles for every distinct count in `counts`.
    pub fn new(counts: &[u32]) -> IcTable {
        let max_dense = counts
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .min(DENSE_LIMIT - 1);
        // Only the counts that occur (the largest can be in the tens of
        // thousands, with most smaller values absent).
        let mut present = vec![false; max_dense as usize + 1];
        for &a in counts {
            if let Some(p) = present.get_mut(a as usize) {
                *p = true;
            }
        }
        let dense: Vec<(f64, f64)> = present
            .par_iter()
            .enumerate()
            .map(|(a, &p)| {
                if p {
                    ic_quantiles(a as u32)
                } else {
                    (f64::NAN, f64::NAN)
                }
            })
            .collect();
        let mut large: Vec<u32> = counts
            .iter()
            .copied()
            .filter(|&a| a >= DENSE_LIMIT)
            .collect();
        large.sort_unstable();
        large.dedup();
        let sparse = large
            .par_iter()
            .map(|&a| (a, ic_quantiles(a)))
            .collect::<Vec<_>>();
        IcTable {
            dense,
            sparse: sparse.into_iter().collect(),
        }
    }

    pub fn get(&self, a: u32) -> (f64, f64) {
        if let Some(v) = self.dense.get(a as usize)
            && !v.0.is_nan()
        {
            *v
        } else if let Some(v) = self.sparse.get(&a) {
            *v
        } else {
            ic_quantiles(a)
        }
    }
}

/// Measures of one table. `ic_q` is `IcTable::get(a)`, `z` is `z975()`.
pub fn disproportionality(
    cells: (u64, u64, u64, u64),
    expected: f64,
    ic_q: (f64, f64),
    continuity: Option<f64>,
    z: f64,
) -> Disproportionality {
    let (a0, b0, c0, d0) = cells;
    let (mut a, mut b, mut c, mut d) = (a0 as f64, b0 as f64, c0 as f64, d0 as f64);
    if let Some(k) = continuity
        && (a0 == 0 || b0 == 0 || c0 == 0 || d0 == 0)
    {
        a += k;
        b += k;
        c += k;
        d += k;
    }
    let prr = (a / (a + b)) / (c / (c + d));
    let se_prr = (1.0 / a - 1.0 / (a + b) + 1.0 / c - 1.0 / (c + d)).sqrt();
    let ln_prr = prr.ln();
    let ror = (a * d) / (b * c);
    let se_ror = (1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d).sqrt();
    let ln_ror = ror.ln();
    let n = a + b + c + d;
    let diff = (a * d - b * c).abs() - n / 2.0;
    let chisq = n * diff * diff / ((a + b) * (c + d) * (a + c) * (b + d));
    let la = a0 as f64 + 0.5;
    let le = (expected + 0.5).log2();
    Disproportionality {
        prr,
        prr_lo: (ln_prr - z * se_prr).exp(),
        prr_hi: (ln_prr + z * se_prr).exp(),
        chisq,
        ror,
        ror_lo: (ln_ror - z * se_ror).exp(),
        ror_hi: (ln_ror + z * se_ror).exp(),
        ic: la.log2() - le,
        ic025: ic_q.0 - le,
        ic975: ic_q.1 - le,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_table() {
        // a=10, b=90, c=20, d=880: PRR = 0.1 / (20/900) = 4.5, ROR = 8800/1800.
        let t = IcTable::new(&[10]);
        let m = disproportionality((10, 90, 20, 880), 3.0, t.get(10), None, z975());
        assert!((m.prr - 4.5).abs() < 1e-12);
        assert!((m.ror - 8800.0 / 1800.0).abs() < 1e-12);
        let chi = 1000.0 * (8800f64 - 1800.0 - 500.0).powi(2) / (100.0 * 900.0 * 30.0 * 970.0);
        assert!((m.chisq - chi).abs() < 1e-9);
        assert!((m.ic - (10.5f64 / 3.5).log2()).abs() < 1e-12);
        assert!(m.ic025 < m.ic && m.ic < m.ic975);
    }

    #[test]
    fn zero_cell_without_and_with_correction() {
        let t = IcTable::new(&[3]);
        let m = disproportionality((3, 0, 0, 100), 0.1, t.get(3), None, z975());
        assert!(m.prr.is_infinite() && m.ror.is_infinite());
        let m = disproportionality((3, 0, 0, 100), 0.1, t.get(3), Some(0.5), z975());
        assert!((m.ror - 3.5 * 100.5 / 0.25).abs() < 1e-9);
    }
}
