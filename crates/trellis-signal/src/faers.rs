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

use hashbrown::HashMap;
use rayon::prelude::*;

use crate::data::{Csr, Dataset, Diagnostics, Interner, Layout, MalformedLog};
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
}

impl Default for FaersOptions {
    fn default() -> Self {
        FaersOptions {
            roles: Roles::default(),
            strata: Vec::new(),
            strict: false,
            prefer_active_ingredient: true,
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

    fn with_reader<T>(&self, f: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
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
        None => {}
    }
}

/// Streams `reader` in blocks of complete lines. `on_header` receives the
/// first line; `on_block` receives each block of complete lines together
/// with the 1-based line number of its first line.
enum Piece<'a> {
    Header(&'a [u8]),
    Block(&'a [u8], u64),
}

fn stream_lines(
    reader: &mut dyn Read,
    block_size: usize,
    mut on_piece: impl FnMut(Piece<'_>) -> Result<()>,
    mut on_bytes: impl FnMut(u64),
    path: &str,
) -> Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(block_size + (1 << 16));
    let mut header_done = false;
    let mut next_line = 1u64;
    let mut eof = false;
    while !eof {
        // Fill the buffer up to block_size.
        while buf.len() < block_size {
            let old = buf.len();
            buf.resize(block_size, 0);
            let n = loop {
                match reader.read(&mut buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(Error::Io {
                            path: path.into(),
                            source: e,
                        });
                    }
                }
            };
            buf.truncate(old + n);
            on_bytes(n as u64);
            if n == 0 {
                eof = true;
                break;
            }
        }
        let mut start = 0usize;
        if !header_done {
            let Some(nl) = memchr::memchr(b'\n', &buf) else {
                if eof {
                    on_piece(Piece::Header(&buf))?;
                    return Ok(());
                }
                eof = grow(&mut buf, reader, path, &mut on_bytes)?;
                continue;
            };
            on_piece(Piece::Header(&buf[..nl]))?;
            header_done = true;
            start = nl + 1;
            next_line = 2;
        }
        let end = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf[start..]) {
                Some(p) => start + p + 1,
                None => start, // a single line longer than the block: read more
            }
        };
        if end > start {
            let block = &buf[start..end];
            on_piece(Piece::Block(block, next_line))?;
            next_line += memchr::memchr_iter(b'\n', block).count() as u64;
        } else if !eof && start == 0 {
            // A line longer than the block: read more.
            eof = grow(&mut buf, reader, path, &mut on_bytes)?;
            continue;
        }
        buf.drain(..end);
    }
    if !buf.is_empty() {
        on_piece(Piece::Block(&buf, next_line))?;
    }
    Ok(())
}

/// Doubles the buffer and reads into the new half; returns true at EOF.
fn grow(
    buf: &mut Vec<u8>,
    reader: &mut dyn Read,
    path: &str,
    on_bytes: &mut impl FnMut(u64),
) -> Result<bool> {
    let old = buf.len();
    buf.resize(old.max(1 << 16) * 2, 0);
    let n = loop {
        match reader.read(&mut buf[old..]) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Io {
                    path: path.into(),
                    source: e,
                });
            }
        }
    };
    buf.truncate(old + n);
    on_bytes(n as u64);
    Ok(n == 0)
}

/// Splits a block of complete lines into about `parts` pieces at line ends,
/// returning `(piece, first line number)`.
fn split_block(block: &[u8], first_line: u64, parts: usize) -> Vec<(&[u8], u64)> {
    let mut out = Vec::with_capacity(parts);
    let target = block.len() / parts.max(1) + 1;
    let mut start = 0usize;
    let mut line = first_line;
    while start < block.len() {
        let mut end = (start + target).min(block.len());
        if end < block.len() {
            end = match memchr::memchr(b'\n', &block[end..]) {
                Some(p) => end + p + 1,
                None => block.len(),
            };
        }
        let piece = &block[start..end];
        out.push((piece, line));
        line += memchr::memchr_iter(b'\n', piece).count() as u64;
        start = end;
    }
    out
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

/// Per-piece malformed lines: `(line number, reason)`.
type Bad = Vec<(u64, String)>;

fn lines(piece: &[u8], first_line: u64) -> impl Iterator<Item = (&[u8], u64)> {
    piece.split(|&b| b == b'\n').zip(first_line..)
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
    let Ok(text) = std::str::from_utf8(trim(age)) else {
        return 0;
    };
    let Ok(v) = text.parse::<f64>() else {
        return 0;
    };
    let years = match trim(unit).to_ascii_uppercase().as_slice() {
        b"YR" | b"Y" | b"" => v,
        b"DEC" => v * 10.0,
        b"MON" | b"M" => v / 12.0,
        b"WK" | b"W" => v / 52.1775,
        b"DY" | b"D" => v / 365.25,
        b"HR" | b"H" => v / 8766.0,
        _ => return 0,
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

fn read_demo(
    src: &Source,
    log: &mut MalformedLog,
    rows: &mut Vec<DemoRow>,
    progress: &indicatif::ProgressBar,
) -> Result<()> {
    let path = src.display();
    let mut cols = Columns::default();
    let mut idx = [0usize; 8];
    let mut legacy = false;
    src.with_reader(|r| {
        stream_lines(
            r,
            16 << 20,
            |piece| match piece {
                Piece::Header(h) => {
                    cols = Columns::parse(h);
                    idx[0] = cols.require(&["primaryid", "isr"], &path)?;
                    idx[1] = cols.require(&["caseid", "case"], &path)?;
                    legacy = cols.find(&["caseversion"]).is_none();
                    idx[2] = cols.find(&["caseversion"]).unwrap_or(usize::MAX);
                    idx[3] = cols.find(&["fda_dt"]).unwrap_or(usize::MAX);
                    idx[4] = cols.find(&["sex", "gndr_cod"]).unwrap_or(usize::MAX);
                    idx[5] = cols.find(&["age"]).unwrap_or(usize::MAX);
                    idx[6] = cols.find(&["age_cod"]).unwrap_or(usize::MAX);
                    Ok(())
                }
                Piece::Block(block, first) => {
                    let pieces = split_block(block, first, rayon::current_num_threads() * 4);
                    let n = cols.n;
                    let results: Vec<(Vec<DemoRow>, Bad)> = pieces
                        .par_iter()
                        .map(|&(piece, line0)| {
                            let mut out = Vec::with_capacity(piece.len() / 80);
                            let mut bad = Bad::new();
                            let mut fields = Vec::with_capacity(n + 2);
                            for (line, no) in lines(piece, line0) {
                                if trim(line).is_empty() {
                                    continue;
                                }
                                if !split_fields(line, n, &mut fields) {
                                    bad.push((
                                        no,
                                        format!(
                                            "expected {n} `$`-separated fields, found {}",
                                            fields.len()
                                        ),
                                    ));
                                    continue;
                                }
                                let get =
                                    |i: usize| if i == usize::MAX { &b""[..] } else { fields[i] };
                                let (Some(primaryid), Some(caseid)) =
                                    (parse_u64(get(idx[0])), parse_u64(get(idx[1])))
                                else {
                                    bad.push((no, "non-numeric primaryid/caseid".into()));
                                    continue;
                                };
                                let caseversion = parse_u64(get(idx[2])).unwrap_or(0) as u32;
                                let fda_dt = parse_u64(get(idx[3])).unwrap_or(0) as u32;
                                let sex = match trim(get(idx[4])) {
                                    b"F" | b"f" => 1,
                                    b"M" | b"m" => 2,
                                    _ => 0,
                                };
                                let age = age_group(get(idx[5]), get(idx[6]));
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
                            }
                            (out, bad)
                        })
                        .collect();
                    for (out, bad) in results {
                        for (line, reason) in bad {
                            log.record(&path, line, reason)?;
                        }
                        log.diagnostics.lines_read += out.len() as u64;
                        rows.extend_from_slice(&out);
                    }
                    Ok(())
                }
            },
            |n| progress.inc(n),
            &path,
        )
    })?;
    if legacy {
        log.diagnostics
            .notes
            .push(format!("{path}: legacy AERS layout (no caseversion)"));
    }
    Ok(())
}

/// Rows `(report index, local name id)` plus the local name table of a piece.
struct NamedRows {
    reports: Vec<u32>,
    local: Vec<u32>,
    names: Vec<Vec<u8>>,
    skipped_role: u64,
    unknown_report: u64,
    bad: Bad,
}

/// Reads DRUG (`drug = true`) or REAC rows into `(report, id)` vectors.
#[allow(clippy::too_many_arguments)]
fn read_named(
    src: &Source,
    drug: bool,
    opts: &FaersOptions,
    report_of: &HashMap<u64, u32>,
    interner: &mut Interner,
    raw_to_id: &mut HashMap<Vec<u8>, u32>,
    out_reports: &mut Vec<u32>,
    out_ids: &mut Vec<u32>,
    log: &mut MalformedLog,
    counters: &mut (u64, u64),
    progress: &indicatif::ProgressBar,
) -> Result<()> {
    let path = src.display();
    let mut cols = Columns::default();
    let mut id_col = 0usize;
    let mut role_col = usize::MAX;
    let mut name_col = 0usize;
    let mut ai_col = usize::MAX;
    src.with_reader(|r| {
        stream_lines(
            r,
            16 << 20,
            |piece| match piece {
                Piece::Header(h) => {
                    cols = Columns::parse(h);
                    id_col = cols.require(&["primaryid", "isr"], &path)?;
                    if drug {
                        role_col = cols.require(&["role_cod"], &path)?;
                        name_col = cols.require(&["drugname"], &path)?;
                        if opts.prefer_active_ingredient {
                            ai_col = cols.find(&["prod_ai"]).unwrap_or(usize::MAX);
                        }
                    } else {
                        name_col = cols.require(&["pt"], &path)?;
                    }
                    Ok(())
                }
                Piece::Block(block, first) => {
                    let pieces = split_block(block, first, rayon::current_num_threads() * 4);
                    let n = cols.n;
                    let results: Vec<NamedRows> = pieces
                        .par_iter()
                        .map(|&(piece, line0)| {
                            let mut res = NamedRows {
                                reports: Vec::with_capacity(piece.len() / 40),
                                local: Vec::with_capacity(piece.len() / 40),
                                names: Vec::new(),
                                skipped_role: 0,
                                unknown_report: 0,
                                bad: Bad::new(),
                            };
                            let mut local_map: HashMap<&[u8], u32> = HashMap::new();
                            let mut fields = Vec::with_capacity(n + 2);
                            let mut last_id = u64::MAX;
                            let mut last_report: Option<u32> = None;
                            for (line, no) in lines(piece, line0) {
                                if trim(line).is_empty() {
                                    continue;
                                }
                                if !split_fields(line, n, &mut fields) {
                                    res.bad.push((
                                        no,
                                        format!(
                                            "expected {n} `$`-separated fields, found {}",
                                            fields.len()
                                        ),
                                    ));
                                    continue;
                                }
                                let Some(pid) = parse_u64(fields[id_col]) else {
                                    res.bad.push((no, "non-numeric primaryid".into()));
                                    continue;
                                };
                                if drug && !opts.roles.accepts(fields[role_col]) {
                                    res.skipped_role += 1;
                                    continue;
                                }
                                let mut name = trim(fields[name_col]);
                                if ai_col != usize::MAX {
                                    let ai = trim(fields[ai_col]);
                                    if !ai.is_empty() {
                                        name = ai;
                                    }
                                }
                                if name.is_empty() {
                                    res.bad.push((
                                        no,
                                        if drug { "empty drug name" } else { "empty pt" }.into(),
                                    ));
                                    continue;
                                }
                                if pid != last_id {
                                    last_id = pid;
                                    last_report = report_of.get(&pid).copied();
                                }
                                let Some(rep) = last_report else {
                                    res.unknown_report += 1;
                                    continue;
                                };
                                let next = res.names.len() as u32;
                                let lid = *local_map.entry(name).or_insert_with(|| {
                                    res.names.push(name.to_vec());
                                    next
                                });
                                res.reports.push(rep);
                                res.local.push(lid);
                            }
                            res
                        })
                        .collect();
                    for res in results {
                        for (line, reason) in res.bad {
                            log.record(&path, line, reason)?;
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
                        out_ids.extend(res.local.iter().map(|&l| map[l as usize]));
                    }
                    Ok(())
                }
            },
            |n| progress.inc(n),
            &path,
        )
    })
}

/// Reads one or many FAERS/AERS quarters (directories, files or zips).
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

    // DEMO and deduplication.
    let mut demo = Vec::new();
    for src in &sources.demo {
        read_demo(src, &mut log, &mut demo, &progress)?;
    }
    let demo_rows = demo.len();
    demo.par_sort_unstable_by_key(|r| (r.caseid, r.caseversion, r.fda_dt, r.primaryid));
    let mut kept: Vec<DemoRow> = Vec::with_capacity(demo.len());
    for (i, row) in demo.iter().enumerate() {
        if demo.get(i + 1).is_none_or(|next| next.caseid != row.caseid) {
            kept.push(*row);
        }
    }
    drop(demo);
    let mut report_of: HashMap<u64, u32> = HashMap::with_capacity(kept.len());
    let mut strata = Interner::new();
    let mut report_stratum = Vec::with_capacity(kept.len());
    let mut label = String::new();
    for (i, row) in kept.iter().enumerate() {
        report_of.insert(row.primaryid, i as u32);
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
        report_stratum.push(strata.intern(&label));
    }
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
            &report_of,
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
            &report_of,
            &mut event_names,
            &mut raw,
            &mut erep,
            &mut eids,
            &mut log,
            &mut reac_counters,
            &progress,
        )?;
    }
    drop(report_of);
    progress.finish_and_clear();
    let (drugs, events) = rayon::join(
        || Csr::from_pairs(n_reports, &drep, &dids),
        || Csr::from_pairs(n_reports, &erep, &eids),
    );
    drop((drep, dids, erep, eids));

    let mut diagnostics: Diagnostics = log.diagnostics;
    diagnostics.notes.push(format!(
        "DEMO rows {demo_rows}, cases kept after keeping the latest version of each CASEID {n_reports} ({} older versions dropped)",
        demo_rows - n_reports
    ));
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
    let mut ds = Dataset {
        drug_names: drug_names.into_names(),
        event_names: event_names.into_names(),
        n_reports,
        report_stratum,
        stratum_labels: strata.into_names(),
        layout: Layout::CrossProduct { drugs, events },
        diagnostics,
    };
    ds.canonicalize();
    Ok(ds)
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
        let block = b"a\nb\nc\nd\n";
        let parts = split_block(block, 10, 3);
        let mut seen = Vec::new();
        for (piece, first) in parts {
            for (l, n) in lines(piece, first) {
                if !l.is_empty() {
                    seen.push((l.to_vec(), n));
                }
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
}
