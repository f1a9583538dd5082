//! Item values and their ODM string forms.
//!
//! Decimal convention: ODM `float`/`double` item values and decimal literals are parsed from
//! their decimal strings with Rust's correctly rounded `f64` parser, so the same digits always
//! give the same `f64` ("37.5" read from an item equals the literal `37.5` bit for bit, and so do
//! "37.50" and "37.5"). Comparisons of decimals computed by arithmetic absorb binary rounding
//! (see `decimal_cmp`), so `0.1 + 0.2 = 0.3` holds as a data manager expects.

use std::cmp::Ordering;
use std::fmt;

use jiff::civil::{Date, DateTime, Time};

/// The static type of an item or of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    Integer,
    Decimal,
    Text,
    Boolean,
    Date,
    PartialDate,
    Time,
    DateTime,
}

impl ValueType {
    /// Maps an ODM `ItemDef/@DataType` to a value type; `None` for data types checks do not
    /// support (partialTime, partialDatetime, durations, binary, URI).
    pub fn from_odm(data_type: &str) -> Option<ValueType> {
        Some(match data_type {
            "integer" => ValueType::Integer,
            "float" | "double" | "decimal" => ValueType::Decimal,
            "text" | "string" => ValueType::Text,
            "boolean" => ValueType::Boolean,
            "date" => ValueType::Date,
            "partialDate" => ValueType::PartialDate,
            "time" => ValueType::Time,
            "datetime" => ValueType::DateTime,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ValueType::Integer => "Integer",
            ValueType::Decimal => "Decimal",
            ValueType::Text => "Text",
            ValueType::Boolean => "Boolean",
            ValueType::Date => "Date",
            ValueType::PartialDate => "PartialDate",
            ValueType::Time => "Time",
            ValueType::DateTime => "DateTime",
        }
    }

    pub(crate) fn is_numeric(self) -> bool {
        matches!(self, ValueType::Integer | ValueType::Decimal)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A date of which the month, or the day, may be unknown (ODM `partialDate`).
/// Invariant: a day is only present together with a month, and the parts form a real date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartialDate {
    year: i16,
    month: Option<i8>,
    day: Option<i8>,
}

impl PartialDate {
    pub fn new(year: i16, month: Option<i8>, day: Option<i8>) -> Result<PartialDate, &'static str> {
        if !(0..=9999).contains(&year) {
            return Err("year must have four digits");
        }
        match (month, day) {
            (None, Some(_)) => return Err("a day cannot be known when the month is not"),
            (Some(m), None) if !(1..=12).contains(&m) => return Err("month must be 1 to 12"),
            (Some(m), Some(d)) => {
                Date::new(year, m, d).map_err(|_| "no such day in that month")?;
            }
            _ => {}
        }
        Ok(PartialDate { year, month, day })
    }

    pub fn from_date(date: Date) -> PartialDate {
        PartialDate {
            year: date.year(),
            month: Some(date.month()),
            day: Some(date.day()),
        }
    }

    pub fn year(self) -> i16 {
        self.year
    }
    pub fn month(self) -> Option<i8> {
        self.month
    }
    pub fn day(self) -> Option<i8> {
        self.day
    }

    /// The full date when every part is known.
    pub fn complete(self) -> Option<Date> {
        match (self.month, self.day) {
            (Some(m), Some(d)) => Date::new(self.year, m, d).ok(),
            _ => None,
        }
    }

    /// First day the partial date can stand for (imputation to the start).
    pub fn earliest(self) -> Date {
        // The constructor validated the parts, so `Date::new` succeeds; the fallback only
        // keeps this total without a panic path.
        let m = self.month.unwrap_or(1);
        let d = self.day.unwrap_or(1);
        Date::new(self.year, m, d).unwrap_or(Date::MIN)
    }

    /// Last day the partial date can stand for (imputation to the end).
    pub fn latest(self) -> Date {
        let m = self.month.unwrap_or(12);
        let first = Date::new(self.year, m, 1).unwrap_or(Date::MAX);
        let d = self.day.unwrap_or_else(|| first.days_in_month());
        Date::new(self.year, m, d).unwrap_or(Date::MAX)
    }
}

impl fmt::Display for PartialDate {
    /// ODM form: `2024`, `2024-03` or `2024-03-05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(m) = self.month {
            write!(f, "-{m:02}")?;
        }
        if let Some(d) = self.day {
            write!(f, "-{d:02}")?;
        }
        Ok(())
    }
}

/// An item value as read from the eCRF, or a constant of the language.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Blank: the item has no value.
    Missing,
    Integer(i64),
    Decimal(f64),
    Text(Box<str>),
    Boolean(bool),
    Date(Date),
    PartialDate(PartialDate),
    Time(Time),
    DateTime(DateTime),
}

/// An ODM string that is not a valid value of its data type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid {expected} value: {reason}")]
pub struct ValueError {
    pub expected: ValueType,
    /// The offending input, shortened to 64 characters.
    pub input: String,
    pub reason: &'static str,
}

impl ValueError {
    pub fn code(&self) -> &'static str {
        "invalid_item_value"
    }
}

impl Value {
    /// Parses an item value from its ODM string form. An empty string (or, for text,
    /// whitespace only) is `Missing`. Surrounding whitespace is ignored for non-text types, as
    /// XML Schema's whitespace collapsing does for them.
    ///
    /// Dates and partial dates also accept the CRF display form `DD-MON-YYYY` with `UN` for an
    /// unknown day and `UNK` for an unknown month: `05-MAR-2024`, `UN-MAR-2024`, `UN-UNK-2024`.
    pub fn parse(ty: ValueType, s: &str) -> Result<Value, ValueError> {
        let err = |reason: &'static str| ValueError {
            expected: ty,
            input: s.chars().take(64).collect(),
            reason,
        };
        if ty == ValueType::Text {
            return Ok(if s.trim().is_empty() {
                Value::Missing
            } else {
                Value::Text(s.into())
            });
        }
        let t = s.trim();
        if t.is_empty() {
            return Ok(Value::Missing);
        }
        Ok(match ty {
            ValueType::Integer => Value::Integer(parse_integer(t).map_err(err)?),
            ValueType::Decimal => Value::Decimal(parse_decimal(t).map_err(err)?),
            ValueType::Text => Value::Text(s.into()),
            ValueType::Boolean => Value::Boolean(match t {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(err("expected true, false, 1 or 0")),
            }),
            ValueType::Date => {
                let p = parse_partial_date(t).map_err(err)?;
                Value::Date(p.complete().ok_or_else(|| err("the date is incomplete"))?)
            }
            ValueType::PartialDate => Value::PartialDate(parse_partial_date(t).map_err(err)?),
            ValueType::Time => Value::Time(parse_time(t).map_err(err)?),
            ValueType::DateTime => Value::DateTime(parse_datetime(t).map_err(err)?),
        })
    }

    /// The type of a present value; `None` for `Missing`.
    pub fn value_type(&self) -> Option<ValueType> {
        Some(match self {
            Value::Missing => return None,
            Value::Integer(_) => ValueType::Integer,
            Value::Decimal(_) => ValueType::Decimal,
            Value::Text(_) => ValueType::Text,
            Value::Boolean(_) => ValueType::Boolean,
            Value::Date(_) => ValueType::Date,
            Value::PartialDate(_) => ValueType::PartialDate,
            Value::Time(_) => ValueType::Time,
            Value::DateTime(_) => ValueType::DateTime,
        })
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, Value::Missing)
    }
}

impl fmt::Display for Value {
    /// The ODM string form (empty for `Missing`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Missing => Ok(()),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Decimal(d) => write!(f, "{}", DecimalText(*d)),
            Value::Text(t) => f.write_str(t),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Date(d) => write!(f, "{}", PartialDate::from_date(*d)),
            Value::PartialDate(p) => write!(f, "{p}"),
            Value::Time(t) => write!(f, "{}", TimeText(*t)),
            Value::DateTime(dt) => {
                write!(
                    f,
                    "{}T{}",
                    PartialDate::from_date(dt.date()),
                    TimeText(dt.time())
                )
            }
        }
    }
}

/// Shortest decimal text that reads back to the same `f64`, always with a decimal point so
/// that it stays a decimal when read as a literal.
pub(crate) struct DecimalText(pub f64);

impl fmt::Display for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{}` on f64 never uses an exponent and round-trips exactly.
        let s = format!("{}", self.0);
        if s.contains('.') {
            f.write_str(&s)
        } else {
            write!(f, "{s}.0")
        }
    }
}

/// `HH:MM:SS` plus a fraction when there is one.
pub(crate) struct TimeText(pub Time);

impl fmt::Display for TimeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(f, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())?;
        let ns = t.subsec_nanosecond();
        if ns != 0 {
            let frac = format!("{ns:09}");
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

/// Decimal comparison. Values within a few units in the last place of the larger magnitude
/// (relative 4·ε ≈ 8.9e-16) compare equal, so results of decimal arithmetic that differ from
/// the written decimal only by binary rounding (0.1 + 0.2 vs 0.3) are equal. Values read from
/// decimal strings are either identical or differ far more than this.
pub(crate) fn decimal_cmp(a: f64, b: f64) -> Option<Ordering> {
    if a == b {
        return Some(Ordering::Equal);
    }
    let scale = a.abs().max(b.abs());
    if (a - b).abs() <= 4.0 * f64::EPSILON * scale {
        return Some(Ordering::Equal);
    }
    a.partial_cmp(&b)
}

pub(crate) fn parse_integer(t: &str) -> Result<i64, &'static str> {
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected digits with an optional sign");
    }
    t.parse::<i64>().map_err(|_| "out of the integer range")
}

pub(crate) fn parse_decimal(t: &str) -> Result<f64, &'static str> {
    // Rust also accepts "inf" and "NaN"; ODM data and checks must not.
    let mantissa_end = t.find(['e', 'E']).unwrap_or(t.len());
    let mantissa = t[..mantissa_end]
        .strip_prefix(['+', '-'])
        .unwrap_or(&t[..mantissa_end]);
    let ok_mantissa = mantissa.bytes().any(|b| b.is_ascii_digit())
        && mantissa.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && mantissa.bytes().filter(|&b| b == b'.').count() <= 1;
    let exp = &t[mantissa_end..];
    let ok_exp = exp.is_empty() || {
        let e = exp[1..].strip_prefix(['+', '-']).unwrap_or(&exp[1..]);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    };
    if !ok_mantissa || !ok_exp {
        return Err("expected a decimal number such as 37.5");
    }
    let v: f64 = t
        .parse()
        .map_err(|_| "expected a decimal number such as 37.5")?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err("out of the decimal range")
    }
}

fn fixed_digits(s: &str, n: usize) -> Option<i64> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// ISO forms `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, and display forms `DD-MON-YYYY` with `UN`/`UNK`.
pub(crate) fn parse_partial_date(t: &str) -> Result<PartialDate, &'static str> {
    const SHAPE: &str = "expected YYYY, YYYY-MM, YYYY-MM-DD or DD-MON-YYYY (UN/UNK when unknown)";
    let parts: Vec<&str> = t.split('-').collect();
    let first_is_year = parts.first().is_some_and(|p| p.len() == 4);
    let num = |s: &str, n| fixed_digits(s, n).ok_or(SHAPE);
    let (year, month, day) = if first_is_year {
        let year = num(parts[0], 4)?;
        match parts.len() {
            1 => (year, None, None),
            2 => (year, Some(num(parts[1], 2)?), None),
            3 => (year, Some(num(parts[1], 2)?), Some(num(parts[2], 2)?)),
            _ => return Err(SHAPE),
        }
    } else {
        let [d, m, y] = parts[..] else {
            return Err(SHAPE);
        };
        let year = num(y, 4)?;
        let month = if m.eq_ignore_ascii_case("UNK") {
            None
        } else {
            let i = MONTHS
                .iter()
                .position(|name| name.eq_ignore_ascii_case(m))
                .ok_or(SHAPE)?;
            Some(i as i64 + 1)
        };
        let day = if d.eq_ignore_ascii_case("UN") {
            None
        } else {
            Some(num(d, 2)?)
        };
        (year, month, day)
    };
    let small = |v: i64| i8::try_from(v).map_err(|_| "month or day out of range");
    PartialDate::new(
        i16::try_from(year).map_err(|_| "year out of range")?,
        month.map(small).transpose()?,
        day.map(small).transpose()?,
    )
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fraction` (up to nanoseconds). Time zone offsets are
/// refused rather than silently dropped: checks compare civil (wall-clock) times.
pub(crate) fn parse_time(t: &str) -> Result<Time, &'static str> {
    const SHAPE: &str = "expected HH:MM or HH:MM:SS without a time zone";
    let (hms, frac) = match t.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (t, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let hour = fixed_digits(parts[0], 2).ok_or(SHAPE)?;
    let minute = parts.get(1).and_then(|m| fixed_digits(m, 2)).ok_or(SHAPE)?;
    let second = match parts.get(2) {
        Some(s) => fixed_digits(s, 2).ok_or(SHAPE)?,
        None if frac.is_none() => 0,
        None => return Err(SHAPE),
    };
    if parts.len() > 3 {
        return Err(SHAPE);
    }
    let nanos = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let v: i64 = f.parse().map_err(|_| SHAPE)?;
            v * 10i64.pow(9 - f.len() as u32)
        }
        Some(_) => return Err(SHAPE),
    };
    let small = |v: i64| i8::try_from(v).map_err(|_| "time out of range");
    Time::new(small(hour)?, small(minute)?, small(second)?, nanos as i32)
        .map_err(|_| "no such time of day")
}

/// `YYYY-MM-DDTHH:MM[:SS[.fraction]]`, civil (no time zone).
pub(crate) fn parse_datetime(t: &str) -> Result<DateTime, &'static str> {
    let (d, tm) = t
        .split_once(['T', 't'])
        .ok_or("expected YYYY-MM-DDTHH:MM:SS")?;
    let p = parse_partial_date(d)?;
    let date = p.complete().ok_or("the date part is incomplete")?;
    if d.len() != 10 {
        return Err("expected YYYY-MM-DDTHH:MM:SS");
    }
    Ok(DateTime::from_parts(date, parse_time(tm)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i16, m: i8, d: i8) -> Date {
        Date::new(y, m, d).expect("valid test date")
    }

    #[test]
    fn decimal_strings_equal_literals() {
        assert_eq!(
            Value::parse(ValueType::Decimal, "37.5"),
            Ok(Value::Decimal(37.5))
        );
        assert_eq!(
            Value::parse(ValueType::Decimal, "37.50"),
            Ok(Value::Decimal(37.5))
        );
        assert_eq!(
            Value::parse(ValueType::Decimal, " 1E3 "),
            Ok(Value::Decimal(1000.0))
        );
        assert_eq!(decimal_cmp(0.1 + 0.2, 0.3), Some(Ordering::Equal));
        assert_eq!(decimal_cmp(0.3, 0.30000000001), Some(Ordering::Less));
        for bad in ["inf", "NaN", "1e400", "1.2.3", ".", "1e", "+", "12a"] {
            assert!(Value::parse(ValueType::Decimal, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(
            Value::parse(ValueType::Integer, "+0042"),
            Ok(Value::Integer(42))
        );
        assert_eq!(
            Value::parse(ValueType::Integer, "-7"),
            Ok(Value::Integer(-7))
        );
        assert_eq!(Value::parse(ValueType::Integer, ""), Ok(Value::Missing));
        for bad in ["1.0", "9223372036854775808", "- 1", "1_000"] {
            assert!(Value::parse(ValueType::Integer, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partial_dates_in_both_forms() {
        let p = |s| Value::parse(ValueType::PartialDate, s);
        let pd = |y, m, d| {
            Ok(Value::PartialDate(
                PartialDate::new(y, m, d).expect("valid"),
            ))
        };
        assert_eq!(p("2024"), pd(2024, None, None));
        assert_eq!(p("2024-03"), pd(2024, Some(3), None));
        assert_eq!(p("2024-03-05"), pd(2024, Some(3), Some(5)));
        assert_eq!(p("UN-UNK-2024"), pd(2024, None, None));
        assert_eq!(p("UN-MAR-2024"), pd(2024, Some(3), None));
        assert_eq!(p("05-mar-2024"), pd(2024, Some(3), Some(5)));
        for bad in [
            "05-UNK-2024",
            "2024-02-30",
            "2024-13",
            "24-03",
            "UN-MRZ-2024",
            "2024-3",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        let feb = PartialDate::new(2024, Some(2), None).expect("valid");
        assert_eq!(
            (feb.earliest(), feb.latest()),
            (date(2024, 2, 1), date(2024, 2, 29))
        );
        let y = PartialDate::new(2023, None, None).expect("valid");
        assert_eq!(
            (y.earliest(), y.latest()),
            (date(2023, 1, 1), date(2023, 12, 31))
        );
    }

    #[test]
    fn dates_times_booleans() {
        assert_eq!(
            Value::parse(ValueType::Date, "2024-03-05"),
            Ok(Value::Date(date(2024, 3, 5)))
        );
        assert_eq!(
            Value::parse(ValueType::Date, "05-MAR-2024"),
            Ok(Value::Date(date(2024, 3, 5)))
        );
        assert!(Value::parse(ValueType::Date, "2024-03").is_err());
        let t = Value::parse(ValueType::Time, "08:30").expect("valid");
        assert_eq!(t.to_string(), "08:30:00");
        let t = Value::parse(ValueType::Time, "08:30:15.250").expect("valid");
        assert_eq!(t.to_string(), "08:30:15.25");
        for bad in ["24:00", "8:30", "08:30Z", "08:30:00+01:00", "08:30.5"] {
            assert!(Value::parse(ValueType::Time, bad).is_err(), "{bad}");
        }
        let dt = Value::parse(ValueType::DateTime, "2024-03-05T08:30:00").expect("valid");
        assert_eq!(dt.to_string(), "2024-03-05T08:30:00");
        assert!(Value::parse(ValueType::DateTime, "05-MAR-2024T08:30").is_err());
        assert_eq!(
            Value::parse(ValueType::Boolean, "1"),
            Ok(Value::Boolean(true))
        );
        assert!(Value::parse(ValueType::Boolean, "yes").is_err());
        assert_eq!(Value::parse(ValueType::Text, "  "), Ok(Value::Missing));
        assert_eq!(
            Value::parse(ValueType::Text, " a "),
            Ok(Value::Text(" a ".into()))
        );
    }

    #[test]
    fn odm_types() {
        assert_eq!(
            ValueType::from_odm("partialDate"),
            Some(ValueType::PartialDate)
        );
        assert_eq!(ValueType::from_odm("float"), Some(ValueType::Decimal));
        assert_eq!(ValueType::from_odm("hexBinary"), None);
    }
}
