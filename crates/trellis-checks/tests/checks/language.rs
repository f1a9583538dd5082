//! The language as data managers write it: typical checks, three-valued logic, functions,
//! compile errors with positions, run-time errors.

use trellis_checks::{
    CheckDef, CheckErrorKind, CompiledExpression, EvalError, ItemRef, Outcome, Severity, Slot,
    Value, ValueType,
};

use super::{Form, compile, compile_error, env, run};
use Outcome::{Fail, NotApplicable as NA, Pass};

#[test]
fn range_check_passes_fails_and_skips_blank() {
    let src = "{I.SYSBP} >= 60 and {I.SYSBP} <= 250";
    assert_eq!(run(src, &[("{I.SYSBP}", "120")]), Ok(Pass));
    assert_eq!(run(src, &[("{I.SYSBP}", "300")]), Ok(Fail));
    assert_eq!(run(src, &[("{I.SYSBP}", "59")]), Ok(Fail));
    assert_eq!(run(src, &[]), Ok(NA));
}

#[test]
fn decimal_item_equals_decimal_literal() {
    assert_eq!(run("{I.TEMP} = 37.5", &[("{I.TEMP}", "37.5")]), Ok(Pass));
    assert_eq!(run("{I.TEMP} = 37.5", &[("{I.TEMP}", "37.50")]), Ok(Pass));
    assert_eq!(run("{I.TEMP} = 37.5", &[("{I.TEMP}", "37.51")]), Ok(Fail));
    // An integer meets a decimal as a decimal.
    assert_eq!(run("{I.TEMP} > 37", &[("{I.TEMP}", "37.1")]), Ok(Pass));
    // Binary rounding of decimal arithmetic does not break equality.
    assert_eq!(
        run("{I.TEMP} + 0.2 = 0.3", &[("{I.TEMP}", "0.1")]),
        Ok(Pass)
    );
    // Division is decimal even for integers.
    assert_eq!(
        run(
            "{I.SYSBP} / {I.DIABP} = 1.5",
            &[("{I.SYSBP}", "120"), ("{I.DIABP}", "80")]
        ),
        Ok(Pass)
    );
}

#[test]
fn three_valued_and_or_not() {
    // Each side is a Boolean that is true, false or unknown (blank).
    let cases = [
        // a, b, a and b, a or b
        ("true", "true", Pass, Pass),
        ("true", "false", Fail, Pass),
        ("true", "", NA, Pass),
        ("false", "true", Fail, Pass),
        ("false", "false", Fail, Fail),
        ("false", "", Fail, NA),
        ("", "true", NA, Pass),
        ("", "false", Fail, NA),
        ("", "", NA, NA),
    ];
    let form = Form::new(&[("{A}", ValueType::Boolean), ("{B}", ValueType::Boolean)]);
    let and = compile(&form, "{A} and {B}").expect("compiles");
    let or = compile(&form, "{A} or {B}").expect("compiles");
    let not = compile(&form, "not {A}").expect("compiles");
    for (a, b, want_and, want_or) in cases {
        let values = form.values(&[("{A}", a), ("{B}", b)]);
        assert_eq!(and.evaluate(&values, &env()), Ok(want_and), "{a} and {b}");
        assert_eq!(or.evaluate(&values, &env()), Ok(want_or), "{a} or {b}");
        let want_not = match a {
            "true" => Fail,
            "false" => Pass,
            _ => NA,
        };
        assert_eq!(not.evaluate(&values, &env()), Ok(want_not), "not {a}");
    }
}

#[test]
fn required_if_with_present_and_blank() {
    let src = "{I.AEYN} = false or present({I.AETERM})";
    assert_eq!(
        run(src, &[("{I.AEYN}", "true"), ("{I.AETERM}", "Headache")]),
        Ok(Pass)
    );
    assert_eq!(run(src, &[("{I.AEYN}", "true")]), Ok(Fail));
    assert_eq!(
        run(src, &[("{I.AEYN}", "true"), ("{I.AETERM}", "   ")]),
        Ok(Fail)
    );
    assert_eq!(run(src, &[("{I.AEYN}", "false")]), Ok(Pass));
    // Unanswered trigger: nothing to say yet.
    assert_eq!(run(src, &[]), Ok(NA));
    // The converse: must be blank when not applicable.
    let src = "{I.SEX} != \"M\" or blank({I.PREG})";
    assert_eq!(run(src, &[("{I.SEX}", "M"), ("{I.PREG}", "N")]), Ok(Fail));
    assert_eq!(run(src, &[("{I.SEX}", "M")]), Ok(Pass));
    assert_eq!(run(src, &[("{I.SEX}", "F"), ("{I.PREG}", "N")]), Ok(Pass));
}

#[test]
fn in_and_not_in_lists() {
    let src = "{I.SEX} in (\"M\", \"F\")";
    assert_eq!(run(src, &[("{I.SEX}", "F")]), Ok(Pass));
    assert_eq!(run(src, &[("{I.SEX}", "X")]), Ok(Fail));
    assert_eq!(run(src, &[]), Ok(NA));
    let src = "{I.SYSBP} not in (0, 999)";
    assert_eq!(run(src, &[("{I.SYSBP}", "999")]), Ok(Fail));
    assert_eq!(run(src, &[("{I.SYSBP}", "120")]), Ok(Pass));
    // A blank list element leaves the answer open unless another element matches.
    let src = "{I.SYSBP} in ({I.DIABP}, 120)";
    assert_eq!(run(src, &[("{I.SYSBP}", "120")]), Ok(Pass));
    assert_eq!(run(src, &[("{I.SYSBP}", "130")]), Ok(NA));
    assert_eq!(
        run(src, &[("{I.SYSBP}", "130"), ("{I.DIABP}", "80")]),
        Ok(Fail)
    );
}

#[test]
fn cross_form_and_cross_visit_references() {
    let src = "{I.VSDAT} >= {F.DM/I.CONSDAT}";
    assert_eq!(
        run(
            src,
            &[
                ("{I.VSDAT}", "2024-03-05"),
                ("{F.DM/I.CONSDAT}", "2024-03-01")
            ]
        ),
        Ok(Pass)
    );
    assert_eq!(
        run(
            src,
            &[
                ("{I.VSDAT}", "2024-02-05"),
                ("{F.DM/I.CONSDAT}", "2024-03-01")
            ]
        ),
        Ok(Fail)
    );
    let src = "abs({I.WEIGHT} - {SE.SCREEN/F.VS/I.WEIGHT}) <= 10";
    assert_eq!(
        run(
            src,
            &[("{I.WEIGHT}", "80.5"), ("{SE.SCREEN/F.VS/I.WEIGHT}", "75")]
        ),
        Ok(Pass)
    );
    assert_eq!(
        run(
            src,
            &[("{I.WEIGHT}", "90.5"), ("{SE.SCREEN/F.VS/I.WEIGHT}", "75")]
        ),
        Ok(Fail)
    );
    let src = "{SE.SCREEN/F.VS/IG.VS/I.HEIGHT} > 100";
    assert_eq!(
        run(src, &[("{SE.SCREEN/F.VS/IG.VS/I.HEIGHT}", "170")]),
        Ok(Pass)
    );
}

#[test]
fn date_arithmetic_and_functions() {
    let given = [
        ("{I.VSDAT}", "2024-03-05"),
        ("{F.DM/I.CONSDAT}", "2024-02-28"),
    ];
    assert_eq!(run("{I.VSDAT} - {F.DM/I.CONSDAT} = 6", &given), Ok(Pass));
    assert_eq!(
        run("days_between({F.DM/I.CONSDAT}, {I.VSDAT}) = 6", &given),
        Ok(Pass)
    );
    assert_eq!(
        run("add_days({F.DM/I.CONSDAT}, 6) = {I.VSDAT}", &given),
        Ok(Pass)
    );
    assert_eq!(
        run("add_days({I.VSDAT}, -366) = date'2023-03-05'", &given),
        Ok(Pass)
    );
    assert_eq!(
        run(
            "year({I.VSDAT}) = 2024 and month({I.VSDAT}) = 3 and day({I.VSDAT}) = 5",
            &given
        ),
        Ok(Pass)
    );
    assert_eq!(run("{I.VSDAT} <= today()", &given), Ok(Pass));
    assert_eq!(run("today() = date'2024-06-15'", &[]), Ok(Pass));
    // Age at the visit from a partial birth date, imputed to the earliest and latest day.
    let given = [("{I.VSDAT}", "2024-03-05"), ("{I.BRTHDAT}", "UN-MAR-2006")];
    assert_eq!(
        run("age_years(earliest({I.BRTHDAT}), {I.VSDAT}) = 18", &given),
        Ok(Pass)
    );
    assert_eq!(
        run("age_years(latest({I.BRTHDAT}), {I.VSDAT}) = 17", &given),
        Ok(Pass)
    );
    assert_eq!(
        run("age_years(latest({I.BRTHDAT}), {I.VSDAT}) >= 18", &given),
        Ok(Fail)
    );
    // Month of a year-only partial date is unknown.
    assert_eq!(
        run("month({I.BRTHDAT}) = 3", &[("{I.BRTHDAT}", "2006")]),
        Ok(NA)
    );
    assert_eq!(
        run("year({I.BRTHDAT}) = 2006", &[("{I.BRTHDAT}", "2006")]),
        Ok(Pass)
    );
    let dt = [
        ("{I.DOSEDTC}", "2024-03-05T08:30:00"),
        ("{I.VSDAT}", "2024-03-05"),
        ("{I.VSTIM}", "09:00"),
    ];
    assert_eq!(
        run(
            "date({I.DOSEDTC}) = {I.VSDAT} and {I.VSTIM} > time'08:30'",
            &dt
        ),
        Ok(Pass)
    );
    assert_eq!(
        run("{I.DOSEDTC} < datetime'2024-03-05T08:30:01'", &dt),
        Ok(Pass)
    );
}

#[test]
fn other_functions() {
    let given = [
        ("{I.SYSBP}", "120"),
        ("{I.DIABP}", "80"),
        ("{I.TEMP}", "36.65"),
        ("{I.AETERM}", "Kopfschmerz"),
    ];
    assert_eq!(
        run(
            "min({I.SYSBP}, {I.DIABP}, 100) = 80 and max({I.SYSBP}, 130.5) = 130.5",
            &given
        ),
        Ok(Pass)
    );
    assert_eq!(run("round({I.TEMP}, 1) = 36.7", &given), Ok(Pass));
    assert_eq!(run("round({I.SYSBP} / 7, 2) = 17.14", &given), Ok(Pass));
    assert_eq!(run("len({I.AETERM}) <= 11", &given), Ok(Pass));
    assert_eq!(run("len({I.AETERM}) < 11", &given), Ok(Fail));
    assert_eq!(run("abs(-{I.SYSBP}) = 120", &given), Ok(Pass));
    assert_eq!(
        run("if({I.SYSBP} > 100, {I.DIABP}, 0) = 80", &given),
        Ok(Pass)
    );
    assert_eq!(run("if({I.WEIGHT} > 100, 1, 0) = 0", &given), Ok(NA));
    assert_eq!(
        run("coalesce({I.WEIGHT}, {I.TEMP}) = 36.65", &given),
        Ok(Pass)
    );
    assert_eq!(run("coalesce({I.WEIGHT}, {I.HEIGHT}) = 1", &given), Ok(NA));
    // min with a blank argument is unknown.
    assert_eq!(run("min({I.SYSBP}, {I.WEIGHT}) > 0", &given), Ok(NA));
}

#[test]
fn short_circuit_skips_undefined_operations() {
    // A definite false decides `and` even when the other side would divide by zero.
    let src = "{I.DIABP} != 0 and {I.SYSBP} / {I.DIABP} > 1";
    assert_eq!(
        run(src, &[("{I.SYSBP}", "120"), ("{I.DIABP}", "0")]),
        Ok(Fail)
    );
    // Without the guard, the division is an error, not a pass or "not applicable".
    let src = "{I.SYSBP} / {I.DIABP} > 1";
    assert_eq!(
        run(src, &[("{I.SYSBP}", "120"), ("{I.DIABP}", "0")]),
        Err(EvalError::DivisionByZero)
    );
    assert_eq!(
        run("{I.SYSBP} * 9223372036854775807 > 0", &[("{I.SYSBP}", "2")]),
        Err(EvalError::Overflow)
    );
    assert_eq!(
        run(
            "add_days({I.VSDAT}, {I.SYSBP}) > {I.VSDAT}",
            &[("{I.VSDAT}", "9999-12-01"), ("{I.SYSBP}", "31")]
        ),
        Err(EvalError::DateOutOfRange)
    );
    assert_eq!(
        run(
            "round({I.TEMP}, {I.SYSBP}) > 0",
            &[("{I.TEMP}", "1.5"), ("{I.SYSBP}", "16")]
        ),
        Err(EvalError::RoundDigits)
    );
}

#[test]
fn values_that_do_not_fit_the_schema_are_errors() {
    let form = Form::vitals();
    let check = compile(&form, "{I.SYSBP} > 0").expect("compiles");
    let mut values = form.values(&[]);
    values[form.slot("{I.SYSBP}")] = Value::Text("120".into());
    assert_eq!(
        check.evaluate(&values, &env()),
        Err(EvalError::TypeMismatch {
            slot: Slot(0),
            expected: ValueType::Integer,
            found: ValueType::Text
        })
    );
    assert_eq!(
        check.evaluate(&Vec::<Value>::new(), &env()),
        Err(EvalError::NoSuchSlot(Slot(0)))
    );
    // An integer in a decimal slot is accepted as a decimal, a date in a partial-date slot as complete.
    let check =
        compile(&form, "{I.TEMP} = 37 and {I.BRTHDAT} = date'2000-01-01'").expect("compiles");
    values[form.slot("{I.TEMP}")] = Value::Integer(37);
    values[form.slot("{I.BRTHDAT}")] = Value::Date(jiff::civil::date(2000, 1, 1));
    assert_eq!(check.evaluate(&values, &env()), Ok(Pass));
    // Empty text built by hand is blank, as from Value::parse.
    let check = compile(&form, "blank({I.AETERM})").expect("compiles");
    values[form.slot("{I.AETERM}")] = Value::Text("".into());
    assert_eq!(check.evaluate(&values, &env()), Ok(Pass));
}

#[test]
fn errors_name_check_line_and_column() {
    let form = Form::vitals();
    let def = CheckDef {
        id: "AGE_RANGE".into(),
        severity: Severity::Hard,
        expression: "{I.VSDAT} >= 18".into(),
        message: "m".into(),
        targets: vec![],
    };
    let e = def.compile(&form).expect_err("type error");
    assert_eq!(
        e.to_string(),
        "check AGE_RANGE, line 1, column 11: cannot compare Date with Integer"
    );
    assert_eq!((e.kind, e.code()), (CheckErrorKind::Type, "check_type"));

    let e = compile(&form, "{I.SYSBP} > 0 and\n  {I.NOPE} < 5").expect_err("unknown item");
    assert_eq!(
        e.to_string(),
        "check T, line 2, column 3: unknown item {I.NOPE}"
    );
    assert_eq!(e.kind, CheckErrorKind::UnknownItem);

    let e = compile(&form, "// systolic\n{I.SYSBP} > 0 and\n  ({I.SYSBP} <").expect_err("syntax");
    assert_eq!(
        e.to_string(),
        "check T, line 3, column 15: expected a value, found end of the check"
    );
    assert_eq!(e.kind, CheckErrorKind::Syntax);
}

#[test]
fn compile_errors_explain() {
    let cases = [
        (
            "{I.SYSBP} + 1",
            "column 1: a check states a condition (Boolean), but this one is Integer",
        ),
        (
            "1 < {I.SYSBP} < 3",
            "column 15: comparisons cannot be chained; join them with and",
        ),
        (
            "{I.SEX} < \"M\"",
            "column 9: cannot order Text values; only = and != apply",
        ),
        (
            "{I.AEYN} in (true)",
            "column 10: in does not apply to Boolean; use = or !=",
        ),
        (
            "{I.SYSBP} in (1, \"2\")",
            "column 18: cannot compare Integer with Text",
        ),
        ("foo({I.SYSBP})", "column 1: unknown function foo"),
        (
            "round({I.TEMP}) > 1",
            "column 1: round takes 2 arguments, found 1",
        ),
        (
            "len({I.SYSBP}) > 1",
            "column 5: len needs Text, found Integer",
        ),
        (
            "{I.BRTHDAT} - {I.VSDAT} > 1",
            "column 13: cannot apply - to PartialDate and Date; impute partial dates with earliest() or latest() first",
        ),
        (
            "{I.VSDAT} + 1 > {I.VSDAT}",
            "column 11: cannot apply + to Date and Integer; use add_days(date, n)",
        ),
        (
            "age_years({I.BRTHDAT}, today()) > 18",
            "column 11: age_years needs a Date (impute partial dates with earliest() or latest()), found PartialDate",
        ),
        (
            "if({I.AEYN}, 1, \"a\") = 1",
            "column 1: if branches differ: Integer and Text",
        ),
        (
            "not {I.SYSBP}",
            "column 5: not needs a Boolean, found Integer",
        ),
        (
            "{I.SYSBP} > 1 and 2",
            "column 19: and needs a Boolean, found Integer",
        ),
        ("\"abc", "column 1: text is not closed with \""),
        (
            "{I.SYSBP > 1",
            "column 1: item reference is not closed with }",
        ),
        (
            "{A/B/C/D/E} > 1",
            "column 1: an item reference is {ITEM}, {FORM/ITEM}, {EVENT/FORM/ITEM} or {EVENT/FORM/GROUP/ITEM}",
        ),
        ("{A//B} > 1", "column 1: empty OID in item reference"),
        (
            "{I.TEMP} > 37.",
            "column 12: a decimal needs digits after the point, as in 5.0",
        ),
        (
            "{I.SYSBP} > 99999999999999999999",
            "column 13: integer out of range",
        ),
        (
            "{I.VSDAT} > date'2024-02-30'",
            "column 13: invalid date literal '2024-02-30': no such day in that month",
        ),
        (
            "{I.SYSBP} > 1 1",
            "column 15: expected an operator or the end, found literal 1",
        ),
        ("{I.SYSBP} ; 1", "column 11: unexpected character ';'"),
        ("{I.SYSBP} in ()", "column 11: the list after in is empty"),
    ];
    for (src, want) in cases {
        let got = compile_error(src);
        assert!(got.ends_with(want), "{src}\n got: {got}\nwant: …{want}");
    }
}

#[test]
fn nesting_is_bounded_not_a_stack_overflow() {
    let deep = format!("{}1{} = 1", "(".repeat(4_000), ")".repeat(4_000));
    assert!(compile_error(&deep).contains("nested more than 64 levels"));
    let huge = format!("{}1{} = 1", "(".repeat(10_000), ")".repeat(10_000));
    assert!(compile_error(&huge).ends_with("column 1: the check is longer than 10000 bytes"));
    let long_chain = format!("1{} = 1", " + 1".repeat(200));
    assert!(compile_error(&long_chain).contains("nested more than 64 levels"));
    let nots = format!("{}true", "not ".repeat(2_000));
    assert!(compile_error(&nots).contains("nested more than 64 levels"));
    let ok = format!("{}1{} = 1", "(".repeat(30), ")".repeat(30));
    assert_eq!(run(&ok, &[]), Ok(Pass));
}

#[test]
fn keywords_and_function_names_are_case_insensitive() {
    assert_eq!(
        run(
            "{I.SYSBP} > 1 AND NOT Blank({I.SYSBP}) Or FALSE",
            &[("{I.SYSBP}", "2")]
        ),
        Ok(Pass)
    );
}

#[test]
fn targets_default_to_referenced_items() {
    let form = Form::vitals();
    let check = compile(&form, "{I.SYSBP} > {I.DIABP} or {I.SYSBP} = 0").expect("compiles");
    let names: Vec<String> = check.targets().iter().map(|(r, _)| r.to_string()).collect();
    assert_eq!(names, ["{I.SYSBP}", "{I.DIABP}"]);
    assert_eq!(check.expression().inputs(), [Slot(0), Slot(1)]);
    assert!(!check.expression().uses_today());
    let def = CheckDef {
        id: "X".into(),
        severity: Severity::Soft,
        expression: "{I.VSDAT} <= today()".into(),
        message: "m".into(),
        targets: vec![ItemRef::item("I.NOPE")],
    };
    assert_eq!(
        def.compile(&form).expect_err("unknown target").kind,
        CheckErrorKind::UnknownItem
    );
}

#[test]
fn expressions_of_any_type_for_conditions_and_derivations() {
    let form = Form::vitals();
    let bmi = CompiledExpression::compile(
        "BMI",
        "round({I.WEIGHT} / ({I.HEIGHT} / 100) * ({I.HEIGHT} / 100) , 1)",
        &form,
    )
    .expect("compiles");
    assert_eq!(bmi.value_type(), ValueType::Decimal);
    let bmi = CompiledExpression::compile(
        "BMI",
        "round({I.WEIGHT} / (({I.HEIGHT} / 100) * ({I.HEIGHT} / 100)), 1)",
        &form,
    )
    .expect("compiles");
    let values = form.values(&[("{I.WEIGHT}", "70"), ("{I.HEIGHT}", "175")]);
    assert_eq!(
        bmi.evaluate_value(&values, &env()),
        Ok(Value::Decimal(22.9))
    );
    let cond = CompiledExpression::compile("C", "{I.AEYN}", &form).expect("compiles");
    assert_eq!(cond.evaluate_condition(&form.values(&[]), &env()), Ok(None));
    assert_eq!(
        cond.evaluate_condition(&form.values(&[("{I.AEYN}", "1")]), &env()),
        Ok(Some(true))
    );
}

#[test]
fn readme_examples_compile_on_the_vitals_form() {
    let form = Form::vitals();
    for src in [
        "{I.SYSBP} >= 60 and {I.SYSBP} <= 250",
        "{I.DIABP} < {I.SYSBP}",
        "{I.SEX} in (\"M\", \"F\", \"U\")",
        "{I.SEX} != \"F\" or present({I.PREG})",
        "{I.AEYN} = true or blank({I.AETERM})",
        "{I.VSDAT} >= {F.DM/I.CONSDAT}",
        "days_between({F.DM/I.CONSDAT}, {I.VSDAT}) <= 28",
        "age_years(earliest({I.BRTHDAT}), {I.VSDAT}) >= 18",
        "{SE.SCREEN/F.VS/I.WEIGHT} > 0\n  and abs({I.WEIGHT} - {SE.SCREEN/F.VS/I.WEIGHT}) / {SE.SCREEN/F.VS/I.WEIGHT} <= 0.1",
        "{I.VSDAT} <= today() // not in the future",
        "{I.AEENDAT} >= {I.AESTDAT}",
    ] {
        if let Err(e) = compile(&form, src) {
            panic!("{src}: {e}");
        }
    }
}
