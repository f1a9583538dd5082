//! Importing an ODM file into a study: its metadata versions (a new OID is an amendment)
//! and its clinical data, planned in memory and written in one audited write, so that a
//! file with any problem imports nothing. Shared by `trellis study import-odm` and the
//! browser's import page.

use std::collections::{HashMap, HashSet};

use sha2::{Digest as _, Sha256};
use trellis_domain::{
    DisplayName, QueryId, ScreeningNumber, SiteId, StudyCode, StudyId, SubjectId, TzName,
};
use trellis_edc::{FormPath, ItemPath, Oid, StudyDesign};
use trellis_odm::{ItemValue, MetaDataVersion, Odm};
use trellis_store::{Actor, Mutation, Receipt, Store, StoreError, Study, WriteRequest};

/// The largest ODM file the browser and the API accept (a study's whole clinical data
/// can be tens of megabytes; the command line has no limit).
pub const MAX_FILE_BYTES: usize = 256 * 1024 * 1024;

/// Where a file's content goes.
pub struct ImportTarget {
    /// The Trellis study (code).
    pub study: String,
    /// Create the study if it does not exist, for this sponsor (organization name).
    pub create_for_sponsor: Option<String>,
    /// Time zone of a study this import creates.
    pub time_zone: String,
    /// Site (code) for new subjects whose `SiteRef` matches no site.
    pub default_site: Option<String>,
    /// Leave the file's clinical data out: a study created from another system's export
    /// needs its sites before its subjects can come in.
    pub metadata_only: bool,
}

/// A problem found in the file, with its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportProblem {
    pub line: u32,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not ODM 1.3.x, or not well-formed: the reader's errors with their lines.
    #[error("{summary}")]
    Unreadable {
        errors: Vec<String>,
        summary: String,
    },
    /// Readable, but it does not fit the study: every problem with its line.
    #[error("refused with {} error(s); nothing was imported", .0.len())]
    Refused(Vec<ImportProblem>),
    /// The target is wrong (no such study or sponsor, another ODM study, several studies).
    #[error("{0}")]
    Target(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import would write, and what it reports.
pub struct ImportPlan {
    pub report: ImportReport,
    mutations: Vec<Mutation>,
}

/// What a file holds for the study, as an import reports it.
#[derive(Clone, Debug)]
pub struct ImportReport {
    pub study: Study,
    pub file_oid: String,
    /// The reader's warnings (vendor extensions, unsupported elements) with their lines.
    pub warnings: Vec<String>,
    /// Parts of the file Trellis does not take over (source audit records, signatures,
    /// annotations), as warnings with their first line.
    pub not_imported: Vec<String>,
    /// Metadata versions already in the study with identical content.
    pub identical_versions: Vec<String>,
    pub new_versions: Vec<String>,
    pub new_subjects: usize,
    pub values: usize,
    /// Of those, values that are new or differ from what the study holds (only these are
    /// written).
    pub values_changed: usize,
    /// Queries opened from the source's annotations and discrepancy notes on items.
    pub queries: usize,
    /// Of those, already in the study from an earlier import of the same notes.
    pub queries_already_imported: usize,
    /// The study already holds everything in the file: importing would write nothing.
    pub nothing_to_write: bool,
}

impl ImportPlan {
    /// Nothing to write: the study already holds everything in the file.
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty()
    }

    /// Writes the plan in one audited write; its reason and request id name the file.
    pub async fn apply(
        self,
        store: &Store,
        actor: Actor,
        file_name: &str,
        request_id: Option<String>,
    ) -> (ImportReport, Result<Receipt, StoreError>) {
        let reason = format!(
            "Imported from ODM file {file_name} (FileOID {})",
            self.report.file_oid
        );
        // The file's name goes into every entry; an HTTP request's id goes first, so the
        // entries also lead to the server's log.
        let named = import_request_id(file_name, &self.report.file_oid);
        let request_id = match request_id {
            Some(id) => format!("{id} {named}").chars().take(200).collect(),
            None => named,
        };
        let result = store
            .write(
                WriteRequest::new(actor, self.mutations)
                    .with_reason(reason)
                    .with_request_id(request_id),
            )
            .await;
        (self.report, result)
    }
}

/// Plans the import of a file's bytes into `target`, reading what the study holds now.
pub async fn plan(
    store: &Store,
    bytes: &[u8],
    target: &ImportTarget,
) -> Result<ImportPlan, ImportError> {
    let imported = trellis_odm::read_bytes(bytes).map_err(|rejected| ImportError::Unreadable {
        errors: rejected.errors.iter().map(ToString::to_string).collect(),
        summary: rejected_summary(&rejected),
    })?;
    let mut warnings: Vec<String> = imported.warnings.iter().map(ToString::to_string).collect();
    let mut odm = imported.odm;
    if target.metadata_only {
        if odm.studies.is_empty() {
            return Err(ImportError::Target(
                "the file holds no study definition; a metadata-only import would import nothing"
                    .into(),
            ));
        }
        let subjects: usize = odm.clinical_data.iter().map(|d| d.subjects.len()).sum();
        if let Some(first) = odm.clinical_data.first() {
            warnings.push(format!(
                "warning: line {}: clinical data of {subjects} subject(s) left out (metadata only)",
                first.line
            ));
        }
        odm.clinical_data.clear();
    }
    // A file defines one study, or (a lab transfer, a data-only export) holds clinical
    // data alone, for a study whose definition Trellis already has.
    let file_study: Option<&trellis_odm::Study> = match odm.studies.as_slice() {
        [one] => Some(one),
        [] if !odm.clinical_data.is_empty() => None,
        many => {
            return Err(ImportError::Target(format!(
                "the file holds {} study definitions; import takes a file with exactly one, or clinical data alone",
                many.len()
            )));
        }
    };
    let study_oid = match file_study {
        Some(s) => s.oid.clone(),
        None => {
            let mut oids: Vec<&str> = odm
                .clinical_data
                .iter()
                .map(|d| d.study_oid.as_str())
                .collect();
            oids.sort_unstable();
            oids.dedup();
            match oids.as_slice() {
                [one] => (*one).to_owned(),
                _ => {
                    return Err(ImportError::Target(format!(
                        "the file holds clinical data for {} studies ({}) and no study definition; import one study at a time",
                        oids.len(),
                        oids.join(", ")
                    )));
                }
            }
        }
    };
    let mut mutations = Vec::new();
    let mut problems: Vec<ImportProblem> = Vec::new();

    // The Trellis study, created when asked to.
    let study = match store.study_by_code(&target.study).await? {
        Some(s) => s,
        None => {
            let (Some(sponsor), Some(file_study)) = (&target.create_for_sponsor, file_study) else {
                return Err(ImportError::Target(format!(
                    "no study `{}`; create it first, or name a sponsor to create it from a file with its study definition",
                    target.study
                )));
            };
            let org = store
                .organizations()
                .await?
                .into_iter()
                .find(|o| &o.name == sponsor)
                .ok_or_else(|| ImportError::Target(format!("no organization named `{sponsor}`")))?;
            let id = StudyId::new();
            let bad =
                |what: &str, e: &dyn std::fmt::Display| ImportError::Target(format!("{what}: {e}"));
            let time_zone = TzName::parse(&target.time_zone).map_err(|e| bad("time zone", &e))?;
            mutations.push(Mutation::CreateStudy {
                id,
                sponsor: org.id,
                code: StudyCode::parse(&target.study).map_err(|e| bad("study", &e))?,
                title: DisplayName::parse(&file_study.name).map_err(|e| bad("StudyName", &e))?,
                time_zone: time_zone.clone(),
            });
            Study {
                id,
                sponsor: org.id,
                code: target.study.clone(),
                title: file_study.name.clone(),
                time_zone,
                created_at: trellis_domain::UtcMicros::from_timestamp(jiff::Timestamp::now()),
            }
        }
    };
    let creating = !mutations.is_empty();

    // Metadata versions: new ones are added, ones already here must be identical.
    let existing = if creating {
        Vec::new()
    } else {
        store.metadata_versions(study.id).await?
    };
    if let Some(v) = existing.first()
        && v.study_oid != study_oid
    {
        return Err(ImportError::Target(format!(
            "study {} is defined by ODM study {}, not {study_oid}",
            study.code, v.study_oid
        )));
    }
    if file_study.is_none() && existing.is_empty() {
        return Err(ImportError::Target(format!(
            "study {} has no study definition yet; import one before clinical data alone",
            study.code
        )));
    }
    let mut identical_versions = Vec::new();
    let mut new_versions = Vec::new();
    let mut designs: HashMap<String, StudyDesign> = HashMap::new();
    for (file_study, mdv) in file_study
        .iter()
        .flat_map(|f| f.metadata_versions.iter().map(move |m| (*f, m)))
    {
        let design = match StudyDesign::build(file_study, &mdv.oid) {
            Ok(d) => d,
            Err(failure) => {
                problems.extend(failure.errors.iter().map(|e| ImportProblem {
                    line: e.line,
                    message: format!("{} ({})", e.message, e.context),
                }));
                continue;
            }
        };
        let text = single_version_odm(file_study, mdv);
        let sha: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        match existing.iter().find(|v| v.oid == mdv.oid) {
            Some(v) if v.odm_sha256 == sha => identical_versions.push(mdv.oid.clone()),
            Some(_) => problems.push(ImportProblem {
                line: mdv.line,
                message: format!(
                    "metadata version {} already exists in study {} with different content; an amendment needs a new OID",
                    mdv.oid, study.code
                ),
            }),
            None => {
                new_versions.push(mdv.oid.clone());
                mutations.push(Mutation::AddMetadataVersion {
                    study: study.id,
                    study_oid: study_oid.clone(),
                    oid: mdv.oid.clone(),
                    name: mdv.name.clone(),
                    odm: text,
                });
            }
        }
        designs.insert(mdv.oid.clone(), design);
    }
    // Clinical data may follow a version imported earlier.
    for data in odm
        .clinical_data
        .iter()
        .filter(|d| d.study_oid == study_oid)
    {
        if designs.contains_key(&data.metadata_version_oid) {
            continue;
        }
        match store.metadata_version_odm(study.id, &data.metadata_version_oid).await? {
            Some(text) => {
                let stored = trellis_odm::read_str(&text).map_err(|e| {
                    ImportError::Target(format!(
                        "stored metadata version {}: {e}",
                        data.metadata_version_oid
                    ))
                })?;
                let Some(stored_study) = stored.odm.studies.first() else { continue };
                let Some(mdv) = stored_study.metadata_versions.first() else { continue };
                for d in trellis_odm::check_clinical_data(data, mdv) {
                    problems.push(ImportProblem {
                        line: d.line,
                        message: format!("{} ({})", d.message, d.path),
                    });
                }
                let design = StudyDesign::build(stored_study, &mdv.oid).map_err(|e| {
                    ImportError::Target(format!(
                        "stored metadata version {} no longer builds: {e}",
                        mdv.oid
                    ))
                })?;
                designs.insert(mdv.oid.clone(), design);
            }
            None => problems.push(ImportProblem {
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
        .filter(|d| d.study_oid != study_oid)
    {
        problems.push(ImportProblem {
            line: data.line,
            message: format!(
                "clinical data for study {}, which this file does not define",
                data.study_oid
            ),
        });
    }

    // Subjects: found by screening number, or created at the site their SiteRef names.
    let sites = if creating {
        Vec::new()
    } else {
        store.sites(study.id).await?
    };
    let subjects = if sites.is_empty() {
        Vec::new()
    } else {
        store.subjects(study.id).await?
    };
    let mut assigned: HashMap<SubjectId, String> = if subjects.is_empty() {
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
    let mut new_subjects = 0usize;
    let mut values_total = 0usize;
    let mut values_changed = 0usize;
    let mut source = SourceQueryTally::default();
    // New subjects registered under their label: (line, label, SubjectKey).
    let mut labelled: Vec<(u32, String, String)> = Vec::new();
    // Lines of subjects whose label is not a valid screening number (their SubjectKey is used).
    let mut unusable_labels: Vec<u32> = Vec::new();
    // Existing subjects whose SiteRef names no site of the study: (line, subject, SiteRef).
    let mut unmatched_site_refs: Vec<(u32, String, String)> = Vec::new();
    // The study's queries (ids, and opening texts on their items), so that importing a
    // file again, or a Trellis export into its own study, opens no query twice.
    let mut existing_queries: Option<KnownQueries> = None;
    // Subjects this plan creates, by screening number: a transactional file may hold a
    // subject's data in several SubjectData elements.
    let mut planned_subjects: HashMap<String, (SubjectId, SiteId)> = HashMap::new();
    // Where each label (OpenClinica's StudySubjectID) first appeared: two source subjects
    // with one label cannot both be registered under it.
    let mut label_keys: HashMap<&str, (&str, u32)> = HashMap::new();
    for data in odm
        .clinical_data
        .iter()
        .filter(|d| d.study_oid == study_oid)
    {
        for subject in &data.subjects {
            // The subject's label where the source has one (OpenClinica's StudySubjectID)
            // and it is a valid screening number, else its SubjectKey; a subject imported
            // before under either is found.
            let label = subject.label.as_deref().filter(|l| {
                let valid = ScreeningNumber::parse(l).is_ok();
                if !valid {
                    unusable_labels.push(subject.line);
                }
                valid
            });
            if let Some(l) = label {
                match label_keys.get(l) {
                    Some((key, line)) if *key != subject.subject_key.as_str() => {
                        problems.push(ImportProblem {
                            line: subject.line,
                            message: format!(
                                "subjects {key} (line {line}) and {} have the same StudySubjectID {l}; Trellis registers subjects under it, so it must be unique",
                                subject.subject_key
                            ),
                        });
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        label_keys.insert(l, (subject.subject_key.as_str(), subject.line));
                    }
                }
            }
            let number_text = label.unwrap_or(&subject.subject_key);
            let by_label = subjects.iter().find(|s| s.screening_number == number_text);
            let by_key = subjects
                .iter()
                .find(|s| s.screening_number == subject.subject_key);
            if let (Some(a), Some(b)) = (by_label, by_key)
                && a.id != b.id
            {
                problems.push(ImportProblem {
                    line: subject.line,
                    message: format!(
                        "StudySubjectID {number_text} and SubjectKey {} name two different subjects of study {}",
                        subject.subject_key, study.code
                    ),
                });
                continue;
            }
            let existing_subject = by_label.or(by_key);
            // A LocationOID may be the site code itself or a Location whose name is.
            let named_site = subject.site_ref.as_deref().and_then(|loc| {
                let name = admin_locations.get(loc).copied();
                sites.iter().find(|s| {
                    s.code == loc
                        || Some(s.name.as_str()) == name
                        || loc.strip_prefix("LOC.") == Some(s.code.as_str())
                })
            });
            // The subject as the study has it, or as this plan creates it: (id, site).
            let known = existing_subject
                .map(|s| (s.id, s.site))
                .or_else(|| planned_subjects.get(number_text).copied());
            let subject_id = match known {
                Some((id, site)) => {
                    // Screening numbers are unique per study, but a file from a system that
                    // numbers subjects per site could name another site's subject: its data
                    // must not land in the casebook of the subject that has the number here.
                    if let Some(named) = named_site
                        && named.id != site
                    {
                        let at = sites
                            .iter()
                            .find(|x| x.id == site)
                            .map_or_else(|| site.to_string(), |x| x.code.clone());
                        problems.push(ImportProblem {
                            line: subject.line,
                            message: format!(
                                "subject {number_text} of study {} is at site {at}, but the file puts it at site {} (SiteRef {}); move the subject or correct the file",
                                study.code,
                                named.code,
                                subject.site_ref.as_deref().unwrap_or_default()
                            ),
                        });
                        continue;
                    }
                    if existing_subject.is_some()
                        && named_site.is_none()
                        && let Some(loc) = subject.site_ref.as_deref()
                    {
                        unmatched_site_refs.push((
                            subject.line,
                            number_text.to_owned(),
                            loc.to_owned(),
                        ));
                    }
                    id
                }
                None => {
                    let default_site = target.default_site.as_deref();
                    let site = named_site.or_else(|| {
                        default_site.and_then(|code| sites.iter().find(|s| s.code == code))
                    });
                    let Some(site) = site else {
                        problems.push(ImportProblem {
                            line: subject.line,
                            message: format!(
                                "subject {number_text} is not in study {} and its site {} matches no site code; create the site or name a default site",
                                study.code,
                                subject.site_ref.as_deref().unwrap_or("(none given)")
                            ),
                        });
                        continue;
                    };
                    let number = match ScreeningNumber::parse(number_text) {
                        Ok(n) => n,
                        Err(e) => {
                            problems.push(ImportProblem {
                                line: subject.line,
                                message: format!("SubjectKey {number_text:?}: {e}"),
                            });
                            continue;
                        }
                    };
                    if label.is_some() {
                        labelled.push((
                            subject.line,
                            number_text.to_owned(),
                            subject.subject_key.clone(),
                        ));
                    }
                    let id = SubjectId::new();
                    mutations.push(Mutation::CreateSubject {
                        study: study.id,
                        id,
                        site: site.id,
                        screening_number: number,
                    });
                    planned_subjects.insert(number_text.to_owned(), (id, site.id));
                    new_subjects += 1;
                    id
                }
            };
            match assigned.get(&subject_id) {
                Some(v) if v != &data.metadata_version_oid => problems.push(ImportProblem {
                    line: subject.line,
                    message: format!(
                        "subject {number_text} follows metadata version {v}; the file's data follow {} (move the subject first)",
                        data.metadata_version_oid
                    ),
                }),
                Some(_) => {}
                None => {
                    assigned.insert(subject_id, data.metadata_version_oid.clone());
                    mutations.push(Mutation::AssignMetadataVersion {
                        study: study.id,
                        subject: subject_id,
                        oid: data.metadata_version_oid.clone(),
                    });
                }
            }
            let mut values = Vec::new();
            let mut noted: Vec<(String, &trellis_odm::ItemData)> = Vec::new();
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
                                    problems.push(ImportProblem {
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
                            if !item.annotations.is_empty() || !item.discrepancy_notes.is_empty() {
                                noted.push((key.to_string(), item));
                            }
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
            // Only what differs is written (the store would skip the rest anyway), so that
            // a file the study already holds plans nothing and says so.
            // One read per subject the file names (not the whole study): a lab transfer for
            // a few subjects of a large study reads only theirs.
            let values: Vec<(String, Option<String>)> = if existing_subject.is_some() {
                let current: HashMap<String, Option<String>> = store
                    .item_values(study.id, subject_id)
                    .await?
                    .into_iter()
                    .collect();
                values
                    .into_iter()
                    .filter(|(k, v)| current.get(k) != Some(v))
                    .collect()
            } else {
                values
            };
            values_changed += values.len();
            if !values.is_empty() {
                mutations.push(Mutation::SaveItems {
                    study: study.id,
                    subject: subject_id,
                    values,
                });
            }
            for (key, item) in noted {
                let planned = source.plan(item);
                if planned.is_empty() {
                    continue;
                }
                if existing_queries.is_none() {
                    let mut known = KnownQueries::default();
                    if !creating {
                        for q in store.queries(study.id, None).await? {
                            known.ids.insert(q.id.as_uuid());
                            let Some(first) = q.messages.first() else {
                                continue;
                            };
                            let reached = crate::source_queries::status_reached_on_import(&q);
                            let seen = (first.text.clone(), reached);
                            let name = crate::source_queries::first_line(&first.text).to_owned();
                            known
                                .by_identity
                                .insert((q.subject, q.item_key.clone(), name), seen.clone());
                            known
                                .by_identity
                                .insert((q.subject, q.item_key, first.text.clone()), seen);
                        }
                    }
                    existing_queries = Some(known);
                }
                let known = existing_queries.get_or_insert_with(Default::default);
                for (query, line) in planned {
                    if query
                        .exported_from
                        .is_some_and(|id| known.ids.contains(&id))
                    {
                        source.already += 1;
                        continue;
                    }
                    let identity = (subject_id, key.clone(), query.identity().to_owned());
                    if let Some((open, status)) = known.by_identity.get(&identity) {
                        source.already += 1;
                        if *open != query.open || *status != query.status() {
                            source.changed.push(line);
                        }
                        continue;
                    }
                    known
                        .by_identity
                        .insert(identity, (query.open.clone(), query.status()));
                    source.count_opened(&query, line);
                    let id = QueryId::new();
                    mutations.push(Mutation::OpenQuery {
                        study: study.id,
                        id,
                        subject: subject_id,
                        item_key: key.clone(),
                        check_id: None,
                        text: query.open,
                    });
                    for (action, text) in query.steps {
                        mutations.push(Mutation::UpdateQuery {
                            study: study.id,
                            id,
                            action,
                            text,
                        });
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        return Err(ImportError::Refused(problems));
    }
    Ok(ImportPlan {
        report: ImportReport {
            study,
            file_oid: odm.file_oid.clone(),
            warnings,
            not_imported: {
                let mut out = source.report();
                if let Some(line) = unusable_labels.first() {
                    out.push(format!(
                        "warning: line {line}: {} subject(s) have a StudySubjectID that is not a valid screening number; their SubjectKey is used",
                        unusable_labels.len()
                    ));
                }
                if let Some((line, number, loc)) = unmatched_site_refs.first() {
                    out.push(format!(
                        "warning: line {line}: {} subject(s) already in the study have a SiteRef that names none of its sites (e.g. {number} at {loc}); their data go to the subject at the site it has",
                        unmatched_site_refs.len()
                    ));
                }
                if let Some((line, label, key)) = labelled.first() {
                    out.push(format!(
                        "note: line {line}: {} new subject(s) registered under OpenClinica's StudySubjectID rather than the SubjectKey (e.g. {label} for {key})",
                        labelled.len()
                    ));
                }
                out.extend(not_imported(&odm));
                out
            },
            identical_versions,
            new_versions,
            new_subjects,
            values: values_total,
            values_changed,
            queries: source.opened,
            queries_already_imported: source.already,
            nothing_to_write: mutations.is_empty(),
        },
        mutations,
    })
}

/// The reader's verdict on a refused file, in one line.
pub fn rejected_summary(rejected: &trellis_odm::Rejected) -> String {
    let n = rejected.errors.len();
    format!(
        "refused with {n} error{}; nothing would be imported",
        if n == 1 { "" } else { "s" }
    )
}

fn repeat(key: Option<&str>) -> Result<u16, trellis_edc::PathError> {
    key.map_or(Ok(1), trellis_edc::path::parse_repeat)
}

/// The ODM 1.3.2 document stored for one metadata version: the study with its measurement
/// units and only this version.
pub fn single_version_odm(study: &trellis_odm::Study, mdv: &MetaDataVersion) -> String {
    // The creation time is fixed so that the stored document's hash does not change
    // between imports of the same definition.
    let one = Odm {
        file_oid: format!("{}.{}", study.oid, mdv.oid),
        creation_date_time: "2000-01-01T00:00:00Z".into(),
        source_system: Some("Trellis".into()),
        source_system_version: Some(env!("CARGO_PKG_VERSION").into()),
        granularity: Some("Metadata".into()),
        studies: vec![trellis_odm::Study {
            metadata_versions: vec![mdv.clone()],
            ..study.clone()
        }],
        ..Odm::default()
    };
    let mut text = trellis_odm::to_string(&one);
    text.shrink_to_fit();
    text
}

/// The source system's audit records, signatures and annotations, which are not imported.
fn not_imported(odm: &Odm) -> Vec<String> {
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
    for subject in odm.clinical_data.iter().flat_map(|d| &d.subjects) {
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
                        // Annotations on items become queries (`SourceQueryTally`).
                        note(i.line, i.audit_record.is_some(), i.signature.is_some(), 0);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut say = |lines: &[u32], what: &str, why: &str| {
        if let Some(first) = lines.first() {
            out.push(format!(
                "warning: line {first}: {} {what} not imported ({why})",
                lines.len()
            ));
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
        "annotation(s) on subjects, visits, forms or item groups",
        "Trellis keeps queries on items; annotations on items are imported as queries",
    );
    out
}

/// A study's queries as an import checks them: their ids, and by (subject, item key, and
/// the first line or the whole of the opening text) their opening text and the status the
/// import that opened them reached (not what was done with them in Trellis since).
#[derive(Default)]
struct KnownQueries {
    ids: HashSet<uuid::Uuid>,
    by_identity: HashMap<(SubjectId, String, String), (String, trellis_store::QueryStatus)>,
}

/// What the import makes of the source's annotations and discrepancy notes on items.
#[derive(Default)]
struct SourceQueryTally {
    opened: usize,
    already: usize,
    /// Lines of annotations without a status, imported as closed queries.
    assumed_closed: Vec<u32>,
    truncated: Vec<u32>,
    /// Status words Trellis does not know, and the lines of the notes using them.
    unknown_statuses: Vec<String>,
    unknown_lines: Vec<u32>,
    /// Lines of queries imported earlier whose source has moved on since.
    changed: Vec<u32>,
    /// Lines of source data verifications (Trellis's own export), not imported.
    verifications: Vec<u32>,
}

impl SourceQueryTally {
    /// The queries an item's annotations and discrepancy notes make, with their lines.
    fn plan(
        &mut self,
        item: &trellis_odm::ItemData,
    ) -> Vec<(crate::source_queries::SourceQuery, u32)> {
        use crate::source_queries::{FromAnnotation, from_annotation, from_discrepancy_note};
        let mut out = Vec::new();
        for a in &item.annotations {
            match from_annotation(a) {
                FromAnnotation::Query(q) => out.push((q, item.line)),
                FromAnnotation::Verification => self.verifications.push(item.line),
                FromAnnotation::Empty => {}
            }
        }
        for n in &item.discrepancy_notes {
            out.push((from_discrepancy_note(n), n.line));
        }
        out
    }

    /// Counts a query the import opens, and what it has to say about it.
    fn count_opened(&mut self, q: &crate::source_queries::SourceQuery, line: u32) {
        self.opened += 1;
        if q.status_assumed {
            self.assumed_closed.push(line);
        }
        if q.truncated {
            self.truncated.push(line);
        }
        if !q.unknown_statuses.is_empty() {
            self.unknown_lines.push(line);
            for w in &q.unknown_statuses {
                if !self.unknown_statuses.contains(w) {
                    self.unknown_statuses.push(w.clone());
                }
            }
        }
    }

    fn report(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut say = |lines: &[u32], what: String| {
            if let Some(first) = lines.iter().min() {
                out.push(format!("warning: line {first}: {} {what}", lines.len()));
            }
        };
        say(
            &self.assumed_closed,
            "annotation(s) give no status (no Trellis query comment, no status flag); imported as closed queries".into(),
        );
        say(
            &self.truncated,
            "imported query(ies) had a message longer than 4000 characters, cut; the full text stays in the source file".into(),
        );
        say(
            &self.unknown_lines,
            format!(
                "imported query(ies) name a status Trellis does not know ({}); each was left at the last status it knows",
                self.unknown_statuses.join(", ")
            ),
        );
        say(
            &self.changed,
            "query(ies) imported earlier have changed in the source since (new notes or another status); Trellis keeps them as they are: continue their threads in Trellis".into(),
        );
        say(
            &self.verifications,
            "source data verification(s) not imported (monitors verify again against source in Trellis)".into(),
        );
        out
    }
}

/// Every audit entry of an import carries this, so the trail names the file it came from.
fn import_request_id(file_name: &str, file_oid: &str) -> String {
    format!("odm-import {file_name} FileOID={file_oid}")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

// ------------------------------------------------------------------ browser and API

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::api::{ApiResult, actor, request_id};
use crate::authz::Principal;
use crate::problem::Problem;
use crate::ui::{check_csrf, error_page, html_response, page};

/// What an import attempt came to, for a page or a JSON answer.
struct Outcome {
    /// The import was written (not only checked).
    imported: bool,
    audit_entries: usize,
    report: Option<ImportReport>,
    error: Option<ImportError>,
}

impl Outcome {
    fn failed(report: Option<ImportReport>, error: ImportError) -> Self {
        Self {
            imported: false,
            audit_entries: 0,
            report,
            error: Some(error),
        }
    }
}

/// Checks (`write: false`) or imports a posted file into the page's study.
async fn attempt(
    st: &AppState,
    p: &Principal,
    s: &Study,
    file: (&str, &[u8]),
    default_site: Option<String>,
    write: bool,
    request: Option<String>,
) -> Outcome {
    let (file_name, bytes) = file;
    let target = ImportTarget {
        study: s.code.clone(),
        create_for_sponsor: None,
        time_zone: s.time_zone.to_string(),
        default_site: default_site.filter(|x| !x.trim().is_empty()),
        metadata_only: false,
    };
    let plan = match self::plan(&st.store, bytes, &target).await {
        Ok(plan) => plan,
        Err(e) => return Outcome::failed(None, e),
    };
    if !write || plan.is_empty() {
        return Outcome {
            imported: false,
            audit_entries: 0,
            report: Some(plan.report),
            error: None,
        };
    }
    match plan.apply(&st.store, actor(p), file_name, request).await {
        (report, Ok(receipt)) => Outcome {
            imported: true,
            audit_entries: receipt.entries.len(),
            report: Some(report),
            error: None,
        },
        (report, Err(e)) => Outcome::failed(Some(report), ImportError::Store(e)),
    }
}

fn error_lines(e: &ImportError) -> Vec<String> {
    match e {
        ImportError::Unreadable { errors, summary } => {
            let mut v = errors.clone();
            v.push(summary.clone());
            v
        }
        ImportError::Refused(problems) => problems
            .iter()
            .map(|p| format!("line {}: {}", p.line, p.message))
            .collect(),
        ImportError::Target(m) => vec![m.clone()],
        ImportError::Store(e) => vec![format!("refused by the store, nothing was imported: {e}")],
    }
}

fn import_url(s: &Study) -> String {
    format!("/studies/{}/import", s.id)
}

fn import_page_markup(
    st: &AppState,
    p: &Principal,
    s: &Study,
    file: Option<(&str, &Outcome)>,
) -> Markup {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    html! {
        p { a href=(format!("/studies/{}", s.id)) { "← " (s.code) } }
        h1 { (t("import-title")) " · " (s.code) }
        @if let Some((name, o)) = file {
            section aria-labelledby="report" {
                h2 #report { (t("import-report")) ": " span.mono { (name) } }
                @if let Some(e) = &o.error {
                    div.error role="alert" {
                        p { strong { (t("import-refused")) } }
                        ul { @for l in error_lines(e) { li { (l) } } }
                    }
                }
                @if let Some(plan) = &o.report {
                    @if o.imported {
                        p.ok role="status" { (t("import-done")) " (" (o.audit_entries) " " (t("import-audit-entries")) ")" }
                    } @else if o.error.is_none() {
                        p role="status" { @if plan.nothing_to_write { (t("import-nothing-new")) } @else { (t("import-checked")) } }
                    }
                    dl {
                        dt { (t("import-new-versions")) } dd.mono { @if plan.new_versions.is_empty() { "—" } @else { (plan.new_versions.join(", ")) } }
                        dt { (t("import-identical-versions")) } dd.mono { @if plan.identical_versions.is_empty() { "—" } @else { (plan.identical_versions.join(", ")) } }
                        dt { (t("import-new-subjects")) } dd { (plan.new_subjects) }
                        dt { (t("import-values")) } dd { (plan.values) " (" (plan.values_changed) " " (t("import-values-changed")) ")" }
                        dt { (t("import-queries")) } dd {
                            (plan.queries)
                            @if plan.queries_already_imported > 0 { " (" (plan.queries_already_imported) " " (t("import-queries-already")) ")" }
                        }
                    }
                    @if !plan.warnings.is_empty() || !plan.not_imported.is_empty() {
                        h3 { (t("import-warnings")) }
                        ul { @for w in plan.warnings.iter().chain(&plan.not_imported) { li { (w) } } }
                    }
                }
            }
        }
        section aria-labelledby="upload" {
            h2 #upload { (t("import-upload")) }
            p.muted { (t("import-help")) }
            form.stack method="post" action=(import_url(s)) enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(p.csrf_token);
                label for="file" { (t("import-file")) }
                input #file type="file" name="file" accept=".xml,application/xml,text/xml" required;
                label for="default_site" { (t("import-default-site")) }
                input #default_site name="default_site" aria-describedby="default_site_help";
                p.muted #default_site_help { (t("import-default-site-help")) }
                div.actions {
                    button.secondary type="submit" name="action" value="check" { (t("import-check")) }
                    " "
                    button.primary type="submit" name="action" value="import" { (t("import-do")) }
                }
            }
        }
    }
}

/// The import page of a study: upload an ODM file to check it or import it.
pub async fn import_page(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
) -> Response {
    let t = st.i18n.t(&p.locale, "import-title");
    html_response(
        StatusCode::OK,
        page(&st, Some(&p), &t, import_page_markup(&st, &p, &s, None)),
    )
}

/// A posted file: checked (`action=check`) or imported (`action=import`), then reported.
pub async fn import_submit(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    mut form: Multipart,
) -> Response {
    let (mut csrf, mut action, mut default_site) = (String::new(), String::new(), None);
    let mut file: Option<(String, Bytes)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("the upload could not be read: {e}"),
                )
                .into_response();
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(ToOwned::to_owned);
        let Ok(data) = field.bytes().await else {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the upload could not be read",
            )
            .into_response();
        };
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&data).into_owned(),
            "action" => action = String::from_utf8_lossy(&data).into_owned(),
            "default_site" => default_site = Some(String::from_utf8_lossy(&data).into_owned()),
            "file" => file = Some((file_name.unwrap_or_else(|| "upload.xml".into()), data)),
            _ => {}
        }
    }
    if !check_csrf(&p, &csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let t = st.i18n.t(&p.locale, "import-title");
    let Some((name, bytes)) = file.filter(|(_, b)| !b.is_empty()) else {
        let o = Outcome::failed(
            None,
            ImportError::Target(st.i18n.t(&p.locale, "import-no-file")),
        );
        let m = import_page_markup(&st, &p, &s, Some(("—", &o)));
        return html_response(StatusCode::UNPROCESSABLE_ENTITY, page(&st, Some(&p), &t, m));
    };
    let o = attempt(
        &st,
        &p,
        &s,
        (&name, &bytes),
        default_site,
        action == "import",
        request_id(&headers),
    )
    .await;
    let status = if o.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let m = import_page_markup(&st, &p, &s, Some((&name, &o)));
    html_response(status, page(&st, Some(&p), &t, m))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// Only check: report what would be imported and write nothing.
    #[serde(default)]
    check: bool,
    /// Site (code) for new subjects whose SiteRef matches no site.
    #[serde(default)]
    default_site: Option<String>,
    /// The file's name, for the audit trail.
    #[serde(default)]
    file_name: Option<String>,
}

/// `POST /api/v1/studies/{study}/odm` with an ODM file as the body (`application/xml`).
pub async fn api_import(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Query(q): Query<ImportParams>,
    body: Bytes,
) -> ApiResult<Response> {
    let xml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.split(';').next().unwrap_or("").trim();
            v == "application/xml" || v == "text/xml"
        });
    if !xml {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the ODM file as the body with Content-Type: application/xml",
        ));
    }
    let name = q.file_name.unwrap_or_else(|| "api-upload.xml".into());
    let o = attempt(
        &st,
        &p,
        &s,
        (&name, &body),
        q.default_site,
        !q.check,
        request_id(&headers),
    )
    .await;
    let report = o.report.as_ref().map(|plan| {
        json!({
            "new_metadata_versions": plan.new_versions,
            "identical_metadata_versions": plan.identical_versions,
            "new_subjects": plan.new_subjects,
            "values": plan.values,
            "values_changed": plan.values_changed,
            "queries": plan.queries,
            "queries_already_imported": plan.queries_already_imported,
            "warnings": plan.warnings.iter().chain(&plan.not_imported).collect::<Vec<_>>(),
        })
    });
    if let Some(e) = &o.error {
        let code = match e {
            ImportError::Unreadable { .. } => "odm_unreadable",
            ImportError::Refused(_) => "odm_refused",
            ImportError::Target(_) => "odm_target",
            ImportError::Store(e) => e.code(),
        };
        return Err(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
                .with_extension("errors", json!(error_lines(e))),
        );
    }
    Ok(axum::Json(json!({
        "imported": o.imported,
        "audit_entries": o.audit_entries,
        "report": report,
    }))
    .into_response())
}
