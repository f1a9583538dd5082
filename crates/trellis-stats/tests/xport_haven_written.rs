//! An XPORT v5 file written by R haven (`haven::write_xpt(version = 5)`; xportr writes
//! through it) against `reference/haven_write.R`: that script built the data frame, wrote
//! `reference/fixtures/haven_written/adsl_haven.xpt` and, from the data frame (not from the
//! file), `expected.json` with every column's name, label, type, length, format and every
//! value. Provenance and versions in `reference/fixtures/haven_written/README.md`.
mod common;
use common::expected_xport::*;
use common::*;
use trellis_stats::data::{ColumnData, Dataset, Missing, VarFormat};
use trellis_stats::xport::{XportReader, read_xport, write_xport};

const FILE: &str = "haven_written/adsl_haven.xpt";

fn expected() -> serde_json::Value {
    let s = std::fs::read_to_string(fixture("haven_written/expected.json"))
        .expect("reference/fixtures/haven_written/expected.json");
    serde_json::from_str(&s).expect("expected.json parses")
}

fn bytes() -> Vec<u8> {
    std::fs::read(fixture(FILE)).expect("fixture file")
}

fn read() -> Dataset {
    let mut all = read_xport(&bytes()[..]).expect("haven file reads");
    assert_eq!(all.len(), 1, "one member");
    all.remove(0)
}

/// Every value of `a` and `b` equal: numbers bit for bit, missing values by code.
fn assert_same_data(a: &Dataset, b: &Dataset, what: &str) {
    assert_eq!(a.columns.len(), b.columns.len(), "{what}: columns");
    for (x, y) in a.columns.iter().zip(&b.columns) {
        assert_eq!(x.name, y.name, "{what}");
        assert_eq!(x.data.len(), y.data.len(), "{what} {}", x.name);
        match (&x.data, &y.data) {
            (ColumnData::Numeric { values: va, .. }, ColumnData::Numeric { values: vb, .. }) => {
                for (i, (p, q)) in va.iter().zip(vb).enumerate() {
                    if p.is_nan() || q.is_nan() {
                        assert!(p.is_nan() && q.is_nan(), "{what} {} row {}", x.name, i + 1);
                        assert_eq!(x.missing_code(i), y.missing_code(i), "{what} {}", x.name);
                    } else {
                        assert_eq!(p.to_bits(), q.to_bits(), "{what} {} row {}", x.name, i + 1);
                    }
                }
            }
            (ColumnData::Char(va), ColumnData::Char(vb)) => assert_eq!(va, vb, "{what}"),
            _ => panic!("{what} {}: types differ", x.name),
        }
    }
}

#[test]
fn haven_adsl_every_name_label_type_length_format_and_value() {
    let want = expected();
    let raw = bytes();
    let rd = XportReader::new(&raw[..]).expect("library header reads");
    // ReadStat's header strings (the same as pyreadstat's, see ../adtte_pyreadstat.xpt)
    assert_eq!(rd.library_meta().sas_version, "6.06");
    assert_eq!(rd.library_meta().os, "bsd4.2");

    let ds = read();
    assert_eq!(ds.name, s(&want["member"]["name"]));
    assert_eq!(ds.label, s(&want["member"]["label"]));
    assert_eq!(ds.ds_type, "");
    assert_eq!(ds.nrows() as u64, u(&want["rows"]));
    check_columns(&ds, &want["columns"], FILE);
}

#[test]
fn haven_special_missing_values_are_a_and_z() {
    // haven::tagged_na("A") / ("Z") are written as SAS .A / .Z; a plain NA as `.`.
    let ds = read();
    let w = ds.column("WEIGHTBL").expect("WEIGHTBL");
    assert_eq!(w.missing_code(3), Some(Missing::Dot));
    assert_eq!(w.missing_code(8), Some(Missing::Letter(b'A')));
    assert_eq!(w.missing_code(20), Some(Missing::Letter(b'Z')));
    let x = ds.column("XVAL").expect("XVAL");
    assert_eq!(x.missing_code(25), Some(Missing::Dot));
    assert_eq!(x.missing_code(26), Some(Missing::Letter(b'A')));
    assert_eq!(x.missing_code(27), Some(Missing::Letter(b'Z')));
    let special = |name: &str| match &ds.column(name).expect("column").data {
        ColumnData::Numeric { special, .. } => special.clone(),
        ColumnData::Char(_) => panic!("{name} is numeric"),
    };
    assert_eq!(
        special("WEIGHTBL"),
        [(8, Missing::Letter(b'A')), (20, Missing::Letter(b'Z'))]
    );
    assert_eq!(
        special("XVAL"),
        [(26, Missing::Letter(b'A')), (27, Missing::Letter(b'Z'))]
    );
    assert!(special("BMIBL").is_empty());
}

#[test]
fn haven_dates_extremes_text_and_formats() {
    let ds = read();
    let num = |c: &str, i: usize| ds.numeric(c).expect("numeric")[i];
    let text = |c: &str, i: usize| ds.column(c).expect("column").text(i);
    let fmt = |c: &str| ds.column(c).expect("column").format.clone();
    let vf = |name: &str, width: u16, decimals: u16| VarFormat {
        name: name.into(),
        width,
        decimals,
    };
    // dates as SAS day numbers (1960-01-01 = 0), datetimes as SAS seconds
    assert_eq!(fmt("TRTSDT"), vf("DATE", 9, 0));
    assert_eq!(fmt("TRTEDT"), vf("DATE", 0, 0)); // haven's format for a Date without one
    assert_eq!(fmt("TRTSDTM"), vf("DATETIME", 20, 0));
    assert_eq!(fmt("BMIBL"), vf("", 8, 2));
    assert_eq!(fmt("USUBJID"), vf("$", 20, 0));
    assert_eq!(fmt("RACE"), VarFormat::default());
    assert!(num("TRTSDT", 0) >= 19725.0); // 2014-01-02 or later
    assert!(num("TRTEDT", 2).is_nan() && num("TRTEDT", 16).is_nan());
    assert_eq!(
        num("TRTSDTM", 0).rem_euclid(86_400.0).div_euclid(3600.0),
        8.0
    );
    assert_eq!(num("TRTSDTM", 0).div_euclid(86_400.0), num("TRTSDT", 0));
    assert_eq!(num("XVAL", 0), 1e-70);
    assert_eq!(num("XVAL", 1), 1e70);
    assert_eq!(num("XVAL", 3), -1e70);
    assert_eq!(num("XVAL", 5), 9e74);
    assert_eq!(num("XVAL", 18), 2e-78);
    assert_eq!(num("XVAL", 20), 16f64.powi(-64));
    assert_eq!(num("XVAL", 17), 1e15 + 0.5);
    assert_eq!(num("XVAL", 15), 1.0 + f64::EPSILON);
    // the 40-character label, a 200-byte value, UTF-8, leading blanks, NA as blanks
    assert_eq!(
        ds.column("RACE").expect("RACE").label,
        "Race of the Subject as Collected on eCRF"
    );
    assert_eq!(ds.column("COMM").expect("COMM").length, 200);
    assert_eq!(text("COMM", 0), "0123456789".repeat(20));
    assert_eq!(text("COMM", 1), "");
    assert_eq!(text("COMM", 3), "  leading blanks");
    assert_eq!(text("SITE", 0), "Zürich");
    assert_eq!(ds.column("SITE").expect("SITE").length, "Zürich".len());
    assert_eq!(text("USUBJID", 0), "01-701-1001");
    assert_eq!(ds.column("USUBJID").expect("USUBJID").length, 20);
}

#[test]
fn haven_writes_the_format_as_informat_too() {
    // ReadStat 1.1.8 copies the format into the informat fields and marks every numeric
    // format right-justified (1), character formats left (0).
    let ds = read();
    for c in &ds.columns {
        assert_eq!(c.informat, c.format, "{}", c.name);
        assert_eq!(c.format_justify, u16::from(c.is_numeric()), "{}", c.name);
    }
}

#[test]
fn haven_file_streams_in_small_batches() {
    check_streams_in_small_batches(&bytes(), &read(), "adsl_haven.xpt");
}

#[test]
fn haven_file_round_trips_through_our_writer() {
    let raw = bytes();
    let ds = read();
    let mut out = Vec::new();
    write_xport(&mut out, &[&ds]).expect("writes");
    let back = read_xport(&out[..]).expect("re-reads").remove(0);
    assert_same_data(&ds, &back, "re-read");
    for (a, b) in ds.columns.iter().zip(&back.columns) {
        assert_eq!(
            (&a.label, &a.format, &a.informat, a.format_justify, a.length),
            (&b.label, &b.format, &b.informat, b.format_justify, b.length),
            "{}",
            a.name
        );
    }
    assert_eq!(
        (&ds.name, &ds.label, &ds.ds_type, &ds.meta),
        (&back.name, &back.label, &back.ds_type, &back.meta)
    );
    // and the bytes are haven's own, headers and timestamps included
    assert_eq!(out.len(), raw.len(), "length");
    if let Some(p) = out.iter().zip(&raw).position(|(a, b)| a != b) {
        panic!(
            "first difference at byte {p} (record {}): wrote {:?}, haven wrote {:?}",
            p / 80 + 1,
            String::from_utf8_lossy(&out[p / 80 * 80..p / 80 * 80 + 80]),
            String::from_utf8_lossy(&raw[p / 80 * 80..p / 80 * 80 + 80]),
        );
    }
}
