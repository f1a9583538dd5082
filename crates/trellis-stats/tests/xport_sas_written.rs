//! XPORT v5 files written by SAS itself (reference/fixtures/sas_written/, provenance in its
//! README.md) against `reference/xport_sas_reference.py`: pyreadstat's reading of every
//! column's name, label, type, length, format and every value, checked there against a
//! TS-140 decoder of its own and pandas.
mod common;
use common::expected_xport::*;
use common::*;
use trellis_stats::data::{Dataset, Missing, VarFormat};
use trellis_stats::xport::{XportReader, read_xport, write_xport};

fn expected() -> serde_json::Value {
    let s = std::fs::read_to_string(fixture("sas_written/expected.json"))
        .expect("reference/fixtures/sas_written/expected.json");
    serde_json::from_str(&s).expect("expected.json parses")
}

fn file_entry(name: &str) -> serde_json::Value {
    expected()["files"]
        .as_array()
        .expect("files array")
        .iter()
        .find(|f| f["file"] == name)
        .unwrap_or_else(|| panic!("{name} not in expected.json"))
        .clone()
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("sas_written/{name}"))).expect("fixture file")
}

/// Reads `name` and compares it with its entry in expected.json, field by field and value
/// by value (numbers bit for bit). Returns the dataset for further checks.
fn check_file(name: &str) -> Dataset {
    let want = file_entry(name);
    let raw = bytes(name);
    let rd = XportReader::new(&raw[..]).expect("library header reads");
    let lib = rd.library_meta();
    let wl = &want["library"];
    assert_eq!(
        lib.sas_version,
        s(&wl["sas_version"]),
        "{name}: library SAS version"
    );
    assert_eq!(lib.os, s(&wl["os"]), "{name}: library OS");
    assert_eq!(lib.created, s(&wl["created"]), "{name}: library created");
    assert_eq!(lib.modified, s(&wl["modified"]), "{name}: library modified");

    let mut all = read_xport(&raw[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(all.len(), 1, "{name}: one member");
    let ds = all.remove(0);
    let wm = &want["member"];
    assert_eq!(ds.name, s(&wm["name"]), "{name}: member name");
    assert_eq!(ds.label, s(&wm["label"]), "{name}: member label");
    assert_eq!(ds.ds_type, s(&wm["type"]), "{name}: member type");
    assert_eq!(ds.meta.sas_version, s(&wm["sas_version"]), "{name}");
    assert_eq!(ds.meta.os, s(&wm["os"]), "{name}");
    assert_eq!(ds.meta.created, s(&wm["created"]), "{name}");
    assert_eq!(ds.meta.modified, s(&wm["modified"]), "{name}");
    assert_eq!(ds.nrows() as u64, u(&want["rows"]), "{name}: rows");

    check_columns(&ds, &want["columns"], name);
    ds
}

fn num(ds: &Dataset, col: &str, row: usize) -> f64 {
    ds.numeric(col).expect("numeric column")[row]
}

fn text(ds: &Dataset, col: &str, row: usize) -> String {
    ds.column(col).expect("column").text(row)
}

#[test]
fn nhanes_sshsv1_a_sas_9_1_windows_xp() {
    let ds = check_file("SSHSV1_A.xpt");
    assert_eq!(ds.meta.sas_version, "9.1");
    assert_eq!(ds.nrows(), 1426);
    assert_eq!(
        ds.column("SEQN").expect("SEQN").label,
        "Respondent sequence number"
    );
    assert_eq!(ds.column("SSXHE1").expect("SSXHE1").label, "Herpes I");
    assert_eq!(num(&ds, "SEQN", 0), 3.0);
    assert_eq!(num(&ds, "SSXHE1", 0), 2.0);
    assert_eq!(num(&ds, "SEQN", 1), 8.0);
    assert_eq!(num(&ds, "SSXHE1", 1), 1.0);
}

#[test]
fn nhanes_paxraw_short_numeric_lengths_sas_9_3_linux() {
    let ds = check_file("paxraw_d_short.xpt");
    assert_eq!(
        (ds.meta.sas_version.as_str(), ds.meta.os.as_str()),
        ("9.3", "Linux")
    );
    assert_eq!(ds.name, "PAXRAWS");
    // SAS stored these numbers in 5 and 6 bytes (observation length 49)
    let lengths: Vec<usize> = ds.columns.iter().map(|c| c.length).collect();
    assert_eq!(lengths, [6, 5, 5, 5, 6, 5, 5, 6, 6]);
    assert_eq!(ds.nrows(), 100);
    assert_eq!(num(&ds, "SEQN", 0), 31128.0);
    assert_eq!(num(&ds, "PAXINTEN", 0), 166.0);
    assert_eq!(num(&ds, "PAXSTEP", 0), 4.0);
    assert_eq!(num(&ds, "PAXN", 2), 3.0);
    assert_eq!(num(&ds, "PAXMINUT", 2), 2.0);
    assert_eq!(num(&ds, "PAXHOUR", 0).to_bits(), 0.0f64.to_bits());
}

#[test]
fn alfalfa_sas_9_4_windows_server() {
    let ds = check_file("Alfalfa.xpt");
    assert_eq!(ds.name, "SPEC");
    assert_eq!(ds.meta.os, "X64_DS12");
    assert_eq!(ds.nrows(), 40);
    // first row, as xport-js's own test reads it
    assert_eq!(text(&ds, "POP", 0), "min");
    assert_eq!(num(&ds, "SAMPLE", 0), 0.0);
    assert_eq!(num(&ds, "REP", 0), 1.0);
    assert_eq!(num(&ds, "SEEDWT", 0), 64.0);
    assert_eq!(num(&ds, "HARV1", 0), 171.7);
    assert_eq!(num(&ds, "HARV2", 0), 180.3);
    assert_eq!(num(&ds, "HARV1", 1), 138.2);
}

#[test]
fn cdisc_pilot_adtte_sas_9_4_linux() {
    let ds = check_file("adtte.xpt");
    assert_eq!(ds.name, "ADTTE");
    assert_eq!(ds.nrows(), 254);
    assert_eq!(ds.columns.len(), 26);
    let usubjid = ds.column("USUBJID").expect("USUBJID");
    assert_eq!(usubjid.label, "Unique Subject Identifier");
    assert_eq!(usubjid.length, 11);
    assert_eq!(
        usubjid.format,
        VarFormat {
            name: "$".into(),
            width: 11,
            decimals: 0
        }
    );
    assert_eq!(text(&ds, "USUBJID", 0), "01-701-1015");
    assert_eq!(text(&ds, "STUDYID", 0), "CDISCPILOT01");
    assert_eq!(text(&ds, "TRTA", 2), "Xanomeline High Dose");
    assert_eq!(text(&ds, "PARAMCD", 0), "TTDE");
    let trtsdt = ds.column("TRTSDT").expect("TRTSDT");
    assert_eq!(
        trtsdt.format,
        VarFormat {
            name: "DATE".into(),
            width: 9,
            decimals: 0
        }
    );
    assert_eq!(num(&ds, "TRTSDT", 0), 19725.0); // 2014-01-02 in SAS days
    assert_eq!(num(&ds, "AVAL", 0), 2.0);
    assert_eq!(num(&ds, "CNSR", 0), 0.0);
    // SRCSEQ is missing (.) for the censored records
    let srcseq = ds.column("SRCSEQ").expect("SRCSEQ");
    let n_missing = (0..ds.nrows())
        .filter(|&i| srcseq.missing_code(i) == Some(Missing::Dot))
        .count();
    assert_eq!(n_missing, 102);
    let cnsr = ds.numeric("CNSR").expect("CNSR");
    let srcseq_v = ds.numeric("SRCSEQ").expect("SRCSEQ");
    for (i, (&c, &s)) in cnsr.iter().zip(srcseq_v).enumerate() {
        if s.is_nan() {
            assert_eq!(c, 1.0, "row {}: missing SRCSEQ on an event", i + 1);
        }
    }
}

#[test]
fn econ_sas_9_3_windows_7_namestrs_fill_whole_records() {
    // 4 NAMESTRs are exactly 7 records: no NAMESTR padding before the OBS header.
    let ds = check_file("econ.xpt");
    assert_eq!(ds.name, "ECON");
    assert_eq!(
        (ds.meta.sas_version.as_str(), ds.meta.os.as_str()),
        ("9.3", "W32_7PRO")
    );
    assert_eq!(ds.nrows(), 6);
    assert_eq!(text(&ds, "VIT_STAT", 0), "ALIVE");
    assert_eq!(text(&ds, "ECON", 0), "POOR");
    assert_eq!(num(&ds, "COUNT", 0), 1216.0);
    assert_eq!(num(&ds, "TEMP", 0), 98.6);
}

const FILES: [&str; 5] = [
    "SSHSV1_A.xpt",
    "paxraw_d_short.xpt",
    "Alfalfa.xpt",
    "adtte.xpt",
    "econ.xpt",
];

#[test]
fn every_reference_file_is_tested() {
    let listed: Vec<String> = expected()["files"]
        .as_array()
        .expect("files array")
        .iter()
        .map(|f| s(&f["file"]).to_string())
        .collect();
    assert_eq!(listed, FILES);
}

#[test]
fn sas_files_stream_in_small_batches() {
    for name in FILES {
        let raw = bytes(name);
        let whole = read_xport(&raw[..]).expect("reads").remove(0);
        check_streams_in_small_batches(&raw, &whole, name);
    }
}

#[test]
fn sas_files_rewrite_byte_for_byte() {
    // Read then written back, each file is identical to what SAS wrote: same headers,
    // NAMESTRs, IBM bytes (5- and 6-byte numbers too) and blank padding. The one exception
    // is the 8-byte OS name in the library and member headers: SAS pads it with NULs
    // ("Linux\0\0\0", and "XP_PRO\0N" from SAS 9.1), the reader drops trailing NULs and
    // the writer pads with blanks.
    for name in FILES {
        let mut raw = bytes(name);
        let ds = read_xport(&raw[..]).expect("reads").remove(0);
        let mut out = Vec::new();
        write_xport(&mut out, &[&ds]).expect("writes");
        for rec in [1, 5] {
            for b in [&mut raw, &mut out] {
                for c in &mut b[rec * 80 + 32..rec * 80 + 40] {
                    if *c == 0 {
                        *c = b' ';
                    }
                }
            }
        }
        assert_eq!(out.len(), raw.len(), "{name}: length");
        if let Some(p) = out.iter().zip(&raw).position(|(a, b)| a != b) {
            panic!(
                "{name}: first difference at byte {p} (record {}): wrote {:?}, SAS wrote {:?}",
                p / 80 + 1,
                String::from_utf8_lossy(&out[p / 80 * 80..p / 80 * 80 + 80]),
                String::from_utf8_lossy(&raw[p / 80 * 80..p / 80 * 80 + 80]),
            );
        }
    }
}
