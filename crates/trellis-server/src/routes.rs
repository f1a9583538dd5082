//! The route table: every route, the access it needs, and its handler.
//!
//! The router is built from this table only, and the authorization matrix test
//! and the OpenAPI document read the same table, so a route cannot be added
//! without declaring who may use it.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post, put};
use trellis_domain::{StudyId, UtcMicros};
use trellis_store::Study;

use crate::authz::{Access, Permission, Principal};
use crate::problem::Problem;
use crate::{AppState, api, auth, edc_api, edc_ui, odm_import, sdv, study_ui, ui};

/// One route as declared in the table.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// JSON API (problem+json errors, 401) or browser page (redirects, HTML errors).
    pub api: bool,
    pub summary: &'static str,
}

const fn spec(
    method: Method,
    path: &'static str,
    access: Access,
    api: bool,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        api,
        summary,
    }
}

use Access::*;
use Permission::*;

/// Every route of the application.
pub fn table() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    vec![
        (
            spec(Method::GET, "/healthz", Public, true, "Liveness probe"),
            get(api::healthz),
        ),
        (
            spec(
                Method::GET,
                "/readyz",
                Public,
                true,
                "Readiness probe: the database answers",
            ),
            get(api::readyz),
        ),
        (
            spec(
                Method::GET,
                "/static/style.css",
                Public,
                false,
                "Style sheet",
            ),
            get(ui::style),
        ),
        (
            spec(Method::GET, "/login", Public, false, "Sign-in page"),
            get(ui::login_page),
        ),
        (
            spec(Method::POST, "/login", Public, false, "Sign in"),
            post(ui::login_submit),
        ),
        (
            spec(Method::POST, "/logout", SignedIn, false, "Sign out"),
            post(ui::logout),
        ),
        (
            spec(
                Method::GET,
                "/account/password",
                SignedIn,
                false,
                "Change password page",
            ),
            get(ui::password_page),
        ),
        (
            spec(
                Method::POST,
                "/account/password",
                SignedIn,
                false,
                "Change password",
            ),
            post(ui::password_change),
        ),
        (
            spec(
                Method::GET,
                "/account/totp",
                SignedIn,
                false,
                "Second factor (TOTP) page",
            ),
            get(ui::totp_page),
        ),
        (
            spec(
                Method::POST,
                "/account/totp",
                SignedIn,
                false,
                "Enable or disable the TOTP second factor",
            ),
            post(ui::totp_submit),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/subjects/{subject}/sign",
                Study(Sign),
                false,
                "Sign a subject's casebook (page)",
            ),
            get(ui::sign_page),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects/{subject}/sign",
                Study(Sign),
                false,
                "Sign a subject's casebook",
            ),
            post(ui::sign_submit),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/subjects/{subject}",
                Study(ViewStudy),
                false,
                "A subject's casebook: visits and forms",
            ),
            get(edc_ui::casebook),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/subjects/{subject}/forms/{form}",
                Study(ViewStudy),
                false,
                "A case report form with its values and edit-check results",
            ),
            get(edc_ui::form_page),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects/{subject}/forms/{form}",
                Study(EnterData),
                false,
                "Save a case report form (edit checks run; changes need a reason)",
            ),
            post(edc_ui::form_submit),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects/{subject}/queries",
                Study(ManageQueries),
                false,
                "Raise a query on an item",
            ),
            post(edc_ui::query_open),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects/{subject}/queries/answer",
                Study(EnterData),
                false,
                "Answer a query (site)",
            ),
            post(edc_ui::query_answer),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects/{subject}/queries/resolve",
                Study(ManageQueries),
                false,
                "Close or re-open a query",
            ),
            post(edc_ui::query_resolve),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects/{subject}/sdv",
                Study(VerifySource),
                false,
                "Mark items as verified against source documents",
            ),
            post(edc_ui::sdv_submit),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/import",
                Study(ManageDesign),
                false,
                "Import an ODM file: study definitions (amendments) and clinical data (page)",
            ),
            get(odm_import::import_page),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/import",
                Study(ManageDesign),
                false,
                "Check or import an uploaded ODM file (multipart/form-data)",
            ),
            post(odm_import::import_submit)
                .layer(DefaultBodyLimit::max(odm_import::MAX_FILE_BYTES)),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/sdv",
                Study(ViewSdvProgress),
                false,
                "Targeted SDV: the plan and verification progress per site and subject",
            ),
            get(sdv::page_view),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/sdv/plan",
                Study(PlanSdv),
                false,
                "Set the study's targeted SDV plan",
            ),
            post(sdv::plan_submit),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/queries",
                Study(ViewStudy),
                false,
                "The study's queries with their age, and counts per site",
            ),
            get(edc_ui::study_queries),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects/{subject}/lock",
                Study(LockData),
                false,
                "Freeze, lock or reopen a form or a casebook (reopening needs a reason)",
            ),
            post(edc_ui::lock_submit),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/subjects/{subject}/history",
                Study(ViewStudy),
                false,
                "An item's audit history",
            ),
            get(edc_ui::item_history),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects",
                Study(EnterData),
                false,
                "Register (screen) a subject at one of the user's sites",
            ),
            post(study_ui::register_submit),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects/{subject}/status",
                Study(EnterData),
                false,
                "Change a subject's status (with a reason)",
            ),
            post(study_ui::status_submit),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/subjects/{subject}/version",
                Study(ManageDesign),
                false,
                "Move a subject to another metadata version (with a reason)",
            ),
            post(study_ui::version_submit),
        ),
        (
            spec(
                Method::POST,
                "/studies/{study}/lock",
                Study(LockData),
                false,
                "Freeze, lock or reopen the whole study (reopening needs a reason)",
            ),
            post(study_ui::study_lock_submit),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/export",
                Study(ExportData),
                false,
                "Data exports: a CSV per form and a wide CSV per subject",
            ),
            get(study_ui::export_page),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/export/forms/{form_oid}",
                Study(ExportData),
                false,
                "CSV of one form (a row per form instance or log row)",
            ),
            get(study_ui::export_form_csv),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/export/subjects",
                Study(ExportData),
                false,
                "Wide CSV: a row per subject, a column per item address",
            ),
            get(study_ui::export_wide_csv),
        ),
        (
            spec(Method::GET, "/", SignedIn, false, "Study list"),
            get(ui::studies),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}",
                Study(ViewStudy),
                false,
                "Study home",
            ),
            get(ui::study_home),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/audit",
                Study(ViewAudit),
                false,
                "Study audit trail",
            ),
            get(ui::study_audit),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/audit.csv",
                Study(ViewAudit),
                false,
                "Study audit trail as CSV",
            ),
            get(ui::study_audit_csv),
        ),
        (
            spec(
                Method::GET,
                "/studies/{study}/audit.json",
                Study(ViewAudit),
                false,
                "Study audit trail as JSON",
            ),
            get(ui::study_audit_json),
        ),
        (
            spec(
                Method::GET,
                "/audit",
                InstallationAudit,
                false,
                "Installation audit trail",
            ),
            get(ui::installation_audit),
        ),
        (
            spec(Method::GET, "/admin/users", Admin, false, "Users and roles"),
            get(ui::users_page),
        ),
        (
            spec(Method::POST, "/admin/users", Admin, false, "Create a user"),
            post(ui::users_create),
        ),
        (
            spec(Method::POST, "/admin/grants", Admin, false, "Grant a role"),
            post(ui::grants_create),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/openapi.json",
                Public,
                true,
                "This OpenAPI document",
            ),
            get(api::openapi_json),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/me",
                SignedIn,
                true,
                "The caller, with role grants",
            ),
            get(api::me),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies",
                SignedIn,
                true,
                "Studies visible to the caller",
            ),
            get(api::studies),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}",
                Study(ViewStudy),
                true,
                "One study",
            ),
            get(api::study),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/sites",
                Study(ViewStudy),
                true,
                "Sites of a study",
            ),
            get(api::sites),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/subjects",
                Study(ViewStudy),
                true,
                "Subjects of a study (limited to the caller's sites)",
            ),
            get(api::subjects),
        ),
        (
            spec(
                Method::POST,
                "/api/v1/studies/{study}/subjects",
                Study(EnterData),
                true,
                "Screen a new subject",
            ),
            post(api::create_subject),
        ),
        (
            spec(
                Method::PUT,
                "/api/v1/studies/{study}/subjects/{subject}/status",
                Study(EnterData),
                true,
                "Change a subject's status (reason required)",
            ),
            put(edc_api::set_subject_status),
        ),
        (
            spec(
                Method::PUT,
                "/api/v1/studies/{study}/subjects/{subject}/metadata-version",
                Study(ManageDesign),
                true,
                "Move a subject to another metadata version (reason required; data are kept)",
            ),
            put(edc_api::move_subject_version),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/exports/forms/{form_oid}",
                Study(ExportData),
                true,
                "CSV of one form (text/csv; limited to the caller's sites)",
            ),
            get(edc_api::export_form_csv),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/exports/subjects",
                Study(ExportData),
                true,
                "Wide CSV, a row per subject (text/csv; limited to the caller's sites)",
            ),
            get(edc_api::export_wide_csv),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/subjects/{subject}/items",
                Study(ViewStudy),
                true,
                "A subject's current data values",
            ),
            get(api::items),
        ),
        (
            spec(
                Method::PUT,
                "/api/v1/studies/{study}/subjects/{subject}/items",
                Study(EnterData),
                true,
                "Save data values (audited; reason required for changes)",
            ),
            put(api::save_items),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/metadata-versions",
                Study(ViewStudy),
                true,
                "The study's metadata versions (protocol amendments)",
            ),
            get(edc_api::metadata_versions),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/subjects/{subject}/casebook",
                Study(ViewStudy),
                true,
                "A subject's casebook: visit schedule and each form's state",
            ),
            get(edc_api::casebook),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/subjects/{subject}/forms/{form}",
                Study(ViewStudy),
                true,
                "A form instance: design, values, edit-check results, queries, verifications, lock",
            ),
            get(edc_api::form),
        ),
        (
            spec(
                Method::PUT,
                "/api/v1/studies/{study}/subjects/{subject}/forms/{form}",
                Study(EnterData),
                true,
                "Save a form instance (edit checks run; automatic queries; changes need a reason)",
            ),
            put(edc_api::save),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/subjects/{subject}/history",
                Study(ViewStudy),
                true,
                "An item's audit history",
            ),
            get(edc_api::item_history),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/queries",
                Study(ViewStudy),
                true,
                "Queries with their age, and counts per site",
            ),
            get(edc_api::queries),
        ),
        (
            spec(
                Method::POST,
                "/api/v1/studies/{study}/subjects/{subject}/queries",
                Study(ManageQueries),
                true,
                "Raise a query on an item",
            ),
            post(edc_api::open_query),
        ),
        (
            spec(
                Method::POST,
                "/api/v1/studies/{study}/subjects/{subject}/queries/{query}/answer",
                Study(EnterData),
                true,
                "Answer a query (site)",
            ),
            post(edc_api::answer_query),
        ),
        (
            spec(
                Method::POST,
                "/api/v1/studies/{study}/subjects/{subject}/queries/{query}/close",
                Study(ManageQueries),
                true,
                "Close a query",
            ),
            post(edc_api::close_query),
        ),
        (
            spec(
                Method::POST,
                "/api/v1/studies/{study}/subjects/{subject}/queries/{query}/reopen",
                Study(ManageQueries),
                true,
                "Re-open a query",
            ),
            post(edc_api::reopen_query),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/subjects/{subject}/verifications",
                Study(ViewStudy),
                true,
                "Source data verifications of a subject (stale once the value changed)",
            ),
            get(edc_api::verifications),
        ),
        (
            spec(
                Method::POST,
                "/api/v1/studies/{study}/subjects/{subject}/verifications",
                Study(VerifySource),
                true,
                "Mark items as verified against source (or withdraw)",
            ),
            post(edc_api::verify),
        ),
        (
            spec(
                Method::POST,
                "/api/v1/studies/{study}/odm",
                Study(ManageDesign),
                true,
                "Import an ODM 1.3.x file (body, application/xml): metadata versions and clinical data, all or nothing; ?check=true only reports",
            ),
            post(odm_import::api_import).layer(DefaultBodyLimit::max(odm_import::MAX_FILE_BYTES)),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/sdv-plan",
                Study(ViewSdvProgress),
                true,
                "The study's targeted SDV plan (full SDV when none was set)",
            ),
            get(sdv::api_plan),
        ),
        (
            spec(
                Method::PUT,
                "/api/v1/studies/{study}/sdv-plan",
                Study(PlanSdv),
                true,
                "Set the study's targeted SDV plan (a change needs a reason)",
            ),
            put(sdv::api_set_plan),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/sdv-progress",
                Study(ViewSdvProgress),
                true,
                "Verification progress against the SDV plan, per site and subject",
            ),
            get(sdv::api_progress),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/locks",
                Study(ViewStudy),
                true,
                "Freezes and locks in force",
            ),
            get(edc_api::locks),
        ),
        (
            spec(
                Method::PUT,
                "/api/v1/studies/{study}/locks",
                Study(LockData),
                true,
                "Freeze, lock or reopen a form, casebook or the whole study (reopening needs a reason)",
            ),
            put(edc_api::set_lock),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/signatures",
                Study(ViewStudy),
                true,
                "E-signatures, with their current validity",
            ),
            get(api::signatures),
        ),
        (
            spec(
                Method::POST,
                "/api/v1/studies/{study}/signatures",
                Study(Sign),
                true,
                "Sign a subject's data (password required)",
            ),
            post(api::sign),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/studies/{study}/audit",
                Study(ViewAudit),
                true,
                "Study audit trail, filtered, cursor-paginated",
            ),
            get(api::study_audit),
        ),
        (
            spec(
                Method::GET,
                "/api/v1/audit",
                InstallationAudit,
                true,
                "Installation audit trail (security events)",
            ),
            get(api::installation_audit),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    let mut r: Router<AppState> = Router::new();
    for (spec, handler) in table() {
        let path = spec.path;
        let guarded = handler.route_layer(from_fn_with_state(
            state.clone(),
            move |st: State<AppState>, req: Request, next: Next| guard(spec.clone(), st, req, next),
        ));
        r = r.route(path, guarded);
    }
    let limit = state.config.max_body_bytes;
    r.fallback(fallback)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
}

async fn fallback(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        Problem::not_found("route").into_response()
    } else {
        (StatusCode::NOT_FOUND, "Not found").into_response()
    }
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

pub const SESSION_COOKIE: &str = "trellis_session";

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Resolves the caller from the session cookie or a bearer token.
pub async fn principal(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Principal>, Problem> {
    let now = UtcMicros::from_timestamp(jiff::Timestamp::now());
    let (account, csrf) = if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        // One read: the token's account with its organization and grants.
        match state
            .store
            .account_by_api_token(&auth::token_hash(token.trim()))
            .await?
        {
            Some(a) => (a, String::new()),
            None => return Ok(None),
        }
    } else if let Some(token) = cookie_value(headers, SESSION_COOKIE) {
        let hash = auth::token_hash(token);
        let Some(s) = state.store.session(&hash).await? else {
            return Ok(None);
        };
        let idle = i64::try_from(state.config.session_idle.as_secs()).unwrap_or(i64::MAX);
        if now >= s.absolute_expires_at || now >= s.last_seen_at.plus_seconds(idle) {
            state.store.delete_session(&hash).await?;
            return Ok(None);
        }
        // Refresh at most once a minute: a write per request would compete with data entry.
        if now >= s.last_seen_at.plus_seconds(60) {
            state.store.touch_session(&hash, now).await?;
        }
        let Some(account) = state.store.account(s.user).await? else {
            return Ok(None);
        };
        (account, s.csrf_token)
    } else {
        return Ok(None);
    };
    let trellis_store::Account {
        user,
        org_kind,
        grants,
    } = account;
    if user.locked_at.is_some() {
        return Ok(None);
    }
    let org_kind = org_kind.unwrap_or(trellis_domain::OrgKind::Cro);
    Ok(Some(Principal {
        user: user.id,
        username: user.username,
        display_name: user.display_name,
        org: user.org,
        org_kind,
        locale: crate::i18n::supported(&user.locale).to_owned(),
        time_zone: user.time_zone,
        grants,
        csrf_token: csrf,
        must_change_password: user.must_change_password,
    }))
}

fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // Non-browser clients send no Origin; CSRF tokens still apply to forms.
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, h)| h == host)
}

async fn guard(
    spec: RouteSpec,
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && !spec.api && !same_origin(req.headers()) {
        return ui::error_page(&state, None, StatusCode::FORBIDDEN, "error-forbidden");
    }
    if spec.access == Access::Public {
        return next.run(req).await;
    }
    let principal = match principal(&state, req.headers()).await {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    let Some(principal) = principal else {
        if spec.api {
            return Problem::unauthenticated().into_response();
        }
        if unsafe_method {
            // The session ended while a form was being submitted: keep the form.
            return ui::login_with_resume(&state, req).await;
        }
        let next_path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        return Redirect::to(&format!("/login?next={}", ui::url_encode(&next_path)))
            .into_response();
    };
    // A password set by an administrator must be replaced before anything else.
    if principal.must_change_password
        && !spec.api
        && !matches!(spec.path, "/account/password" | "/logout")
    {
        return Redirect::to("/account/password").into_response();
    }
    let mut study: Option<Study> = None;
    if spec.path.contains("{study}") {
        let id = req
            .uri()
            .path()
            .split('/')
            .skip_while(|s| *s != "studies")
            .nth(1)
            .and_then(|s| s.parse::<StudyId>().ok());
        study = match id {
            Some(id) => match state.store.study(id).await {
                Ok(s) => s,
                Err(e) => return Problem::from(e).into_response(),
            },
            None => None,
        };
        if study.is_none() {
            return if spec.api {
                Problem::not_found("study").into_response()
            } else {
                ui::error_page(
                    &state,
                    Some(&principal),
                    StatusCode::NOT_FOUND,
                    "error-not-found",
                )
            };
        }
    }
    if !principal.may(spec.access, study.as_ref()) {
        return if spec.api {
            Problem::forbidden().into_response()
        } else {
            ui::error_page(
                &state,
                Some(&principal),
                StatusCode::FORBIDDEN,
                "error-forbidden",
            )
        };
    }
    let mut req = req;
    req.extensions_mut().insert(principal);
    if let Some(s) = study {
        req.extensions_mut().insert(s);
    }
    next.run(req).await
}
