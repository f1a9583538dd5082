//! In-memory report layout shared by the readers and the counting pass.

use hashbrown::HashMap;

use crate::error::{Error, Result};

/// String interner assigning dense `u32` ids in first-seen order.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    map: HashMap<Box<str>, u32>,
    names: Vec<String>,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Id of `name`, inserting it if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.map.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.map.insert(name.into(), id);
        self.names.push(name.to_owned());
        id
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.map.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn into_names(self) -> Vec<String> {
        self.names
    }
}

/// Compressed sparse rows: row `i` holds `items[offsets[i]..offsets[i+1]]`,
/// sorted ascending and free of duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Csr {
    pub offsets: Vec<u64>,
    pub items: Vec<u32>,
}

impl Csr {
    /// Builds rows from unordered `(row, item)` pairs (counting sort), then
    /// sorts and deduplicates every row.
    pub fn from_pairs(n_rows: usize, rows: &[u32], items: &[u32]) -> Csr {
        debug_assert_eq!(rows.len(), items.len());
        let mut counts = vec![0u64; n_rows + 1];
        for &r in rows {
            counts[r as usize + 1] += 1;
        }
        for i in 0..n_rows {
            counts[i + 1] += counts[i];
        }
        let mut fill = counts.clone();
        let mut out = vec![0u32; items.len()];
        for (&r, &it) in rows.iter().zip(items) {
            let slot = &mut fill[r as usize];
            out[*slot as usize] = it;
            *slot += 1;
        }
        let mut csr = Csr {
            offsets: counts,
            items: out,
        };
        csr.sort_dedup_rows();
        csr
    }

    /// Like [`Csr::from_pairs`], taking the items by value: when `rows` is
    /// already non-decreasing (files sorted by report), no scatter is needed.
    pub fn from_rows(n_rows: usize, rows: &[u32], items: Vec<u32>) -> Csr {
        debug_assert_eq!(rows.len(), items.len());
        if !rows.is_sorted() {
            return Csr::from_pairs(n_rows, rows, &items);
        }
        let mut offsets = vec![0u64; n_rows + 1];
        for &r in rows {
            offsets[r as usize + 1] += 1;
        }
        for i in 0..n_rows {
            offsets[i + 1] += offsets[i];
        }
        let mut csr = Csr { offsets, items };
        csr.sort_dedup_rows();
        csr
    }

    /// Sorts and deduplicates each row in place, compacting storage.
    pub fn sort_dedup_rows(&mut self) {
        let n = self.n_rows();
        let mut write = 0usize;
        let mut start = 0usize;
        for i in 0..n {
            let end = self.offsets[i + 1] as usize;
            let row = &mut self.items[start..end];
            if row.windows(2).all(|w| w[0] < w[1]) {
                if write != start {
                    self.items.copy_within(start..end, write);
                }
                self.offsets[i] = write as u64;
                write += end - start;
                start = end;
                continue;
            }
            row.sort_unstable();
            let mut last: Option<u32> = None;
            let mut k = 0;
            for j in 0..row.len() {
                let v = row[j];
                if last != Some(v) {
                    row[k] = v;
                    k += 1;
                    last = Some(v);
                }
            }
            self.items.copy_within(start..start + k, write);
            self.offsets[i] = write as u64;
            write += k;
            start = end;
        }
        if n > 0 || !self.offsets.is_empty() {
            self.offsets[n] = write as u64;
        }
        self.items.truncate(write);
    }

    pub fn n_rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn row(&self, i: usize) -> &[u32] {
        &self.items[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Replaces every item `x` with `map[x]` and re-sorts rows.
    pub fn remap(&mut self, map: &[u32]) {
        for x in &mut self.items {
            *x = map[*x as usize];
        }
        self.sort_dedup_rows();
    }
}

/// How drugs and events of a report form pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Every drug of a report pairs with every event of it (FAERS).
    CrossProduct { drugs: Csr, events: Csr },
    /// Explicit `(report, drug, event)` rows (the generic CSV, with openEBGM's
    /// `processRaw` semantics): sorted and deduplicated.
    Triples(Vec<(u32, u32, u32)>),
}

/// Reader diagnostics, reported on stderr and in the HTML report.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub files: Vec<String>,
    pub lines_read: u64,
    pub malformed: u64,
    pub malformed_examples: Vec<String>,
    pub notes: Vec<String>,
}

/// Counts malformed lines; in strict mode the first one is an error.
#[derive(Debug, Clone, Default)]
pub struct MalformedLog {
    pub strict: bool,
    pub diagnostics: Diagnostics,
}

impl MalformedLog {
    pub fn new(strict: bool) -> Self {
        Self {
            strict,
            diagnostics: Diagnostics::default(),
        }
    }

    pub fn record(&mut self, path: &str, line: u64, reason: impl Into<String>) -> Result<()> {
        let reason = reason.into();
        if self.strict {
            return Err(Error::Malformed {
                path: path.to_owned(),
                line,
                reason,
            });
        }
        self.diagnostics.malformed += 1;
        if self.diagnostics.malformed_examples.len() < 50 {
            self.diagnostics
                .malformed_examples
                .push(format!("{path}:{line}: {reason}"));
        }
        Ok(())
    }
}

/// A set of reports ready for counting.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub drug_names: Vec<String>,
    pub event_names: Vec<String>,
    /// Number of reports (some may lack a drug or an event and are then
    /// ignored by the counting pass).
    pub n_reports: usize,
    /// Stratum index of every report (all 0 when unstratified).
    pub report_stratum: Vec<u32>,
    /// Label of every stratum (`-`-joined stratum values, as openEBGM does).
    pub stratum_labels: Vec<String>,
    pub layout: Layout,
    pub diagnostics: Diagnostics,
}

/// Permutation that sorts `names`: returns `(old -> new, sorted names)`.
pub(crate) fn sort_names(names: Vec<String>) -> (Vec<u32>, Vec<String>) {
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.sort_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
    let mut map = vec![0u32; names.len()];
    for (new, &old) in order.iter().enumerate() {
        map[old as usize] = new as u32;
    }
    let mut slots: Vec<Option<String>> = names.into_iter().map(Some).collect();
    let sorted = order
        .iter()
        .map(|&old| slots[old as usize].take().unwrap_or_default())
        .collect();
    (map, sorted)
}

impl Dataset {
    /// Renumbers drugs, events and strata in name order, so that ids (and
    /// hence the output order) do not depend on the input order.
    pub fn canonicalize(&mut self) {
        let (dmap, dnames) = sort_names(std::mem::take(&mut self.drug_names));
        let (emap, enames) = sort_names(std::mem::take(&mut self.event_names));
        let (smap, snames) = sort_names(std::mem::take(&mut self.stratum_labels));
        self.drug_names = dnames;
        self.event_names = enames;
        self.stratum_labels = snames;
        for s in &mut self.report_stratum {
            *s = smap[*s as usize];
        }
        match &mut self.layout {
            Layout::CrossProduct { drugs, events } => {
                drugs.remap(&dmap);
                events.remap(&emap);
            }
            Layout::Triples(t) => {
                for x in t.iter_mut() {
                    x.1 = dmap[x.1 as usize];
                    x.2 = emap[x.2 as usize];
                }
                t.sort_unstable();
                t.dedup();
            }
        }
    }

    pub fn n_strata(&self) -> usize {
        self.stratum_labels.len().max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_sorts_and_dedups() {
        let rows = [1u32, 0, 1, 1, 2, 0];
        let items = [5u32, 3, 2, 5, 9, 3];
        let csr = Csr::from_pairs(4, &rows, &items);
        assert_eq!(csr.row(0), &[3]);
        assert_eq!(csr.row(1), &[2, 5]);
        assert_eq!(csr.row(2), &[9]);
        assert_eq!(csr.row(3), &[] as &[u32]);
    }

    #[test]
    fn sort_names_is_a_permutation() {
        let (map, sorted) = sort_names(vec!["b".into(), "c".into(), "a".into()]);
        assert_eq!(sorted, vec!["a", "b", "c"]);
        assert_eq!(map, vec![1, 2, 0]);
    }
}
