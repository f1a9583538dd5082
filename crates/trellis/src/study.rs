//! `trellis study …`: study definitions in CDISC ODM.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use trellis_domain::{
    CountryCode, DisplayName, ScreeningNumber, SiteCode, SiteId, StudyCode, StudyId, SubjectId,
    TzName,
};
use trellis_edc::{FormPath, ItemPath, Oid, StudyDesign};
use trellis_odm::{ItemValue, MetaDataVersion, Odm, Study};
use trellis_store::{Actor, Mutation, Store, WriteRequest};

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

pub struct ImportArgs {
    pub file: std::path::PathBuf,
    pub study: String,
    pub sponsor: Option<String>,
    pub time_zone: String,
    pub site: Option<String>,
    pub as_user: Option<String>,
}

pub struct NewSite {
    pub study: String,
    pub code: String,
    pub name: String,
    pub country: String,
    pub time_zone: String,
    pub as_user: Option<String>,
}

/// Adds a site to a study, validating every field before anything is written.
pub async fn add_site(store: &Store, args: &NewSite) -> anyhow::Result<()> {
    let Some(study) = store.study_by_code(&args.study).await? else {
        anyhow::bail!("no study `{}` (see `trellis study list`)", args.study);
    };
    let code = SiteCode::parse(&args.code).map_err(|e| anyhow::anyhow!("--code: {e}"))?;
    let name = DisplayName::parse(&args.name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let country =
        CountryCode::parse(&args.country).map_err(|e| anyhow::anyhow!("--country: {e}"))?;
    let time_zone =
        TzName::parse(&args.time_zone).map_err(|e| anyhow::anyhow!("--time-zone: {e}"))?;
    if store
        .sites(study.id)
        .await?
        .iter()
        .any(|s| s.code == code.as_str())
    {
        anyhow::bail!("study {} already has a site {code}", study.code);
    }
    let actor = match &args.as_user {
        Some(u) => {
            let user = crate::admin::find_user(store, u).await?;
            Actor::user(user.id, &user.display_name)
        }
        None => Actor::system(),
    };
    let id = SiteId::new();
    store
        .write(WriteRequest::new(
            actor,
            vec![Mutation::CreateSite {
                study: study.id,
                id,
                code: code.clone(),
                name,
                country,
                time_zone,
            }],
        ))
        .await?;
    println!("site {code} added to study {} ({id})", study.code);
    Ok(())
}

/// Prints each study with its sites.
pub async fn list(store: &Store) -> anyhow::Result<()> {
    for study in store.studies().await? {
        println!(
            "{}\t{}\t{}\t{}",
            study.code, study.id, study.time_zone, study.title
        );
        for site in store.sites(study.id).await? {
            println!(
                "  {}\t{}\t{}\t{}\t{}",
                site.code, site.id, site.country, site.time_zone, site.name
            );
        }
    }
    Ok(())
}

/// Writes one form's table (`form`) or the wide per-subject table (`None`) as CSV.
pub async fn export_csv(
    store: &Store,
    study_code: &str,
    form: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    use trellis_edc::export::{ExportSubject, form_table, wide_table};
    let Some(study) = store.study_by_code(study_code).await? else {
        anyhow::bail!("no study `{study_code}` (see `trellis study list`)");
    };
    let Some(version) = store
        .metadata_versions(study.id)
        .await?
        .into_iter()
        .max_by_key(|v| v.seq)
    else {
        anyhow::bail!(
            "study {} has no study definition yet (import one with `trellis study import-odm`)",
            study.code
        );
    };
    let text = store
        .metadata_version_odm(study.id, &version.oid)
        .await?
        .with_context(|| format!("metadata version {} is missing", version.oid))?;
    let odm = trellis_odm::read_str(&text)
        .map_err(|e| anyhow::anyhow!("metadata version {}: {e}", version.oid))?
        .odm;
    let definition = odm
        .studies
        .first()
        .with_context(|| format!("metadata version {} holds no study", version.oid))?;
    let design = StudyDesign::build(definition, &version.oid)
        .map_err(|e| anyhow::anyhow!("metadata version {}: {e}", version.oid))?;
    let sites = store.sites(study.id).await?;
    let mut subjects = store.subjects(study.id).await?;
    subjects.sort_by(|a, b| a.screening_number.cmp(&b.screening_number));
    let mut values = Vec::with_capacity(subjects.len());
    for s in &subjects {
        values.push(store.item_values(study.id, s.id).await?);
    }
    let rows: Vec<ExportSubject<'_>> = subjects
        .iter()
        .zip(&values)
        .map(|(s, v)| ExportSubject {
            site: sites
                .iter()
                .find(|x| x.id == s.site)
                .map_or("", |x| x.code.as_str()),
            screening_number: &s.screening_number,
            status: s.status.as_str(),
            values: v,
        })
        .collect();
    let table = match form {
        Some(f) => form_table(&study.code, &design, f, &rows).map_err(|e| {
            let forms: Vec<&str> = design.forms.iter().map(|f| f.oid.as_str()).collect();
            anyhow::anyhow!("--form: {e}; its forms are {}", forms.join(", "))
        })?,
        None => wide_table(&study.code, &design, &rows),
    };
    match out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            table.write_csv(std::io::BufWriter::new(file))?;
            eprintln!(
                "{} row(s) × {} column(s) written to {}",
                table.rows.len(),
                table.header.len(),
                path.display()
            );
        }
        None => table.write_csv(std::io::stdout().lock())?,
    }
    Ok(())
}

/// A problem found while preparing an import, reported with the file's line.
struct Problem {
    line: u32,
    message: String,
}

/// Imports a file's study definition and clinical data into one Trellis study, in one
/// audited write: everything or nothing.
pub async fn import_odm(store: &Store, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {name}"))?;
    let imported = match trellis_odm::read_bytes(&bytes) {
        Ok(i) => i,
        Err(rejected) => {
            for e in &rejected.errors {
                eprintln!("{name}: {e}");
            }
            eprintln!("{name}: {}", summary(&rejected));
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &imported.warnings {
        eprintln!("{name}: {w}");
    }
    let odm = imported.odm;
    let [file_study] = odm.studies.as_slice() else {
        anyhow::bail!(
            "{name}: the file holds {} study definitions; import takes a file with exactly one",
            odm.studies.len()
        );
    };

    let actor = match &args.as_user {
        Some(u) => {
            let user = crate::admin::find_user(store, u).await?;
            Actor::user(user.id, &user.display_name)
        }
        None => Actor::system(),
    };
    let mut mutations = Vec::new();
    let mut problems: Vec<Problem> = Vec::new();

    // The Trellis study, created when asked to.
    let study = match store.study_by_code(&args.study).await? {
        Some(s) => s,
        None => {
            let Some(sponsor) = &args.sponsor else {
                anyhow::bail!(
                    "no study `{}`; create it first, or pass --sponsor ORGANIZATION to create it from the file",
                    args.study
                );
            };
            let org = store
                .organizations()
                .await?
                .into_iter()
                .find(|o| &o.name == sponsor)
                .with_context(|| format!("no organization named `{sponsor}`"))?;
            let id = StudyId::new();
            mutations.push(Mutation::CreateStudy {
                id,
                sponsor: org.id,
                code: StudyCode::parse(&args.study).map_err(|e| anyhow::anyhow!("--study: {e}"))?,
                title: DisplayName::parse(&file_study.name)
                    .map_err(|e| anyhow::anyhow!("StudyName: {e}"))?,
                time_zone: TzName::parse(&args.time_zone)
                    .map_err(|e| anyhow::anyhow!("--time-zone: {e}"))?,
            });
            trellis_store::Study {
                id,
                sponsor: org.id,
                code: args.study.clone(),
                title: file_study.name.clone(),
                time_zone: TzName::utc(),
                created_at: trellis_domain::UtcMicros::from_timestamp(jiff::Timestamp::now()),
            }
        }
    };

    // Metadata versions: new ones are added, ones already here must be identical.
    let existing = if mutations.is_empty() {
        store.metadata_versions(study.id).await?
    } else {
        Vec::new()
    };
    if let Some(v) = existing.first()
        && v.study_oid != file_study.oid
    {
        anyhow::bail!(
            "{name}: study {} is defined by ODM study {}, not {}",
            study.code,
            v.study_oid,
            file_study.oid
        );
    }
    let mut designs: HashMap<String, StudyDesign> = HashMap::new();
    for mdv in &file_study.metadata_versions {
        let design = match StudyDesign::build(file_study, &mdv.oid) {
            Ok(d) => d,
            Err(failure) => {
                problems.extend(failure.errors.iter().map(|e| Problem {
                    line: e.line,
                    message: format!("{} ({})", e.message, e.context),
                }));
                continue;
            }
        };
        let text = single_version_odm(file_study, mdv);
        let sha: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        match existing.iter().find(|v| v.oid == mdv.oid) {
            Some(v) if v.odm_sha256 == sha => {
                println!("metadata version {} is already imported (identical)", mdv.oid);
            }
            Some(_) => problems.push(Problem {
                line: mdv.line,
                message: format!(
                    "metadata version {} already exists in study {} with different content; an amendment needs a new OID",
                    mdv.oid, study.code
                ),
            }),
            None => mutations.push(Mutation::AddMetadataVersion {
                study: study.id,
                study_oid: file_study.oid.clone(),
                oid: mdv.oid.clone(),
                name: mdv.name.clone(),
                odm: text,
            }),
        }
        designs.insert(mdv.oid.clone(), design);
    }
    // Clinical data may follow a version imported earlier.
    for data in odm
        .clinical_data
        .iter()
        .filter(|d| d.study_oid == file_study.oid)
    {
        if designs.contains_key(&data.metadata_version_oid) {
            continue;
        }
        match store.metadata_version_odm(study.id, &data.metadata_version_oid).await? {
            Some(text) => {
                let stored = trellis_odm::read_str(&text).map_err(|e| anyhow::anyhow!("stored metadata version {}: {e}", data.metadata_version_oid))?;
                let Some(stored_study) = stored.odm.studies.first() else { continue };
                let Some(mdv) = stored_study.metadata_versions.first() else { continue };
                for d in trellis_odm::check_clinical_data(data, mdv) {
                    problems.push(Problem { line: d.line, message: format!("{} ({})", d.message, d.path) });
                }
                match StudyDesign::build(stored_study, &mdv.oid) {
                    Ok(design) => {
                        designs.insert(mdv.oid.clone(), design);
                    }
                    Err(e) => anyhow::bail!("stored metadata version {} no longer builds: {e}", mdv.oid),
                }
            }
            None => problems.push(Problem {
                line: data.line,
                message: format!(
                    "clinical data follow metadata version {}, which is neither in this file nor in study {}",
                    data.metadata_version_oid, study.code
                ),
            }),
        }
    }
    for data in odm
        .clinical_data
        .iter()
        .filter(|d| d.study_oid != file_study.oid)
    {
        problems.push(Problem {
            line: data.line,
            message: format!(
                "clinical data for study {}, which this file does not define",
                data.study_oid
            ),
        });
    }

    // Subjects: found by screening number, or created at the site their SiteRef names.
    let sites = if mutations
        .iter()
        .any(|m| matches!(m, Mutation::CreateStudy { .. }))
    {
        Vec::new()
    } else {
        store.sites(study.id).await?
    };
    let subjects = if sites.is_empty() {
        Vec::new()
    } else {
        store.subjects(study.id).await?
    };
    let assigned: HashMap<SubjectId, String> = if subjects.is_empty() {
        HashMap::new()
    } else {
        store
            .subject_versions(study.id)
            .await?
            .into_iter()
            .collect()
    };
    let admin_locations: HashMap<&str, &str> = odm
        .admin_data
        .iter()
        .flat_map(|a| &a.locations)
        .map(|l| (l.oid.as_str(), l.name.as_str()))
        .collect();
    report_not_imported(&name, &odm);
    let mut values_total = 0usize;
    for data in odm
        .clinical_data
        .iter()
        .filter(|d| d.study_oid == file_study.oid)
    {
        for subject in &data.subjects {
            let existing_subject = subjects
                .iter()
                .find(|s| s.screening_number == subject.subject_key);
            let subject_id = match existing_subject {
                Some(s) => s.id,
                None => {
                    let wanted = subject.site_ref.as_deref().map(|loc| {
                        // A LocationOID may be the site code itself or a Location whose name is.
                        (loc, admin_locations.get(loc).copied())
                    });
                    let site = sites
                        .iter()
                        .find(|s| match wanted {
                            Some((loc, name)) => {
                                s.code == loc
                                    || Some(s.name.as_str()) == name
                                    || loc.strip_prefix("LOC.") == Some(s.code.as_str())
                            }
                            None => args.site.as_deref() == Some(s.code.as_str()),
                        })
                        .or_else(|| {
                            args.site
                                .as_deref()
                                .and_then(|code| sites.iter().find(|s| s.code == code))
                        });
                    let Some(site) = site else {
                        problems.push(Problem {
                            line: subject.line,
                            message: format!(
                                "subject {} is not in study {} and its site {} matches no site code; create the site or pass --site CODE",
                                subject.subject_key,
                                study.code,
                                subject.site_ref.as_deref().unwrap_or("(none given)")
                            ),
                        });
                        continue;
                    };
                    let number = match ScreeningNumber::parse(&subject.subject_key) {
                        Ok(n) => n,
                        Err(e) => {
                            problems.push(Problem {
                                line: subject.line,
                                message: format!("SubjectKey {:?}: {e}", subject.subject_key),
                            });
                            continue;
                        }
                    };
                    let id = SubjectId::new();
                    mutations.push(Mutation::CreateSubject {
                        study: study.id,
                        id,
                        site: site.id,
                        screening_number: number,
                    });
                    id
                }
            };
            match assigned.get(&subject_id) {
                Some(v) if v != &data.metadata_version_oid => problems.push(Problem {
                    line: subject.line,
                    message: format!(
                        "subject {} follows metadata version {v}; the file's data follow {} (move the subject first)",
                        subject.subject_key, data.metadata_version_oid
                    ),
                }),
                Some(_) => {}
                None => mutations.push(Mutation::AssignMetadataVersion {
                    study: study.id,
                    subject: subject_id,
                    oid: data.metadata_version_oid.clone(),
                }),
            }
            let mut values = Vec::new();
            for event in &subject.study_events {
                for form in &event.forms {
                    for group in &form.item_groups {
                        for item in &group.items {
                            let key = (|| -> Result<ItemPath, trellis_edc::PathError> {
                                Ok(ItemPath {
                                    form: FormPath {
                                        event: Oid::new(&event.study_event_oid)?,
                                        event_repeat: repeat(event.repeat_key.as_deref())?,
                                        form: Oid::new(&form.form_oid)?,
                                        form_repeat: repeat(form.repeat_key.as_deref())?,
                                    },
                                    group: Oid::new(&group.item_group_oid)?,
                                    group_repeat: repeat(group.repeat_key.as_deref())?,
                                    item: Oid::new(&item.item_oid)?,
                                })
                            })();
                            let key = match key {
                                Ok(k) => k,
                                Err(e) => {
                                    problems.push(Problem {
                                        line: item.line,
                                        message: e.to_string(),
                                    });
                                    continue;
                                }
                            };
                            let value = match (&item.value, item.transaction_type) {
                                (_, Some(trellis_odm::TransactionType::Remove))
                                | (ItemValue::Null, _) => None,
                                (ItemValue::Value(v), _) if v.is_empty() => None,
                                (ItemValue::Value(v), _) => Some(v.clone()),
                            };
                            values.push((key.to_string(), value));
                        }
                    }
                }
            }
            // A transactional file may change one item several times: the last change wins.
            let mut last: HashMap<String, usize> = HashMap::new();
            for (i, (k, _)) in values.iter().enumerate() {
                last.insert(k.clone(), i);
            }
            let values: Vec<(String, Option<String>)> = values
                .into_iter()
                .enumerate()
                .filter(|(i, (k, _))| last.get(k) == Some(i))
                .map(|(_, v)| v)
                .collect();
            values_total += values.len();
            if !values.is_empty() {
                mutations.push(Mutation::SaveItems {
                    study: study.id,
                    subject: subject_id,
                    values,
                });
            }
        }
    }

    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        for p in &problems {
            eprintln!("{name}: error: line {}: {}", p.line, p.message);
        }
        eprintln!(
            "{name}: refused with {} error{}; nothing was imported",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    if mutations.is_empty() {
        println!("{name}: nothing new to import into {}", study.code);
        return Ok(ExitCode::SUCCESS);
    }
    let versions = mutations
        .iter()
        .filter(|m| matches!(m, Mutation::AddMetadataVersion { .. }))
        .count();
    let new_subjects = mutations
        .iter()
        .filter(|m| matches!(m, Mutation::CreateSubject { .. }))
        .count();
    let reason = format!(
        "Imported from ODM file {} (FileOID {})",
        args.file
            .file_name()
            .map_or(name.clone(), |f| f.to_string_lossy().into_owned()),
        odm.file_oid
    );
    let receipt = store
        .write(
            WriteRequest::new(actor, mutations)
                .with_reason(reason)
                .with_request_id(import_request_id(&args.file, &odm.file_oid)),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{name}: refused by the store, nothing was imported: {e}"))?;
    if receipt.entries.is_empty() {
        println!(
            "{name}: nothing changed in {}: the study already holds everything in the file",
            study.code
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{name}: imported into {}: {versions} metadata version{}, {new_subjects} new subject{}, {values_total} values; {} audit entries",
        study.code,
        if versions == 1 { "" } else { "s" },
        if new_subjects == 1 { "" } else { "s" },
        receipt.entries.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn repeat(key: Option<&str>) -> Result<u16, trellis_edc::PathError> {
    key.map_or(Ok(1), trellis_edc::path::parse_repeat)
}

/// The ODM 1.3.2 document stored for one metadata version: the study with its measurement
/// units and only this version.
fn single_version_odm(study: &Study, mdv: &MetaDataVersion) -> String {
    let one = Odm {
        file_oid: format!("{}.{}", study.oid, mdv.oid),
        creation_date_time: jiff::Timestamp::now().to_string(),
        source_system: Some("Trellis".into()),
        source_system_version: Some(env!("CARGO_PKG_VERSION").into()),
        granularity: Some("Metadata".into()),
        studies: vec![Study {
            metadata_versions: vec![mdv.clone()],
            ..study.clone()
        }],
        ..Odm::default()
    };
    // The creation time must not change the stored document's hash between imports.
    let mut text = trellis_odm::to_string(&Odm {
        creation_date_time: "2000-01-01T00:00:00Z".into(),
        ..one
    });
    text.shrink_to_fit();
    text
}

/// Writes one or all studies as ODM 1.3.2. The file appears only when complete.
pub async fn export_odm(
    store: &Store,
    study: Option<&str>,
    all: bool,
    out: &Path,
    audit: crate::cli::AuditDetail,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let started = std::time::Instant::now();
    let studies = if all {
        let mut with_versions = Vec::new();
        for s in store.studies().await? {
            if !store.metadata_versions(s.id).await?.is_empty() {
                with_versions.push(s);
            }
        }
        with_versions
    } else {
        let code = study.context("name a study with --study CODE, or pass --all")?;
        vec![crate::admin::find_study(store, code).await?]
    };
    let full = audit == crate::cli::AuditDetail::Full;

    // Gather everything first: the ODM sequence is all studies, then admin data, then
    // clinical data.
    let mut parts = Vec::new();
    for s in &studies {
        parts.push(gather(store, s, full).await?);
    }
    if parts.iter().all(|p| p.definition.is_none()) {
        anyhow::bail!("no study definition to export: import one with `trellis study import-odm`");
    }

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let now = jiff::Timestamp::now();
    let header = trellis_odm::Header {
        file_oid: format!(
            "Trellis.{}.{}",
            studies
                .iter()
                .map(|s| s.code.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            now.as_millisecond()
        ),
        creation_date_time: now.to_string(),
        file_type: if full {
            trellis_odm::FileType::Transactional
        } else {
            trellis_odm::FileType::Snapshot
        },
        granularity: Some("All".into()),
        description: Some(format!(
            "Trellis export of {}",
            studies
                .iter()
                .map(|s| s.title.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        originator: None,
        source_system: Some("Trellis".into()),
        source_system_version: Some(env!("CARGO_PKG_VERSION").into()),
        as_of_date_time: Some(now.to_string()),
    };
    let buffered = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let mut w = trellis_odm::OdmWriter::new(buffered, &header)?;
    for p in &parts {
        if let Some(def) = &p.definition {
            w.study(def)?;
        }
    }
    for p in &parts {
        w.admin_data(&p.admin)?;
    }
    let mut subjects = 0usize;
    let mut values = 0usize;
    for p in &parts {
        for data in &p.clinical {
            w.begin_clinical_data(&data.study_oid, &data.metadata_version_oid)?;
            for s in &data.subjects {
                subjects += 1;
                values += s
                    .study_events
                    .iter()
                    .flat_map(|e| &e.forms)
                    .flat_map(|f| &f.item_groups)
                    .map(|g| g.items.len())
                    .sum::<usize>();
                w.subject(s)?;
            }
            w.end_clinical_data()?;
        }
    }
    let mut buffered = w.finish()?;
    buffered.flush()?;
    drop(buffered);
    tmp.as_file().sync_all()?;
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    for p in &parts {
        if p.skipped_keys > 0 {
            eprintln!(
                "warning: study {}: {} values have no ODM address (captured before the study had a definition) and are not in the file",
                p.code, p.skipped_keys
            );
        }
    }
    println!(
        "{}: ODM 1.3.2 ({}), {} stud{}, {subjects} subjects, {values} item data{} in {:.2} s",
        out.display(),
        if full {
            "Transactional, every change with its audit record"
        } else {
            "Snapshot"
        },
        studies.len(),
        if studies.len() == 1 { "y" } else { "ies" },
        if full { " entries" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

struct StudyExport {
    code: String,
    definition: Option<Study>,
    admin: trellis_odm::AdminData,
    clinical: Vec<trellis_odm::ClinicalData>,
    skipped_keys: usize,
}

fn user_oid(id: uuid::Uuid) -> String {
    if id.is_nil() {
        "USR.SYSTEM".into()
    } else {
        format!("USR.{id}")
    }
}

async fn gather(
    store: &Store,
    study: &trellis_store::Study,
    full: bool,
) -> anyhow::Result<StudyExport> {
    use std::collections::BTreeMap;
    use trellis_odm::{
        AuditRecord, ClinicalData, FormData, ItemData, ItemGroupData, StudyEventData, SubjectData,
        TransactionType,
    };

    let versions = store.metadata_versions(study.id).await?;
    let mut definition: Option<Study> = None;
    for v in &versions {
        let text = store
            .metadata_version_odm(study.id, &v.oid)
            .await?
            .with_context(|| format!("metadata version {} has no document", v.oid))?;
        let parsed = trellis_odm::read_str(&text)
            .map_err(|e| anyhow::anyhow!("stored metadata version {}: {e}", v.oid))?;
        let Some(s) = parsed.odm.studies.into_iter().next() else {
            continue;
        };
        match &mut definition {
            None => definition = Some(s),
            Some(d) => {
                for u in s.measurement_units {
                    if !d.measurement_units.iter().any(|x| x.oid == u.oid) {
                        d.measurement_units.push(u);
                    }
                }
                d.metadata_versions.extend(s.metadata_versions);
            }
        }
    }
    let Some(first_version) = versions.first() else {
        return Ok(StudyExport {
            code: study.code.clone(),
            definition: None,
            admin: trellis_odm::AdminData::default(),
            clinical: Vec::new(),
            skipped_keys: 0,
        });
    };
    let study_oid = first_version.study_oid.clone();
    let sites = store.sites(study.id).await?;
    let site_oid: HashMap<uuid::Uuid, String> = sites
        .iter()
        .map(|s| (s.id.as_uuid(), format!("LOC.{}", s.code)))
        .collect();
    let subjects = store.subjects(study.id).await?;
    let assigned: HashMap<SubjectId, String> = store
        .subject_versions(study.id)
        .await?
        .into_iter()
        .collect();

    // Every item change of the study, oldest first, by subject and item key.
    let mut history: HashMap<uuid::Uuid, BTreeMap<String, Vec<trellis_store::StoredEntry>>> =
        HashMap::new();
    let mut users: BTreeMap<String, String> = BTreeMap::new();
    if full {
        let mut after = None;
        loop {
            let page = store
                .audit_entries(&trellis_store::AuditFilter {
                    chain: Some(trellis_store::Chain::Study(study.id)),
                    entity_type: Some("item".into()),
                    after,
                    limit: 10_000,
                    ..trellis_store::AuditFilter::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.body.recorded_at.as_micros(), last.body.entry_id));
            let n = page.len();
            for e in page {
                let (Some(subject), Some(key)) = (e.body.subject_id, e.body.field.clone()) else {
                    continue;
                };
                users
                    .entry(user_oid(e.body.actor_id))
                    .or_insert_with(|| e.body.actor_name.clone());
                history
                    .entry(subject)
                    .or_default()
                    .entry(key)
                    .or_default()
                    .push(e);
            }
            if n < 10_000 {
                break;
            }
        }
        for entries in history.values_mut().flat_map(|m| m.values_mut()) {
            entries.sort_by_key(|e| e.seq);
        }
    }
    let signatures = store.signatures(study.id).await?;
    // Queries go out as annotations on the item they are about, with their whole thread.
    let mut queries: HashMap<(SubjectId, String), Vec<trellis_store::QueryRow>> = HashMap::new();
    for q in store.queries(study.id, None).await? {
        queries
            .entry((q.subject, q.item_key.clone()))
            .or_default()
            .push(q);
    }
    for s in &signatures {
        users
            .entry(user_oid(s.signer.as_uuid()))
            .or_insert_with(|| s.printed_name.clone());
    }

    // Clinical data follow the definition's order: protocol, forms, groups, items.
    let mut order: [HashMap<String, usize>; 4] = Default::default();
    if let Some(def) = &definition {
        for mdv in &def.metadata_versions {
            let mut rank = |level: usize, oid: &str| {
                let n = order[level].len();
                order[level].entry(oid.to_owned()).or_insert(n);
            };
            for r in &mdv.protocol {
                rank(0, &r.oid);
            }
            for e in &mdv.study_events {
                rank(0, &e.oid);
                for f in &e.forms {
                    rank(1, &f.oid);
                }
            }
            for f in &mdv.forms {
                rank(1, &f.oid);
                for g in &f.item_groups {
                    rank(2, &g.oid);
                }
            }
            for g in &mdv.item_groups {
                rank(2, &g.oid);
                for i in &g.items {
                    rank(3, &i.item_oid);
                }
            }
        }
    }
    let rank = |level: usize, oid: &str| order[level].get(oid).copied().unwrap_or(usize::MAX);
    type Groups = BTreeMap<(usize, String, u16), Vec<ItemData>>;
    type Forms = BTreeMap<(usize, String, u16), Groups>;
    type Events = BTreeMap<(usize, String, u16), Forms>;
    let mut by_version: BTreeMap<String, Vec<SubjectData>> = BTreeMap::new();
    let mut skipped_keys = 0usize;
    let mut meanings = std::collections::BTreeSet::new();
    for subject in &subjects {
        let site = site_oid
            .get(&subject.site.as_uuid())
            .cloned()
            .unwrap_or_else(|| "LOC.UNKNOWN".into());
        let mut events: Events = BTreeMap::new();
        let current = store.item_values(study.id, subject.id).await?;
        let subject_history = history.remove(&subject.id.as_uuid()).unwrap_or_default();
        let mut keys: Vec<String> = current.iter().map(|(k, _)| k.clone()).collect();
        keys.extend(
            subject_history
                .keys()
                .filter(|k| !current.iter().any(|(c, _)| c == *k))
                .cloned(),
        );
        let mut paths = Vec::with_capacity(keys.len());
        for key in keys {
            match key.parse::<ItemPath>() {
                Ok(path) => paths.push((rank(3, path.item.as_str()), path, key)),
                Err(_) => skipped_keys += 1,
            }
        }
        paths.sort_by(|a, b| (a.0, &a.1.item).cmp(&(b.0, &b.1.item)));
        for (_, path, key) in paths {
            let mut items = Vec::new();
            match subject_history.get(&key) {
                Some(entries) if full => {
                    for e in entries {
                        let mut item = match &e.body.new_value {
                            Some(v) if !v.is_empty() => {
                                ItemData::new(path.item.as_str(), v.clone())
                            }
                            _ => ItemData {
                                value: ItemValue::Null,
                                ..ItemData::new(path.item.as_str(), "")
                            },
                        };
                        item.transaction_type =
                            Some(match (e.body.action.as_str(), &e.body.new_value) {
                                ("create", _) => TransactionType::Insert,
                                (_, None) => TransactionType::Remove,
                                _ => TransactionType::Update,
                            });
                        if item.transaction_type == Some(TransactionType::Remove) {
                            item.value = ItemValue::Null;
                        }
                        item.audit_record = Some(AuditRecord {
                            id: None,
                            edit_point: None,
                            used_imputation_method: None,
                            user_oid: user_oid(e.body.actor_id),
                            location_oid: e
                                .body
                                .site_id
                                .and_then(|s| site_oid.get(&s).cloned())
                                .unwrap_or_else(|| site.clone()),
                            date_time_stamp: e.body.recorded_at.to_rfc3339(),
                            reason_for_change: e.body.reason.clone(),
                            source_id: Some(format!("audit {}:{}", e.chain.id(), e.seq)),
                        });
                        items.push(item);
                    }
                }
                _ => {
                    if let Some((_, Some(v))) = current.iter().find(|(k, _)| k == &key) {
                        items.push(ItemData::new(path.item.as_str(), v.clone()));
                    }
                }
            }
            if let (Some(last), Some(qs)) =
                (items.last_mut(), queries.get(&(subject.id, key.clone())))
            {
                last.annotations = qs
                    .iter()
                    .enumerate()
                    .map(|(i, q)| query_annotation(i, q))
                    .collect();
            }
            events
                .entry((
                    rank(0, path.form.event.as_str()),
                    path.form.event.to_string(),
                    path.form.event_repeat,
                ))
                .or_default()
                .entry((
                    rank(1, path.form.form.as_str()),
                    path.form.form.to_string(),
                    path.form.form_repeat,
                ))
                .or_default()
                .entry((
                    rank(2, path.group.as_str()),
                    path.group.to_string(),
                    path.group_repeat,
                ))
                .or_default()
                .extend(items);
        }
        let container = full.then_some(TransactionType::Upsert);
        let signature = signatures
            .iter()
            .filter(|s| {
                s.entity_type == "subject_casebook" && s.entity_id == subject.id.to_string()
            })
            .max_by_key(|s| s.signed_at)
            .map(|s| {
                meanings.insert(s.meaning);
                trellis_odm::Signature {
                    id: None,
                    user_oid: user_oid(s.signer.as_uuid()),
                    location_oid: site.clone(),
                    signature_def_oid: format!("SD.{}", s.meaning.as_str().to_ascii_uppercase()),
                    date_time_stamp: s.signed_at.to_rfc3339(),
                }
            });
        let data = SubjectData {
            subject_key: subject.screening_number.clone(),
            transaction_type: container,
            signature,
            site_ref: Some(site.clone()),
            study_events: events
                .into_iter()
                .map(|((_, event, er), forms)| StudyEventData {
                    study_event_oid: event,
                    repeat_key: Some(er.to_string()),
                    transaction_type: container,
                    forms: forms
                        .into_iter()
                        .map(|((_, form, fr), groups)| FormData {
                            form_oid: form,
                            repeat_key: Some(fr.to_string()),
                            transaction_type: container,
                            item_groups: groups
                                .into_iter()
                                .map(|((_, group, gr), items)| ItemGroupData {
                                    item_group_oid: group,
                                    repeat_key: Some(gr.to_string()),
                                    transaction_type: container,
                                    items,
                                    ..ItemGroupData::default()
                                })
                                .collect(),
                            ..FormData::default()
                        })
                        .collect(),
                    ..StudyEventData::default()
                })
                .collect(),
            ..SubjectData::default()
        };
        let version = assigned
            .get(&subject.id)
            .cloned()
            .unwrap_or_else(|| first_version.oid.clone());
        by_version.entry(version).or_default().push(data);
    }

    let admin = trellis_odm::AdminData {
        study_oid: Some(study_oid.clone()),
        users: users
            .into_iter()
            .map(|(oid, name)| trellis_odm::User {
                oid,
                full_name: Some(name),
                ..trellis_odm::User::default()
            })
            .collect(),
        locations: sites
            .iter()
            .map(|s| trellis_odm::Location {
                oid: format!("LOC.{}", s.code),
                name: s.name.clone(),
                location_type: Some("Site".into()),
                metadata_versions: versions
                    .iter()
                    .map(|v| {
                        (
                            study_oid.clone(),
                            v.oid.clone(),
                            v.created_at.to_rfc3339()[..10].to_owned(),
                        )
                    })
                    .collect(),
            })
            .collect(),
        signature_defs: meanings
            .into_iter()
            .map(|m| trellis_odm::SignatureDef {
                oid: format!("SD.{}", m.as_str().to_ascii_uppercase()),
                methodology: Some("Electronic".into()),
                meaning: format!("{m}"),
                legal_reason:
                    "Electronic signature under 21 CFR Part 11 (password re-entered at signing)"
                        .into(),
            })
            .collect(),
    };
    let clinical = versions
        .iter()
        .filter_map(|v| {
            by_version.remove(&v.oid).map(|subjects| ClinicalData {
                study_oid: study_oid.clone(),
                metadata_version_oid: v.oid.clone(),
                subjects,
                line: 0,
            })
        })
        .collect();
    Ok(StudyExport {
        code: study.code.clone(),
        definition,
        admin,
        clinical,
        skipped_keys,
    })
}

/// The source system's audit records, signatures and annotations are not imported, and
/// the user is told so, with the first line of each.
fn report_not_imported(name: &str, odm: &Odm) {
    let (mut audits, mut signatures, mut annotations) = (Vec::new(), Vec::new(), Vec::new());
    let mut note = |line: u32, a: bool, s: bool, n: usize| {
        if a {
            audits.push(line);
        }
        if s {
            signatures.push(line);
        }
        annotations.extend(std::iter::repeat_n(line, n));
    };
    for data in &odm.clinical_data {
        for subject in &data.subjects {
            note(
                subject.line,
                subject.audit_record.is_some(),
                subject.signature.is_some(),
                subject.annotations.len(),
            );
            for e in &subject.study_events {
                note(
                    e.line,
                    e.audit_record.is_some(),
                    e.signature.is_some(),
                    e.annotations.len(),
                );
                for f in &e.forms {
                    note(
                        f.line,
                        f.audit_record.is_some(),
                        f.signature.is_some(),
                        f.annotations.len(),
                    );
                    for g in &f.item_groups {
                        note(
                            g.line,
                            g.audit_record.is_some(),
                            g.signature.is_some(),
                            g.annotations.len(),
                        );
                        for i in &g.items {
                            note(
                                i.line,
                                i.audit_record.is_some(),
                                i.signature.is_some(),
                                i.annotations.len(),
                            );
                        }
                    }
                }
            }
        }
    }
    let say = |lines: &[u32], what: &str, why: &str| {
        if let Some(first) = lines.first() {
            eprintln!(
                "{name}: warning: line {first}: {} {what} not imported ({why})",
                lines.len()
            );
        }
    };
    say(
        &audits,
        "audit record(s) of the source system",
        "Trellis records the import in its own audit trail, with the file name as request id; keep the source file with the trial master file",
    );
    say(
        &signatures,
        "signature(s)",
        "signatures from another system cannot be carried over; investigators sign again in Trellis",
    );
    say(
        &annotations,
        "annotation(s) (comments, flags)",
        "queries and comments are not imported yet",
    );
}

/// Every audit entry of an import carries this, so the trail names the file it came from.
fn import_request_id(file: &Path, file_oid: &str) -> String {
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let id: String = format!("odm-import {name} FileOID={file_oid}")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    id
}

/// A query as an ODM annotation: its status and thread in the comment.
fn query_annotation(i: usize, q: &trellis_store::QueryRow) -> trellis_odm::Annotation {
    let origin = match &q.check_id {
        Some(check) => format!("raised by edit check {check}"),
        None => "raised manually".to_owned(),
    };
    let thread: Vec<String> = q
        .messages
        .iter()
        .map(|m| {
            format!(
                "{} {} by {}: {}",
                m.at.to_rfc3339(),
                m.action,
                m.author_name,
                m.text
            )
        })
        .collect();
    trellis_odm::Annotation {
        seq_num: u32::try_from(i + 1).unwrap_or(u32::MAX),
        id: None,
        comment: Some(trellis_odm::Comment {
            sponsor_or_site: Some("Sponsor".into()),
            text: format!(
                "Query {} ({origin}). {}",
                q.status.as_str(),
                thread.join(" | ")
            ),
        }),
        flags: Vec::new(),
    }
}
