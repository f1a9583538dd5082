//! Comparisons between partial dates, written out by hand: definite when the day ranges the
//! two sides cover do not overlap (or are the same single day), unknown otherwise.

use trellis_checks::{Outcome, ValueType};

use super::{Form, compile, env};
use Outcome::{Fail as F, NotApplicable as U, Pass as T};

#[test]
fn partial_date_comparisons() {
    let form = Form::new(&[
        ("{A}", ValueType::PartialDate),
        ("{B}", ValueType::PartialDate),
    ]);
    let ops = ["<", "<=", ">", ">=", "=", "!="];
    let checks: Vec<_> = ops
        .iter()
        .map(|op| compile(&form, &format!("{{A}} {op} {{B}}")).expect("compiles"))
        .collect();
    // a, b, then the outcome of  <  <=  >  >=  =  !=
    let cases = [
        // Different years: definite whatever the unknown parts.
        ("2023", "2024", [T, T, F, F, F, T]),
        ("2024", "2023", [F, F, T, T, F, T]),
        ("UN-UNK-2023", "UN-MAR-2024", [T, T, F, F, F, T]),
        ("2023-12-31", "2024", [T, T, F, F, F, T]),
        // Same year, one side without month: the ranges overlap.
        ("2024", "2024-03", [U, U, U, U, U, U]),
        ("2024", "2024", [U, U, U, U, U, U]),
        // Year-only against its first and last day: one of <= / >= is still definite.
        ("2024", "2024-01-01", [F, U, U, T, U, U]),
        ("2024", "2024-12-31", [U, T, F, U, U, U]),
        // Same year, different months.
        ("2024-02", "2024-03", [T, T, F, F, F, T]),
        ("UN-MAR-2024", "2024-02-29", [F, F, T, T, F, T]),
        // Same month, one side with a day.
        ("2024-03", "2024-03-05", [U, U, U, U, U, U]),
        ("2024-03", "2024-03-31", [U, T, F, U, U, U]),
        ("2024-03", "2024-03-01", [F, U, U, T, U, U]),
        ("2024-03", "2024-04-01", [T, T, F, F, F, T]),
        // Same month on both sides: may be different days.
        ("2024-03", "UN-MAR-2024", [U, U, U, U, U, U]),
        // Complete dates behave as dates.
        ("2024-03-05", "05-MAR-2024", [F, T, F, T, T, F]),
        ("2024-03-05", "2024-03-06", [T, T, F, F, F, T]),
        // February of a leap year ends on the 29th.
        ("2024-02", "2024-02-29", [U, T, F, U, U, U]),
        ("2023-02", "2023-03-01", [T, T, F, F, F, T]),
    ];
    for (a, b, want) in cases {
        let values = form.values(&[("{A}", a), ("{B}", b)]);
        for ((op, check), want) in ops.iter().zip(&checks).zip(want) {
            assert_eq!(check.evaluate(&values, &env()), Ok(want), "{a} {op} {b}");
        }
    }
    // Blank on either side: unknown.
    let values = form.values(&[("{A}", "2024")]);
    for check in &checks {
        assert_eq!(check.evaluate(&values, &env()), Ok(U));
    }
}

#[test]
fn partial_dates_against_dates_and_literals() {
    let form = Form::new(&[("{P}", ValueType::PartialDate), ("{D}", ValueType::Date)]);
    let cases = [
        ("{P} < {D}", "2024-02", "2024-03-01", T),
        ("{P} < {D}", "2024-03", "2024-03-15", U),
        ("{P} <= date'2024'", "2023-07", "2024-01-01", T),
        ("{P} = date'2024-03'", "2024-02", "2024-01-01", F),
        ("{P} = date'UN-MAR-2024'", "2024-03", "2024-01-01", U),
        (
            "{P} in (date'2023', date'2024-03')",
            "2024-01",
            "2024-01-01",
            F,
        ),
        (
            "{P} in (date'2023', date'2024-03')",
            "2023-01",
            "2024-01-01",
            U,
        ),
        ("{P} in (date'2023', {D})", "2024-01-01", "2024-01-01", T),
        (
            "earliest({P}) <= {D} and latest({P}) >= {D}",
            "2024",
            "2024-06-15",
            T,
        ),
        ("latest({P}) = date'2024-02-29'", "2024-02", "2024-01-01", T),
        ("earliest({P}) = date'2024-01-01'", "2024", "2024-01-01", T),
    ];
    for (src, p, d, want) in cases {
        let check = compile(&form, src).expect("compiles");
        let values = form.values(&[("{P}", p), ("{D}", d)]);
        assert_eq!(
            check.evaluate(&values, &env()),
            Ok(want),
            "{src} with P={p} D={d}"
        );
    }
}

#[test]
fn readme_partial_date_table() {
    let form = Form::new(&[]);
    let rows = [
        ("date'2023' < date'2024-03'", T),
        ("date'2024-02' < date'2024-03-01'", T),
        ("date'2024-03' < date'2024-03-15'", U),
        ("date'2024-03' <= date'2024-03-31'", T),
        ("date'2024-03' = date'2024-03'", U),
        ("date'2024-03' = date'2024-04-02'", F),
        ("date'2024-03-05' = date'05-MAR-2024'", T),
    ];
    for (src, want) in rows {
        let check = compile(&form, src).expect("compiles");
        assert_eq!(check.evaluate(&form.values(&[]), &env()), Ok(want), "{src}");
    }
}
