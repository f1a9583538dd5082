//! JSON API handlers (`/api/v1`).

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest as _, Sha256};
use trellis_domain::{SignatureId, SignatureMeaning, SiteId, SubjectId, UtcMicros};
use trellis_store::{Actor, AuditFilter, Chain, Mutation, StoredEntry, Study, WriteRequest};

use crate::AppState;
use crate::authz::Principal;
use crate::problem::Problem;

pub(crate) type ApiResult<T> = Result<T, Problem>;

/// A JSON body that fails with problem+json naming what is wrong, never plain text.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than this server accepts",
                )
            } else {
                Problem::bad_request("unreadable_body", e.body_text())
            }
        })?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(Problem::bad_request(
                "invalid_utf8",
                "the body is not valid UTF-8",
            ));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            let field = e.to_string().split('`').nth(1).map(str::to_owned);
            let p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json",
                format!("{e}"),
            );
            match field {
                Some(f) => p.with_field(f),
                None => p,
            }
        })
    }
}

pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(100).collect())
}

pub(crate) fn actor(p: &Principal) -> Actor {
    Actor {
        id: p.user.as_uuid(),
        name: p.display_name.clone(),
    }
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(st): State<AppState>) -> Response {
    match st.store.chain_heads().await {
        Ok(_) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ready", "database": st.store.backend_name()})),
        )
            .into_response(),
        Err(e) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("database: {e}"),
        )
        .into_response(),
    }
}

pub async fn openapi_json() -> Response {
    let mut r = Json(crate::openapi::document()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    r
}

#[derive(Serialize)]
struct GrantOut {
    id: String,
    role: &'static str,
    study: Option<String>,
    site: Option<String>,
}

pub async fn me(Extension(p): Extension<Principal>) -> Json<serde_json::Value> {
    let grants: Vec<GrantOut> = p
        .grants
        .iter()
        .filter(|g| g.revoked_at.is_none())
        .map(|g| GrantOut {
            id: g.id.to_string(),
            role: g.role.as_str(),
            study: g.study.map(|s| s.to_string()),
            site: g.site.map(|s| s.to_string()),
        })
        .collect();
    Json(serde_json::json!({
        "id": p.user, "username": p.username, "display_name": p.display_name,
        "locale": p.locale, "time_zone": p.time_zone.as_str(), "grants": grants,
    }))
}

#[derive(Serialize)]
pub struct StudyOut {
    id: String,
    code: String,
    title: String,
    sponsor: String,
    time_zone: String,
    created_at: String,
}

fn study_out(s: &Study) -> StudyOut {
    StudyOut {
        id: s.id.to_string(),
        code: s.code.clone(),
        title: s.title.clone(),
        sponsor: s.sponsor.to_string(),
        time_zone: s.time_zone.to_string(),
        created_at: s.created_at.to_rfc3339(),
    }
}

/// Studies the principal may see.
pub async fn visible_studies(st: &AppState, p: &Principal) -> Result<Vec<Study>, Problem> {
    Ok(st
        .store
        .studies()
        .await?
        .into_iter()
        .filter(|s| !p.roles_on(s).is_empty())
        .collect())
}

pub async fn studies(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<serde_json::Value>> {
    let list: Vec<StudyOut> = visible_studies(&st, &p)
        .await?
        .iter()
        .map(study_out)
        .collect();
    Ok(Json(serde_json::json!({ "studies": list })))
}

pub async fn study(Extension(s): Extension<Study>) -> Json<StudyOut> {
    Json(study_out(&s))
}

pub async fn sites(
    State(st): State<AppState>,
    Extension(s): Extension<Study>,
) -> ApiResult<Json<serde_json::Value>> {
    let sites: Vec<_> = st.store.sites(s.id).await?.into_iter().map(|x| serde_json::json!({
        "id": x.id, "code": x.code, "name": x.name, "country": x.country, "time_zone": x.time_zone.as_str(), "created_at": x.created_at.to_rfc3339(),
    })).collect();
    Ok(Json(serde_json::json!({ "sites": sites })))
}

pub async fn subjects(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
) -> ApiResult<Json<serde_json::Value>> {
    let subjects: Vec<_> = st.store.subjects(s.id).await?.into_iter().filter(|x| p.sees_site(s.id, x.site)).map(|x| serde_json::json!({
        "id": x.id, "site": x.site, "screening_number": x.screening_number, "status": x.status.as_str(), "created_at": x.created_at.to_rfc3339(),
    })).collect();
    Ok(Json(serde_json::json!({ "subjects": subjects })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubject {
    site: SiteId,
    screening_number: String,
}

pub async fn create_subject(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    ApiJson(body): ApiJson<NewSubject>,
) -> ApiResult<Response> {
    let id = crate::subjects::register(
        &st,
        &p,
        &s,
        body.site,
        &body.screening_number,
        request_id(&headers),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response())
}

async fn subject_site(st: &AppState, s: &Study, subject: SubjectId) -> ApiResult<SiteId> {
    st.store
        .subjects(s.id)
        .await?
        .into_iter()
        .find(|x| x.id == subject)
        .map(|x| x.site)
        .ok_or_else(|| Problem::not_found("subject"))
}

pub async fn items(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
) -> ApiResult<Json<serde_json::Value>> {
    let site = subject_site(&st, &s, subject).await?;
    if !p.sees_site(s.id, site) {
        return Err(Problem::forbidden());
    }
    let values: serde_json::Map<String, serde_json::Value> = st
        .store
        .item_values(s.id, subject)
        .await?
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.map_or(serde_json::Value::Null, serde_json::Value::String),
            )
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "subject": subject, "values": values }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveItems {
    values: std::collections::BTreeMap<String, Option<String>>,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn save_items(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    ApiJson(body): ApiJson<SaveItems>,
) -> ApiResult<Json<serde_json::Value>> {
    let site = subject_site(&st, &s, subject).await?;
    if !p.sees_site(s.id, site) {
        return Err(Problem::forbidden());
    }
    if body.values.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            "values: give at least one item",
        )
        .with_field("values"));
    }
    // Case report form items are saved through their form, where the edit checks run;
    // this endpoint takes only data outside the study's forms.
    if let Some(key) = body
        .values
        .keys()
        .find(|k| k.parse::<trellis_edc::ItemPath>().is_ok())
        && !st.store.metadata_versions(s.id).await?.is_empty()
    {
        let form = key
            .parse::<trellis_edc::ItemPath>()
            .map(|p| p.form.to_string())
            .unwrap_or_default();
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_item",
            format!(
                "{key} is an item of a case report form: save it with PUT /api/v1/studies/{}/subjects/{subject}/forms/{} so that its edit checks run",
                s.id,
                crate::edc::url_encode_segment(&form)
            ),
        )
        .with_field(format!("values.{key}")));
    }
    let mut req = WriteRequest::new(
        actor(&p),
        vec![Mutation::SaveItems {
            study: s.id,
            subject,
            values: body.values.into_iter().collect(),
        }],
    );
    req.reason = body.reason.filter(|r| !r.trim().is_empty());
    req.request_id = request_id(&headers);
    let receipt = st.store.write(req).await?;
    Ok(Json(
        serde_json::json!({ "audit_entries": receipt.entries.len(), "committed_at": receipt.committed_at.map(UtcMicros::to_rfc3339) }),
    ))
}

/// SHA-256 over a subject's current values, the content an investigator signs.
pub fn casebook_hash(values: &[(String, Option<String>)]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"trellis.casebook.v1\0");
    for (k, v) in values {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        match v {
            None => h.update([0u8]),
            Some(v) => {
                h.update([1u8]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
            }
        }
    }
    h.finalize().into()
}

pub async fn signatures(
    State(st): State<AppState>,
    Extension(s): Extension<Study>,
) -> ApiResult<Json<serde_json::Value>> {
    let mut out = Vec::new();
    for sig in st.store.signatures(s.id).await? {
        let valid = match sig.entity_id.parse::<SubjectId>() {
            Ok(subject) if sig.entity_type == "subject_casebook" => {
                casebook_hash(&st.store.item_values(s.id, subject).await?) == sig.content_hash
            }
            _ => false,
        };
        out.push(serde_json::json!({
            "id": sig.id, "signer": sig.signer, "printed_name": sig.printed_name, "meaning": sig.meaning.as_str(),
            "signed_at": sig.signed_at.to_rfc3339(), "entity_type": sig.entity_type, "entity_id": sig.entity_id,
            "content_sha256": hex::encode(sig.content_hash), "valid": valid,
        }));
    }
    Ok(Json(serde_json::json!({ "signatures": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    subject: SubjectId,
    meaning: SignatureMeaning,
    password: String,
}

pub async fn sign(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    ApiJson(body): ApiJson<SignRequest>,
) -> ApiResult<Response> {
    let site = subject_site(&st, &s, body.subject).await?;
    if !p.sees_site(s.id, site) {
        return Err(Problem::forbidden());
    }
    // 21 CFR 11.200: signing re-authenticates the signer.
    let user = st
        .store
        .user(p.user)
        .await?
        .ok_or_else(Problem::unauthenticated)?;
    let hash = user.password_hash.clone();
    let ok =
        tokio::task::spawn_blocking(move || crate::auth::verify_password(&body.password, &hash))
            .await
            .unwrap_or(false);
    if !ok {
        st.store
            .write(WriteRequest::new(
                actor(&p),
                vec![trellis_store::Mutation::SignIn {
                    user: p.user,
                    outcome: trellis_store::SignInOutcome::Failure,
                    lockout_after: st.config.lockout_after,
                }],
            ))
            .await?;
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "signature_password_incorrect",
            "the password is incorrect; the signature was not applied",
        )
        .with_field("password"));
    }
    let values = st.store.item_values(s.id, body.subject).await?;
    let id = SignatureId::new();
    let mut req = WriteRequest::new(
        actor(&p),
        vec![Mutation::Sign {
            study: s.id,
            id,
            signer: p.user,
            printed_name: p.display_name.clone(),
            meaning: body.meaning,
            entity_type: "subject_casebook".into(),
            entity_id: body.subject.to_string(),
            content_hash: casebook_hash(&values),
        }],
    );
    req.request_id = request_id(&headers);
    st.store.write(req).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id, "printed_name": p.display_name, "meaning": body.meaning.as_str() }))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub site: Option<String>,
    pub subject: Option<String>,
    pub user: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// RFC 3339 instant or a UTC date (YYYY-MM-DD), inclusive.
    pub from: Option<String>,
    /// RFC 3339 instant or a UTC date (YYYY-MM-DD); a date includes the whole day.
    pub to: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

fn parse_uuid(field: &str, v: &Option<String>) -> ApiResult<Option<uuid::Uuid>> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            Problem::bad_request("invalid_query", format!("{field}: `{s}` is not an id"))
                .with_field(field)
        }),
    }
}

fn parse_time(field: &str, v: &Option<String>, end_of_day: bool) -> ApiResult<Option<UtcMicros>> {
    let Some(s) = v.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(Some(UtcMicros::from_timestamp(ts)));
    }
    let date: jiff::civil::Date = s.parse().map_err(|_| {
        Problem::bad_request(
            "invalid_query",
            format!("{field}: `{s}` is neither a date (YYYY-MM-DD) nor an RFC 3339 time"),
        )
        .with_field(field)
    })?;
    let date = if end_of_day {
        date.tomorrow().unwrap_or(date)
    } else {
        date
    };
    let ts = date
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| Problem::bad_request("invalid_query", format!("{field}: {e}")))?;
    Ok(Some(UtcMicros::from_timestamp(ts)))
}

pub fn decode_cursor(c: &Option<String>) -> ApiResult<Option<(i64, uuid::Uuid)>> {
    let Some(c) = c.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        Problem::bad_request("invalid_cursor", "cursor is not one this server issued")
            .with_field("cursor")
    };
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = text.split_once('_').ok_or_else(bad)?;
    Ok(Some((
        t.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    )))
}

pub fn encode_cursor(e: &StoredEntry) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}_{}",
        e.body.recorded_at.as_micros(),
        e.body.entry_id
    ))
}

/// Builds the store filter from the query, limited to the principal's sites.
pub fn audit_filter(
    q: &AuditQuery,
    chain: Chain,
    p: &Principal,
    study: Option<&Study>,
) -> ApiResult<AuditFilter> {
    let mut f = AuditFilter {
        chain: Some(chain),
        site: parse_uuid("site", &q.site)?,
        subject: parse_uuid("subject", &q.subject)?,
        actor: parse_uuid("user", &q.user)?,
        entity_type: q.entity_type.clone().filter(|s| !s.trim().is_empty()),
        entity_id: q.entity_id.clone().filter(|s| !s.trim().is_empty()),
        from: parse_time("from", &q.from, false)?,
        to: parse_time("to", &q.to, true)?,
        after: decode_cursor(&q.cursor)?,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    if let Some(s) = study
        && let Some(sites) = p.site_scope(s.id)
    {
        // Site-scoped users see only their sites' entries.
        match f.site {
            Some(site) if sites.iter().any(|x| x.as_uuid() == site) => {}
            Some(_) => return Err(Problem::forbidden()),
            None => match sites.first() {
                Some(first) if sites.len() == 1 => f.site = Some(first.as_uuid()),
                _ => {
                    return Err(Problem::bad_request(
                        "site_required",
                        "you hold roles on several sites: choose one with `site`",
                    )
                    .with_field("site"));
                }
            },
        }
    }
    Ok(f)
}

/// Header of the audit trail's CSV export (UI and command line share it).
pub const AUDIT_CSV_HEADER: &str = "chain,seq,entry_id,recorded_at_utc,actor_id,actor_name,action,entity_type,entity_id,field,old_value,new_value,reason,request_id,site_id,subject_id,prev_hash,hash";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One audit entry as a CSV line (RFC 4180 quoting), columns as in [`AUDIT_CSV_HEADER`].
pub fn audit_csv_row(e: &StoredEntry) -> String {
    let b = &e.body;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let id = |v: Option<uuid::Uuid>| v.map(|x| x.to_string()).unwrap_or_default();
    [
        e.chain.id().to_string(),
        e.seq.to_string(),
        b.entry_id.to_string(),
        b.recorded_at.to_rfc3339(),
        b.actor_id.to_string(),
        b.actor_name.clone(),
        b.action.clone(),
        b.entity_type.clone(),
        b.entity_id.clone(),
        opt(&b.field),
        opt(&b.old_value),
        opt(&b.new_value),
        opt(&b.reason),
        opt(&b.request_id),
        id(b.site_id),
        id(b.subject_id),
        hex::encode(e.prev_hash),
        hex::encode(e.hash),
    ]
    .iter()
    .map(|c| csv_field(c))
    .collect::<Vec<_>>()
    .join(",")
}

pub fn entry_json(e: &StoredEntry) -> serde_json::Value {
    let b = &e.body;
    serde_json::json!({
        "chain": e.chain.id(), "seq": e.seq, "entry_id": b.entry_id, "recorded_at": b.recorded_at.to_rfc3339(),
        "actor_id": b.actor_id, "actor_name": b.actor_name, "action": b.action, "entity_type": b.entity_type,
        "entity_id": b.entity_id, "field": b.field, "old_value": b.old_value, "new_value": b.new_value,
        "reason": b.reason, "request_id": b.request_id, "site_id": b.site_id, "subject_id": b.subject_id,
        "prev_hash": hex::encode(e.prev_hash), "hash": hex::encode(e.hash),
    })
}

async fn audit_page(st: &AppState, f: &AuditFilter) -> ApiResult<Json<serde_json::Value>> {
    let entries = st.store.audit_entries(f).await?;
    let next = (entries.len() == f.limit as usize)
        .then(|| entries.last().map(encode_cursor))
        .flatten();
    Ok(Json(
        serde_json::json!({ "entries": entries.iter().map(entry_json).collect::<Vec<_>>(), "next_cursor": next }),
    ))
}

pub async fn study_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid_query", e.body_text()))?;
    let f = audit_filter(&q, Chain::Study(s.id), &p, Some(&s))?;
    audit_page(&st, &f).await
}

pub async fn installation_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid_query", e.body_text()))?;
    let f = audit_filter(&q, Chain::Installation, &p, None)?;
    audit_page(&st, &f).await
}
