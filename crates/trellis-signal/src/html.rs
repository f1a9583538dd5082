//! Self-contained HTML report: run summary, ranked signals, a plot of EB05
//! against the report count, and a per-drug drill-down. Values are rounded
//! for display only.

use std::fmt::Write as _;
use std::path::Path;

use crate::count::PairTable;
use crate::data::Dataset;
use crate::error::{Result, io_err};
use crate::output::{PairRow, RowCalc};
use crate::pipeline::RunSummary;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A hyperparameter to four significant digits (a shape of 2e-9 must not
/// print as 0.0000).
fn hyper(x: f64) -> String {
    if x != 0.0 && x.is_finite() && x.abs() < 1e-3 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

fn row_html(out: &mut String, r: &PairRow, drug: &str, event: &str) {
    let flags = [
        (r.flag_evans(), "Evans"),
        (r.flag_eb05(), "EB05≥2"),
        (r.flag_ic025(), "IC025>0"),
    ]
    .iter()
    .filter(|f| f.0)
    .map(|f| f.1)
    .collect::<Vec<_>>()
    .join(" ");
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} [{}, {}]</td><td>{} [{}, {}]</td><td>{} [{}, {}]</td><td>{} [{}, {}]</td><td>{}</td></tr>",
        esc(drug),
        esc(event),
        r.cells.0,
        num(r.expected),
        num(r.m.prr),
        num(r.m.prr_lo),
        num(r.m.prr_hi),
        num(r.m.ror),
        num(r.m.ror_lo),
        num(r.m.ror_hi),
        num(r.m.ic),
        num(r.m.ic025),
        num(r.m.ic975),
        num(r.post.ebgm),
        num(r.post.eb05),
        num(r.post.eb95),
        flags
    );
}

const TABLE_HEAD: &str = "<tr><th>drug</th><th>event</th><th>a</th><th>E</th><th>PRR [95% CI]</th><th>ROR [95% CI]</th><th>IC [IC025, IC975]</th><th>EBGM [EB05, EB95]</th><th>flags</th></tr>";

fn plot(rows: &[PairRow], ds: &Dataset, table: &PairTable) -> String {
    let (w, h, m) = (760.0, 420.0, 50.0);
    let xs: Vec<f64> = rows.iter().map(|r| (r.cells.0 as f64).log10()).collect();
    let ys: Vec<f64> = rows.iter().map(|r| r.post.eb05.max(1e-3).log10()).collect();
    let xmax = xs.iter().copied().fold(1.0f64, f64::max);
    let ymin = ys.iter().copied().fold(0.0f64, f64::min).min(-0.5);
    let ymax = ys.iter().copied().fold(1.0f64, f64::max);
    let sx = |x: f64| m + (w - 2.0 * m) * x / xmax;
    let sy = |y: f64| h - m - (h - 2.0 * m) * (y - ymin) / (ymax - ymin);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"EB05 against report count\">"
    );
    let _ = write!(
        s,
        "<rect x=\"{m}\" y=\"{m}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        w - 2.0 * m,
        h - 2.0 * m
    );
    let y2 = sy(2f64.log10());
    let _ = write!(
        s,
        "<line x1=\"{m}\" x2=\"{}\" y1=\"{y2}\" y2=\"{y2}\" stroke=\"#c00\" stroke-dasharray=\"4 3\"/><text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#c00\">EB05 = 2</text>",
        w - m,
        w - m - 60.0,
        y2 - 4.0
    );
    for k in 0..=(xmax.ceil() as i32) {
        let x = sx(f64::from(k));
        let _ = write!(
            s,
            "<text x=\"{x}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            h - m + 15.0,
            10f64.powi(k)
        );
    }
    let mut k = ymin.floor() as i32;
    while f64::from(k) <= ymax {
        if f64::from(k) >= ymin {
            let y = sy(f64::from(k));
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
                m - 5.0,
                y + 4.0,
                10f64.powi(k)
            );
        }
        k += 1;
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">reports with the pair (a, log scale)</text><text x=\"14\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">EB05 (log scale)</text>",
        w / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0
    );
    for (i, r) in rows.iter().enumerate() {
        let color = if r.flag_eb05() { "#c0392b" } else { "#2c7fb8" };
        let d = &ds.drug_names[table.drug[r.index] as usize];
        let e = &ds.event_names[table.event[r.index] as usize];
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\" fill-opacity=\"0.6\"><title>{} / {}: a={}, EB05={}</title></circle>",
            sx(xs[i]),
            sy(ys[i]),
            esc(d),
            esc(e),
            r.cells.0,
            num(r.post.eb05)
        );
    }
    s.push_str("</svg>");
    s
}

/// Writes the report.
pub fn write_report(
    path: &Path,
    ds: &Dataset,
    table: &PairTable,
    calc: &RowCalc<'_>,
    summary: &RunSummary,
) -> Result<()> {
    let top = &summary.write.top;
    let mut out = String::new();
    out.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Trellis signal detection report</title><style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}td:first-child,td:nth-child(2),th{text-align:left}tr:nth-child(even){background:#f7f7f7}details{margin:4px 0}summary{cursor:pointer}input{margin:8px 0;padding:4px;width:300px}.warn{border-left:4px solid #b45309;background:#fff7ed;padding:6px 10px}</style></head><body>");
    out.push_str("<h1>Signal detection report</h1>");
    let _ = write!(
        out,
        "<p>{} reports, {} drugs, {} events, {} {}, {} drug–event pairs; N = {}. Flags: Evans {} · EB05≥2 {} · IC025&gt;0 {}. Values rounded for display; results.csv holds full precision.</p>",
        summary.n_reports,
        summary.n_drugs,
        summary.n_events,
        summary.n_strata,
        if summary.n_strata == 1 {
            "stratum"
        } else {
            "strata"
        },
        summary.n_pairs,
        summary.n_total,
        summary.write.flagged_evans,
        summary.write.flagged_eb05,
        summary.write.flagged_ic025
    );
    if let Some(p) = &summary.prior {
        let _ = write!(
            out,
            "<p>Prior: α1={}, β1={}, α2={}, β2={}, P={}{}</p>",
            hyper(p.alpha1),
            hyper(p.beta1),
            hyper(p.alpha2),
            hyper(p.beta2),
            hyper(p.p),
            summary
                .fit
                .as_ref()
                .map(|f| format!(", log-likelihood {:.4} on {} points", f.loglik, f.n_points))
                .unwrap_or_default()
        );
    }
    for w in summary.fit.iter().flat_map(|f| &f.warnings) {
        let _ = write!(out, "<p class=\"warn\">Prior fit: {}</p>", esc(w));
    }
    if summary.malformed > 0 {
        let _ = write!(
            out,
            "<p>{} malformed lines skipped; first: {}</p>",
            summary.malformed,
            esc(&summary.malformed_examples.join("; "))
        );
    }
    out.push_str("<h2>EB05 against report count (strongest 2,000 pairs by EB05)</h2>");
    out.push_str(&plot(top, ds, table));
    out.push_str("<h2>Top signals by EB05</h2><table>");
    out.push_str(TABLE_HEAD);
    for r in top.iter().take(200) {
        row_html(
            &mut out,
            r,
            &ds.drug_names[table.drug[r.index] as usize],
            &ds.event_names[table.event[r.index] as usize],
        );
    }
    out.push_str("</table>");
    // Drill-down: drugs of the top list, all their pairs with a >= 3 (best 300).
    out.push_str("<h2>Per-drug drill-down</h2><input id=\"q\" placeholder=\"filter drugs\" oninput=\"for(const d of document.querySelectorAll('details.drug'))d.style.display=d.dataset.name.includes(this.value.toUpperCase())?'':'none'\">");
    let mut drugs: Vec<u32> = Vec::new();
    for r in top {
        let d = table.drug[r.index];
        if !drugs.contains(&d) {
            drugs.push(d);
        }
        if drugs.len() >= 300 {
            break;
        }
    }
    for d in drugs {
        let lo = table.drug.partition_point(|&x| x < d);
        let hi = table.drug.partition_point(|&x| x <= d);
        let mut rows: Vec<PairRow> = (lo..hi)
            .filter(|&k| table.a[k] >= 3)
            .map(|k| calc.row(k))
            .collect();
        rows.sort_by(|x, y| y.post.eb05.total_cmp(&x.post.eb05));
        let name = &ds.drug_names[d as usize];
        let flagged = rows.iter().filter(|r| r.flag_eb05()).count();
        let _ = write!(
            out,
            "<details class=\"drug\" data-name=\"{}\"><summary>{} — {} pairs, {} with a≥3, {} with EB05≥2</summary><table>{}",
            esc(&name.to_uppercase()),
            esc(name),
            hi - lo,
            rows.len(),
            flagged,
            TABLE_HEAD
        );
        for r in rows.iter().take(300) {
            row_html(
                &mut out,
                r,
                name,
                &ds.event_names[table.event[r.index] as usize],
            );
        }
        out.push_str("</table></details>");
    }
    out.push_str("<h2>Run</h2><ul>");
    for (name, t) in &summary.timings {
        let _ = write!(out, "<li>{}: {:.3} s</li>", esc(name), t.as_secs_f64());
    }
    for n in &summary.notes {
        let _ = write!(out, "<li>{}</li>", esc(n));
    }
    out.push_str("</ul></body></html>\n");
    std::fs::write(path, out).map_err(io_err(path))
}
