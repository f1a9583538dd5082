//! Reading ODM files written by other tools, and refusing what cannot be imported.

use trellis_odm::{
    Comparator, DataType, ItemValue, Rejected, Severity, SoftHard, StudyEventType, read_bytes,
    read_str,
};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn refused(text: &str) -> Rejected {
    match read_str(text) {
        Ok(imported) => panic!(
            "expected the file to be refused; warnings: {:#?}",
            imported.warnings
        ),
        Err(r) => r,
    }
}

#[test]
fn a_strict_odm_1_3_2_study_imports_completely_and_without_warnings() {
    let imported = read_str(&fixture("cardio_1_3_2.xml")).expect("valid file");
    assert!(imported.warnings.is_empty(), "{:#?}", imported.warnings);
    let odm = imported.odm;
    assert_eq!(odm.odm_version.as_deref(), Some("1.3.2"));
    let study = &odm.studies[0];
    assert_eq!(study.oid, "ST.CARDIO-001");
    assert_eq!(study.measurement_units.len(), 4);
    let mdv = &study.metadata_versions[0];
    assert_eq!(
        mdv.protocol
            .iter()
            .map(|r| r.oid.as_str())
            .collect::<Vec<_>>(),
        ["SE.SCREEN", "SE.BASELINE", "SE.WEEK4", "SE.AE"]
    );
    assert_eq!(
        mdv.study_event("SE.AE").map(|e| e.event_type),
        Some(StudyEventType::Common)
    );
    assert!(mdv.item_group("IG.AE").is_some_and(|g| g.repeating));

    let sex = mdv.item("I.SEX").expect("I.SEX");
    assert_eq!(sex.question.get("de"), Some("Geschlecht"));
    assert_eq!(sex.question.get("de-CH"), Some("Geschlecht"));
    assert_eq!(
        sex.question.get("fr"),
        Some("Sex"),
        "falls back to the first text"
    );
    let cl = mdv.code_list("CL.SEX").expect("CL.SEX");
    assert_eq!(cl.items[1].decode.get("de"), Some("Männlich"));
    let severity = mdv.code_list("CL.AESEV").expect("enumerated list");
    assert!(severity.items.iter().all(|i| i.decode.is_empty()));

    let sysbp = mdv.item("I.SYSBP").expect("I.SYSBP");
    assert_eq!(sysbp.data_type, DataType::Integer);
    assert_eq!(sysbp.measurement_units, ["MU.MMHG"]);
    assert_eq!(sysbp.range_checks.len(), 2);
    assert_eq!(sysbp.range_checks[0].comparator, Some(Comparator::Ge));
    assert_eq!(sysbp.range_checks[0].soft_hard, SoftHard::Hard);
    assert_eq!(sysbp.range_checks[0].check_values, ["60"]);
    let diabp = mdv.item("I.DIABP").expect("I.DIABP");
    assert_eq!(
        diabp.range_checks[0].formal_expressions[0].text,
        "{I.DIABP} < {I.SYSBP}"
    );
    let childpot = mdv.item_group("IG.DM").expect("IG.DM").items[2].clone();
    assert_eq!(
        childpot.collection_exception_condition.as_deref(),
        Some("COND.MALE")
    );
    assert_eq!(
        mdv.condition("COND.MALE")
            .map(|c| c.expressions[0].text.as_str()),
        Some("{I.SEX} = \"M\"")
    );

    let admin = &odm.admin_data[0];
    assert_eq!(admin.locations[0].name, "Charité Berlin");
    assert_eq!(admin.signature_defs[0].oid, "SD.INV");

    let subject = &odm.clinical_data[0].subjects[0];
    assert_eq!(subject.subject_key, "BER-001");
    assert_eq!(subject.site_ref.as_deref(), Some("LOC.BER"));
    let dm = &subject.study_events[0].forms[0];
    assert_eq!(
        dm.signature.as_ref().map(|s| s.user_oid.as_str()),
        Some("USR.INV1")
    );
    let height = &dm.item_groups[0].items[3];
    assert_eq!(height.value, ItemValue::Value("168.5".into()));
    assert_eq!(
        height
            .audit_record
            .as_ref()
            .and_then(|a| a.reason_for_change.as_deref()),
        Some("Transcription error corrected from source")
    );
    let temp = &subject.study_events[0].forms[1].item_groups[0].items[4];
    assert_eq!(temp.value, ItemValue::Null);
    assert_eq!(
        temp.annotations[0]
            .comment
            .as_ref()
            .map(|c| c.text.as_str()),
        Some("Thermometer unavailable at screening")
    );
    let ae = &subject.study_events[1].forms[0];
    assert_eq!(ae.item_groups.len(), 2);
    assert_eq!(ae.item_groups[1].repeat_key.as_deref(), Some("2"));
    assert_eq!(
        ae.item_groups[1].items[0].value,
        ItemValue::Value("Dizziness & nausea".into())
    );
    assert!(ae.item_groups[1].items[0].line > 0);
}

#[test]
fn a_redcap_export_imports_and_every_vendor_extension_is_reported_with_its_line() {
    let text = fixture("redcap_style_1_3_1.xml");
    let imported = read_str(&text).expect("REDCap export is accepted");
    let odm = &imported.odm;
    assert_eq!(odm.odm_version.as_deref(), Some("1.3.1"));
    assert_eq!(odm.source_system.as_deref(), Some("REDCap"));
    let mdv = &odm.studies[0].metadata_versions[0];
    assert_eq!(mdv.study_events.len(), 2);
    assert_eq!(mdv.items.len(), 8);
    // REDCap writes boolean code lists, which the schema does not allow; read anyway.
    assert_eq!(
        mdv.code_list("meds___1.choices").map(|c| c.data_type),
        Some(DataType::Boolean)
    );
    assert_eq!(
        odm.clinical_data[0].subjects[0].study_events[0].forms[0]
            .item_groups
            .len(),
        3
    );

    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i as u32 + 1)
            .unwrap_or_else(|| panic!("{needle} not in fixture"))
    };
    let autonumbering = imported
        .warnings
        .iter()
        .find(|w| w.message.contains("redcap:RecordAutonumberingEnabled"))
        .expect("vendor element reported");
    assert_eq!(
        autonumbering.line,
        line_of("<redcap:RecordAutonumberingEnabled>")
    );
    let variable = imported
        .warnings
        .iter()
        .find(|w| {
            w.message
                .contains("vendor attribute redcap:Variable on ItemRef")
        })
        .expect("vendor attribute reported");
    assert_eq!(variable.line, line_of("ItemRef ItemOID=\"record_id\""));
    assert_eq!(
        variable.also_at.len(),
        7,
        "every other ItemRef is listed too"
    );
    assert!(
        imported
            .warnings
            .iter()
            .all(|w| w.severity == Severity::Warning)
    );
    let shown = variable.to_string();
    assert!(shown.contains("also at lines"), "{shown}");
}

#[test]
fn an_openclinica_extract_imports_despite_element_order_and_typed_item_data() {
    let imported = read_str(&fixture("openclinica_style_1_3.xml")).expect("accepted");
    let odm = &imported.odm;
    assert_eq!(odm.odm_version.as_deref(), Some("1.3"));
    let mdv = &odm.studies[0].metadata_versions[0];
    // ItemDefs came before ItemGroupDefs in the file; references still resolve.
    assert_eq!(mdv.item_groups.len(), 2);
    assert!(mdv.study_event("SE_CYCLE").is_some_and(|e| e.repeating));
    let subject = &odm.clinical_data[0].subjects[0];
    assert_eq!(subject.study_events.len(), 3);
    let dosing = &subject.study_events[1].forms[0].item_groups[0];
    assert_eq!(
        dosing.items[2].value,
        ItemValue::Value("JVBERi0xLjQKJcfsj6IK".into()),
        "ItemDataBase64Binary carries the attachment"
    );
    assert_eq!(dosing.items[1].measurement_unit.as_deref(), Some("MU_KG"));
    let messages: Vec<&str> = imported
        .warnings
        .iter()
        .map(|w| w.message.as_str())
        .collect();
    for expected in [
        "vendor extension OpenClinica:FormDetails inside FormDef",
        "vendor extension OpenClinica:ItemDetails inside ItemDef",
        "vendor extension OpenClinica:StudyDetails inside MetaDataVersion",
        "vendor attribute OpenClinica:Status on SubjectData",
        "vendor attribute OpenClinica:QuestionNumber on Question",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "missing warning {expected:?} in {messages:#?}"
        );
    }
    let item_details = imported
        .warnings
        .iter()
        .find(|w| w.message.contains("OpenClinica:ItemDetails"))
        .expect("reported");
    assert_eq!(item_details.also_at.len(), 1, "both occurrences are listed");
}

#[test]
fn openclinica_discrepancy_notes_on_items_are_read_and_others_reported() {
    let imported = read_str(&fixture("openclinica_style_1_3.xml")).expect("accepted");
    let subject = &imported.odm.clinical_data[0].subjects[0];
    assert_eq!(subject.subject_key, "SS_1001");
    assert_eq!(
        subject.label.as_deref(),
        Some("1001"),
        "OpenClinica's StudySubjectID"
    );
    assert!(
        !imported
            .warnings
            .iter()
            .any(|w| w.message.contains("StudySubjectID")),
        "the label is read, not reported"
    );
    let elig = &subject.study_events[0].forms[0].item_groups[0].items;
    let consent = &elig[1];
    assert_eq!(consent.item_oid, "I_ELIG_CONSENTDT");
    assert_eq!(consent.value, ItemValue::Value("2024-02-01".into()));
    assert_eq!(consent.discrepancy_notes.len(), 2);
    let query = &consent.discrepancy_notes[0];
    assert_eq!(query.id.as_deref(), Some("DN_14"));
    assert_eq!(query.note_type.as_deref(), Some("Query"));
    assert_eq!(query.status.as_deref(), Some("Resolution Proposed"));
    assert_eq!(query.child_notes.len(), 2);
    let first = &query.child_notes[0];
    assert_eq!(first.status.as_deref(), Some("New"));
    assert_eq!(first.date_created.as_deref(), Some("2024-02-05"));
    assert_eq!(first.user_name.as_deref(), Some("mon_ana"));
    assert_eq!(first.name.as_deref(), Some("Ana Monitor"));
    assert_eq!(
        first.user_oid.as_deref(),
        Some("USR_7"),
        "trailing space trimmed"
    );
    assert_eq!(
        first.description.as_deref(),
        Some("Consent date after screening?")
    );
    assert!(
        first
            .detailed_note
            .as_deref()
            .is_some_and(|n| n.contains("ISF"))
    );
    let answer = &query.child_notes[1];
    assert_eq!(answer.user_name.as_deref(), Some("crc_tom"));
    assert_eq!(answer.user_oid.as_deref(), Some("USR_3"));
    assert_eq!(
        consent.discrepancy_notes[1].note_type.as_deref(),
        Some("Annotation")
    );
    let dose = &subject.study_events[1].forms[0].item_groups[0].items[0];
    assert_eq!(dose.discrepancy_notes[0].child_notes.len(), 3);
    assert_eq!(dose.discrepancy_notes[0].status.as_deref(), Some("Closed"));

    let messages: Vec<String> = imported.warnings.iter().map(ToString::to_string).collect();
    assert!(
        !messages
            .iter()
            .any(|m| m.contains("DiscrepancyNotes inside ItemData")),
        "notes on items are read, not reported: {messages:#?}"
    );
    let on_subject = imported
        .warnings
        .iter()
        .find(|w| {
            w.message
                .contains("vendor extension OpenClinica:DiscrepancyNotes inside SubjectData")
        })
        .unwrap_or_else(|| panic!("a note on the subject is reported: {messages:#?}"));
    let text = fixture("openclinica_style_1_3.xml");
    let line = text
        .lines()
        .position(|l| l.contains(r#"EntityID="SS_1001""#))
        .expect("the fixture has a note on the subject")
        + 1;
    assert_eq!(on_subject.line as usize, line);
}

#[test]
fn what_the_notes_and_typed_items_hold_beyond_what_is_read_is_reported() {
    let text = fixture("openclinica_style_1_3.xml")
        .replace(
            r#"<ItemDataBase64Binary ItemOID="I_DOSIN_SCAN">JVBERi0xLjQKJcfsj6IK</ItemDataBase64Binary>"#,
            r#"<ItemDataBase64Binary ItemOID="I_DOSIN_SCAN">JVBERi0xLjQKJcfsj6IK<OpenClinica:DiscrepancyNotes EntityID="I_DOSIN_SCAN"><OpenClinica:DiscrepancyNote ID="DN_99"><OpenClinica:ChildNote><OpenClinica:Description>hidden</OpenClinica:Description></OpenClinica:ChildNote></OpenClinica:DiscrepancyNote></OpenClinica:DiscrepancyNotes></ItemDataBase64Binary>"#,
        )
        .replace(
            r#"<OpenClinica:DiscrepancyNote ID="DN_20""#,
            r#"<OpenClinica:DiscrepancyNote Severity="High" ID="DN_20""#,
        );
    let imported = read_str(&text).expect("accepted");
    let dosing = &imported.odm.clinical_data[0].subjects[0].study_events[1].forms[0].item_groups[0];
    assert_eq!(
        dosing.items[2].value,
        ItemValue::Value("JVBERi0xLjQKJcfsj6IK".into()),
        "the value is the element's own text, not its children's"
    );
    let messages: Vec<String> = imported.warnings.iter().map(ToString::to_string).collect();
    for expected in [
        "OpenClinica:DiscrepancyNotes inside ItemDataBase64Binary was not imported",
        "attribute Severity of OpenClinica:DiscrepancyNote was not imported",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "missing {expected:?} in {messages:#?}"
        );
    }
}

#[test]
fn an_odm_2_file_is_refused_naming_what_and_where() {
    let text = r#"<?xml version="1.0"?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v2.0" ODMVersion="2.0" FileOID="x" FileType="Snapshot" CreationDateTime="2024-01-01T00:00:00">
</ODM>"#;
    let r = refused(text);
    assert_eq!(r.errors[0].line, 2);
    assert!(r.errors[0].message.contains("ODM 2.0"), "{r}");

    // ODM 2.0 constructs inside a file that claims 1.3.
    let text = fixture("cardio_1_3_2.xml").replace(
        r#"<ItemGroupDef OID="IG.AE" Name="Adverse event" Repeating="Yes" Domain="AE">"#,
        r#"<ItemGroupDef OID="IG.AE" Name="Adverse event" Repeating="Yes" Domain="AE">
        <ItemGroupRef ItemGroupOID="IG.VS" Mandatory="No"/>"#,
    )
    .replace(
        "<Protocol>",
        "<Protocol>\n        <StudyEventGroupRef StudyEventGroupOID=\"SEG.1\" Mandatory=\"Yes\"/>",
    );
    let r = refused(&text);
    let shown = r.to_string();
    assert!(shown.contains("nothing was imported"), "{shown}");
    assert!(
        r.errors.iter().any(|e| e
            .message
            .contains("ItemGroupRef inside an ItemGroupDef is an ODM 2.0")),
        "{shown}"
    );
    assert!(
        r.errors.iter().any(|e| e
            .message
            .contains("StudyEventGroupRef is an ODM 2.0 element")),
        "{shown}"
    );

    let r =
        refused(&fixture("cardio_1_3_2.xml").replace("ODMVersion=\"1.3.2\"", "ODMVersion=\"1.2\""));
    assert!(r.errors[0].message.contains("1.2"), "{r}");
}

#[test]
fn malformed_xml_is_refused_with_its_position() {
    let r = refused(
        "<ODM xmlns=\"http://www.cdisc.org/ns/odm/v1.3\">\n  <Study OID=\"S\">\n  </Stdy>\n</ODM>",
    );
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].line, 3);
    assert!(r.errors[0].message.contains("not well-formed"), "{r}");

    let r = refused("<html><body>not odm</body></html>");
    assert!(r.errors[0].message.contains("not ODM"), "{r}");

    let mut bytes = fixture("cardio_1_3_2.xml").into_bytes();
    let at = bytes.len() / 2;
    bytes[at] = 0xFF;
    let r = read_bytes(&bytes).expect_err("invalid UTF-8");
    assert!(r.errors[0].line > 1, "{r}");
}

#[test]
fn dangling_references_and_duplicates_are_all_reported_with_lines() {
    let text = fixture("cardio_1_3_2.xml")
        .replace(r#"<FormRef FormOID="F.DM""#, r#"<FormRef FormOID="F.DEMOG""#)
        .replace(r#"<CodeListRef CodeListOID="CL.AESEV"/>"#, r#"<CodeListRef CodeListOID="CL.SEVERITY"/>"#)
        .replace(r#"DataType="partialDate" SDSVarName="AESTDTC""#, r#"DataType="fuzzyDate" SDSVarName="AESTDTC""#)
        .replace(
            r#"<ItemRef ItemOID="I.AESER" OrderNumber="4" Mandatory="Yes"/>"#,
            r#"<ItemRef ItemOID="I.AESER" OrderNumber="4" Mandatory="Yes"/><ItemRef ItemOID="I.AESER" Mandatory="Yes"/>"#,
        );
    let r = refused(&text);
    let shown = r.to_string();
    for expected in [
        "refers to FormDef F.DEMOG, which is not defined",
        "refers to CodeList CL.SEVERITY, which is not defined",
        "DataType=\"fuzzyDate\" is not an ODM 1.3 data type",
        "refers to ItemDef I.AESER twice",
    ] {
        assert!(shown.contains(expected), "missing {expected:?} in\n{shown}");
    }
    assert!(r.errors.iter().all(|e| e.line > 0));
}

#[test]
fn clinical_data_that_does_not_fit_its_metadata_is_refused_entirely() {
    let text = fixture("cardio_1_3_2.xml")
        .replace(r#"Value="152""#, r#"Value="15x""#)
        .replace(
            r#"<ItemData ItemOID="I.SEX" Value="F"/>"#,
            r#"<ItemData ItemOID="I.SEX" Value="W"/>"#,
        )
        .replace(r#"Value="71.2""#, r#"Value="71.25""#)
        .replace(
            r#"<ItemData ItemOID="I.AESER" Value="N"/>
          </ItemGroupData>
          <ItemGroupData ItemGroupOID="IG.AE" ItemGroupRepeatKey="2">"#,
            r#"<ItemData ItemOID="I.SYSBP" Value="120"/>
          </ItemGroupData>
          <ItemGroupData ItemGroupOID="IG.AE" ItemGroupRepeatKey="2">"#,
        )
        .replace(
            r#"<FormData FormOID="F.AE">"#,
            r#"<FormData FormOID="F.AE" FormRepeatKey="3">"#,
        );
    let r = refused(&text);
    let shown = r.to_string();
    for expected in [
        "\"15x\" is not a valid integer value",
        "value \"W\" of I.SEX is not a code of code list CL.SEX",
        "more than the item's SignificantDigits of 1",
        "item I.SYSBP is not part of item group IG.AE",
        "form F.AE does not repeat but has FormRepeatKey \"3\"",
    ] {
        assert!(shown.contains(expected), "missing {expected:?} in\n{shown}");
    }
    let bad_sysbp = r
        .errors
        .iter()
        .find(|e| e.message.contains("15x"))
        .expect("reported");
    let line = text
        .lines()
        .position(|l| l.contains("Value=\"15x\""))
        .map(|i| i as u32 + 1);
    assert_eq!(Some(bad_sysbp.line), line);
}

#[test]
fn utf16_and_latin1_files_read_the_same_as_utf8() {
    let text = fixture("cardio_1_3_2.xml");
    let utf8 = read_str(&text).expect("utf-8").odm;
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    assert_eq!(read_bytes(&utf16).expect("utf-16").odm, utf8);

    let latin1_text = text.replacen("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"", 1);
    let latin1: Vec<u8> = latin1_text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("fixture is Latin-1"))
        .collect();
    let odm = read_bytes(&latin1).expect("latin-1").odm;
    assert_eq!(
        odm.studies[0].metadata_versions[0]
            .code_list("CL.SEX")
            .and_then(|c| c.items[1].decode.get("de")),
        Some("Männlich")
    );
}

#[test]
fn a_file_without_the_odm_namespace_is_read_with_a_warning() {
    let text = fixture("redcap_style_1_3_1.xml")
        .replace(r#"xmlns="http://www.cdisc.org/ns/odm/v1.3" "#, "");
    let imported = read_str(&text).expect("accepted");
    assert!(
        imported.warnings[0]
            .message
            .contains("does not declare the ODM namespace"),
        "{:#?}",
        imported.warnings
    );
    assert_eq!(imported.odm.studies[0].metadata_versions[0].items.len(), 8);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn on_damaged_files(
            which in 0usize..3,
            cut_at in 0usize..20_000,
            cut_len in 0usize..400,
            insert in ".{0,20}",
        ) {
            let name = ["cardio_1_3_2.xml", "openclinica_style_1_3.xml", "redcap_style_1_3_1.xml"][which];
            let text = fixture(name);
            let mut start = cut_at.min(text.len());
            while !text.is_char_boundary(start) { start -= 1; }
            let mut end = (start + cut_len).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            let damaged = format!("{}{}{}", &text[..start], insert, &text[end..]);
            let _ = read_str(&damaged);
        }

        #[test]
        fn on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_bytes(&bytes);
        }
    }
}
