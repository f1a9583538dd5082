//! Special functions: regularized incomplete gamma (from `statrs`), normal
//! and gamma quantiles, and a safeguarded Newton solver for quantiles of a
//! two-component gamma mixture.

pub use statrs::function::gamma::{digamma, ln_gamma};

/// Regularized lower incomplete gamma `P(a, x)`, with `P(a, x) = 0` for
/// `x <= 0` and `1` for `x = +inf`.
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if x.is_nan() || a.is_nan() {
        f64::NAN
    } else if x <= 0.0 {
        0.0
    } else if x == f64::INFINITY {
        1.0
    } else {
        statrs::function::gamma::gamma_lr(a, x)
    }
}

/// Regularized lower incomplete gamma `P(a, x)` given `lg_a = ln Γ(a)`
/// (series for `x < a + 1`, Lentz continued fraction for the upper tail
/// otherwise). Avoids recomputing `ln Γ(a)` inside quantile iterations.
pub fn gamma_p_lg(a: f64, lg_a: f64, x: f64) -> f64 {
    if x.is_nan() || a.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 0.0;
    }
    if x == f64::INFINITY {
        return 1.0;
    }
    let ax = a * x.ln() - x - lg_a;
    if ax < -745.0 {
        return if x < a { 0.0 } else { 1.0 };
    }
    if x < a + 1.0 {
        let mut ap = a;
        let mut del = 1.0 / a;
        let mut sum = del;
        for _ in 0..100_000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-17 {
                break;
            }
        }
        (sum * ax.exp()).min(1.0)
    } else {
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..100_000 {
            let fi = f64::from(i);
            let an = -fi * (fi - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (1.0 - ax.exp() * h).max(0.0)
    }
}

/// `ln(1 + x)` to within a few ulps, by Goldberg's correction of `ln(u)`
/// with `u = 1 + x` (`ln(u) · x / (u − 1)` cancels the rounding of `u`).
/// glibc's `log1p` is about three times slower than `log`, and the prior
/// fit calls this several times per point and evaluation.
#[inline]
pub fn ln_1p(x: f64) -> f64 {
    let u = 1.0 + x;
    if u == 1.0 {
        x
    } else if u.is_finite() && u > 0.0 {
        u.ln() * (x / (u - 1.0))
    } else {
        x.ln_1p()
    }
}

/// Log density of Gamma(shape `a`, rate 1) at `x`, given `ln Γ(a)`.
#[inline]
pub fn gamma_ln_pdf(a: f64, lg_a: f64, x: f64) -> f64 {
    (a - 1.0) * x.ln() - x - lg_a
}

/// Φ⁻¹(0.975), to double precision.
pub const Z975: f64 = 1.959_963_984_540_054;
/// Φ⁻¹(0.95), to double precision.
pub const Z95: f64 = 1.644_853_626_951_472_2;

/// Standard normal quantile (Acklam's rational approximation refined by one
/// Halley step on `erfc`; accurate to about 1e-15).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let plow = 0.02425;
    let x = if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // Halley refinement.
    let e = 0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// Wilson–Hilferty starting value for the `p` quantile of Gamma(a, rate 1).
fn wilson_hilferty(a: f64, z: f64) -> f64 {
    let c = 1.0 / (9.0 * a);
    let t = 1.0 - c + z * c.sqrt();
    let x = a * t * t * t;
    if x > 0.0 && x.is_finite() {
        x
    } else {
        // Small-shape fallback: P(a,x) ~ x^a / Γ(a+1).
        let p = statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2) / 2.0;
        ((p.ln() + ln_gamma(a + 1.0)) / a).exp().max(1e-300)
    }
}

/// Safeguarded Newton iteration in `y = ln x` for an increasing function
/// `g(x) - target` on `(0, inf)`. `eval(x)` returns `(g(x) - target, g'(x))`.
/// Newton steps that leave the current bracket are replaced by bisection (in
/// `ln x`) or, while the bracket is open, by a step of ×e² / ÷e².
pub fn solve_increasing(x0: f64, mut eval: impl FnMut(f64) -> (f64, f64)) -> f64 {
    let mut y = x0.ln();
    let mut lo = f64::NEG_INFINITY;
    let mut hi = f64::INFINITY;
    for _ in 0..300 {
        let x = y.exp();
        let (g, dg) = eval(x);
        if g == 0.0 {
            return x;
        }
        if g > 0.0 {
            hi = y;
        } else {
            lo = y;
        }
        let mut next = y - g / (dg * x);
        if next > lo && next < hi && (next - y).abs() <= 1e-9 {
            // Quadratic convergence: the error after this step is ~1e-18.
            return next.exp();
        }
        if !(next > lo && next < hi && next.is_finite()) {
            next = match (lo.is_finite(), hi.is_finite()) {
                (true, true) => 0.5 * (lo + hi),
                (true, false) => lo + 2.0,
                (false, true) => hi - 2.0,
                (false, false) => y,
            };
        }
        if (next - y).abs() <= 2.0 * f64::EPSILON * y.abs().max(1.0)
            || (lo.is_finite()
                && hi.is_finite()
                && (hi - lo) <= 2.0 * f64::EPSILON * hi.abs().max(lo.abs()).max(1.0))
        {
            return next.exp();
        }
        y = next;
    }
    y.exp()
}

/// `p` quantile of Gamma(shape `a`, rate 1).
pub fn gamma_quantile(p: f64, a: f64) -> f64 {
    let lg = ln_gamma(a);
    let x0 = wilson_hilferty(a, normal_quantile(p));
    solve_increasing(x0, |x| (gamma_p(a, x) - p, gamma_ln_pdf(a, lg, x).exp()))
}

/// A two-component gamma mixture `w·Gamma(a1, r1) + (1-w)·Gamma(a2, r2)`
/// (shape, rate), with `ln Γ(a1)`, `ln Γ(a2)` precomputed.
#[derive(Debug, Clone, Copy)]
pub struct GammaMixture {
    pub w: f64,
    pub a1: f64,
    pub r1: f64,
    pub lg1: f64,
    pub a2: f64,
    pub r2: f64,
    pub lg2: f64,
}

impl GammaMixture {
    pub fn cdf(&self, x: f64) -> f64 {
        self.w * gamma_p_lg(self.a1, self.lg1, self.r1 * x)
            + (1.0 - self.w) * gamma_p_lg(self.a2, self.lg2, self.r2 * x)
    }

    pub fn pdf(&self, x: f64) -> f64 {
        let f1 = if self.w > 0.0 {
            self.r1 * gamma_ln_pdf(self.a1, self.lg1, self.r1 * x).exp()
        } else {
            0.0
        };
        let f2 = if self.w < 1.0 {
            self.r2 * gamma_ln_pdf(self.a2, self.lg2, self.r2 * x).exp()
        } else {
            0.0
        };
        self.w * f1 + (1.0 - self.w) * f2
    }

    /// Exact `p` quantile (to about machine precision) by safeguarded Newton,
    /// started from the Wilson–Hilferty value of the heavier component.
    pub fn quantile(&self, p: f64, z: f64) -> f64 {
        let x0 = if self.w >= 0.5 {
            wilson_hilferty(self.a1, z) / self.r1
        } else {
            wilson_hilferty(self.a2, z) / self.r2
        };
        self.quantile_from(p, x0)
    }

    /// Exact `p` quantile from a given starting value (e.g. the exact
    /// quantile of the heavier component, which is usually very close).
    pub fn quantile_from(&self, p: f64, x0: f64) -> f64 {
        solve_increasing(x0, |x| (self.cdf(x) - p, self.pdf(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_ln_1p_matches_libm() {
        let mut worst = 0.0f64;
        let mut x: f64 = 1e-300;
        while x < 1e300 {
            for v in [x, -x.min(0.999_999_999_999), x * 1.37] {
                let (got, want) = (ln_1p(v), v.ln_1p());
                let ulps = (got - want).abs() / (want.abs() * f64::EPSILON);
                worst = worst.max(ulps);
            }
            x *= 1.01;
        }
        assert!(worst <= 4.0, "worst {worst} ulps");
        assert_eq!(ln_1p(0.0), 0.0);
        assert_eq!(ln_1p(-1.0), f64::NEG_INFINITY);
        assert_eq!(ln_1p(f64::INFINITY), f64::INFINITY);
        assert!(ln_1p(f64::NAN).is_nan());
    }

    #[test]
    fn normal_quantiles() {
        // Starting values only: statrs' erfc limits the refinement to ~1e-10.
        assert!((normal_quantile(0.975) - Z975).abs() < 1e-9);
        assert!((normal_quantile(0.05) + Z95).abs() < 1e-9);
        assert!((normal_quantile(1e-10) + 6.361_340_902_404_056).abs() < 1e-8);
    }

    #[test]
    fn gamma_quantile_inverts_cdf() {
        for &a in &[0.3, 1.5, 2.5, 12.5, 1000.5, 1e6 + 0.5] {
            for &p in &[0.025, 0.05, 0.5, 0.95, 0.975] {
                let q = gamma_quantile(p, a);
                // statrs' P(a, x) loses accuracy as ln Γ(a) grows (~1e-9 at a = 1e6).
                let tol = if a > 1e5 { 1e-8 } else { 1e-13 };
                assert!((gamma_p(a, q) - p).abs() < tol, "a={a} p={p} q={q}");
            }
        }
        // scipy: gammaincinv(12.5, 0.025) / 5.5 (vigicaen ic_tail(12, 5) input)
        let q = gamma_quantile(0.025, 12.5) / 5.5;
        assert!((q - 1.192_701_820_448_889).abs() < 1e-9, "{q}");
    }

    #[test]
    fn own_incomplete_gamma_matches_scipy() {
        // scipy.special.gammainc values.
        for (a, x, want) in [
            (0.3, 3.211_034_699_722_965e-5, 4.999_999_999_999_998e-2),
            (12.5, 6.559_859, 2.499_997_402_626_858_2e-2),
            (1.5, 0.1, 2.241_070_223_835_061e-2),
            (2.3, 7.0, 9.882_982_611_760_721e-1),
        ] {
            let got = gamma_p_lg(a, ln_gamma(a), x);
            // ~1e-14: rounding of a·ln x − x − ln Γ(a) before exp.
            assert!(
                (got - want).abs() <= 5e-14 * want,
                "a={a} x={x} got={got} want={want}"
            );
        }
        assert!(
            (gamma_p_lg(1000.5, ln_gamma(1000.5), 950.0) - 5.330_177_233_892_693e-2).abs() < 1e-12
        );
    }

    #[test]
    fn mixture_quantile_inverts_cdf() {
        let m = GammaMixture {
            w: 0.3,
            a1: 1.2,
            r1: 0.5,
            lg1: ln_gamma(1.2),
            a2: 3.0,
            r2: 4.0,
            lg2: ln_gamma(3.0),
        };
        for &p in &[0.05, 0.95] {
            let q = m.quantile(p, normal_quantile(p));
            assert!((m.cdf(q) - p).abs() < 1e-14);
        }
    }
}
