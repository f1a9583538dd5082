//! Reading an `expected.json` made by a reference script (`reference/xport_sas_reference.py`,
//! `reference/haven_write.R`) and comparing a dataset's columns with it.
use serde_json::Value;
use trellis_stats::data::{ColumnData, Dataset, Missing, VarFormat};
use trellis_stats::xport::XportReader;

pub fn s(v: &Value) -> &str {
    v.as_str().expect("string in expected.json")
}

pub fn u(v: &Value) -> u64 {
    v.as_u64().expect("integer in expected.json")
}

pub fn var_format(v: &Value) -> VarFormat {
    VarFormat {
        name: s(&v["name"]).to_string(),
        width: u(&v["width"]) as u16,
        decimals: u(&v["decimals"]) as u16,
    }
}

/// The missing-value code a value's text names (`.`, `._`, `.A`-`.Z`).
pub fn missing_code(text: &str) -> Option<Missing> {
    match text.as_bytes() {
        b"." => Some(Missing::Dot),
        b"._" => Some(Missing::Underscore),
        [b'.', c @ b'A'..=b'Z'] => Some(Missing::Letter(*c)),
        _ => None,
    }
}

/// Every column of `ds` against `want` (the `columns` array): name, label, length, format,
/// justification and informat where given, and every value (numbers bit for bit: an 8-byte
/// IBM number holds every f64 in its range exactly; missing values by code).
pub fn check_columns(ds: &Dataset, want: &Value, file: &str) {
    let wcols = want.as_array().expect("columns array");
    assert_eq!(ds.columns.len(), wcols.len(), "{file}: number of columns");
    for (c, w) in ds.columns.iter().zip(wcols) {
        let what = format!("{file} {}", c.name);
        assert_eq!(c.name, s(&w["name"]), "{file}: column order");
        assert_eq!(c.label, s(&w["label"]), "{what}: label");
        assert_eq!(c.length as u64, u(&w["length"]), "{what}: length");
        assert_eq!(c.format, var_format(&w["format"]), "{what}: format");
        if let Some(j) = w.get("format_justify") {
            assert_eq!(c.format_justify as u64, u(j), "{what}: justify");
        }
        if let Some(f) = w.get("informat") {
            assert_eq!(c.informat, var_format(f), "{what}: informat");
        }
        let vals = w["values"].as_array().expect("values array");
        assert_eq!(c.data.len(), vals.len(), "{what}: values");
        match (&c.data, s(&w["type"])) {
            (ColumnData::Numeric { values, .. }, "numeric") => {
                for (i, (got, v)) in values.iter().zip(vals).enumerate() {
                    let text = s(v);
                    if let Some(code) = missing_code(text) {
                        assert!(got.is_nan(), "{what} row {}: {got}, want {text}", i + 1);
                        assert_eq!(c.missing_code(i), Some(code), "{what} row {}", i + 1);
                    } else {
                        let want: f64 = text.parse().expect("number text");
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{what} row {}: {got:e}, want {want:e}",
                            i + 1
                        );
                    }
                }
            }
            (ColumnData::Char(values), "char") => {
                for (i, (got, v)) in values.iter().zip(vals).enumerate() {
                    assert_eq!(got, s(v), "{what} row {}", i + 1);
                }
            }
            (_, t) => panic!("{what}: read as the wrong type, want {t}"),
        }
    }
}

/// Reads `raw` 7 rows at a time and checks every value and missing code against `whole`
/// (the same file read at once), then that the file holds no further member.
pub fn check_streams_in_small_batches(raw: &[u8], whole: &Dataset, file: &str) {
    let mut rd = XportReader::new(raw).expect("header");
    assert!(rd.next_member().expect("member").is_some(), "{file}");
    let mut rows = 0;
    while let Some(batch) = rd.read_batch(7).expect("batch") {
        for (c, b) in whole.columns.iter().zip(&batch) {
            for i in 0..b.data.len() {
                assert_eq!(c.text(rows + i), b.text(i), "{file} {}", c.name);
                assert_eq!(
                    c.missing_code(rows + i),
                    b.missing_code(i),
                    "{file} {}",
                    c.name
                );
            }
        }
        rows += batch[0].data.len();
    }
    assert_eq!(rows, whole.nrows(), "{file}");
    assert!(rd.next_member().expect("end").is_none(), "{file}");
}
