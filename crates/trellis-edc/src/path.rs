//! Where a captured value lives: study event, form, item group (each with its repeat
//! key) and item, written as one canonical string that the store uses as the item key.
//!
//! `SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP`: every level carries its repeat key, also
//! when the level does not repeat (then it is 1), so one value has exactly one key.

use std::fmt;
use std::str::FromStr;

/// An ODM OID that Trellis can address: non-empty, no whitespace or control characters,
/// and none of the characters item keys and check references use as separators.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid(String);

impl Oid {
    pub fn new(s: &str) -> Result<Self, PathError> {
        if s.is_empty() {
            return Err(PathError::EmptyOid);
        }
        if let Some(c) = s.chars().find(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '/' | '[' | ']' | '{' | '}')
        }) {
            return Err(PathError::OidCharacter {
                oid: s.to_owned(),
                character: c,
            });
        }
        if s.len() > 200 {
            return Err(PathError::OidTooLong(s.chars().take(40).collect()));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("an OID is empty")]
    EmptyOid,
    #[error(
        "OID {oid:?} contains {character:?}, which Trellis uses to separate parts of an item address"
    )]
    OidCharacter { oid: String, character: char },
    #[error("OID starting {0:?} is longer than 200 bytes")]
    OidTooLong(String),
    #[error("item address {0:?} must have the form EVENT[n]/FORM[n]/GROUP[n]/ITEM")]
    Shape(String),
    #[error("repeat key {0:?} must be a whole number from 1 to 9999")]
    RepeatKey(String),
}

/// A repeat key: 1 for the first (or only) occurrence.
pub type Repeat = u16;

pub const MAX_REPEAT: Repeat = 9999;

/// The address of one form instance of a subject.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FormPath {
    pub event: Oid,
    pub event_repeat: Repeat,
    pub form: Oid,
    pub form_repeat: Repeat,
}

/// The address of one item value of a subject.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemPath {
    pub form: FormPath,
    pub group: Oid,
    pub group_repeat: Repeat,
    pub item: Oid,
}

impl fmt::Display for FormPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]/{}[{}]",
            self.event, self.event_repeat, self.form, self.form_repeat
        )
    }
}

impl fmt::Display for ItemPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}[{}]/{}",
            self.form, self.group, self.group_repeat, self.item
        )
    }
}

/// Parses `1`..`9999`; ODM repeat keys may be any string, but Trellis numbers them.
pub fn parse_repeat(s: &str) -> Result<Repeat, PathError> {
    match s.parse::<Repeat>() {
        Ok(n) if (1..=MAX_REPEAT).contains(&n) && !s.starts_with('0') && !s.starts_with('+') => {
            Ok(n)
        }
        _ => Err(PathError::RepeatKey(s.to_owned())),
    }
}

fn part(s: &str, whole: &str) -> Result<(Oid, Repeat), PathError> {
    let (oid, rest) = s
        .split_once('[')
        .ok_or_else(|| PathError::Shape(whole.to_owned()))?;
    let repeat = rest
        .strip_suffix(']')
        .ok_or_else(|| PathError::Shape(whole.to_owned()))?;
    Ok((Oid::new(oid)?, parse_repeat(repeat)?))
}

impl FromStr for FormPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, PathError> {
        let parts: Vec<&str> = s.split('/').collect();
        let [event, form] = parts[..] else {
            return Err(PathError::Shape(s.to_owned()));
        };
        let (event, event_repeat) = part(event, s)?;
        let (form, form_repeat) = part(form, s)?;
        Ok(Self {
            event,
            event_repeat,
            form,
            form_repeat,
        })
    }
}

impl FromStr for ItemPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, PathError> {
        let parts: Vec<&str> = s.split('/').collect();
        let [event, form, group, item] = parts[..] else {
            return Err(PathError::Shape(s.to_owned()));
        };
        let (event, event_repeat) = part(event, s)?;
        let (form, form_repeat) = part(form, s)?;
        let (group, group_repeat) = part(group, s)?;
        Ok(Self {
            form: FormPath {
                event,
                event_repeat,
                form,
                form_repeat,
            },
            group,
            group_repeat,
            item: Oid::new(item)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_form_round_trips() {
        let key = "SE.SCREEN[1]/F.VS[1]/IG.AE[12]/I.AETERM";
        let path: ItemPath = key.parse().expect("valid");
        assert_eq!(path.group_repeat, 12);
        assert_eq!(path.to_string(), key);
        assert_eq!(path.form.to_string(), "SE.SCREEN[1]/F.VS[1]");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "SE[1]/F[1]/IG[1]",
            "SE[1]/F[1]/IG[0]/I",
            "SE[1]/F[1]/IG[01]/I",
            "SE[1]/F[1]/IG/I",
            "SE[1]/F[1]/IG[1]/I/J",
            "S E[1]/F[1]/IG[1]/I",
            "SE[1]/F[1]/IG[10000]/I",
        ] {
            assert!(bad.parse::<ItemPath>().is_err(), "{bad:?}");
        }
        assert!(Oid::new("I{x}").is_err());
    }

    fn oid() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._-]{1,20}"
    }

    proptest! {
        #[test]
        fn any_valid_path_round_trips(e in oid(), f in oid(), g in oid(), i in oid(),
                                      r1 in 1u16..=9999, r2 in 1u16..=9999, r3 in 1u16..=9999) {
            let key = format!("{e}[{r1}]/{f}[{r2}]/{g}[{r3}]/{i}");
            let path: ItemPath = key.parse().expect("valid");
            prop_assert_eq!(path.to_string(), key);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,60}") {
            let _ = s.parse::<ItemPath>();
        }
    }
}
