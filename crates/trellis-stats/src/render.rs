//! CSR-style tables (HTML, RTF, CSV) and SVG figures (Kaplan–Meier with numbers at risk,
//! forest plots).

use crate::describe::{Describe, VarSummary};
use crate::freq::FreqResult;
use crate::linear::{AncovaFit, LogisticFit};
use crate::mmrm::{CovStructure, MmrmFit};
use crate::survival::{CoxFit, KmResult};
use std::fmt::Write as _;

/// A table in the usual clinical study report shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub titles: Vec<String>,
    /// Column headers; `\n` separates header lines (e.g. arm name and big N).
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Row indices rendered as bold section labels (variable names).
    pub section_rows: Vec<usize>,
    pub footnotes: Vec<String>,
}

/// Escapes text for XML (SVG) and HTML, in element content and in double-quoted attribute
/// values (the only kind written here; `'` is left as is). Characters that XML 1.0 cannot carry at all, not even as character
/// references (C0 controls other than tab, newline and carriage return; U+FFFE, U+FFFF),
/// become U+FFFD, so a stray control byte in a data value cannot make a figure unreadable.
pub fn esc_xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\t' | '\n' | '\r' => o.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

fn esc_html(s: &str) -> String {
    esc_xml(s)
}

/// Escapes text for RTF: `\`, `{`, `}` quoted, newlines as `\line`, tabs as `\tab`, other
/// control characters dropped (RTF ignores raw CR/LF and has no use for the rest), and
/// everything outside ASCII as `\uN?` (UTF-16 code units, surrogate pairs included).
pub fn esc_rtf(s: &str) -> String {
    let mut o = String::new();
    for ch in s.chars() {
        match ch {
            '\\' => o.push_str("\\\\"),
            '{' => o.push_str("\\{"),
            '}' => o.push_str("\\}"),
            '\n' => o.push_str("\\line "),
            '\t' => o.push_str("\\tab "),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {}
            c if (c as u32) < 128 => o.push(c),
            c => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(o, "\\u{}?", *u as i16);
                }
            }
        }
    }
    o
}

/// Number formatting helpers.
pub fn f(x: f64, d: usize) -> String {
    if x.is_finite() {
        format!("{x:.d$}")
    } else {
        "NE".into()
    }
}

fn fo(x: Option<f64>, d: usize) -> String {
    x.map_or("NE".into(), |v| f(v, d))
}

/// "p = 0.0123" or "p < .0001" for footnotes.
pub fn p_eq(p: f64) -> String {
    if p < 0.0001 {
        "p < .0001".into()
    } else {
        format!("p = {p:.4}")
    }
}

/// p-value as usually printed in CSRs.
pub fn fp(p: f64) -> String {
    if p < 0.0001 {
        "<.0001".into()
    } else {
        format!("{p:.4}")
    }
}

impl Table {
    /// A standalone HTML document with the table.
    pub fn to_html(tables: &[Table]) -> String {
        let mut h = String::from(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Trellis tables</title>\n<style>\n\
             body{font-family:'Courier New',monospace;font-size:10pt;margin:2em}\n\
             table{border-collapse:collapse;margin:0.5em 0 2em 0}\n\
             caption{text-align:center;font-weight:bold;padding-bottom:0.5em}\n\
             th{border-top:1px solid #000;border-bottom:1px solid #000;padding:3px 12px;text-align:center;vertical-align:bottom;white-space:pre-line}\n\
             td{padding:2px 12px;text-align:center}\ntd:first-child{text-align:left;white-space:pre}\n\
             tr.section td{font-weight:bold;text-align:left}\ntbody tr:last-child td{border-bottom:1px solid #000}\n\
             tfoot td{text-align:left;font-size:9pt;border:none;white-space:normal}\n\
             div.fn{width:0;min-width:100%;white-space:normal}\n</style></head><body>\n",
        );
        for t in tables {
            h.push_str("<table>\n<caption>");
            h.push_str(
                &t.titles
                    .iter()
                    .map(|s| esc_html(s))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            );
            h.push_str("</caption>\n<thead><tr>");
            for c in &t.headers {
                let _ = write!(h, "<th>{}</th>", esc_html(c));
            }
            h.push_str("</tr></thead>\n<tbody>\n");
            for (i, r) in t.rows.iter().enumerate() {
                if t.section_rows.contains(&i) {
                    h.push_str("<tr class=\"section\">");
                } else {
                    h.push_str("<tr>");
                }
                for c in r {
                    let _ = write!(h, "<td>{}</td>", esc_html(c));
                }
                h.push_str("</tr>\n");
            }
            h.push_str("</tbody>\n");
            if !t.footnotes.is_empty() {
                // the inner div wraps to the table width instead of widening the table
                let _ = write!(
                    h,
                    "<tfoot><tr><td colspan=\"{}\"><div class=\"fn\">",
                    t.headers.len()
                );
                h.push_str(
                    &t.footnotes
                        .iter()
                        .map(|s| esc_html(s))
                        .collect::<Vec<_>>()
                        .join("<br>"),
                );
                h.push_str("</div></td></tr></tfoot>\n");
            }
            h.push_str("</table>\n");
        }
        h.push_str("</body></html>\n");
        h
    }

    /// An RTF document (landscape letter, Courier New 9pt), one table after another.
    pub fn to_rtf(tables: &[Table]) -> String {
        let mut r = String::from(
            "{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0\\fmodern Courier New;}}\n\
             \\paperw15840\\paperh12240\\landscape\\margl1080\\margr1080\\margt1080\\margb1080\\fs18\n",
        );
        let width = 13_680; // printable twips
        for t in tables {
            for title in &t.titles {
                let _ = writeln!(r, "\\pard\\qc\\b {}\\b0\\par", esc_rtf(title));
            }
            r.push_str("\\pard\\par\n");
            let ncol = t.headers.len().max(1);
            let first = width * 3 / 10;
            let other = (width - first) / (ncol.saturating_sub(1).max(1)) as i32;
            let cells = |r: &mut String, top: bool, bottom: bool| {
                r.push_str("\\trowd\\trgaph72");
                let mut x = 0;
                for j in 0..ncol {
                    x += if j == 0 { first } else { other };
                    if top {
                        r.push_str("\\clbrdrt\\brdrs\\brdrw10");
                    }
                    if bottom {
                        r.push_str("\\clbrdrb\\brdrs\\brdrw10");
                    }
                    let _ = write!(r, "\\cellx{x}");
                }
                r.push('\n');
            };
            cells(&mut r, true, true);
            for (j, hd) in t.headers.iter().enumerate() {
                let _ = write!(
                    r,
                    "\\pard\\intbl\\{} {}\\cell",
                    if j == 0 { "ql" } else { "qc" },
                    esc_rtf(hd)
                );
            }
            r.push_str("\\row\n");
            let last = t.rows.len().saturating_sub(1);
            for (i, row) in t.rows.iter().enumerate() {
                cells(&mut r, false, i == last);
                let bold = t.section_rows.contains(&i);
                for (j, c) in row.iter().enumerate() {
                    let _ = write!(
                        r,
                        "\\pard\\intbl\\{}{} {}{}\\cell",
                        if j == 0 { "ql" } else { "qc" },
                        if bold { "\\b" } else { "" },
                        esc_rtf(c),
                        if bold { "\\b0" } else { "" }
                    );
                }
                r.push_str("\\row\n");
            }
            for fnote in &t.footnotes {
                let _ = writeln!(r, "\\pard\\ql\\fs16 {}\\fs18\\par", esc_rtf(fnote));
            }
            r.push_str("\\pard\\par\\page\n");
        }
        r.push('}');
        r
    }

    /// CSV: header row then body rows (titles and footnotes omitted).
    pub fn to_csv(tables: &[Table]) -> String {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        for (i, t) in tables.iter().enumerate() {
            if i > 0 {
                let _ = w.write_record([""]);
            }
            let _ = w.write_record(t.headers.iter().map(|h| h.replace('\n', " ")));
            for r in &t.rows {
                let _ = w.write_record(r.iter().map(|c| c.trim()));
            }
        }
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn arm_headers(first: &str, groups: &[String], big_n: &[u64]) -> Vec<String> {
    let mut h = vec![first.to_string()];
    for (g, n) in groups.iter().zip(big_n) {
        h.push(format!("{g}\n(N={n})"));
    }
    h
}

/// Demographics-style table.
pub fn describe_table(d: &Describe, title: &str) -> Table {
    let mut t = Table {
        titles: vec![title.to_string()],
        headers: arm_headers("", &d.groups, &d.big_n),
        ..Default::default()
    };
    for v in &d.variables {
        match v {
            VarSummary::Continuous { var, label, groups } => {
                t.section_rows.push(t.rows.len());
                let name = if label.is_empty() {
                    var.clone()
                } else {
                    format!("{label} ({var})")
                };
                t.rows.push(
                    std::iter::once(name)
                        .chain(groups.iter().map(|_| String::new()))
                        .collect(),
                );
                let row = |lab: &str, g: &dyn Fn(&crate::describe::Continuous) -> String| {
                    std::iter::once(format!("  {lab}"))
                        .chain(groups.iter().map(g))
                        .collect::<Vec<_>>()
                };
                t.rows.push(row("n", &|c| c.n.to_string()));
                t.rows.push(row("Mean (SD)", &|c| {
                    format!("{} ({})", fo(c.mean, 1), fo(c.sd, 2))
                }));
                t.rows.push(row("Median", &|c| fo(c.median, 1)));
                t.rows.push(row("Q1, Q3", &|c| {
                    format!("{}, {}", fo(c.q1, 1), fo(c.q3, 1))
                }));
                t.rows.push(row("Min, Max", &|c| {
                    format!("{}, {}", fo(c.min, 0), fo(c.max, 0))
                }));
                if groups.iter().any(|c| c.missing > 0) {
                    t.rows.push(row("Missing", &|c| c.missing.to_string()));
                }
            }
            VarSummary::Categorical {
                var,
                label,
                levels,
                missing,
            } => {
                t.section_rows.push(t.rows.len());
                let name = if label.is_empty() {
                    format!("{var}, n (%)")
                } else {
                    format!("{label}, n (%)")
                };
                t.rows.push(
                    std::iter::once(name)
                        .chain(d.groups.iter().map(|_| String::new()))
                        .collect(),
                );
                for l in levels {
                    let mut r = vec![format!("  {}", l.level)];
                    for (c, p) in l.counts.iter().zip(&l.percents) {
                        r.push(match p {
                            Some(p) if *c > 0 => format!("{c} ({p:.1})"),
                            _ => c.to_string(),
                        });
                    }
                    t.rows.push(r);
                }
                if missing.iter().any(|&m| m > 0) {
                    t.rows.push(
                        std::iter::once("  Missing".to_string())
                            .chain(missing.iter().map(|m| m.to_string()))
                            .collect(),
                    );
                }
            }
        }
    }
    t.footnotes.push(format!(
        "Percentages are based on non-missing values. Quartiles: {}.",
        match d.quantile_def {
            crate::describe::QuantileDef::Sas5 => "SAS QNTLDEF=5",
            crate::describe::QuantileDef::R7 => "R type 7 (linear interpolation)",
        }
    ));
    t
}

/// Time-to-event summary table.
pub fn km_table(k: &KmResult, title: &str, time_unit: &str) -> Table {
    let groups: Vec<String> = k.groups.iter().map(|g| g.group.clone()).collect();
    let big_n: Vec<u64> = k.groups.iter().map(|g| g.n).collect();
    let mut t = Table {
        titles: vec![title.to_string()],
        headers: arm_headers("", &groups, &big_n),
        ..Default::default()
    };
    let cl = ((1.0 - k.alpha) * 100.0).round();
    t.rows.push(
        std::iter::once("Subjects with event, n (%)".to_string())
            .chain(
                k.groups
                    .iter()
                    .map(|g| format!("{} ({:.1})", g.events, 100.0 * g.events as f64 / g.n as f64)),
            )
            .collect(),
    );
    t.rows.push(
        std::iter::once("Censored, n (%)".to_string())
            .chain(k.groups.iter().map(|g| {
                format!(
                    "{} ({:.1})",
                    g.n - g.events,
                    100.0 * (g.n - g.events) as f64 / g.n as f64
                )
            }))
            .collect(),
    );
    t.rows.push(
        std::iter::once(format!("Median ({cl}% CI), {time_unit}"))
            .chain(k.groups.iter().map(|g| {
                format!(
                    "{} ({}, {})",
                    fo(g.median, 1),
                    fo(g.median_lo, 1),
                    fo(g.median_hi, 1)
                )
            }))
            .collect(),
    );
    if let Some(first) = k.groups.first() {
        for (i, a) in first.at_times.iter().enumerate() {
            t.rows.push(
                std::iter::once(format!(
                    "Event-free rate at {} {time_unit} ({cl}% CI)",
                    crate::data::fmt_num(a.time)
                ))
                .chain(k.groups.iter().map(|g| {
                    let x = &g.at_times[i];
                    format!("{} ({}, {})", f(x.survival, 3), fo(x.lo, 3), fo(x.hi, 3))
                }))
                .collect(),
            );
        }
    }
    if let Some(lr) = &k.logrank {
        t.footnotes.push(format!(
            "{}og-rank test: chi-square = {:.3}, df = {}, {}.",
            if lr.stratified { "Stratified l" } else { "L" },
            lr.chisq,
            lr.df,
            p_eq(lr.p)
        ));
    }
    t.footnotes.push(format!(
        "Kaplan-Meier estimates; CIs by the {} transform with Greenwood variance. NE = not estimable.",
        match k.conf_type {
            crate::survival::ConfType::LogLog => "log(-log)",
            crate::survival::ConfType::Log => "log",
            crate::survival::ConfType::Plain => "linear (plain)",
        }
    ));
    t
}

/// Cox model table.
pub fn cox_table(c: &CoxFit, title: &str) -> Table {
    let cl = ((1.0 - c.alpha) * 100.0).round();
    let mut t = Table {
        titles: vec![title.to_string()],
        headers: vec![
            "Term".into(),
            "Estimate (SE)".into(),
            format!("Hazard ratio ({cl}% CI)"),
            "p-value".into(),
        ],
        ..Default::default()
    };
    for k in &c.coefficients {
        t.rows.push(vec![
            k.term.clone(),
            format!("{} ({})", f(k.estimate, 4), f(k.se, 4)),
            format!("{} ({}, {})", f(k.hr, 3), f(k.hr_lo, 3), f(k.hr_hi, 3)),
            fp(k.p),
        ]);
    }
    t.footnotes.push(format!(
        "Cox proportional hazards, {} ties{}; N = {}, events = {}. Wald CIs.",
        match c.ties {
            crate::survival::Ties::Efron => "Efron",
            crate::survival::Ties::Breslow => "Breslow",
        },
        if c.strata > 1 {
            format!(", stratified ({} strata)", c.strata)
        } else {
            String::new()
        },
        c.n,
        c.events
    ));
    t.footnotes.push(format!(
        "Likelihood ratio chi-square = {:.3} (df {}, {}); Wald = {:.3} ({}); score = {:.3} ({}).",
        c.lr_test.chisq,
        c.lr_test.df,
        p_eq(c.lr_test.p),
        c.wald_test.chisq,
        p_eq(c.wald_test.p),
        c.score_test.chisq,
        p_eq(c.score_test.p)
    ));
    t
}

/// ANCOVA tables: LS means with differences, and type III tests.
pub fn ancova_tables(a: &AncovaFit, title: &str) -> Vec<Table> {
    let cl = ((1.0 - a.alpha) * 100.0).round();
    let mut t1 = Table {
        titles: vec![
            title.to_string(),
            format!("Least-squares means of {} by {}", a.response, a.treatment),
        ],
        headers: vec![
            a.treatment.clone(),
            "n".into(),
            "LS mean (SE)".into(),
            format!("{cl}% CI"),
        ],
        ..Default::default()
    };
    for m in &a.lsmeans {
        t1.rows.push(vec![
            m.level.clone(),
            m.n.to_string(),
            format!("{} ({})", f(m.estimate, 2), f(m.se, 3)),
            format!("({}, {})", f(m.lo, 2), f(m.hi, 2)),
        ]);
    }
    let mut t2 = Table {
        titles: vec![format!("Pairwise differences in LS means ({})", a.response)],
        headers: vec![
            "Comparison".into(),
            "Difference (SE)".into(),
            format!("{cl}% CI"),
            "p-value".into(),
        ],
        ..Default::default()
    };
    for d in &a.diffs {
        t2.rows.push(vec![
            format!("{} - {}", d.a, d.b),
            format!("{} ({})", f(d.estimate, 2), f(d.se, 3)),
            format!("({}, {})", f(d.lo, 2), f(d.hi, 2)),
            fp(d.p),
        ]);
    }
    let mut t3 = Table {
        titles: vec![format!("Type III tests ({})", a.response)],
        headers: vec![
            "Source".into(),
            "DF".into(),
            "Type III SS".into(),
            "F".into(),
            "p-value".into(),
        ],
        ..Default::default()
    };
    for r in &a.type3 {
        t3.rows.push(vec![
            r.term.clone(),
            r.df.to_string(),
            f(r.ss, 3),
            f(r.f, 3),
            fp(r.p),
        ]);
    }
    t3.rows.push(vec![
        "Error".into(),
        crate::data::fmt_num(a.df_resid),
        f(a.mse * a.df_resid, 3),
        String::new(),
        String::new(),
    ]);
    t3.footnotes.push(format!(
        "N = {}; R-squared = {:.4}; root MSE = {:.4}. Effects coding; LS means at covariate means, equal weights over factor levels.",
        a.n,
        a.r2,
        a.mse.sqrt()
    ));
    vec![t1, t2, t3]
}

/// MMRM tables: LS means by visit and arm with differences vs the reference arm (the CSR
/// table), fixed effects, and the estimated covariance matrix.
pub fn mmrm_tables(a: &MmrmFit, title: &str) -> Vec<Table> {
    let cl = ((1.0 - a.alpha) * 100.0).round();
    let cov = match a.cov {
        CovStructure::Us => "unstructured",
        CovStructure::Cs => "compound symmetry",
        CovStructure::Ar1 => "AR(1)",
    };
    let mut t1 = Table {
        titles: vec![
            title.to_string(),
            format!(
                "LS means of {} by {} and {}",
                a.response, a.visit, a.treatment
            ),
        ],
        headers: vec![
            a.visit.clone(),
            a.treatment.clone(),
            "n".into(),
            "LS mean (SE)".into(),
            format!("{cl}% CI"),
            format!("Difference vs {} (SE)", a.reference),
            format!("{cl}% CI"),
            "p-value".into(),
        ],
        ..Default::default()
    };
    for m in &a.lsmeans {
        let d = a
            .diffs
            .iter()
            .find(|d| d.visit == m.visit && d.arm == m.arm);
        let mut row = vec![
            m.visit.clone(),
            m.arm.clone(),
            m.n.to_string(),
            format!("{} ({})", f(m.estimate, 2), f(m.se, 3)),
            format!("({}, {})", f(m.lo, 2), f(m.hi, 2)),
        ];
        match d {
            Some(d) => row.extend([
                format!("{} ({})", f(d.estimate, 2), f(d.se, 3)),
                format!("({}, {})", f(d.lo, 2), f(d.hi, 2)),
                fp(d.p),
            ]),
            None => row.extend([String::new(), String::new(), String::new()]),
        }
        t1.rows.push(row);
    }
    let dfm = match a.df_method {
        crate::mmrm::DfMethod::Satterthwaite => "model-based SEs, Satterthwaite degrees of freedom",
        crate::mmrm::DfMethod::KenwardRoger => "Kenward-Roger adjusted SEs and degrees of freedom",
    };
    t1.footnotes.push(format!(
        "MMRM fitted by REML with {cov} covariance over visits; {dfm}. {} subjects, {} observations. -2 REML log-likelihood {:.3}; AIC {:.3}; BIC {:.3}.",
        a.n_subjects, a.n_obs, a.deviance, a.aic, a.bic
    ));
    t1.footnotes.push(
        "LS means at the mean of continuous covariates over the analysis rows, equal weights over levels of factor covariates."
            .into(),
    );
    let mut t2 = Table {
        titles: vec![format!("Fixed effects ({})", a.response)],
        headers: vec![
            "Term".into(),
            "Estimate (SE)".into(),
            "DF".into(),
            "t".into(),
            "p-value".into(),
        ],
        ..Default::default()
    };
    for c in &a.coefficients {
        t2.rows.push(vec![
            c.term.clone(),
            format!("{} ({})", f(c.estimate, 4), f(c.se, 4)),
            f(c.df, 1),
            f(c.t, 2),
            fp(c.p),
        ]);
    }
    let mut tf = Table {
        titles: vec![format!("Type III tests of fixed effects ({})", a.response)],
        headers: vec![
            "Effect".into(),
            "Num DF".into(),
            "Den DF".into(),
            "F".into(),
            "p-value".into(),
        ],
        ..Default::default()
    };
    for t in &a.type3 {
        tf.rows.push(vec![
            t.term.clone(),
            t.num_df.to_string(),
            f(t.den_df, 1),
            f(t.f, 2),
            fp(t.p),
        ]);
    }
    let mut t3 = Table {
        titles: vec![format!("Estimated covariance matrix ({cov})")],
        headers: std::iter::once(a.visit.clone())
            .chain(a.visits.iter().cloned())
            .collect(),
        ..Default::default()
    };
    for (v, row) in a.visits.iter().zip(&a.covariance) {
        t3.rows.push(
            std::iter::once(v.clone())
                .chain(row.iter().map(|x| f(*x, 4)))
                .collect(),
        );
    }
    vec![t1, tf, t2, t3]
}

/// Logistic regression table.
pub fn logistic_table(l: &LogisticFit, title: &str) -> Table {
    let cl = ((1.0 - l.alpha) * 100.0).round();
    let mut t = Table {
        titles: vec![title.to_string()],
        headers: vec![
            "Term".into(),
            "Estimate (SE)".into(),
            format!("Odds ratio ({cl}% CI)"),
            "p-value".into(),
        ],
        ..Default::default()
    };
    for c in &l.coefficients {
        let or = if c.term == "Intercept" {
            String::new()
        } else {
            format!("{} ({}, {})", f(c.or, 3), f(c.or_lo, 3), f(c.or_hi, 3))
        };
        t.rows.push(vec![
            c.term.clone(),
            format!("{} ({})", f(c.estimate, 4), f(c.se, 4)),
            or,
            fp(c.p),
        ]);
    }
    t.footnotes.push(format!(
        "Logistic regression of {} = {}; N = {}, events = {}. Likelihood ratio chi-square = {:.3} (df {}, {}). Wald CIs.",
        l.response,
        l.event_value,
        l.n,
        l.events,
        l.lr_chisq,
        l.lr_df,
        p_eq(l.lr_p)
    ));
    t
}

/// Cross-tabulation with tests.
pub fn freq_table(r: &FreqResult, title: &str) -> Table {
    let totals: Vec<u64> = r.table.iter().map(|row| row.iter().sum()).collect();
    let mut t = Table {
        titles: vec![title.to_string()],
        headers: std::iter::once(format!("{} \\ {}", r.row, r.col))
            .chain(r.col_levels.iter().cloned())
            .chain(["Total".into()])
            .collect(),
        ..Default::default()
    };
    for (i, lv) in r.row_levels.iter().enumerate() {
        let mut row = vec![lv.clone()];
        for &c in &r.table[i] {
            row.push(format!(
                "{c} ({:.1})",
                100.0 * c as f64 / totals[i].max(1) as f64
            ));
        }
        row.push(totals[i].to_string());
        t.rows.push(row);
    }
    t.footnotes.push("n (row %).".into());
    t.footnotes.push(format!(
        "Pearson chi-square = {:.3}, df = {}, {}{}.",
        r.chisq.chisq,
        r.chisq.df,
        p_eq(r.chisq.p),
        r.chisq.chisq_yates.map_or(String::new(), |y| format!(
            "; with Yates correction {:.3}, {}",
            y,
            p_eq(r.chisq.p_yates.unwrap_or(f64::NAN))
        ))
    ));
    if r.chisq.cells_expected_below_5 > 0 {
        t.footnotes.push(format!(
            "{} cell(s) have expected counts below 5.",
            r.chisq.cells_expected_below_5
        ));
    }
    if let Some(fz) = &r.fisher {
        t.footnotes.push(format!(
            "Fisher's exact test: two-sided {}.",
            p_eq(fz.p_two_sided)
        ));
    }
    if let Some(fz) = &r.fisher_rxc {
        t.footnotes.push(match fz.method {
            crate::exact::FisherMethod::Exact => {
                format!("Fisher's exact test (r x c): two-sided {}.", p_eq(fz.p_two_sided))
            }
            crate::exact::FisherMethod::MonteCarlo => format!(
                "Fisher's exact test (r x c), Monte Carlo estimate from {} permuted tables (seed {}): two-sided {} (99% margin {:.4}).",
                fz.samples.unwrap_or(0),
                fz.seed.unwrap_or(0),
                p_eq(fz.p_two_sided),
                fz.mc_half_width_99.unwrap_or(f64::NAN)
            ),
        });
    }
    if let (Some(g), None) = (&r.cmh_general, &r.cmh) {
        t.footnotes.push(format!(
            "Cochran-Mantel-Haenszel statistics (stratified by {}, {} strata; table scores): nonzero correlation = {:.3} (df {}, {}); row mean scores differ = {:.3} (df {}, {}); general association = {:.3} (df {}, {}).",
            r.strata.as_deref().unwrap_or(""),
            g.strata,
            g.correlation.statistic,
            g.correlation.df,
            p_eq(g.correlation.p),
            g.row_mean_scores.statistic,
            g.row_mean_scores.df,
            p_eq(g.row_mean_scores.p),
            g.general_association.statistic,
            g.general_association.df,
            p_eq(g.general_association.p)
        ));
    }
    if let Some(c) = &r.cmh {
        t.footnotes.push(format!(
            "CMH chi-square (stratified by {}, {} strata) = {:.3}, {}; Mantel-Haenszel OR = {:.3} ({:.3}, {:.3}).",
            r.strata.as_deref().unwrap_or(""),
            c.strata,
            c.chisq,
            p_eq(c.p),
            c.or_mh,
            c.or_lo,
            c.or_hi
        ));
    }
    t
}

// ---------------------------------------------------------------------------------------
// SVG figures
// ---------------------------------------------------------------------------------------

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

fn nice_step(range: f64, target: usize) -> f64 {
    let raw = range / target as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    let s = if r <= 1.0 {
        1.0
    } else if r <= 2.0 {
        2.0
    } else if r <= 2.5 {
        2.5
    } else if r <= 5.0 {
        5.0
    } else {
        10.0
    };
    s * mag
}

/// Approximate advance width of `s` in px at font size `size` (DejaVu Sans metrics, the
/// first font of the figures; Arial and most fallbacks are narrower, so this errs wide).
/// Used only for layout: margins, label truncation, legend size.
pub fn text_width(s: &str, size: f64) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | 'I' | '|' | '!' | '.' | ',' | ':' | ';' | '\'' => 0.30,
            ' ' => 0.32,
            'f' | 't' | 'r' | '(' | ')' | '[' | ']' | '-' | '/' => 0.42,
            'm' | 'w' | 'M' | 'W' | '%' | '@' => 0.95,
            'A'..='Z' | '&' => 0.74,
            '0'..='9' | '#' | '$' | '+' | '=' | '<' | '>' | '_' | '~' => 0.64,
            'a'..='z' | '?' | '*' => 0.62,
            _ => 0.75,
        })
        .sum();
    em * size
}

/// Shortens labels that are wider than `max_w` px (at font size `size`) with an ellipsis,
/// keeping the shortened labels distinct from each other: ends cut first ("Xanomeline H…"),
/// then the middle ("Xanomel…10 mg"), then a window around the first character that tells a
/// label apart from the others ("…High Dose…"), and as a last resort numbered ("1: Xan…").
/// Labels that fit are returned unchanged.
pub fn fit_labels(labels: &[String], max_w: f64, size: f64) -> Vec<String> {
    let fits = |s: &str| text_width(s, size) <= max_w;
    if labels.iter().all(|l| fits(l)) {
        return labels.to_vec();
    }
    let chars: Vec<Vec<char>> = labels.iter().map(|l| l.chars().collect()).collect();
    // the longest shortening of label `i` (by `make(i, k)` keeping k characters) that fits
    let longest = |i: usize, make: &dyn Fn(usize, usize) -> String| -> String {
        if fits(&labels[i]) {
            return labels[i].clone();
        }
        (0..chars[i].len())
            .rev()
            .map(|k| make(i, k))
            .find(|s| fits(s))
            .unwrap_or_else(|| "…".to_string())
    };
    let end = |i: usize, k: usize| chars[i][..k].iter().collect::<String>() + "…";
    let middle = |i: usize, k: usize| {
        let c = &chars[i];
        let (h, t) = (k.div_ceil(2), k / 2);
        c[..h].iter().collect::<String>() + "…" + &c[c.len() - t..].iter().collect::<String>()
    };
    // first position at which label i differs from every other label
    let differs_at = |i: usize| -> usize {
        (0..labels.len())
            .filter(|&j| j != i)
            .map(|j| {
                chars[i]
                    .iter()
                    .zip(&chars[j])
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    let window = |i: usize, k: usize| {
        let c = &chars[i];
        let start = differs_at(i)
            .saturating_sub(3)
            .min(c.len().saturating_sub(k));
        let stop = (start + k).min(c.len());
        let mut s = String::new();
        if start > 0 {
            s.push('…');
        }
        s.extend(&c[start..stop]);
        if stop < c.len() {
            s.push('…');
        }
        s
    };
    let distinct = |v: &[String]| {
        let set: std::collections::HashSet<&String> = v.iter().collect();
        set.len() == v.len()
    };
    let strategies: [&dyn Fn(usize, usize) -> String; 3] = [&end, &middle, &window];
    for make in strategies {
        let v: Vec<String> = (0..labels.len()).map(|i| longest(i, make)).collect();
        if distinct(&v) {
            return v;
        }
    }
    (0..labels.len())
        .map(|i| {
            let prefix = format!("{}: ", i + 1);
            let rest = max_w - text_width(&prefix, size);
            let cut = (0..=chars[i].len())
                .rev()
                .map(|k| {
                    if k == chars[i].len() {
                        labels[i].clone()
                    } else {
                        end(i, k)
                    }
                })
                .find(|s| text_width(s, size) <= rest)
                .unwrap_or_default();
            prefix + &cut
        })
        .collect()
}

/// Kaplan–Meier figure: step curves with censoring marks, optional CI bands, legend and a
/// numbers-at-risk table under the time axis.
///
/// Layout: the left margin is as wide as the longest group label of the numbers-at-risk
/// table (up to 200 px; longer labels are shortened so they stay distinct, see
/// [`fit_labels`]), so labels never run into the counts at time 0; the legend (with the
/// log-rank p-value as its last line) is sized to its text, at most 60% of the plot width,
/// boxed on a white background inside the plot frame, in the top-right corner or, when the
/// curves pass through that corner, the bottom-right one.
pub fn km_svg(k: &KmResult, title: &str, xlabel: &str, ci: bool) -> String {
    const FONT: f64 = 13.0;
    let (w, h) = (900.0, 620.0);
    let ng = k.groups.len();
    let names: Vec<String> = k.groups.iter().map(|g| g.group.clone()).collect();
    // numbers-at-risk labels in the left margin; the first count is centred on the y axis
    let risk_labels = fit_labels(&names, 200.0, FONT);
    let label_w = risk_labels
        .iter()
        .map(|l| text_width(l, FONT))
        .fold(0.0, f64::max);
    let max_n = k.groups.iter().map(|g| g.n).max().unwrap_or(0);
    let count_half = text_width(&max_n.to_string(), FONT) / 2.0;
    let ml = (10.0 + label_w + 14.0 + count_half).max(90.0);
    let (mr, mt) = (30.0, 50.0);
    let risk_h = 30.0 + 20.0 * ng as f64;
    let mb = 60.0 + risk_h;
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let tmax = k
        .groups
        .iter()
        .flat_map(|g| g.curve.last().map(|p| p.time))
        .fold(0.0, f64::max)
        .max(1e-9);
    let step = nice_step(tmax, 8);
    let xmax = (tmax / step).ceil() * step;
    let sx = |t: f64| ml + pw * t / xmax;
    let sy = |s: f64| mt + ph * (1.0 - s);
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"{FONT}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{}</text>",
        w / 2.0,
        esc_xml(title)
    );
    // grid and axes
    for i in 0..=10 {
        let s = i as f64 / 10.0;
        let y = sy(s);
        let _ = writeln!(
            o,
            "<line x1=\"{ml:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>",
            ml + pw
        );
        if i % 2 == 0 {
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{s:.1}</text>",
                ml - 8.0,
                y + 4.0
            );
        }
    }
    let mut t = 0.0;
    let mut ticks = Vec::new();
    while t <= xmax + 1e-9 {
        ticks.push(t);
        let x = sx(t);
        let _ = writeln!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>",
            mt + ph,
            mt + ph + 5.0
        );
        let _ = writeln!(
            o,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            mt + ph + 20.0,
            crate::data::fmt_num(t)
        );
        t += step;
    }
    let _ = writeln!(
        o,
        "<rect x=\"{ml:.1}\" y=\"{mt}\" width=\"{pw:.1}\" height=\"{ph}\" fill=\"none\" stroke=\"#000\"/>"
    );
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        ml + pw / 2.0,
        mt + ph + 42.0,
        esc_xml(xlabel)
    );
    // the axis title sits just left of the tick labels ("0.0" is about 22 px wide)
    let _ = writeln!(
        o,
        "<text transform=\"translate({:.1} {:.1}) rotate(-90)\" text-anchor=\"middle\">Survival probability</text>",
        (ml - 44.0).max(16.0),
        mt + ph / 2.0
    );
    for (gi, g) in k.groups.iter().enumerate() {
        let col = PALETTE[gi % PALETTE.len()];
        if ci {
            // band as a step polygon
            let mut up = vec![(0.0, 1.0)];
            let mut lo = vec![(0.0, 1.0)];
            let (mut pu, mut pl) = (1.0, 1.0);
            for p in &g.curve {
                let (u, l) = (p.hi.unwrap_or(p.survival), p.lo.unwrap_or(p.survival));
                up.push((p.time, pu));
                up.push((p.time, u));
                lo.push((p.time, pl));
                lo.push((p.time, l));
                pu = u;
                pl = l;
            }
            let mut pts = String::new();
            for (x, y) in up.iter() {
                let _ = write!(pts, "{:.1},{:.1} ", sx(*x), sy(*y));
            }
            for (x, y) in lo.iter().rev() {
                let _ = write!(pts, "{:.1},{:.1} ", sx(*x), sy(*y));
            }
            let _ = writeln!(
                o,
                "<polygon points=\"{pts}\" fill=\"{col}\" fill-opacity=\"0.12\" stroke=\"none\"/>"
            );
        }
        let mut d = format!("M{:.1},{:.1}", sx(0.0), sy(1.0));
        let mut prev = 1.0;
        for p in &g.curve {
            if p.survival != prev {
                let _ = write!(d, " H{:.1} V{:.1}", sx(p.time), sy(p.survival));
                prev = p.survival;
            }
        }
        if let Some(last) = g.curve.last() {
            let _ = write!(d, " H{:.1}", sx(last.time));
        }
        let _ = writeln!(
            o,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{col}\" stroke-width=\"2\"/>"
        );
        // censor marks
        let mut marks = String::new();
        for p in g.curve.iter().filter(|p| p.n_censor > 0) {
            let (x, y) = (sx(p.time), sy(p.survival));
            let _ = write!(marks, "M{x:.1},{:.1} V{:.1} ", y - 5.0, y + 5.0);
        }
        if !marks.is_empty() {
            let _ = writeln!(
                o,
                "<path d=\"{marks}\" stroke=\"{col}\" stroke-width=\"1.3\"/>"
            );
        }
    }
    // legend: "group (median m)", sized to its text and kept inside the frame
    let meds: Vec<String> = k
        .groups
        .iter()
        .map(|g| {
            let m = g.median.map_or("NE".into(), |m| {
                crate::data::fmt_num((m * 10.0).round() / 10.0)
            });
            format!(" (median {m})")
        })
        .collect();
    let (pad, swatch) = (8.0, 34.0);
    let med_w = meds.iter().map(|m| text_width(m, FONT)).fold(0.0, f64::max);
    let legend_names = fit_labels(
        &names,
        (0.6 * pw - 2.0 * pad - swatch - med_w).max(60.0),
        FONT,
    );
    let p_line = k.logrank.as_ref().map(|lr| {
        format!(
            "{}og-rank {}",
            if lr.stratified { "Stratified l" } else { "L" },
            p_eq(lr.p)
        )
    });
    let text_w = legend_names
        .iter()
        .zip(&meds)
        .map(|(n, m)| swatch + text_width(&format!("{n}{m}"), FONT))
        .chain(p_line.iter().map(|l| text_width(l, FONT)))
        .fold(0.0, f64::max);
    let box_w = (2.0 * pad + text_w).min(pw - 20.0);
    let rows = ng + usize::from(p_line.is_some());
    let box_h = 10.0 + 18.0 * rows as f64;
    let box_x = ml + pw - 10.0 - box_w;
    // how many points of the curves a box at height `y0` would cover
    let covered = |y0: f64| -> usize {
        (0..=40)
            .map(|i| box_x + box_w * i as f64 / 40.0)
            .map(|x| (x - ml) / pw * xmax)
            .map(|t| {
                k.groups
                    .iter()
                    .filter(|g| {
                        let i = g.curve.partition_point(|p| p.time <= t);
                        let s = if i == 0 { 1.0 } else { g.curve[i - 1].survival };
                        let beyond = g.curve.last().is_none_or(|p| t > p.time);
                        let y = sy(s);
                        !beyond && y >= y0 - 4.0 && y <= y0 + box_h + 4.0
                    })
                    .count()
            })
            .sum()
    };
    let (top, bottom) = (mt + 10.0, mt + ph - 10.0 - box_h);
    let box_y = if covered(top) > 0 && covered(bottom) < covered(top) {
        bottom
    } else {
        top
    };
    let _ = writeln!(
        o,
        "<rect x=\"{box_x:.1}\" y=\"{box_y:.1}\" width=\"{box_w:.1}\" height=\"{box_h:.1}\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#999\" stroke-width=\"0.8\"/>"
    );
    for (gi, (name, med)) in legend_names.iter().zip(&meds).enumerate() {
        let col = PALETTE[gi % PALETTE.len()];
        let ly = box_y + 14.0 + 18.0 * gi as f64;
        let lx = box_x + pad;
        let _ = writeln!(
            o,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{col}\" stroke-width=\"2.5\"/>",
            lx + 26.0
        );
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}{}</text>",
            lx + swatch,
            ly + 4.0,
            esc_xml(name),
            esc_xml(med)
        );
    }
    if let Some(l) = &p_line {
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            box_x + pad,
            box_y + 18.0 + 18.0 * ng as f64,
            esc_xml(l)
        );
    }
    // numbers at risk
    let ry = mt + ph + 70.0;
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{ry:.1}\" font-weight=\"bold\">Number at risk</text>",
        10.0
    );
    for (gi, g) in k.groups.iter().enumerate() {
        let y = ry + 20.0 * (gi + 1) as f64;
        let col = PALETTE[gi % PALETTE.len()];
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{y:.1}\" fill=\"{col}\">{}</text>",
            10.0,
            esc_xml(&risk_labels[gi])
        );
        for &t in &ticks {
            let idx = g.curve.partition_point(|p| p.time < t);
            let nr = g.curve.get(idx).map_or(0, |p| p.n_risk);
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"middle\">{nr}</text>",
                sx(t)
            );
        }
    }
    o.push_str("</svg>\n");
    o
}

/// Forest plot of hazard (or odds) ratios on a log axis.
pub fn forest_svg(
    rows: &[(String, f64, f64, f64)],
    title: &str,
    xlabel: &str,
    alpha: f64,
) -> String {
    let n = rows.len().max(1);
    let (w, row_h) = (900.0, 32.0);
    let (mt, mb) = (60.0, 60.0);
    let h = mt + mb + row_h * n as f64;
    let (left, right) = (230.0, 220.0);
    let pw = w - left - right;
    let finite: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.2, r.3])
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = finite.iter().copied().fold(1.0, f64::min).min(0.5);
    let hi = finite.iter().copied().fold(1.0, f64::max).max(2.0);
    let (l0, l1) = (lo.log2().floor(), hi.log2().ceil());
    let sx = |v: f64| left + pw * (v.log2() - l0) / (l1 - l0);
    // term names right-aligned against the plot, shortened (distinctly) to the margin
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let labels = fit_labels(&names, left - 22.0, 13.0);
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{}</text>",
        w / 2.0,
        esc_xml(title)
    );
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"start\" font-weight=\"bold\">Estimate ({}% CI)</text>",
        left + pw + 20.0,
        mt - 12.0,
        ((1.0 - alpha) * 100.0).round()
    );
    let x1 = sx(1.0);
    let _ = writeln!(
        o,
        "<line x1=\"{x1:.1}\" y1=\"{:.1}\" x2=\"{x1:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>",
        mt - 5.0,
        mt + row_h * n as f64
    );
    for (i, ((_, est, l, u), name)) in rows.iter().zip(&labels).enumerate() {
        let y = mt + row_h * (i as f64 + 0.5);
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 12.0,
            y + 4.0,
            esc_xml(name)
        );
        if l.is_finite() && u.is_finite() && *l > 0.0 {
            let _ = writeln!(
                o,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#000\" stroke-width=\"1.5\"/>",
                sx(*l),
                sx(*u)
            );
        }
        if est.is_finite() && *est > 0.0 {
            let _ = writeln!(
                o,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/>",
                sx(*est) - 5.0,
                y - 5.0,
                PALETTE[0]
            );
        }
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\">{} ({}, {})</text>",
            left + pw + 20.0,
            y + 4.0,
            f(*est, 2),
            f(*l, 2),
            f(*u, 2)
        );
    }
    let base = mt + row_h * n as f64;
    let _ = writeln!(
        o,
        "<line x1=\"{left}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"#000\"/>",
        left + pw
    );
    let mut e = l0;
    while e <= l1 + 1e-9 {
        let v = 2f64.powf(e);
        let x = sx(v);
        let _ = writeln!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{base:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>",
            base + 5.0
        );
        let label = if v >= 1.0 {
            crate::data::fmt_num(v)
        } else {
            format!("{v}")
        };
        let _ = writeln!(
            o,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            base + 20.0
        );
        e += 1.0;
    }
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        left + pw / 2.0,
        base + 42.0,
        esc_xml(xlabel)
    );
    o.push_str("</svg>\n");
    o
}

/// Rasterises an SVG figure to PNG at `scale` × its size (2.0 gives print resolution for
/// the 900-px-wide figures). Text needs system fonts (DejaVu Sans or any sans-serif); without
/// any font the call fails rather than produce a figure without labels.
pub fn svg_to_png(svg: &str, scale: f32) -> crate::Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    if opt.fontdb.is_empty() {
        return Err(crate::StatsError::Invalid(
            "PNG output needs a system font (e.g. Debian fonts-dejavu-core); none found. Write SVG instead.".into(),
        ));
    }
    let tree = usvg::Tree::from_str(svg, &opt)
        .map_err(|e| crate::StatsError::Invalid(format!("SVG not renderable: {e}")))?;
    let size = tree.size();
    let w = (size.width() * scale).ceil() as u32;
    let h = (size.height() * scale).ceil() as u32;
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| crate::StatsError::Invalid(format!("bad PNG size {w}x{h}")))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| crate::StatsError::Invalid(format!("PNG encoding failed: {e}")))
}

/// Writes a figure as SVG, or as PNG when the path ends in `.png`.
pub fn write_figure(path: &std::path::Path, svg: &str) -> crate::Result<()> {
    let is_png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let io = |e| crate::StatsError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    if is_png {
        std::fs::write(path, svg_to_png(svg, 2.0)?).map_err(io)
    } else {
        std::fs::write(path, svg).map_err(io)
    }
}
