//! `results.csv` and `results.prior.json` writers.
//!
//! Numbers are written with the shortest representation that round-trips to
//! the same `f64` (full double precision); non-finite values are written as
//! `inf`, `-inf` and `NaN`.

use std::fs::File;
use std::io::Write;
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

/// A row being formatted in a zero-filled scratch buffer that has room for
/// it plus 32 bytes. Fields of at most 32 bytes are copied with overlapping
/// fixed-size moves the compiler does inline: a row has about 25 short
/// fields, and a `memcpy` call for each (or growing a `Vec` for each) cost
/// about a fifth of the measures-and-write stage's CPU at 25M reports.
struct RowCursor<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl RowCursor<'_> {
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        let n = s.len();
        let at = self.at;
        if n > 32 {
            self.out[at..at + n].copy_from_slice(s);
        } else {
            let dst = &mut self.out[at..at + 32];
            if n >= 16 {
                dst[..16].copy_from_slice(&s[..16]);
                dst[n - 16..n].copy_from_slice(&s[n - 16..]);
            } else if n >= 8 {
                dst[..8].copy_from_slice(&s[..8]);
                dst[n - 8..n].copy_from_slice(&s[n - 8..]);
            } else if n >= 4 {
                dst[..4].copy_from_slice(&s[..4]);
                dst[n - 4..n].copy_from_slice(&s[n - 4..]);
            } else {
                if n > 0 {
                    dst[0] = s[0];
                }
                if n > 1 {
                    dst[1] = s[1];
                }
                if n > 2 {
                    dst[2] = s[2];
                }
            }
        }
        self.at = at + n;
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.out[self.at] = b;
        self.at += 1;
    }

    #[inline(always)]
    fn f64(&mut self, x: f64, fmt: &mut zmij::Buffer) {
        if x.is_nan() {
            self.put(b"NaN");
        } else if x.is_infinite() {
            self.put(if x > 0.0 { b"inf" } else { b"-inf" });
        } else {
            self.put(fmt.format_finite(x).as_bytes());
        }
    }
}

/// Longest formatted number (zmij writes at most 24 bytes, itoa 20), with
/// its separator: the room a row needs besides its two names.
const FIELD_ROOM: usize = 33;
/// Fields of a row besides the names, and the slack [`RowCursor::put`] needs.
const ROW_ROOM: usize = 21 * FIELD_ROOM + 8 + 32;

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

/// Every name as it appears in a CSV field, quoted once up front rather
/// than checked on each of the millions of rows that repeat it.
fn csv_fields(names: &[String]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|n| {
            let mut buf = Vec::with_capacity(n.len());
            push_name(&mut buf, n);
            buf
        })
        .collect()
}

fn format_row(
    buf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    r: &PairRow,
    drug: &[u8],
    event: &[u8],
    fmt: &mut zmij::Buffer,
    ib: &mut itoa::Buffer,
) {
    let need = drug.len() + event.len() + ROW_ROOM;
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    let mut row = RowCursor {
        out: scratch,
        at: 0,
    };
    row.put(drug);
    row.byte(b',');
    row.put(event);
    for v in [r.cells.0, r.cells.1, r.cells.2, r.cells.3] {
        row.byte(b',');
        row.put(ib.format(v).as_bytes());
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
        row.byte(b',');
        row.f64(x, fmt);
    }
    for f in [r.flag_evans(), r.flag_eb05(), r.flag_ic025()] {
        row.byte(b',');
        row.byte(if f { b'1' } else { b'0' });
    }
    row.byte(b'\n');
    let len = row.at;
    buf.extend_from_slice(&scratch[..len]);
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

/// The ranking of [`WriteSummary::top`]: EB05 descending, then a descending,
/// then table order.
fn rank(x: &PairRow, y: &PairRow) -> std::cmp::Ordering {
    y.post
        .eb05
        .total_cmp(&x.post.eb05)
        .then(y.cells.0.cmp(&x.cells.0))
        .then(x.index.cmp(&y.index))
}

/// The `k` best rows of a stream. Once `k` rows are held, a row whose EB05
/// is below the k-th best cannot enter, so most rows cost one comparison.
struct TopK {
    k: usize,
    rows: Vec<PairRow>,
    floor: f64,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self::above(k, f64::NEG_INFINITY)
    }

    /// A collector that takes no row with EB05 below `floor`: a chunk's
    /// rows below the running k-th best can never enter the final top k,
    /// and seeding each chunk with that floor spares sorting them.
    fn above(k: usize, floor: f64) -> Self {
        TopK {
            k,
            rows: Vec::new(),
            floor,
        }
    }

    #[inline]
    fn offer(&mut self, r: &PairRow) {
        if self.k == 0 || r.post.eb05.total_cmp(&self.floor).is_lt() {
            return;
        }
        self.rows.push(*r);
        if self.rows.len() >= 4 * self.k {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        self.rows.sort_by(rank);
        self.rows.truncate(self.k);
        if self.k > 0 && self.rows.len() == self.k {
            self.floor = self.rows[self.k - 1].post.eb05;
        }
    }

    fn into_rows(mut self) -> Vec<PairRow> {
        self.shrink();
        self.rows
    }
}

/// Alignment and size granularity of direct I/O (covers 512- and
/// 4096-byte logical blocks).
const DIRECT_ALIGN: usize = 4096;
/// Bytes collected before each direct write.
const STAGE_BYTES: usize = 8 << 20;

/// The results file, written with `O_DIRECT` where the filesystem allows
/// it: rows go from an aligned staging buffer to the device instead of
/// through the page cache. On the 2-core test machine a buffered 3.4 GB
/// results.csv cost 4.6 CPU-seconds in the kernel (and evicted the input
/// files from the cache); direct writes cost 0.25 s. Elsewhere, or where
/// `O_DIRECT` is refused (tmpfs), it is an ordinary buffered file.
struct Sink {
    path: PathBuf,
    file: File,
    direct: bool,
    stage: Vec<u8>,
    /// Start of the aligned region of `stage`.
    offset: usize,
    capacity: usize,
    filled: usize,
    written: u64,
}

impl Sink {
    fn create(path: &Path, capacity: usize) -> std::io::Result<Sink> {
        let capacity = capacity.div_ceil(DIRECT_ALIGN).max(1) * DIRECT_ALIGN;
        let (file, direct) = match Self::open_direct(path) {
            Some(file) => (file, true),
            None => (File::create(path)?, false),
        };
        let stage = if direct {
            vec![0u8; capacity + DIRECT_ALIGN]
        } else {
            Vec::new()
        };
        let offset = stage.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        Ok(Sink {
            path: path.to_owned(),
            file,
            direct,
            stage,
            offset,
            capacity,
            filled: 0,
            written: 0,
        })
    }

    #[cfg(target_os = "linux")]
    fn open_direct(path: &Path) -> Option<File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }

    #[cfg(not(target_os = "linux"))]
    fn open_direct(_path: &Path) -> Option<File> {
        None
    }

    fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        if !self.direct {
            return self.file.write_all(data);
        }
        while !data.is_empty() {
            let n = (self.capacity - self.filled).min(data.len());
            let at = self.offset + self.filled;
            self.stage[at..at + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == self.capacity {
                self.write_stage(self.capacity)?;
            }
        }
        Ok(())
    }

    /// Writes the first `len` bytes of the stage (a multiple of the
    /// alignment, possibly past `filled` with zero padding).
    fn write_stage(&mut self, len: usize) -> std::io::Result<()> {
        let result = self
            .file
            .write_all(&self.stage[self.offset..self.offset + len]);
        match result {
            Ok(()) => {
                self.written += len as u64;
                self.filled = 0;
                Ok(())
            }
            Err(e) if self.written == 0 && e.kind() == std::io::ErrorKind::InvalidInput => {
                // Opened with O_DIRECT but the filesystem refuses direct
                // writes: start over as an ordinary file (nothing written yet).
                self.file = File::create(&self.path)?;
                self.direct = false;
                self.file
                    .write_all(&self.stage[self.offset..self.offset + self.filled])?;
                self.filled = 0;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn finish(mut self) -> std::io::Result<()> {
        if self.direct {
            let length = self.written + self.filled as u64;
            if self.filled > 0 {
                // The last block goes out padded with zeros; the file is then cut to length.
                let padded = self.filled.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
                self.stage[self.offset + self.filled..self.offset + padded].fill(0);
                self.write_stage(padded)?;
            }
            if self.direct {
                self.file.set_len(length)?;
            }
        }
        self.file.flush()
    }
}

/// Replacing a large results file by truncating it makes the filesystem
/// free all its blocks inside the `open` call (1.5 to 4.7 s for a 3.5 GB
/// file on ext4 here, with nothing else to do meanwhile). Instead the old
/// file is unlinked while a thread holds it open, and that thread's
/// `close` frees the blocks while the rows are being computed. If this
/// process dies, the kernel frees them at exit; no stray file is left.
fn release_old_file(path: &Path) -> Option<std::thread::JoinHandle<()>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() || meta.len() < (64 << 20) {
        return None;
    }
    let old = File::open(path).ok()?;
    std::fs::remove_file(path).ok()?;
    Some(std::thread::spawn(move || drop(old)))
}

/// Rows per formatting task.
const CHUNK: usize = 16_384;
/// Bytes reserved per row; rows are about 300 bytes at full precision, so a
/// recycled buffer never grows.
const ROW_BYTES: usize = 448;

/// Writes `results.csv`. Rows are computed and formatted in parallel chunks
/// while a writer thread hands the previous chunks to the kernel; buffers
/// go back and forth between the two instead of being reallocated.
pub fn write_results(
    path: &Path,
    calc: &RowCalc<'_>,
    drug_names: &[String],
    event_names: &[String],
    top_k: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<WriteSummary> {
    use std::sync::mpsc::{channel, sync_channel};

    let old_file = release_old_file(path);
    let mut sink = Sink::create(path, STAGE_BYTES).map_err(io_err(path))?;
    let drugs = csv_fields(drug_names);
    let events = csv_fields(event_names);
    let n = calc.table.len();
    let per_batch = rayon::current_num_threads().max(1) * 2;
    // Up to six formatted batches (about 120 MB) may wait for the writer:
    // direct writes to new blocks come in bursts on the test VM, and with
    // room for one batch the computing threads stalled behind them (the
    // stage ran at about 150% CPU of 200%; peak RSS is set earlier, by
    // the pair table, and did not change).
    let (full_tx, full_rx) = sync_channel::<Vec<Vec<u8>>>(6);
    let (free_tx, free_rx) = channel::<Vec<u8>>();
    let mut summary = WriteSummary::default();
    let mut top = TopK::new(top_k);
    std::thread::scope(|scope| -> Result<()> {
        let writer = scope.spawn(move || -> std::io::Result<()> {
            sink.write(HEADER.as_bytes())?;
            sink.write(b"\n")?;
            for bufs in full_rx {
                for mut buf in bufs {
                    sink.write(&buf)?;
                    buf.clear();
                    // The computing side may have finished; then the buffer is dropped.
                    let _ = free_tx.send(buf);
                }
            }
            sink.finish()
        });
        let mut start = 0usize;
        while start < n {
            let end = (start + CHUNK * per_batch).min(n);
            let starts: Vec<usize> = (start..end).step_by(CHUNK).collect();
            let mut bufs: Vec<Vec<u8>> = starts
                .iter()
                .map(|_| {
                    free_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(CHUNK * ROW_BYTES))
                })
                .collect();
            let floor = top.floor;
            let parts: Vec<([usize; 3], Vec<PairRow>)> = bufs
                .par_iter_mut()
                .zip(&starts)
                .map(|(buf, &s)| {
                    let e = (s + CHUNK).min(end);
                    let mut fmt = zmij::Buffer::new();
                    let mut ib = itoa::Buffer::new();
                    let mut scratch = Vec::new();
                    let mut flags = [0usize; 3];
                    let mut top = TopK::above(top_k, floor);
                    for k in s..e {
                        let r = calc.row(k);
                        flags[0] += usize::from(r.flag_evans());
                        flags[1] += usize::from(r.flag_eb05());
                        flags[2] += usize::from(r.flag_ic025());
                        format_row(
                            buf,
                            &mut scratch,
                            &r,
                            &drugs[calc.table.drug[k] as usize],
                            &events[calc.table.event[k] as usize],
                            &mut fmt,
                            &mut ib,
                        );
                        top.offer(&r);
                    }
                    (flags, top.into_rows())
                })
                .collect();
            for (flags, rows) in parts {
                summary.flagged_evans += flags[0];
                summary.flagged_eb05 += flags[1];
                summary.flagged_ic025 += flags[2];
                for r in &rows {
                    top.offer(r);
                }
            }
            if full_tx.send(bufs).is_err() {
                // The writer stopped on an error, which `join` reports.
                break;
            }
            progress((end - start) as u64);
            start = end;
        }
        drop(full_tx);
        if let Some(old) = old_file {
            // A panic while closing a file is not possible; nothing to report.
            let _ = old.join();
        }
        match writer.join() {
            Ok(r) => r.map_err(io_err(path)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })?;
    summary.rows = n;
    summary.top = top.into_rows();
    Ok(summary)
}

/// `results.csv` → `results.prior.json` (the extension is replaced).
pub fn prior_path(results: &Path) -> PathBuf {
    results.with_extension("prior.json")
}

/// Writes `{"alpha1":…,"beta1":…,"alpha2":…,"beta2":…,"p":…,"loglik":…}`.
pub fn write_prior(path: &Path, fit: &FitResult) -> Result<()> {
    let mut buf = Vec::new();
    let mut fmt = zmij::Buffer::new();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_cursor_puts_exactly_the_bytes_at_every_length() {
        let source: Vec<u8> = (0..80u8).map(|i| b'0' + i % 75).collect();
        for len in 0..=source.len() {
            let mut out = vec![0u8; 2 * len + 40];
            let mut row = RowCursor {
                out: &mut out,
                at: 0,
            };
            row.put(&source[..len]);
            row.byte(b',');
            row.put(&source[..len]);
            let at = row.at;
            let mut want = source[..len].to_vec();
            want.push(b',');
            want.extend_from_slice(&source[..len]);
            assert_eq!(&out[..at], &want[..], "length {len}");
        }
    }

    fn row(index: usize, a: u64, eb05: f64) -> PairRow {
        PairRow {
            index,
            cells: (a, 1, 1, 1),
            expected: 1.0,
            m: Disproportionality::default(),
            post: Posterior {
                eb05,
                ..Posterior::default()
            },
        }
    }

    #[test]
    fn top_k_equals_sorting_everything() {
        // Many ties in EB05 and a, so the floor and the tie-breaks both matter.
        let rows: Vec<PairRow> = (0..5000)
            .map(|i| row(i, (i * 7 % 5) as u64, ((i * 7919) % 37) as f64 / 4.0))
            .collect();
        for k in [0, 1, 3, 10, 100, 4999, 6000] {
            let mut top = TopK::new(k);
            for r in &rows {
                top.offer(r);
            }
            let mut all = rows.clone();
            all.sort_by(rank);
            all.truncate(k);
            assert_eq!(top.into_rows(), all.clone(), "k = {k}");
            // As write_results does: chunks collected above the running floor.
            let mut merged = TopK::new(k);
            for chunk in rows.chunks(97) {
                let mut local = TopK::above(k, merged.floor);
                for r in chunk {
                    local.offer(r);
                }
                for r in &local.into_rows() {
                    merged.offer(r);
                }
            }
            assert_eq!(merged.into_rows(), all, "chunked, k = {k}");
        }
    }

    #[test]
    fn a_large_old_results_file_is_unlinked_and_a_small_one_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.csv");
        let file = File::create(&big).expect("create");
        // Sparse: no 64 MiB actually written.
        file.set_len(65 << 20).expect("set_len");
        drop(file);
        let closer = release_old_file(&big).expect("a large file is released");
        assert!(!big.exists());
        closer.join().expect("close");
        let small = dir.path().join("small.csv");
        std::fs::write(&small, b"drug,event\n").expect("write");
        assert!(release_old_file(&small).is_none());
        assert!(small.exists());
        assert!(release_old_file(&dir.path().join("absent.csv")).is_none());
    }

    fn sink_roundtrip(dir: &Path) {
        for len in [0usize, 1, 4095, 4096, 4097, 20_000, 3 * 8192 + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.join(format!("sink_{len}.csv"));
            let mut sink = Sink::create(&path, 8192).expect("create");
            // Uneven pieces, as rows arrive.
            for piece in data.chunks(777) {
                sink.write(piece).expect("write");
            }
            sink.finish().expect("finish");
            assert_eq!(
                std::fs::read(&path).expect("read"),
                data,
                "{len} bytes in {dir:?}"
            );
        }
    }

    #[test]
    fn direct_sink_writes_exactly_the_bytes_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        sink_roundtrip(dir.path());
        // tmpfs refuses O_DIRECT: the buffered path.
        let shm = Path::new("/dev/shm");
        if shm.is_dir()
            && let Ok(dir) = tempfile::tempdir_in(shm)
        {
            sink_roundtrip(dir.path());
        }
    }
}
