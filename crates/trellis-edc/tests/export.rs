//! Per-form and wide CSV exports of captured values.

use trellis_edc::StudyDesign;
use trellis_edc::export::{ExportSubject, form_table, wide_table};

const CARDIO: &str = include_str!("cardio_1_3_2.xml");

fn design() -> StudyDesign {
    let odm = trellis_odm::read_str(CARDIO).expect("fixture imports").odm;
    StudyDesign::build(&odm.studies[0], "MDV.1").expect("design builds")
}

fn vals(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
        .collect()
}

#[test]
fn a_form_has_a_row_per_instance_with_columns_in_definition_order() {
    let d = design();
    let a = vals(&[
        ("SE.BASELINE[1]/F.VS[1]/IG.VS[1]/I.SYSBP", Some("128")),
        ("SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.DIABP", Some("80")),
        ("SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP", Some("130")),
        ("SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.SEX", Some("F")),
        // a cleared value is not a row of its own
        ("SE.WEEK4[1]/F.VS[1]/IG.VS[1]/I.SYSBP", None),
    ]);
    let b = vals(&[(
        "SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.TEMP",
        Some("36.6, \"oral\""),
    )]);
    let subjects = [
        ExportSubject {
            site: "DE-01",
            screening_number: "S-001",
            status: "screening",
            values: &a,
        },
        ExportSubject {
            site: "US-01",
            screening_number: "S-002",
            status: "enrolled",
            values: &b,
        },
    ];
    let t = form_table("ACME", &d, "F.VS", &subjects).expect("table");
    assert_eq!(
        t.header,
        [
            "study",
            "site",
            "subject",
            "subject_status",
            "event",
            "event_repeat",
            "form_repeat",
            "I.VSDAT",
            "I.SYSBP",
            "I.DIABP",
            "I.WEIGHT",
            "I.TEMP",
            "I.BMI"
        ]
    );
    assert_eq!(t.rows.len(), 3, "{:?}", t.rows);
    // instances in address order: SE.BASELINE before SE.SCREEN for S-001
    assert_eq!(t.rows[0][4], "SE.BASELINE");
    assert_eq!(t.rows[0][8], "128");
    assert_eq!(t.rows[1][4], "SE.SCREEN");
    assert_eq!(&t.rows[1][7..10], ["", "130", "80"]);
    assert_eq!(t.rows[2][2], "S-002");
    assert_eq!(t.rows[2][11], "36.6, \"oral\"");
    let csv = t.to_csv_string().expect("csv");
    assert!(csv.contains("\"36.6, \"\"oral\"\"\""), "{csv}");
    assert!(csv.ends_with("\r\n"));
    assert_eq!(csv.lines().count(), 4);
}

#[test]
fn a_log_form_has_a_row_per_group_repeat() {
    let d = design();
    let a = vals(&[
        ("SE.AE[1]/F.AE[1]/IG.AE[2]/I.AETERM", Some("Nausea")),
        ("SE.AE[1]/F.AE[1]/IG.AE[1]/I.AETERM", Some("Headache")),
        ("SE.AE[1]/F.AE[1]/IG.AE[1]/I.AESEV", Some("MILD")),
    ]);
    let subjects = [ExportSubject {
        site: "DE-01",
        screening_number: "S-001",
        status: "enrolled",
        values: &a,
    }];
    let t = form_table("ACME", &d, "F.AE", &subjects).expect("table");
    assert_eq!(t.header[7], "group_repeat");
    assert_eq!(
        &t.header[8..],
        ["I.AETERM", "I.AESTDAT", "I.AESEV", "I.AESER"]
    );
    assert_eq!(t.rows.len(), 2);
    assert_eq!(&t.rows[0][7..], ["1", "Headache", "", "MILD", ""]);
    assert_eq!(&t.rows[1][7..], ["2", "Nausea", "", "", ""]);
}

#[test]
fn unknown_forms_are_an_error_and_unknown_items_are_kept() {
    let d = design();
    let err = form_table("ACME", &d, "F.NOPE", &[]).expect_err("unknown form");
    assert_eq!(err.code(), "unknown_form");
    // An item from an earlier version that this design no longer has still exports.
    let a = vals(&[
        ("SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.OLDITEM", Some("x")),
        ("SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.SEX", Some("M")),
    ]);
    let subjects = [ExportSubject {
        site: "DE-01",
        screening_number: "S-001",
        status: "screening",
        values: &a,
    }];
    let t = form_table("ACME", &d, "F.DM", &subjects).expect("table");
    assert_eq!(t.header.last().map(String::as_str), Some("I.OLDITEM"));
    assert_eq!(t.rows[0].last().map(String::as_str), Some("x"));
}

#[test]
fn the_wide_table_has_a_row_per_subject_and_a_column_per_address() {
    let d = design();
    let a = vals(&[
        ("SE.WEEK4[1]/F.VS[1]/IG.VS[1]/I.SYSBP", Some("120")),
        ("SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP", Some("130")),
        ("SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.SEX", Some("F")),
        ("SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.HEIGHT", None),
    ]);
    let b = vals(&[(
        "SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.BRTHDTC",
        Some("UN-UNK-1970"),
    )]);
    let no_data: Vec<(String, Option<String>)> = Vec::new();
    let subjects = [
        ExportSubject {
            site: "DE-01",
            screening_number: "S-001",
            status: "enrolled",
            values: &a,
        },
        ExportSubject {
            site: "DE-01",
            screening_number: "S-002",
            status: "screening",
            values: &b,
        },
        ExportSubject {
            site: "US-01",
            screening_number: "S-003",
            status: "screening",
            values: &no_data,
        },
    ];
    let t = wide_table("ACME", &d, &subjects);
    assert_eq!(
        &t.header[4..],
        [
            "SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.BRTHDTC",
            "SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.SEX",
            "SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP",
            "SE.WEEK4[1]/F.VS[1]/IG.VS[1]/I.SYSBP",
        ]
    );
    assert_eq!(t.rows.len(), 3);
    assert_eq!(&t.rows[0][4..], ["", "F", "130", "120"]);
    assert_eq!(&t.rows[1][4..], ["UN-UNK-1970", "", "", ""]);
    assert_eq!(&t.rows[2][..4], ["ACME", "US-01", "S-003", "screening"]);
    assert!(t.rows.iter().all(|r| r.len() == t.header.len()));
}
