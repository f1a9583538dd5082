//! Data entry in the browser: a subject's casebook, its forms with edit checks run on
//! every save, and each item's audit history.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use trellis_checks::{Env, Severity};
use trellis_domain::{StudyId, SubjectId};
use trellis_edc::{Evaluation, ExternalKey, FormDesign, FormPath, ItemPath, LocalKey, StudyDesign};
use trellis_store::{
    Actor, AuditFilter, Chain, Mutation, Store, StoreError, Study, Subject, WriteRequest,
};

use crate::AppState;
use crate::authz::{Permission, Principal};
use crate::crf::{self, FormView};
use crate::i18n::format_time;
use crate::ui::{check_csrf, error_page, html_response, page, subject_in_scope, url_encode};

/// Study designs by (study, metadata version). Versions are immutable, so a design
/// once built stays valid.
#[derive(Clone, Default)]
pub struct DesignCache(Arc<std::sync::RwLock<Designs>>);

type Designs = HashMap<(StudyId, String), Arc<StudyDesign>>;

impl DesignCache {
    async fn get(
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
async fn subject_design(
    st: &AppState,
    study: &Study,
    subject: SubjectId,
) -> Result<Option<Arc<StudyDesign>>, String> {
    let assigned = st
        .store
        .subject_versions(study.id)
        .await
        .map_err(|e| e.to_string())?;
    let oid = match assigned.into_iter().find(|(s, _)| *s == subject) {
        Some((_, oid)) => oid,
        None => match st
            .store
            .metadata_versions(study.id)
            .await
            .map_err(|e| e.to_string())?
            .first()
        {
            Some(v) => v.oid.clone(),
            None => return Ok(None),
        },
    };
    st.designs.get(&st.store, study.id, &oid).await
}

fn form_url(study: &Study, subject: SubjectId, form: &FormPath) -> String {
    format!(
        "/studies/{}/subjects/{}/forms/{}",
        study.id,
        subject,
        url_encode_all(&form.to_string())
    )
}

/// Percent-encodes everything but unreserved characters, so a form address is one path segment.
fn url_encode_all(s: &str) -> String {
    url_encode(s).replace('/', "%2F")
}

fn history_url(study: &Study, subject: SubjectId, key: &str) -> String {
    format!(
        "/studies/{}/subjects/{}/history?item={}",
        study.id,
        subject,
        url_encode_all(key)
    )
}

/// The subject's values of one form instance, and all its values by address.
fn split_values(
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

fn evaluate(
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

/// Today at the subject's site, so `today()` in checks does not depend on the server's zone.
async fn site_today(st: &AppState, study: &Study, subject: &Subject) -> jiff::civil::Date {
    let zone = st
        .store
        .sites(study.id)
        .await
        .ok()
        .and_then(|sites| sites.into_iter().find(|x| x.id == subject.site))
        .map(|x| x.time_zone);
    let now = jiff::Timestamp::now();
    let tz = zone.map_or(jiff::tz::TimeZone::UTC, |z| z.to_tz());
    now.to_zoned_datetime(tz).date()
}

pub async fn casebook(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
) -> Response {
    let Some(subject) = subject_in_scope(&st, &p, &s, subject).await else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let design = match subject_design(&st, &s, subject.id).await {
        Ok(d) => d,
        Err(e) => return server_error(&st, &p, &e),
    };
    let values = match st.store.item_values(s.id, subject.id).await {
        Ok(v) => v,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let mut counts: HashMap<FormPath, usize> = HashMap::new();
    for (k, v) in &values {
        if v.is_some()
            && let Ok(path) = k.parse::<ItemPath>()
        {
            *counts.entry(path.form).or_default() += 1;
        }
    }
    let body = html! {
        p { a href=(format!("/studies/{}", s.id)) { "← " (s.code) } }
        h1 { (t("casebook-title")) " " (subject.screening_number) }
        @match &design {
            None => p.notice { (t("casebook-no-design")) },
            Some(design) => {
                p.muted { (t("casebook-version")) " " (design.metadata_version) }
                table {
                    thead { tr { th scope="col" { (t("casebook-event")) } th scope="col" { (t("casebook-day")) } th scope="col" { (t("casebook-form")) } th scope="col" { (t("casebook-values")) } } }
                    tbody {
                        @for event in &design.events {
                            @for (i, form_oid) in event.forms.iter().enumerate() {
                                @let Some(form) = design.form(form_oid.as_str()) else { continue };
                                @let path = FormPath { event: event.oid.clone(), event_repeat: 1, form: form.oid.clone(), form_repeat: 1 };
                                tr {
                                    td { @if i == 0 { (event.name) } }
                                    td { @if i == 0 { @if let Some(sch) = event.schedule {
                                        (sch.planned_day)
                                        @if sch.window_before > 0 || sch.window_after > 0 { " (−" (sch.window_before) "/+" (sch.window_after) ")" }
                                    } } }
                                    td { a href=(form_url(&s, subject.id, &path)) { (form.name) } }
                                    td { (counts.get(&path).copied().unwrap_or(0)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page(&st, Some(&p), &subject.screening_number, body),
    )
}

fn server_error(st: &AppState, p: &Principal, detail: &str) -> Response {
    tracing::error!(detail, "study design could not be loaded");
    error_page(
        st,
        Some(p),
        StatusCode::INTERNAL_SERVER_ERROR,
        "error-internal",
    )
}

#[derive(Deserialize, Default)]
pub struct FormQuery {
    saved: Option<u8>,
}

struct FormContext {
    subject: Subject,
    design: Arc<StudyDesign>,
    path: FormPath,
}

async fn form_context(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
    form: &str,
) -> Result<FormContext, Response> {
    let Some(subject) = subject_in_scope(st, p, s, subject).await else {
        return Err(error_page(
            st,
            Some(p),
            StatusCode::NOT_FOUND,
            "error-not-found",
        ));
    };
    let design = match subject_design(st, s, subject.id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return Err(error_page(
                st,
                Some(p),
                StatusCode::NOT_FOUND,
                "error-not-found",
            ));
        }
        Err(e) => return Err(server_error(st, p, &e)),
    };
    let Ok(path) = form.parse::<FormPath>() else {
        return Err(error_page(
            st,
            Some(p),
            StatusCode::NOT_FOUND,
            "error-not-found",
        ));
    };
    let known = design
        .event(path.event.as_str())
        .is_some_and(|e| e.forms.contains(&path.form) && (e.repeating || path.event_repeat == 1))
        && design
            .form(path.form.as_str())
            .is_some_and(|f| f.repeating || path.form_repeat == 1);
    if !known {
        return Err(error_page(
            st,
            Some(p),
            StatusCode::NOT_FOUND,
            "error-not-found",
        ));
    }
    Ok(FormContext {
        subject,
        design,
        path,
    })
}

#[allow(clippy::too_many_arguments)]
fn form_markup(
    st: &AppState,
    p: &Principal,
    s: &Study,
    ctx: &FormContext,
    values: &BTreeMap<LocalKey, String>,
    evaluation: &Evaluation,
    needs_reason: bool,
    message: Option<(String, bool)>,
) -> Markup {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let Some(form) = ctx.design.form(ctx.path.form.as_str()) else {
        return html! {};
    };
    let event_name = ctx
        .design
        .event(ctx.path.event.as_str())
        .map_or(ctx.path.event.to_string(), |e| e.name.clone());
    let can_enter = p.can(s, Permission::EnterData);
    let base = ItemPathBase {
        study: s.clone(),
        subject: ctx.subject.id,
        form: ctx.path.clone(),
    };
    let history = move |k: &LocalKey| {
        let key = ItemPath {
            form: base.form.clone(),
            group: k.group.clone(),
            group_repeat: k.repeat,
            item: k.item.clone(),
        };
        history_url(&base.study, base.subject, &key.to_string())
    };
    let view = FormView {
        design: form,
        values,
        findings: &evaluation.findings,
        not_collected: &evaluation.not_collected,
        lang: &p.locale,
        needs_reason,
        read_only: !can_enter,
        history_url: &history,
    };
    let hard = evaluation
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Hard)
        .count();
    let soft = evaluation.findings.len() - hard;
    html! {
        p { a href=(format!("/studies/{}/subjects/{}", s.id, ctx.subject.id)) { "← " (ctx.subject.screening_number) } }
        h1 { (form.name) " · " (event_name) }
        @if let Some((text, is_error)) = &message {
            div.(if *is_error { "error" } else { "notice" }) role="status" { (text) }
        }
        @if hard > 0 || soft > 0 {
            div.(if hard > 0 { "error" } else { "notice" }) role="status" {
                @if hard > 0 { (st.i18n.t_args(&p.locale, "crf-refused", &[("count", (hard as i64).into())])) " " }
                @if soft > 0 { (st.i18n.t_args(&p.locale, "crf-warnings", &[("count", (soft as i64).into())])) }
            }
        }
        form.crf method="post" action=(form_url(s, ctx.subject.id, &ctx.path)) novalidate {
            input type="hidden" name="csrf" value=(p.csrf_token);
            (crf::form_fields(&view, &t))
            @if can_enter {
                div.actions { button.primary type="submit" { (t("crf-save")) } }
            }
        }
    }
}

struct ItemPathBase {
    study: Study,
    subject: SubjectId,
    form: FormPath,
}

pub async fn form_page(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject, form)): Path<(String, SubjectId, String)>,
    Query(q): Query<FormQuery>,
) -> Response {
    let ctx = match form_context(&st, &p, &s, subject, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let all = match st.store.item_values(s.id, ctx.subject.id).await {
        Ok(v) => v,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let (local, by_key) = split_values(&all, &ctx.path);
    let Some(design) = ctx.design.form(ctx.path.form.as_str()) else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let today = site_today(&st, &s, &ctx.subject).await;
    let evaluation = evaluate(design, &ctx.path, &local, &by_key, today);
    let message = q.saved.map(|_| (st.i18n.t(&p.locale, "crf-saved"), false));
    // Derived items show what they compute to now, also before the next save stores it.
    let mut shown = local.clone();
    for (k, v) in &evaluation.derived {
        match v {
            Some(v) => shown.insert(k.clone(), v.clone()),
            None => shown.remove(k),
        };
    }
    let m = form_markup(
        &st,
        &p,
        &s,
        &ctx,
        &shown,
        &evaluation,
        !local.is_empty(),
        message,
    );
    html_response(StatusCode::OK, page(&st, Some(&p), &design.name, m))
}

pub async fn form_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject, form)): Path<(String, SubjectId, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if !check_csrf(&p, csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let ctx = match form_context(&st, &p, &s, subject, &form).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(design) = ctx.design.form(ctx.path.form.as_str()) else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let reason = pairs
        .iter()
        .find(|(k, _)| k == "reason")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|r| !r.is_empty());
    let all = match st.store.item_values(s.id, ctx.subject.id).await {
        Ok(v) => v,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let (saved, mut by_key) = split_values(&all, &ctx.path);
    let today = site_today(&st, &s, &ctx.subject).await;
    let respond = |status: StatusCode,
                   values: &BTreeMap<LocalKey, String>,
                   evaluation: &Evaluation,
                   message: Option<(String, bool)>| {
        let m = form_markup(
            &st,
            &p,
            &s,
            &ctx,
            values,
            evaluation,
            !saved.is_empty(),
            message,
        );
        html_response(status, page(&st, Some(&p), &design.name, m))
    };
    let submitted = match crf::read_submission(design, &pairs) {
        Ok(v) => v,
        Err(errors) => {
            let text = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            let evaluation = evaluate(design, &ctx.path, &saved, &by_key, today);
            return respond(
                StatusCode::BAD_REQUEST,
                &saved,
                &evaluation,
                Some((text, true)),
            );
        }
    };
    let mut merged = saved.clone();
    for (k, v) in &submitted {
        match v {
            Some(v) => merged.insert(k.clone(), v.clone()),
            None => merged.remove(k),
        };
    }
    for (k, v) in &merged {
        let key = ItemPath {
            form: ctx.path.clone(),
            group: k.group.clone(),
            group_repeat: k.repeat,
            item: k.item.clone(),
        };
        by_key.insert(key.to_string(), v.clone());
    }
    let evaluation = evaluate(design, &ctx.path, &merged, &by_key, today);
    if evaluation.refused() {
        // Nothing is saved; the entered values are shown again with what is wrong.
        return respond(StatusCode::UNPROCESSABLE_ENTITY, &merged, &evaluation, None);
    }
    // What changes: submitted items and derived items whose value differs from what is saved.
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    let mut changes_saved_value = false;
    let address = |k: &LocalKey| {
        ItemPath {
            form: ctx.path.clone(),
            group: k.group.clone(),
            group_repeat: k.repeat,
            item: k.item.clone(),
        }
        .to_string()
    };
    for (k, v) in submitted
        .iter()
        .map(|(k, v)| (k, v.clone()))
        .chain(evaluation.derived.iter().map(|(k, v)| (k, v.clone())))
    {
        let before = saved.get(k);
        if before != v.as_ref() {
            changes_saved_value |= before.is_some();
            changes.push((address(k), v));
        }
    }
    changes.sort();
    changes.dedup_by(|a, b| a.0 == b.0);
    if changes.is_empty() {
        return respond(
            StatusCode::OK,
            &merged,
            &evaluation,
            Some((st.i18n.t(&p.locale, "crf-unchanged"), false)),
        );
    }
    if changes_saved_value && reason.is_none() {
        return respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            &merged,
            &evaluation,
            Some((st.i18n.t(&p.locale, "crf-reason-missing"), true)),
        );
    }
    let mut req = WriteRequest::new(
        Actor::user(p.user, &p.display_name),
        vec![Mutation::SaveItems {
            study: s.id,
            subject: ctx.subject.id,
            values: changes,
        }],
    );
    req.reason = reason;
    match st.store.write(req).await {
        Ok(_) => Redirect::to(&format!(
            "{}?saved=1",
            form_url(&s, ctx.subject.id, &ctx.path)
        ))
        .into_response(),
        Err(StoreError::ReasonRequired { .. }) => respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            &merged,
            &evaluation,
            Some((st.i18n.t(&p.locale, "crf-reason-missing"), true)),
        ),
        Err(e @ StoreError::Invalid { .. }) => respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            &merged,
            &evaluation,
            Some((e.to_string(), true)),
        ),
        Err(e) => crate::problem::Problem::from(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    item: String,
}

pub async fn item_history(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let Some(subject) = subject_in_scope(&st, &p, &s, subject).await else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let Ok(path) = q.item.parse::<ItemPath>() else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let entries = match st
        .store
        .audit_entries(&AuditFilter {
            chain: Some(Chain::Study(s.id)),
            entity_type: Some("item".into()),
            entity_id: Some(format!("{}/{}", subject.id, q.item)),
            limit: 1000,
            ..AuditFilter::default()
        })
        .await
    {
        Ok(e) => e,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let show = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        p { a href=(form_url(&s, subject.id, &path.form)) { "← " (subject.screening_number) " · " (path.form.form) } }
        h1 { (t("history-title")) " " span.mono { (path.item) } }
        p.muted.mono { (q.item) }
        table {
            thead { tr {
                th scope="col" { (t("audit-when")) } th scope="col" { (t("audit-who")) } th scope="col" { (t("audit-action")) }
                th scope="col" { (t("audit-old")) } th scope="col" { (t("audit-new")) } th scope="col" { (t("audit-reason")) }
            } }
            tbody { @for e in &entries {
                tr {
                    td { (format_time(&p.locale, &p.time_zone, e.body.recorded_at)) }
                    td { (e.body.actor_name) }
                    td { (e.body.action) }
                    td { (show(&e.body.old_value)) }
                    td { (show(&e.body.new_value)) }
                    td { (show(&e.body.reason)) }
                }
            } }
        }
    };
    html_response(
        StatusCode::OK,
        page(&st, Some(&p), &t("history-title"), body),
    )
}
