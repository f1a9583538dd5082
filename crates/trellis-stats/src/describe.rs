//! Descriptive summaries by group: the shape of a demographics table.
//!
//! Continuous variables: n, mean, SD (n−1), median, Q1, Q3, min, max. Quartiles follow
//! SAS `QNTLDEF=5` by default (empirical distribution with averaging; numpy
//! `averaged_inverted_cdf`); `QuantileDef::R7` gives R/numpy's default linear interpolation.
//! Categorical variables: counts and percentages of non-missing values per group.

use crate::data::{Dataset, levels};
use crate::error::Result;
use serde::Serialize;

/// Quantile definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantileDef {
    #[default]
    Sas5,
    R7,
}

/// Quantile `p` of sorted data.
pub fn quantile(sorted: &[f64], p: f64, def: QuantileDef) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    Some(match def {
        QuantileDef::R7 => {
            let h = (n - 1) as f64 * p;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
        QuantileDef::Sas5 => {
            let np = n as f64 * p;
            let j = np.floor();
            let g = np - j;
            let j = j as usize;
            if g > 1e-12 {
                sorted[j.min(n - 1)]
            } else if j == 0 {
                sorted[0]
            } else {
                0.5 * (sorted[j - 1] + sorted[j.min(n - 1)])
            }
        }
    })
}

/// Summary of a continuous variable in one group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Continuous {
    pub group: String,
    pub n: u64,
    pub missing: u64,
    pub mean: Option<f64>,
    pub sd: Option<f64>,
    pub median: Option<f64>,
    pub q1: Option<f64>,
    pub q3: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Count of one level in one group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LevelCount {
    pub level: String,
    pub counts: Vec<u64>,
    pub percents: Vec<Option<f64>>,
}

/// Summary of one variable across groups.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum VarSummary {
    Continuous {
        var: String,
        label: String,
        groups: Vec<Continuous>,
    },
    Categorical {
        var: String,
        label: String,
        levels: Vec<LevelCount>,
        missing: Vec<u64>,
    },
}

/// Descriptive summary table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Describe {
    pub by: Option<String>,
    /// Group names (with a final "Total" column when grouped).
    pub groups: Vec<String>,
    /// Big N per group.
    pub big_n: Vec<u64>,
    pub variables: Vec<VarSummary>,
    pub quantile_def: QuantileDef,
}

/// Summarises `vars` by the levels of `by` (plus a Total column).
pub fn describe(
    ds: &Dataset,
    vars: &[String],
    by: Option<&str>,
    qdef: QuantileDef,
) -> Result<Describe> {
    describe_with(ds, vars, &[], by, qdef)
}

/// As [`describe`], with `factors` summarised as categorical (n, %) even when numeric
/// (e.g. AGEGR1N). Other variables: numeric columns get continuous statistics, character
/// columns counts, and a character column that is mostly numbers (a numeric column with bad
/// cells) is an error naming them ([`Dataset::term_kind`]).
pub fn describe_with(
    ds: &Dataset,
    vars: &[String],
    factors: &[String],
    by: Option<&str>,
    qdef: QuantileDef,
) -> Result<Describe> {
    let n = ds.nrows();
    let (gidx, mut gnames): (Vec<Option<usize>>, Vec<String>) = match by {
        Some(b) => {
            let lab = ds.labels(b)?;
            let lv = levels(&lab);
            (
                lab.iter()
                    .map(|l| l.as_ref().and_then(|s| lv.iter().position(|x| x == s)))
                    .collect(),
                lv,
            )
        }
        None => (vec![Some(0); n], vec!["All".into()]),
    };
    let ng = gnames.len();
    let with_total = by.is_some();
    if with_total {
        gnames.push("Total".into());
    }
    let ncol = gnames.len();
    let mut big_n = vec![0u64; ncol];
    for g in gidx.iter().flatten() {
        big_n[*g] += 1;
        if with_total {
            big_n[ng] += 1;
        }
    }
    let mut variables = Vec::new();
    for v in vars {
        let col = ds.column(v)?;
        let declared = factors.iter().any(|f| f.eq_ignore_ascii_case(v));
        if ds.term_kind(v, declared, Some("--factors"))? == crate::data::TermKind::Continuous {
            let vals = ds.numeric(v)?;
            let mut per: Vec<Vec<f64>> = vec![Vec::new(); ncol];
            let mut miss = vec![0u64; ncol];
            for i in 0..n {
                let Some(g) = gidx[i] else { continue };
                let targets: &[usize] = if with_total { &[g, ng] } else { &[g] };
                for &t in targets {
                    if vals[i].is_nan() {
                        miss[t] += 1;
                    } else {
                        per[t].push(vals[i]);
                    }
                }
            }
            let groups = per
                .into_iter()
                .enumerate()
                .map(|(g, mut x)| {
                    x.sort_by(f64::total_cmp);
                    let k = x.len();
                    let mean = (k > 0).then(|| x.iter().sum::<f64>() / k as f64);
                    let sd = (k > 1).then(|| {
                        let m = mean.unwrap_or(0.0);
                        (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (k - 1) as f64).sqrt()
                    });
                    Continuous {
                        group: gnames[g].clone(),
                        n: k as u64,
                        missing: miss[g],
                        mean,
                        sd,
                        median: quantile(&x, 0.5, qdef),
                        q1: quantile(&x, 0.25, qdef),
                        q3: quantile(&x, 0.75, qdef),
                        min: x.first().copied(),
                        max: x.last().copied(),
                    }
                })
                .collect();
            variables.push(VarSummary::Continuous {
                var: col.name.clone(),
                label: col.label.clone(),
                groups,
            });
        } else {
            let lab = ds.labels(v)?;
            let lv = levels(&lab);
            let mut counts = vec![vec![0u64; ncol]; lv.len()];
            let mut miss = vec![0u64; ncol];
            for i in 0..n {
                let Some(g) = gidx[i] else { continue };
                let targets: &[usize] = if with_total { &[g, ng] } else { &[g] };
                for &t in targets {
                    match &lab[i] {
                        Some(s) => {
                            if let Some(k) = lv.iter().position(|x| x == s) {
                                counts[k][t] += 1;
                            }
                        }
                        None => miss[t] += 1,
                    }
                }
            }
            let nonmiss: Vec<u64> = (0..ncol)
                .map(|g| counts.iter().map(|c| c[g]).sum())
                .collect();
            let levels = lv
                .into_iter()
                .zip(counts)
                .map(|(level, c)| LevelCount {
                    level,
                    percents: c
                        .iter()
                        .zip(&nonmiss)
                        .map(|(&k, &t)| (t > 0).then(|| 100.0 * k as f64 / t as f64))
                        .collect(),
                    counts: c,
                })
                .collect();
            variables.push(VarSummary::Categorical {
                var: col.name.clone(),
                label: col.label.clone(),
                levels,
                missing: miss,
            });
        }
    }
    Ok(Describe {
        by: by.map(|s| s.to_string()),
        groups: gnames,
        big_n,
        variables,
        quantile_def: qdef,
    })
}
