//! Subject and study-level data management shared by the browser and the JSON API:
//! registering a subject at a site, status changes, moving a subject to another metadata
//! version, and tabular (CSV) exports of captured data. Each returns a [`Problem`] on
//! refusal, which the API sends as is and the browser shows on a page.

use axum::http::StatusCode;
use trellis_domain::{ScreeningNumber, SiteId, SubjectId, SubjectStatus};
use trellis_edc::export::{ExportSubject, Table, form_table, wide_table};
use trellis_store::{Mutation, Study, Subject, WriteRequest};

use crate::AppState;
use crate::api::actor;
use crate::authz::Principal;
use crate::problem::Problem;

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", detail).with_field(field)
}

/// The study's newest metadata version, which new subjects follow.
async fn latest_version(st: &AppState, s: &Study) -> Result<Option<String>, Problem> {
    Ok(st
        .store
        .metadata_versions(s.id)
        .await?
        .into_iter()
        .max_by_key(|v| v.seq)
        .map(|v| v.oid))
}

/// Registers a subject at one of the principal's sites, on the newest metadata version.
pub async fn register(
    st: &AppState,
    p: &Principal,
    s: &Study,
    site: SiteId,
    screening_number: &str,
    request_id: Option<String>,
) -> Result<SubjectId, Problem> {
    if !st.store.sites(s.id).await?.iter().any(|x| x.id == site) {
        return Err(invalid("site", "this study has no such site"));
    }
    if !p.sees_site(s.id, site) {
        return Err(Problem::forbidden());
    }
    let screening_number = ScreeningNumber::parse(screening_number.trim())
        .map_err(|e| invalid("screening_number", e.to_string()))?;
    if st
        .store
        .subjects(s.id)
        .await?
        .iter()
        .any(|x| x.screening_number == screening_number.as_str())
    {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("screening number {screening_number} is already taken in this study"),
        )
        .with_field("screening_number"));
    }
    let id = SubjectId::new();
    let mut mutations = vec![Mutation::CreateSubject {
        study: s.id,
        id,
        site,
        screening_number,
    }];
    if let Some(oid) = latest_version(st, s).await? {
        mutations.push(Mutation::AssignMetadataVersion {
            study: s.id,
            subject: id,
            oid,
        });
    }
    let mut req = WriteRequest::new(actor(p), mutations);
    req.request_id = request_id;
    st.store.write(req).await?;
    Ok(id)
}

/// The subject if the principal may see its site; not found otherwise.
pub async fn visible_subject(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
) -> Result<Subject, Problem> {
    crate::edc::subject_in_scope(st, p, s, subject)
        .await?
        .ok_or_else(|| Problem::not_found("subject"))
}

fn required_reason(reason: Option<&str>) -> Result<String, Problem> {
    match reason.map(str::trim) {
        Some(r) if !r.is_empty() => Ok(r.to_owned()),
        _ => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason_required",
            "a reason for the change is required",
        )
        .with_field("reason")),
    }
}

/// Changes a subject's status (screen failure, enrolment, withdrawal, ...) with a reason.
pub async fn set_status(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
    status: &str,
    reason: Option<&str>,
    request_id: Option<String>,
) -> Result<(), Problem> {
    let subject = visible_subject(st, p, s, subject).await?;
    let status: SubjectStatus = status
        .parse()
        .map_err(|e: trellis_domain::UnknownVariant| invalid("status", e.to_string()))?;
    if status == subject.status {
        return Ok(());
    }
    let mut req = WriteRequest::new(
        actor(p),
        vec![Mutation::SetSubjectStatus {
            study: s.id,
            id: subject.id,
            status,
        }],
    )
    .with_reason(required_reason(reason)?);
    req.request_id = request_id;
    st.store.write(req).await?;
    Ok(())
}

/// Moves a subject's forms to another metadata version (a protocol amendment). Captured
/// values stay where they are; the move is audited with its reason.
pub async fn move_version(
    st: &AppState,
    p: &Principal,
    s: &Study,
    subject: SubjectId,
    oid: &str,
    reason: Option<&str>,
    request_id: Option<String>,
) -> Result<(), Problem> {
    let subject = visible_subject(st, p, s, subject).await?;
    if !st
        .store
        .metadata_versions(s.id)
        .await?
        .iter()
        .any(|v| v.oid == oid)
    {
        return Err(invalid(
            "metadata_version",
            format!("this study has no metadata version `{oid}`"),
        ));
    }
    let reason = required_reason(reason)?;
    let mut req = WriteRequest::new(
        actor(p),
        vec![Mutation::AssignMetadataVersion {
            study: s.id,
            subject: subject.id,
            oid: oid.to_owned(),
        }],
    )
    .with_reason(reason);
    req.request_id = request_id;
    st.store.write(req).await?;
    Ok(())
}

/// What to export.
pub enum Export<'a> {
    /// One form (by OID): a row per form instance, or per log row.
    Form(&'a str),
    /// A row per subject, a column per item address.
    Wide,
}

/// The export as a table with its download file name. Only subjects at the principal's
/// sites are included; columns follow the study's newest metadata version.
pub async fn export_table(
    st: &AppState,
    p: &Principal,
    s: &Study,
    what: Export<'_>,
) -> Result<(String, Table), Problem> {
    let Some(oid) = latest_version(st, s).await? else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no_design",
            "this study has no study definition yet (import one with `trellis study import-odm`)",
        ));
    };
    let design = st
        .designs
        .get(&st.store, s.id, &oid)
        .await
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?
        .ok_or_else(|| Problem::not_found("metadata version"))?;
    let sites = st.store.sites(s.id).await?;
    let mut subjects: Vec<Subject> = st
        .store
        .subjects(s.id)
        .await?
        .into_iter()
        .filter(|x| p.sees_site(s.id, x.site))
        .collect();
    subjects.sort_by(|a, b| a.screening_number.cmp(&b.screening_number));
    let mut by_subject: std::collections::HashMap<SubjectId, Vec<(String, Option<String>)>> =
        std::collections::HashMap::new();
    for (subject, key, value) in st.store.study_item_values(s.id).await? {
        by_subject.entry(subject).or_default().push((key, value));
    }
    let values: Vec<Vec<(String, Option<String>)>> = subjects
        .iter()
        .map(|x| by_subject.remove(&x.id).unwrap_or_default())
        .collect();
    let site_code = |id: SiteId| {
        sites
            .iter()
            .find(|x| x.id == id)
            .map_or("", |x| x.code.as_str())
    };
    let rows: Vec<ExportSubject<'_>> = subjects
        .iter()
        .zip(&values)
        .map(|(x, v)| ExportSubject {
            site: site_code(x.site),
            screening_number: &x.screening_number,
            status: x.status.as_str(),
            values: v,
        })
        .collect();
    match what {
        Export::Form(form) => {
            let table = form_table(&s.code, &design, form, &rows).map_err(|e| {
                Problem::new(StatusCode::NOT_FOUND, e.code(), e.to_string()).with_field("form")
            })?;
            Ok((format!("{}_{form}.csv", s.code), table))
        }
        Export::Wide => Ok((
            format!("{}_subjects.csv", s.code),
            wide_table(&s.code, &design, &rows),
        )),
    }
}

/// A CSV download of a table.
pub fn csv_response(file_name: &str, table: &Table) -> axum::response::Response {
    use axum::response::IntoResponse;
    match table.to_csv_string() {
        Ok(body) => (
            StatusCode::OK,
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "text/csv; charset=utf-8".to_owned(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"{}\"",
                        file_name.replace(['"', '\\', '/'], "_")
                    ),
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string()).into_response()
        }
    }
}
