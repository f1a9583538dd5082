use std::fmt;
use std::path::PathBuf;

use crate::error::StoreError;

/// Where the data lives. Parsed strictly: an unknown scheme or an empty path is
/// an error, so a typo never produces a fresh, empty database.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let raw = raw.trim();
        if let Some(rest) = raw.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(StoreError::BadUrl(
                    "sqlite URL has no file path (expected sqlite://path/to/trellis.db)".into(),
                ));
            }
            if path == ":memory:" {
                return Err(StoreError::BadUrl(
                    "in-memory SQLite would lose regulated data on exit; give a file path".into(),
                ));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            url::Url::parse(raw).map_err(|e| StoreError::BadUrl(format!("PostgreSQL URL: {e}")))?;
            return Ok(DatabaseUrl::Postgres(raw.to_owned()));
        }
        let scheme = raw.split_once(':').map_or(raw, |(s, _)| s);
        Err(StoreError::BadUrl(format!(
            "unsupported scheme `{scheme}` in database URL; expected sqlite://PATH or postgres://USER@HOST/DB"
        )))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }

    /// The URL with any password replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => match url::Url::parse(u) {
                Ok(mut parsed) if parsed.password().is_some() => {
                    let _ = parsed.set_password(Some("***"));
                    parsed.to_string()
                }
                _ => u.clone(),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://./data/t.db").ok(),
            Some(DatabaseUrl::Sqlite("./data/t.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///abs/t.db?mode=rwc").ok(),
            Some(DatabaseUrl::Sqlite("/abs/t.db".into()))
        );
        assert!(DatabaseUrl::parse("postgres://u:pw@localhost/db").is_ok());
        for bad in [
            "postgress://x/y",
            "sqlite://",
            "sqlite::memory:",
            "./trellis.db",
            "mysql://x",
        ] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_urls_parse_or_refuse_without_panicking(raw in "\\PC*", tail in "[a-z0-9:/@.%?=&_-]{0,60}") {
            for candidate in [raw.clone(), format!("postgres://{tail}"), format!("sqlite:{tail}")] {
                if let Ok(u) = DatabaseUrl::parse(&candidate) {
                    let _ = u.redacted();
                }
            }
        }
    }

    #[test]
    fn redacts_passwords() {
        let u = DatabaseUrl::parse("postgres://app:s3cret@db.example:5432/trellis").expect("url");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(u.redacted().contains("***"));
    }
}
