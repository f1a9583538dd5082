use std::fmt;

use jiff::Timestamp;

use crate::names::ValidationError;

/// An instant in UTC with microsecond precision: how every time is stored.
///
/// Microseconds in an `i64` are exact on both SQLite and PostgreSQL and give
/// the audit trail's hash a representation that does not depend on the backend.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UtcMicros(i64);

impl UtcMicros {
    pub const fn from_micros(us: i64) -> Self {
        Self(us)
    }
    pub const fn as_micros(self) -> i64 {
        self.0
    }
    pub fn from_timestamp(ts: Timestamp) -> Self {
        // i64 microseconds cover ±292,000 years: jiff's range fits.
        Self(ts.as_microsecond())
    }
    pub fn to_timestamp(self) -> Timestamp {
        // Values come from `from_timestamp`, so they are in jiff's range; clamp defensively.
        Timestamp::from_microsecond(self.0).unwrap_or(if self.0 < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
    }
    /// RFC 3339 in UTC with microseconds, e.g. `2026-11-25T01:02:03.000004Z`.
    pub fn to_rfc3339(self) -> String {
        format!("{:.6}", self.to_timestamp())
    }
    pub fn plus_seconds(self, s: i64) -> Self {
        Self(self.0.saturating_add(s.saturating_mul(1_000_000)))
    }
}

impl fmt::Debug for UtcMicros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_rfc3339())
    }
}

impl fmt::Display for UtcMicros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A validated IANA time-zone name such as `Europe/Berlin`.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct TzName(String);

impl TzName {
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        let name = name.trim();
        match jiff::tz::db().get(name) {
            Ok(_) => Ok(Self(name.to_owned())),
            Err(_) => Err(ValidationError::new(
                "time_zone",
                format!("`{name}` is not an IANA time zone name (for example Europe/Berlin)"),
            )),
        }
    }
    pub fn utc() -> Self {
        Self("UTC".to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn to_tz(&self) -> jiff::tz::TimeZone {
        jiff::tz::db()
            .get(&self.0)
            .unwrap_or(jiff::tz::TimeZone::UTC)
    }
    /// Shows `at` in this zone with the zone named, e.g. `2026-11-25 09:30 CET (Europe/Berlin)`.
    pub fn display(&self, at: UtcMicros) -> String {
        let zoned = at.to_timestamp().to_zoned_datetime(self.to_tz());
        format!("{} ({})", zoned.strftime("%Y-%m-%d %H:%M:%S %Z"), self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TzName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TzName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for TzName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TzName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tz_names_are_checked_against_the_database() {
        assert!(TzName::parse("Europe/Berlin").is_ok());
        assert!(TzName::parse("America/New_York").is_ok());
        let err = TzName::parse("Mars/Olympus").expect_err("not a zone");
        assert_eq!(err.field, "time_zone");
    }

    #[test]
    fn display_names_the_zone() {
        let at = UtcMicros::from_timestamp("2026-01-15T12:00:00Z".parse().expect("ts"));
        let tz = TzName::parse("Asia/Tokyo").expect("tz");
        assert_eq!(tz.display(at), "2026-01-15 21:00:00 JST (Asia/Tokyo)");
    }

    #[test]
    fn micros_round_trip_rfc3339() {
        let at = UtcMicros::from_micros(1_764_000_000_123_456);
        assert_eq!(at.to_rfc3339(), "2025-11-24T16:00:00.123456Z");
    }
}
