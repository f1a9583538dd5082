//! `trellis study …`: study definitions in CDISC ODM.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use trellis_domain::{CountryCode, DisplayName, SiteCode, SiteId, SubjectId, TzName};
use trellis_edc::{ItemPath, StudyDesign};
use trellis_odm::{ItemValue, Odm, Study};
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
            eprintln!(
                "{name}: {rejected}",
                rejected = trellis_server::odm_import::rejected_summary(&rejected)
            );
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
    pub metadata_only: bool,
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

/// Imports a file's study definition and clinical data into one Trellis study, in one
/// audited write: everything or nothing (the rules are in `trellis_server::odm_import`).
pub async fn import_odm(store: &Store, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    use trellis_server::odm_import::{self, ImportError, ImportTarget};
    let name = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {name}"))?;
    let actor = match &args.as_user {
        Some(u) => {
            let user = crate::admin::find_user(store, u).await?;
            Actor::user(user.id, &user.display_name)
        }
        None => Actor::system(),
    };
    let target = ImportTarget {
        study: args.study.clone(),
        create_for_sponsor: args.sponsor.clone(),
        time_zone: args.time_zone.clone(),
        default_site: args.site.clone(),
        metadata_only: args.metadata_only,
    };
    let plan = match odm_import::plan(store, &bytes, &target).await {
        Ok(plan) => plan,
        Err(ImportError::Unreadable { errors, summary }) => {
            for e in &errors {
                eprintln!("{name}: {e}");
            }
            eprintln!("{name}: {summary}");
            return Ok(ExitCode::FAILURE);
        }
        Err(ImportError::Refused(problems)) => {
            for p in &problems {
                eprintln!("{name}: error: line {}: {}", p.line, p.message);
            }
            eprintln!(
                "{name}: refused with {}; nothing was imported",
                plural(problems.len(), "error", "errors")
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(ImportError::Target(message)) => anyhow::bail!("{name}: {message}"),
        Err(ImportError::Store(e)) => return Err(e.into()),
    };
    let report = &plan.report;
    for w in report.warnings.iter().chain(&report.not_imported) {
        eprintln!("{name}: {w}");
    }
    for v in &report.identical_versions {
        println!("metadata version {v} is already imported (identical)");
    }
    let code = report.study.code.clone();
    if report.queries_already_imported > 0 {
        println!(
            "{name}: {} already in {code}",
            plural(report.queries_already_imported, "query is", "queries are")
        );
    }
    if plan.is_empty() {
        println!("{name}: nothing new to import into {code}");
        return Ok(ExitCode::SUCCESS);
    }
    let file_name = args
        .file
        .file_name()
        .map_or(name.clone(), |f| f.to_string_lossy().into_owned());
    let (report, result) = plan.apply(store, actor, &file_name, None).await;
    let receipt = result
        .map_err(|e| anyhow::anyhow!("{name}: refused by the store, nothing was imported: {e}"))?;
    if receipt.entries.is_empty() {
        println!(
            "{name}: nothing changed in {code}: the study already holds everything in the file"
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{name}: imported into {code}: {}, {}, {} values ({} new or changed), {}; {} audit entries",
        plural(
            report.new_versions.len(),
            "metadata version",
            "metadata versions"
        ),
        plural(report.new_subjects, "new subject", "new subjects"),
        report.values,
        report.values_changed,
        plural(report.queries, "query", "queries"),
        receipt.entries.len()
    );

    Ok(ExitCode::SUCCESS)
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
    // Source data verification goes out as one more annotation on the verified item (ODM
    // 1.3.2 has no element for it): who verified which value when, and whether the item
    // has changed since.
    let mut verifications: HashMap<(SubjectId, String), trellis_store::VerificationRow> =
        HashMap::new();
    for v in store.verifications(study.id, None).await? {
        verifications.insert((v.subject, v.item_key.clone()), v);
    }
    let user_names: HashMap<uuid::Uuid, String> = if verifications.is_empty() {
        HashMap::new()
    } else {
        store
            .users()
            .await?
            .into_iter()
            .map(|u| {
                (
                    u.id.as_uuid(),
                    format!("{} ({})", u.display_name, u.username),
                )
            })
            .collect()
    };
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
            if let Some(last) = items.last_mut() {
                if let Some(qs) = queries.get(&(subject.id, key.clone())) {
                    last.annotations = qs
                        .iter()
                        .enumerate()
                        .map(|(i, q)| query_annotation(i, q))
                        .collect();
                }
                if let Some(v) = verifications.get(&(subject.id, key.clone())) {
                    let now = current
                        .iter()
                        .find(|(k, _)| k == &key)
                        .and_then(|(_, v)| v.as_ref());
                    let who = user_names
                        .get(&v.verified_by)
                        .cloned()
                        .unwrap_or_else(|| v.verified_by.to_string());
                    last.annotations
                        .push(sdv_annotation(last.annotations.len(), v, &who, now));
                }
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
/// A source data verification as an ODM annotation: who verified which value when, and
/// whether the item has changed since (the verification is then stale).
fn sdv_annotation(
    i: usize,
    v: &trellis_store::VerificationRow,
    who: &str,
    current: Option<&String>,
) -> trellis_odm::Annotation {
    let verified = v.verified_value.as_deref().unwrap_or("");
    let state = if v.verified_value.as_ref() == current {
        "current"
    } else {
        "stale: the value has changed since"
    };
    sponsor_comment(
        i,
        format!(
            "Source data verified {} by {who}: value {verified:?} ({state}).",
            v.verified_at.to_rfc3339()
        ),
    )
}

/// The `i`-th (0-based) annotation of an item: a sponsor's comment.
fn sponsor_comment(i: usize, text: String) -> trellis_odm::Annotation {
    trellis_odm::Annotation {
        seq_num: u32::try_from(i + 1).unwrap_or(u32::MAX),
        id: None,
        comment: Some(trellis_odm::Comment {
            sponsor_or_site: Some("Sponsor".into()),
            text,
        }),
        flags: Vec::new(),
    }
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
        // The query's id, so that importing the file back into the same study does not
        // open the query a second time.
        id: Some(format!(
            "{}{}",
            trellis_server::source_queries::TRELLIS_QUERY_ID_PREFIX,
            q.id
        )),
        ..sponsor_comment(
            i,
            format!(
                "Query {} ({origin}). {}",
                q.status.as_str(),
                thread.join(" | ")
            ),
        )
    }
}
