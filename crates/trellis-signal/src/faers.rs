//! FDA FAERS / legacy AERS quarterly ASCII extracts (`$`-delimited, header
//! line), plain or inside zip archives, one or many quarters.
//!
//! * DEMO gives the report id (`primaryid`, legacy `isr`), the case id
//!   (`caseid`, legacy `case`), the case version (`caseversion`; legacy files
//!   have none) and the stratum variables (sex, age, FDA receipt year).
//!   Duplicates are removed by keeping, for every case id, the version with
//!   the largest `(caseversion, fda_dt, primaryid)`.
//! * DRUG rows are kept if their role (`role_cod`: PS, SS, C, I) is selected;
//!   the drug name is the active ingredient (`prod_ai`) when present, else
//!   `drugname`, normalized by [`normalize_drug`].
//! * REAC gives the MedDRA preferred terms (`pt`), normalized by
//!   [`normalize_event`].
//! * OUTC, THER, INDI and RPSR files are recognised and not needed for the
//!   disproportionality measures.
//!
//! Lines are parsed in parallel chunks of a streaming reader; malformed lines
//! are counted and reported with file and line number (or fail in strict mode).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use hashbrown::{HashMap, HashSet};
use rayon::prelude::*;

use crate::data::{Csr, Dataset, Diagnostics, Interner, Layout, MalformedLog, sort_names};
use crate::error::{Error, Result, io_err};

/// Drug roles (`role_cod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub primary_suspect: bool,
    pub secondary_suspect: bool,
    pub concomitant: bool,
    pub interacting: bool,
}

impl Default for Roles {
    /// Suspect drugs only (PS and SS).
    fn default() -> Self {
        Roles {
            primary_suspect: true,
            secondary_suspect: true,
            concomitant: false,
            interacting: false,
        }
    }
}

impl Roles {
    /// Parses a comma-separated list of `PS`, `SS`, `C`, `I`, `suspect`, `all`.
    pub fn parse(s: &str) -> Result<Roles> {
        let mut r = Roles {
            primary_suspect: false,
            secondary_suspect: false,
            concomitant: false,
            interacting: false,
        };
        for part in s.split(',').map(|p| p.trim().to_ascii_uppercase()) {
            match part.as_str() {
                "PS" => r.primary_suspect = true,
                "SS" => r.secondary_suspect = true,
                "C" => r.concomitant = true,
                "I" => r.interacting = true,
                "SUSPECT" => {
                    r.primary_suspect = true;
                    r.secondary_suspect = true;
                }
                "ALL" => {
                    r = Roles {
                        primary_suspect: true,
                        secondary_suspect: true,
                        concomitant: true,
                        interacting: true,
                    }
                }
                "" => {}
                other => return Err(Error::Invalid(format!("unknown drug role `{other}`"))),
            }
        }
        Ok(r)
    }

    fn accepts(&self, role: &[u8]) -> bool {
        match trim(role) {
            b"PS" | b"ps" => self.primary_suspect,
            b"SS" | b"ss" => self.secondary_suspect,
            b"C" | b"c" => self.concomitant,
            b"I" | b"i" => self.interacting,
            _ => false,
        }
    }
}

/// Stratum variables available from DEMO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaersStratum {
    Sex,
    AgeGroup,
    Year,
}

impl FaersStratum {
    pub fn parse(s: &str) -> Result<FaersStratum> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sex" | "gender" => Ok(FaersStratum::Sex),
            "age" | "age_group" | "agegroup" => Ok(FaersStratum::AgeGroup),
            "year" | "report_year" => Ok(FaersStratum::Year),
            other => Err(Error::Invalid(format!(
                "unknown FAERS stratum `{other}` (use sex, age, year)"
            ))),
        }
    }
}

/// Options for [`read_faers`].
#[derive(Debug, Clone)]
pub struct FaersOptions {
    pub roles: Roles,
    pub strata: Vec<FaersStratum>,
    pub strict: bool,
    /// Prefer the active ingredient (`prod_ai`) over the verbatim drug name.
    pub prefer_active_ingredient: bool,
    /// Keep cases that the FDA's deleted-case lists (`Deleted/DELE*.txt` in a quarterly
    /// extract) withdraw. Off by default, as the FDA asks.
    pub keep_deleted: bool,
}

impl Default for FaersOptions {
    fn default() -> Self {
        FaersOptions {
            roles: Roles::default(),
            strata: Vec::new(),
            strict: false,
            prefer_active_ingredient: true,
            keep_deleted: false,
        }
    }
}

/// Drug name normalization: Unicode upper case, every character that is not
/// alphanumeric becomes a space, runs of spaces collapse, ends are trimmed.
/// `"Aspirin."`, `" ASPIRIN "` and `"aspirin"` all become `"ASPIRIN"`;
/// `"ACETAMINOPHEN\HYDROCODONE"` becomes `"ACETAMINOPHEN HYDROCODONE"`.
pub fn normalize_drug(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for ch in raw.chars() {
        if ch.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            for up in ch.to_uppercase() {
                out.push(up);
            }
        } else {
            pending_space = true;
        }
    }
    out
}

/// Event (MedDRA PT) normalization: case-folded to upper case and whitespace
/// collapsed; punctuation is kept (it is meaningful in PT names).
pub fn normalize_event(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for (i, word) in raw.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        for ch in word.chars() {
            for up in ch.to_uppercase() {
                out.push(up);
            }
        }
    }
    out
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = trim(s);
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v = 0u64;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

/// File kinds of a FAERS extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Demo,
    Drug,
    Reac,
    Other,
    /// A list of CASEIDs the FDA has withdrawn (since 2019Q1, `Deleted/DELExxQq.txt`).
    Deleted,
}

fn kind_of(name: &str) -> Option<Kind> {
    let base = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(name)
        .to_ascii_uppercase();
    if !base.ends_with(".TXT") {
        return None;
    }
    if base.starts_with("DEMO") {
        Some(Kind::Demo)
    } else if base.starts_with("DELE") {
        Some(Kind::Deleted)
    } else if base.starts_with("DRUG") {
        Some(Kind::Drug)
    } else if base.starts_with("REAC") {
        Some(Kind::Reac)
    } else if ["OUTC", "THER", "INDI", "RPSR"]
        .iter()
        .any(|p| base.starts_with(p))
    {
        Some(Kind::Other)
    } else {
        None
    }
}

/// One readable table: a plain file or an entry inside a zip archive.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Zip(PathBuf, String),
}

impl Source {
    fn display(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Zip(p, e) => format!("{}!{}", p.display(), e),
        }
    }

    fn size_hint(&self) -> u64 {
        match self {
            Source::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Source::Zip(..) => 0,
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&mut (dyn Read + Send)) -> Result<T>) -> Result<T> {
        match self {
            Source::File(p) => {
                let mut file = File::open(p).map_err(io_err(p))?;
                f(&mut file)
            }
            Source::Zip(p, entry) => {
                let file = File::open(p).map_err(io_err(p))?;
                let zerr = |source| Error::Zip {
                    path: p.clone(),
                    source,
                };
                let mut archive = zip::ZipArchive::new(file).map_err(zerr)?;
                let mut zf = archive.by_name(entry).map_err(zerr)?;
                f(&mut zf)
            }
        }
    }
}

#[derive(Debug, Default)]
struct Sources {
    demo: Vec<Source>,
    drug: Vec<Source>,
    reac: Vec<Source>,
    deleted: Vec<Source>,
    other: Vec<String>,
}

fn collect_sources(path: &Path, out: &mut Sources) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io_err(path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            collect_sources(&e, out)?;
        }
        return Ok(());
    }
    let name = path.to_string_lossy().to_string();
    if name.to_ascii_lowercase().ends_with(".zip") {
        let file = File::open(path).map_err(io_err(path))?;
        let archive = zip::ZipArchive::new(file).map_err(|source| Error::Zip {
            path: path.to_owned(),
            source,
        })?;
        let mut names: Vec<String> = archive
            .file_names()
            .map(|r| r.map(|c| c.into_owned()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|source| Error::Zip {
                path: path.to_owned(),
                source,
            })?;
        names.sort();
        for entry in names {
            push_source(kind_of(&entry), Source::Zip(path.to_owned(), entry), out);
        }
    } else {
        push_source(kind_of(&name), Source::File(path.to_owned()), out);
    }
    Ok(())
}

fn push_source(kind: Option<Kind>, src: Source, out: &mut Sources) {
    match kind {
        Some(Kind::Demo) => out.demo.push(src),
        Some(Kind::Drug) => out.drug.push(src),
        Some(Kind::Reac) => out.reac.push(src),
        Some(Kind::Other) => out.other.push(src.display()),
        Some(Kind::Deleted) => out.deleted.push(src),
        None => {}
    }
}

/// What [`stream_blocks`] hands over: the header line, or a block of
/// complete lines with the 1-based number of its first line.
enum Piece<'a> {
    Header(&'a [u8]),
    Block(&'a [u8], u64),
}

/// Streams `reader` in blocks of complete lines. A separate thread reads the
/// next block while `on_block` parses the current one (reading and parsing
/// overlap; buffers are recycled). `on_piece` receives the first line (an
/// empty slice for an empty input), then each block of complete lines, for
/// which it returns the number of lines the block held.
fn stream_blocks(
    reader: &mut (dyn Read + Send),
    block_size: usize,
    path: &str,
    progress: &indicatif::ProgressBar,
    mut on_piece: impl FnMut(Piece<'_>) -> Result<u64>,
) -> Result<()> {
    use std::sync::mpsc::sync_channel;
    type Filled = std::io::Result<(Vec<u8>, usize)>;
    let (full_tx, full_rx) = sync_channel::<Filled>(1);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut carry: Vec<u8> = Vec::new();
            let mut eof = false;
            while !eof {
                let mut buf = free_rx.try_recv().unwrap_or_default();
                let want = block_size.max(carry.len() * 2);
                if buf.len() < want {
                    buf.resize(want, 0);
                }
                buf[..carry.len()].copy_from_slice(&carry);
                let mut filled = carry.len();
                let complete = loop {
                    while filled < buf.len() {
                        match reader.read(&mut buf[filled..]) {
                            Ok(0) => {
                                eof = true;
                                break;
                            }
                            Ok(n) => {
                                filled += n;
                                progress.inc(n as u64);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                let _ = full_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    if eof {
                        break filled;
                    }
                    match memchr::memrchr(b'\n', &buf[..filled]) {
                        Some(p) => break p + 1,
                        // A line longer than the buffer: read more.
                        None => {
                            let len = buf.len();
                            buf.resize(len * 2, 0);
                        }
                    }
                };
                carry.clear();
                carry.extend_from_slice(&buf[complete..filled]);
                if full_tx.send(Ok((buf, complete))).is_err() {
                    return;
                }
            }
        });
        let mut header_done = false;
        let mut next_line = 1u64;
        for msg in full_rx {
            let (buf, complete) = msg.map_err(|source| Error::Io {
                path: path.into(),
                source,
            })?;
            let mut block = &buf[..complete];
            if !header_done {
                let nl = memchr::memchr(b'\n', block).unwrap_or(block.len());
                on_piece(Piece::Header(&block[..nl]))?;
                header_done = true;
                block = block.get(nl + 1..).unwrap_or(&[]);
                next_line = FIRST_BLOCK_LINE;
            }
            if !block.is_empty() {
                next_line += on_piece(Piece::Block(block, next_line))?;
            }
            let _ = free_tx.try_send(buf);
        }
        if !header_done {
            on_piece(Piece::Header(&[]))?;
        }
        Ok(())
    })
}

/// Splits a block of complete lines into about `parts` pieces at line ends.
fn split_block(block: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(parts);
    let target = block.len() / parts.max(1) + 1;
    let mut start = 0usize;
    while start < block.len() {
        let mut end = (start + target).min(block.len());
        if end < block.len() {
            end = match memchr::memchr(b'\n', &block[end..]) {
                Some(p) => end + p + 1,
                None => block.len(),
            };
        }
        out.push(&block[start..end]);
        start = end;
    }
    out
}

/// Iterates the lines of a piece (without `\n` and a trailing `\r`), with
/// their 0-based index in the piece; the piece's line count is the number
/// of items yielded. (The reference [`Records`] is tested against.)
#[cfg(test)]
struct Lines<'a> {
    rest: &'a [u8],
    index: u64,
}

#[cfg(test)]
impl<'a> Lines<'a> {
    fn new(piece: &'a [u8]) -> Self {
        Lines {
            rest: piece,
            index: 0,
        }
    }
}

#[cfg(test)]
impl<'a> Iterator for Lines<'a> {
    type Item = (&'a [u8], u64);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(p) => (&self.rest[..p], &self.rest[p + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        let i = self.index;
        self.index += 1;
        Some((line.strip_suffix(b"\r").unwrap_or(line), i))
    }
}

/// The high bit of every byte of `word` that is `$`, and no other bit
/// (SWAR: exact, eight bytes at a time without vector instructions).
#[cfg(test)]
fn dollar_bits(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ 0x2424_2424_2424_2424;
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Fields of a line, fast path: when the line has exactly `n` fields, fills
/// `out[..want]` with the first `want` fields and returns true. Otherwise
/// falls back to [`split_fields`] (which tolerates trailing empty fields) and
/// copies its first `want` fields; returns false if the count is wrong, with
/// the number of fields found in `found`.
#[cfg(test)]
fn leading_fields<'a>(
    line: &'a [u8],
    n: usize,
    want: usize,
    out: &mut [&'a [u8]; MAX_WANT],
    scratch: &mut Vec<&'a [u8]>,
    found: &mut usize,
) -> bool {
    // One pass over the line, eight bytes at a time: count every `$` (the
    // field count is checked for every line) and note where the first
    // `want` fields end.
    let mut ends = [0usize; MAX_WANT];
    let mut seen = 0usize;
    let mut scan = |mut m: u64, base: usize| {
        while m != 0 && seen < want {
            ends[seen] = base + (m.trailing_zeros() / 8) as usize;
            seen += 1;
            m &= m - 1;
        }
        seen += m.count_ones() as usize;
    };
    let mut words = line.chunks_exact(8);
    let mut base = 0usize;
    for word in words.by_ref() {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        scan(dollar_bits(u64::from_le_bytes(word)), base);
        base += 8;
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        scan(dollar_bits(u64::from_le_bytes(word)), base);
    }
    fields_at(line, n, want, &ends, seen, out, scratch, found)
}

/// The first `want` fields of `line`, given where its first `$`s are
/// (`ends`, relative to the line) and how many it has (`dollars`): see
/// [`leading_fields`].
#[inline]
#[allow(clippy::too_many_arguments)]
fn fields_at<'a>(
    line: &'a [u8],
    n: usize,
    want: usize,
    ends: &[usize; MAX_WANT],
    dollars: usize,
    out: &mut [&'a [u8]; MAX_WANT],
    scratch: &mut Vec<&'a [u8]>,
    found: &mut usize,
) -> bool {
    if dollars + 1 == n {
        let mut start = 0usize;
        for k in 0..want {
            let end = if k < n - 1 { ends[k] } else { line.len() };
            out[k] = &line[start..end];
            start = end + 1;
        }
        return true;
    }
    let ok = split_fields(line, n, scratch);
    *found = scratch.len();
    if ok {
        out[..want].copy_from_slice(&scratch[..want]);
    }
    ok
}

/// Bit `i` of the first mask is set where byte `i` of `chunk` is `$`, of
/// the second where it is a line feed: four 16-byte compares each.
#[inline]
fn structural_masks(chunk: &[u8; 64]) -> (u64, u64) {
    use wide::u8x16;
    let dollar = u8x16::splat(b'$');
    let newline = u8x16::splat(b'\n');
    let (mut d, mut l) = (0u64, 0u64);
    for (k, part) in chunk.chunks_exact(16).enumerate() {
        let bytes: [u8; 16] = part.try_into().unwrap_or_default();
        let v = u8x16::new(bytes);
        d |= u64::from(v.simd_eq(dollar).to_bitmask()) << (16 * k);
        l |= u64::from(v.simd_eq(newline).to_bitmask()) << (16 * k);
    }
    (d, l)
}

/// The lines of a piece with the positions of their first `$`s and their
/// `$` count, found in one pass that classifies 64 bytes at a time into
/// bit masks (the line ends and the field separators together; finding
/// each line end and then scanning the line again for separators cost
/// more than a third of the reading time at 25M reports).
struct Records<'a> {
    piece: &'a [u8],
    /// Offset of the 64-byte chunk the masks describe.
    base: usize,
    /// `$` and line-feed bits of that chunk not yet consumed.
    dollars: u64,
    newlines: u64,
    /// Offset of the next line.
    start: usize,
    /// 0-based index of the next line (the piece's line count at the end).
    index: u64,
}

impl<'a> Records<'a> {
    fn new(piece: &'a [u8]) -> Self {
        let mut r = Records {
            piece,
            base: 0,
            dollars: 0,
            newlines: 0,
            start: 0,
            index: 0,
        };
        r.load(0);
        r
    }

    #[inline]
    fn load(&mut self, base: usize) {
        self.base = base;
        let rest = self.piece.get(base..).unwrap_or(&[]);
        (self.dollars, self.newlines) = match rest.first_chunk::<64>() {
            Some(chunk) => structural_masks(chunk),
            None => {
                let mut padded = [0u8; 64];
                padded[..rest.len()].copy_from_slice(rest);
                structural_masks(&padded)
            }
        };
    }

    /// The next line (without its line feed and a trailing `\r`), its
    /// index and its number of `$`; `ends[..min(want, count)]` receive the
    /// positions of its first `$`s relative to the line's start.
    #[inline]
    fn next_line(
        &mut self,
        want: usize,
        ends: &mut [usize; MAX_WANT],
    ) -> Option<(&'a [u8], u64, usize)> {
        let start = self.start;
        let len = self.piece.len();
        if start >= len {
            return None;
        }
        let mut seen = 0usize;
        let end = loop {
            let base = self.base;
            let mut take = |mut m: u64| {
                while m != 0 && seen < want {
                    ends[seen] = base + m.trailing_zeros() as usize - start;
                    seen += 1;
                    m &= m - 1;
                }
                seen += m.count_ones() as usize;
            };
            if self.newlines != 0 {
                let bit = self.newlines.trailing_zeros();
                let before = (1u64 << bit) - 1;
                take(self.dollars & before);
                self.dollars &= !before;
                self.newlines &= self.newlines - 1;
                break base + bit as usize;
            }
            take(self.dollars);
            let next = base + 64;
            if next >= len {
                break len;
            }
            self.load(next);
        };
        self.start = end + 1;
        let line = &self.piece[start..end];
        let index = self.index;
        self.index += 1;
        Some((line.strip_suffix(b"\r").unwrap_or(line), index, seen))
    }
}

const MAX_WANT: usize = 32;

/// Line number of the first line of the first block (the header is line 1).
const FIRST_BLOCK_LINE: u64 = 2;

/// Rows to reserve for a whole file from its first block's density (5% to
/// spare): growing by doubling would copy the rows and fault in fresh pages
/// again.
fn rows_in_file(rows_in_block: usize, block_bytes: usize, file_bytes: u64) -> usize {
    (rows_in_block as f64 / block_bytes.max(1) as f64 * file_bytes as f64 * 1.05) as usize
}

/// Bytes read per block (parsed in parallel pieces while the next is read).
const BLOCK_SIZE: usize = 8 << 20;

/// Kept reports: their primaryids in ascending order; a report's index is
/// its rank. Lookups gallop forward from the previous hit, so files sorted
/// by primaryid (as FDA's are) are matched in one sequential sweep.
struct ReportIndex {
    pids: Vec<u64>,
}

impl ReportIndex {
    #[inline]
    fn find(&self, pid: u64, cur: &mut usize) -> Option<u32> {
        let v = &self.pids;
        let pos = if *cur < v.len() && v[*cur] <= pid {
            let base = *cur;
            let mut step = 1usize;
            while base + step < v.len() && v[base + step] < pid {
                step *= 2;
            }
            let lo = base + step / 2;
            let hi = (base + step + 1).min(v.len());
            lo + v[lo..hi].partition_point(|&x| x < pid)
        } else {
            v.partition_point(|&x| x < pid)
        };
        *cur = pos.min(v.len().saturating_sub(1));
        (v.get(pos) == Some(&pid)).then_some(pos as u32)
    }
}

/// Column positions resolved from a header line.
#[derive(Debug, Clone, Default)]
struct Columns {
    n: usize,
    map: HashMap<String, usize>,
}

impl Columns {
    fn parse(header: &[u8]) -> Columns {
        let header = header.strip_prefix(b"\xef\xbb\xbf").unwrap_or(header);
        let text = String::from_utf8_lossy(header);
        let text = text.trim_end_matches(['\r', '\n']);
        let mut names: Vec<String> = text
            .split('$')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        while names.last().is_some_and(|s| s.is_empty()) {
            names.pop();
        }
        let map = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Columns {
            n: names.len(),
            map,
        }
    }

    fn find(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| self.map.get(*n).copied())
    }

    fn require(&self, names: &[&str], path: &str) -> Result<usize> {
        self.find(names).ok_or_else(|| Error::Header {
            path: path.to_owned(),
            reason: format!("no column named {}", names.join(" or ")),
        })
    }
}

/// Splits one line into `$`-separated fields. Returns false if the field
/// count does not match the header (trailing empty fields are tolerated).
fn split_fields<'a>(line: &'a [u8], n: usize, fields: &mut Vec<&'a [u8]>) -> bool {
    fields.clear();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut start = 0usize;
    for pos in memchr::memchr_iter(b'$', line) {
        fields.push(&line[start..pos]);
        start = pos + 1;
    }
    fields.push(&line[start..]);
    while fields.len() > n && fields.last().is_some_and(|f| trim(f).is_empty()) {
        fields.pop();
    }
    fields.len() == n
}

/// Per-piece malformed lines: `(0-based line index in the piece, reason)`.
type Bad = Vec<(u64, String)>;

/// Parses the pieces of a block in parallel and returns each piece's result
/// with the 1-based number of its first line, in order.
fn parse_pieces<T: Send>(
    block: &[u8],
    first_line: u64,
    parse: impl Fn(&[u8]) -> (T, u64) + Sync,
) -> (Vec<(T, u64)>, u64) {
    let pieces = split_block(block, rayon::current_num_threads() * 4);
    let parsed: Vec<(T, u64)> = pieces.par_iter().map(|p| parse(p)).collect();
    let mut line = first_line;
    let mut out = Vec::with_capacity(parsed.len());
    for (t, n) in parsed {
        out.push((t, line));
        line += n;
    }
    (out, line - first_line)
}

fn field_count_reason(n: usize, found: usize) -> String {
    format!("expected {n} `$`-separated fields, found {found}")
}

#[derive(Debug, Clone, Copy)]
struct DemoRow {
    caseid: u64,
    primaryid: u64,
    caseversion: u32,
    fda_dt: u32,
    sex: u8,
    age: u8,
    year: u16,
}

const SEX_LABELS: [&str; 3] = ["UNK", "F", "M"];
const AGE_LABELS: [&str; 6] = ["UNK", "0-17", "18-44", "45-64", "65-74", "75+"];

fn age_group(age: &[u8], unit: &[u8]) -> u8 {
    let age = trim(age);
    let v = match parse_u64(age) {
        Some(v) if v < 1_000_000 => v as f64,
        _ => {
            let Ok(text) = std::str::from_utf8(age) else {
                return 0;
            };
            let Ok(v) = text.parse::<f64>() else {
                return 0;
            };
            v
        }
    };
    let unit = trim(unit);
    let is = |u: &[u8]| unit.eq_ignore_ascii_case(u);
    let years = if is(b"YR") || is(b"Y") || unit.is_empty() {
        v
    } else if is(b"DEC") {
        v * 10.0
    } else if is(b"MON") || is(b"M") {
        v / 12.0
    } else if is(b"WK") || is(b"W") {
        v / 52.1775
    } else if is(b"DY") || is(b"D") {
        v / 365.25
    } else if is(b"HR") || is(b"H") {
        v / 8766.0
    } else {
        return 0;
    };
    if !(0.0..150.0).contains(&years) {
        0
    } else if years < 18.0 {
        1
    } else if years < 45.0 {
        2
    } else if years < 65.0 {
        3
    } else if years < 75.0 {
        4
    } else {
        5
    }
}

/// Positions of the DEMO columns used (`usize::MAX` = absent).
#[derive(Debug, Clone, Copy, Default)]
struct DemoCols {
    primaryid: usize,
    caseid: usize,
    caseversion: usize,
    fda_dt: usize,
    sex: usize,
    age: usize,
    age_cod: usize,
}

/// Splits `piece` into rows of `n` fields: calls `row(line index, fields,
/// bad)` with the first `want` fields of every non-blank line that has `n`
/// fields, records every other non-blank line in `bad`, and returns the
/// piece's line count.
#[inline]
fn for_each_row<'a>(
    piece: &'a [u8],
    n: usize,
    want: usize,
    bad: &mut Bad,
    mut row: impl FnMut(u64, &[&'a [u8]; MAX_WANT], &mut Bad),
) -> u64 {
    let mut f: [&[u8]; MAX_WANT] = [&[]; MAX_WANT];
    let mut scratch = Vec::with_capacity(n + 2);
    let mut lines = Records::new(piece);
    let mut ends = [0usize; MAX_WANT];
    while let Some((line, no, dollars)) = lines.next_line(want, &mut ends) {
        if trim(line).is_empty() {
            continue;
        }
        let mut found = 0;
        if fields_at(
            line,
            n,
            want,
            &ends,
            dollars,
            &mut f,
            &mut scratch,
            &mut found,
        ) {
            row(no, &f, bad);
        } else {
            bad.push((no, field_count_reason(n, found)));
        }
    }
    lines.index
}

fn parse_demo_piece(
    piece: &[u8],
    n: usize,
    c: &DemoCols,
    age_needed: bool,
) -> ((Vec<DemoRow>, Bad), u64) {
    let mut out = Vec::with_capacity(piece.len() / 80);
    let mut bad = Bad::new();
    let want = [
        c.primaryid,
        c.caseid,
        c.caseversion,
        c.fda_dt,
        c.sex,
        c.age,
        c.age_cod,
    ]
    .into_iter()
    .filter(|&i| i != usize::MAX)
    .max()
    .map_or(0, |m| m + 1);
    let lines = for_each_row(piece, n, want, &mut bad, |no, f, bad| {
        let get = |i: usize| if i == usize::MAX { &b""[..] } else { f[i] };
        let (Some(primaryid), Some(caseid)) =
            (parse_u64(get(c.primaryid)), parse_u64(get(c.caseid)))
        else {
            bad.push((no, "non-numeric primaryid/caseid".into()));
            return;
        };
        let caseversion = parse_u64(get(c.caseversion)).unwrap_or(0) as u32;
        let fda_dt = parse_u64(get(c.fda_dt)).unwrap_or(0) as u32;
        let sex = match trim(get(c.sex)) {
            b"F" | b"f" => 1,
            b"M" | b"m" => 2,
            _ => 0,
        };
        let age = if age_needed {
            age_group(get(c.age), get(c.age_cod))
        } else {
            0
        };
        let year = if (1_000_000..100_000_000).contains(&fda_dt) {
            (fda_dt / 10_000) as u16
        } else {
            0
        };
        out.push(DemoRow {
            caseid,
            primaryid,
            caseversion,
            fda_dt,
            sex,
            age,
            year,
        });
    });
    ((out, bad), lines)
}

fn read_demo(
    src: &Source,
    age_needed: bool,
    log: &mut MalformedLog,
    rows: &mut Vec<DemoRow>,
    progress: &indicatif::ProgressBar,
) -> Result<()> {
    let path = src.display();
    let mut n = 0usize;
    let mut c = DemoCols::default();
    let mut legacy = false;
    src.with_reader(|r| {
        stream_blocks(r, BLOCK_SIZE, &path, progress, |piece| match piece {
            Piece::Header(h) => {
                let cols = Columns::parse(h);
                n = cols.n;
                let opt = |names: &[&str]| cols.find(names).unwrap_or(usize::MAX);
                c = DemoCols {
                    primaryid: cols.require(&["primaryid", "isr"], &path)?,
                    caseid: cols.require(&["caseid", "case"], &path)?,
                    caseversion: opt(&["caseversion"]),
                    fda_dt: opt(&["fda_dt"]),
                    sex: opt(&["sex", "gndr_cod"]),
                    age: opt(&["age"]),
                    age_cod: opt(&["age_cod"]),
                };
                legacy = c.caseversion == usize::MAX;
                let max = [c.primaryid, c.caseid, c.caseversion, c.fda_dt, c.sex, c.age]
                    .into_iter()
                    .chain([c.age_cod])
                    .filter(|&i| i != usize::MAX)
                    .max()
                    .unwrap_or(0);
                if max >= MAX_WANT {
                    return Err(Error::Header {
                        path: path.clone(),
                        reason: format!("column {} is beyond the {MAX_WANT}th", max + 1),
                    });
                }
                Ok(0)
            }
            Piece::Block(block, first) => {
                let (parts, lines) =
                    parse_pieces(block, first, |p| parse_demo_piece(p, n, &c, age_needed));
                if first == FIRST_BLOCK_LINE {
                    let got = parts.iter().map(|((out, _), _)| out.len()).sum();
                    rows.reserve(rows_in_file(got, block.len(), src.size_hint()));
                }
                for ((out, bad), line0) in parts {
                    for (i, reason) in bad {
                        log.record(&path, line0 + i, reason)?;
                    }
                    log.diagnostics.lines_read += out.len() as u64;
                    rows.extend_from_slice(&out);
                }
                Ok(lines)
            }
        })
    })?;
    if legacy {
        log.diagnostics
            .notes
            .push(format!("{path}: legacy AERS layout (no caseversion)"));
    }
    Ok(())
}

/// Marks an id in [`NamedRows::ids`] as an index into the piece's own
/// `names` (a name not yet known when the block was parsed).
const LOCAL: u32 = 1 << 31;

/// Rows `(report index, name id)` of a piece: the global id of a name known
/// before the block, or `LOCAL |` an index into `names` for a new one.
struct NamedRows {
    reports: Vec<u32>,
    ids: Vec<u32>,
    names: Vec<Vec<u8>>,
    skipped_role: u64,
    unknown_report: u64,
    bad: Bad,
}

/// Column positions of a DRUG or REAC file.
#[derive(Debug, Clone, Copy)]
struct NamedCols {
    n: usize,
    id: usize,
    role: usize,
    name: usize,
    ai: usize,
}

fn parse_named_piece(
    piece: &[u8],
    drug: bool,
    c: &NamedCols,
    roles: &Roles,
    index: &ReportIndex,
    known: &HashMap<Vec<u8>, u32>,
) -> (NamedRows, u64) {
    let n = c.n;
    let mut res = NamedRows {
        reports: Vec::with_capacity(piece.len() / 48),
        ids: Vec::with_capacity(piece.len() / 48),
        names: Vec::new(),
        skipped_role: 0,
        unknown_report: 0,
        bad: Bad::new(),
    };
    let want = [c.id, c.role, c.name, c.ai]
        .into_iter()
        .filter(|&i| i != usize::MAX)
        .max()
        .map_or(0, |m| m + 1);
    let mut local_map: HashMap<&[u8], u32> = HashMap::new();
    let mut last_id = u64::MAX;
    let mut last_report: Option<u32> = None;
    let mut cursor = 0usize;
    let mut bad = Bad::new();
    let lines = for_each_row(piece, n, want, &mut bad, |no, f, bad| {
        let Some(pid) = parse_u64(f[c.id]) else {
            bad.push((no, "non-numeric primaryid".into()));
            return;
        };
        if drug && !roles.accepts(f[c.role]) {
            res.skipped_role += 1;
            return;
        }
        let mut name = trim(f[c.name]);
        if c.ai != usize::MAX {
            let ai = trim(f[c.ai]);
            if !ai.is_empty() {
                name = ai;
            }
        }
        if name.is_empty() {
            bad.push((no, if drug { "empty drug name" } else { "empty pt" }.into()));
            return;
        }
        if pid != last_id {
            last_id = pid;
            last_report = index.find(pid, &mut cursor);
        }
        let Some(rep) = last_report else {
            res.unknown_report += 1;
            return;
        };
        let id = match known.get(name) {
            Some(&id) => id,
            None => {
                let next = LOCAL | res.names.len() as u32;
                *local_map.entry(name).or_insert_with(|| {
                    res.names.push(name.to_vec());
                    next
                })
            }
        };
        res.reports.push(rep);
        res.ids.push(id);
    });
    res.bad = bad;
    (res, lines)
}

/// Reads DRUG (`drug = true`) or REAC rows into `(report, id)` vectors.
#[allow(clippy::too_many_arguments)]
fn read_named(
    src: &Source,
    drug: bool,
    opts: &FaersOptions,
    index: &ReportIndex,
    interner: &mut Interner,
    raw_to_id: &mut HashMap<Vec<u8>, u32>,
    out_reports: &mut Vec<u32>,
    out_ids: &mut Vec<u32>,
    log: &mut MalformedLog,
    counters: &mut (u64, u64),
    progress: &indicatif::ProgressBar,
) -> Result<()> {
    let path = src.display();
    let mut c = NamedCols {
        n: 0,
        id: 0,
        role: usize::MAX,
        name: 0,
        ai: usize::MAX,
    };
    src.with_reader(|r| {
        stream_blocks(r, BLOCK_SIZE, &path, progress, |piece| match piece {
            Piece::Header(h) => {
                let cols = Columns::parse(h);
                c.n = cols.n;
                c.id = cols.require(&["primaryid", "isr"], &path)?;
                if drug {
                    c.role = cols.require(&["role_cod"], &path)?;
                    c.name = cols.require(&["drugname"], &path)?;
                    if opts.prefer_active_ingredient {
                        c.ai = cols.find(&["prod_ai"]).unwrap_or(usize::MAX);
                    }
                } else {
                    c.name = cols.require(&["pt"], &path)?;
                }
                let max = [c.id, c.role, c.name, c.ai]
                    .into_iter()
                    .filter(|&i| i != usize::MAX)
                    .max()
                    .unwrap_or(0);
                if max >= MAX_WANT {
                    return Err(Error::Header {
                        path: path.clone(),
                        reason: format!("column {} is beyond the {MAX_WANT}th", max + 1),
                    });
                }
                Ok(0)
            }
            Piece::Block(block, first) => {
                let known = &*raw_to_id;
                let (parts, lines) = parse_pieces(block, first, |p| {
                    parse_named_piece(p, drug, &c, &opts.roles, index, known)
                });
                if first == FIRST_BLOCK_LINE {
                    let got = parts.iter().map(|(r, _)| r.reports.len()).sum();
                    let estimate = rows_in_file(got, block.len(), src.size_hint());
                    out_reports.reserve(estimate);
                    out_ids.reserve(estimate);
                }
                for (res, line0) in parts {
                    for (i, reason) in res.bad {
                        log.record(&path, line0 + i, reason)?;
                    }
                    counters.0 += res.skipped_role;
                    counters.1 += res.unknown_report;
                    log.diagnostics.lines_read += res.reports.len() as u64;
                    let map: Vec<u32> = res
                        .names
                        .into_iter()
                        .map(|raw| {
                            if let Some(&id) = raw_to_id.get(&raw) {
                                return id;
                            }
                            let text = String::from_utf8_lossy(&raw);
                            let norm = if drug {
                                normalize_drug(&text)
                            } else {
                                normalize_event(&text)
                            };
                            let norm = if norm.is_empty() {
                                text.trim().to_owned()
                            } else {
                                norm
                            };
                            let id = interner.intern(&norm);
                            raw_to_id.insert(raw, id);
                            id
                        })
                        .collect();
                    out_reports.extend_from_slice(&res.reports);
                    out_ids.extend(res.ids.iter().map(|&id| {
                        if id & LOCAL == 0 {
                            id
                        } else {
                            map[(id & !LOCAL) as usize]
                        }
                    }));
                }
                Ok(lines)
            }
        })
    })
}

/// Reads one or many FAERS/AERS quarters (directories, files or zips).
/// Reads a deleted-case list: one CASEID per line (the first `$`-field if a line has
/// several); a first line that is not a number is a header. Other lines that are not a
/// CASEID are malformed.
fn read_deleted(src: &Source, log: &mut MalformedLog, out: &mut HashSet<u64>) -> Result<()> {
    let path = src.display();
    let mut text = Vec::new();
    src.with_reader(|r| {
        r.read_to_end(&mut text)
            .map_err(|e| Error::Invalid(format!("{path}: {e}")))
    })?;
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let field = line.split(|&b| b == b'$').next().unwrap_or_default();
        if trim(field).is_empty() {
            continue;
        }
        match parse_u64(field) {
            Some(caseid) => {
                out.insert(caseid);
            }
            None if i == 0 => {}
            None => log.record(
                &path,
                i as u64 + 1,
                "a deleted-case list line that is not a CASEID",
            )?,
        }
    }
    Ok(())
}

pub fn read_faers(paths: &[PathBuf], opts: &FaersOptions, show_progress: bool) -> Result<Dataset> {
    let mut sources = Sources::default();
    for p in paths {
        collect_sources(p, &mut sources)?;
    }
    if sources.demo.is_empty() || sources.drug.is_empty() || sources.reac.is_empty() {
        return Err(Error::Invalid(format!(
            "FAERS input needs DEMO, DRUG and REAC files; found {} DEMO, {} DRUG, {} REAC under {:?}",
            sources.demo.len(),
            sources.drug.len(),
            sources.reac.len(),
            paths
        )));
    }
    let all: Vec<&Source> = sources
        .demo
        .iter()
        .chain(&sources.drug)
        .chain(&sources.reac)
        .collect();
    let total: u64 = all.iter().map(|s| s.size_hint()).sum();
    let progress = crate::pipeline::bytes_bar(show_progress, total, "reading FAERS");
    let mut log = MalformedLog::new(opts.strict);
    log.diagnostics.files = all.iter().map(|s| s.display()).collect();

    // Cases the FDA has withdrawn, in any quarter given: dropped with all their versions.
    let mut deleted = HashSet::new();
    if !opts.keep_deleted {
        for src in &sources.deleted {
            read_deleted(src, &mut log, &mut deleted)?;
        }
    }

    // DEMO and deduplication.
    let mut demo = Vec::new();
    let age_needed = opts.strata.contains(&FaersStratum::AgeGroup);
    for src in &sources.demo {
        read_demo(src, age_needed, &mut log, &mut demo, &progress)?;
    }
    let demo_rows = demo.len();
    let key = |r: &DemoRow| (r.caseid, r.caseversion, r.fda_dt, r.primaryid);
    if !demo.is_sorted_by_key(key) {
        demo.par_sort_unstable_by_key(key);
    }
    // The latest version of each case, compacted in place (no second copy
    // of a table with one row per case version).
    let mut kept_len = 0usize;
    let mut deleted_cases = 0usize;
    for i in 0..demo.len() {
        let row = demo[i];
        if demo.get(i + 1).is_none_or(|next| next.caseid != row.caseid) {
            if deleted.contains(&row.caseid) {
                deleted_cases += 1;
            } else {
                demo[kept_len] = row;
                kept_len += 1;
            }
        }
    }
    demo.truncate(kept_len);
    let mut kept = demo;
    // Reports are numbered in primaryid order (see `ReportIndex`).
    if !kept.is_sorted_by_key(|r| r.primaryid) {
        kept.par_sort_unstable_by_key(|r| r.primaryid);
    }
    let index = ReportIndex {
        pids: kept.iter().map(|r| r.primaryid).collect(),
    };
    // Strata are interned once per distinct (sex, age group, year), not once per report.
    let mut strata = Interner::new();
    let mut by_code: HashMap<u32, u32> = HashMap::new();
    let mut label = String::new();
    let mut report_stratum: Vec<u32> = kept
        .iter()
        .map(|row| {
            let code =
                (u32::from(row.sex) << 24) | (u32::from(row.age) << 16) | u32::from(row.year);
            *by_code.entry(code).or_insert_with(|| {
                label.clear();
                for (k, s) in opts.strata.iter().enumerate() {
                    if k > 0 {
                        label.push('-');
                    }
                    match s {
                        FaersStratum::Sex => label.push_str(SEX_LABELS[row.sex as usize]),
                        FaersStratum::AgeGroup => label.push_str(AGE_LABELS[row.age as usize]),
                        FaersStratum::Year => {
                            if row.year == 0 {
                                label.push_str("UNK");
                            } else {
                                label.push_str(&row.year.to_string());
                            }
                        }
                    }
                }
                strata.intern(&label)
            })
        })
        .collect();
    let n_reports = kept.len();
    drop(kept);

    let mut drug_names = Interner::new();
    let mut event_names = Interner::new();
    let (mut drep, mut dids) = (Vec::new(), Vec::new());
    let (mut erep, mut eids) = (Vec::new(), Vec::new());
    let mut drug_counters = (0u64, 0u64);
    let mut reac_counters = (0u64, 0u64);
    let mut raw = HashMap::new();
    for src in &sources.drug {
        read_named(
            src,
            true,
            opts,
            &index,
            &mut drug_names,
            &mut raw,
            &mut drep,
            &mut dids,
            &mut log,
            &mut drug_counters,
            &progress,
        )?;
    }
    let mut raw = HashMap::new();
    for src in &sources.reac {
        read_named(
            src,
            false,
            opts,
            &index,
            &mut event_names,
            &mut raw,
            &mut erep,
            &mut eids,
            &mut log,
            &mut reac_counters,
            &progress,
        )?;
    }
    drop(index);
    progress.finish_and_clear();
    // Ids in name order (the canonical numbering, see `Dataset::canonicalize`).
    let (dmap, drug_names) = sort_names(drug_names.into_names());
    let (emap, event_names) = sort_names(event_names.into_names());
    let (smap, stratum_labels) = sort_names(strata.into_names());
    dids.par_iter_mut().for_each(|x| *x = dmap[*x as usize]);
    eids.par_iter_mut().for_each(|x| *x = emap[*x as usize]);
    report_stratum
        .par_iter_mut()
        .for_each(|x| *x = smap[*x as usize]);
    let (drugs, events) = rayon::join(
        || Csr::from_rows(n_reports, &drep, dids),
        || Csr::from_rows(n_reports, &erep, eids),
    );
    drop((drep, erep));

    let mut diagnostics: Diagnostics = log.diagnostics;
    diagnostics.notes.push(format!(
        "DEMO rows {demo_rows}, cases kept after keeping the latest version of each CASEID {n_reports} ({} older versions dropped)",
        demo_rows - n_reports - deleted_cases
    ));
    if !sources.deleted.is_empty() {
        diagnostics.notes.push(if opts.keep_deleted {
            format!(
                "{} deleted-case list(s) found and not applied (--keep-deleted)",
                sources.deleted.len()
            )
        } else {
            format!(
                "{deleted_cases} cases dropped as deleted by the FDA ({} CASEIDs on {} deleted-case list(s))",
                deleted.len(),
                sources.deleted.len()
            )
        });
    }
    diagnostics.notes.push(format!(
        "DRUG rows skipped by role filter {}, DRUG rows of dropped versions {}, REAC rows of dropped versions {}",
        drug_counters.0, drug_counters.1, reac_counters.1
    ));
    if !sources.other.is_empty() {
        diagnostics.notes.push(format!(
            "{} OUTC/THER/INDI/RPSR tables recognised and not used by the measures",
            sources.other.len()
        ));
    }
    Ok(Dataset {
        drug_names,
        event_names,
        n_reports,
        report_stratum,
        stratum_labels,
        layout: Layout::CrossProduct { drugs, events },
        diagnostics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drug_normalization() {
        assert_eq!(normalize_drug(" Aspirin. "), "ASPIRIN");
        assert_eq!(normalize_drug("aspirin"), "ASPIRIN");
        assert_eq!(
            normalize_drug("ACETAMINOPHEN\\HYDROCODONE"),
            "ACETAMINOPHEN HYDROCODONE"
        );
        assert_eq!(normalize_drug("Humira  (adalimumab)"), "HUMIRA ADALIMUMAB");
        assert_eq!(
            normalize_event("  Nausea   and vomiting "),
            "NAUSEA AND VOMITING"
        );
    }

    #[test]
    fn field_splitting_tolerates_trailing_dollar() {
        let mut f = Vec::new();
        assert!(split_fields(b"1$2$3$\r", 3, &mut f));
        assert_eq!(f, vec![&b"1"[..], b"2", b"3"]);
        assert!(!split_fields(b"1$2", 3, &mut f));
    }

    #[test]
    fn roles_parse() {
        let r = Roles::parse("PS,c").expect("roles");
        assert!(r.primary_suspect && r.concomitant && !r.secondary_suspect && !r.interacting);
        assert!(Roles::parse("XX").is_err());
    }

    #[test]
    fn age_groups() {
        assert_eq!(age_group(b"70", b"YR"), 4);
        assert_eq!(age_group(b"6", b"DEC"), 3);
        assert_eq!(age_group(b"30", b"MON"), 1);
        assert_eq!(age_group(b"", b""), 0);
    }

    #[test]
    fn block_splitting_keeps_line_numbers() {
        let block = b"a\nb\r\nc\nd\n";
        let (parts, lines) = parse_pieces(block, 10, |piece| {
            let mut it = Lines::new(piece);
            let seen: Vec<(Vec<u8>, u64)> = it.by_ref().map(|(l, i)| (l.to_vec(), i)).collect();
            (seen, it.index)
        });
        assert_eq!(lines, 4);
        let mut seen = Vec::new();
        for (v, first) in parts {
            for (l, i) in v {
                seen.push((l, first + i));
            }
        }
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), 10),
                (b"b".to_vec(), 11),
                (b"c".to_vec(), 12),
                (b"d".to_vec(), 13)
            ]
        );
    }

    #[test]
    fn leading_fields_fast_and_fallback() {
        let mut f: [&[u8]; MAX_WANT] = [&[]; MAX_WANT];
        let mut scratch = Vec::new();
        let mut found = 0;
        assert!(leading_fields(
            b"1$2$3",
            3,
            2,
            &mut f,
            &mut scratch,
            &mut found
        ));
        assert_eq!(&f[..2], &[&b"1"[..], b"2"]);
        assert!(leading_fields(
            b"1$2$3$ ",
            3,
            3,
            &mut f,
            &mut scratch,
            &mut found
        ));
        assert_eq!(&f[..3], &[&b"1"[..], b"2", b"3"]);
        assert!(!leading_fields(
            b"1$2",
            3,
            1,
            &mut f,
            &mut scratch,
            &mut found
        ));
        assert_eq!(found, 2);
        // Lines longer than one 64-byte chunk, with separators on chunk edges.
        for len in [63usize, 64, 65, 127, 128, 129, 600] {
            let line: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 3 == 2 || i == 63 || i == 64 {
                        b'$'
                    } else {
                        b'a' + (i % 26) as u8
                    }
                })
                .collect();
            let n = line.iter().filter(|&&b| b == b'$').count() + 1;
            let mut expect = Vec::new();
            assert!(split_fields(&line, n, &mut expect));
            let want = n.min(MAX_WANT);
            let (mut f, mut scratch, mut found) = ([&[][..]; MAX_WANT], Vec::new(), 0);
            assert!(leading_fields(
                &line,
                n,
                want,
                &mut f,
                &mut scratch,
                &mut found
            ));
            assert_eq!(&f[..want], &expect[..want], "line of {len} bytes");
            assert!(!leading_fields(
                &line,
                n + 1,
                want,
                &mut f,
                &mut scratch,
                &mut found
            ));
            assert_eq!(found, n);
        }
    }

    /// Lines and fields of a piece as the two-pass reference finds them.
    /// What a piece yields: its line count, and per non-blank line its
    /// index with either its first `want` fields or the malformed-line reason.
    type Rows = (u64, Vec<(u64, std::result::Result<Vec<Vec<u8>>, String>)>);

    /// The two-pass reference: lines first, then fields.
    fn reference_records(piece: &[u8], n: usize, want: usize) -> Rows {
        let mut out = Vec::new();
        let mut lines = Lines::new(piece);
        for (line, i) in lines.by_ref() {
            if trim(line).is_empty() {
                continue;
            }
            let (mut f, mut scratch, mut found) = ([&[][..]; MAX_WANT], Vec::new(), 0);
            let row = if leading_fields(line, n, want, &mut f, &mut scratch, &mut found) {
                Ok(f[..want].iter().map(|x| x.to_vec()).collect())
            } else {
                Err(field_count_reason(n, found))
            };
            out.push((i, row));
        }
        (lines.index, out)
    }

    /// The reader's own row loop.
    fn scanned_records(piece: &[u8], n: usize, want: usize) -> Rows {
        let mut rows = Vec::new();
        let mut bad = Bad::new();
        let count = for_each_row(piece, n, want, &mut bad, |i, f, _| {
            rows.push((i, Ok(f[..want].iter().map(|x| x.to_vec()).collect())));
        });
        rows.extend(bad.into_iter().map(|(i, reason)| (i, Err(reason))));
        rows.sort_by_key(|(i, _)| *i);
        (count, rows)
    }

    mod scanner {
        use super::*;
        use proptest::prelude::*;
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            /// The one-pass scanner finds the same lines, line numbers and
            /// fields as splitting lines and then fields, for pieces of any
            /// length (64-byte chunk edges, CRLF, blank lines, wrong field
            /// counts, a last line without a line feed).
            #[test]
            fn records_match_the_two_pass_reference(
                bytes in proptest::collection::vec(
                    prop_oneof![
                        6 => b'a'..=b'e',
                        3 => Just(b'$'),
                        1 => Just(b'\n'),
                        1 => Just(b'\r'),
                    ],
                    0..400,
                ),
                n in 1usize..8,
                want_less in 0usize..3,
            ) {
                let want = n.saturating_sub(want_less).max(1);
                prop_assert_eq!(
                    scanned_records(&bytes, n, want),
                    reference_records(&bytes, n, want)
                );
            }
        }
    }

    #[test]
    fn records_on_chunk_edges() {
        let mut piece = Vec::new();
        for len in [1usize, 62, 63, 64, 65, 127, 128, 200] {
            let line: Vec<u8> = (0..len)
                .map(|i| if i % 5 == 4 { b'$' } else { b'x' })
                .collect();
            piece.extend_from_slice(&line);
            piece.push(b'\n');
        }
        piece.extend_from_slice(b"1$2$3");
        for n in [1usize, 3, 13, 40] {
            let want = n.min(MAX_WANT);
            assert_eq!(
                scanned_records(&piece, n, want),
                reference_records(&piece, n, want)
            );
        }
    }

    #[test]
    fn report_index_gallops_and_searches() {
        let index = ReportIndex {
            pids: vec![3, 5, 8, 13, 21, 34, 55, 89],
        };
        let mut cur = 0;
        for (k, &p) in index.pids.iter().enumerate() {
            assert_eq!(index.find(p, &mut cur), Some(k as u32));
        }
        assert_eq!(index.find(4, &mut cur), None);
        assert_eq!(index.find(89, &mut cur), Some(7));
        assert_eq!(index.find(90, &mut cur), None);
        assert_eq!(index.find(1, &mut cur), None);
        assert_eq!(index.find(34, &mut cur), Some(5));
        assert_eq!(index.find(2, &mut cur), None);
    }
}
