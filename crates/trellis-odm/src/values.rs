//! Whether a clinical value written as a string fits its ODM data type, length and
//! significant digits.

use crate::model::{DataType, ItemDef};

/// Why a value does not fit its item; the message is shown to the person importing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueProblem(pub String);

fn problem(msg: impl Into<String>) -> ValueProblem {
    ValueProblem(msg.into())
}

/// Checks `value` against the item's data type, `Length` and `SignificantDigits`.
pub fn check_value(item: &ItemDef, value: &str) -> Result<(), ValueProblem> {
    check_type(item.data_type, value)?;
    if let Some(max) = item.length {
        let len = match item.data_type {
            DataType::Integer | DataType::Float | DataType::Double => {
                value.chars().filter(char::is_ascii_digit).count()
            }
            _ => value.chars().count(),
        };
        if len > max as usize {
            return Err(problem(format!(
                "{len} characters/digits, more than the item's Length of {max}"
            )));
        }
    }
    if let (Some(digits), DataType::Float | DataType::Double) =
        (item.significant_digits, item.data_type)
    {
        let fraction = value
            .split_once('.')
            .map(|(_, f)| f.chars().take_while(char::is_ascii_digit).count())
            .unwrap_or(0);
        if fraction > digits as usize {
            return Err(problem(format!(
                "{fraction} digits after the decimal point, more than the item's SignificantDigits of {digits}"
            )));
        }
    }
    Ok(())
}

/// Checks only the lexical form of `value` for `data_type`.
pub fn check_type(data_type: DataType, value: &str) -> Result<(), ValueProblem> {
    let ok = match data_type {
        DataType::Text | DataType::String => true,
        DataType::Uri => !value.trim().is_empty(),
        DataType::Integer => is_integer(value),
        DataType::Float => is_decimal(value),
        DataType::Double | DataType::HexFloat | DataType::Base64Float => is_double(value),
        DataType::Boolean => matches!(value, "true" | "false" | "1" | "0"),
        DataType::Date => is_date(value),
        DataType::Time => is_time(value),
        DataType::Datetime => is_datetime(value),
        DataType::PartialDate | DataType::IncompleteDate => is_partial_date(value),
        DataType::PartialTime | DataType::IncompleteTime => is_partial_time(value),
        DataType::PartialDatetime | DataType::IncompleteDatetime => is_partial_datetime(value),
        DataType::DurationDatetime | DataType::IntervalDatetime => {
            !value.trim().is_empty() && !value.contains(char::is_whitespace)
        }
        DataType::HexBinary => {
            value.len().is_multiple_of(2) && value.bytes().all(|b| b.is_ascii_hexdigit())
        }
        DataType::Base64Binary => is_base64(value),
    };
    if ok {
        Ok(())
    } else {
        Err(problem(format!(
            "{:?} is not a valid {} value{}",
            shorten(value),
            data_type,
            example(data_type)
        )))
    }
}

fn shorten(value: &str) -> String {
    if value.chars().count() > 40 {
        let head: String = value.chars().take(40).collect();
        format!("{head}…")
    } else {
        value.to_owned()
    }
}

fn example(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Integer => " (for example 42 or -3)",
        DataType::Float => " (for example 37.5)",
        DataType::Boolean => " (true, false, 1 or 0)",
        DataType::Date => " (YYYY-MM-DD, for example 2024-03-05)",
        DataType::Time => " (HH:MM:SS)",
        DataType::Datetime => " (YYYY-MM-DDTHH:MM:SS)",
        DataType::PartialDate => " (YYYY, YYYY-MM or YYYY-MM-DD)",
        _ => "",
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['+', '-']).unwrap_or(s)
}

fn is_integer(s: &str) -> bool {
    digits(strip_sign(s))
}

fn is_decimal(s: &str) -> bool {
    let s = strip_sign(s);
    match s.split_once('.') {
        None => digits(s),
        Some((int, frac)) => {
            (digits(int) || int.is_empty())
                && (digits(frac) || frac.is_empty())
                && !(int.is_empty() && frac.is_empty())
        }
    }
}

fn is_double(s: &str) -> bool {
    if matches!(s, "INF" | "-INF" | "NaN") {
        return true;
    }
    match s.split_once(['e', 'E']) {
        None => is_decimal(s),
        Some((mantissa, exp)) => is_decimal(mantissa) && is_integer(exp),
    }
}

fn is_base64(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !compact.len().is_multiple_of(4) {
        return false;
    }
    let body_end = compact
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |p| p + 1);
    compact.len() - body_end <= 2
        && compact[..body_end]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn num<T: std::str::FromStr>(s: &str, width: usize) -> Option<T> {
    if s.len() == width && digits(s) {
        s.parse().ok()
    } else {
        None
    }
}

fn is_year(s: &str) -> bool {
    num::<i32>(s, 4).is_some()
}

fn is_year_month(s: &str) -> bool {
    matches!(s.split_once('-'), Some((y, m)) if is_year(y) && num::<u32>(m, 2).is_some_and(|m| (1..=12).contains(&m)))
}

fn is_date(s: &str) -> bool {
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (num::<i32>(y, 4), num::<u32>(m, 2), num::<u32>(d, 2)) else {
        return false;
    };
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

fn is_partial_date(s: &str) -> bool {
    is_year(s) || is_year_month(s) || is_date(s)
}

/// Splits a trailing `Z` or `±HH:MM` zone off a time.
fn strip_zone(s: &str) -> Option<&str> {
    if let Some(t) = s.strip_suffix('Z') {
        return Some(t);
    }
    if s.len() > 6 {
        let (t, zone) = s.split_at(s.len() - 6);
        if (zone.starts_with('+') || zone.starts_with('-')) && zone.as_bytes()[3] == b':' {
            return (num::<u32>(&zone[1..3], 2).is_some_and(|h| h <= 14)
                && num::<u32>(&zone[4..6], 2).is_some_and(|m| m < 60))
            .then_some(t);
        }
    }
    Some(s)
}

fn is_hms(s: &str, min_parts: usize) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() < min_parts || parts.len() > 3 {
        return false;
    }
    let h_ok = num::<u32>(parts[0], 2).is_some_and(|h| h < 24);
    let m_ok = parts
        .get(1)
        .is_none_or(|m| num::<u32>(m, 2).is_some_and(|m| m < 60));
    let s_ok = parts.get(2).is_none_or(|sec| {
        let (whole, frac) = sec.split_once('.').unwrap_or((sec, "0"));
        num::<u32>(whole, 2).is_some_and(|s| s < 60) && digits(frac)
    });
    h_ok && m_ok && s_ok
}

fn is_time(s: &str) -> bool {
    strip_zone(s).is_some_and(|t| is_hms(t, 3))
}

fn is_partial_time(s: &str) -> bool {
    strip_zone(s).is_some_and(|t| is_hms(t, 1))
}

fn is_datetime(s: &str) -> bool {
    matches!(s.split_once('T'), Some((d, t)) if is_date(d) && is_time(t))
}

fn is_partial_datetime(s: &str) -> bool {
    match s.split_once('T') {
        None => is_partial_date(s),
        Some((d, t)) => is_date(d) && is_partial_time(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_forms() {
        use DataType::*;
        let cases: &[(DataType, &str, bool)] = &[
            (Integer, "42", true),
            (Integer, "-3", true),
            (Integer, "4.0", false),
            (Integer, "", false),
            (Float, "37.5", true),
            (Float, ".5", true),
            (Float, "1e3", false),
            (Float, ".", false),
            (Double, "1.5E-3", true),
            (Boolean, "true", true),
            (Boolean, "yes", false),
            (Date, "2024-02-29", true),
            (Date, "2023-02-29", false),
            (Date, "2024-13-01", false),
            (Date, "24-01-01", false),
            (PartialDate, "2024", true),
            (PartialDate, "2024-03", true),
            (PartialDate, "2024-3", false),
            (Time, "13:45:00", true),
            (Time, "13:45:00.250+01:00", true),
            (Time, "24:00:00", false),
            (PartialTime, "13", true),
            (Datetime, "2024-03-05T13:45:00Z", true),
            (Datetime, "2024-03-05 13:45:00", false),
            (PartialDatetime, "2024-03-05T13", true),
            (Base64Binary, "aGVsbG8=", true),
            (Base64Binary, "aGVsbG8", false),
            (HexBinary, "0aFF", true),
            (HexBinary, "0aF", false),
        ];
        for (t, v, ok) in cases {
            assert_eq!(check_type(*t, v).is_ok(), *ok, "{t} {v:?}");
        }
    }

    #[test]
    fn length_and_significant_digits() {
        let item = ItemDef {
            oid: "I.TEMP".into(),
            data_type: DataType::Float,
            length: Some(4),
            significant_digits: Some(1),
            ..ItemDef::default()
        };
        assert!(check_value(&item, "37.5").is_ok());
        let err = check_value(&item, "37.55").expect_err("two decimals");
        assert!(err.0.contains("SignificantDigits of 1"), "{err}");
        assert!(check_value(&item, "12345").is_err());
        let text = ItemDef {
            data_type: DataType::Text,
            length: Some(3),
            ..ItemDef::default()
        };
        assert!(check_value(&text, "äöü").is_ok());
        assert!(check_value(&text, "abcd").is_err());
    }
}
