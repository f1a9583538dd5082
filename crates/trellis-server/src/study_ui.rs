//! Study-level pages and actions in the browser: registering subjects, changing their
//! status or metadata version, freezing or locking the whole study, and CSV exports.
//! The rules live in [`crate::subjects`], shared with the JSON API.

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use trellis_domain::{SiteId, SubjectId, SubjectStatus};
use trellis_store::{LockRow, LockState, Mutation, Study, Subject, WriteRequest};

use crate::AppState;
use crate::api::actor;
use crate::authz::{Permission, Principal};
use crate::problem::Problem;
use crate::subjects::{self, Export};
use crate::ui::{check_csrf, error_page, html_response, page};

/// A refused action, shown with what was wrong and a way back.
fn refused(st: &AppState, p: &Principal, back: &str, problem: &Problem) -> Response {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let body = html! {
        h1 { (t("action-refused")) }
        div.error role="alert" {
            (problem.detail)
            @if let Some(f) = &problem.field { " (" (f) ")" }
        }
        p { a href=(back) { (t("action-back")) } }
    };
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST);
    html_response(status, page(st, Some(p), &t("action-refused"), body))
}

fn study_url(s: &Study) -> String {
    format!("/studies/{}", s.id)
}

fn casebook_url(s: &Study, subject: SubjectId) -> String {
    format!("/studies/{}/subjects/{}", s.id, subject)
}

// ------------------------------------------------------------------ study home parts

/// The registration form on the study home: a site of the user's and a screening number.
pub fn register_form(
    st: &AppState,
    p: &Principal,
    s: &Study,
    sites: &[trellis_store::Site],
) -> Markup {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    if !p.can(s, Permission::EnterData) {
        return html! {};
    }
    let scope = p.site_scope(s.id);
    let mine: Vec<&trellis_store::Site> = sites
        .iter()
        .filter(|x| scope.as_ref().is_none_or(|v| v.contains(&x.id)))
        .collect();
    html! {
        @if !mine.is_empty() {
            form.inline method="post" action=(format!("/studies/{}/subjects", s.id)) {
                h3 { (t("subject-register")) }
                input type="hidden" name="csrf" value=(p.csrf_token);
                label for="register-site" { (t("subject-site")) }
                " " select #register-site name="site" {
                    @for x in &mine { option value=(x.id) { (x.code) " — " (x.name) } }
                }
                " " label for="register-number" { (t("subject-screening-number")) }
                " " input #register-number type="text" name="screening_number" required maxlength="50" autocomplete="off";
                " " button.primary type="submit" { (t("subject-register-submit")) }
            }
        }
    }
}

/// Freeze, lock or reopen the whole study (data management), and the banner saying so.
pub fn study_lock_controls(st: &AppState, p: &Principal, s: &Study, locks: &[LockRow]) -> Markup {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let current = locks
        .iter()
        .filter(|l| l.subject.is_none() && l.scope.is_empty())
        .min_by_key(|l| l.state != LockState::Locked);
    html! {
        @if let Some(l) = current {
            div.notice.locked role="status" { (t(&format!("lock-banner-study-{}", l.state.as_str()))) }
        }
        @if p.can(s, Permission::LockData) {
            form.lock method="post" action=(format!("/studies/{}/lock", s.id)) {
                input type="hidden" name="csrf" value=(p.csrf_token);
                span { (t("lock-study")) ": " }
                @match current.map(|l| l.state) {
                    None => {
                        button type="submit" name="state" value="frozen" { (t("lock-do-freeze")) }
                        " " button type="submit" name="state" value="locked" { (t("lock-do-lock")) }
                    }
                    Some(state) => {
                        @if state == LockState::Frozen { button type="submit" name="state" value="locked" { (t("lock-do-lock")) } " " }
                        label for="lock-reason-study" { (t("lock-reason")) }
                        " " input #lock-reason-study type="text" name="reason" maxlength="500";
                        " " button type="submit" name="state" value="open" { (t("lock-do-open")) }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------ casebook parts

/// Status change and metadata-version move on a subject's casebook.
pub fn subject_controls(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: &Subject,
    versions: &[trellis_store::MetadataVersionRow],
    current_version: Option<&str>,
) -> Markup {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    html! {
        p {
            (t("subject-status")) ": " strong { (t(&format!("subject-status-{}", subject.status.as_str()))) }
        }
        @if p.can(s, Permission::EnterData) {
            form.inline method="post" action=(format!("{}/status", casebook_url(s, subject.id))) {
                input type="hidden" name="csrf" value=(p.csrf_token);
                label for="status-new" { (t("subject-status-change")) }
                " " select #status-new name="status" {
                    @for x in SubjectStatus::ALL {
                        option value=(x.as_str()) selected[*x == subject.status] { (t(&format!("subject-status-{}", x.as_str()))) }
                    }
                }
                " " label for="status-reason" { (t("audit-reason")) }
                " " input #status-reason type="text" name="reason" required maxlength="500";
                " " button type="submit" { (t("subject-status-submit")) }
            }
        }
        @if p.can(s, Permission::ManageDesign) && versions.len() > 1 {
            form.inline method="post" action=(format!("{}/version", casebook_url(s, subject.id))) {
                input type="hidden" name="csrf" value=(p.csrf_token);
                label for="version-new" { (t("subject-version-move")) }
                " " select #version-new name="oid" {
                    @for v in versions {
                        option value=(v.oid) selected[Some(v.oid.as_str()) == current_version] { (v.oid) " — " (v.name) }
                    }
                }
                " " label for="version-reason" { (t("audit-reason")) }
                " " input #version-reason type="text" name="reason" required maxlength="500";
                " " button type="submit" { (t("subject-version-submit")) }
            }
        }
    }
}

// ------------------------------------------------------------------ actions

#[derive(Deserialize)]
pub struct RegisterForm {
    csrf: String,
    site: SiteId,
    screening_number: String,
}

/// Site staff register a subject at one of their sites; the casebook opens.
pub async fn register_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Form(f): Form<RegisterForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    match subjects::register(&st, &p, &s, f.site, &f.screening_number, None).await {
        Ok(id) => Redirect::to(&casebook_url(&s, id)).into_response(),
        Err(e) => refused(&st, &p, &study_url(&s), &e),
    }
}

#[derive(Deserialize)]
pub struct StatusForm {
    csrf: String,
    status: String,
    #[serde(default)]
    reason: String,
}

pub async fn status_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    Form(f): Form<StatusForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let back = casebook_url(&s, subject);
    match subjects::set_status(&st, &p, &s, subject, &f.status, Some(&f.reason), None).await {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => refused(&st, &p, &back, &e),
    }
}

#[derive(Deserialize)]
pub struct VersionForm {
    csrf: String,
    oid: String,
    #[serde(default)]
    reason: String,
}

pub async fn version_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    Form(f): Form<VersionForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let back = casebook_url(&s, subject);
    match subjects::move_version(&st, &p, &s, subject, &f.oid, Some(&f.reason), None).await {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => refused(&st, &p, &back, &e),
    }
}

#[derive(Deserialize)]
pub struct StudyLockForm {
    csrf: String,
    state: String,
    #[serde(default)]
    reason: String,
}

/// A data manager freezes, locks or reopens the whole study.
pub async fn study_lock_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Form(f): Form<StudyLockForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let back = study_url(&s);
    let state = match f.state.as_str() {
        "open" => None,
        other => match LockState::parse(other) {
            Some(x) => Some(x),
            None => {
                let e = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_value",
                    "state must be frozen, locked or open",
                )
                .with_field("state");
                return refused(&st, &p, &back, &e);
            }
        },
    };
    let mut req = WriteRequest::new(
        actor(&p),
        vec![Mutation::SetLock {
            study: s.id,
            subject: None,
            scope: String::new(),
            state,
        }],
    );
    let reason = f.reason.trim();
    if !reason.is_empty() {
        req.reason = Some(reason.to_owned());
    }
    match st.store.write(req).await {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(e) => refused(&st, &p, &back, &Problem::from(e)),
    }
}

// ------------------------------------------------------------------ exports

/// The export page: a CSV per form, the wide per-subject CSV, and what they contain.
pub async fn export_page(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
) -> Response {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let versions = match st.store.metadata_versions(s.id).await {
        Ok(v) => v,
        Err(e) => return Problem::from(e).into_response(),
    };
    let design = match versions.iter().max_by_key(|v| v.seq) {
        Some(v) => match st.designs.get(&st.store, s.id, &v.oid).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(detail = e, "study design could not be loaded");
                return error_page(
                    &st,
                    Some(&p),
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "error-internal",
                );
            }
        },
        None => None,
    };
    let body = html! {
        p { a href=(study_url(&s)) { "← " (s.code) } }
        h1 { (t("export-title")) " · " (s.code) }
        p { (t("export-intro")) }
        @match &design {
            None => p.notice { (t("casebook-no-design")) },
            Some(d) => {
                p.muted { (t("casebook-version")) " " (d.metadata_version) }
                table {
                    thead { tr { th scope="col" { (t("casebook-form")) } th scope="col" { "OID" } th scope="col" { (t("export-download")) } } }
                    tbody {
                        @for f in &d.forms {
                            tr {
                                td { (f.name) }
                                td.mono { (f.oid) }
                                td { a href=(format!("/studies/{}/export/forms/{}", s.id, crate::edc::url_encode_segment(f.oid.as_str()))) download { (t("export-csv")) } }
                            }
                        }
                        tr {
                            td { (t("export-wide")) }
                            td {}
                            td { a href=(format!("/studies/{}/export/subjects", s.id)) download { (t("export-csv")) } }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page(&st, Some(&p), &t("export-title"), body),
    )
}

pub async fn export_form_csv(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, form)): Path<(String, String)>,
) -> Response {
    match subjects::export_table(&st, &p, &s, Export::Form(&form)).await {
        Ok((name, table)) => subjects::csv_response(&name, &table),
        Err(e) => refused(&st, &p, &format!("/studies/{}/export", s.id), &e),
    }
}

pub async fn export_wide_csv(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
) -> Response {
    match subjects::export_table(&st, &p, &s, Export::Wide).await {
        Ok((name, table)) => subjects::csv_response(&name, &table),
        Err(e) => refused(&st, &p, &format!("/studies/{}/export", s.id), &e),
    }
}
