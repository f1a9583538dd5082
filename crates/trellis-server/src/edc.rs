//! Data capture without a user interface: which design a subject's forms follow, the
//! values of one form instance, and saving a form (edit checks, derivations, automatic
//! queries, one audited write). The browser pages (`edc_ui`) and the JSON API
//! (`edc_api`) both go through here, so the two cannot save differently.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use trellis_checks::{Env, Severity};
use trellis_domain::{QueryId, StudyId, SubjectId, TzName, UtcMicros};
use trellis_edc::{
    Evaluation, ExternalKey, FindingKind, FormDesign, FormPath, ItemPath, LocalKey, StudyDesign,
};
use trellis_store::{
    Actor, LockRow, LockState, Mutation, QueryAction, QueryRow, QueryStatus, Store, StoreError,
    Study, Subject, SubjectContext, WriteRequest,
};

use crate::AppState;
use crate::authz::Principal;

/// Study designs by (study, metadata version). Versions are immutable, so a design
/// once built stays valid.
#[derive(Clone, Default)]
pub struct DesignCache(Arc<std::sync::RwLock<Designs>>);

type Designs = HashMap<(StudyId, String), Arc<StudyDesign>>;

impl DesignCache {
    pub(crate) async fn get(
        &self,
        store: &Store,
        study: StudyId,
        oid: &str,
    ) -> Result<Option<Arc<StudyDesign>>, String> {
        let key = (study, oid.to_owned());
        if let Ok(map) = self.0.read()
            && let Some(d) = map.get(&key)
        {
            return Ok(Some(d.clone()));
        }
        let Some(text) = store
            .metadata_version_odm(study, oid)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let odm = trellis_odm::read_str(&text).map_err(|e| e.to_string())?.odm;
        let Some(definition) = odm.studies.first() else {
            return Ok(None);
        };
        let design = Arc::new(StudyDesign::build(definition, oid).map_err(|e| e.to_string())?);
        if let Ok(mut map) = self.0.write() {
            map.insert(key, design.clone());
        }
        Ok(Some(design))
    }
}

/// The design a subject's forms follow: its assigned version, else the study's first.
pub async fn subject_design(
    st: &AppState,
    study: &Study,
    subject: SubjectId,
) -> Result<Option<Arc<StudyDesign>>, String> {
    // The rule (assigned, else the study's first) lives in `Store::subject_context`.
    let version = st
        .store
        .subject_context(study.id, subject)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|c| c.version);
    let Some(oid) = version else {
        return Ok(None);
    };
    st.designs.get(&st.store, study.id, &oid).await
}

/// The subject with the given id if the principal may see its site.
pub async fn subject_in_scope(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
) -> Result<Option<Subject>, StoreError> {
    let Some(x) = st.store.subject(s.id, subject).await? else {
        return Ok(None);
    };
    Ok(p.sees_site(s.id, x.site).then_some(x))
}

/// Why a form instance cannot be opened.
#[derive(Debug)]
pub enum ContextError {
    /// No such subject (or not at the caller's sites), design, or form instance.
    NotFound(&'static str),
    /// The subject is at a site the caller does not see.
    OutOfScope,
    Store(StoreError),
    /// The stored study design cannot be loaded: a server fault, logged.
    Design(String),
}

impl From<StoreError> for ContextError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// One form instance of one subject, with the design it follows.
pub struct FormContext {
    pub subject: Subject,
    pub design: Arc<StudyDesign>,
    pub path: FormPath,
    /// The subject's site's zone: `today()` in edit checks is the site's date.
    pub site_time_zone: Option<TzName>,
}

impl FormContext {
    pub async fn load(
        st: &AppState,
        p: &Principal,
        s: &Study,
        subject: SubjectId,
        form: &str,
    ) -> Result<Self, ContextError> {
        let Some(c) = st.store.subject_context(s.id, subject).await? else {
            return Err(ContextError::NotFound("subject"));
        };
        if !p.sees_site(s.id, c.subject.site) {
            return Err(ContextError::NotFound("subject"));
        }
        Self::for_subject(st, s, c, form).await
    }

    /// What a form save needs, from one read (`Store::subject_form`): the subject with
    /// the form instance, the values, and the subject's queries without threads (which
    /// [`save_form`] needs to open and close automatic queries). `Ok(None)` if the study has
    /// no such subject; the caller checks the subject's site against the user's scope.
    pub async fn for_save(
        st: &AppState,
        s: &Study,
        subject: SubjectId,
        form: &str,
        in_scope: impl FnOnce(&Subject) -> bool,
    ) -> Result<Option<(Self, FormValues, Vec<trellis_store::QueryRow>)>, ContextError> {
        let Some(read) = st.store.subject_form(s.id, subject).await? else {
            return Ok(None);
        };
        if !in_scope(&read.context.subject) {
            return Err(ContextError::OutOfScope);
        }
        let ctx = Self::for_subject(st, s, read.context, form).await?;
        let values = FormValues::from_values(&read.values, &ctx);
        Ok(Some((ctx, values, read.queries)))
    }

    /// The form instance of a subject the caller has already found in the user's scope
    /// (read with `Store::subject_context`: the subject, its version and its site's zone).
    pub async fn for_subject(
        st: &AppState,
        s: &Study,
        context: SubjectContext,
        form: &str,
    ) -> Result<Self, ContextError> {
        let SubjectContext {
            subject,
            version,
            site_time_zone,
        } = context;
        let Some(oid) = version else {
            return Err(ContextError::NotFound("study design"));
        };
        let design = match st.designs.get(&st.store, s.id, &oid).await {
            Ok(Some(d)) => d,
            Ok(None) => return Err(ContextError::NotFound("study design")),
            Err(e) => return Err(ContextError::Design(e)),
        };
        let Ok(path) = form.parse::<FormPath>() else {
            return Err(ContextError::NotFound("form"));
        };
        let known = design.event(path.event.as_str()).is_some_and(|e| {
            e.forms.contains(&path.form) && (e.repeating || path.event_repeat == 1)
        }) && design
            .form(path.form.as_str())
            .is_some_and(|f| f.repeating || path.form_repeat == 1);
        if !known {
            return Err(ContextError::NotFound("form"));
        }
        Ok(Self {
            subject,
            design,
            path,
            site_time_zone,
        })
    }

    pub fn form(&self) -> Option<&FormDesign> {
        self.design.form(self.path.form.as_str())
    }

    /// The store's item key of an item of this form instance.
    pub fn address(&self, k: &LocalKey) -> String {
        item_address(&self.path, k)
    }
}

/// Percent-encodes all but unreserved characters, so a form address is one path segment.
pub fn url_encode_segment(s: &str) -> String {
    crate::ui::url_encode(s).replace('/', "%2F")
}

pub fn item_address(form: &FormPath, k: &LocalKey) -> String {
    ItemPath {
        form: form.clone(),
        group: k.group.clone(),
        group_repeat: k.repeat,
        item: k.item.clone(),
    }
    .to_string()
}

/// What is saved for a subject, seen from one form instance.
pub struct FormValues {
    /// The form's non-blank values.
    pub saved: BTreeMap<LocalKey, String>,
    /// All the subject's non-blank values by item key (cross-form checks read them).
    pub by_key: HashMap<String, String>,
    /// Today at the subject's site, so `today()` in checks does not depend on the server's zone.
    pub today: jiff::civil::Date,
}

impl FormValues {
    pub async fn load(st: &AppState, s: &Study, ctx: &FormContext) -> Result<Self, StoreError> {
        let all = st.store.item_values(s.id, ctx.subject.id).await?;
        Ok(Self::from_values(&all, ctx))
    }

    /// The values of a form instance from all the subject's values.
    pub fn from_values(all: &[(String, Option<String>)], ctx: &FormContext) -> Self {
        let (saved, by_key) = split_values(all, &ctx.path);
        let tz = ctx
            .site_time_zone
            .as_ref()
            .map_or(jiff::tz::TimeZone::UTC, |z| z.to_tz());
        let today = jiff::Timestamp::now().to_zoned_datetime(tz).date();
        Self {
            saved,
            by_key,
            today,
        }
    }

    /// The edit-check results of the saved values.
    pub fn evaluate_saved(&self, ctx: &FormContext, design: &FormDesign) -> Evaluation {
        evaluate(design, &ctx.path, &self.saved, &self.by_key, self.today)
    }
}

/// The subject's values of one form instance, and all its values by address.
pub fn split_values(
    all: &[(String, Option<String>)],
    form: &FormPath,
) -> (BTreeMap<LocalKey, String>, HashMap<String, String>) {
    let mut local = BTreeMap::new();
    let mut by_key = HashMap::new();
    for (k, v) in all {
        let Some(v) = v else { continue };
        by_key.insert(k.clone(), v.clone());
        if let Ok(path) = k.parse::<ItemPath>()
            && &path.form == form
        {
            local.insert(
                LocalKey {
                    group: path.group,
                    repeat: path.group_repeat,
                    item: path.item,
                },
                v.clone(),
            );
        }
    }
    (local, by_key)
}

pub fn evaluate(
    design: &FormDesign,
    form: &FormPath,
    local: &BTreeMap<LocalKey, String>,
    all: &HashMap<String, String>,
    today: jiff::civil::Date,
) -> Evaluation {
    let lookup = |k: &ExternalKey| {
        let (event, event_repeat) = match k.event {
            Some(e) => (e.to_string(), 1),
            None => (form.event.to_string(), form.event_repeat),
        };
        all.get(&format!(
            "{event}[{event_repeat}]/{}[1]/{}[1]/{}",
            k.form, k.group, k.item
        ))
        .cloned()
    };
    trellis_edc::evaluate(design, local, &lookup, &Env { today })
}

/// Values as the form shows them: derived items as they compute now, also before the
/// next save stores them.
pub fn shown_values(
    saved: &BTreeMap<LocalKey, String>,
    evaluation: &Evaluation,
) -> BTreeMap<LocalKey, String> {
    let mut shown = saved.clone();
    for (k, v) in &evaluation.derived {
        match v {
            Some(v) => shown.insert(k.clone(), v.clone()),
            None => shown.remove(k),
        };
    }
    shown
}

/// How a save ended (infrastructure failures are the `Err` of [`save_form`]).
#[derive(Debug)]
pub enum SaveOutcome {
    /// Written in one audited transaction.
    Saved {
        /// Item keys written (submitted and derived), with their new values.
        changes: Vec<(String, Option<String>)>,
        audit_entries: usize,
        queries_opened: Vec<QueryId>,
        queries_closed: Vec<QueryId>,
        committed_at: Option<UtcMicros>,
    },
    /// Nothing differs from what is saved; nothing written.
    Unchanged,
    /// A hard edit check or a value that does not fit its item refuses the save.
    Refused,
    /// Saved values would change and no reason was given.
    ReasonRequired,
    /// The store refused it: the form is frozen or locked, or a value is invalid.
    Rejected(StoreError),
}

pub struct SaveReport {
    /// The form's values as they are after the save (or would have been).
    pub merged: BTreeMap<LocalKey, String>,
    pub evaluation: Evaluation,
    pub outcome: SaveOutcome,
}

/// Saves submitted values of one form instance: `Some` sets an item, `None` clears it.
/// Edit checks run on the whole form; a hard finding refuses everything; otherwise the
/// submitted and derived changes are written together with the queries failing soft
/// checks open and those of checks that now hold close, in one audited write.
#[allow(clippy::too_many_arguments)]
pub async fn save_form(
    st: &AppState,
    actor: Actor,
    request_id: Option<String>,
    s: &Study,
    ctx: &FormContext,
    values: FormValues,
    existing: Vec<trellis_store::QueryRow>,
    submitted: &BTreeMap<LocalKey, Option<String>>,
    reason: Option<String>,
) -> Result<SaveReport, StoreError> {
    let Some(design) = ctx.form() else {
        return Err(StoreError::NotFound {
            entity: "form",
            id: ctx.path.to_string(),
        });
    };
    let FormValues {
        saved,
        mut by_key,
        today,
    } = values;
    let mut merged = saved.clone();
    for (k, v) in submitted {
        match v {
            Some(v) => merged.insert(k.clone(), v.clone()),
            None => merged.remove(k),
        };
    }
    for (k, v) in &merged {
        by_key.insert(ctx.address(k), v.clone());
    }
    let evaluation = evaluate(design, &ctx.path, &merged, &by_key, today);
    let report = |outcome| SaveReport {
        merged: merged.clone(),
        evaluation: evaluation.clone(),
        outcome,
    };
    if evaluation.refused() {
        return Ok(report(SaveOutcome::Refused));
    }
    // What changes: submitted items and derived items whose value differs from what is saved.
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    let mut changes_saved_value = false;
    for (k, v) in submitted
        .iter()
        .map(|(k, v)| (k, v.clone()))
        .chain(evaluation.derived.iter().map(|(k, v)| (k, v.clone())))
    {
        let before = saved.get(k);
        if before != v.as_ref() {
            changes_saved_value |= before.is_some();
            changes.push((ctx.address(k), v));
        }
    }
    changes.sort();
    changes.dedup_by(|a, b| a.0 == b.0);
    if changes.is_empty() {
        return Ok(report(SaveOutcome::Unchanged));
    }
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if changes_saved_value && reason.is_none() {
        return Ok(report(SaveOutcome::ReasonRequired));
    }
    let automatic = automatic_queries(s.id, ctx.subject.id, &ctx.path, &evaluation, &existing);
    let mut queries_opened = Vec::new();
    let mut queries_closed = Vec::new();
    for m in &automatic {
        match m {
            Mutation::OpenQuery { id, .. } => queries_opened.push(*id),
            Mutation::UpdateQuery { id, .. } => queries_closed.push(*id),
            _ => {}
        }
    }
    let mut mutations = vec![Mutation::SaveItems {
        study: s.id,
        subject: ctx.subject.id,
        values: changes.clone(),
    }];
    mutations.extend(automatic);
    let mut req = WriteRequest::new(actor, mutations);
    req.reason = reason;
    req.request_id = request_id;
    match st.store.write(req).await {
        Ok(receipt) => Ok(report(SaveOutcome::Saved {
            changes,
            audit_entries: receipt.entries.len(),
            queries_opened,
            queries_closed,
            committed_at: receipt.committed_at,
        })),
        Err(StoreError::ReasonRequired { .. }) => Ok(report(SaveOutcome::ReasonRequired)),
        Err(e @ (StoreError::Invalid { .. } | StoreError::Locked(_))) => {
            Ok(report(SaveOutcome::Rejected(e)))
        }
        Err(e) => Err(e),
    }
}

/// Queries a save opens and closes by itself, in the same write as the save: a failing
/// soft edit check opens one on each item it names (unless one is already open for that
/// check and item), and a check that now holds closes its own.
fn automatic_queries(
    study: StudyId,
    subject: SubjectId,
    form: &FormPath,
    evaluation: &Evaluation,
    existing: &[QueryRow],
) -> Vec<Mutation> {
    let live = |key: &str, check: &str| {
        let (key, check) = (key.to_owned(), check.to_owned());
        existing.iter().filter(move |q| {
            q.status != QueryStatus::Closed
                && q.item_key == key
                && q.check_id.as_deref() == Some(check.as_str())
        })
    };
    let mut out = Vec::new();
    for f in &evaluation.findings {
        // Blank required items are shown, not queried, while a form is being filled in.
        if f.severity != Severity::Soft
            || !matches!(
                f.kind,
                FindingKind::Check | FindingKind::NotCollected | FindingKind::CannotEvaluate
            )
        {
            continue;
        }
        for t in &f.targets {
            let key = item_address(form, t);
            if live(&key, &f.check_id).next().is_none() {
                out.push(Mutation::OpenQuery {
                    study,
                    id: QueryId::new(),
                    subject,
                    item_key: key,
                    check_id: Some(f.check_id.clone()),
                    text: f.message.clone(),
                });
            }
        }
    }
    for (check, t) in &evaluation.resolved {
        let key = item_address(form, t);
        for q in live(&key, check) {
            out.push(Mutation::UpdateQuery {
                study,
                id: q.id,
                action: QueryAction::Close,
                text: "Closed automatically: the edit check now holds.".into(),
            });
        }
    }
    out
}

/// The freeze or lock that closes a form: the study's, the casebook's or the form's own,
/// a lock before a freeze.
pub fn applicable_lock(locks: &[LockRow], subject: SubjectId, form: &str) -> Option<LockRow> {
    let mut found: Vec<&LockRow> = locks
        .iter()
        .filter(|l| match l.subject {
            None => l.scope.is_empty(),
            Some(s) => s == subject && (l.scope.is_empty() || l.scope == form),
        })
        .collect();
    found.sort_by_key(|l| l.state != LockState::Locked);
    found.first().map(|l| (*l).clone())
}

/// The freeze or lock of a whole casebook: the study's or the subject's own.
pub fn casebook_lock(locks: &[LockRow], subject: SubjectId) -> Option<LockRow> {
    locks
        .iter()
        .filter(|l| l.scope.is_empty() && (l.subject.is_none() || l.subject == Some(subject)))
        .min_by_key(|l| l.state != LockState::Locked)
        .cloned()
}
