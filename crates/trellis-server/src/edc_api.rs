//! The JSON API of data capture: everything the data-entry pages do (casebook, forms with
//! edit checks, queries, source data verification, freeze and lock, item history), for
//! ePRO apps and integrations. Saving goes through `edc::save_form`, as in the browser.

use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_checks::Severity;
use trellis_domain::{QueryId, SubjectId, UtcMicros};
use trellis_edc::{Evaluation, FindingKind, FormPath, ItemPath, LocalKey};
use trellis_store::{
    AuditFilter, Chain, LockRow, LockState, Mutation, QueryAction, QueryRow, QueryStatus, Study,
    Subject, VerificationRow, WriteRequest,
};

use crate::AppState;
use crate::api::{ApiJson, ApiResult, actor, entry_json, request_id};
use crate::authz::Principal;
use crate::edc::{
    ContextError, FormContext, FormValues, SaveOutcome, applicable_lock, casebook_lock, save_form,
    shown_values, subject_design,
};
use crate::problem::Problem;

fn unprocessable(code: &'static str, field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).with_field(field)
}

/// The subject, if it exists in the study; a subject at another site is forbidden.
async fn api_subject(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
) -> ApiResult<Subject> {
    let Some(x) = st.store.subject(s.id, subject).await? else {
        return Err(Problem::not_found("subject"));
    };
    if !p.sees_site(s.id, x.site) {
        return Err(Problem::forbidden());
    }
    Ok(x)
}

async fn api_form(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
    form: &str,
) -> ApiResult<FormContext> {
    // One read for the subject, its metadata version and its site's zone.
    let Some(context) = st.store.subject_context(s.id, subject).await? else {
        return Err(Problem::not_found("subject"));
    };
    if !p.sees_site(s.id, context.subject.site) {
        return Err(Problem::forbidden());
    }
    FormContext::for_subject(st, s, context, form)
        .await
        .map_err(context_problem)
}

fn context_problem(e: ContextError) -> Problem {
    match e {
        ContextError::NotFound(what) => Problem::not_found(what),
        ContextError::OutOfScope => Problem::forbidden(),
        ContextError::Store(e) => e.into(),
        ContextError::Design(e) => {
            tracing::error!(detail = e, "study design could not be loaded");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the study design could not be loaded; see the server log",
            )
        }
    }
}

fn time(t: UtcMicros) -> String {
    t.to_rfc3339()
}

fn kind_str(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Invalid => "invalid",
        FindingKind::Check => "check",
        FindingKind::Required => "required",
        FindingKind::NotCollected => "not_collected",
        FindingKind::CannotEvaluate => "cannot_evaluate",
    }
}

fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Hard => "hard",
        Severity::Soft => "soft",
    }
}

fn local_key(k: &LocalKey) -> String {
    crate::crf::field_name(k)
}

fn findings_json(evaluation: &Evaluation) -> Value {
    evaluation
        .findings
        .iter()
        .map(|f| {
            json!({
                "check_id": f.check_id,
                "kind": kind_str(f.kind),
                "severity": severity_str(f.severity),
                "message": f.message,
                "items": f.targets.iter().map(local_key).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn values_json(values: &BTreeMap<LocalKey, String>) -> Value {
    Value::Object(
        values
            .iter()
            .map(|(k, v)| (local_key(k), Value::String(v.clone())))
            .collect(),
    )
}

fn age_days(q: &QueryRow, now: UtcMicros) -> i64 {
    (now.as_micros() - q.opened_at.as_micros()).max(0) / 86_400_000_000
}

fn query_json(q: &QueryRow, now: UtcMicros) -> Value {
    json!({
        "id": q.id,
        "subject": q.subject,
        "item": q.item_key,
        "check_id": q.check_id,
        "automatic": q.check_id.is_some(),
        "status": q.status.as_str(),
        "opened_by": q.opened_by,
        "opened_at": time(q.opened_at),
        "updated_at": time(q.updated_at),
        "age_days": age_days(q, now),
        "messages": q.messages.iter().map(|m| json!({
            "seq": m.seq, "action": m.action, "author_id": m.author_id, "author_name": m.author_name,
            "at": time(m.at), "text": m.text,
        })).collect::<Vec<_>>(),
    })
}

fn verification_json(v: &VerificationRow, current: Option<&String>) -> Value {
    json!({
        "item": v.item_key,
        "verified_value": v.verified_value,
        "verified_by": v.verified_by,
        "verified_at": time(v.verified_at),
        // The value changed after it was verified: it needs verifying again.
        "stale": v.verified_value.as_ref() != current,
    })
}

fn lock_json(l: &LockRow) -> Value {
    json!({
        "subject": l.subject,
        "form": (!l.scope.is_empty()).then_some(&l.scope),
        "state": l.state.as_str(),
        "changed_by": l.changed_by,
        "changed_at": time(l.changed_at),
    })
}

fn now() -> UtcMicros {
    UtcMicros::from_timestamp(jiff::Timestamp::now())
}

/// The study's metadata versions (protocol amendments), oldest first.
pub async fn metadata_versions(
    State(st): State<AppState>,
    Extension(s): Extension<Study>,
) -> ApiResult<Json<Value>> {
    let versions: Vec<Value> = st
        .store
        .metadata_versions(s.id)
        .await?
        .iter()
        .map(|v| {
            json!({
                "oid": v.oid, "name": v.name, "study_oid": v.study_oid, "seq": v.seq,
                "odm_sha256": hex::encode(v.odm_sha256), "created_at": time(v.created_at),
            })
        })
        .collect();
    Ok(Json(json!({ "metadata_versions": versions })))
}

/// A subject's casebook: the visit schedule with each form's state.
pub async fn casebook(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
) -> ApiResult<Json<Value>> {
    let subject = api_subject(&st, &p, &s, subject).await?;
    let design = subject_design(&st, &s, subject.id).await.map_err(|e| {
        tracing::error!(detail = e, "study design could not be loaded");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the study design could not be loaded; see the server log",
        )
    })?;
    let Some(design) = design else {
        return Err(Problem::not_found("study design"));
    };
    let values = st.store.item_values(s.id, subject.id).await?;
    let locks = st.store.locks(s.id).await?;
    let queries = st.store.queries(s.id, Some(subject.id)).await?;
    let mut counts: HashMap<FormPath, (usize, usize)> = HashMap::new();
    for (k, v) in &values {
        if v.is_some()
            && let Ok(path) = k.parse::<ItemPath>()
        {
            counts.entry(path.form).or_default().0 += 1;
        }
    }
    for q in queries.iter().filter(|q| q.status != QueryStatus::Closed) {
        if let Ok(path) = q.item_key.parse::<ItemPath>() {
            counts.entry(path.form).or_default().1 += 1;
        }
    }
    // Instances with data, also repeats beyond the first, in schedule order.
    let mut instances: Vec<&FormPath> = counts.keys().collect();
    instances.sort();
    let events: Vec<Value> = design
        .events
        .iter()
        .map(|event| {
            let forms: Vec<Value> = event
                .forms
                .iter()
                .filter_map(|f| design.form(f.as_str()))
                .flat_map(|form| {
                    let first = FormPath {
                        event: event.oid.clone(),
                        event_repeat: 1,
                        form: form.oid.clone(),
                        form_repeat: 1,
                    };
                    let mut paths = vec![first.clone()];
                    paths.extend(
                        instances
                            .iter()
                            .filter(|p| p.event == event.oid && p.form == form.oid && ***p != first)
                            .map(|p| (*p).clone()),
                    );
                    paths.into_iter().map(|path| {
                        let (n, open) = counts.get(&path).copied().unwrap_or_default();
                        let lock = applicable_lock(&locks, subject.id, &path.to_string());
                        json!({
                            "form": path.to_string(),
                            "oid": form.oid.as_str(),
                            "name": form.name,
                            "values": n,
                            "open_queries": open,
                            "state": lock.map(|l| l.state.as_str()),
                        })
                    })
                })
                .collect();
            json!({
                "oid": event.oid.as_str(),
                "name": event.name,
                "repeating": event.repeating,
                "planned_day": event.schedule.map(|s| s.planned_day),
                "window_before": event.schedule.map(|s| s.window_before),
                "window_after": event.schedule.map(|s| s.window_after),
                "forms": forms,
            })
        })
        .collect();
    Ok(Json(json!({
        "subject": {
            "id": subject.id, "site": subject.site, "screening_number": subject.screening_number,
            "status": subject.status.as_str(),
        },
        "metadata_version": design.metadata_version.as_str(),
        "lock": casebook_lock(&locks, subject.id).as_ref().map(lock_json),
        "events": events,
    })))
}

/// The form's design in the caller's language, for clients that render it themselves.
fn form_design_json(ctx: &FormContext, lang: &str) -> Value {
    let Some(form) = ctx.form() else {
        return Value::Null;
    };
    let text = |t: &trellis_odm::Translated| t.get(lang).map(str::to_owned);
    json!({
        "oid": form.oid.as_str(),
        "name": form.name,
        "repeating": form.repeating,
        "groups": form.groups.iter().map(|g| json!({
            "oid": g.oid.as_str(),
            "name": g.name,
            "repeating": g.repeating,
            "items": g.items.iter().map(|i| json!({
                "oid": i.oid.as_str(),
                "name": i.name,
                "question": text(&i.question),
                "data_type": i.data_type.as_str(),
                "length": i.length,
                "significant_digits": i.significant_digits,
                "mandatory": i.mandatory,
                "derived": i.derivation.is_some(),
                "units": i.units.iter().filter_map(text).collect::<Vec<_>>(),
                "choices": i.choices.iter().map(|c| json!({"code": c.code, "decode": text(&c.decode)})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// One form instance: design, values, edit-check results, queries, verifications, lock.
pub async fn form(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject, form)): Path<(String, SubjectId, String)>,
) -> ApiResult<Json<Value>> {
    let ctx = api_form(&st, &p, &s, subject, &form).await?;
    let Some(design) = ctx.form() else {
        return Err(Problem::not_found("form"));
    };
    let values = FormValues::load(&st, &s, &ctx).await?;
    let evaluation = values.evaluate_saved(&ctx, design);
    let shown = shown_values(&values.saved, &evaluation);
    let prefix = format!("{}/", ctx.path);
    let now = now();
    let queries: Vec<Value> = st
        .store
        .queries(s.id, Some(ctx.subject.id))
        .await?
        .iter()
        .filter(|q| q.item_key.starts_with(&prefix))
        .map(|q| query_json(q, now))
        .collect();
    let verifications: Vec<Value> = st
        .store
        .verifications(s.id, Some(ctx.subject.id))
        .await?
        .iter()
        .filter(|v| v.item_key.starts_with(&prefix))
        .map(|v| verification_json(v, values.by_key.get(&v.item_key)))
        .collect();
    let lock = applicable_lock(
        &st.store.locks(s.id).await?,
        ctx.subject.id,
        &ctx.path.to_string(),
    );
    Ok(Json(json!({
        "subject": ctx.subject.id,
        "form": ctx.path.to_string(),
        "metadata_version": ctx.design.metadata_version.as_str(),
        "design": form_design_json(&ctx, &p.locale),
        "values": values_json(&shown),
        "findings": findings_json(&evaluation),
        "not_collected": evaluation.not_collected.iter().map(local_key).collect::<Vec<_>>(),
        "queries": queries,
        "verifications": verifications,
        "lock": lock.as_ref().map(lock_json),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveForm {
    /// `GROUP[row]/ITEM` → value, or `null` to clear the item.
    values: BTreeMap<String, Option<String>>,
    #[serde(default)]
    reason: Option<String>,
}

/// Saves values of a form instance, exactly as the browser form does.
pub async fn save(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject, form)): Path<(String, SubjectId, String)>,
    ApiJson(body): ApiJson<SaveForm>,
) -> ApiResult<Response> {
    // One read for the subject, the form's context, its values and queries.
    let Some((ctx, values, queries)) =
        FormContext::for_save(&st, &s, subject, &form, |x| p.sees_site(s.id, x.site))
            .await
            .map_err(context_problem)?
    else {
        return Err(Problem::not_found("subject"));
    };
    let Some(design) = ctx.form() else {
        return Err(Problem::not_found("form"));
    };
    if body.values.is_empty() {
        return Err(unprocessable(
            "invalid_value",
            "values",
            "values: give at least one item",
        ));
    }
    // The same reading as a posted browser form: unknown items and rows are refused.
    let pairs: Vec<(String, String)> = body
        .values
        .iter()
        .map(|(k, v)| (format!("v:{k}"), v.clone().unwrap_or_default()))
        .collect();
    let submitted = crate::crf::read_submission(design, &pairs).map_err(|errors| {
        let first = errors.first().map(|e| e.field.clone()).unwrap_or_default();
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        unprocessable("unknown_item", &format!("values.{first}"), detail)
    })?;
    let report = save_form(
        &st,
        actor(&p),
        request_id(&headers),
        &s,
        &ctx,
        values,
        queries,
        &submitted,
        body.reason,
    )
    .await?;
    let findings = findings_json(&report.evaluation);
    let shown = values_json(&shown_values(&report.merged, &report.evaluation));
    match report.outcome {
        SaveOutcome::Saved {
            changes,
            audit_entries,
            queries_opened,
            queries_closed,
            committed_at,
        } => Ok(Json(json!({
            "saved": true,
            "changed": changes.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "audit_entries": audit_entries,
            "committed_at": committed_at.map(time),
            "queries_opened": queries_opened,
            "queries_closed": queries_closed,
            "values": shown,
            "findings": findings,
        }))
        .into_response()),
        SaveOutcome::Unchanged => Ok(Json(json!({
            "saved": false,
            "changed": [],
            "audit_entries": 0,
            "values": shown,
            "findings": findings,
        }))
        .into_response()),
        SaveOutcome::Refused => {
            let hard = report
                .evaluation
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Hard)
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "edit_check_refused",
                format!("nothing saved: {hard}"),
            )
            .with_extension("findings", findings))
        }
        SaveOutcome::ReasonRequired => Err(unprocessable(
            "reason_required",
            "reason",
            "saved values change: give a reason for the change",
        )),
        SaveOutcome::Rejected(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemParam {
    item: String,
}

/// An item's audit history, oldest first.
pub async fn item_history(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    Query(q): Query<ItemParam>,
) -> ApiResult<Json<Value>> {
    let subject = api_subject(&st, &p, &s, subject).await?;
    if q.item.parse::<ItemPath>().is_err() {
        return Err(unprocessable(
            "invalid_value",
            "item",
            "item: expected EVENT[n]/FORM[n]/GROUP[n]/ITEM",
        ));
    }
    let entries = st
        .store
        .audit_entries(&AuditFilter {
            chain: Some(Chain::Study(s.id)),
            entity_type: Some("item".into()),
            entity_id: Some(format!("{}/{}", subject.id, q.item)),
            limit: 1000,
            ..AuditFilter::default()
        })
        .await?;
    Ok(Json(json!({
        "subject": subject.id,
        "item": q.item,
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct QueryFilter {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    subject: Option<SubjectId>,
}

/// The study's queries within the caller's sites, with age, and counts per site.
pub async fn queries(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Query(f): Query<QueryFilter>,
) -> ApiResult<Json<Value>> {
    let wanted = match f.status.as_deref() {
        None | Some("") => None,
        Some(x) => Some(QueryStatus::parse(x).ok_or_else(|| {
            unprocessable(
                "invalid_value",
                "status",
                "status: one of open, answered, closed",
            )
        })?),
    };
    let subjects = st.store.subjects(s.id).await?;
    let sites = st.store.sites(s.id).await?;
    let scope = p.site_scope(s.id);
    let visible = |site| scope.as_ref().is_none_or(|v| v.contains(&site));
    let site_of: HashMap<SubjectId, trellis_domain::SiteId> = subjects
        .iter()
        .filter(|x| visible(x.site))
        .map(|x| (x.id, x.site))
        .collect();
    let now = now();
    let all = st.store.queries(s.id, f.subject).await?;
    let mut per_site: Vec<Value> = Vec::new();
    for site in sites.iter().filter(|x| visible(x.id)) {
        let mine = all
            .iter()
            .filter(|q| site_of.get(&q.subject) == Some(&site.id));
        let (mut open, mut answered, mut closed, mut overdue) = (0, 0, 0, 0);
        for q in mine {
            match q.status {
                QueryStatus::Open => open += 1,
                QueryStatus::Answered => answered += 1,
                QueryStatus::Closed => closed += 1,
            }
            if q.status == QueryStatus::Open && age_days(q, now) > 14 {
                overdue += 1;
            }
        }
        per_site.push(json!({
            "site": site.id, "code": site.code, "open": open, "answered": answered,
            "closed": closed, "open_over_14_days": overdue,
        }));
    }
    let list: Vec<Value> = all
        .iter()
        .filter(|q| site_of.contains_key(&q.subject))
        .filter(|q| wanted.is_none_or(|w| q.status == w))
        .map(|q| query_json(q, now))
        .collect();
    Ok(Json(json!({ "queries": list, "per_site": per_site })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewQuery {
    item: String,
    text: String,
}

/// A monitor or data manager raises a query on an item.
pub async fn open_query(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    ApiJson(body): ApiJson<NewQuery>,
) -> ApiResult<Response> {
    let subject = api_subject(&st, &p, &s, subject).await?;
    if body.item.parse::<ItemPath>().is_err() {
        return Err(unprocessable(
            "invalid_value",
            "item",
            "item: expected EVENT[n]/FORM[n]/GROUP[n]/ITEM",
        ));
    }
    let id = QueryId::new();
    let mut req = WriteRequest::new(
        actor(&p),
        vec![Mutation::OpenQuery {
            study: s.id,
            id,
            subject: subject.id,
            item_key: body.item,
            check_id: None,
            text: body.text,
        }],
    );
    req.request_id = request_id(&headers);
    st.store.write(req).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryText {
    #[serde(default)]
    text: String,
}

#[allow(clippy::too_many_arguments)]
async fn update_query(
    st: AppState,
    headers: HeaderMap,
    p: Principal,
    s: Study,
    subject: SubjectId,
    id: QueryId,
    action: QueryAction,
    text: String,
) -> ApiResult<Json<Value>> {
    let subject = api_subject(&st, &p, &s, subject).await?;
    // The query must belong to this subject, whose site the caller may see.
    if !st
        .store
        .queries(s.id, Some(subject.id))
        .await?
        .iter()
        .any(|q| q.id == id)
    {
        return Err(Problem::not_found("query"));
    }
    let mut req = WriteRequest::new(
        actor(&p),
        vec![Mutation::UpdateQuery {
            study: s.id,
            id,
            action,
            text,
        }],
    );
    req.request_id = request_id(&headers);
    st.store.write(req).await?;
    let q = st
        .store
        .queries(s.id, Some(subject.id))
        .await?
        .into_iter()
        .find(|q| q.id == id)
        .ok_or_else(|| Problem::not_found("query"))?;
    Ok(Json(query_json(&q, now())))
}

/// The site answers a query.
pub async fn answer_query(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject, id)): Path<(String, SubjectId, QueryId)>,
    ApiJson(body): ApiJson<QueryText>,
) -> ApiResult<Json<Value>> {
    update_query(
        st,
        headers,
        p,
        s,
        subject,
        id,
        QueryAction::Answer,
        body.text,
    )
    .await
}

/// A monitor or data manager closes a query.
pub async fn close_query(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject, id)): Path<(String, SubjectId, QueryId)>,
    ApiJson(body): ApiJson<QueryText>,
) -> ApiResult<Json<Value>> {
    update_query(
        st,
        headers,
        p,
        s,
        subject,
        id,
        QueryAction::Close,
        body.text,
    )
    .await
}

/// A monitor or data manager re-opens a query.
pub async fn reopen_query(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject, id)): Path<(String, SubjectId, QueryId)>,
    ApiJson(body): ApiJson<QueryText>,
) -> ApiResult<Json<Value>> {
    update_query(
        st,
        headers,
        p,
        s,
        subject,
        id,
        QueryAction::Reopen,
        body.text,
    )
    .await
}

/// A subject's source data verifications, each with whether the value changed since.
pub async fn verifications(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
) -> ApiResult<Json<Value>> {
    let subject = api_subject(&st, &p, &s, subject).await?;
    let values: HashMap<String, String> = st
        .store
        .item_values(s.id, subject.id)
        .await?
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let list: Vec<Value> = st
        .store
        .verifications(s.id, Some(subject.id))
        .await?
        .iter()
        .map(|v| verification_json(v, values.get(&v.item_key)))
        .collect();
    Ok(Json(
        json!({ "subject": subject.id, "verifications": list }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyItems {
    items: Vec<String>,
    /// `false` withdraws a verification.
    #[serde(default = "yes")]
    verified: bool,
}

fn yes() -> bool {
    true
}

/// A monitor marks items as verified against source documents (or withdraws that).
pub async fn verify(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    ApiJson(body): ApiJson<VerifyItems>,
) -> ApiResult<Json<Value>> {
    let subject = api_subject(&st, &p, &s, subject).await?;
    if body.items.is_empty() {
        return Err(unprocessable(
            "invalid_value",
            "items",
            "items: give at least one item",
        ));
    }
    if let Some((i, bad)) = body
        .items
        .iter()
        .enumerate()
        .find(|(_, k)| k.parse::<ItemPath>().is_err())
    {
        return Err(unprocessable(
            "invalid_value",
            &format!("items[{i}]"),
            format!("items[{i}]: {bad:?} is not EVENT[n]/FORM[n]/GROUP[n]/ITEM"),
        ));
    }
    let count = body.items.len();
    let mut req = WriteRequest::new(
        actor(&p),
        body.items
            .into_iter()
            .map(|item_key| Mutation::VerifyItem {
                study: s.id,
                subject: subject.id,
                item_key,
                verified: body.verified,
            })
            .collect(),
    );
    req.request_id = request_id(&headers);
    let receipt = st.store.write(req).await?;
    Ok(Json(
        json!({ "items": count, "audit_entries": receipt.entries.len() }),
    ))
}

/// Freezes and locks in force in the study.
pub async fn locks(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
) -> ApiResult<Json<Value>> {
    let scope = p.site_scope(s.id);
    let visible: Option<Vec<SubjectId>> = match &scope {
        None => None,
        Some(sites) => Some(
            st.store
                .subjects(s.id)
                .await?
                .into_iter()
                .filter(|x| sites.contains(&x.site))
                .map(|x| x.id)
                .collect(),
        ),
    };
    let list: Vec<Value> = st
        .store
        .locks(s.id)
        .await?
        .iter()
        .filter(|l| match (&visible, l.subject) {
            (None, _) | (_, None) => true,
            (Some(v), Some(x)) => v.contains(&x),
        })
        .map(lock_json)
        .collect();
    Ok(Json(json!({ "locks": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLock {
    /// Omitted: the whole study.
    #[serde(default)]
    subject: Option<SubjectId>,
    /// A form instance `EVENT[n]/FORM[n]`; omitted: the whole casebook (or study).
    #[serde(default)]
    form: Option<String>,
    /// `frozen`, `locked` or `open`.
    state: String,
    /// Required to reopen.
    #[serde(default)]
    reason: Option<String>,
}

/// A data manager freezes, locks or reopens a form, a casebook or the whole study.
pub async fn set_lock(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    ApiJson(body): ApiJson<SetLock>,
) -> ApiResult<Json<Value>> {
    let state = match body.state.as_str() {
        "open" => None,
        other => Some(LockState::parse(other).ok_or_else(|| {
            unprocessable(
                "invalid_value",
                "state",
                "state: one of frozen, locked, open",
            )
        })?),
    };
    let scope = body.form.unwrap_or_default();
    if !scope.is_empty() && scope.parse::<FormPath>().is_err() {
        return Err(unprocessable(
            "invalid_value",
            "form",
            "form: expected EVENT[n]/FORM[n]",
        ));
    }
    match body.subject {
        Some(subject) => {
            api_subject(&st, &p, &s, subject).await?;
        }
        // Someone limited to some sites cannot close the other sites' data.
        None if p.site_scope(s.id).is_some() => return Err(Problem::forbidden()),
        None if !scope.is_empty() => {
            return Err(unprocessable(
                "invalid_value",
                "form",
                "form: a form lock needs a subject",
            ));
        }
        None => {}
    }
    let mut req = WriteRequest::new(
        actor(&p),
        vec![Mutation::SetLock {
            study: s.id,
            subject: body.subject,
            scope: scope.clone(),
            state,
        }],
    );
    req.reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    req.request_id = request_id(&headers);
    st.store.write(req).await?;
    let now_in_force = st
        .store
        .locks(s.id)
        .await?
        .into_iter()
        .find(|l| l.subject == body.subject && l.scope == scope);
    Ok(Json(
        json!({ "lock": now_in_force.as_ref().map(lock_json) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectStatusBody {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Changes a subject's status (reason required).
pub async fn set_subject_status(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    ApiJson(body): ApiJson<SubjectStatusBody>,
) -> ApiResult<Json<Value>> {
    crate::subjects::set_status(
        &st,
        &p,
        &s,
        subject,
        &body.status,
        body.reason.as_deref(),
        request_id(&headers),
    )
    .await?;
    Ok(Json(json!({ "subject": subject, "status": body.status })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveVersionBody {
    oid: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Moves a subject to another metadata version (reason required; data are kept).
pub async fn move_subject_version(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, subject)): Path<(String, SubjectId)>,
    ApiJson(body): ApiJson<MoveVersionBody>,
) -> ApiResult<Json<Value>> {
    crate::subjects::move_version(
        &st,
        &p,
        &s,
        subject,
        &body.oid,
        body.reason.as_deref(),
        request_id(&headers),
    )
    .await?;
    Ok(Json(
        json!({ "subject": subject, "metadata_version": body.oid }),
    ))
}

pub async fn export_form_csv(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Path((_, form)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (name, table) =
        crate::subjects::export_table(&st, &p, &s, crate::subjects::Export::Form(&form)).await?;
    Ok(crate::subjects::csv_response(&name, &table))
}

pub async fn export_wide_csv(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
) -> ApiResult<Response> {
    let (name, table) =
        crate::subjects::export_table(&st, &p, &s, crate::subjects::Export::Wide).await?;
    Ok(crate::subjects::csv_response(&name, &table))
}
