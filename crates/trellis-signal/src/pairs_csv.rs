//! Generic long-format CSV input: `report_id,drug,event[,stratum columns...]`.
//!
//! Each row states that a report mentions a drug–event pair (openEBGM's
//! `processRaw` input). Names are taken as they are, with surrounding
//! whitespace trimmed; no other normalization is applied.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use hashbrown::HashMap;

use crate::data::{Dataset, Interner, Layout, MalformedLog};
use crate::error::{Error, Result, io_err};

/// Options for [`read_pairs_csv`].
#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    /// Stratum columns to use (by header name); empty means unstratified.
    pub strata: Vec<String>,
    /// Fail on the first malformed line instead of counting it.
    pub strict: bool,
}

fn field(rec: &csv::ByteRecord, i: usize) -> std::result::Result<&str, &'static str> {
    let raw = rec.get(i).ok_or("missing field")?;
    let s = std::str::from_utf8(raw).map_err(|_| "field is not valid UTF-8")?;
    Ok(s.trim())
}

/// Reads a generic pairs CSV into a [`Dataset`] with the triple layout.
pub fn read_pairs_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(io_err(path))?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let headers: Vec<String> = rdr
        .byte_headers()
        .map_err(|source| Error::Csv {
            path: path.to_owned(),
            source,
        })?
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_ascii_lowercase()
        })
        .collect();
    if headers.len() < 3
        || headers[0] != "report_id"
        || headers[1] != "drug"
        || headers[2] != "event"
    {
        return Err(Error::Header {
            path: display,
            reason: format!(
                "expected `report_id,drug,event[,strata...]`, found `{}`",
                headers.join(",")
            ),
        });
    }
    let mut strata_idx = Vec::with_capacity(opts.strata.len());
    for name in &opts.strata {
        let lname = name.trim().to_ascii_lowercase();
        let idx = headers
            .iter()
            .position(|h| *h == lname)
            .filter(|&i| i >= 3)
            .ok_or_else(|| Error::Header {
                path: display.clone(),
                reason: format!("stratum column `{name}` not found among {headers:?}"),
            })?;
        strata_idx.push(idx);
    }

    let mut log = MalformedLog::new(opts.strict);
    log.diagnostics.files.push(display.clone());
    let mut reports: HashMap<String, u32> = HashMap::new();
    let mut drugs = Interner::new();
    let mut events = Interner::new();
    let mut strata = Interner::new();
    let mut report_stratum: Vec<u32> = Vec::new();
    let mut triples: Vec<(u32, u32, u32)> = Vec::new();
    let mut inconsistent_strata = 0u64;
    let mut label = String::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(Error::Csv {
                        path: path.to_owned(),
                        source: e,
                    });
                }
                log.record(&display, line, e.to_string())?;
                continue;
            }
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        log.diagnostics.lines_read += 1;
        if rec.len() == 1 && rec.get(0).is_some_and(|f| f.is_empty()) {
            continue; // blank line
        }
        if rec.len() != headers.len() {
            log.record(
                &display,
                line,
                format!("expected {} fields, found {}", headers.len(), rec.len()),
            )?;
            continue;
        }
        let parsed = (|| -> std::result::Result<(&str, &str, &str), &'static str> {
            let id = field(&rec, 0)?;
            let drug = field(&rec, 1)?;
            let event = field(&rec, 2)?;
            if id.is_empty() {
                return Err("empty report_id");
            }
            if drug.is_empty() {
                return Err("empty drug");
            }
            if event.is_empty() {
                return Err("empty event");
            }
            Ok((id, drug, event))
        })();
        let (id, drug, event) = match parsed {
            Ok(v) => v,
            Err(reason) => {
                log.record(&display, line, reason)?;
                continue;
            }
        };
        label.clear();
        let mut bad = None;
        for (k, &i) in strata_idx.iter().enumerate() {
            match field(&rec, i) {
                Ok(v) => {
                    if k > 0 {
                        label.push('-');
                    }
                    label.push_str(v);
                }
                Err(reason) => bad = Some(reason),
            }
        }
        if let Some(reason) = bad {
            log.record(&display, line, reason)?;
            continue;
        }
        let stratum = strata.intern(&label);
        let next = reports.len() as u32;
        let rid = *reports.entry_ref(id).or_insert(next);
        if rid == next {
            report_stratum.push(stratum);
        } else if report_stratum[rid as usize] != stratum {
            inconsistent_strata += 1;
        }
        triples.push((rid, drugs.intern(drug), events.intern(event)));
    }
    let mut diagnostics = log.diagnostics;
    if inconsistent_strata > 0 {
        diagnostics.notes.push(format!(
            "{inconsistent_strata} rows gave a report a different stratum than its first row; the first row's stratum was kept"
        ));
    }
    triples.sort_unstable();
    triples.dedup();
    let mut ds = Dataset {
        drug_names: drugs.into_names(),
        event_names: events.into_names(),
        n_reports: reports.len(),
        report_stratum,
        stratum_labels: strata.into_names(),
        layout: Layout::Triples(triples),
        diagnostics,
    };
    ds.canonicalize();
    Ok(ds)
}
