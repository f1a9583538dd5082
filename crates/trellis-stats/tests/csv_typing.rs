//! CSV columns with bad cells: a column used as numbers (time, response, event, continuous
//! covariate) that holds text is an error naming the column, the CSV line and the value; it
//! is never turned into a categorical factor behind the user's back. Columns declared
//! categorical (`--factors`, `--by`) and genuinely textual columns keep working.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use trellis_stats::data::{TermKind, read_csv};

/// A copy of a fixture with some cells replaced: `(data row (0-based), column, value)`.
/// Returns the path and, for each edit, the CSV line it is on (header = line 1).
fn edited(
    dir: &Path,
    fixture_name: &str,
    out_name: &str,
    edits: &[(usize, &str, &str)],
) -> (PathBuf, Vec<u64>) {
    let text = std::fs::read_to_string(fixture(fixture_name)).expect("fixture");
    let mut lines: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let mut at = Vec::new();
    for &(row, col, value) in edits {
        let j = lines[0]
            .iter()
            .position(|h| h == col)
            .unwrap_or_else(|| panic!("no column {col}"));
        lines[row + 1][j] = value.to_string();
        at.push(row as u64 + 2);
    }
    let out: String = lines.iter().map(|l| l.join(",") + "\n").collect();
    let p = dir.join(out_name);
    std::fs::write(&p, out).expect("write edited CSV");
    (p, at)
}

fn err_of(args: &[&str]) -> String {
    format!("{:#}", stats(args).expect_err("expected an error"))
}

fn json_of(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("o.json");
    let mut a = args.to_vec();
    a.extend_from_slice(&["--out", path(&out)]);
    stats(&a).unwrap_or_else(|e| panic!("{e:#}"));
    serde_json::from_str(&std::fs::read_to_string(&out).expect("JSON")).expect("JSON parses")
}

#[test]
fn library_names_the_column_line_and_value() {
    // line 1 header; the record on lines 3-4 has a quoted line break, so "6O" is on line 5
    let csv = "ID,AGE,SEX,NOTE\n1,61,F,a\n2,70,M,\"two\nlines\"\n3,6O,F,c\n4,NA,M,d\n5,55,F,e\n";
    let ds = read_csv(csv.as_bytes(), "T").expect("read");
    assert!(!ds.column("AGE").expect("AGE").is_numeric());
    let e = ds.numeric("AGE").expect_err("AGE has text").to_string();
    assert!(
        e.contains("`AGE`") && e.contains("line 5 \"6O\"") && e.contains("1 of its 4"),
        "{e}"
    );
    // as a covariate: an error that points to --factors, never a silent factor
    let e = ds
        .term_kind("AGE", false, Some("--factors"))
        .expect_err("mostly numbers")
        .to_string();
    assert!(
        e.contains("line 5 \"6O\"") && e.contains("--factors"),
        "{e}"
    );
    // declared categorical: a factor
    assert_eq!(
        ds.term_kind("AGE", true, Some("--factors"))
            .expect("declared"),
        TermKind::Factor
    );
    // genuinely textual columns are factors, numeric ones continuous
    assert_eq!(
        ds.term_kind("SEX", false, None).expect("SEX"),
        TermKind::Factor
    );
    assert_eq!(
        ds.term_kind("ID", false, None).expect("ID"),
        TermKind::Continuous
    );
    // `NA` (R's missing value) is missing, not text
    let ok = "ID,AGE\n1,61\n2,NA\n3,.\n4,\n5,.A\n";
    let ds = read_csv(ok.as_bytes(), "T").expect("read");
    let age = ds.numeric("AGE").expect("AGE is numeric");
    assert_eq!(age[0], 61.0);
    assert!(age[1..].iter().all(|v| v.is_nan()));
}

#[test]
fn many_bad_cells_are_counted_and_the_first_five_shown() {
    let mut csv = String::from("X\n");
    for i in 0..20 {
        csv.push_str(&if i % 3 == 0 {
            format!("{i}x\n")
        } else {
            format!("{i}\n")
        });
    }
    let ds = read_csv(csv.as_bytes(), "T").expect("read");
    let e = ds.numeric("X").expect_err("text").to_string();
    assert!(
        e.contains("7 of its 20 non-missing values are not numbers")
            && e.contains("line 2 \"0x\"")
            && e.contains("line 14 \"12x\"")
            && !e.contains("\"15x\"")
            && e.contains("(the first 5)"),
        "{e}"
    );
}

#[test]
fn a_bad_cell_in_a_numeric_column_is_an_error_in_every_analysis() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tte, at) = edited(
        dir.path(),
        "adtte.csv",
        "bad.csv",
        &[(3, "AGE", "6O"), (9, "AVAL", "14.0x"), (20, "CNSR", "O")],
    );
    let d = path(&tte);
    let (age_line, aval_line, cnsr_line) = (at[0], at[1], at[2]);
    let age_cell = format!("line {age_line} \"6O\"");
    // time
    let e = err_of(&[
        "km", "--data", d, "--time", "AVAL", "--event", "SEXN", "--by", "TRT01A",
    ]);
    assert!(
        e.contains("`AVAL`") && e.contains(&format!("line {aval_line} \"14.0x\"")),
        "{e}"
    );
    // censoring column compared with a number: the bad row would silently be an event
    let e = err_of(&[
        "km", "--data", d, "--time", "AVALC", "--censor", "CNSR", "--by", "TRT01A",
    ]);
    assert!(
        e.contains("`CNSR`") && e.contains(&format!("line {cnsr_line} \"O\"")),
        "{e}"
    );
    // Cox covariate
    let e = err_of(&[
        "cox",
        "--data",
        d,
        "--time",
        "AVALC",
        "--event",
        "SEXN",
        "--by",
        "TRT01A",
        "--covariates",
        "AGE,SEX",
    ]);
    assert!(
        e.contains("`AGE`") && e.contains(&age_cell) && e.contains("list `AGE` in --factors"),
        "{e}"
    );
    // ANCOVA: response and continuous covariate
    let e = err_of(&[
        "ancova",
        "--data",
        d,
        "--response",
        "AVAL",
        "--by",
        "TRT01A",
        "--covariates",
        "X1",
    ]);
    assert!(e.contains("`AVAL`") && e.contains("14.0x"), "{e}");
    let e = err_of(&[
        "ancova",
        "--data",
        d,
        "--response",
        "AVALC",
        "--by",
        "TRT01A",
        "--covariates",
        "AGE,SEX",
    ]);
    assert!(
        e.contains("`AGE`") && e.contains(&age_cell) && e.contains("list `AGE` in --factors"),
        "{e}"
    );
    // logistic covariate and a 0/1 response with a bad cell
    let e = err_of(&[
        "logistic",
        "--data",
        d,
        "--response",
        "SEXN",
        "--covariates",
        "AGE",
    ]);
    assert!(e.contains("`AGE`") && e.contains(&age_cell), "{e}");
    let e = err_of(&[
        "logistic",
        "--data",
        d,
        "--response",
        "CNSR",
        "--covariates",
        "X1",
    ]);
    assert!(
        e.contains("`CNSR`") && e.contains(&format!("line {cnsr_line}")),
        "{e}"
    );
    // describe: AGE would otherwise be summarised as 60-odd categories
    let e = err_of(&[
        "describe", "--data", d, "--vars", "AGE,SEX", "--by", "TRT01A",
    ]);
    assert!(e.contains("`AGE`") && e.contains(&age_cell), "{e}");

    // MMRM covariate and response
    let mmrm_err = |data: &Path| {
        err_of(&[
            "mmrm",
            "--data",
            path(data),
            "--subject",
            "USUBJID",
            "--visit",
            "AVISIT",
            "--by",
            "TRT01P",
            "--response",
            "CHG",
            "--covariates",
            "BASE",
        ])
    };
    let (mm, at) = edited(
        dir.path(),
        "admmrm.csv",
        "base.csv",
        &[(7, "BASE", "51.6?")],
    );
    let e = mmrm_err(&mm);
    assert!(
        e.contains("`BASE`") && e.contains(&format!("line {} \"51.6?\"", at[0])),
        "{e}"
    );
    let (mm, at) = edited(dir.path(), "admmrm.csv", "chg.csv", &[(11, "CHG", "n/a")]);
    let e = mmrm_err(&mm);
    assert!(
        e.contains("`CHG`") && e.contains(&format!("line {} \"n/a\"", at[0])),
        "{e}"
    );
}

#[test]
fn declared_and_textual_factors_still_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tte, _) = edited(dir.path(), "adtte.csv", "bad.csv", &[(3, "AGE", "6O")]);
    let d = path(&tte);
    // AGE listed as a factor: a factor with "6O" as one of its levels, as asked
    let j = json_of(&[
        "ancova",
        "--data",
        d,
        "--response",
        "AVALC",
        "--by",
        "TRT01A",
        "--covariates",
        "AGE,SEX",
        "--factors",
        "AGE",
    ]);
    let type3 = j["type3"].as_array().expect("type3");
    let age = type3.iter().find(|t| t["term"] == "AGE").expect("AGE term");
    assert!(
        age["df"].as_u64().expect("df") > 10,
        "AGE as a factor: {age}"
    );
    let j = json_of(&[
        "describe",
        "--data",
        d,
        "--vars",
        "AGE",
        "--factors",
        "AGE",
        "--by",
        "TRT01A",
    ]);
    assert_eq!(j["variables"][0]["kind"], "categorical");
    // text columns as --by and as covariates (SEX, SITEID) are factors without being listed
    let j = json_of(&[
        "cox",
        "--data",
        d,
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--by",
        "TRT01A",
        "--covariates",
        "SEX,X1",
    ]);
    let terms: Vec<&str> = j["coefficients"]
        .as_array()
        .expect("coefficients")
        .iter()
        .map(|c| c["term"].as_str().expect("term"))
        .collect();
    assert_eq!(terms, ["TRT01A=Placebo", "SEX=M", "X1"]);
    // Cox --factors: a numeric column as indicators (STRAT 1-4 against level 1)
    let j = json_of(&[
        "cox",
        "--data",
        d,
        "--time",
        "AVAL",
        "--censor",
        "CNSR",
        "--covariates",
        "STRAT,X1",
        "--factors",
        "STRAT",
    ]);
    let terms: Vec<&str> = j["coefficients"]
        .as_array()
        .expect("coefficients")
        .iter()
        .map(|c| c["term"].as_str().expect("term"))
        .collect();
    assert_eq!(terms, ["STRAT=2", "STRAT=3", "STRAT=4", "X1"]);
    let eff = fixture("adeff.csv");
    let j = json_of(&[
        "ancova",
        "--data",
        path(&eff),
        "--response",
        "CHG",
        "--by",
        "TRT01P",
        "--covariates",
        "SITEID,BASE",
    ]);
    assert_eq!(j["type3"][2]["term"], "SITEID");
    assert_eq!(j["type3"][2]["df"], 4);
    // the clean file still gives the reference answer (AGE continuous, 1 df)
    let clean = fixture("adtte.csv");
    let j = json_of(&[
        "ancova",
        "--data",
        path(&clean),
        "--response",
        "AVALC",
        "--by",
        "TRT01A",
        "--covariates",
        "AGE,SEX",
    ]);
    let age = j["type3"]
        .as_array()
        .expect("type3")
        .iter()
        .find(|t| t["term"] == "AGE")
        .expect("AGE")
        .clone();
    assert_eq!(age["df"], 1);
}
