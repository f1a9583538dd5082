//! Errors as RFC 9457 `application/problem+json` with stable codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use trellis_store::StoreError;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// RFC 9457 extension members, e.g. the edit-check findings that refused a save.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("https://trellis.invalid/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail: detail.into(),
            field: None,
            extensions: None,
        }
    }
    pub fn with_extension(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extensions
            .get_or_insert_default()
            .insert(key.to_owned(), value);
        self
    }
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "your roles do not allow this",
        )
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in, or send an API token as `Authorization: Bearer <token>`",
        )
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        let code = e.code();
        match e {
            StoreError::Invalid { field, message } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!("{field}: {message}"),
            )
            .with_field(field),
            StoreError::NotFound { .. } => Problem::new(StatusCode::NOT_FOUND, code, e.to_string()),
            StoreError::Conflict(_) | StoreError::Locked(_) => {
                Problem::new(StatusCode::CONFLICT, code, e.to_string())
            }
            StoreError::ReasonRequired { ref field, .. } => {
                let f = field.clone();
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
                    .with_field(format!("reason ({f})"))
            }
            StoreError::Unavailable => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string())
            }
            other => {
                tracing::error!(error = %other, "store error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    other.code(),
                    "internal error; see the server log",
                )
            }
        }
    }
}
