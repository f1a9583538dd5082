//! Tabular exports of captured data for a quick look in a spreadsheet or a statistics
//! package: one table per form (a row per form instance, or per row of a log form), and a
//! wide table with one row per subject and a column per item address.
//!
//! Values are exported exactly as stored (ISO dates, partial dates such as `UN-UNK-2024`,
//! codes rather than decodes), so that what a data manager sees is what the audit trail
//! holds. Columns follow the definition's order; items a design does not know (data kept
//! from an earlier metadata version) follow, sorted by address.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use crate::design::StudyDesign;
use crate::path::{FormPath, ItemPath, Repeat};

/// One subject and its current values, as the store returns them.
pub struct ExportSubject<'a> {
    pub site: &'a str,
    pub screening_number: &'a str,
    pub status: &'a str,
    pub values: &'a [(String, Option<String>)],
}

/// A rectangular table: a header and rows of the same width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the study design has no form `{0}`")]
    UnknownForm(String),
    #[error("could not write the export: {0}")]
    Write(#[from] csv::Error),
}

impl ExportError {
    pub fn code(&self) -> &'static str {
        match self {
            ExportError::UnknownForm(_) => "unknown_form",
            ExportError::Write(_) => "export_write",
        }
    }
}

impl Table {
    /// Writes RFC 4180 CSV (comma, `"` quoting where needed, CRLF line ends).
    pub fn write_csv<W: Write>(&self, out: W) -> Result<(), ExportError> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(out);
        w.write_record(&self.header)?;
        for row in &self.rows {
            w.write_record(row)?;
        }
        w.flush().map_err(csv::Error::from)?;
        Ok(())
    }

    pub fn to_csv_string(&self) -> Result<String, ExportError> {
        let mut buf = Vec::new();
        self.write_csv(&mut buf)?;
        // Every cell came from a `String`, so the bytes are UTF-8.
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

const SUBJECT_COLUMNS: [&str; 4] = ["study", "site", "subject", "subject_status"];

fn subject_cells(study: &str, s: &ExportSubject<'_>) -> Vec<String> {
    vec![
        study.to_owned(),
        s.site.to_owned(),
        s.screening_number.to_owned(),
        s.status.to_owned(),
    ]
}

/// Definition order of items: `(group OID, item OID)` → rank, over the whole design.
fn item_ranks(design: &StudyDesign) -> HashMap<(&str, &str), usize> {
    let mut ranks = HashMap::new();
    for form in &design.forms {
        for g in &form.groups {
            for i in &g.items {
                let n = ranks.len();
                ranks.entry((g.oid.as_str(), i.oid.as_str())).or_insert(n);
            }
        }
    }
    ranks
}

/// A log row: its repeating group and repeat key.
type RowKey = (String, Repeat);
/// A form instance's cells: the non-repeating items, and each log row's.
type Instance<'a> = (Vec<Option<&'a str>>, BTreeMap<RowKey, Vec<Option<&'a str>>>);
/// Event, event repeat, form, form repeat, item (definition ranks), group repeat, address.
type AddressOrder = (usize, Repeat, usize, Repeat, usize, Repeat, String);

/// One table for form `form_oid`: a row per form instance of every subject that has
/// values on it; a form with repeating groups (a log form) has a row per group repeat,
/// with the form's non-repeating items repeated on each row.
pub fn form_table(
    study_code: &str,
    design: &StudyDesign,
    form_oid: &str,
    subjects: &[ExportSubject<'_>],
) -> Result<Table, ExportError> {
    let form = design
        .form(form_oid)
        .ok_or_else(|| ExportError::UnknownForm(form_oid.to_owned()))?;
    let repeating: BTreeSet<&str> = form
        .groups
        .iter()
        .filter(|g| g.repeating)
        .map(|g| g.oid.as_str())
        .collect();
    // Columns: the design's items, then any other (group, item) found in the data.
    let mut columns: Vec<(String, String)> = form
        .groups
        .iter()
        .flat_map(|g| {
            g.items
                .iter()
                .map(|i| (g.oid.to_string(), i.oid.to_string()))
        })
        .collect();
    let mut extra: BTreeSet<(String, String)> = BTreeSet::new();
    let mut parsed: Vec<Vec<(ItemPath, &str)>> = Vec::with_capacity(subjects.len());
    for s in subjects {
        let mut mine = Vec::new();
        for (key, value) in s.values {
            let (Ok(path), Some(value)) = (key.parse::<ItemPath>(), value.as_deref()) else {
                continue;
            };
            if path.form.form.as_str() != form_oid {
                continue;
            }
            let col = (path.group.to_string(), path.item.to_string());
            if !columns.contains(&col) {
                extra.insert(col);
            }
            mine.push((path, value));
        }
        parsed.push(mine);
    }
    columns.extend(extra);
    let column_of: HashMap<(String, String), usize> = columns
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, c)| (c, i))
        .collect();
    let name_counts = columns.iter().fold(HashMap::new(), |mut m, (_, i)| {
        *m.entry(i.clone()).or_insert(0usize) += 1;
        m
    });
    let many_groups = repeating.len() > 1;
    let mut header: Vec<String> = SUBJECT_COLUMNS.iter().map(|s| (*s).to_owned()).collect();
    header.extend(["event", "event_repeat", "form_repeat"].map(String::from));
    if many_groups {
        header.push("item_group".into());
    }
    if !repeating.is_empty() {
        header.push("group_repeat".into());
    }
    // An item OID used in two groups of the form is qualified by its group.
    header.extend(columns.iter().map(|(g, i)| {
        if name_counts.get(i).copied().unwrap_or(0) > 1 {
            format!("{g}.{i}")
        } else {
            i.clone()
        }
    }));

    let mut rows = Vec::new();
    for (s, values) in subjects.iter().zip(&parsed) {
        // Per form instance: the non-repeating cells, and the rows of repeating groups.
        let mut instances: BTreeMap<&FormPath, Instance<'_>> = BTreeMap::new();
        for (path, value) in values {
            let Some(&col) = column_of.get(&(path.group.to_string(), path.item.to_string())) else {
                continue;
            };
            let (flat, log_rows) = instances
                .entry(&path.form)
                .or_insert_with(|| (vec![None; columns.len()], BTreeMap::new()));
            if repeating.contains(path.group.as_str()) {
                log_rows
                    .entry((path.group.to_string(), path.group_repeat))
                    .or_insert_with(|| vec![None; columns.len()])[col] = Some(value);
            } else {
                flat[col] = Some(value);
            }
        }
        for (fp, (flat, log_rows)) in instances {
            let base = |cells: &[Option<&str>], group: Option<&RowKey>| {
                let mut row = subject_cells(study_code, s);
                row.push(fp.event.to_string());
                row.push(fp.event_repeat.to_string());
                row.push(fp.form_repeat.to_string());
                if many_groups {
                    row.push(group.map(|g| g.0.clone()).unwrap_or_default());
                }
                if !repeating.is_empty() {
                    row.push(group.map(|g| g.1.to_string()).unwrap_or_default());
                }
                row.extend(
                    cells
                        .iter()
                        .zip(&flat)
                        .map(|(c, f)| c.or(*f).unwrap_or("").to_owned()),
                );
                row
            };
            if log_rows.is_empty() {
                rows.push(base(&flat, None));
            } else {
                for (key, cells) in &log_rows {
                    rows.push(base(cells, Some(key)));
                }
            }
        }
    }
    Ok(Table { header, rows })
}

/// One row per subject, a column per item address (`EVENT[n]/FORM[n]/GROUP[n]/ITEM`)
/// that holds a value for any subject, in the design's order of events, forms and items.
pub fn wide_table(study_code: &str, design: &StudyDesign, subjects: &[ExportSubject<'_>]) -> Table {
    let ranks = item_ranks(design);
    let event_rank: HashMap<&str, usize> = design
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.oid.as_str(), i))
        .collect();
    let form_rank: HashMap<&str, usize> = design
        .forms
        .iter()
        .enumerate()
        .map(|(i, f)| (f.oid.as_str(), i))
        .collect();
    let mut addresses: BTreeMap<AddressOrder, String> = BTreeMap::new();
    for s in subjects {
        for (key, value) in s.values {
            if value.is_none() {
                continue;
            }
            let Ok(p) = key.parse::<ItemPath>() else {
                continue;
            };
            let sort_key = (
                event_rank
                    .get(p.form.event.as_str())
                    .copied()
                    .unwrap_or(usize::MAX),
                p.form.event_repeat,
                form_rank
                    .get(p.form.form.as_str())
                    .copied()
                    .unwrap_or(usize::MAX),
                p.form.form_repeat,
                ranks
                    .get(&(p.group.as_str(), p.item.as_str()))
                    .copied()
                    .unwrap_or(usize::MAX),
                p.group_repeat,
                key.clone(),
            );
            addresses.entry(sort_key).or_insert_with(|| key.clone());
        }
    }
    let columns: Vec<&String> = addresses.values().collect();
    let index: HashMap<&str, usize> = columns
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut header: Vec<String> = SUBJECT_COLUMNS.iter().map(|s| (*s).to_owned()).collect();
    header.extend(columns.iter().map(|k| (*k).clone()));
    let rows = subjects
        .iter()
        .map(|s| {
            let mut cells = vec![String::new(); columns.len()];
            for (key, value) in s.values {
                if let (Some(&i), Some(v)) = (index.get(key.as_str()), value) {
                    cells[i] = v.clone();
                }
            }
            let mut row = subject_cells(study_code, s);
            row.extend(cells);
            row
        })
        .collect();
    Table { header, rows }
}
