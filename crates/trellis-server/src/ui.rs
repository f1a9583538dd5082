//! The server-rendered HTML UI. No JavaScript: forms and links only, so it
//! works with a keyboard, a screen reader and any browser at a site.

use axum::Extension;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use trellis_domain::{
    DisplayName, Email, OrgId, Role, RoleGrantId, SiteId, StudyId, TzName, UserId, Username,
    UtcMicros,
};
use trellis_store::{
    Actor, AuditFilter, Chain, Mutation, NewUser, SignInOutcome, StoredEntry, Study, WriteRequest,
};

use crate::AppState;
use crate::api::{AuditQuery, audit_filter, encode_cursor, entry_json};
use crate::authz::{Permission, Principal};
use crate::i18n::{self, format_time};
use crate::routes::SESSION_COOKIE;

const LOGIN_CSRF_COOKIE: &str = "trellis_login_csrf";

pub async fn style() -> Response {
    let mut r = include_str!("../static/style.css").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn page(st: &AppState, p: Option<&Principal>, title: &str, body: Markup) -> Markup {
    let locale = p.map_or("en", |p| p.locale.as_str());
    let t = |k: &str| st.i18n.t(locale, k);
    html! {
        (DOCTYPE)
        html lang=(locale) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (t("app-name")) }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                header.top {
                    a.brand href="/" { (t("app-name")) }
                    @if let Some(p) = p {
                        nav aria-label="Main" {
                            a href="/" { (t("nav-studies")) }
                            @if p.is_admin() { " · " a href="/admin/users" { (t("nav-users")) } }
                            @if p.is_admin() || p.is_auditor_anywhere() { " · " a href="/audit" { (t("nav-audit")) } }
                            " · " a href="/account/password" { (t("nav-account")) }
                            " · " a href="/account/totp" { (t("nav-totp")) }
                        }
                        span.spacer {}
                        span { (st.i18n.t_args(locale, "nav-signed-in-as", &[("name", p.display_name.clone().into())])) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(p.csrf_token);
                            button type="submit" { (t("nav-sign-out")) }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

pub(crate) fn html_response(status: StatusCode, m: Markup) -> Response {
    (status, Html(m.into_string())).into_response()
}

pub fn error_page(st: &AppState, p: Option<&Principal>, status: StatusCode, key: &str) -> Response {
    let locale = p.map_or("en", |p| p.locale.as_str());
    let title = st.i18n.t(locale, "error-title");
    let body = html! { h1 { (title) } p.error role="alert" { (st.i18n.t(locale, key)) } };
    html_response(status, page(st, p, &title, body))
}

pub(crate) fn check_csrf(p: &Principal, token: &str) -> bool {
    !p.csrf_token.is_empty() && constant_time_eq(p.csrf_token.as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ------------------------------------------------------------------- sign in

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn login_markup(
    st: &AppState,
    csrf: &str,
    next: &str,
    message: Option<(&str, bool)>,
    resume: Option<(&str, &str)>,
) -> Markup {
    let t = |k: &str| st.i18n.t("en", k);
    let body = html! {
        div.login {
            h1 { (t("login-title")) }
            @if let Some((key, is_error)) = message {
                @if is_error { p.error role="alert" { (t(key)) } } @else { p.notice role="status" { (t(key)) } }
            }
            form.stack method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                @if let Some((path, body)) = resume {
                    input type="hidden" name="resume_path" value=(path);
                    input type="hidden" name="resume_body" value=(body);
                }
                label for="username" { (t("login-username")) input id="username" name="username" autocomplete="username" required autofocus; }
                label for="password" { (t("login-password")) input id="password" name="password" type="password" autocomplete="current-password" required; }
                label for="code" { (t("login-code")) input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}"; }
                button.primary type="submit" { (t("login-submit")) }
            }
        }
    };
    page(st, None, &t("login-title"), body)
}

fn with_login_cookie(mut r: Response, csrf: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={csrf}; Path=/login; HttpOnly; SameSite=Strict"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub async fn login_page(State(st): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    let csrf = crate::auth::random_token();
    let next = safe_next(q.next.as_deref());
    with_login_cookie(
        html_response(StatusCode::OK, login_markup(&st, &csrf, &next, None, None)),
        &csrf,
    )
}

/// The session ended while a form was being posted: ask to sign in, keeping the form.
pub async fn login_with_resume(st: &AppState, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let limit = st.config.max_body_bytes;
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .unwrap_or_default();
    let fields: Vec<(String, String)> = serde_urlencoded_pairs(&body)
        .into_iter()
        .filter(|(k, _)| k != "csrf")
        .collect();
    let encoded = fields
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let csrf = crate::auth::random_token();
    let m = login_markup(
        st,
        &csrf,
        &path,
        Some(("login-expired", false)),
        Some((&path, &encoded)),
    );
    with_login_cookie(html_response(StatusCode::UNAUTHORIZED, m), &csrf)
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    code: String,
    csrf: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    resume_path: Option<String>,
    #[serde(default)]
    resume_body: Option<String>,
}

pub async fn login_submit(
    State(st): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let cookie_csrf = crate::routes::cookie_value(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let next = safe_next(f.next.as_deref());
    let retry = |key: &str| {
        let csrf = crate::auth::random_token();
        let resume = f.resume_path.as_deref().zip(f.resume_body.as_deref());
        with_login_cookie(
            html_response(
                StatusCode::UNAUTHORIZED,
                login_markup(&st, &csrf, &next, Some((key, true)), resume),
            ),
            &csrf,
        )
    };
    if cookie_csrf.is_empty() || !constant_time_eq(cookie_csrf.as_bytes(), f.csrf.as_bytes()) {
        return retry("login-failed");
    }
    let user = match st.store.user_by_name(f.username.trim()).await {
        Ok(u) => u,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let hash = user.as_ref().map_or_else(
        || crate::auth::absent_user_hash().to_owned(),
        |u| u.password_hash.clone(),
    );
    let password = f.password.clone();
    let ok = tokio::task::spawn_blocking(move || crate::auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user else {
        let _ = st
            .store
            .write(WriteRequest::new(
                Actor::system(),
                vec![Mutation::SecurityEvent {
                    kind: "sign_in_failed".into(),
                    detail: format!(
                        "unknown user name `{}`",
                        f.username.chars().take(64).collect::<String>()
                    ),
                }],
            ))
            .await;
        return retry("login-failed");
    };
    let actor = Actor::user(user.id, &user.display_name);
    let now_secs = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    let second_factor_ok = match user
        .totp_secret
        .as_deref()
        .and_then(crate::totp::base32_decode)
    {
        Some(secret) => crate::totp::verify(&secret, &f.code, now_secs),
        None => user.totp_secret.is_none(),
    };
    if !ok || !second_factor_ok || user.locked_at.is_some() {
        let _ = st
            .store
            .write(WriteRequest::new(
                actor,
                vec![Mutation::SignIn {
                    user: user.id,
                    outcome: SignInOutcome::Failure,
                    lockout_after: st.config.lockout_after,
                }],
            ))
            .await;
        return retry("login-failed");
    }
    if let Err(e) = st
        .store
        .write(WriteRequest::new(
            actor,
            vec![Mutation::SignIn {
                user: user.id,
                outcome: SignInOutcome::Success,
                lockout_after: st.config.lockout_after,
            }],
        ))
        .await
    {
        return crate::problem::Problem::from(e).into_response();
    }
    let token = crate::auth::random_token();
    let now = UtcMicros::from_timestamp(jiff::Timestamp::now());
    let csrf = crate::auth::random_token();
    let row = trellis_store::SessionRow {
        token_hash: crate::auth::token_hash(&token),
        user: user.id,
        csrf_token: csrf.clone(),
        created_at: now,
        last_seen_at: now,
        absolute_expires_at: now
            .plus_seconds(i64::try_from(st.config.session_absolute.as_secs()).unwrap_or(i64::MAX)),
    };
    if let Err(e) = st.store.create_session(&row).await {
        return crate::problem::Problem::from(e).into_response();
    }
    let secure = if st.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let mut resp = match (f.resume_path.as_deref(), f.resume_body.as_deref()) {
        (Some(path), Some(body)) if path.starts_with('/') && !path.starts_with("//") => {
            let fields = serde_urlencoded_pairs(body.as_bytes());
            let locale = i18n::supported(&user.locale);
            let t = |k: &str| st.i18n.t(locale, k);
            let m = html! {
                h1 { (t("login-resume-title")) }
                p.notice role="status" { (t("login-resume-text")) }
                form.stack method="post" action=(path) {
                    input type="hidden" name="csrf" value=(csrf);
                    @for (k, v) in &fields {
                        label { (k) input name=(k) value=(v); }
                    }
                    button.primary type="submit" { (t("login-resume-submit")) }
                }
            };
            html_response(StatusCode::OK, page(&st, None, &t("login-resume-title"), m))
        }
        _ => Redirect::to(&next).into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    if let Some(token) = crate::routes::cookie_value(&headers, SESSION_COOKIE) {
        let _ = st
            .store
            .delete_session(&crate::auth::token_hash(token))
            .await;
    }
    let _ = st
        .store
        .write(WriteRequest::new(
            Actor::user(p.user, &p.display_name),
            vec![Mutation::SecurityEvent {
                kind: "sign_out".into(),
                detail: p.username.clone(),
            }],
        ))
        .await;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("trellis_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

// ------------------------------------------------------------------- studies

pub async fn studies(State(st): State<AppState>, Extension(p): Extension<Principal>) -> Response {
    let list = match crate::api::visible_studies(&st, &p).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let body = html! {
        h1 { (t("studies-title")) }
        @if list.is_empty() { p.muted { (t("studies-none")) } } @else {
            table {
                thead { tr { th scope="col" { (t("studies-code")) } th scope="col" { (t("studies-study-title")) } th scope="col" { (t("studies-time-zone")) } th scope="col" { (t("studies-your-roles")) } } }
                tbody {
                    @for s in &list {
                        tr {
                            td { a href=(format!("/studies/{}", s.id)) { (s.code) } }
                            td { (s.title) }
                            td { (s.time_zone) }
                            td { @for r in p.roles_on(s) { span.tag { (r.as_str()) } } }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page(&st, Some(&p), &t("studies-title"), body),
    )
}

pub async fn study_home(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
) -> Response {
    let (sites, subjects, signatures, locks) = match (
        st.store.sites(s.id).await,
        st.store.subjects(s.id).await,
        st.store.signatures(s.id).await,
        st.store.locks(s.id).await,
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
            return crate::problem::Problem::from(e).into_response();
        }
    };
    // Each signature is shown with whether the signed content is still what was signed.
    let mut sig_status: Vec<(trellis_domain::SubjectId, String, bool)> = Vec::new();
    for sig in &signatures {
        let Ok(subject) = sig.entity_id.parse::<trellis_domain::SubjectId>() else {
            continue;
        };
        let current = match st.store.item_values(s.id, subject).await {
            Ok(v) => crate::api::casebook_hash(&v),
            Err(e) => return crate::problem::Problem::from(e).into_response(),
        };
        sig_status.push((
            subject,
            format!(
                "{} · {} · {}",
                sig.meaning.as_str(),
                sig.printed_name,
                format_time(&p.locale, &p.time_zone, sig.signed_at)
            ),
            current == sig.content_hash,
        ));
    }
    let can_sign = p.can(&s, Permission::Sign);
    let scope = p.site_scope(s.id);
    let visible = |site: SiteId| scope.as_ref().is_none_or(|v| v.contains(&site));
    let now = UtcMicros::from_timestamp(jiff::Timestamp::now());
    let l = p.locale.as_str();
    let t = |k: &str| st.i18n.t(l, k);
    let site_code = |id: SiteId| {
        sites
            .iter()
            .find(|x| x.id == id)
            .map(|x| x.code.clone())
            .unwrap_or_default()
    };
    let body = html! {
        h1 { (s.code) " — " (s.title) }
        p.actions {
            a href=(format!("/studies/{}/queries", s.id)) { (t("study-queries")) }
            @if p.can(&s, Permission::ViewAudit) {
                " " a href=(format!("/studies/{}/audit", s.id)) { (t("study-audit")) }
            }
            @if p.can(&s, Permission::ExportData) {
                " " a href=(format!("/studies/{}/export", s.id)) { (t("study-export")) }
            }
            @if p.can(&s, Permission::ManageDesign) {
                " " a href=(format!("/studies/{}/import", s.id)) { (t("study-import")) }
            }
            @if p.can(&s, Permission::ViewSdvProgress) {
                " " a href=(format!("/studies/{}/sdv", s.id)) { (t("study-sdv")) }
            }
        }
        (crate::study_ui::study_lock_controls(&st, &p, &s, &locks))
        h2 { (t("study-sites")) }
        table {
            thead { tr { th scope="col" { (t("site-code")) } th scope="col" { (t("site-name")) } th scope="col" { (t("site-country")) } th scope="col" { (t("site-time-zone")) } th scope="col" { (t("site-local-time")) } } }
            tbody { @for x in sites.iter().filter(|x| visible(x.id)) {
                tr { td { (x.code) } td { (x.name) } td { (x.country) } td { (x.time_zone) } td { (format_time(l, &x.time_zone, now)) } }
            } }
        }
        h2 { (t("study-subjects")) }
        (crate::study_ui::register_form(&st, &p, &s, &sites))
        table {
            thead { tr { th scope="col" { (t("subject-screening-number")) } th scope="col" { (t("subject-site")) } th scope="col" { (t("subject-status")) } th scope="col" { (t("subject-created")) } th scope="col" { (t("subject-signatures")) } @if can_sign { th scope="col" { (t("subject-actions")) } } } }
            tbody { @for x in subjects.iter().filter(|x| visible(x.site)) {
                tr {
                    td { a href=(format!("/studies/{}/subjects/{}", s.id, x.id)) { (x.screening_number) } } td { (site_code(x.site)) } td { (t(&format!("subject-status-{}", x.status.as_str()))) } td { (format_time(l, &p.time_zone, x.created_at)) }
                    td { @for (_, label, valid) in sig_status.iter().filter(|(id, _, _)| *id == x.id) {
                        div { (label) " — " @if *valid { strong { (t("sign-valid")) } } @else { strong.bad { (t("sign-invalid")) } } }
                    } }
                    @if can_sign { td { a href=(format!("/studies/{}/subjects/{}/sign", s.id, x.id)) { (t("sign-action")) } } }
                }
            } }
        }
    };
    html_response(StatusCode::OK, page(&st, Some(&p), &s.code, body))
}

// ------------------------------------------------------------------- audit trail

/// Readable names for ids that appear in audit entries (subjects, sites, users).
type Names = std::collections::HashMap<String, String>;

fn named(names: &Names, v: &str) -> String {
    names.get(v).cloned().unwrap_or_else(|| v.to_owned())
}

fn entity_label(names: &Names, e: &StoredEntry) -> String {
    match (
        e.body.entity_type.as_str(),
        e.body.entity_id.split_once('/'),
    ) {
        ("item", Some((subject, key))) => format!("{} / {key}", named(names, subject)),
        _ => named(names, &e.body.entity_id),
    }
}

fn audit_table(st: &AppState, p: &Principal, entries: &[StoredEntry], names: &Names) -> Markup {
    let l = p.locale.as_str();
    let t = |k: &str| st.i18n.t(l, k);
    html! {
        p.muted role="status" { (st.i18n.t_args(l, "audit-count", &[("count", entries.len().into())])) }
        @if entries.is_empty() { p { (t("audit-none")) } } @else {
            table {
                thead { tr {
                    th scope="col" { (t("audit-when")) } th scope="col" { (t("audit-who")) } th scope="col" { (t("audit-action")) }
                    th scope="col" { (t("audit-what")) } th scope="col" { (t("audit-field")) } th scope="col" { (t("audit-old")) }
                    th scope="col" { (t("audit-new")) } th scope="col" { (t("audit-reason")) }
                } }
                tbody { @for e in entries {
                    tr {
                        td { (format_time(l, &p.time_zone, e.body.recorded_at)) }
                        td { (e.body.actor_name) }
                        td { (e.body.action) }
                        td { (e.body.entity_type) " " span title=(e.body.entity_id) { (entity_label(names, e)) } }
                        td { (e.body.field.as_deref().unwrap_or("")) }
                        td { (e.body.old_value.as_deref().map(|v| named(names, v)).unwrap_or_default()) }
                        td { (e.body.new_value.as_deref().map(|v| named(names, v)).unwrap_or_default()) }
                        td { (e.body.reason.as_deref().unwrap_or("")) }
                    }
                } }
            }
        }
    }
}

fn query_string(q: &AuditQuery, cursor: Option<&str>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("site", &q.site),
        ("subject", &q.subject),
        ("user", &q.user),
        ("entity_type", &q.entity_type),
        ("entity_id", &q.entity_id),
        ("from", &q.from),
        ("to", &q.to),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", url_encode(v)));
        }
    }
    if let Some(c) = cursor {
        parts.push(format!("cursor={}", url_encode(c)));
    }
    parts.join("&")
}

pub async fn study_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let f = match audit_filter(&q, Chain::Study(s.id), &p, Some(&s)) {
        Ok(f) => f,
        Err(e) => return error_with_detail(&st, &p, e),
    };
    let (entries, sites, subjects, users) = match (
        st.store.audit_entries(&f).await,
        st.store.sites(s.id).await,
        st.store.subjects(s.id).await,
        st.store.users().await,
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        _ => {
            return error_page(
                &st,
                Some(&p),
                StatusCode::INTERNAL_SERVER_ERROR,
                "error-title",
            );
        }
    };
    let mut names: Names = sites
        .iter()
        .map(|x| (x.id.to_string(), x.code.clone()))
        .collect();
    names.extend(
        subjects
            .iter()
            .map(|x| (x.id.to_string(), x.screening_number.clone())),
    );
    names.extend(
        users
            .iter()
            .map(|u| (u.id.to_string(), u.display_name.clone())),
    );
    let l = p.locale.as_str();
    let t = |k: &str| st.i18n.t(l, k);
    let sel = |cur: &Option<String>, v: &str| cur.as_deref() == Some(v);
    let next = (entries.len() == f.limit as usize)
        .then(|| entries.last().map(encode_cursor))
        .flatten();
    let base = format!("/studies/{}/audit", s.id);
    let body = html! {
        h1 { (t("audit-title")) " — " (s.code) }
        form.filters method="get" action=(base) aria-label=(t("audit-filter")) {
            label { (t("audit-site")) select name="site" { option value="" { (t("audit-any")) } @for x in &sites { option value=(x.id) selected[sel(&q.site, &x.id.to_string())] { (x.code) } } } }
            label { (t("audit-subject")) select name="subject" { option value="" { (t("audit-any")) } @for x in &subjects { option value=(x.id) selected[sel(&q.subject, &x.id.to_string())] { (x.screening_number) } } } }
            label { (t("audit-user")) select name="user" { option value="" { (t("audit-any")) } @for u in &users { option value=(u.id) selected[sel(&q.user, &u.id.to_string())] { (u.display_name) } } } }
            label { (t("audit-entity")) select name="entity_type" { option value="" { (t("audit-any")) } @for e in ["study", "site", "subject", "item", "subject_casebook"] { option value=(e) selected[sel(&q.entity_type, e)] { (e) } } } }
            label { (t("audit-from")) input type="date" name="from" value=(q.from.clone().unwrap_or_default()); }
            label { (t("audit-to")) input type="date" name="to" value=(q.to.clone().unwrap_or_default()); }
            button.primary type="submit" { (t("audit-apply")) }
        }
        p.actions {
            a href=(format!("{base}.csv?{}", query_string(&q, None))) { (t("audit-export-csv")) }
            a href=(format!("{base}.json?{}", query_string(&q, None))) { (t("audit-export-json")) }
        }
        (audit_table(&st, &p, &entries, &names))
        @if let Some(c) = next { p.actions { a href=(format!("{base}?{}", query_string(&q, Some(&c)))) { (t("audit-more")) } } }
    };
    html_response(StatusCode::OK, page(&st, Some(&p), &t("audit-title"), body))
}

fn error_with_detail(st: &AppState, p: &Principal, e: crate::problem::Problem) -> Response {
    let title = st.i18n.t(&p.locale, "error-title");
    let body = html! { h1 { (title) } p.error role="alert" { (e.detail) } };
    html_response(e.status(), page(st, Some(p), &title, body))
}

/// Every entry matching the filter, for exports.
async fn all_entries(
    st: &AppState,
    mut f: AuditFilter,
) -> Result<Vec<StoredEntry>, trellis_store::StoreError> {
    f.limit = 5000;
    let mut out = Vec::new();
    loop {
        let page = st.store.audit_entries(&f).await?;
        let done = page.len() < f.limit as usize;
        f.after = page
            .last()
            .map(|e| (e.body.recorded_at.as_micros(), e.body.entry_id));
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

fn download(body: String, content_type: &'static str, filename: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// Every entry of the study's trail matching the query, within the principal's sites, for an export.
async fn export_entries(
    st: &AppState,
    p: &Principal,
    s: &Study,
    q: &AuditQuery,
) -> Result<Vec<StoredEntry>, Response> {
    let f = audit_filter(q, Chain::Study(s.id), p, Some(s)).map_err(IntoResponse::into_response)?;
    all_entries(st, f)
        .await
        .map_err(|e| crate::problem::Problem::from(e).into_response())
}

pub async fn study_audit_csv(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let entries = match export_entries(&st, &p, &s, &q).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let mut out = format!("{}\n", crate::api::AUDIT_CSV_HEADER);
    for e in &entries {
        out.push_str(&crate::api::audit_csv_row(e));
        out.push('\n');
    }
    download(
        out,
        "text/csv; charset=utf-8",
        format!("audit-{}.csv", s.code),
    )
}

pub async fn study_audit_json(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let entries = match export_entries(&st, &p, &s, &q).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let v: Vec<_> = entries.iter().map(entry_json).collect();
    download(
        serde_json::to_string_pretty(&v).unwrap_or_default(),
        "application/json",
        format!("audit-{}.json", s.code),
    )
}

pub async fn installation_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let f = match audit_filter(&q, Chain::Installation, &p, None) {
        Ok(f) => f,
        Err(e) => return error_with_detail(&st, &p, e),
    };
    let entries = match st.store.audit_entries(&f).await {
        Ok(e) => e,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let users = match st.store.users().await {
        Ok(u) => u,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let names: Names = users
        .iter()
        .map(|u| {
            (
                u.id.to_string(),
                format!("{} ({})", u.display_name, u.username),
            )
        })
        .collect();
    let l = p.locale.as_str();
    let tr = |k: &str| st.i18n.t(l, k);
    let sel = |cur: &Option<String>, v: &str| cur.as_deref() == Some(v);
    let filters = html! {
        form.filters method="get" action="/audit" aria-label=(tr("audit-filter")) {
            label { (tr("audit-user")) select name="entity_id" { option value="" { (tr("audit-any")) } @for u in &users { option value=(u.id) selected[sel(&q.entity_id, &u.id.to_string())] { (u.display_name) } } } }
            label { (tr("audit-from")) input type="date" name="from" value=(q.from.clone().unwrap_or_default()); }
            label { (tr("audit-to")) input type="date" name="to" value=(q.to.clone().unwrap_or_default()); }
            button.primary type="submit" { (tr("audit-apply")) }
        }
    };
    let t = st.i18n.t(&p.locale, "nav-audit");
    let next = (entries.len() == f.limit as usize)
        .then(|| entries.last().map(encode_cursor))
        .flatten();
    let body = html! {
        h1 { (t) }
        (filters)
        (audit_table(&st, &p, &entries, &names))
        @if let Some(c) = next { p.actions { a href=(format!("/audit?{}", query_string(&q, Some(&c)))) { (st.i18n.t(&p.locale, "audit-more")) } } }
    };
    html_response(StatusCode::OK, page(&st, Some(&p), &t, body))
}

// ------------------------------------------------------------------- users and roles

async fn users_markup(
    st: &AppState,
    p: &Principal,
    message: Option<String>,
    error: Option<String>,
) -> Result<Markup, trellis_store::StoreError> {
    let users = st.store.users().await?;
    let grants = st.store.grants(None).await?;
    let orgs = st.store.organizations().await?;
    let studies = st.store.studies().await?;
    let l = p.locale.as_str();
    let t = |k: &str| st.i18n.t(l, k);
    let study_code = |id: StudyId| {
        studies
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.code.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let mut all_sites = Vec::new();
    for s in &studies {
        for site in st.store.sites(s.id).await? {
            all_sites.push((s.code.clone(), site));
        }
    }
    Ok(html! {
        h1 { (t("users-title")) }
        @if let Some(m) = message { p.notice role="status" { (m) } }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        table {
            thead { tr { th scope="col" { (t("users-username")) } th scope="col" { (t("users-name")) } th scope="col" { (t("users-org")) } th scope="col" { (t("users-status")) } th scope="col" { (t("users-roles")) } } }
            tbody { @for u in &users {
                tr {
                    td.mono { (u.username) }
                    td { (u.display_name) }
                    td { (orgs.iter().find(|o| o.id == u.org).map(|o| o.name.as_str()).unwrap_or("")) }
                    td { @if u.locked_at.is_some() { (t("users-locked")) } @else { (t("users-active")) } }
                    td { @for g in grants.iter().filter(|g| g.user == u.id && g.revoked_at.is_none()) {
                        span.tag { (g.role.as_str()) " · " (g.study.map(study_code).unwrap_or_else(|| t("users-none-scope"))) }
                    } }
                }
            } }
        }
        h2 { (t("users-add")) }
        form.stack method="post" action="/admin/users" {
            input type="hidden" name="csrf" value=(p.csrf_token);
            label { (t("users-username")) input name="username" required pattern="[a-z0-9._-]{3,64}"; }
            label { (t("users-name")) input name="display_name" required; }
            label { (t("users-email")) input name="email" type="email"; }
            label { (t("users-org")) select name="org" { @for o in &orgs { option value=(o.id) { (o.name) " (" (o.kind.as_str()) ")" } } } }
            label { (t("users-time-zone")) input name="time_zone" value="UTC" required; }
            label { (t("users-locale")) select name="locale" { @for (code, name, _) in i18n::LOCALES { option value=(code) { (name) } } } }
            button.primary type="submit" { (t("users-add-submit")) }
        }
        h2 { (t("users-grant")) }
        form.stack method="post" action="/admin/grants" {
            input type="hidden" name="csrf" value=(p.csrf_token);
            label { (t("users-username")) select name="user" { @for u in &users { option value=(u.id) { (u.username) } } } }
            label { (t("users-role")) select name="role" { @for r in Role::ALL { option value=(r.as_str()) { (r.as_str()) } } } }
            label { (t("users-study")) select name="study" { option value="" { (t("users-none-scope")) } @for s in &studies { option value=(s.id) { (s.code) } } } }
            label { (t("users-site")) select name="site" { option value="" { "—" } @for (code, site) in &all_sites { option value=(site.id) { (code) " / " (site.code) } } } }
            button.primary type="submit" { (t("users-grant-submit")) }
        }
    })
}

async fn users_response(
    st: &AppState,
    p: &Principal,
    status: StatusCode,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    match users_markup(st, p, message, error).await {
        Ok(m) => html_response(
            status,
            page(st, Some(p), &st.i18n.t(&p.locale, "users-title"), m),
        ),
        Err(e) => crate::problem::Problem::from(e).into_response(),
    }
}

pub async fn users_page(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Response {
    users_response(&st, &p, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub struct NewUserForm {
    csrf: String,
    username: String,
    display_name: String,
    #[serde(default)]
    email: String,
    org: OrgId,
    time_zone: String,
    locale: String,
}

pub async fn users_create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Form(f): Form<NewUserForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let parsed = (|| -> Result<_, trellis_domain::ValidationError> {
        Ok((
            Username::parse(&f.username)?,
            DisplayName::parse(&f.display_name)?,
            if f.email.trim().is_empty() {
                None
            } else {
                Some(Email::parse(&f.email)?)
            },
            TzName::parse(&f.time_zone)?,
        ))
    })();
    let (username, display_name, email, time_zone) = match parsed {
        Ok(v) => v,
        Err(e) => {
            return users_response(
                &st,
                &p,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(e.to_string()),
            )
            .await;
        }
    };
    let password = crate::auth::generate_password();
    let pw = password.clone();
    let Ok(Ok(hash)) = tokio::task::spawn_blocking(move || crate::auth::hash_password(&pw)).await
    else {
        return error_page(
            &st,
            Some(&p),
            StatusCode::INTERNAL_SERVER_ERROR,
            "error-title",
        );
    };
    let user = NewUser {
        id: UserId::new(),
        username: username.clone(),
        display_name,
        email,
        org: f.org,
        time_zone,
        locale: i18n::supported(&f.locale).to_owned(),
        password_hash: hash,
        must_change_password: true,
    };
    match st
        .store
        .write(WriteRequest::new(
            Actor::user(p.user, &p.display_name),
            vec![Mutation::CreateUser(Box::new(user))],
        ))
        .await
    {
        Ok(_) => {
            let msg = st.i18n.t_args(
                &p.locale,
                "users-created",
                &[
                    ("name", username.to_string().into()),
                    ("password", password.into()),
                ],
            );
            users_response(&st, &p, StatusCode::OK, Some(msg), None).await
        }
        Err(e) => {
            users_response(
                &st,
                &p,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(e.to_string()),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct GrantForm {
    csrf: String,
    user: UserId,
    role: String,
    #[serde(default)]
    study: String,
    #[serde(default)]
    site: String,
}

pub async fn grants_create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Form(f): Form<GrantForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let role: Role = match f.role.parse() {
        Ok(r) => r,
        Err(e) => {
            return users_response(
                &st,
                &p,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(format!("{e}")),
            )
            .await;
        }
    };
    let study = f.study.parse::<StudyId>().ok();
    let site = f.site.parse::<SiteId>().ok();
    let m = Mutation::GrantRole {
        id: RoleGrantId::new(),
        user: f.user,
        role,
        study,
        site,
    };
    match st
        .store
        .write(WriteRequest::new(
            Actor::user(p.user, &p.display_name),
            vec![m],
        ))
        .await
    {
        Ok(_) => {
            users_response(
                &st,
                &p,
                StatusCode::OK,
                Some(st.i18n.t(&p.locale, "users-granted")),
                None,
            )
            .await
        }
        Err(e) => {
            users_response(
                &st,
                &p,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(e.to_string()),
            )
            .await
        }
    }
}

// ------------------------------------------------------------------- own account

fn password_markup(st: &AppState, p: &Principal, message: Option<(&str, bool)>) -> Markup {
    let l = p.locale.as_str();
    let t = |k: &str| st.i18n.t(l, k);
    html! {
        h1 { (t("account-password-title")) }
        @if p.must_change_password && message.is_none() { p.notice role="status" { (t("account-must-change")) } }
        @if let Some((key, is_error)) = message {
            @if is_error { p.error role="alert" { (t(key)) } } @else { p.notice role="status" { (t(key)) } }
        }
        form.stack method="post" action="/account/password" {
            input type="hidden" name="csrf" value=(p.csrf_token);
            label for="current" { (t("account-current")) input id="current" name="current" type="password" autocomplete="current-password" required; }
            label for="new" { (t("account-new")) input id="new" name="new" type="password" autocomplete="new-password" minlength="12" required aria-describedby="policy"; }
            label for="confirm" { (t("account-confirm")) input id="confirm" name="confirm" type="password" autocomplete="new-password" required; }
            p.muted id="policy" { (t("account-policy")) }
            button.primary type="submit" { (t("account-submit")) }
        }
    }
}

pub async fn password_page(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Response {
    html_response(
        StatusCode::OK,
        page(
            &st,
            Some(&p),
            &st.i18n.t(&p.locale, "account-password-title"),
            password_markup(&st, &p, None),
        ),
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
    confirm: String,
}

pub async fn password_change(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Form(f): Form<PasswordForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let title = st.i18n.t(&p.locale, "account-password-title");
    let fail = |key: &str| {
        html_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            page(
                &st,
                Some(&p),
                &title,
                password_markup(&st, &p, Some((key, true))),
            ),
        )
    };
    if f.new != f.confirm {
        return fail("account-mismatch");
    }
    if trellis_domain::PasswordPolicy::default()
        .check(&f.new, &p.username)
        .is_err()
    {
        return fail("account-policy");
    }
    let Ok(Some(user)) = st.store.user(p.user).await else {
        return error_page(
            &st,
            Some(&p),
            StatusCode::INTERNAL_SERVER_ERROR,
            "error-title",
        );
    };
    let (current, stored, new) = (f.current.clone(), user.password_hash.clone(), f.new.clone());
    let checked = tokio::task::spawn_blocking(move || {
        if crate::auth::verify_password(&current, &stored) {
            crate::auth::hash_password(&new).ok()
        } else {
            None
        }
    })
    .await
    .ok()
    .flatten();
    let Some(hash) = checked else {
        let _ = st
            .store
            .write(WriteRequest::new(
                Actor::user(p.user, &p.display_name),
                vec![Mutation::SignIn {
                    user: p.user,
                    outcome: SignInOutcome::Failure,
                    lockout_after: st.config.lockout_after,
                }],
            ))
            .await;
        return fail("account-wrong-current");
    };
    match st
        .store
        .write(WriteRequest::new(
            Actor::user(p.user, &p.display_name),
            vec![Mutation::SetPassword {
                user: p.user,
                password_hash: hash,
                must_change: false,
            }],
        ))
        .await
    {
        Ok(_) => {
            let mut p = p.clone();
            p.must_change_password = false;
            html_response(
                StatusCode::OK,
                page(
                    &st,
                    Some(&p),
                    &title,
                    password_markup(&st, &p, Some(("account-changed", false))),
                ),
            )
        }
        Err(e) => crate::problem::Problem::from(e).into_response(),
    }
}

// ------------------------------------------------------------------- second factor

fn totp_markup(
    st: &AppState,
    p: &Principal,
    enabled: bool,
    message: Option<(&str, bool)>,
) -> Markup {
    let l = p.locale.as_str();
    let t = |k: &str| st.i18n.t(l, k);
    let candidate = crate::totp::new_secret();
    html! {
        h1 { (t("totp-title")) }
        @if let Some((key, is_error)) = message {
            @if is_error { p.error role="alert" { (t(key)) } } @else { p.notice role="status" { (t(key)) } }
        }
        @if enabled {
            p { (t("totp-enabled")) }
            form.stack method="post" action="/account/totp" {
                input type="hidden" name="csrf" value=(p.csrf_token);
                input type="hidden" name="action" value="disable";
                label for="code" { (t("totp-code")) input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required; }
                button.primary type="submit" { (t("totp-disable")) }
            }
        } @else {
            p { (t("totp-disabled")) }
            form.stack method="post" action="/account/totp" {
                input type="hidden" name="csrf" value=(p.csrf_token);
                input type="hidden" name="action" value="enable";
                input type="hidden" name="secret" value=(candidate);
                p { (t("totp-key")) ": " code.mono { (candidate) } }
                p.muted { (t("totp-uri")) ": " span.mono { (crate::totp::otpauth_uri(&candidate, &p.username)) } }
                label for="code" { (t("totp-code")) input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required; }
                button.primary type="submit" { (t("totp-enable")) }
            }
        }
    }
}

pub async fn totp_page(State(st): State<AppState>, Extension(p): Extension<Principal>) -> Response {
    let enabled = matches!(st.store.user(p.user).await, Ok(Some(u)) if u.totp_secret.is_some());
    html_response(
        StatusCode::OK,
        page(
            &st,
            Some(&p),
            &st.i18n.t(&p.locale, "totp-title"),
            totp_markup(&st, &p, enabled, None),
        ),
    )
}

#[derive(Deserialize)]
pub struct TotpForm {
    csrf: String,
    action: String,
    #[serde(default)]
    secret: String,
    code: String,
}

pub async fn totp_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Form(f): Form<TotpForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let Ok(Some(user)) = st.store.user(p.user).await else {
        return error_page(
            &st,
            Some(&p),
            StatusCode::INTERNAL_SERVER_ERROR,
            "error-title",
        );
    };
    let title = st.i18n.t(&p.locale, "totp-title");
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    let (secret_b32, new_value) = match (f.action.as_str(), user.totp_secret.as_deref()) {
        ("enable", None) => (f.secret.clone(), Some(f.secret.clone())),
        ("disable", Some(current)) => (current.to_owned(), None),
        _ => {
            return html_response(
                StatusCode::CONFLICT,
                page(
                    &st,
                    Some(&p),
                    &title,
                    totp_markup(&st, &p, user.totp_secret.is_some(), None),
                ),
            );
        }
    };
    let valid = crate::totp::base32_decode(&secret_b32)
        .is_some_and(|s| s.len() >= 16 && crate::totp::verify(&s, &f.code, now));
    if !valid {
        return html_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            page(
                &st,
                Some(&p),
                &title,
                totp_markup(
                    &st,
                    &p,
                    user.totp_secret.is_some(),
                    Some(("totp-bad-code", true)),
                ),
            ),
        );
    }
    let enabled = new_value.is_some();
    match st
        .store
        .write(WriteRequest::new(
            Actor::user(p.user, &p.display_name),
            vec![Mutation::SetTotp {
                user: p.user,
                secret: new_value,
            }],
        ))
        .await
    {
        Ok(_) => html_response(
            StatusCode::OK,
            page(
                &st,
                Some(&p),
                &title,
                totp_markup(
                    &st,
                    &p,
                    enabled,
                    Some((
                        if enabled {
                            "totp-now-enabled"
                        } else {
                            "totp-now-disabled"
                        },
                        false,
                    )),
                ),
            ),
        ),
        Err(e) => crate::problem::Problem::from(e).into_response(),
    }
}

// ------------------------------------------------------------------- e-signatures

async fn sign_markup(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: &trellis_store::Subject,
    message: Option<(&str, bool)>,
) -> Result<Markup, trellis_store::StoreError> {
    let values = st.store.item_values(s.id, subject.id).await?;
    let hash = crate::api::casebook_hash(&values);
    let l = p.locale.as_str();
    let t = |k: &str| st.i18n.t(l, k);
    let title = st.i18n.t_args(
        l,
        "sign-title",
        &[("subject", subject.screening_number.clone().into())],
    );
    Ok(html! {
        h1 { (title) }
        @if let Some((key, is_error)) = message {
            @if is_error { p.error role="alert" { (t(key)) } } @else { p.notice role="status" { (t(key)) } }
        }
        h2 { (t("sign-content")) }
        table { tbody { @for (k, v) in &values { tr { th scope="row" { (k) } td { (v.as_deref().unwrap_or("")) } } } } }
        p.muted { (t("sign-hash")) ": " span.mono { (hex::encode(hash)) } }
        form.stack method="post" action=(format!("/studies/{}/subjects/{}/sign", s.id, subject.id)) {
            input type="hidden" name="csrf" value=(p.csrf_token);
            input type="hidden" name="content_sha256" value=(hex::encode(hash));
            p { (t("sign-statement")) }
            label for="meaning" { (t("sign-meaning")) select id="meaning" name="meaning" {
                @for m in trellis_domain::SignatureMeaning::ALL { option value=(m.as_str()) selected[*m == trellis_domain::SignatureMeaning::Responsible] { (m.as_str()) } }
            } }
            label for="password" { (t("sign-password")) input id="password" name="password" type="password" autocomplete="current-password" required; }
            button.primary type="submit" { (t("sign-submit")) }
        }
    })
}

pub(crate) async fn subject_in_scope(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: trellis_domain::SubjectId,
) -> Option<trellis_store::Subject> {
    crate::edc::subject_in_scope(st, p, s, subject)
        .await
        .ok()
        .flatten()
}

pub async fn sign_page(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    axum::extract::Path((_, subject)): axum::extract::Path<(String, trellis_domain::SubjectId)>,
) -> Response {
    let Some(subject) = subject_in_scope(&st, &p, &s, subject).await else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    match sign_markup(&st, &p, &s, &subject, None).await {
        Ok(m) => html_response(
            StatusCode::OK,
            page(&st, Some(&p), &st.i18n.t(&p.locale, "sign-action"), m),
        ),
        Err(e) => crate::problem::Problem::from(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct SignForm {
    csrf: String,
    meaning: trellis_domain::SignatureMeaning,
    password: String,
    /// The hash of the content the signer saw; refused if the content changed meanwhile.
    content_sha256: String,
}

pub async fn sign_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    axum::extract::Path((_, subject)): axum::extract::Path<(String, trellis_domain::SubjectId)>,
    Form(f): Form<SignForm>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let Some(subject) = subject_in_scope(&st, &p, &s, subject).await else {
        return error_page(&st, Some(&p), StatusCode::NOT_FOUND, "error-not-found");
    };
    let respond = |status: StatusCode, key: &'static str, is_error: bool| {
        let (st, p, s, subject) = (st.clone(), p.clone(), s.clone(), subject.clone());
        async move {
            match sign_markup(&st, &p, &s, &subject, Some((key, is_error))).await {
                Ok(m) => html_response(
                    status,
                    page(&st, Some(&p), &st.i18n.t(&p.locale, "sign-action"), m),
                ),
                Err(e) => crate::problem::Problem::from(e).into_response(),
            }
        }
    };
    let Ok(Some(user)) = st.store.user(p.user).await else {
        return error_page(
            &st,
            Some(&p),
            StatusCode::INTERNAL_SERVER_ERROR,
            "error-title",
        );
    };
    let (password, stored) = (f.password.clone(), user.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || crate::auth::verify_password(&password, &stored))
        .await
        .unwrap_or(false);
    if !ok {
        let _ = st
            .store
            .write(WriteRequest::new(
                Actor::user(p.user, &p.display_name),
                vec![Mutation::SignIn {
                    user: p.user,
                    outcome: SignInOutcome::Failure,
                    lockout_after: st.config.lockout_after,
                }],
            ))
            .await;
        return respond(StatusCode::UNAUTHORIZED, "sign-wrong-password", true).await;
    }
    let values = match st.store.item_values(s.id, subject.id).await {
        Ok(v) => v,
        Err(e) => return crate::problem::Problem::from(e).into_response(),
    };
    let hash = crate::api::casebook_hash(&values);
    if hex::encode(hash) != f.content_sha256 {
        return respond(StatusCode::CONFLICT, "sign-invalid", true).await;
    }
    let m = Mutation::Sign {
        study: s.id,
        id: trellis_domain::SignatureId::new(),
        signer: p.user,
        printed_name: p.display_name.clone(),
        meaning: f.meaning,
        entity_type: "subject_casebook".into(),
        entity_id: subject.id.to_string(),
        content_hash: hash,
    };
    match st
        .store
        .write(WriteRequest::new(
            Actor::user(p.user, &p.display_name),
            vec![m],
        ))
        .await
    {
        Ok(_) => respond(StatusCode::OK, "sign-done", false).await,
        Err(e) => crate::problem::Problem::from(e).into_response(),
    }
}
