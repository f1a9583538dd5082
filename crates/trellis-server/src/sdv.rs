//! Targeted source data verification: the study's SDV plan (which items monitors must
//! verify) and the progress against it per site and subject, in the browser and the JSON
//! API. The plan's rules are in [`trellis_edc::sdv`]; this module applies them to what is
//! captured and verified.
//!
//! Which subjects the sample drew is shown only to those who plan or do monitoring (and
//! auditors): a site that knew it could take less care with the others.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};
use trellis_domain::SubjectId;
use trellis_edc::{ItemPath, SdvPlan, SdvPlanError, SubjectSdv};
use trellis_store::{Mutation, SdvPlanRow, StoreError, Study, Subject, WriteRequest};

use crate::AppState;
use crate::api::{ApiJson, ApiResult, actor, request_id};
use crate::authz::{Permission, Principal};
use crate::problem::Problem;
use crate::ui::{check_csrf, error_page, html_response, page};

/// The study's plan: the stored one, or full SDV when none was set.
pub async fn study_plan(
    st: &AppState,
    s: &Study,
) -> Result<(SdvPlan, Option<SdvPlanRow>), Problem> {
    let row = st.store.sdv_plan(s.id).await?;
    let plan = match &row {
        Some(r) => SdvPlan::parse(&r.plan).map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the stored SDV plan cannot be read: {e}"),
            )
        })?,
        None => SdvPlan::default(),
    };
    Ok((plan, row))
}

/// Each subject's 1-based rank at its site in registration order (ties by id), over all
/// of the study's subjects whatever the viewer may see.
fn site_ranks(subjects: &[Subject]) -> HashMap<SubjectId, usize> {
    let mut sorted: Vec<&Subject> = subjects.iter().collect();
    sorted.sort_by_key(|x| (x.site, x.created_at, x.id));
    let mut ranks = HashMap::with_capacity(sorted.len());
    let mut previous_site = None;
    let mut rank = 0;
    for x in sorted {
        if previous_site != Some(x.site) {
            previous_site = Some(x.site);
            rank = 0;
        }
        rank += 1;
        ranks.insert(x.id, rank);
    }
    ranks
}

/// How much of one subject's data the plan asks to verify.
pub async fn subject_level(
    st: &AppState,
    s: &Study,
    plan: &SdvPlan,
    subject: SubjectId,
) -> Result<SubjectSdv, Problem> {
    let subjects = st.store.subjects(s.id).await?;
    let rank = site_ranks(&subjects).get(&subject).copied().unwrap_or(1);
    Ok(plan.subject(rank, subject.as_uuid().as_u128()))
}

/// One subject's verification progress against the plan.
pub struct SubjectProgress {
    pub subject: Subject,
    pub site_code: String,
    pub level: SubjectSdv,
    /// Items with a value that the plan requires to be verified.
    pub required: usize,
    /// Of those, verified with the value they have now.
    pub verified: usize,
    /// Of those, verified once but changed since.
    pub stale: usize,
}

impl SubjectProgress {
    pub fn outstanding(&self) -> usize {
        self.required - self.verified
    }
}

/// Progress of every subject the principal may see, in site and screening-number order.
pub async fn progress(
    st: &AppState,
    p: &Principal,
    s: &Study,
    plan: &SdvPlan,
) -> Result<Vec<SubjectProgress>, StoreError> {
    let subjects = st.store.subjects(s.id).await?;
    let sites = st.store.sites(s.id).await?;
    let ranks = site_ranks(&subjects);
    let verified: HashMap<(SubjectId, String), Option<String>> = st
        .store
        .verifications(s.id, None)
        .await?
        .into_iter()
        .map(|v| ((v.subject, v.item_key), v.verified_value))
        .collect();
    let scope = p.site_scope(s.id);
    let mut values: HashMap<SubjectId, Vec<(String, Option<String>)>> = HashMap::new();
    for (subject, key, value) in st.store.study_item_values(s.id).await? {
        values.entry(subject).or_default().push((key, value));
    }
    let mut out = Vec::new();
    for x in subjects
        .into_iter()
        .filter(|x| scope.as_ref().is_none_or(|v| v.contains(&x.site)))
    {
        let rank = ranks.get(&x.id).copied().unwrap_or(1);
        let level = plan.subject(rank, x.id.as_uuid().as_u128());
        let (mut required, mut ok, mut stale) = (0, 0, 0);
        for (key, value) in values.remove(&x.id).unwrap_or_default() {
            let (Some(value), Ok(path)) = (value, key.parse::<ItemPath>()) else {
                continue;
            };
            if !plan.requires(level, &path) {
                continue;
            }
            required += 1;
            match verified.get(&(x.id, key)) {
                Some(v) if v.as_ref() == Some(&value) => ok += 1,
                Some(_) => stale += 1,
                None => {}
            }
        }
        let site_code = sites
            .iter()
            .find(|y| y.id == x.site)
            .map_or_else(String::new, |y| y.code.clone());
        out.push(SubjectProgress {
            subject: x,
            site_code,
            level,
            required,
            verified: ok,
            stale,
        });
    }
    out.sort_by(|a, b| {
        (&a.site_code, &a.subject.screening_number)
            .cmp(&(&b.site_code, &b.subject.screening_number))
    });
    Ok(out)
}

/// A plan from the settings a user gave, with its OIDs checked against the study's newest
/// definition so that a typo does not silently exempt data from verification.
async fn plan_from_settings(
    st: &AppState,
    s: &Study,
    settings: &PlanSettings,
) -> Result<SdvPlan, Problem> {
    let plan = SdvPlan::new(
        &settings.critical_items,
        &settings.critical_forms,
        &settings.first_subjects_per_site,
        &settings.sample_percent,
        &settings.seed,
    )
    .map_err(|e: SdvPlanError| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            e.to_string(),
        )
        .with_field(e.field().replace('-', "_"))
    })?;
    let latest = st
        .store
        .metadata_versions(s.id)
        .await?
        .into_iter()
        .max_by_key(|v| v.seq);
    let Some(latest) = latest else {
        return Ok(plan);
    };
    let design = st
        .designs
        .get(&st.store, s.id, &latest.oid)
        .await
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?
        .ok_or_else(|| Problem::not_found("metadata version"))?;
    let forms: BTreeSet<&str> = design.forms.iter().map(|f| f.oid.as_str()).collect();
    let items: BTreeSet<&str> = design
        .forms
        .iter()
        .flat_map(|f| &f.groups)
        .flat_map(|g| &g.items)
        .map(|i| i.oid.as_str())
        .collect();
    let unknown = |field: &str, what: &str, oid: &str| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            format!("{oid} is not {what} of the study definition {}", latest.oid),
        )
        .with_field(field)
    };
    if let Some(i) = plan
        .critical_items
        .iter()
        .find(|i| !items.contains(i.as_str()))
    {
        return Err(unknown("critical_items", "an item", i.as_str()));
    }
    if let Some(f) = plan
        .critical_forms
        .iter()
        .find(|f| !forms.contains(f.as_str()))
    {
        return Err(unknown("critical_forms", "a form", f.as_str()));
    }
    Ok(plan)
}

async fn write_plan(
    st: &AppState,
    p: &Principal,
    s: &Study,
    plan: &SdvPlan,
    reason: Option<String>,
    request: Option<String>,
) -> Result<(), Problem> {
    let mut req = WriteRequest::new(
        actor(p),
        vec![Mutation::SetSdvPlan {
            study: s.id,
            plan: plan.to_string(),
        }],
    );
    req.reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    req.request_id = request;
    st.store.write(req).await?;
    Ok(())
}

fn level_str(level: SubjectSdv) -> &'static str {
    match level {
        SubjectSdv::FullEarly { .. } => "full_first_subjects",
        SubjectSdv::FullSampled => "full_sampled",
        SubjectSdv::Targeted => "targeted",
    }
}

fn plan_json(plan: &SdvPlan, row: Option<&SdvPlanRow>) -> Value {
    fn list(s: &BTreeSet<trellis_edc::Oid>) -> Vec<&str> {
        s.iter().map(trellis_edc::Oid::as_str).collect()
    }
    json!({
        "set": row.is_some(),
        "critical_items": list(&plan.critical_items),
        "critical_forms": list(&plan.critical_forms),
        "first_subjects_per_site": (plan.first_subjects_per_site != u32::MAX).then_some(plan.first_subjects_per_site),
        "sample_percent": plan.sample_percent,
        "seed": plan.seed.to_string(),
        "changed_at": row.map(|r| r.changed_at.to_rfc3339()),
        "changed_by": row.map(|r| r.changed_by),
    })
}

// ------------------------------------------------------------------ JSON API

pub async fn api_plan(
    State(st): State<AppState>,
    Extension(s): Extension<Study>,
) -> ApiResult<Json<Value>> {
    let (plan, row) = study_plan(&st, &s).await?;
    Ok(Json(plan_json(&plan, row.as_ref())))
}

/// The plan as a client sends it. Lists are arrays of OIDs; the seed is a string so that
/// all 64 bits survive JSON readers that use doubles.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiPlan {
    #[serde(default)]
    critical_items: Vec<String>,
    #[serde(default)]
    critical_forms: Vec<String>,
    /// `null` or omitted: every subject in full.
    #[serde(default)]
    first_subjects_per_site: Option<u32>,
    sample_percent: u32,
    #[serde(default)]
    seed: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn api_set_plan(
    State(st): State<AppState>,
    headers: HeaderMap,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    ApiJson(body): ApiJson<ApiPlan>,
) -> ApiResult<Json<Value>> {
    let settings = PlanSettings {
        csrf: String::new(),
        critical_items: body.critical_items.join(" "),
        critical_forms: body.critical_forms.join(" "),
        first_subjects_per_site: body
            .first_subjects_per_site
            .map_or_else(|| "all".to_owned(), |n| n.to_string()),
        sample_percent: body.sample_percent.to_string(),
        seed: body.seed.unwrap_or_else(|| "0".into()),
        reason: String::new(),
    };
    let plan = plan_from_settings(&st, &s, &settings).await?;
    write_plan(&st, &p, &s, &plan, body.reason, request_id(&headers)).await?;
    let (plan, row) = study_plan(&st, &s).await?;
    Ok(Json(plan_json(&plan, row.as_ref())))
}

pub async fn api_progress(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
) -> ApiResult<Json<Value>> {
    let (plan, row) = study_plan(&st, &s).await?;
    let rows = progress(&st, &p, &s, &plan).await?;
    let subjects: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "subject": r.subject.id,
                "screening_number": r.subject.screening_number,
                "site": r.site_code,
                "level": level_str(r.level),
                "required": r.required,
                "verified": r.verified,
                "stale": r.stale,
                "outstanding": r.outstanding(),
            })
        })
        .collect();
    Ok(Json(json!({
        "plan": plan_json(&plan, row.as_ref()),
        "sites": site_totals(&rows).iter().map(|(code, t)| json!({
            "site": code, "subjects": t.subjects, "full": t.full, "required": t.required,
            "verified": t.verified, "stale": t.stale, "outstanding": t.required - t.verified,
        })).collect::<Vec<_>>(),
        "subjects": subjects,
    })))
}

#[derive(Default)]
struct SiteTotals {
    subjects: usize,
    full: usize,
    required: usize,
    verified: usize,
    stale: usize,
}

fn site_totals(rows: &[SubjectProgress]) -> Vec<(String, SiteTotals)> {
    let mut out: Vec<(String, SiteTotals)> = Vec::new();
    for r in rows {
        if out.last().is_none_or(|(c, _)| *c != r.site_code) {
            out.push((r.site_code.clone(), SiteTotals::default()));
        }
        if let Some((_, t)) = out.last_mut() {
            t.subjects += 1;
            t.full += usize::from(r.level.is_full());
            t.required += r.required;
            t.verified += r.verified;
            t.stale += r.stale;
        }
    }
    out
}

// ------------------------------------------------------------------ browser

/// The plan form's fields (also the API's, once converted).
#[derive(Deserialize)]
pub struct PlanSettings {
    csrf: String,
    #[serde(default)]
    critical_items: String,
    #[serde(default)]
    critical_forms: String,
    first_subjects_per_site: String,
    sample_percent: String,
    seed: String,
    #[serde(default)]
    reason: String,
}

fn sdv_url(s: &Study) -> String {
    format!("/studies/{}/sdv", s.id)
}

/// The SDV page: the plan (editable by those who plan monitoring) and progress per site
/// and subject.
pub async fn page_view(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
) -> Response {
    render(&st, &p, &s, None, None).await
}

async fn render(
    st: &AppState,
    p: &Principal,
    s: &Study,
    error: Option<&Problem>,
    entered: Option<&PlanSettings>,
) -> Response {
    let t = |k: &str| st.i18n.t(&p.locale, k);
    let (plan, row) = match study_plan(st, s).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let rows = match progress(st, p, s, &plan).await {
        Ok(r) => r,
        Err(e) => return Problem::from(e).into_response(),
    };
    let totals = site_totals(&rows);
    let can_plan = p.can(s, Permission::PlanSdv);
    let list = |set: &BTreeSet<trellis_edc::Oid>| {
        set.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(" ")
    };
    let shown = |field: &str, current: String| -> String {
        entered.map_or(current, |e| match field {
            "critical_items" => e.critical_items.clone(),
            "critical_forms" => e.critical_forms.clone(),
            "first_subjects_per_site" => e.first_subjects_per_site.clone(),
            "sample_percent" => e.sample_percent.clone(),
            _ => e.seed.clone(),
        })
    };
    let first = if plan.first_subjects_per_site == u32::MAX {
        "all".to_owned()
    } else {
        plan.first_subjects_per_site.to_string()
    };
    let status = error.map_or(StatusCode::OK, |e| {
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST)
    });
    let level_text = |l: SubjectSdv| match l {
        SubjectSdv::FullEarly { rank } => format!("{} ({rank})", t("sdv-level-first")),
        SubjectSdv::FullSampled => t("sdv-level-sampled"),
        SubjectSdv::Targeted => t("sdv-level-targeted"),
    };
    let body = html! {
        p { a href=(format!("/studies/{}", s.id)) { "← " (s.code) } }
        h1 { (t("sdv-plan-title")) " · " (s.code) }
        section aria-labelledby="plan" {
            h2 #plan { (t("sdv-plan")) }
            @if row.is_none() { p.muted { (t("sdv-plan-none")) } }
            dl {
                dt { (t("sdv-critical-items")) } dd.mono { @if plan.critical_items.is_empty() { "—" } @else { (list(&plan.critical_items)) } }
                dt { (t("sdv-critical-forms")) } dd.mono { @if plan.critical_forms.is_empty() { "—" } @else { (list(&plan.critical_forms)) } }
                dt { (t("sdv-first-subjects")) } dd { (first) }
                dt { (t("sdv-sample-percent")) } dd { (plan.sample_percent) " %" }
                dt { (t("sdv-seed")) } dd.mono { (plan.seed) }
                @if let Some(r) = &row { dt { (t("sdv-plan-changed")) } dd { (crate::i18n::format_time(&p.locale, &p.time_zone, r.changed_at)) } }
            }
        }
        @if can_plan {
            section aria-labelledby="edit-plan" {
                h2 #edit-plan { (t("sdv-plan-edit")) }
                @if let Some(e) = error {
                    div.error role="alert" { (e.detail) @if let Some(f) = &e.field { " (" (f) ")" } }
                }
                form.stack method="post" action={ (sdv_url(s)) "/plan" } {
                    input type="hidden" name="csrf" value=(p.csrf_token);
                    label for="critical_items" { (t("sdv-critical-items")) }
                    input #critical_items name="critical_items" value=(shown("critical_items", list(&plan.critical_items))) aria-describedby="critical_items_help";
                    p.muted #critical_items_help { (t("sdv-critical-items-help")) }
                    label for="critical_forms" { (t("sdv-critical-forms")) }
                    input #critical_forms name="critical_forms" value=(shown("critical_forms", list(&plan.critical_forms)));
                    label for="first_subjects_per_site" { (t("sdv-first-subjects")) }
                    input #first_subjects_per_site name="first_subjects_per_site" value=(shown("first_subjects_per_site", first.clone())) aria-describedby="first_help";
                    p.muted #first_help { (t("sdv-first-subjects-help")) }
                    label for="sample_percent" { (t("sdv-sample-percent")) }
                    input #sample_percent name="sample_percent" type="number" min="0" max="100" value=(shown("sample_percent", plan.sample_percent.to_string()));
                    label for="seed" { (t("sdv-seed")) }
                    input #seed name="seed" inputmode="numeric" value=(shown("seed", plan.seed.to_string()));
                    @if row.is_some() {
                        label for="reason" { (t("sdv-plan-reason")) }
                        input #reason name="reason" required value=(entered.map_or("", |e| e.reason.as_str()));
                    }
                    div.actions { button.primary type="submit" { (t("sdv-plan-save")) } }
                }
            }
        }
        section aria-labelledby="progress" {
            h2 #progress { (t("sdv-progress")) }
            h3 { (t("sdv-by-site")) }
            table {
                thead { tr {
                    th scope="col" { (t("site-code")) } th scope="col" { (t("sdv-subjects")) } th scope="col" { (t("sdv-full-subjects")) }
                    th scope="col" { (t("sdv-required")) } th scope="col" { (t("sdv-verified")) } th scope="col" { (t("sdv-stale")) } th scope="col" { (t("sdv-outstanding")) }
                } }
                tbody { @for (code, x) in &totals { tr {
                    td.nowrap { (code) } td { (x.subjects) } td { (x.full) } td { (x.required) } td { (x.verified) } td { (x.stale) } td { (x.required - x.verified) }
                } } }
            }
            h3 { (t("sdv-by-subject")) }
            table {
                thead { tr {
                    th scope="col" { (t("site-code")) } th scope="col" { (t("subject-screening-number")) } th scope="col" { (t("sdv-level")) }
                    th scope="col" { (t("sdv-required")) } th scope="col" { (t("sdv-verified")) } th scope="col" { (t("sdv-stale")) } th scope="col" { (t("sdv-outstanding")) }
                } }
                tbody { @for r in &rows { tr {
                    td.nowrap { (r.site_code) }
                    td.nowrap { a href=(format!("/studies/{}/subjects/{}", s.id, r.subject.id)) { (r.subject.screening_number) } }
                    td { (level_text(r.level)) }
                    td { (r.required) } td { (r.verified) }
                    td { @if r.stale > 0 { span.bad { (r.stale) } } @else { "0" } }
                    td { @if r.outstanding() > 0 { strong { (r.outstanding()) } } @else { span.ok { "0" } } }
                } } }
            }
        }
    };
    html_response(status, page(st, Some(p), &t("sdv-plan-title"), body))
}

pub async fn plan_submit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(s): Extension<Study>,
    Form(f): Form<PlanSettings>,
) -> Response {
    if !check_csrf(&p, &f.csrf) {
        return error_page(&st, Some(&p), StatusCode::FORBIDDEN, "error-forbidden");
    }
    let result = match plan_from_settings(&st, &s, &f).await {
        Ok(plan) => write_plan(&st, &p, &s, &plan, Some(f.reason.clone()), None).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to(&sdv_url(&s)).into_response(),
        Err(e) => render(&st, &p, &s, Some(&e), Some(&f)).await,
    }
}
