//! A study built from ODM, and what its edit checks say about form saves.

use std::collections::BTreeMap;

use trellis_checks::{Env, Severity};
use trellis_edc::{ExternalKey, FindingKind, LocalKey, Oid, StudyDesign, evaluate};

const CARDIO: &str = include_str!("cardio_1_3_2.xml");

fn build(text: &str) -> Result<StudyDesign, trellis_edc::BuildFailed> {
    let odm = trellis_odm::read_str(text).expect("fixture imports").odm;
    StudyDesign::build(&odm.studies[0], "MDV.1")
}

fn env() -> Env {
    Env {
        today: jiff::civil::date(2024, 3, 20),
    }
}

fn key(group: &str, repeat: u16, item: &str) -> LocalKey {
    LocalKey {
        group: Oid::new(group).expect("oid"),
        repeat,
        item: Oid::new(item).expect("oid"),
    }
}

fn values(pairs: &[(&str, u16, &str, &str)]) -> BTreeMap<LocalKey, String> {
    pairs
        .iter()
        .map(|(g, r, i, v)| (key(g, *r, i), (*v).to_owned()))
        .collect()
}

fn no_other_forms(_: &ExternalKey) -> Option<String> {
    None
}

#[test]
fn the_design_holds_every_form_check_condition_and_derivation() {
    let design = build(CARDIO).expect("builds");
    assert_eq!(design.events.len(), 4);
    assert_eq!(design.forms.len(), 3);
    assert_eq!(design.check_count(), 5);
    let dm = design.form("F.DM").expect("F.DM");
    assert_eq!(dm.conditions.len(), 1);
    let childpot = &dm.groups[0].items[2];
    assert_eq!(childpot.skip_when, Some(0));
    let vs = design.form("F.VS").expect("F.VS");
    let bmi = &vs.groups[0].items[5];
    assert!(bmi.derivation.is_some());
    assert_eq!(vs.slots.len(), 7, "six own items and the screening height");
    let sex = &dm.groups[0].items[1];
    assert_eq!(sex.choices.len(), 2);
    assert_eq!(sex.choices[1].decode.get("de"), Some("Männlich"));
    assert!(design.notes.is_empty(), "{:#?}", design.notes);
}

#[test]
fn a_hard_range_check_refuses_and_a_soft_one_warns_on_the_right_item() {
    let design = build(CARDIO).expect("builds");
    let vs = design.form("F.VS").expect("F.VS");

    let out = evaluate(
        vs,
        &values(&[
            ("IG.VS", 1, "I.VSDAT", "2024-03-05"),
            ("IG.VS", 1, "I.SYSBP", "300"),
            ("IG.VS", 1, "I.DIABP", "90"),
        ]),
        &no_other_forms,
        &env(),
    );
    assert!(out.refused());
    let f = &out.findings[0];
    assert_eq!(f.check_id, "I.SYSBP.RC2");
    assert_eq!(
        f.message,
        "Systolic blood pressure must be at most 260 mmHg"
    );
    assert_eq!(f.targets, [key("IG.VS", 1, "I.SYSBP")]);

    let out = evaluate(
        vs,
        &values(&[
            ("IG.VS", 1, "I.VSDAT", "2024-03-05"),
            ("IG.VS", 1, "I.SYSBP", "120"),
            ("IG.VS", 1, "I.DIABP", "130"),
        ]),
        &no_other_forms,
        &env(),
    );
    assert!(!out.refused());
    let soft: Vec<_> = out
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Check)
        .collect();
    assert_eq!(soft.len(), 1);
    assert_eq!(soft[0].check_id, "I.DIABP.RC1");
    assert_eq!(soft[0].severity, Severity::Soft);
    assert_eq!(soft[0].targets, [key("IG.VS", 1, "I.DIABP")]);

    // Corrected: the check passes and says so, so its query can close.
    let out = evaluate(
        vs,
        &values(&[
            ("IG.VS", 1, "I.VSDAT", "2024-03-05"),
            ("IG.VS", 1, "I.SYSBP", "120"),
            ("IG.VS", 1, "I.DIABP", "80"),
        ]),
        &no_other_forms,
        &env(),
    );
    assert!(
        out.findings.iter().all(|f| f.kind != FindingKind::Check),
        "{:#?}",
        out.findings
    );
    assert!(
        out.resolved
            .contains(&("I.DIABP.RC1".into(), key("IG.VS", 1, "I.DIABP")))
    );
}

#[test]
fn values_that_do_not_fit_their_item_are_refused_before_any_check_runs() {
    let design = build(CARDIO).expect("builds");
    let vs = design.form("F.VS").expect("F.VS");
    let out = evaluate(
        vs,
        &values(&[
            ("IG.VS", 1, "I.SYSBP", "12O"),
            ("IG.VS", 1, "I.TEMP", "37.25"),
            ("IG.VS", 2, "I.DIABP", "80"),
            ("IG.VS", 1, "I.NOPE", "1"),
        ]),
        &no_other_forms,
        &env(),
    );
    let messages: Vec<&str> = out.findings.iter().map(|f| f.message.as_str()).collect();
    assert!(
        out.findings
            .iter()
            .all(|f| f.kind == FindingKind::Invalid && f.severity == Severity::Hard)
    );
    assert_eq!(out.findings.len(), 4, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\"12O\" is not a valid integer")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("SignificantDigits of 1")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("row 2 does not exist")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("has no item I.NOPE")),
        "{messages:#?}"
    );

    let dm = design.form("F.DM").expect("F.DM");
    let out = evaluate(
        dm,
        &values(&[("IG.DM", 1, "I.SEX", "W")]),
        &no_other_forms,
        &env(),
    );
    assert!(
        out.findings[0]
            .message
            .contains("not one of the choices (F, M)"),
        "{:#?}",
        out.findings
    );
}

#[test]
fn skip_logic_and_required_items() {
    let design = build(CARDIO).expect("builds");
    let dm = design.form("F.DM").expect("F.DM");
    let out = evaluate(
        dm,
        &values(&[
            ("IG.DM", 1, "I.BRTHDTC", "1961-07"),
            ("IG.DM", 1, "I.SEX", "M"),
            ("IG.DM", 1, "I.CHILDPOT", "Y"),
        ]),
        &no_other_forms,
        &env(),
    );
    assert!(out.not_collected.contains(&key("IG.DM", 1, "I.CHILDPOT")));
    let kinds: Vec<(FindingKind, &str)> = out
        .findings
        .iter()
        .map(|f| (f.kind, f.check_id.as_str()))
        .collect();
    assert!(
        kinds.contains(&(FindingKind::NotCollected, "I.CHILDPOT#NOT_COLLECTED")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(FindingKind::Required, "I.HEIGHT#REQUIRED")),
        "{kinds:?}"
    );
    assert!(!out.refused());

    let out = evaluate(
        dm,
        &values(&[
            ("IG.DM", 1, "I.BRTHDTC", "1961-07"),
            ("IG.DM", 1, "I.SEX", "F"),
            ("IG.DM", 1, "I.HEIGHT", "168.5"),
        ]),
        &no_other_forms,
        &env(),
    );
    assert!(out.findings.is_empty(), "{:#?}", out.findings);
    assert!(out.not_collected.is_empty());
}

#[test]
fn a_derivation_reads_another_visit_through_the_lookup() {
    let design = build(CARDIO).expect("builds");
    let vs = design.form("F.VS").expect("F.VS");
    let screening_height = |k: &ExternalKey| {
        (k.event.map(Oid::as_str) == Some("SE.SCREEN")
            && k.form.as_str() == "F.DM"
            && k.group.as_str() == "IG.DM"
            && k.item.as_str() == "I.HEIGHT")
            .then(|| "168.5".to_owned())
    };
    let out = evaluate(
        vs,
        &values(&[
            ("IG.VS", 1, "I.VSDAT", "2024-03-05"),
            ("IG.VS", 1, "I.SYSBP", "152"),
            ("IG.VS", 1, "I.DIABP", "94"),
            ("IG.VS", 1, "I.WEIGHT", "71.2"),
        ]),
        &screening_height,
        &env(),
    );
    // 71.2 / 1.685² = 25.0768… → 25.1
    assert_eq!(
        out.derived,
        [(key("IG.VS", 1, "I.BMI"), Some("25.1".to_owned()))]
    );
    let out = evaluate(
        vs,
        &values(&[("IG.VS", 1, "I.WEIGHT", "71.2")]),
        &no_other_forms,
        &env(),
    );
    assert_eq!(
        out.derived,
        [(key("IG.VS", 1, "I.BMI"), None)],
        "no height yet"
    );
}

#[test]
fn checks_on_a_repeating_group_run_once_per_row() {
    let text = CARDIO.replace(
        r#"<ItemDef OID="I.AESTDAT" Name="AESTDAT" DataType="partialDate" SDSVarName="AESTDTC">
        <Question><TranslatedText xml:lang="en">Start date</TranslatedText></Question>"#,
        r#"<ItemDef OID="I.AESTDAT" Name="AESTDAT" DataType="partialDate" SDSVarName="AESTDTC">
        <Question><TranslatedText xml:lang="en">Start date</TranslatedText></Question>
        <RangeCheck SoftHard="Soft">
          <FormalExpression Context="Trellis">{I.AESTDAT} &lt;= today()</FormalExpression>
          <ErrorMessage><TranslatedText>Start date is in the future</TranslatedText></ErrorMessage>
        </RangeCheck>"#,
    );
    let design = build(&text).expect("builds");
    let ae = design.form("F.AE").expect("F.AE");
    assert_eq!(ae.checks[0].row_group, Some(0));
    let out = evaluate(
        ae,
        &values(&[
            ("IG.AE", 1, "I.AETERM", "Headache"),
            ("IG.AE", 1, "I.AESTDAT", "2024-03"),
            ("IG.AE", 1, "I.AESEV", "MILD"),
            ("IG.AE", 1, "I.AESER", "N"),
            ("IG.AE", 2, "I.AETERM", "Rash"),
            ("IG.AE", 2, "I.AESTDAT", "2024-04-02"),
            ("IG.AE", 2, "I.AESEV", "MILD"),
        ]),
        &no_other_forms,
        &env(),
    );
    let checks: Vec<_> = out
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Check)
        .collect();
    assert_eq!(checks.len(), 1, "{:#?}", out.findings);
    assert_eq!(checks[0].targets, [key("IG.AE", 2, "I.AESTDAT")]);
    let required: Vec<_> = out
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Required)
        .collect();
    assert_eq!(required.len(), 1);
    assert_eq!(required[0].targets, [key("IG.AE", 2, "I.AESER")]);
    // Row 1's partial date (March 2024) may or may not be after 20 March: unknown, not failed.
    assert!(
        out.resolved
            .contains(&("I.AESTDAT.RC1".into(), key("IG.AE", 1, "I.AESTDAT")))
    );
}

#[test]
fn build_errors_name_the_definition_line_and_the_check() {
    let text = CARDIO
        .replace("{I.DIABP} &lt; {I.SYSBP}", "{I.DIABP} &lt; {I.VSDAT}")
        .replace(r#"{I.SEX} = "M""#, r#"{I.SEXX} = "M""#)
        .replace(
            "round({I.WEIGHT} / (({SE.SCREEN/F.DM/I.HEIGHT} / 100) * ({SE.SCREEN/F.DM/I.HEIGHT} / 100)), 1)",
            "{SE.AE/F.AE/I.AETERM}",
        );
    let failed = build(&text).expect_err("refused");
    let shown = failed.to_string();
    assert_eq!(failed.errors.len(), 3, "{shown}");
    assert!(shown.contains("check I.DIABP.RC1"), "{shown}");
    assert!(shown.contains("cannot compare"), "{shown}");
    assert!(shown.contains("I.SEXX"), "{shown}");
    assert!(shown.contains("item group IG.AE repeats"), "{shown}");
    // The RangeCheck element, on the line before its expression.
    let line = CARDIO
        .lines()
        .position(|l| l.contains("{I.DIABP} &lt; {I.SYSBP}"))
        .map(|i| i as u32);
    assert!(
        failed.errors.iter().any(|e| Some(e.line) == line),
        "{shown}"
    );
}
