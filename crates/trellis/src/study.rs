//! `trellis study …`: study definitions in CDISC ODM.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use trellis_edc::StudyDesign;
use trellis_odm::{ItemValue, Odm};

/// Reads and builds every study of an ODM file, reporting what would be imported.
pub fn check_odm(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display();
    let imported = match trellis_odm::read_bytes(&bytes) {
        Ok(i) => i,
        Err(rejected) => {
            for w in &rejected.warnings {
                eprintln!("{name}: {w}");
            }
            for e in &rejected.errors {
                eprintln!("{name}: {e}");
            }
            eprintln!("{name}: {rejected}", rejected = summary(&rejected));
            return Ok(ExitCode::FAILURE);
        }
    };
    let odm = &imported.odm;
    println!("{name}: {}", describe_file(odm));
    let mut failed = false;
    for study in &odm.studies {
        println!("study {} \"{}\"", study.oid, study.name);
        for mdv in &study.metadata_versions {
            let counts = format!(
                "{} study events, {} forms, {} item groups, {} items, {} code lists",
                mdv.study_events.len(),
                mdv.forms.len(),
                mdv.item_groups.len(),
                mdv.items.len(),
                mdv.code_lists.len()
            );
            match StudyDesign::build(study, &mdv.oid) {
                Ok(design) => {
                    let conditions: usize = design.forms.iter().map(|f| f.conditions.len()).sum();
                    println!(
                        "  metadata version {} \"{}\": {counts}; {} compiled",
                        mdv.oid,
                        mdv.name,
                        [
                            plural(design.check_count(), "edit check", "edit checks"),
                            plural(conditions, "skip condition", "skip conditions"),
                        ]
                        .join(" and ")
                    );
                    for note in &design.notes {
                        eprintln!("{name}: note: {note}");
                    }
                }
                Err(failure) => {
                    failed = true;
                    println!(
                        "  metadata version {} \"{}\": {counts}; cannot be built",
                        mdv.oid, mdv.name
                    );
                    for e in &failure.errors {
                        eprintln!("{name}: error: {e}");
                    }
                }
            }
        }
    }
    for data in &odm.clinical_data {
        let values: usize = data
            .subjects
            .iter()
            .flat_map(|s| &s.study_events)
            .flat_map(|e| &e.forms)
            .flat_map(|f| &f.item_groups)
            .flat_map(|g| &g.items)
            .filter(|i| matches!(i.value, ItemValue::Value(_)))
            .count();
        println!(
            "clinical data for {} (metadata version {}): {} subjects, {values} values",
            data.study_oid,
            data.metadata_version_oid,
            data.subjects.len()
        );
    }
    for w in &imported.warnings {
        eprintln!("{name}: {w}");
    }
    if failed {
        eprintln!("{name}: refused: a study definition cannot be built; nothing would be imported");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "{name}: can be imported ({} warning{})",
        imported.warnings.len(),
        if imported.warnings.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn summary(rejected: &trellis_odm::Rejected) -> String {
    let n = rejected.errors.len();
    format!(
        "refused with {n} error{}; nothing would be imported",
        if n == 1 { "" } else { "s" }
    )
}

fn describe_file(odm: &Odm) -> String {
    let mut parts = vec![format!(
        "ODM {}",
        odm.odm_version
            .as_deref()
            .unwrap_or("1.3 (version not stated)")
    )];
    if let Some(system) = &odm.source_system {
        let version = odm.source_system_version.as_deref().unwrap_or("");
        parts.push(format!("from {system} {version}").trim_end().to_owned());
    }
    parts.push(format!(
        "{} stud{}, {} clinical data section{}",
        odm.studies.len(),
        if odm.studies.len() == 1 { "y" } else { "ies" },
        odm.clinical_data.len(),
        if odm.clinical_data.len() == 1 {
            ""
        } else {
            "s"
        }
    ));
    parts.join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
