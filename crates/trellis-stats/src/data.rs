//! Column-oriented datasets, read from CSV or SAS XPORT files.

use crate::error::{Result, StatsError};
use std::collections::BTreeMap;
use std::path::Path;

/// A SAS missing-value code: `.`, `._` or `.A`–`.Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Missing {
    /// `.` (ordinary missing).
    Dot,
    /// `._`
    Underscore,
    /// `.A`–`.Z`; holds the uppercase ASCII letter.
    Letter(u8),
}

impl Missing {
    /// The byte that XPORT stores as the first byte of a missing numeric value.
    pub fn byte(self) -> u8 {
        match self {
            Missing::Dot => b'.',
            Missing::Underscore => b'_',
            Missing::Letter(c) => c,
        }
    }

    /// Decodes the first byte of a missing numeric value.
    pub fn from_byte(b: u8) -> Option<Missing> {
        match b {
            b'.' => Some(Missing::Dot),
            b'_' => Some(Missing::Underscore),
            b'A'..=b'Z' => Some(Missing::Letter(b)),
            _ => None,
        }
    }
}

/// A SAS format or informat reference (`DATE9.`, `8.2`, `$CHAR20.`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarFormat {
    pub name: String,
    pub width: u16,
    pub decimals: u16,
}

/// The values of a column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// Numbers; a missing value is NaN. `special` lists, in row order, the rows whose missing
    /// code is not the ordinary `.` (e.g. `.A`).
    Numeric {
        values: Vec<f64>,
        special: Vec<(usize, Missing)>,
    },
    /// Character values, trailing blanks removed (SAS semantics).
    Char(Vec<String>),
}

impl ColumnData {
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Numeric { values, .. } => values.len(),
            ColumnData::Char(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One variable of a dataset with its SAS metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub label: String,
    pub format: VarFormat,
    /// Format justification as stored in XPORT (0 left, 1 right).
    pub format_justify: u16,
    pub informat: VarFormat,
    /// Storage length in bytes: 2–8 for numeric columns, the width for character columns
    /// (0 means "computed from the values when written").
    pub length: usize,
    pub data: ColumnData,
}

impl Column {
    /// A numeric column with default metadata (length 8, no label, no format).
    pub fn numeric(name: &str, values: Vec<f64>) -> Column {
        Column {
            name: name.to_string(),
            label: String::new(),
            format: VarFormat::default(),
            format_justify: 0,
            informat: VarFormat::default(),
            length: 8,
            data: ColumnData::Numeric {
                values,
                special: Vec::new(),
            },
        }
    }

    /// A character column with default metadata (width from the values).
    pub fn character(name: &str, values: Vec<String>) -> Column {
        Column {
            name: name.to_string(),
            label: String::new(),
            format: VarFormat::default(),
            format_justify: 0,
            informat: VarFormat::default(),
            length: 0,
            data: ColumnData::Char(values),
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self.data, ColumnData::Numeric { .. })
    }

    /// The missing code of row `i` if it is missing (numeric: NaN; character: empty).
    pub fn missing_code(&self, i: usize) -> Option<Missing> {
        match &self.data {
            ColumnData::Numeric { values, special } => {
                if values[i].is_nan() {
                    Some(
                        special
                            .binary_search_by_key(&i, |&(r, _)| r)
                            .map(|k| special[k].1)
                            .unwrap_or(Missing::Dot),
                    )
                } else {
                    None
                }
            }
            ColumnData::Char(v) => v[i].is_empty().then_some(Missing::Dot),
        }
    }

    /// Row `i` as text: numbers in shortest round-trip form, missing as empty.
    pub fn text(&self, i: usize) -> String {
        match &self.data {
            ColumnData::Numeric { values, .. } => fmt_num(values[i]),
            ColumnData::Char(v) => v[i].clone(),
        }
    }
}

/// Shortest text for a number that reads back to the same f64 (`1` not `1.0`); NaN as empty.
pub fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        String::new()
    } else if x == x.trunc() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// XPORT library and member metadata kept for faithful re-writing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XportMeta {
    pub sas_version: String,
    pub os: String,
    /// `ddMMMyy:hh:mm:ss`
    pub created: String,
    pub modified: String,
}

/// A dataset: named columns of equal length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    pub name: String,
    pub label: String,
    /// XPORT dataset type (usually blank).
    pub ds_type: String,
    pub columns: Vec<Column>,
    pub meta: XportMeta,
    /// Where the rows came from, so messages can point into the file.
    pub rows_from: RowOrigin,
}

/// Where the rows of a [`Dataset`] came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RowOrigin {
    /// Rows are numbered from 1 (XPORT files, data built in memory).
    #[default]
    Rows,
    /// A CSV file: the 1-based line on which each row's record starts (the header is line 1;
    /// quoted fields with line breaks make later rows start further down).
    CsvLines(Vec<u64>),
}

/// How one cell of text reads as a number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    /// Empty, `.`, or `NA` (R's missing value).
    Missing,
    /// `._`, `.A`–`.Z` (SAS special missing values).
    Special(Missing),
    Number(f64),
    Text,
}

fn read_cell(s: &str) -> Cell {
    let t = s.trim();
    let Some(&first) = t.as_bytes().first() else {
        return Cell::Missing;
    };
    if first.is_ascii_alphabetic() {
        // a finite number starts with a digit, a sign or a point ("inf" and "nan" parse,
        // but are not finite): text columns are classified without parsing
        return if t == "NA" { Cell::Missing } else { Cell::Text };
    }
    if t == "." {
        Cell::Missing
    } else if let Some(m) = special_missing(t) {
        Cell::Special(m)
    } else {
        match t.parse::<f64>() {
            Ok(v) if v.is_finite() => Cell::Number(v),
            _ => Cell::Text,
        }
    }
}

/// How many values of a character column read as numbers, and the first ones that do not.
#[derive(Debug, Clone, PartialEq)]
pub struct TextProfile {
    /// Values that are not missing (empty, `.`, `NA`, `.A`–`.Z`, `._`).
    pub present: usize,
    /// Of those, values that read as finite numbers.
    pub numbers: usize,
    /// The first few values that do not, with their row (0-based).
    pub first_text: Vec<(usize, String)>,
}

impl TextProfile {
    /// More than half of the present values are numbers: a numeric column with bad cells
    /// rather than a categorical one.
    pub fn looks_numeric(&self) -> bool {
        self.numbers > 0 && 2 * self.numbers > self.present
    }
}

/// How a model term uses a column (see [`Dataset::term_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermKind {
    /// Levels, as indicator columns.
    Factor,
    /// Its numeric values.
    Continuous,
}

impl Dataset {
    pub fn nrows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.data.len())
    }

    pub fn column(&self, name: &str) -> Result<&Column> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .or_else(|| {
                self.columns
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(name))
            })
            .ok_or_else(|| {
                StatsError::NoColumn(
                    name.to_string(),
                    self.columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
    }

    /// A numeric column's values (NaN = missing). A character column is an error that
    /// names the first values that are not numbers and where they are (CSV line or row).
    pub fn numeric(&self, name: &str) -> Result<&[f64]> {
        let col = self.column(name)?;
        match &col.data {
            ColumnData::Numeric { values, .. } => Ok(values),
            ColumnData::Char(_) => Err(self.not_numeric(col, "")),
        }
    }

    /// Where row `i` (0-based) is: `line 12` of a CSV file, otherwise `row 11`.
    pub fn locate(&self, i: usize) -> String {
        match &self.rows_from {
            RowOrigin::CsvLines(lines) if i < lines.len() => format!("line {}", lines[i]),
            _ => format!("row {}", i + 1),
        }
    }

    /// Whether `name` is a character column in which more than half of the non-missing
    /// values are numbers ([`TextProfile::looks_numeric`]), deciding as soon as the rest of
    /// the column cannot change the answer (a textual column is settled after about half of
    /// its rows).
    pub fn looks_numeric(&self, name: &str) -> Result<bool> {
        let ColumnData::Char(v) = &self.column(name)?.data else {
            return Ok(false);
        };
        let (mut numbers, mut text) = (0usize, 0usize);
        for (i, s) in v.iter().enumerate() {
            match read_cell(s) {
                Cell::Number(_) => numbers += 1,
                Cell::Text => text += 1,
                Cell::Missing | Cell::Special(_) => {}
            }
            if text >= numbers + (v.len() - i - 1) {
                return Ok(false);
            }
        }
        Ok(numbers > text)
    }

    /// Counts the values of a character column that read as numbers (`None` for a numeric
    /// column).
    pub fn text_profile(&self, name: &str) -> Result<Option<TextProfile>> {
        let ColumnData::Char(v) = &self.column(name)?.data else {
            return Ok(None);
        };
        let mut p = TextProfile {
            present: 0,
            numbers: 0,
            first_text: Vec::new(),
        };
        for (i, s) in v.iter().enumerate() {
            match read_cell(s) {
                Cell::Missing | Cell::Special(_) => {}
                Cell::Number(_) => {
                    p.present += 1;
                    p.numbers += 1;
                }
                Cell::Text => {
                    p.present += 1;
                    if p.first_text.len() < 5 {
                        p.first_text.push((i, s.clone()));
                    }
                }
            }
        }
        Ok(Some(p))
    }

    /// The error for a character column used where numbers are needed: how many values are
    /// not numbers, the first few with their lines, and `hint` (appended after "; ").
    fn not_numeric(&self, col: &Column, hint: &str) -> StatsError {
        let detail = match self.text_profile(&col.name) {
            Ok(Some(p)) => {
                let cells = p
                    .first_text
                    .iter()
                    .map(|(i, s)| format!("{} {s:?}", self.locate(*i)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let bad = p.present - p.numbers;
                let more = if bad > p.first_text.len() {
                    format!(" (the first {})", p.first_text.len())
                } else {
                    String::new()
                };
                if bad == 1 {
                    format!(
                        "1 of its {} non-missing values is not a number: {cells}",
                        p.present
                    )
                } else {
                    format!(
                        "{bad} of its {} non-missing values are not numbers: {cells}{more}",
                        p.present
                    )
                }
            }
            _ => "it is a character column".to_string(),
        };
        StatsError::NotNumeric {
            column: col.name.clone(),
            detail: if hint.is_empty() {
                detail
            } else {
                format!("{detail}; {hint}")
            },
        }
    }

    /// Decides whether a model term (covariate) is a factor or continuous:
    ///
    /// * listed by the user as a factor (`declared`): a factor, whatever the column type;
    /// * a numeric column: continuous;
    /// * a character column whose present values are mostly text (`F`/`M`, `Week 2`): a
    ///   factor;
    /// * a character column in which more than half of the present values are numbers, i.e.
    ///   a numeric column with some bad cells (`6O` in AGE, `14.0x` in AVAL): an error naming
    ///   the bad cells, never a silent switch to a factor. `factor_option` names the option
    ///   that declares a factor, for the message (`None`: the analysis has none).
    pub fn term_kind(
        &self,
        name: &str,
        declared: bool,
        factor_option: Option<&str>,
    ) -> Result<TermKind> {
        let col = self.column(name)?;
        if declared {
            return Ok(TermKind::Factor);
        }
        if col.is_numeric() {
            return Ok(TermKind::Continuous);
        }
        if !self.looks_numeric(name)? {
            return Ok(TermKind::Factor);
        }
        let hint = match factor_option {
            Some(opt) => format!(
                "correct the data, or list `{}` in {opt} to analyse it as categorical",
                col.name
            ),
            None => "correct the data (a column that looks numeric is not turned into a categorical factor silently)".to_string(),
        };
        Err(self.not_numeric(col, &hint))
    }

    /// A column as group labels: `None` for missing.
    pub fn labels(&self, name: &str) -> Result<Vec<Option<String>>> {
        let c = self.column(name)?;
        Ok((0..c.data.len())
            .map(|i| {
                let t = c.text(i);
                (!t.is_empty()).then_some(t)
            })
            .collect())
    }

    /// Reads a `.csv` or `.xpt` file (by extension; other extensions are sniffed).
    pub fn load(path: &Path) -> Result<Dataset> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let file = std::fs::File::open(path).map_err(|e| StatsError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let is_xpt = match ext.as_str() {
            "xpt" | "xport" => true,
            "csv" => false,
            _ => {
                let mut head = [0u8; 20];
                let mut f = std::fs::File::open(path)?;
                use std::io::Read;
                let n = f.read(&mut head)?;
                head[..n] == b"HEADER RECORD*******"[..n]
            }
        };
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("DATA")
            .to_string();
        if is_xpt {
            let mut ds =
                crate::xport::read_xport(std::io::BufReader::with_capacity(1 << 20, file))?;
            if ds.is_empty() {
                return Err(StatsError::Invalid(format!(
                    "{} contains no dataset",
                    path.display()
                )));
            }
            Ok(ds.swap_remove(0))
        } else {
            read_csv(std::io::BufReader::new(file), &name)
        }
    }
}

/// Reads CSV with a header row. A column is numeric when every cell is a finite number or
/// missing (empty, `.` or `NA`; `.A`–`.Z` and `._` are SAS special missing values);
/// otherwise it is character and keeps its text. Whether a character column may then be
/// used as a factor is decided where it is used ([`Dataset::term_kind`],
/// [`Dataset::numeric`]); the line of each row is kept for those messages.
pub fn read_csv<R: std::io::Read>(r: R, name: &str) -> Result<Dataset> {
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(r);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| StatsError::Csv(e.to_string()))?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    let ncol = headers.len();
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); ncol];
    let mut rec = csv::StringRecord::new();
    let mut lines = Vec::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => {
                lines.push(rec.position().map_or(0, |p| p.line()));
                for (j, f) in rec.iter().enumerate() {
                    cells[j].push(f.trim_end().to_string());
                }
            }
            Ok(false) => break,
            Err(e) => return Err(StatsError::Csv(e.to_string())),
        }
    }
    let mut columns = Vec::with_capacity(ncol);
    for (h, col) in headers.iter().zip(cells) {
        let mut values = Vec::with_capacity(col.len());
        let mut special = Vec::new();
        let mut numeric = true;
        for (i, s) in col.iter().enumerate() {
            match read_cell(s) {
                Cell::Missing => values.push(f64::NAN),
                Cell::Special(m) => {
                    values.push(f64::NAN);
                    special.push((i, m));
                }
                Cell::Number(v) => values.push(v),
                Cell::Text => {
                    numeric = false;
                    break;
                }
            }
        }
        let mut c = if numeric {
            Column::numeric(h, values)
        } else {
            Column::character(h, col)
        };
        if let ColumnData::Numeric { special: s, .. } = &mut c.data {
            *s = special;
        }
        columns.push(c);
    }
    Ok(Dataset {
        name: name.to_string(),
        columns,
        rows_from: RowOrigin::CsvLines(lines),
        ..Dataset::default()
    })
}

fn special_missing(t: &str) -> Option<Missing> {
    let b = t.as_bytes();
    if b.len() == 2 && b[0] == b'.' {
        match b[1] {
            b'_' => Some(Missing::Underscore),
            c @ b'A'..=b'Z' => Some(Missing::Letter(c)),
            c @ b'a'..=b'z' => Some(Missing::Letter(c.to_ascii_uppercase())),
            _ => None,
        }
    } else {
        None
    }
}

/// Writes a dataset as CSV (special missing values as `.A` etc., ordinary missing as empty).
pub fn write_csv<W: std::io::Write>(w: W, ds: &Dataset) -> Result<()> {
    let mut wr = csv::Writer::from_writer(w);
    let err = |e: csv::Error| StatsError::Csv(e.to_string());
    wr.write_record(ds.columns.iter().map(|c| c.name.as_str()))
        .map_err(err)?;
    for i in 0..ds.nrows() {
        let row: Vec<String> = ds
            .columns
            .iter()
            .map(|c| match c.missing_code(i) {
                Some(Missing::Dot) | None => c.text(i),
                Some(m) => format!(".{}", m.byte() as char),
            })
            .collect();
        wr.write_record(&row).map_err(err)?;
    }
    wr.flush()?;
    Ok(())
}

/// Distinct non-missing labels in sorted order (numbers sort numerically when all parse).
pub fn levels(labels: &[Option<String>]) -> Vec<String> {
    let set: BTreeMap<&str, ()> = labels.iter().flatten().map(|s| (s.as_str(), ())).collect();
    let mut v: Vec<String> = set.keys().map(|s| s.to_string()).collect();
    if v.iter().all(|s| s.parse::<f64>().is_ok()) {
        v.sort_by(|a, b| {
            let (x, y) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            x.total_cmp(&y)
        });
    }
    v
}

/// Code of a missing value in [`Codes`].
pub const NA_CODE: u32 = u32::MAX;

/// A column coded as factor levels: `codes[i]` indexes `levels`, or is [`NA_CODE`].
#[derive(Debug, Clone, PartialEq)]
pub struct Codes {
    pub levels: Vec<String>,
    pub codes: Vec<u32>,
}

impl Codes {
    /// Moves `level` to the front (the reference level of indicator coding).
    pub fn with_reference(mut self, level: &str) -> Result<Codes> {
        let Some(k) = self.levels.iter().position(|l| l == level) else {
            return Err(StatsError::Invalid(format!(
                "reference level `{level}` not found (levels: {})",
                self.levels.join(", ")
            )));
        };
        let k = k as u32;
        let lv = self.levels.remove(k as usize);
        self.levels.insert(0, lv);
        for c in self.codes.iter_mut() {
            if *c == k {
                *c = 0;
            } else if *c != NA_CODE && *c < k {
                *c += 1;
            }
        }
        Ok(self)
    }

    /// The kept rows only, with levels reduced to those present and re-numbered in order.
    pub fn subset(&self, keep: &[bool]) -> Codes {
        if keep.iter().all(|k| *k) && !self.codes.contains(&NA_CODE) {
            // every level occurs among the rows (levels come from the column itself)
            return self.clone();
        }
        let mut present = vec![false; self.levels.len()];
        let kept: Vec<u32> = self
            .codes
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(c, _)| *c)
            .collect();
        for &c in &kept {
            if c != NA_CODE {
                present[c as usize] = true;
            }
        }
        let mut remap = vec![NA_CODE; self.levels.len()];
        let mut levels = Vec::new();
        for (i, p) in present.iter().enumerate() {
            if *p {
                remap[i] = levels.len() as u32;
                levels.push(self.levels[i].clone());
            }
        }
        let codes = kept
            .iter()
            .map(|&c| {
                if c == NA_CODE {
                    NA_CODE
                } else {
                    remap[c as usize]
                }
            })
            .collect();
        Codes { levels, codes }
    }
}

impl Dataset {
    /// Codes a column as a factor without per-row allocation. Levels are sorted: numeric
    /// columns by value, character columns as strings (numerically when all parse).
    pub fn codes(&self, name: &str) -> Result<Codes> {
        let col = self.column(name)?;
        match &col.data {
            ColumnData::Numeric { values, .. } => {
                // fast path: small non-negative integers (flags, arm numbers, strata);
                // `v as u32 as f64 == v` rather than `v.trunc()`, a libm call per row
                // without SSE4.1, and counted rather than short-circuited, so it vectorises
                let small_int = |v: f64| (0.0..4096.0).contains(&v) && f64::from(v as u32) == v;
                if values
                    .iter()
                    .map(|&v| usize::from(!(v.is_nan() || small_int(v))))
                    .sum::<usize>()
                    == 0
                {
                    let mut seen = vec![false; 4096];
                    for &v in values {
                        if !v.is_nan() {
                            seen[v as usize] = true;
                        }
                    }
                    let mut remap = vec![NA_CODE; 4096];
                    let mut levels = Vec::new();
                    for (k, s) in seen.iter().enumerate() {
                        if *s {
                            remap[k] = levels.len() as u32;
                            levels.push(k.to_string());
                        }
                    }
                    let codes = values
                        .iter()
                        .map(|&v| {
                            if v.is_nan() {
                                NA_CODE
                            } else {
                                remap[v as usize]
                            }
                        })
                        .collect();
                    return Ok(Codes { levels, codes });
                }
                let mut map: std::collections::HashMap<u64, u32, FxBuild> =
                    std::collections::HashMap::default();
                let mut first: Vec<f64> = Vec::new();
                let mut codes = Vec::with_capacity(values.len());
                for &v in values {
                    if v.is_nan() {
                        codes.push(NA_CODE);
                        continue;
                    }
                    let key = if v == 0.0 { 0 } else { v.to_bits() };
                    let next = first.len() as u32;
                    let c = *map.entry(key).or_insert_with(|| {
                        first.push(v);
                        next
                    });
                    codes.push(c);
                }
                let mut order: Vec<u32> = (0..first.len() as u32).collect();
                order.sort_by(|&a, &b| first[a as usize].total_cmp(&first[b as usize]));
                let mut remap = vec![0u32; first.len()];
                for (rank, &o) in order.iter().enumerate() {
                    remap[o as usize] = rank as u32;
                }
                for c in codes.iter_mut() {
                    if *c != NA_CODE {
                        *c = remap[*c as usize];
                    }
                }
                let levels = order.iter().map(|&o| fmt_num(first[o as usize])).collect();
                Ok(Codes { levels, codes })
            }
            ColumnData::Char(v) => {
                let mut map: std::collections::HashMap<&str, u32, FxBuild> =
                    std::collections::HashMap::default();
                let mut first: Vec<&str> = Vec::new();
                let mut codes = Vec::with_capacity(v.len());
                for s in v {
                    if s.is_empty() {
                        codes.push(NA_CODE);
                        continue;
                    }
                    let next = first.len() as u32;
                    let c = *map.entry(s.as_str()).or_insert_with(|| {
                        first.push(s.as_str());
                        next
                    });
                    codes.push(c);
                }
                let all_num = first.iter().all(|s| s.parse::<f64>().is_ok());
                let mut order: Vec<u32> = (0..first.len() as u32).collect();
                if all_num {
                    order.sort_by(|&a, &b| {
                        let x = first[a as usize].parse::<f64>().unwrap_or(0.0);
                        let y = first[b as usize].parse::<f64>().unwrap_or(0.0);
                        x.total_cmp(&y)
                    });
                } else {
                    order.sort_by(|&a, &b| first[a as usize].cmp(first[b as usize]));
                }
                let mut remap = vec![0u32; first.len()];
                for (rank, &o) in order.iter().enumerate() {
                    remap[o as usize] = rank as u32;
                }
                for c in codes.iter_mut() {
                    if *c != NA_CODE {
                        *c = remap[*c as usize];
                    }
                }
                let levels = order
                    .iter()
                    .map(|&o| first[o as usize].to_string())
                    .collect();
                Ok(Codes { levels, codes })
            }
        }
    }
}

/// A small multiplicative hasher (FxHash-style) for factor coding; not DoS-resistant, which
/// does not matter for column values of a local file.
#[derive(Default, Clone, Copy)]
pub struct FxBuild;

#[derive(Default)]
pub struct FxHasher(u64);

impl std::hash::BuildHasher for FxBuild {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        // splitmix64 finaliser: keys such as f64 bit patterns have all-zero low bits
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}
