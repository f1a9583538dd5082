//! ODM RangeCheck mapping.

use trellis_checks::{
    Comparator, ItemRef, Outcome, RangeCheckError, Severity, ValueType, range_check,
    range_check_source,
};

use super::{Form, env};

#[test]
fn every_comparator_maps_to_a_condition() {
    let item = ItemRef::item("I.SYSBP");
    let int = ValueType::Integer;
    let cases = [
        (Comparator::LT, vec!["250"], "{I.SYSBP} < 250"),
        (Comparator::LE, vec!["250"], "{I.SYSBP} <= 250"),
        (Comparator::GT, vec!["-5"], "{I.SYSBP} > -5"),
        (Comparator::GE, vec!["60"], "{I.SYSBP} >= 60"),
        (Comparator::EQ, vec!["1"], "{I.SYSBP} = 1"),
        (Comparator::NE, vec!["0"], "{I.SYSBP} != 0"),
        (
            Comparator::IN,
            vec!["1", "2", "3"],
            "{I.SYSBP} in (1, 2, 3)",
        ),
        (Comparator::NI, vec!["999"], "{I.SYSBP} not in (999)"),
    ];
    for (cmp, values, want) in cases {
        assert_eq!(
            range_check_source(&item, int, cmp, &values).as_deref(),
            Ok(want)
        );
    }
    let text = range_check_source(
        &ItemRef::item("I.SEX"),
        ValueType::Text,
        Comparator::IN,
        &["M", "F \"x\""],
    );
    assert_eq!(text.as_deref(), Ok("{I.SEX} in (\"M\", \"F \\\"x\\\"\")"));
    let dec = range_check_source(
        &ItemRef::item("I.TEMP"),
        ValueType::Decimal,
        Comparator::LE,
        &["42"],
    );
    assert_eq!(dec.as_deref(), Ok("{I.TEMP} <= 42.0"));
    let date = range_check_source(
        &ItemRef::item("I.VSDAT"),
        ValueType::Date,
        Comparator::GE,
        &["01-JAN-2020"],
    );
    assert_eq!(date.as_deref(), Ok("{I.VSDAT} >= date'2020-01-01'"));
    let min = range_check_source(&item, int, Comparator::GE, &["-9223372036854775808"]);
    assert_eq!(
        min.as_deref(),
        Ok("{I.SYSBP} >= (-9223372036854775807 - 1)")
    );
}

#[test]
fn mapped_checks_compile_and_run() {
    let form = Form::vitals();
    let def = range_check(
        "SYSBP_HI",
        &ItemRef::item("I.SYSBP"),
        ValueType::Integer,
        Comparator::LE,
        &["250"],
        Severity::Soft,
        "Systolic blood pressure above 250 mmHg",
    )
    .expect("maps");
    let check = def.compile(&form).expect("compiles");
    assert_eq!(check.severity(), Severity::Soft);
    assert_eq!(check.targets()[0].0, ItemRef::item("I.SYSBP"));
    assert_eq!(
        check.evaluate(&form.values(&[("{I.SYSBP}", "251")]), &env()),
        Ok(Outcome::Fail)
    );
    assert_eq!(
        check.evaluate(&form.values(&[("{I.SYSBP}", "250")]), &env()),
        Ok(Outcome::Pass)
    );
    assert_eq!(
        check.evaluate(&form.values(&[]), &env()),
        Ok(Outcome::NotApplicable)
    );
    let min = range_check(
        "M",
        &ItemRef::item("I.SYSBP"),
        ValueType::Integer,
        Comparator::GE,
        &["-9223372036854775808"],
        Severity::Hard,
        "m",
    )
    .expect("maps");
    let check = min.compile(&form).expect("compiles");
    assert_eq!(
        check.evaluate(&form.values(&[("{I.SYSBP}", "0")]), &env()),
        Ok(Outcome::Pass)
    );
}

#[test]
fn bad_range_checks_are_refused() {
    let item = ItemRef::item("I.SYSBP");
    let int = ValueType::Integer;
    assert!(matches!(
        range_check_source(&item, int, Comparator::LE, &["1", "2"]),
        Err(RangeCheckError::ValueCount { found: 2, .. })
    ));
    assert!(matches!(
        range_check_source(&item, int, Comparator::IN, &[]),
        Err(RangeCheckError::ValueCount { .. })
    ));
    let e = range_check_source(&item, int, Comparator::LE, &["12.5"]).expect_err("not an integer");
    assert_eq!(e.code(), "range_check_value");
    assert!(
        e.to_string()
            .contains("\"12.5\" is not a valid Integer value"),
        "{e}"
    );
    assert_eq!(
        range_check_source(&item, int, Comparator::LE, &[""]),
        Err(RangeCheckError::Blank)
    );
    assert_eq!(Severity::from_odm("Soft"), Some(Severity::Soft));
    assert_eq!(Comparator::from_odm("NI"), Some(Comparator::NI));
    assert_eq!(Comparator::from_odm("BETWEEN"), None);
}
