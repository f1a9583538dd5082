//! FAERS reader: the same reports written as FAERS extracts (plain and
//! zipped, with older case versions, concomitant drugs and name variants)
//! give the same results as the generic CSV; malformed lines are reported.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use common::{Table, fixture};
use trellis_signal::Error;
use trellis_signal::faers::{FaersOptions, normalize_drug, normalize_event, read_faers};
use trellis_signal::mgps::Prior;
use trellis_signal::pipeline::{Input, RunConfig, run};

struct Report {
    sex: String,
    drugs: Vec<String>,
    events: Vec<String>,
}

fn reports() -> Vec<Report> {
    let mut rdr = csv::Reader::from_path(fixture("pairs_small.csv")).unwrap();
    let mut map: BTreeMap<String, Report> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let r = map.entry(rec[0].to_owned()).or_insert_with(|| Report {
            sex: rec[3].to_owned(),
            drugs: vec![],
            events: vec![],
        });
        if !r.drugs.contains(&rec[1].to_owned()) {
            r.drugs.push(rec[1].to_owned());
        }
        if !r.events.contains(&rec[2].to_owned()) {
            r.events.push(rec[2].to_owned());
        }
    }
    map.into_values().collect()
}

/// Writes DEMO/DRUG/REAC text for the fixture reports. Every 10th case also
/// gets an older version with a bogus extra event, every report a
/// concomitant drug, and drug names appear in several spellings.
fn faers_text() -> (String, String, String) {
    let mut demo = String::from(
        "primaryid$caseid$caseversion$i_f_code$fda_dt$age$age_cod$sex$reporter_country\n",
    );
    let mut drug = String::from("primaryid$caseid$drug_seq$role_cod$drugname$prod_ai$route\n");
    let mut reac = String::from("primaryid$caseid$pt$drug_rec_act\n");
    for (i, r) in reports().iter().enumerate() {
        let caseid = 5000 + i;
        let versions: &[u32] = if i % 10 == 0 { &[3, 1] } else { &[2] };
        for &v in versions {
            let latest = v == versions[0];
            let pid = caseid * 10 + v as usize;
            let sex = if r.sex == "F" { "F" } else { "M" };
            demo.push_str(&format!("{pid}${caseid}${v}$I$2024010{v}$40$YR${sex}$US\n"));
            for (k, d) in r.drugs.iter().enumerate() {
                let role = if k == 0 { "PS" } else { "SS" };
                // Spelling variants that normalize to the same ingredient.
                let (verbatim, ai) = match (i + k) % 3 {
                    0 => (format!("{d}."), String::new()),
                    1 => (format!("Brand of {d}"), d.to_uppercase()),
                    _ => (d.to_string(), format!("  {d} ")),
                };
                drug.push_str(&format!(
                    "{pid}${caseid}${}${role}${verbatim}${ai}$ORAL\n",
                    k + 1
                ));
            }
            drug.push_str(&format!("{pid}${caseid}$99$C$CONCOMITANT ONLY$$ORAL\n"));
            for e in &r.events {
                let e = if i % 2 == 0 {
                    e.to_uppercase()
                } else {
                    e.clone()
                };
                reac.push_str(&format!("{pid}${caseid}${e}$\n"));
            }
            if !latest {
                reac.push_str(&format!("{pid}${caseid}$OLD VERSION EVENT$\n"));
            }
        }
    }
    (demo, drug, reac)
}

fn write_plain(dir: &Path) {
    let (demo, drug, reac) = faers_text();
    std::fs::write(dir.join("DEMO24Q1.txt"), demo).unwrap();
    std::fs::write(dir.join("DRUG24Q1.txt"), drug).unwrap();
    std::fs::write(dir.join("REAC24Q1.txt"), reac).unwrap();
}

fn write_zip(path: &Path) {
    let (demo, drug, reac) = faers_text();
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, text) in [
        ("ASCII/DEMO24Q1.txt", demo),
        ("ASCII/DRUG24Q1.txt", drug),
        ("ASCII/REAC24Q1.txt", reac),
    ] {
        z.start_file(name, opts).unwrap();
        z.write_all(text.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

fn prior() -> Prior {
    Prior::new(0.5, 0.4, 3.0, 2.5, 0.2)
}

fn run_faers(paths: Vec<std::path::PathBuf>, out: &Path) {
    let mut cfg = RunConfig::new(
        Input::Faers {
            paths,
            options: FaersOptions::default(),
        },
        out.to_owned(),
    );
    cfg.fixed_prior = Some(prior());
    run(&cfg).unwrap();
}

fn assert_same_as_csv(faers_out: &Path, dir: &Path) {
    let csv_out = dir.join("csv.csv");
    let mut cfg = RunConfig::new(
        Input::Pairs {
            path: fixture("pairs_small.csv"),
            options: Default::default(),
        },
        csv_out.clone(),
    );
    cfg.fixed_prior = Some(prior());
    run(&cfg).unwrap();
    let a = Table::load(&csv_out);
    let b = Table::load(faers_out);
    assert_eq!(a.rows.len(), b.rows.len());
    for (key, row) in &a.rows {
        let nk = (normalize_drug(&key.0), normalize_event(&key.1));
        let other = b.rows.get(&nk).unwrap_or_else(|| panic!("missing {nk:?}"));
        assert_eq!(&row[2..], &other[2..], "pair {key:?}");
    }
}

#[test]
fn plain_faers_equals_csv() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    std::fs::create_dir(&q).unwrap();
    write_plain(&q);
    let out = dir.path().join("faers.csv");
    run_faers(vec![q], &out);
    assert_same_as_csv(&out, dir.path());
}

#[test]
fn zipped_faers_equals_csv() {
    let dir = tempfile::tempdir().unwrap();
    let z = dir.path().join("faers_ascii_2024Q1.zip");
    write_zip(&z);
    let out = dir.path().join("faers.csv");
    run_faers(vec![z], &out);
    assert_same_as_csv(&out, dir.path());
}

#[test]
fn dedup_roles_and_normalization() {
    let dir = tempfile::tempdir().unwrap();
    write_plain(dir.path());
    let ds = read_faers(&[dir.path().to_owned()], &FaersOptions::default(), false).unwrap();
    assert_eq!(ds.n_reports, reports().len());
    assert!(!ds.event_names.iter().any(|e| e == "OLD VERSION EVENT"));
    assert!(!ds.drug_names.iter().any(|d| d.contains("CONCOMITANT")));
    assert!(ds.drug_names.iter().all(|d| d.starts_with("DRUG ")));
    let all = FaersOptions {
        roles: trellis_signal::faers::Roles::parse("all").unwrap(),
        ..FaersOptions::default()
    };
    let ds = read_faers(&[dir.path().to_owned()], &all, false).unwrap();
    assert!(ds.drug_names.iter().any(|d| d == "CONCOMITANT ONLY"));
}

#[test]
fn malformed_lines_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write_plain(dir.path());
    // Break line 5 of REAC (too few fields) and line 3 of DRUG (bad id).
    let reac_path = dir.path().join("REAC24Q1.txt");
    let mut lines: Vec<String> = std::fs::read_to_string(&reac_path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines[4] = "123456$only two".into();
    std::fs::write(&reac_path, lines.join("\n") + "\n").unwrap();
    let drug_path = dir.path().join("DRUG24Q1.txt");
    let mut lines: Vec<String> = std::fs::read_to_string(&drug_path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines[2] = "x12$1$1$PS$DRUG$DRUG$ORAL".into();
    std::fs::write(&drug_path, lines.join("\n") + "\n").unwrap();

    let ds = read_faers(&[dir.path().to_owned()], &FaersOptions::default(), false).unwrap();
    assert_eq!(ds.diagnostics.malformed, 2);
    let ex = ds.diagnostics.malformed_examples.join("\n");
    assert!(ex.contains("DRUG24Q1.txt:3:"), "{ex}");
    assert!(ex.contains("REAC24Q1.txt:5:"), "{ex}");

    let strict = FaersOptions {
        strict: true,
        ..FaersOptions::default()
    };
    match read_faers(&[dir.path().to_owned()], &strict, false) {
        Err(Error::Malformed { path, line, .. }) => {
            assert!(path.ends_with("DRUG24Q1.txt"));
            assert_eq!(line, 3);
        }
        other => panic!("expected a malformed-line error, got {other:?}"),
    }
}

#[test]
fn csv_malformed_lines_and_strict_mode() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pairs.csv");
    std::fs::write(
        &p,
        "report_id,drug,event,sex\n1,A,X,F\n2,B\n3,,Y,M\n4, A ,X ,M\n",
    )
    .unwrap();
    let ds = trellis_signal::pairs_csv::read_pairs_csv(&p, &Default::default()).unwrap();
    assert_eq!(ds.diagnostics.malformed, 2);
    assert!(
        ds.diagnostics.malformed_examples[0].ends_with("pairs.csv:3: expected 4 fields, found 2")
    );
    assert_eq!(ds.drug_names, vec!["A"]);
    assert_eq!(ds.event_names, vec!["X"]);
    let strict = trellis_signal::pairs_csv::CsvOptions {
        strict: true,
        ..Default::default()
    };
    assert!(matches!(
        trellis_signal::pairs_csv::read_pairs_csv(&p, &strict),
        Err(Error::Malformed { line: 3, .. })
    ));
}

#[test]
fn legacy_aers_layout_and_multiple_quarters() {
    let dir = tempfile::tempdir().unwrap();
    let q1 = dir.path().join("aers_2011q1");
    let q2 = dir.path().join("aers_2011q2");
    std::fs::create_dir_all(&q1).unwrap();
    std::fs::create_dir_all(&q2).unwrap();
    let demo_h = "ISR$CASE$I_F_COD$FOLL_SEQ$IMAGE$EVENT_DT$MFR_DT$FDA_DT$REPT_COD$MFR_NUM$MFR_SNDR$AGE$AGE_COD$GNDR_COD$E_SUB$WT$WT_COD$REPT_DT$OCCP_COD$DEATH_DT$TO_MFR$CONFID$REPORTER_COUNTRY\n";
    let drug_h = "ISR$DRUG_SEQ$ROLE_COD$DRUGNAME$VAL_VBM$ROUTE$DOSE_VBM$DECHAL$RECHAL$LOT_NUM$EXP_DT$NDA_NUM\n";
    let reac_h = "ISR$PT\n";
    // Case 7 has an initial report (ISR 100, Q1) and a follow-up (ISR 200, Q2):
    // only the follow-up (later FDA_DT) counts. Case 8 is only in Q1.
    std::fs::write(
        q1.join("DEMO11Q1.TXT"),
        format!("{demo_h}100$7$I$$$$$20110105$EXP$$$70$YR$F$Y$$$$MD$$$$US\n101$8$I$$$$$20110106$EXP$$$30$YR$M$Y$$$$MD$$$$US\n"),
    )
    .unwrap();
    std::fs::write(
        q1.join("DRUG11Q1.TXT"),
        format!("{drug_h}100$1$PS$Aspirin$1$ORAL$$$$$$\n101$1$PS$ASPIRIN.$1$ORAL$$$$$$\n101$2$C$Heparin$1$ORAL$$$$$$\n"),
    )
    .unwrap();
    std::fs::write(
        q1.join("REAC11Q1.TXT"),
        format!("{reac_h}100$Rash\n101$Nausea\n"),
    )
    .unwrap();
    std::fs::write(
        q2.join("DEMO11Q2.TXT"),
        format!("{demo_h}200$7$F$$$$$20110402$EXP$$$70$YR$F$Y$$$$MD$$$$US\n"),
    )
    .unwrap();
    std::fs::write(
        q2.join("DRUG11Q2.TXT"),
        format!("{drug_h}200$1$SS$aspirin$1$ORAL$$$$$$\n"),
    )
    .unwrap();
    std::fs::write(
        q2.join("REAC11Q2.TXT"),
        format!("{reac_h}200$Nausea\n200$Headache\n"),
    )
    .unwrap();
    let ds = read_faers(&[q1, q2], &FaersOptions::default(), false).unwrap();
    assert_eq!(ds.n_reports, 2);
    assert_eq!(ds.drug_names, vec!["ASPIRIN"]);
    assert_eq!(ds.event_names, vec!["HEADACHE", "NAUSEA"]);
    assert_eq!(ds.diagnostics.malformed, 0);
    let t = trellis_signal::count::count_pairs(&ds, Default::default(), &|_| {});
    // ASPIRIN–NAUSEA in both kept reports, ASPIRIN–HEADACHE in the follow-up.
    assert_eq!(t.a, vec![1, 2]);
    assert_eq!(t.n_total, 2);
}

#[test]
fn cases_on_the_fdas_deleted_lists_are_dropped_with_all_their_versions() {
    // Case 5000 has two versions; 5003 one. Both are withdrawn by a later quarter's list
    // (with a header line, as some releases have, and a CASEID that is not in the data).
    let dir = tempfile::tempdir().unwrap();
    write_plain(dir.path());
    let all = read_faers(&[dir.path().to_owned()], &FaersOptions::default(), false).unwrap();
    let deleted_dir = dir.path().join("Deleted");
    std::fs::create_dir_all(&deleted_dir).unwrap();
    std::fs::write(
        deleted_dir.join("DELE24Q2.txt"),
        "caseid\n5000\n5003\n\n99999999\n",
    )
    .unwrap();
    let ds = read_faers(&[dir.path().to_owned()], &FaersOptions::default(), false).unwrap();
    assert_eq!(ds.n_reports, all.n_reports - 2);
    assert_eq!(ds.diagnostics.malformed, 0);
    let notes = ds.diagnostics.notes.join("\n");
    assert!(
        notes.contains(
            "2 cases dropped as deleted by the FDA (3 CASEIDs on 1 deleted-case list(s))"
        ),
        "{notes}"
    );

    // Inside a quarterly zip (the FDA's layout: Deleted/DELETE24Q2.txt), the same.
    let zip_path = dir.path().join("faers_ascii_2024q1.zip");
    write_zip(&zip_path);
    {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&zip_path)
            .unwrap();
        let mut z = zip::ZipWriter::new_append(file).unwrap();
        z.start_file(
            "Deleted/DELETE24Q2.txt",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(b"5000\n5003\n").unwrap();
        z.finish().unwrap();
    }
    let zipped = read_faers(
        std::slice::from_ref(&zip_path),
        &FaersOptions::default(),
        false,
    )
    .unwrap();
    assert_eq!(zipped.n_reports, all.n_reports - 2);

    // --keep-deleted keeps them, and says the lists were not applied.
    let keep = FaersOptions {
        keep_deleted: true,
        ..FaersOptions::default()
    };
    let kept = read_faers(&[zip_path], &keep, false).unwrap();
    assert_eq!(kept.n_reports, all.n_reports);
    assert!(kept.diagnostics.notes.join("\n").contains("not applied"));

    // A line that is not a CASEID is malformed, with file and line.
    std::fs::write(deleted_dir.join("DELE24Q2.txt"), "caseid\n5000\nfive\n").unwrap();
    let ds = read_faers(&[dir.path().to_owned()], &FaersOptions::default(), false).unwrap();
    assert_eq!(ds.diagnostics.malformed, 1);
    assert!(
        ds.diagnostics.malformed_examples[0].contains("DELE24Q2.txt:3:"),
        "{:?}",
        ds.diagnostics.malformed_examples
    );
}
