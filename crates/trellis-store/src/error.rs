use trellis_audit::ChainError;

/// Stable error codes shared with the HTTP layer (`problem+json` `code`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Locked(String),
    #[error("a reason for change is required to change {entity} {field} after first entry")]
    ReasonRequired { entity: &'static str, field: String },
    #[error("database URL: {0}")]
    BadUrl(String),
    #[error("the store is shutting down")]
    Unavailable,
    #[error("audit trail integrity: {0}")]
    Integrity(#[from] ChainError),
    #[error("database: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A short stable identifier for clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Invalid { .. } => "invalid_value",
            StoreError::NotFound { .. } => "not_found",
            StoreError::Conflict(_) => "conflict",
            StoreError::Locked(_) => "locked",
            StoreError::ReasonRequired { .. } => "reason_required",
            StoreError::BadUrl(_) => "bad_database_url",
            StoreError::Unavailable => "unavailable",
            StoreError::Integrity(_) => "audit_integrity",
            StoreError::Database(_) => "database_error",
            StoreError::Migrate(_) => "migration_error",
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.kind() == sqlx::error::ErrorKind::UniqueViolation
        {
            return StoreError::Conflict(format!("already exists ({})", db.message()));
        }
        StoreError::Database(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
