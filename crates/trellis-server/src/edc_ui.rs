//! Data entry in the browser: a subject's casebook, its forms with edit checks run on
//! every save, and each item's audit history.

use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use trellis_checks::Severity;
use trellis_domain::{QueryId, SubjectId};
use trellis_edc::{Evaluation, FormDesign, FormPath, ItemPath, LocalKey};
use trellis_store::{
    Actor, AuditFilter, Chain, LockRow, LockState, Mutation, QueryAction, QueryRow, QueryStatus,
    StoreError, Study, Subject, VerificationRow, WriteRequest,
};

use crate::AppState;
use crate::authz::{Permission, Principal};
use crate::crf::{self, FormView};
use crate::edc::{
    ContextError, FormContext, FormValues, SaveOutcome, applicable_lock, casebook_lock, save_form,
    shown_values, subject_design,
};
use crate::i18n::format_time;
use crate::ui::{check_csrf, error_page, html_response, page, subject_in_scope};

fn form_url(study: &Study, subject: SubjectId, form: &FormPath) -> String {
    format!(
        "/studies/{}/subjects/{}/forms/{}",
        study.id,
        subject,
        url_encode_all(&form.to_string())
    )
}

fn url_encode_all(s: &str) -> String {
    crate::edc::url_encode_segment(s)
}

fn history_url(study: &Study, subject: SubjectId, key: &str) -> String {
    format!(
        "/studies/{}/subjects/{}/history?item={}",
        study.id,
        subject,
        url_encode_all(key)
    )
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
    let locks = match st.store.locks(s.id).await {
        Ok(l) => l,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let (versions, signatures) = match (
        st.store.metadata_versions(s.id).await,
        st.store.signatures(s.id).await,
    ) {
        (Ok(v), Ok(g)) => (v, g),
        (Err(e), _) | (_, Err(e)) => return crate::problem::Problem::from(e).into_response(),
    };
    // The latest signature of this casebook, and whether the data are still what was signed.
    let subject_key = subject.id.to_string();
    let signature = signatures
        .iter()
        .filter(|g| g.entity_id == subject_key)
        .max_by_key(|g| g.signed_at)
        .map(|g| (g, crate::api::casebook_hash(&values) == g.content_hash));
    let casebook_lock = casebook_lock(&locks, subject.id);
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
        (crate::study_ui::subject_controls(&st, &p, &s, &subject, &versions, design.as_ref().map(|d| d.metadata_version.as_str())))
        @match signature {
            Some((g, true)) => p.signature {
                (t("casebook-signed")) " " (g.printed_name) " (" (g.meaning.as_str()) ", " (format_time(&p.locale, &p.time_zone, g.signed_at)) ") — " strong { (t("sign-valid")) }
            },
            Some((g, false)) => div.notice role="status" {
                (t("casebook-signed")) " " (g.printed_name) " (" (g.meaning.as_str()) ", " (format_time(&p.locale, &p.time_zone, g.signed_at)) ") — " strong.bad { (t("sign-invalid")) }
                ". " (t("casebook-resign-needed"))
                @if p.can(&s, Permission::Sign) { " " a href=(format!("/studies/{}/subjects/{}/sign", s.id, subject.id)) { (t("casebook-resign")) } }
            },
            None => {},
        }
        @match &design {
            None => p.notice { (t("casebook-no-design")) },
            Some(design) => {
                p.muted { (t("casebook-version")) " " (design.metadata_version) }
                @if let Some(lock) = &casebook_lock {
                    div.notice.locked role="status" { (t(&format!("lock-banner-casebook-{}", lock.state.as_str()))) }
                }
                (lock_controls(&st, &p, &s, subject.id, "", casebook_lock.as_ref(), ""))
                table {
                    thead { tr { th scope="col" { (t("casebook-event")) } th scope="col" { (t("casebook-day")) } th scope="col" { (t("casebook-form")) } th scope="col" { (t("casebook-values")) } th scope="col" { (t("casebook-state")) } } }
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
                                    td { @if let Some(l) = applicable_lock(&locks, subject.id, &path.to_string()) { (t(&format!("lock-state-{}", l.state.as_str()))) } }
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
    review: &Review,
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
    let extras = |k: &LocalKey| {
        let key = ItemPath {
            form: ctx.path.clone(),
            group: k.group.clone(),
            group_repeat: k.repeat,
            item: k.item.clone(),
        };
        item_badges(st, p, review, &key.to_string(), values.get(k))
    };
    let view = FormView {
        design: form,
        values,
        findings: &evaluation.findings,
        not_collected: &evaluation.not_collected,
        lang: &p.locale,
        needs_reason,
        read_only: !can_enter || review.lock.is_some(),
        history_url: &history,
        extras: &extras,
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
        @if let Some(lock) = &review.lock {
            div.notice.locked role="status" {
                (t(&format!("lock-banner-{}", lock.state.as_str())))
                " " span.muted { (format_time(&p.locale, &p.time_zone, lock.changed_at)) }
            }
        }
        (lock_controls(st, p, s, ctx.subject.id, &ctx.path.to_string(), review.lock.as_ref(), &form_url(s, ctx.subject.id, &ctx.path)))
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
            @if can_enter && review.lock.is_none() {
                div.actions { button.primary type="submit" { (t("crf-save")) } }
            }
        }
        (review_sections(st, p, s, ctx, form, review, values))
    }
}

struct ItemPathBase {
    study: Study,
    subject: SubjectId,
    form: FormPath,
}

/// Opens a form instance for a page, or the error page saying why it cannot be.
async fn form_context(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
    form: &str,
) -> Result<FormContext, Response> {
    FormContext::load(st, p, s, subject, form)
        .await
        .map_err(|e| context_response(st, p, e))
}

fn context_response(st: &AppState, p: &Principal, e: ContextError) -> Response {
    match e {
        // A subject at a site the user does not see is not there for them.
        ContextError::NotFound(_) | ContextError::OutOfScope => {
            error_page(st, Some(p), StatusCode::NOT_FOUND, "error-not-found")
        }
        ContextError::Store(e) => crate::problem::Problem::from(e).into_response(),
        ContextError::Design(e) => server_error(st, p, &e),
    }
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
    let Some(design) = ctx.form() else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let values = match FormValues::load(&st, &s, &ctx).await {
        Ok(v) => v,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let evaluation = values.evaluate_saved(&ctx, design);
    let message = q.saved.map(|_| (st.i18n.t(&p.locale, "crf-saved"), false));
    let shown = shown_values(&values.saved, &evaluation);
    let review = match Review::load(&st, &p, &s, ctx.subject.id, &ctx.path).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let m = form_markup(
        &st,
        &p,
        &s,
        &ctx,
        &shown,
        &evaluation,
        !values.saved.is_empty(),
        message,
        &review,
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
    // One read for the subject, the form's context, its values and queries.
    let (ctx, values, queries) =
        match FormContext::for_save(&st, &s, subject, &form, |x| p.sees_site(s.id, x.site)).await {
            Ok(Some(read)) => read,
            Ok(None) => return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found"),
            Err(e) => return context_response(&st, &p, e),
        };
    let Some(design) = ctx.form() else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let reason = pairs
        .iter()
        .find(|(k, _)| k == "reason")
        .map(|(_, v)| v.clone());
    let review = match Review::load(&st, &p, &s, ctx.subject.id, &ctx.path).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let had_values = !values.saved.is_empty();
    let respond = |status: StatusCode,
                   shown: &BTreeMap<LocalKey, String>,
                   evaluation: &Evaluation,
                   message: Option<(String, bool)>| {
        let m = form_markup(
            &st, &p, &s, &ctx, shown, evaluation, had_values, message, &review,
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
            let evaluation = values.evaluate_saved(&ctx, design);
            return respond(
                StatusCode::BAD_REQUEST,
                &values.saved,
                &evaluation,
                Some((text, true)),
            );
        }
    };
    let actor = Actor::user(p.user, &p.display_name);
    let report = match save_form(
        &st, actor, None, &s, &ctx, values, queries, &submitted, reason,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let (merged, evaluation) = (&report.merged, &report.evaluation);
    match report.outcome {
        SaveOutcome::Saved { .. } => Redirect::to(&format!(
            "{}?saved=1",
            form_url(&s, ctx.subject.id, &ctx.path)
        ))
        .into_response(),
        // Nothing is saved; the entered values are shown again with what is wrong.
        SaveOutcome::Refused => respond(StatusCode::UNPROCESSABLE_ENTITY, merged, evaluation, None),
        SaveOutcome::Unchanged => respond(
            StatusCode::OK,
            merged,
            evaluation,
            Some((t("crf-unchanged"), false)),
        ),
        SaveOutcome::ReasonRequired => respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            merged,
            evaluation,
            Some((t("crf-reason-missing"), true)),
        ),
        SaveOutcome::Rejected(e) => respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            merged,
            evaluation,
            Some((e.to_string(), true)),
        ),
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

/// What the form page shows about queries and source data verification.
struct Review {
    queries: Vec<QueryRow>,
    verifications: Vec<VerificationRow>,
    /// The freeze or lock that applies to this form, a lock before a freeze.
    lock: Option<LockRow>,
    /// The study's SDV plan and how much of this subject's data it covers; read only for
    /// those who verify (it ranks the subject among all of its site's subjects).
    sdv: Option<(trellis_edc::SdvPlan, trellis_edc::SubjectSdv)>,
}

impl Review {
    async fn load(
        st: &AppState,
        p: &Principal,
        s: &Study,
        subject: SubjectId,
        form: &FormPath,
    ) -> Result<Self, crate::problem::Problem> {
        let study = s.id;
        let prefix = format!("{form}/");
        let queries = st
            .store
            .queries(study, Some(subject))
            .await?
            .into_iter()
            .filter(|q| q.item_key.starts_with(&prefix))
            .collect();
        let verifications = st
            .store
            .verifications(study, Some(subject))
            .await?
            .into_iter()
            .filter(|v| v.item_key.starts_with(&prefix))
            .collect();
        let lock = applicable_lock(&st.store.locks(study).await?, subject, &form.to_string());
        let sdv = if p.can(s, Permission::VerifySource) {
            let (plan, _) = crate::sdv::study_plan(st, s).await?;
            let level = crate::sdv::subject_level(st, s, &plan, subject).await?;
            Some((plan, level))
        } else {
            None
        };
        Ok(Self {
            queries,
            verifications,
            lock,
            sdv,
        })
    }
}

fn query_anchor(q: &QueryRow) -> String {
    format!("query-{}", q.id)
}

/// Badges beside an item: its live queries and its verification state.
fn item_badges(
    st: &AppState,
    p: &Principal,
    review: &Review,
    key: &str,
    value: Option<&String>,
) -> Markup {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let live: Vec<&QueryRow> = review
        .queries
        .iter()
        .filter(|q| q.item_key == key && q.status != QueryStatus::Closed)
        .collect();
    let sdv = review.verifications.iter().find(|v| v.item_key == key);
    html! {
        @if !live.is_empty() || sdv.is_some() {
            div.badges {
                @for q in &live {
                    a.tag.query href={ "#" (query_anchor(q)) } { (t(&format!("query-status-{}", q.status.as_str()))) }
                }
                @if let Some(v) = sdv {
                    @if v.verified_value.as_ref() == value {
                        span.tag.ok { (t("sdv-verified")) }
                    } @else {
                        span.tag.stale { (t("sdv-stale")) }
                    }
                }
            }
        }
    }
}

fn item_label(design: &FormDesign, key: &str) -> String {
    let Ok(path) = key.parse::<ItemPath>() else {
        return key.to_owned();
    };
    let group = design.group(path.group.as_str()).map(|(_, g)| g);
    let name = group
        .and_then(|g| g.items.iter().find(|i| i.oid == path.item))
        .map_or_else(|| path.item.to_string(), |i| i.name.clone());
    if group.is_some_and(|g| g.repeating) {
        format!(
            "{name} ({} {})",
            group.map_or("", |g| g.name.as_str()),
            path.group_repeat
        )
    } else {
        name
    }
}

/// Queries of the form with their threads and the actions the user may take, the form
/// to raise a query, and source data verification.
fn review_sections(
    st: &AppState,
    p: &Principal,
    s: &Study,
    ctx: &FormContext,
    design: &FormDesign,
    review: &Review,
    values: &BTreeMap<LocalKey, String>,
) -> Markup {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let base = format!("/studies/{}/subjects/{}", s.id, ctx.subject.id);
    let can_answer = p.can(s, Permission::EnterData);
    let can_manage = p.can(s, Permission::ManageQueries);
    let can_verify = p.can(s, Permission::VerifySource);
    let mut items: Vec<(String, String, Option<&String>)> = Vec::new();
    for g in &design.groups {
        let repeats: Vec<u16> = if g.repeating {
            let mut r: Vec<u16> = values
                .keys()
                .filter(|k| k.group == g.oid)
                .map(|k| k.repeat)
                .collect();
            r.sort_unstable();
            r.dedup();
            r
        } else {
            vec![1]
        };
        for r in repeats {
            for i in &g.items {
                let local = LocalKey {
                    group: g.oid.clone(),
                    repeat: r,
                    item: i.oid.clone(),
                };
                let key = ItemPath {
                    form: ctx.path.clone(),
                    group: g.oid.clone(),
                    group_repeat: r,
                    item: i.oid.clone(),
                }
                .to_string();
                let label = item_label(design, &key);
                items.push((key, label, values.get(&local)));
            }
        }
    }
    let back = form_url(s, ctx.subject.id, &ctx.path);
    html! {
        section.review {
            h2 { (t("query-title")) }
            @if review.queries.is_empty() { p.muted { (t("query-none")) } }
            @for q in &review.queries {
                article.query id=(query_anchor(q)) {
                    h3 { (item_label(design, &q.item_key)) " · " span.tag { (t(&format!("query-status-{}", q.status.as_str()))) }
                        @if q.check_id.is_some() { " " span.muted { (t("query-automatic")) } } }
                    ol.thread { @for m in &q.messages {
                        li { span.muted { (format_time(&p.locale, &p.time_zone, m.at)) " · " (m.author_name) " · " (t(&format!("query-action-{}", m.action))) } br; (m.text) }
                    } }
                    @let actions: Vec<&str> = [
                        (q.status == QueryStatus::Open && can_answer, "answer"),
                        (q.status != QueryStatus::Closed && can_manage, "close"),
                        (q.status != QueryStatus::Open && can_manage, "reopen"),
                    ].into_iter().filter(|(ok, _)| *ok).map(|(_, a)| a).collect();
                    @if !actions.is_empty() {
                        form.query-action method="post" action={ (base) "/queries/" (if actions[0] == "answer" { "answer" } else { "resolve" }) } {
                            input type="hidden" name="csrf" value=(p.csrf_token);
                            input type="hidden" name="query" value=(q.id.to_string());
                            input type="hidden" name="back" value=(back);
                            label for={ "text-" (q.id) } { (t("query-message")) }
                            textarea id={ "text-" (q.id) } name="text" rows="2" maxlength="4000" required {}
                            div.actions { @for a in &actions {
                                button.primary type="submit" name="action" value=(a)
                                    formaction={ (base) "/queries/" (if *a == "answer" { "answer" } else { "resolve" }) } { (t(&format!("query-do-{a}"))) }
                            } }
                        }
                    }
                }
            }
            @if can_manage {
                form.stack method="post" action={ (base) "/queries" } {
                    h3 { (t("query-raise")) }
                    input type="hidden" name="csrf" value=(p.csrf_token);
                    input type="hidden" name="back" value=(back);
                    label for="query-item" { (t("query-item")) }
                    select #query-item name="item" { @for (key, label, _) in &items { option value=(key) { (label) } } }
                    label for="query-text" { (t("query-message")) }
                    textarea #query-text name="text" rows="2" maxlength="4000" required {}
                    button.primary type="submit" { (t("query-do-open")) }
                }
            }
        }
        @if let (true, Some((plan, level))) = (can_verify, &review.sdv) {
            section.review {
                h2 { (t("sdv-title")) }
                p { (t("sdv-subject-level")) ": " strong { (match level {
                    trellis_edc::SubjectSdv::FullEarly { .. } => t("sdv-level-first"),
                    trellis_edc::SubjectSdv::FullSampled => t("sdv-level-sampled"),
                    trellis_edc::SubjectSdv::Targeted => t("sdv-level-targeted"),
                }) } " · " a href=(format!("/studies/{}/sdv", s.id)) { (t("sdv-plan")) } }
                form method="post" action={ (base) "/sdv" } {
                    input type="hidden" name="csrf" value=(p.csrf_token);
                    input type="hidden" name="back" value=(back);
                    table {
                        thead { tr { th scope="col" { (t("sdv-item")) } th scope="col" { (t("sdv-value")) } th scope="col" { (t("sdv-by-plan")) } th scope="col" { (t("sdv-state")) } th scope="col" { (t("sdv-select")) } } }
                        tbody { @for (key, label, value) in items.iter().filter(|(_, _, v)| v.is_some()) {
                            @let v = review.verifications.iter().find(|v| &v.item_key == key);
                            @let required = key.parse::<ItemPath>().is_ok_and(|path| plan.requires(*level, &path));
                            tr.sdv-required[required] {
                                td { (label) } td { (value.cloned().unwrap_or_default()) }
                                td { @if required { strong { (t("sdv-required-item")) } } @else { span.muted { (t("sdv-optional-item")) } } }
                                td { @match v {
                                    Some(v) if v.verified_value.as_ref() == *value => { (t("sdv-verified")) " · " (format_time(&p.locale, &p.time_zone, v.verified_at)) }
                                    Some(_) => span.bad { (t("sdv-stale")) },
                                    None => span.muted { (t("sdv-not-verified")) },
                                } }
                                td { label { span.sr { (t("sdv-select")) " " (label) } input type="checkbox" name="item" value=(key); } }
                            }
                        } }
                    }
                    div.actions { button.primary type="submit" { (t("sdv-verify-selected")) } }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct QueryForm {
    csrf: String,
    #[serde(default)]
    back: String,
    #[serde(default)]
    item: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    text: String,
}

/// Only links back into this subject's forms are followed after a post.
fn back_to(back: &str, s: &Study, subject: SubjectId) -> String {
    let prefix = format!("/studies/{}/subjects/{}/forms/", s.id, subject);
    if back.starts_with(&prefix) && !back.contains("//") && !back.contains("..") {
        back.to_owned()
    } else {
        format!("/studies/{}/subjects/{}", s.id, subject)
    }
}

async fn write_and_return(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
    back: &str,
    req: WriteRequest,
) -> Response {
    match st.store.write(req).await {
        Ok(_) => Redirect::to(&back_to(back, s, subject)).into_response(),
        Err(
            e @ (StoreError::Invalid { .. }
            | StoreError::Conflict(_)
            | StoreError::ReasonRequired { .. }
            | StoreError::NotFound { .. }),
        ) => {
            let body = html! {
                div.error role="alert" { (e.to_string()) }
                p { a href=(back_to(back, s, subject)) { (st.i18n.t(&p.locale, "query-back")) } }
            };
            html_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                page(st, Some(p), &st.i18n.t(&p.locale, "query-title"), body),
            )
        }
        Err(e) => crate::problem::Problem::from(e).into_response(),
    }
}

/// A monitor or data manager raises a query on an item.
pub async fn query_open(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    Form(f): Form<QueryForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let Some(subject) = subject_in_scope(&st, &p, &s, subject).await else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let Some(item) = f.item.filter(|i| i.parse::<ItemPath>().is_ok()) else {
        return error_page(&st, Some(&p), StatusCode::BAD_REQUEST, "error-bad-request");
    };
    let req = WriteRequest::new(
        Actor::user(p.user, &p.display_name),
        vec![Mutation::OpenQuery {
            study: s.id,
            id: QueryId::new(),
            subject: subject.id,
            item_key: item,
            check_id: None,
            text: f.text,
        }],
    );
    write_and_return(&st, &p, &s, subject.id, &f.back, req).await
}

async fn query_update(
    st: AppState,
    p: Principal,
    s: Study,
    subject: SubjectId,
    f: QueryForm,
    allowed: &[QueryAction],
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let Some(subject) = subject_in_scope(&st, &p, &s, subject).await else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let action = match f.action.as_deref() {
        Some("answer") => QueryAction::Answer,
        Some("close") => QueryAction::Close,
        Some("reopen") => QueryAction::Reopen,
        _ => return error_page(&st, Some(&p), StatusCode::BAD_REQUEST, "error-bad-request"),
    };
    if !allowed.contains(&action) {
        return error_page(&st, Some(&p), StatusCode::BAD_REQUEST, "error-bad-request");
    }
    let Some(id) = f.query.as_deref().and_then(|q| q.parse::<QueryId>().ok()) else {
        return error_page(&st, Some(&p), StatusCode::BAD_REQUEST, "error-bad-request");
    };
    // The query must belong to this subject, whose site the user may see.
    match st.store.queries(s.id, Some(subject.id)).await {
        Ok(qs) if qs.iter().any(|q| q.id == id) => {}
        Ok(_) => return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found"),
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    }
    let req = WriteRequest::new(
        Actor::user(p.user, &p.display_name),
        vec![Mutation::UpdateQuery {
            study: s.id,
            id,
            action,
            text: f.text,
        }],
    );
    write_and_return(&st, &p, &s, subject.id, &f.back, req).await
}

/// The site answers a query.
pub async fn query_answer(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    Form(f): Form<QueryForm>,
) -> Response {
    query_update(st, p, s, subject, f, &[QueryAction::Answer]).await
}

/// A monitor or data manager closes or re-opens a query.
pub async fn query_resolve(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    Form(f): Form<QueryForm>,
) -> Response {
    query_update(
        st,
        p,
        s,
        subject,
        f,
        &[QueryAction::Close, QueryAction::Reopen],
    )
    .await
}

/// A monitor marks the selected items of a form as verified against source.
pub async fn sdv_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    if !check_csrf(&p, &field("csrf")) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let Some(subject) = subject_in_scope(&st, &p, &s, subject).await else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let items: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "item")
        .map(|(_, v)| v.clone())
        .filter(|v| v.parse::<ItemPath>().is_ok())
        .collect();
    let back = field("back");
    if items.is_empty() {
        return Redirect::to(&back_to(&back, &s, subject.id)).into_response();
    }
    let req = WriteRequest::new(
        Actor::user(p.user, &p.display_name),
        items
            .into_iter()
            .map(|item_key| Mutation::VerifyItem {
                study: s.id,
                subject: subject.id,
                item_key,
                verified: true,
            })
            .collect(),
    );
    write_and_return(&st, &p, &s, subject.id, &back, req).await
}

fn lock_controls(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
    scope: &str,
    current: Option<&LockRow>,
    back: &str,
) -> Markup {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    if !p.can(s, Permission::LockData) {
        return html! {};
    }
    // A freeze or lock of a wider scope is lifted where it was set.
    let own = current.filter(|l| l.subject == Some(subject) && l.scope == scope);
    let inherited = current.is_some() && own.is_none();
    let id = if scope.is_empty() {
        "lock-reason-casebook"
    } else {
        "lock-reason-form"
    };
    html! {
        @if !inherited {
            form.lock method="post" action=(format!("/studies/{}/subjects/{}/lock", s.id, subject)) {
                input type="hidden" name="csrf" value=(p.csrf_token);
                input type="hidden" name="scope" value=(scope);
                input type="hidden" name="back" value=(back);
                @match own.map(|l| l.state) {
                    None => {
                        button type="submit" name="state" value="frozen" { (t("lock-do-freeze")) }
                        " " button type="submit" name="state" value="locked" { (t("lock-do-lock")) }
                    }
                    Some(state) => {
                        @if state == LockState::Frozen { button type="submit" name="state" value="locked" { (t("lock-do-lock")) } " " }
                        label for=(id) { (t("lock-reason")) }
                        " " input id=(id) type="text" name="reason" maxlength="500";
                        " " button type="submit" name="state" value="open" { (t("lock-do-open")) }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct LockForm {
    csrf: String,
    #[serde(default)]
    scope: String,
    state: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    back: String,
}

/// A data manager freezes, locks or reopens a form or a casebook.
pub async fn lock_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    Form(f): Form<LockForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let Some(subject) = subject_in_scope(&st, &p, &s, subject).await else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let state = match f.state.as_str() {
        "open" => None,
        other => match LockState::parse(other) {
            Some(s) => Some(s),
            None => return error_page(&st, Some(&p), StatusCode::BAD_REQUEST, "error-bad-request"),
        },
    };
    if !f.scope.is_empty() && f.scope.parse::<FormPath>().is_err() {
        return error_page(&st, Some(&p), StatusCode::BAD_REQUEST, "error-bad-request");
    }
    let mut req = WriteRequest::new(
        Actor::user(p.user, &p.display_name),
        vec![Mutation::SetLock {
            study: s.id,
            subject: Some(subject.id),
            scope: f.scope,
            state,
        }],
    );
    let reason = f.reason.trim();
    if !reason.is_empty() {
        req.reason = Some(reason.to_owned());
    }
    let back = if f.back.is_empty() {
        format!("/studies/{}/subjects/{}", s.id, subject.id)
    } else {
        f.back
    };
    write_and_return(&st, &p, &s, subject.id, &back, req).await
}

#[derive(Deserialize, Default)]
pub struct QueryListFilter {
    #[serde(default)]
    status: String,
}

/// The study's queries (within the user's sites): status, age in days, counts per site.
pub async fn study_queries(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Query(f): Query<QueryListFilter>,
) -> Response {
    let (queries, subjects, sites) = match (
        st.store.queries(s.id, None).await,
        st.store.subjects(s.id).await,
        st.store.sites(s.id).await,
    ) {
        (Ok(q), Ok(su), Ok(si)) => (q, su, si),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return crate::problem::Problem::from(e).into_response();
        }
    };
    let scope = p.site_scope(s.id);
    let visible_site =
        |site: trellis_domain::SiteId| scope.as_ref().is_none_or(|v| v.contains(&site));
    let subject_of: HashMap<SubjectId, &Subject> = subjects
        .iter()
        .filter(|x| visible_site(x.site))
        .map(|x| (x.id, x))
        .collect();
    let now = trellis_domain::UtcMicros::from_timestamp(jiff::Timestamp::now()).as_micros();
    let age_days = |q: &QueryRow| (now - q.opened_at.as_micros()).max(0) / 86_400_000_000;
    let wanted = QueryStatus::parse(&f.status);
    let mut rows: Vec<(&QueryRow, &Subject)> = queries
        .iter()
        .filter_map(|q| subject_of.get(&q.subject).map(|x| (q, *x)))
        .filter(|(q, _)| wanted.is_none_or(|w| q.status == w))
        .collect();
    rows.sort_by_key(|(q, _)| (q.status, std::cmp::Reverse(age_days(q))));
    // Counts per site: open, answered, closed, and open for more than 14 days.
    let mut counts: Vec<(String, [usize; 4])> = sites
        .iter()
        .filter(|x| visible_site(x.id))
        .map(|x| (x.code.clone(), [0; 4]))
        .collect();
    for q in &queries {
        let Some(subject) = subject_of.get(&q.subject) else {
            continue;
        };
        let Some(site) = sites.iter().find(|x| x.id == subject.site) else {
            continue;
        };
        if let Some((_, c)) = counts.iter_mut().find(|(code, _)| *code == site.code) {
            c[match q.status {
                QueryStatus::Open => 0,
                QueryStatus::Answered => 1,
                QueryStatus::Closed => 2,
            }] += 1;
            if q.status == QueryStatus::Open && age_days(q) > 14 {
                c[3] += 1;
            }
        }
    }
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let body = html! {
        p { a href=(format!("/studies/{}", s.id)) { "← " (s.code) } }
        h1 { (t("query-title")) " · " (s.code) }
        table {
            thead { tr {
                th scope="col" { (t("site-code")) } th scope="col" { (t("query-status-open")) } th scope="col" { (t("query-status-answered")) }
                th scope="col" { (t("query-status-closed")) } th scope="col" { (t("query-overdue")) }
            } }
            tbody { @for (code, c) in &counts { tr { td { (code) } td { (c[0]) } td { (c[1]) } td { (c[2]) } td { (c[3]) } } } }
        }
        form.filters method="get" {
            label for="status" { (t("query-filter-status")) }
            select #status name="status" {
                option value="" { (t("audit-any")) }
                @for st_ in [QueryStatus::Open, QueryStatus::Answered, QueryStatus::Closed] {
                    option value=(st_.as_str()) selected[wanted == Some(st_)] { (t(&format!("query-status-{}", st_.as_str()))) }
                }
            }
            button.primary type="submit" { (t("audit-apply")) }
        }
        table {
            thead { tr {
                th scope="col" { (t("subject-screening-number")) } th scope="col" { (t("query-item")) } th scope="col" { (t("sdv-state")) }
                th scope="col" { (t("query-age")) } th scope="col" { (t("query-last-message")) }
            } }
            tbody { @for (q, subject) in &rows {
                @let form_link = q.item_key.parse::<ItemPath>().ok().map(|path| format!("{}#{}", form_url(&s, subject.id, &path.form), query_anchor(q)));
                tr {
                    td { (subject.screening_number) }
                    td { @match &form_link { Some(l) => a href=(l) { span.mono { (q.item_key) } }, None => span.mono { (q.item_key) } } }
                    td { (t(&format!("query-status-{}", q.status.as_str()))) @if q.check_id.is_some() { " " span.muted { (t("query-automatic")) } } }
                    td { (age_days(q)) }
                    td { @if let Some(m) = q.messages.last() { (m.author_name) ": " (m.text) } }
                }
            } }
        }
    };
    html_response(StatusCode::OK, page(&st, Some(&p), &t("query-title"), body))
}
