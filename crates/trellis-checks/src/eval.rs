//! Evaluation of a compiled tree with three-valued logic. Nothing here allocates: values on
//! the way are `Copy` and borrow text from the item values or the compiled constants.

use std::cmp::Ordering;

use jiff::civil::{Date, DateTime, Time};

use crate::ast::Function;
use crate::compile::{ArithOp, CmpOp, Node, Slot};
use crate::value::{PartialDate, Value, ValueType, decimal_cmp};

/// Item values indexed by slot, as passed to `evaluate`. Blank items are `Value::Missing`.
pub trait SlotValues {
    fn get(&self, slot: Slot) -> Option<&Value>;
}

impl SlotValues for [Value] {
    fn get(&self, slot: Slot) -> Option<&Value> {
        <[Value]>::get(self, slot.index())
    }
}

impl SlotValues for Vec<Value> {
    fn get(&self, slot: Slot) -> Option<&Value> {
        self.as_slice().get(slot.index())
    }
}

impl<const N: usize> SlotValues for [Value; N] {
    fn get(&self, slot: Slot) -> Option<&Value> {
        self.as_slice().get(slot.index())
    }
}

/// What an expression may need besides item values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Env {
    /// The date `today()` returns: the current date in the site's time zone, chosen by the
    /// caller so that results do not depend on the server's zone.
    pub today: Date,
}

/// Evaluation failed: the caller passed values that do not fit the compiled check, or the data
/// make an operation undefined. Unlike a missing value, this is never silently "not
/// applicable": like an error in an SQL CHECK constraint, the caller must surface it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("no value for slot {}: the values passed are fewer than the schema's slots", .0.0)]
    NoSuchSlot(Slot),
    #[error("slot {} holds a {found} value but the check was compiled for {expected}", .slot.0)]
    TypeMismatch {
        slot: Slot,
        expected: ValueType,
        found: ValueType,
    },
    #[error("slot {} holds a decimal that is not a finite number", .0.0)]
    NotFinite(Slot),
    #[error("division by zero")]
    DivisionByZero,
    #[error("number out of range")]
    Overflow,
    #[error("date out of range")]
    DateOutOfRange,
    #[error("round: number of digits must be between -15 and 15")]
    RoundDigits,
    /// The compiled tree holds an operation the type checker should have refused. Never
    /// expected; reported instead of panicking.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl EvalError {
    pub fn code(&self) -> &'static str {
        match self {
            EvalError::NoSuchSlot(_) => "check_no_such_slot",
            EvalError::TypeMismatch { .. } => "check_value_type_mismatch",
            EvalError::NotFinite(_) => "check_not_finite",
            EvalError::DivisionByZero => "check_division_by_zero",
            EvalError::Overflow => "check_overflow",
            EvalError::DateOutOfRange => "check_date_out_of_range",
            EvalError::RoundDigits => "check_round_digits",
            EvalError::Internal(_) => "check_internal",
        }
    }
}

/// A value during evaluation. `U` is unknown: a blank item or anything computed from one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum V<'a> {
    U,
    I(i64),
    D(f64),
    B(bool),
    T(&'a str),
    Date(Date),
    P(PartialDate),
    Time(Time),
    Dt(DateTime),
}

fn constant(v: &Value) -> V<'_> {
    match v {
        Value::Missing => V::U,
        Value::Integer(i) => V::I(*i),
        Value::Decimal(d) => V::D(*d),
        Value::Text(t) => V::T(t),
        Value::Boolean(b) => V::B(*b),
        Value::Date(d) => V::Date(*d),
        Value::PartialDate(p) => V::P(*p),
        Value::Time(t) => V::Time(*t),
        Value::DateTime(dt) => V::Dt(*dt),
    }
}

fn load<S: SlotValues + ?Sized>(values: &S, slot: Slot, ty: ValueType) -> Result<V<'_>, EvalError> {
    let v = values.get(slot).ok_or(EvalError::NoSuchSlot(slot))?;
    Ok(match (ty, v) {
        (_, Value::Missing) => V::U,
        (ValueType::Integer, Value::Integer(i)) => V::I(*i),
        // Value::parse never makes NaN or infinities, but a caller could build them.
        (ValueType::Decimal, Value::Decimal(d)) if !d.is_finite() => {
            return Err(EvalError::NotFinite(slot));
        }
        (ValueType::Decimal, Value::Decimal(d)) => V::D(*d),
        (ValueType::Decimal, Value::Integer(i)) => V::D(*i as f64),
        // Blank text is missing however the caller built the value.
        (ValueType::Text, Value::Text(t)) if t.trim().is_empty() => V::U,
        (ValueType::Text, Value::Text(t)) => V::T(t),
        (ValueType::Boolean, Value::Boolean(b)) => V::B(*b),
        (ValueType::Date, Value::Date(d)) => V::Date(*d),
        (ValueType::PartialDate, Value::PartialDate(p)) => V::P(*p),
        (ValueType::PartialDate, Value::Date(d)) => V::Date(*d),
        (ValueType::Time, Value::Time(t)) => V::Time(*t),
        (ValueType::DateTime, Value::DateTime(dt)) => V::Dt(*dt),
        (expected, v) => {
            let found = v.value_type().unwrap_or(expected);
            return Err(EvalError::TypeMismatch {
                slot,
                expected,
                found,
            });
        }
    })
}

const INTERNAL: EvalError = EvalError::Internal("operand types the compiler does not produce");

/// Days since 1970-01-01 (proleptic Gregorian), by H. Hinnant's `days_from_civil`.
pub(crate) fn day_number(d: Date) -> i64 {
    let (y, m, day) = (
        i64::from(d.year()),
        i64::from(d.month()),
        i64::from(d.day()),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of `day_number`; `None` outside the years jiff supports (−9999 to 9999).
pub(crate) fn from_day_number(z: i64) -> Option<Date> {
    let z = z.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Date::new(
        i16::try_from(y).ok()?,
        i8::try_from(m).ok()?,
        i8::try_from(d).ok()?,
    )
    .ok()
}

fn test(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    }
}

fn interval(v: V<'_>) -> Option<(Date, Date)> {
    match v {
        V::Date(d) => Some((d, d)),
        V::P(p) => Some((p.earliest(), p.latest())),
        _ => None,
    }
}

/// Comparison of the day ranges two (partial) dates cover: definite when every choice of days
/// gives the same answer, unknown otherwise.
fn compare_ranges(op: CmpOp, (a0, a1): (Date, Date), (b0, b1): (Date, Date)) -> V<'static> {
    let tri = |yes: bool, no: bool| {
        if yes {
            V::B(true)
        } else if no {
            V::B(false)
        } else {
            V::U
        }
    };
    let eq = || tri(a0 == a1 && b0 == b1 && a0 == b0, a1 < b0 || b1 < a0);
    match op {
        CmpOp::Lt => tri(a1 < b0, a0 >= b1),
        CmpOp::Le => tri(a1 <= b0, a0 > b1),
        CmpOp::Gt => tri(a0 > b1, a1 <= b0),
        CmpOp::Ge => tri(a0 >= b1, a1 < b0),
        CmpOp::Eq => eq(),
        CmpOp::Ne => match eq() {
            V::B(b) => V::B(!b),
            other => other,
        },
    }
}

pub(crate) fn compare(op: CmpOp, a: V<'_>, b: V<'_>) -> Result<V<'static>, EvalError> {
    let o = match (a, b) {
        (V::U, _) | (_, V::U) => return Ok(V::U),
        (V::I(x), V::I(y)) => x.cmp(&y),
        (V::D(x), V::D(y)) => decimal_cmp(x, y).ok_or(EvalError::Overflow)?,
        (V::T(x), V::T(y)) => x.cmp(y),
        (V::B(x), V::B(y)) => x.cmp(&y),
        (V::Date(x), V::Date(y)) => x.cmp(&y),
        (V::Time(x), V::Time(y)) => x.cmp(&y),
        (V::Dt(x), V::Dt(y)) => x.cmp(&y),
        (a, b) => match (interval(a), interval(b)) {
            (Some(ra), Some(rb)) => return Ok(compare_ranges(op, ra, rb)),
            _ => return Err(INTERNAL),
        },
    };
    Ok(V::B(test(op, o)))
}

fn finite(d: f64) -> Result<V<'static>, EvalError> {
    if d.is_finite() {
        Ok(V::D(d))
    } else {
        Err(EvalError::Overflow)
    }
}

fn arith(op: ArithOp, a: V<'_>, b: V<'_>) -> Result<V<'static>, EvalError> {
    Ok(match (op, a, b) {
        (_, V::U, _) | (_, _, V::U) => V::U,
        (ArithOp::AddInt, V::I(x), V::I(y)) => V::I(x.checked_add(y).ok_or(EvalError::Overflow)?),
        (ArithOp::SubInt, V::I(x), V::I(y)) => V::I(x.checked_sub(y).ok_or(EvalError::Overflow)?),
        (ArithOp::MulInt, V::I(x), V::I(y)) => V::I(x.checked_mul(y).ok_or(EvalError::Overflow)?),
        (ArithOp::AddDec, V::D(x), V::D(y)) => finite(x + y)?,
        (ArithOp::SubDec, V::D(x), V::D(y)) => finite(x - y)?,
        (ArithOp::MulDec, V::D(x), V::D(y)) => finite(x * y)?,
        // Also catches -0.0, which compares equal to 0.0.
        (ArithOp::DivDec, V::D(x), V::D(y)) => {
            if y == 0.0 {
                return Err(EvalError::DivisionByZero);
            }
            finite(x / y)?
        }
        (ArithOp::SubDate, V::Date(x), V::Date(y)) => V::I(day_number(x) - day_number(y)),
        _ => return Err(INTERNAL),
    })
}

/// Half away from zero at `digits` decimal places. The scaled value is nudged by the same
/// relative tolerance decimal comparison uses, so a written half such as 2.675 (stored as
/// 2.67499999...) rounds up as it would on paper.
pub(crate) fn round_decimal(x: f64, digits: i64) -> Result<f64, EvalError> {
    if !(-15..=15).contains(&digits) {
        return Err(EvalError::RoundDigits);
    }
    // Beyond 2^52 an f64 has no fractional digits left to round.
    if x.abs() >= 4_503_599_627_370_496.0 && digits >= 0 {
        return Ok(x);
    }
    let p = 10f64.powi(digits.unsigned_abs() as i32);
    let scaled = if digits >= 0 { x * p } else { x / p };
    let nudged = scaled + scaled.signum() * scaled.abs() * 4.0 * f64::EPSILON;
    let r = nudged.round();
    let out = if digits >= 0 { r / p } else { r * p };
    if out.is_finite() {
        Ok(out)
    } else {
        Err(EvalError::Overflow)
    }
}

fn age_years(dob: Date, at: Date) -> i64 {
    let mut years = i64::from(at.year()) - i64::from(dob.year());
    if (at.month(), at.day()) < (dob.month(), dob.day()) {
        years -= 1;
    }
    years
}

/// Ordering for `min`/`max` (operands share one type, checked at compile time).
fn order(a: V<'_>, b: V<'_>) -> Result<Ordering, EvalError> {
    Ok(match (a, b) {
        (V::I(x), V::I(y)) => x.cmp(&y),
        (V::D(x), V::D(y)) => x.partial_cmp(&y).ok_or(EvalError::Overflow)?,
        (V::Date(x), V::Date(y)) => x.cmp(&y),
        (V::Time(x), V::Time(y)) => x.cmp(&y),
        (V::Dt(x), V::Dt(y)) => x.cmp(&y),
        _ => return Err(INTERNAL),
    })
}

impl Node {
    pub(crate) fn eval<'a, S: SlotValues + ?Sized>(
        &'a self,
        values: &'a S,
        env: &Env,
    ) -> Result<V<'a>, EvalError> {
        Ok(match self {
            Node::Const(v) => constant(v),
            Node::Load(slot, ty) => load(values, *slot, *ty)?,
            Node::IntToDec(x) => match x.eval(values, env)? {
                V::I(i) => V::D(i as f64),
                V::U => V::U,
                _ => return Err(INTERNAL),
            },
            Node::Neg(x) => match x.eval(values, env)? {
                V::I(i) => V::I(i.checked_neg().ok_or(EvalError::Overflow)?),
                V::D(d) => V::D(-d),
                V::U => V::U,
                _ => return Err(INTERNAL),
            },
            Node::Arith(op, a, b) => arith(*op, a.eval(values, env)?, b.eval(values, env)?)?,
            Node::Cmp(op, a, b) => compare(*op, a.eval(values, env)?, b.eval(values, env)?)?,
            // Short-circuit: a definite false (true) decides `and` (`or`) whatever the other
            // side is, even unknown or undefined.
            Node::And(a, b) => match a.eval(values, env)? {
                V::B(false) => V::B(false),
                l => match (l, b.eval(values, env)?) {
                    (_, V::B(false)) => V::B(false),
                    (V::B(true), V::B(true)) => V::B(true),
                    _ => V::U,
                },
            },
            Node::Or(a, b) => match a.eval(values, env)? {
                V::B(true) => V::B(true),
                l => match (l, b.eval(values, env)?) {
                    (_, V::B(true)) => V::B(true),
                    (V::B(false), V::B(false)) => V::B(false),
                    _ => V::U,
                },
            },
            Node::Not(x) => match x.eval(values, env)? {
                V::B(b) => V::B(!b),
                _ => V::U,
            },
            Node::In {
                negated,
                expr,
                list,
            } => {
                let x = expr.eval(values, env)?;
                if x == V::U {
                    return Ok(V::U);
                }
                let mut acc = V::B(false);
                for item in list.iter() {
                    match compare(CmpOp::Eq, x, item.eval(values, env)?)? {
                        V::B(true) => {
                            acc = V::B(true);
                            break;
                        }
                        V::B(false) => {}
                        _ => acc = V::U,
                    }
                }
                match acc {
                    V::B(b) => V::B(b != *negated),
                    other => other,
                }
            }
            Node::Call(f, args) => call(*f, args, values, env)?,
        })
    }
}

fn call<'a, S: SlotValues + ?Sized>(
    f: Function,
    args: &'a [Node],
    values: &'a S,
    env: &Env,
) -> Result<V<'a>, EvalError> {
    use Function as F;
    let arg =
        |i: usize| -> Result<V<'a>, EvalError> { args.get(i).ok_or(INTERNAL)?.eval(values, env) };
    Ok(match f {
        F::Present => V::B(arg(0)? != V::U),
        F::Blank => V::B(arg(0)? == V::U),
        F::Today => V::Date(env.today),
        F::If => match arg(0)? {
            V::B(true) => arg(1)?,
            V::B(false) => arg(2)?,
            _ => V::U,
        },
        F::Coalesce => {
            for a in args {
                let v = a.eval(values, env)?;
                if v != V::U {
                    return Ok(v);
                }
            }
            V::U
        }
        F::Min | F::Max => {
            let mut best = V::U;
            for (i, a) in args.iter().enumerate() {
                let v = a.eval(values, env)?;
                if v == V::U {
                    return Ok(V::U);
                }
                let o = if i == 0 {
                    Ordering::Equal
                } else {
                    order(v, best)?
                };
                if i == 0
                    || (f == F::Min && o == Ordering::Less)
                    || (f == F::Max && o == Ordering::Greater)
                {
                    best = v;
                }
            }
            best
        }
        _ => {
            let a = arg(0)?;
            if a == V::U {
                return Ok(V::U);
            }
            let b = if args.len() > 1 { arg(1)? } else { V::U };
            if args.len() > 1 && b == V::U {
                return Ok(V::U);
            }
            match (f, a, b) {
                (F::Len, V::T(t), _) => V::I(t.chars().count() as i64),
                (F::Abs, V::I(i), _) => V::I(i.checked_abs().ok_or(EvalError::Overflow)?),
                (F::Abs, V::D(d), _) => V::D(d.abs()),
                (F::Round, V::I(i), V::I(n)) => V::D(round_decimal(i as f64, n)?),
                (F::Round, V::D(d), V::I(n)) => V::D(round_decimal(d, n)?),
                (F::DaysBetween, V::Date(x), V::Date(y)) => V::I(day_number(y) - day_number(x)),
                (F::AddDays, V::Date(d), V::I(n)) => V::Date(
                    day_number(d)
                        .checked_add(n)
                        .and_then(from_day_number)
                        .ok_or(EvalError::DateOutOfRange)?,
                ),
                (F::AgeYears, V::Date(dob), V::Date(at)) => V::I(age_years(dob, at)),
                (F::Year, V::Date(d), _) => V::I(i64::from(d.year())),
                (F::Month, V::Date(d), _) => V::I(i64::from(d.month())),
                (F::Day, V::Date(d), _) => V::I(i64::from(d.day())),
                (F::Year, V::Dt(d), _) => V::I(i64::from(d.year())),
                (F::Month, V::Dt(d), _) => V::I(i64::from(d.month())),
                (F::Day, V::Dt(d), _) => V::I(i64::from(d.day())),
                (F::Year, V::P(p), _) => V::I(i64::from(p.year())),
                (F::Month, V::P(p), _) => p.month().map_or(V::U, |m| V::I(i64::from(m))),
                (F::Day, V::P(p), _) => p.day().map_or(V::U, |d| V::I(i64::from(d))),
                (F::Earliest, V::P(p), _) => V::Date(p.earliest()),
                (F::Latest, V::P(p), _) => V::Date(p.latest()),
                (F::Earliest | F::Latest, V::Date(d), _) => V::Date(d),
                (F::DateOf, V::Dt(dt), _) => V::Date(dt.date()),
                _ => return Err(INTERNAL),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i16, m: i8, day: i8) -> Date {
        Date::new(y, m, day).expect("valid test date")
    }

    #[test]
    fn day_numbers_round_trip_and_agree_with_jiff() {
        assert_eq!(day_number(d(1970, 1, 1)), 0);
        for (a, b) in [
            (d(2024, 2, 28), d(2024, 3, 1)),
            (d(1999, 12, 31), d(2000, 3, 1)),
            (d(-44, 3, 15), d(2024, 1, 1)),
        ] {
            let span = a.until(b).expect("span");
            assert_eq!(
                day_number(b) - day_number(a),
                i64::from(span.get_days()),
                "{a} {b}"
            );
        }
        for z in [-4_371_587, -1, 0, 1, 19_000, 2_932_896] {
            let date = from_day_number(z).expect("in range");
            assert_eq!(day_number(date), z);
        }
        assert_eq!(from_day_number(2_932_897), None);
        assert_eq!(from_day_number(-4_371_588), None);
    }

    #[test]
    fn rounding_like_paper() {
        assert_eq!(round_decimal(2.675, 2), Ok(2.68));
        assert_eq!(round_decimal(-2.5, 0), Ok(-3.0));
        assert_eq!(round_decimal(1234.5, -2), Ok(1200.0));
        assert_eq!(round_decimal(0.125, 2), Ok(0.13));
        assert_eq!(round_decimal(1.0, 16), Err(EvalError::RoundDigits));
        assert_eq!(round_decimal(1e300, 15), Ok(1e300));
    }

    #[test]
    fn ages_count_completed_years() {
        assert_eq!(age_years(d(2000, 2, 29), d(2018, 2, 28)), 17);
        assert_eq!(age_years(d(2000, 2, 29), d(2018, 3, 1)), 18);
        assert_eq!(age_years(d(1980, 6, 15), d(2024, 6, 15)), 44);
        assert_eq!(age_years(d(1980, 6, 15), d(2024, 6, 14)), 43);
    }
}
