//! Distribution functions used for p-values and confidence limits (statrs, with
//! quantiles refined by Newton steps so that CIs match reference software to ~1e-12).

use statrs::distribution::{
    ChiSquared, Continuous, ContinuousCDF, FisherSnedecor, Normal, StudentsT,
};

fn std_normal() -> Normal {
    // Parameters are constants: construction cannot fail.
    Normal::standard()
}

/// Upper tail of the standard normal.
pub fn norm_sf(z: f64) -> f64 {
    std_normal().sf(z)
}

/// Two-sided normal p-value for a z statistic.
pub fn norm_p2(z: f64) -> f64 {
    2.0 * norm_sf(z.abs())
}

/// Standard normal quantile.
pub fn norm_ppf(p: f64) -> f64 {
    let n = std_normal();
    let mut x = n.inverse_cdf(p);
    for _ in 0..3 {
        let f = n.cdf(x) - p;
        let d = n.pdf(x);
        if d > 0.0 {
            x -= f / d;
        }
    }
    x
}

/// Upper tail of chi-square with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    match ChiSquared::new(df) {
        Ok(c) => c.sf(x),
        Err(_) => f64::NAN,
    }
}

/// Upper tail of Student's t.
pub fn t_sf(t: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(d) => d.sf(t),
        Err(_) => f64::NAN,
    }
}

/// Two-sided t p-value.
pub fn t_p2(t: f64, df: f64) -> f64 {
    2.0 * t_sf(t.abs(), df)
}

/// Student's t quantile.
pub fn t_ppf(p: f64, df: f64) -> f64 {
    let Ok(d) = StudentsT::new(0.0, 1.0, df) else {
        return f64::NAN;
    };
    let mut x = d.inverse_cdf(p);
    if !x.is_finite() {
        x = norm_ppf(p);
    }
    for _ in 0..6 {
        let f = d.cdf(x) - p;
        let g = d.pdf(x);
        if g > 0.0 {
            let step = f / g;
            x -= step;
            if step.abs() < 1e-15 * x.abs().max(1.0) {
                break;
            }
        }
    }
    x
}

/// Upper tail of F(d1, d2).
pub fn f_sf(f: f64, d1: f64, d2: f64) -> f64 {
    if f <= 0.0 {
        return 1.0;
    }
    match FisherSnedecor::new(d1, d2) {
        Ok(d) => d.sf(f),
        Err(_) => f64::NAN,
    }
}

/// Natural log of n!.
pub fn ln_factorial(n: u64) -> f64 {
    statrs::function::factorial::ln_factorial(n)
}
