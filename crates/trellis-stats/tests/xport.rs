//! XPORT v5: known encodings, files from other tools, round trips, errors with offsets.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use proptest::prelude::*;
use trellis_stats::data::{Column, ColumnData, Dataset, Missing, VarFormat, read_csv};
use trellis_stats::xport::{XportReader, ibm_to_ieee, ieee_to_ibm, read_xport, write_xport};

#[test]
fn ibm_known_encodings() {
    // Values from the SAS technical note on the transport format.
    assert_eq!(ieee_to_ibm(1.0).unwrap(), [0x41, 0x10, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ieee_to_ibm(-1.0).unwrap(), [0xC1, 0x10, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ieee_to_ibm(0.5).unwrap(), [0x40, 0x80, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ieee_to_ibm(100.0).unwrap(), [0x42, 0x64, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ieee_to_ibm(0.0).unwrap(), [0; 8]);
    assert_eq!(ibm_to_ieee(&[0x42, 0x64, 0, 0, 0, 0, 0, 0]), 100.0);
    assert_eq!(ibm_to_ieee(&[0xC2, 0x64]), -100.0);
    assert!(ieee_to_ibm(1e80).is_none());
    assert!(ieee_to_ibm(1e-80).is_none());
    assert!(ieee_to_ibm(f64::NAN).is_none());
    // 0.1 is not exact in either base; round trip must still be exact
    let b = ieee_to_ibm(0.1).unwrap();
    assert_eq!(ibm_to_ieee(&b).to_bits(), 0.1f64.to_bits());
    // largest/smallest magnitudes in range
    for x in [7.2e75, 5.4e-79, -7.2e75, f64::MIN_POSITIVE * 1e230] {
        let b = ieee_to_ibm(x).unwrap();
        assert_eq!(ibm_to_ieee(&b).to_bits(), x.to_bits(), "{x}");
    }
}

#[test]
fn reads_pyreadstat_file_with_labels_and_missing() {
    let x = load("adtte_pyreadstat.xpt");
    let c = load("adtte_pyreadstat.csv");
    assert_eq!(x.name, "ADTTE");
    assert_eq!(x.nrows(), 60);
    assert_eq!(
        x.column("USUBJID").unwrap().label,
        "Unique Subject Identifier"
    );
    assert_eq!(x.column("AGE").unwrap().label, "Age");
    for name in ["AVAL", "CNSR", "AGE", "X1"] {
        let a = x.numeric(name).unwrap();
        let b = c.numeric(name).unwrap();
        for (u, v) in a.iter().zip(b) {
            assert!(
                u.to_bits() == v.to_bits() || (u.is_nan() && v.is_nan()),
                "{name}: {u} vs {v}"
            );
        }
    }
    assert!(x.numeric("AGE").unwrap()[3].is_nan());
    assert_eq!(x.labels("TRT01A").unwrap(), c.labels("TRT01A").unwrap());
    assert_eq!(x.labels("USUBJID").unwrap(), c.labels("USUBJID").unwrap());
}

fn sample() -> Dataset {
    let mut num = Column::numeric("AVAL", vec![1.0, f64::NAN, -3.25, f64::NAN, 1e-70, 6.02e23]);
    num.label = "Analysis Value".into();
    num.format = VarFormat {
        name: "BEST".into(),
        width: 12,
        decimals: 0,
    };
    if let ColumnData::Numeric { special, .. } = &mut num.data {
        special.push((3, Missing::Letter(b'Z')));
    }
    let mut ch = Column::character(
        "TRT",
        vec![
            "Placebo".into(),
            "".into(),
            "Drug A".into(),
            "é ü".into(),
            "x".into(),
            "y".into(),
        ],
    );
    ch.informat = VarFormat {
        name: "$CHAR".into(),
        width: 20,
        decimals: 0,
    };
    Dataset {
        name: "ADTTE".into(),
        label: "Time to event".into(),
        columns: vec![num, ch],
        ..Default::default()
    }
}

fn same(a: &Dataset, b: &Dataset) {
    assert_eq!(a.name, b.name);
    assert_eq!(a.label, b.label);
    assert_eq!(a.columns.len(), b.columns.len());
    for (x, y) in a.columns.iter().zip(&b.columns) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.label, y.label);
        assert_eq!(x.format, y.format);
        assert_eq!(x.informat, y.informat);
        match (&x.data, &y.data) {
            (
                ColumnData::Numeric {
                    values: v1,
                    special: s1,
                },
                ColumnData::Numeric {
                    values: v2,
                    special: s2,
                },
            ) => {
                assert_eq!(v1.len(), v2.len());
                for (p, q) in v1.iter().zip(v2) {
                    assert!(
                        p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()),
                        "{p} vs {q}"
                    );
                }
                assert_eq!(s1, s2);
            }
            (ColumnData::Char(c1), ColumnData::Char(c2)) => assert_eq!(c1, c2),
            _ => panic!("type changed for {}", x.name),
        }
    }
}

#[test]
fn round_trip_with_metadata_and_special_missing() {
    let ds = sample();
    let mut buf = Vec::new();
    write_xport(&mut buf, &[&ds, &ds]).unwrap();
    assert_eq!(buf.len() % 80, 0);
    let back = read_xport(&buf[..]).unwrap();
    assert_eq!(back.len(), 2);
    same(&ds, &back[0]);
    same(&ds, &back[1]);
    // the file re-writes byte-identically (timestamps are kept)
    let mut buf2 = Vec::new();
    write_xport(&mut buf2, &[&back[0], &back[1]]).unwrap();
    assert_eq!(buf, buf2);
}

#[test]
fn streaming_batches_equal_whole_read() {
    let n = 1000;
    let ds = Dataset {
        name: "BIG".into(),
        columns: vec![
            Column::numeric("A", (0..n).map(|i| i as f64 * 0.37).collect()),
            Column::character("B", (0..n).map(|i| format!("v{}", i % 7)).collect()),
        ],
        ..Default::default()
    };
    let mut buf = Vec::new();
    write_xport(&mut buf, &[&ds]).unwrap();
    let mut r = XportReader::new(&buf[..]).unwrap();
    assert!(r.next_member().unwrap().is_some());
    let mut rows = 0;
    let mut a = Vec::new();
    while let Some(b) = r.read_batch(97).unwrap() {
        rows += b[0].data.len();
        if let ColumnData::Numeric { values, .. } = &b[0].data {
            a.extend_from_slice(values);
        }
    }
    assert_eq!(rows, n);
    assert_eq!(a, ds.numeric("A").unwrap());
    assert!(r.next_member().unwrap().is_none());
}

#[test]
fn errors_name_record_and_offset() {
    let ds = sample();
    let mut buf = Vec::new();
    write_xport(&mut buf, &[&ds]).unwrap();
    // corrupt the OBS header (record 8 + 3 NAMESTR records = record 11 is OBS? find it)
    let pos = buf
        .windows(20)
        .position(|w| w == b"HEADER RECORD*******O")
        .unwrap_or(0);
    let obs_pos = buf
        .chunks(80)
        .position(|c| c.starts_with(b"HEADER RECORD*******OBS"))
        .unwrap();
    let _ = pos;
    let mut bad = buf.clone();
    bad[obs_pos * 80 + 20] = b'X';
    let e = read_xport(&bad[..]).unwrap_err().to_string();
    assert!(e.contains(&format!("record {}", obs_pos + 1)), "{e}");
    assert!(e.contains(&format!("byte offset {}", obs_pos * 80)), "{e}");
    // truncated inside data
    let e = read_xport(&buf[..buf.len() - 30]).unwrap_err().to_string();
    assert!(e.contains("truncated") && e.contains("byte offset"), "{e}");
    // version 8 files are named as such
    let mut v8 = buf.clone();
    v8[20..28].copy_from_slice(b"LIBV8   ");
    let e = read_xport(&v8[..]).unwrap_err().to_string();
    assert!(e.contains("version 8") && e.contains("record 1"), "{e}");
    // not an XPORT file
    let e = read_xport(&b"hello"[..]).unwrap_err().to_string();
    assert!(e.contains("record 1"), "{e}");
    // bad variable type in NAMESTR
    let mut bad = buf.clone();
    let ns = buf
        .chunks(80)
        .position(|c| c.starts_with(b"HEADER RECORD*******NAMESTR"))
        .unwrap()
        + 1;
    bad[ns * 80 + 1] = 7;
    let e = read_xport(&bad[..]).unwrap_err().to_string();
    assert!(
        e.contains("unknown variable type 7") && e.contains(&format!("record {}", ns + 1)),
        "{e}"
    );
}

#[test]
fn write_refuses_what_v5_cannot_hold() {
    let mut ds = sample();
    ds.columns[0].name = "TOOLONGNAME".into();
    assert!(
        write_xport(Vec::new(), &[&ds])
            .unwrap_err()
            .to_string()
            .contains("TOOLONGNAME")
    );
    let mut ds = sample();
    ds.columns[0].label = "x".repeat(41);
    assert!(write_xport(Vec::new(), &[&ds]).is_err());
    let ds = Dataset {
        name: "D".into(),
        columns: vec![Column::numeric("X", vec![1e300])],
        ..Default::default()
    };
    let e = write_xport(Vec::new(), &[&ds]).unwrap_err().to_string();
    assert!(e.contains("IBM") && e.contains("row 1"), "{e}");
}

#[test]
fn csv_special_missing_round_trips_through_xport() {
    let csv = "ID,V,C\n1,2.5,a\n2,.A,b\n3,,c\n4,._,\n";
    let ds = read_csv(csv.as_bytes(), "T").unwrap();
    assert_eq!(
        ds.column("V").unwrap().missing_code(1),
        Some(Missing::Letter(b'A'))
    );
    assert_eq!(ds.column("V").unwrap().missing_code(2), Some(Missing::Dot));
    assert_eq!(
        ds.column("V").unwrap().missing_code(3),
        Some(Missing::Underscore)
    );
    let mut buf = Vec::new();
    write_xport(&mut buf, &[&ds]).unwrap();
    let back = read_xport(&buf[..]).unwrap().remove(0);
    same(&ds, &back);
    let mut out = Vec::new();
    trellis_stats::data::write_csv(&mut out, &back).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "ID,V,C\n1,2.5,a\n2,.A,b\n3,,c\n4,._,\n"
    );
}

fn arb_value() -> impl Strategy<Value = (f64, Option<Missing>)> {
    prop_oneof![
        6 => any::<f64>()
            .prop_filter("in IBM range", |x| x.is_finite() && (*x == 0.0 || (x.abs() > 6e-79 && x.abs() < 7e75)))
            .prop_map(|x| (x, None)),
        1 => (-1e6f64..1e6).prop_map(|x| (x, None)),
        1 => prop_oneof![
            Just(Missing::Dot),
            Just(Missing::Underscore),
            (b'A'..=b'Z').prop_map(Missing::Letter)
        ]
        .prop_map(|m| (f64::NAN, Some(m))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ibm_round_trip_is_exact(x in any::<f64>()) {
        if let Some(b) = ieee_to_ibm(x) {
            prop_assert_eq!(ibm_to_ieee(&b).to_bits(), x.to_bits());
        } else {
            prop_assert!(!x.is_finite() || x.abs() > 7e75 || x.abs() < 6e-79);
        }
    }

    #[test]
    fn dataset_round_trip(
        vals in proptest::collection::vec(arb_value(), 0..60),
        texts in proptest::collection::vec("[ -~]{0,12}[!-~]|", 0..60),
        label in "[ -~]{0,40}",
    ) {
        let n = vals.len().min(texts.len());
        let mut special = Vec::new();
        let mut values = Vec::new();
        for (i, (x, m)) in vals.iter().take(n).enumerate() {
            values.push(*x);
            if let Some(m) = m && *m != Missing::Dot { special.push((i, *m)); }
        }
        let mut num = Column::numeric("X", values);
        num.label = label.trim_end().to_string();
        if let ColumnData::Numeric { special: s, .. } = &mut num.data { *s = special; }
        let ch = Column::character("S", texts.iter().take(n).cloned().collect());
        let ds = Dataset { name: "P".into(), columns: vec![num, ch], ..Default::default() };
        let mut buf = Vec::new();
        write_xport(&mut buf, &[&ds]).unwrap();
        let back = read_xport(&buf[..]).unwrap().remove(0);
        same(&ds, &back);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Mutation fuzzing on stable Rust: corrupted files never panic, they read or give an error.
    #[test]
    fn corrupted_files_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let ds = sample();
        let mut buf = Vec::new();
        write_xport(&mut buf, &[&ds, &ds]).unwrap();
        for (i, b) in edits {
            let k = i.index(buf.len());
            buf[k] = b;
        }
        if do_cut {
            let k = cut.index(buf.len());
            buf.truncate(k);
        }
        let _ = read_xport(&buf[..]);
    }
}
