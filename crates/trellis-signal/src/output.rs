//! `results.csv` and `results.prior.json` writers.
//!
//! Numbers are written with the shortest representation that round-trips to
//! the same `f64` (full double precision); non-finite values are written as
//! `inf`, `-inf` and `NaN`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::count::PairTable;
use crate::error::{Result, io_err};
use crate::measures::{Disproportionality, IcTable, disproportionality, z975};
use crate::mgps::{FitResult, Posterior, PosteriorCalc};

/// Column header of `results.csv`.
pub const HEADER: &str = "drug,event,a,b,c,d,E,PRR,PRR_lo,PRR_hi,chisq,ROR,ROR_lo,ROR_hi,IC,IC025,IC975,EBGM,EB05,EB95,flag_evans,flag_eb05,flag_ic025";

/// Everything computed for one pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairRow {
    pub index: usize,
    pub cells: (u64, u64, u64, u64),
    pub expected: f64,
    pub m: Disproportionality,
    pub post: Posterior,
}

impl PairRow {
    /// Evans et al.: PRR ≥ 2, χ² ≥ 4 and a ≥ 3.
    pub fn flag_evans(&self) -> bool {
        self.m.prr >= 2.0 && self.m.chisq >= 4.0 && self.cells.0 >= 3
    }
    pub fn flag_eb05(&self) -> bool {
        self.post.eb05 >= 2.0
    }
    pub fn flag_ic025(&self) -> bool {
        self.m.ic025 > 0.0
    }
}

/// Computes all measures of pair `k`.
pub struct RowCalc<'a> {
    pub table: &'a PairTable,
    pub ic: &'a IcTable,
    pub posterior: &'a PosteriorCalc,
    pub continuity: Option<f64>,
    pub z: f64,
}

impl<'a> RowCalc<'a> {
    pub fn new(
        table: &'a PairTable,
        ic: &'a IcTable,
        posterior: &'a PosteriorCalc,
        continuity: Option<f64>,
    ) -> Self {
        RowCalc {
            table,
            ic,
            posterior,
            continuity,
            z: z975(),
        }
    }

    pub fn row(&self, k: usize) -> PairRow {
        let cells = self.table.cells(k);
        let e = self.table.expected[k];
        let a = self.table.a[k];
        PairRow {
            index: k,
            cells,
            expected: e,
            m: disproportionality(cells, e, self.ic.get(a), self.continuity, self.z),
            post: self.posterior.posterior(a, e),
        }
    }
}

fn push_f64(buf: &mut Vec<u8>, x: f64, fmt: &mut ryu::Buffer) {
    if x.is_nan() {
        buf.extend_from_slice(b"NaN");
    } else if x.is_infinite() {
        buf.extend_from_slice(if x > 0.0 { b"inf" } else { b"-inf" });
    } else {
        buf.extend_from_slice(fmt.format_finite(x).as_bytes());
    }
}

/// CSV-quotes a name if needed.
pub fn push_name(buf: &mut Vec<u8>, name: &str) {
    if name.contains([',', '"', '\n', '\r']) {
        buf.push(b'"');
        for b in name.bytes() {
            if b == b'"' {
                buf.push(b'"');
            }
            buf.push(b);
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(name.as_bytes());
    }
}

fn format_row(
    buf: &mut Vec<u8>,
    r: &PairRow,
    drug: &str,
    event: &str,
    fmt: &mut ryu::Buffer,
    ib: &mut itoa::Buffer,
) {
    push_name(buf, drug);
    buf.push(b',');
    push_name(buf, event);
    for v in [r.cells.0, r.cells.1, r.cells.2, r.cells.3] {
        buf.push(b',');
        buf.extend_from_slice(ib.format(v).as_bytes());
    }
    let m = &r.m;
    for x in [
        r.expected,
        m.prr,
        m.prr_lo,
        m.prr_hi,
        m.chisq,
        m.ror,
        m.ror_lo,
        m.ror_hi,
        m.ic,
        m.ic025,
        m.ic975,
        r.post.ebgm,
        r.post.eb05,
        r.post.eb95,
    ] {
        buf.push(b',');
        push_f64(buf, x, fmt);
    }
    for f in [r.flag_evans(), r.flag_eb05(), r.flag_ic025()] {
        buf.extend_from_slice(if f { b",1" } else { b",0" });
    }
    buf.push(b'\n');
}

/// Summary gathered while writing: flag counts and the strongest signals.
#[derive(Debug, Clone, Default)]
pub struct WriteSummary {
    pub rows: usize,
    pub flagged_evans: usize,
    pub flagged_eb05: usize,
    pub flagged_ic025: usize,
    /// Up to `top_k` rows with the largest EB05 (ties by a), in that order.
    pub top: Vec<PairRow>,
}

fn merge_top(mut a: Vec<PairRow>, b: Vec<PairRow>, k: usize) -> Vec<PairRow> {
    a.extend(b);
    a.sort_by(|x, y| {
        y.post
            .eb05
            .total_cmp(&x.post.eb05)
            .then(y.cells.0.cmp(&x.cells.0))
            .then(x.index.cmp(&y.index))
    });
    a.truncate(k);
    a
}

/// Writes `results.csv`, computing rows in parallel chunks.
pub fn write_results(
    path: &Path,
    calc: &RowCalc<'_>,
    drug_names: &[String],
    event_names: &[String],
    top_k: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<WriteSummary> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(HEADER.as_bytes()).map_err(io_err(path))?;
    out.write_all(b"\n").map_err(io_err(path))?;
    let n = calc.table.len();
    const CHUNK: usize = 16_384;
    let batch = CHUNK * rayon::current_num_threads().max(1) * 4;
    let mut summary = WriteSummary::default();
    let mut start = 0usize;
    while start < n {
        let end = (start + batch).min(n);
        let parts: Vec<(Vec<u8>, [usize; 3], Vec<PairRow>)> = (start..end)
            .into_par_iter()
            .step_by(CHUNK)
            .map(|s| {
                let e = (s + CHUNK).min(end);
                let mut buf = Vec::with_capacity((e - s) * 200);
                let mut fmt = ryu::Buffer::new();
                let mut ib = itoa::Buffer::new();
                let mut flags = [0usize; 3];
                let mut top = Vec::new();
                for k in s..e {
                    let r = calc.row(k);
                    flags[0] += usize::from(r.flag_evans());
                    flags[1] += usize::from(r.flag_eb05());
                    flags[2] += usize::from(r.flag_ic025());
                    format_row(
                        &mut buf,
                        &r,
                        &drug_names[calc.table.drug[k] as usize],
                        &event_names[calc.table.event[k] as usize],
                        &mut fmt,
                        &mut ib,
                    );
                    top.push(r);
                    if top.len() >= 4 * top_k.max(1) {
                        top = merge_top(top, Vec::new(), top_k);
                    }
                }
                (buf, flags, merge_top(top, Vec::new(), top_k))
            })
            .collect();
        for (buf, flags, top) in parts {
            out.write_all(&buf).map_err(io_err(path))?;
            summary.flagged_evans += flags[0];
            summary.flagged_eb05 += flags[1];
            summary.flagged_ic025 += flags[2];
            summary.top = merge_top(std::mem::take(&mut summary.top), top, top_k);
        }
        progress((end - start) as u64);
        start = end;
    }
    out.flush().map_err(io_err(path))?;
    summary.rows = n;
    Ok(summary)
}

/// `results.csv` → `results.prior.json` (the extension is replaced).
pub fn prior_path(results: &Path) -> PathBuf {
    results.with_extension("prior.json")
}

/// Writes `{"alpha1":…,"beta1":…,"alpha2":…,"beta2":…,"p":…,"loglik":…}`.
pub fn write_prior(path: &Path, fit: &FitResult) -> Result<()> {
    let mut buf = Vec::new();
    let mut fmt = ryu::Buffer::new();
    buf.push(b'{');
    let p = &fit.prior;
    for (i, (k, v)) in [
        ("alpha1", p.alpha1),
        ("beta1", p.beta1),
        ("alpha2", p.alpha2),
        ("beta2", p.beta2),
        ("p", p.p),
        ("loglik", fit.loglik),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(format!("\"{k}\":").as_bytes());
        if v.is_finite() {
            buf.extend_from_slice(fmt.format_finite(v).as_bytes());
        } else {
            buf.extend_from_slice(b"null");
        }
    }
    buf.extend_from_slice(b"}\n");
    std::fs::write(path, buf).map_err(io_err(path))
}
