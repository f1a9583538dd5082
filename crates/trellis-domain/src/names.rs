use std::fmt;

/// A value that failed validation, naming the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

fn check_len(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let n = s.chars().count();
    if n < min {
        return Err(ValidationError::new(
            field,
            if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must be at least {min} characters")
            },
        ));
    }
    if n > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters (got {n})"),
        ));
    }
    Ok(())
}

fn no_controls(field: &'static str, s: &str) -> Result<(), ValidationError> {
    if s.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $field:literal, |$s:ident| $check:block) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                let $s = raw.trim();
                $check
                Ok(Self($s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub const FIELD: &'static str = $field;
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// A sign-in name: 3–64 characters of lowercase letters, digits, `.`, `_`, `-`.
    Username, "username", |s| {
        check_len("username", s, 3, 64)?;
        if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
            return Err(ValidationError::new("username", "may contain only lowercase letters, digits, '.', '_' and '-'"));
        }
    }
);

string_newtype!(
    /// A person's printed name, as shown on e-signatures.
    DisplayName, "display_name", |s| {
        check_len("display_name", s, 1, 200)?;
        no_controls("display_name", s)?;
    }
);

string_newtype!(
    /// An e-mail address (checked for shape only; ownership is proven elsewhere).
    Email, "email", |s| {
        check_len("email", s, 3, 254)?;
        let Some((local, domain)) = s.split_once('@') else {
            return Err(ValidationError::new("email", "must contain '@'"));
        };
        if local.is_empty() || domain.is_empty() || domain.contains('@') || s.chars().any(char::is_whitespace) {
            return Err(ValidationError::new("email", "is not an e-mail address"));
        }
    }
);

string_newtype!(
    /// A study's protocol code, e.g. `TRL-001`: 1–40 of A–Z, a–z, 0–9, `-`, `_`, `.`.
    StudyCode, "code", |s| {
        check_len("code", s, 1, 40)?;
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(ValidationError::new("code", "may contain only letters, digits, '-', '_' and '.'"));
        }
    }
);

string_newtype!(
    /// A site number within a study, e.g. `DE-01`.
    SiteCode, "site_code", |s| {
        check_len("site_code", s, 1, 20)?;
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(ValidationError::new("site_code", "may contain only letters, digits, '-', '_' and '.'"));
        }
    }
);

string_newtype!(
    /// A subject's screening number, unique within its study.
    ScreeningNumber, "screening_number", |s| {
        check_len("screening_number", s, 1, 40)?;
        no_controls("screening_number", s)?;
    }
);

string_newtype!(
    /// ISO 3166-1 alpha-2 country code, upper case.
    CountryCode, "country", |s| {
        if s.len() != 2 || !s.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(ValidationError::new("country", "must be an ISO 3166-1 alpha-2 code such as DE or US"));
        }
    }
);

/// The installation's password rules (21 CFR 11.300: controls for identification codes/passwords).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
    /// How many of lower case, upper case, digit and other must appear.
    pub min_classes: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            min_classes: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("password must be at least {0} characters")]
    TooShort(usize),
    #[error("password must be at most 256 characters")]
    TooLong,
    #[error("password must mix at least {0} of: lower case, upper case, digits, other characters")]
    TooSimple(usize),
    #[error("password must not contain the user name")]
    ContainsUsername,
}

impl PasswordPolicy {
    pub fn check(&self, password: &str, username: &str) -> Result<(), PasswordProblem> {
        let n = password.chars().count();
        if n < self.min_length {
            return Err(PasswordProblem::TooShort(self.min_length));
        }
        if n > 256 {
            return Err(PasswordProblem::TooLong);
        }
        let classes = [
            password.chars().any(|c| c.is_lowercase()),
            password.chars().any(|c| c.is_uppercase()),
            password.chars().any(|c| c.is_ascii_digit()),
            password.chars().any(|c| !c.is_alphanumeric()),
        ]
        .into_iter()
        .filter(|&b| b)
        .count();
        if classes < self.min_classes {
            return Err(PasswordProblem::TooSimple(self.min_classes));
        }
        if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
            return Err(PasswordProblem::ContainsUsername);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("jane.doe").is_ok());
        assert_eq!(
            Username::parse("  ab ").expect_err("short").field,
            "username"
        );
        assert!(Username::parse("Jane").is_err());
    }

    #[test]
    fn password_policy() {
        let p = PasswordPolicy::default();
        assert_eq!(p.check("short", "x"), Err(PasswordProblem::TooShort(12)));
        assert_eq!(
            p.check("alllowercaseletters", "x"),
            Err(PasswordProblem::TooSimple(3))
        );
        assert_eq!(
            p.check("Jane.doe-2026!", "jane.doe"),
            Err(PasswordProblem::ContainsUsername)
        );
        assert_eq!(p.check("Correct-Horse-42", "jane"), Ok(()));
    }

    #[test]
    fn country_and_email() {
        assert!(CountryCode::parse("DE").is_ok());
        assert!(CountryCode::parse("de").is_err());
        assert!(Email::parse("a@b.org").is_ok());
        assert!(Email::parse("a b@c").is_err());
    }

    proptest! {
        #[test]
        fn parsed_names_round_trip(s in "[a-z0-9._-]{3,64}") {
            let u = Username::parse(&s).expect("valid by construction");
            prop_assert_eq!(u.as_str(), s.as_str());
        }

        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = Username::parse(&s);
            let _ = StudyCode::parse(&s);
            let _ = Email::parse(&s);
            let _ = DisplayName::parse(&s);
        }
    }
}
