//! Writing strictly valid ODM 1.3.2.
//!
//! Elements are written in the order the schema's sequences demand, whatever order the
//! model was read in, and required parts the model may lack (a `Name`, a
//! `Description` on a ConditionDef) are filled from what is there, so the output always
//! validates against `ODM1-3-2.xsd`. Clinical data streams subject by subject, so a
//! whole study's export never has to sit in memory.

use std::io::{self, Write};

use crate::model::*;
use crate::read::ODM_NS;

/// What the `ODM` root element says about the file.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub file_oid: String,
    pub creation_date_time: String,
    pub file_type: FileType,
    pub granularity: Option<String>,
    pub description: Option<String>,
    pub originator: Option<String>,
    pub source_system: Option<String>,
    pub source_system_version: Option<String>,
    pub as_of_date_time: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Studies,
    AdminData,
    ClinicalData,
    InClinicalData,
}

/// Writes one ODM document. Call [`OdmWriter::finish`] to close it.
pub struct OdmWriter<W: Write> {
    out: Xml<W>,
    stage: Stage,
}

fn order_error(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("ODM order: {what} cannot follow what was already written"),
    )
}

impl<W: Write> OdmWriter<W> {
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut xml = Xml::new(out);
        xml.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")?;
        xml.open(
            "ODM",
            &[
                ("xmlns", Some(ODM_NS)),
                ("xmlns:ds", Some("http://www.w3.org/2000/09/xmldsig#")),
                ("Description", header.description.as_deref()),
                ("FileType", Some(header.file_type.as_str())),
                ("Granularity", header.granularity.as_deref()),
                ("FileOID", Some(non_empty(&header.file_oid, "Trellis"))),
                ("CreationDateTime", Some(&header.creation_date_time)),
                ("AsOfDateTime", header.as_of_date_time.as_deref()),
                ("ODMVersion", Some("1.3.2")),
                ("Originator", header.originator.as_deref()),
                ("SourceSystem", header.source_system.as_deref()),
                (
                    "SourceSystemVersion",
                    header.source_system_version.as_deref(),
                ),
            ],
        )?;
        Ok(Self {
            out: xml,
            stage: Stage::Studies,
        })
    }

    pub fn study(&mut self, study: &Study) -> io::Result<()> {
        if self.stage > Stage::Studies {
            return Err(order_error("Study"));
        }
        let x = &mut self.out;
        x.open("Study", &[("OID", Some(&study.oid))])?;
        x.open("GlobalVariables", &[])?;
        x.text_element("StudyName", &[], non_empty(&study.name, &study.oid))?;
        x.text_element("StudyDescription", &[], &study.description)?;
        x.text_element(
            "ProtocolName",
            &[],
            non_empty(&study.protocol_name, &study.oid),
        )?;
        x.close("GlobalVariables")?;
        if !study.measurement_units.is_empty() {
            x.open("BasicDefinitions", &[])?;
            for unit in &study.measurement_units {
                x.open(
                    "MeasurementUnit",
                    &[
                        ("OID", Some(&unit.oid)),
                        ("Name", Some(non_empty(&unit.name, &unit.oid))),
                    ],
                )?;
                let symbol = if unit.symbol.is_empty() {
                    Translated::plain(non_empty(&unit.name, &unit.oid))
                } else {
                    unit.symbol.clone()
                };
                x.translated("Symbol", &symbol)?;
                x.close("MeasurementUnit")?;
            }
            x.close("BasicDefinitions")?;
        }
        for mdv in &study.metadata_versions {
            metadata_version(x, mdv)?;
        }
        x.close("Study")
    }

    pub fn admin_data(&mut self, admin: &AdminData) -> io::Result<()> {
        if self.stage > Stage::AdminData {
            return Err(order_error("AdminData"));
        }
        self.stage = Stage::AdminData;
        let x = &mut self.out;
        x.open("AdminData", &[("StudyOID", admin.study_oid.as_deref())])?;
        for user in &admin.users {
            x.open("User", &[("OID", Some(&user.oid))])?;
            for (name, value) in [
                ("LoginName", &user.login_name),
                ("DisplayName", &user.display_name),
                ("FullName", &user.full_name),
                ("Organization", &user.organization),
            ] {
                if let Some(v) = value {
                    x.text_element(name, &[], v)?;
                }
            }
            x.close("User")?;
        }
        for location in &admin.locations {
            x.open(
                "Location",
                &[
                    ("OID", Some(&location.oid)),
                    ("Name", Some(non_empty(&location.name, &location.oid))),
                    ("LocationType", location.location_type.as_deref()),
                ],
            )?;
            for (study, mdv, date) in &location.metadata_versions {
                x.empty(
                    "MetaDataVersionRef",
                    &[
                        ("StudyOID", Some(study)),
                        ("MetaDataVersionOID", Some(mdv)),
                        ("EffectiveDate", Some(date)),
                    ],
                )?;
            }
            x.close("Location")?;
        }
        for def in &admin.signature_defs {
            x.open(
                "SignatureDef",
                &[
                    ("OID", Some(&def.oid)),
                    ("Methodology", def.methodology.as_deref()),
                ],
            )?;
            x.text_element("Meaning", &[], &def.meaning)?;
            x.text_element("LegalReason", &[], &def.legal_reason)?;
            x.close("SignatureDef")?;
        }
        x.close("AdminData")
    }

    pub fn begin_clinical_data(
        &mut self,
        study_oid: &str,
        metadata_version_oid: &str,
    ) -> io::Result<()> {
        if self.stage == Stage::InClinicalData {
            return Err(order_error("ClinicalData inside ClinicalData"));
        }
        self.stage = Stage::InClinicalData;
        self.out.open(
            "ClinicalData",
            &[
                ("StudyOID", Some(study_oid)),
                ("MetaDataVersionOID", Some(metadata_version_oid)),
            ],
        )
    }

    pub fn subject(&mut self, subject: &SubjectData) -> io::Result<()> {
        if self.stage != Stage::InClinicalData {
            return Err(order_error("SubjectData outside ClinicalData"));
        }
        subject_data(&mut self.out, subject)
    }

    pub fn end_clinical_data(&mut self) -> io::Result<()> {
        if self.stage != Stage::InClinicalData {
            return Err(order_error("end of ClinicalData"));
        }
        self.stage = Stage::ClinicalData;
        self.out.close("ClinicalData")
    }

    /// Closes the document and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        if self.stage == Stage::InClinicalData {
            self.end_clinical_data()?;
        }
        self.out.close("ODM")?;
        self.out.raw("\n")?;
        self.out.out.flush()?;
        Ok(self.out.out)
    }
}

/// Writes a whole in-memory document.
pub fn write_odm<W: Write>(odm: &Odm, out: W) -> io::Result<W> {
    let header = Header {
        file_oid: odm.file_oid.clone(),
        creation_date_time: odm.creation_date_time.clone(),
        file_type: odm.file_type,
        granularity: odm.granularity.clone(),
        description: odm.description.clone(),
        originator: odm.originator.clone(),
        source_system: odm.source_system.clone(),
        source_system_version: odm.source_system_version.clone(),
        as_of_date_time: None,
    };
    let mut w = OdmWriter::new(out, &header)?;
    for study in &odm.studies {
        w.study(study)?;
    }
    for admin in &odm.admin_data {
        w.admin_data(admin)?;
    }
    for data in &odm.clinical_data {
        w.begin_clinical_data(&data.study_oid, &data.metadata_version_oid)?;
        for subject in &data.subjects {
            w.subject(subject)?;
        }
        w.end_clinical_data()?;
    }
    w.finish()
}

/// The document as a string.
pub fn to_string(odm: &Odm) -> String {
    match write_odm(odm, Vec::new()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        // Writing to a Vec cannot fail, and the model has no ordering to get wrong.
        Err(e) => format!("<!-- {e} -->"),
    }
}

fn non_empty<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.trim().is_empty() {
        fallback
    } else {
        value
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

fn metadata_version<W: Write>(x: &mut Xml<W>, mdv: &MetaDataVersion) -> io::Result<()> {
    x.open(
        "MetaDataVersion",
        &[
            ("OID", Some(&mdv.oid)),
            ("Name", Some(non_empty(&mdv.name, &mdv.oid))),
            ("Description", mdv.description.as_deref()),
        ],
    )?;
    if !mdv.protocol.is_empty() {
        x.open("Protocol", &[])?;
        for r in &mdv.protocol {
            reference(x, "StudyEventRef", "StudyEventOID", r)?;
        }
        x.close("Protocol")?;
    }
    for def in &mdv.study_events {
        x.open(
            "StudyEventDef",
            &[
                ("OID", Some(&def.oid)),
                ("Name", Some(non_empty(&def.name, &def.oid))),
                ("Repeating", Some(yes_no(def.repeating))),
                ("Type", Some(def.event_type.as_str())),
                ("Category", def.category.as_deref()),
            ],
        )?;
        description(x, &def.description)?;
        for r in &def.forms {
            reference(x, "FormRef", "FormOID", r)?;
        }
        aliases(x, &def.aliases)?;
        x.close("StudyEventDef")?;
    }
    for def in &mdv.forms {
        x.open(
            "FormDef",
            &[
                ("OID", Some(&def.oid)),
                ("Name", Some(non_empty(&def.name, &def.oid))),
                ("Repeating", Some(yes_no(def.repeating))),
            ],
        )?;
        description(x, &def.description)?;
        for r in &def.item_groups {
            reference(x, "ItemGroupRef", "ItemGroupOID", r)?;
        }
        aliases(x, &def.aliases)?;
        x.close("FormDef")?;
    }
    for def in &mdv.item_groups {
        x.open(
            "ItemGroupDef",
            &[
                ("OID", Some(&def.oid)),
                ("Name", Some(non_empty(&def.name, &def.oid))),
                ("Repeating", Some(yes_no(def.repeating))),
                ("SASDatasetName", def.sas_dataset_name.as_deref()),
                ("Domain", def.domain.as_deref()),
            ],
        )?;
        description(x, &def.description)?;
        for r in &def.items {
            let order = r.order_number.map(|n| n.to_string());
            let key = r.key_sequence.map(|n| n.to_string());
            x.empty(
                "ItemRef",
                &[
                    ("ItemOID", Some(&r.item_oid)),
                    ("KeySequence", key.as_deref()),
                    ("MethodOID", r.method_oid.as_deref()),
                    ("Role", r.role.as_deref()),
                    ("OrderNumber", order.as_deref()),
                    ("Mandatory", Some(yes_no(r.mandatory))),
                    (
                        "CollectionExceptionConditionOID",
                        r.collection_exception_condition.as_deref(),
                    ),
                ],
            )?;
        }
        aliases(x, &def.aliases)?;
        x.close("ItemGroupDef")?;
    }
    for def in &mdv.items {
        item_def(x, def)?;
    }
    for def in &mdv.code_lists {
        code_list(x, def)?;
    }
    for def in &mdv.conditions {
        x.open(
            "ConditionDef",
            &[
                ("OID", Some(&def.oid)),
                ("Name", Some(non_empty(&def.name, &def.oid))),
            ],
        )?;
        required_description(x, &def.description, non_empty(&def.name, &def.oid))?;
        for e in &def.expressions {
            formal_expression(x, e)?;
        }
        x.close("ConditionDef")?;
    }
    for def in &mdv.methods {
        x.open(
            "MethodDef",
            &[
                ("OID", Some(&def.oid)),
                ("Name", Some(non_empty(&def.name, &def.oid))),
                ("Type", def.method_type.as_deref()),
            ],
        )?;
        required_description(x, &def.description, non_empty(&def.name, &def.oid))?;
        for e in &def.expressions {
            formal_expression(x, e)?;
        }
        x.close("MethodDef")?;
    }
    x.close("MetaDataVersion")
}

fn reference<W: Write>(x: &mut Xml<W>, element: &str, oid_attr: &str, r: &Ref) -> io::Result<()> {
    let order = r.order_number.map(|n| n.to_string());
    x.empty(
        element,
        &[
            (oid_attr, Some(&r.oid)),
            ("OrderNumber", order.as_deref()),
            ("Mandatory", Some(yes_no(r.mandatory))),
            (
                "CollectionExceptionConditionOID",
                r.collection_exception_condition.as_deref(),
            ),
        ],
    )
}

fn description<W: Write>(x: &mut Xml<W>, text: &Translated) -> io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    x.translated("Description", text)
}

fn required_description<W: Write>(
    x: &mut Xml<W>,
    text: &Translated,
    fallback: &str,
) -> io::Result<()> {
    if text.is_empty() {
        x.translated("Description", &Translated::plain(fallback))
    } else {
        x.translated("Description", text)
    }
}

fn aliases<W: Write>(x: &mut Xml<W>, aliases: &[Alias]) -> io::Result<()> {
    for a in aliases {
        x.empty(
            "Alias",
            &[("Context", Some(&a.context)), ("Name", Some(&a.name))],
        )?;
    }
    Ok(())
}

fn formal_expression<W: Write>(x: &mut Xml<W>, e: &FormalExpression) -> io::Result<()> {
    x.text_element(
        "FormalExpression",
        &[("Context", e.context.as_deref())],
        &e.text,
    )
}

fn item_def<W: Write>(x: &mut Xml<W>, def: &ItemDef) -> io::Result<()> {
    let length = def.length.map(|n| n.to_string());
    let digits = def.significant_digits.map(|n| n.to_string());
    x.open(
        "ItemDef",
        &[
            ("OID", Some(&def.oid)),
            ("Name", Some(non_empty(&def.name, &def.oid))),
            ("DataType", Some(def.data_type.as_str())),
            ("Length", length.as_deref()),
            ("SignificantDigits", digits.as_deref()),
            ("SASFieldName", def.sas_field_name.as_deref()),
            ("SDSVarName", def.sds_var_name.as_deref()),
            ("Origin", def.origin.as_deref()),
            ("Comment", def.comment.as_deref()),
        ],
    )?;
    description(x, &def.description)?;
    if !def.question.is_empty() {
        x.translated("Question", &def.question)?;
    }
    for unit in &def.measurement_units {
        x.empty("MeasurementUnitRef", &[("MeasurementUnitOID", Some(unit))])?;
    }
    for check in &def.range_checks {
        // A check that has neither values nor expressions cannot be written validly
        // and says nothing; the reader refuses such checks.
        if check.check_values.is_empty() && check.formal_expressions.is_empty() {
            continue;
        }
        x.open(
            "RangeCheck",
            &[
                ("Comparator", check.comparator.map(Comparator::as_str)),
                ("SoftHard", Some(check.soft_hard.as_str())),
            ],
        )?;
        if check.check_values.is_empty() {
            for e in &check.formal_expressions {
                formal_expression(x, e)?;
            }
        } else {
            for v in &check.check_values {
                x.text_element("CheckValue", &[], v)?;
            }
        }
        if let Some(unit) = &check.measurement_unit {
            x.empty("MeasurementUnitRef", &[("MeasurementUnitOID", Some(unit))])?;
        }
        if !check.error_message.is_empty() {
            x.translated("ErrorMessage", &check.error_message)?;
        }
        x.close("RangeCheck")?;
    }
    if let Some(cl) = &def.code_list {
        x.empty("CodeListRef", &[("CodeListOID", Some(cl))])?;
    }
    aliases(x, &def.aliases)?;
    x.close("ItemDef")
}

fn code_list<W: Write>(x: &mut Xml<W>, def: &CodeList) -> io::Result<()> {
    // The schema allows only integer, float, text and string here.
    let data_type = match def.data_type {
        DataType::Integer => "integer",
        DataType::Float => "float",
        DataType::String => "string",
        _ => "text",
    };
    x.open(
        "CodeList",
        &[
            ("OID", Some(&def.oid)),
            ("Name", Some(non_empty(&def.name, &def.oid))),
            ("DataType", Some(data_type)),
            ("SASFormatName", def.sas_format_name.as_deref()),
        ],
    )?;
    description(x, &def.description)?;
    let enumerated = !def.items.is_empty() && def.items.iter().all(|i| i.decode.is_empty());
    if def.items.is_empty() {
        let ext = def.external.clone().unwrap_or_default();
        x.empty(
            "ExternalCodeList",
            &[
                ("Dictionary", ext.dictionary.as_deref()),
                ("Version", ext.version.as_deref()),
                ("ref", ext.reference.as_deref()),
                ("href", ext.href.as_deref()),
            ],
        )?;
    }
    for item in &def.items {
        let order = item.order_number.map(|n| n.to_string());
        let attrs = [
            ("CodedValue", Some(item.coded_value.as_str())),
            ("Rank", item.rank.as_deref()),
            ("OrderNumber", order.as_deref()),
        ];
        if enumerated {
            if item.aliases.is_empty() {
                x.empty("EnumeratedItem", &attrs)?;
            } else {
                x.open("EnumeratedItem", &attrs)?;
                aliases(x, &item.aliases)?;
                x.close("EnumeratedItem")?;
            }
        } else {
            x.open("CodeListItem", &attrs)?;
            let decode = if item.decode.is_empty() {
                Translated::plain(item.coded_value.clone())
            } else {
                item.decode.clone()
            };
            x.translated("Decode", &decode)?;
            aliases(x, &item.aliases)?;
            x.close("CodeListItem")?;
        }
    }
    aliases(x, &def.aliases)?;
    x.close("CodeList")
}

fn audit_record<W: Write>(x: &mut Xml<W>, r: &AuditRecord) -> io::Result<()> {
    x.open(
        "AuditRecord",
        &[
            ("EditPoint", r.edit_point.map(EditPoint::as_str)),
            ("UsedImputationMethod", r.used_imputation_method.map(yes_no)),
            ("ID", r.id.as_deref()),
        ],
    )?;
    x.empty("UserRef", &[("UserOID", Some(&r.user_oid))])?;
    x.empty("LocationRef", &[("LocationOID", Some(&r.location_oid))])?;
    x.text_element("DateTimeStamp", &[], &r.date_time_stamp)?;
    if let Some(reason) = &r.reason_for_change {
        x.text_element("ReasonForChange", &[], reason)?;
    }
    if let Some(source) = &r.source_id {
        x.text_element("SourceID", &[], source)?;
    }
    x.close("AuditRecord")
}

fn signature<W: Write>(x: &mut Xml<W>, s: &Signature) -> io::Result<()> {
    x.open("Signature", &[("ID", s.id.as_deref())])?;
    x.empty("UserRef", &[("UserOID", Some(&s.user_oid))])?;
    x.empty("LocationRef", &[("LocationOID", Some(&s.location_oid))])?;
    x.empty(
        "SignatureRef",
        &[("SignatureOID", Some(&s.signature_def_oid))],
    )?;
    x.text_element("DateTimeStamp", &[], &s.date_time_stamp)?;
    x.close("Signature")
}

fn annotation<W: Write>(x: &mut Xml<W>, a: &Annotation) -> io::Result<()> {
    let seq = a.seq_num.max(1).to_string();
    x.open(
        "Annotation",
        &[("SeqNum", Some(&seq)), ("ID", a.id.as_deref())],
    )?;
    if let Some(c) = &a.comment {
        x.text_element(
            "Comment",
            &[("SponsorOrSite", c.sponsor_or_site.as_deref())],
            &c.text,
        )?;
    }
    for f in &a.flags {
        x.open("Flag", &[])?;
        x.text_element(
            "FlagValue",
            &[("CodeListOID", Some(&f.value_code_list))],
            &f.value,
        )?;
        if let Some((value, cl)) = &f.flag_type {
            x.text_element("FlagType", &[("CodeListOID", Some(cl))], value)?;
        }
        x.close("Flag")?;
    }
    x.close("Annotation")
}

/// The audit record, signature and annotations every clinical data level may carry.
fn data_extras<W: Write>(
    x: &mut Xml<W>,
    audit: &Option<AuditRecord>,
    sig: &Option<Signature>,
) -> io::Result<()> {
    if let Some(a) = audit {
        audit_record(x, a)?;
    }
    if let Some(s) = sig {
        signature(x, s)?;
    }
    Ok(())
}

fn subject_data<W: Write>(x: &mut Xml<W>, s: &SubjectData) -> io::Result<()> {
    x.open(
        "SubjectData",
        &[
            ("SubjectKey", Some(&s.subject_key)),
            (
                "TransactionType",
                s.transaction_type.map(TransactionType::as_str),
            ),
        ],
    )?;
    data_extras(x, &s.audit_record, &s.signature)?;
    if let Some(inv) = &s.investigator_ref {
        x.empty("InvestigatorRef", &[("UserOID", Some(inv))])?;
    }
    if let Some(site) = &s.site_ref {
        x.empty("SiteRef", &[("LocationOID", Some(site))])?;
    }
    for a in &s.annotations {
        annotation(x, a)?;
    }
    for e in &s.study_events {
        x.open(
            "StudyEventData",
            &[
                ("StudyEventOID", Some(&e.study_event_oid)),
                ("StudyEventRepeatKey", e.repeat_key.as_deref()),
                (
                    "TransactionType",
                    e.transaction_type.map(TransactionType::as_str),
                ),
            ],
        )?;
        data_extras(x, &e.audit_record, &e.signature)?;
        for a in &e.annotations {
            annotation(x, a)?;
        }
        for f in &e.forms {
            x.open(
                "FormData",
                &[
                    ("FormOID", Some(&f.form_oid)),
                    ("FormRepeatKey", f.repeat_key.as_deref()),
                    (
                        "TransactionType",
                        f.transaction_type.map(TransactionType::as_str),
                    ),
                ],
            )?;
            data_extras(x, &f.audit_record, &f.signature)?;
            for a in &f.annotations {
                annotation(x, a)?;
            }
            for g in &f.item_groups {
                x.open(
                    "ItemGroupData",
                    &[
                        ("ItemGroupOID", Some(&g.item_group_oid)),
                        ("ItemGroupRepeatKey", g.repeat_key.as_deref()),
                        (
                            "TransactionType",
                            g.transaction_type.map(TransactionType::as_str),
                        ),
                    ],
                )?;
                data_extras(x, &g.audit_record, &g.signature)?;
                for a in &g.annotations {
                    annotation(x, a)?;
                }
                for i in &g.items {
                    item_data(x, i)?;
                }
                x.close("ItemGroupData")?;
            }
            x.close("FormData")?;
        }
        x.close("StudyEventData")?;
    }
    x.close("SubjectData")
}

fn item_data<W: Write>(x: &mut Xml<W>, i: &ItemData) -> io::Result<()> {
    let (value, is_null) = match &i.value {
        ItemValue::Value(v) => (Some(v.as_str()), None),
        ItemValue::Null => (None, Some("Yes")),
    };
    let attrs = [
        ("ItemOID", Some(i.item_oid.as_str())),
        (
            "TransactionType",
            i.transaction_type.map(TransactionType::as_str),
        ),
        ("IsNull", is_null),
        ("Value", value),
    ];
    let has_children = i.audit_record.is_some()
        || i.signature.is_some()
        || i.measurement_unit.is_some()
        || !i.annotations.is_empty();
    if !has_children {
        return x.empty("ItemData", &attrs);
    }
    x.open("ItemData", &attrs)?;
    data_extras(x, &i.audit_record, &i.signature)?;
    if let Some(unit) = &i.measurement_unit {
        x.empty("MeasurementUnitRef", &[("MeasurementUnitOID", Some(unit))])?;
    }
    for a in &i.annotations {
        annotation(x, a)?;
    }
    x.close("ItemData")
}

/// A minimal indenting XML writer that escapes everything it is given.
struct Xml<W: Write> {
    out: W,
    depth: usize,
}

type Attrs<'a> = [(&'a str, Option<&'a str>)];

impl<W: Write> Xml<W> {
    fn new(out: W) -> Self {
        Self { out, depth: 0 }
    }

    fn raw(&mut self, s: &str) -> io::Result<()> {
        self.out.write_all(s.as_bytes())
    }

    fn indent(&mut self) -> io::Result<()> {
        const SPACES: &[u8] = &[b' '; 64];
        let n = (self.depth * 2).min(SPACES.len());
        self.out.write_all(&SPACES[..n])
    }

    fn start_tag(&mut self, name: &str, attrs: &Attrs) -> io::Result<()> {
        self.indent()?;
        write!(self.out, "<{name}")?;
        for (key, value) in attrs {
            if let Some(v) = value {
                write!(self.out, " {key}=\"")?;
                escape(&mut self.out, v, true)?;
                self.out.write_all(b"\"")?;
            }
        }
        Ok(())
    }

    fn open(&mut self, name: &str, attrs: &Attrs) -> io::Result<()> {
        self.start_tag(name, attrs)?;
        self.out.write_all(b">\n")?;
        self.depth += 1;
        Ok(())
    }

    fn empty(&mut self, name: &str, attrs: &Attrs) -> io::Result<()> {
        self.start_tag(name, attrs)?;
        self.out.write_all(b"/>\n")
    }

    fn text_element(&mut self, name: &str, attrs: &Attrs, text: &str) -> io::Result<()> {
        self.start_tag(name, attrs)?;
        self.out.write_all(b">")?;
        escape(&mut self.out, text, false)?;
        writeln!(self.out, "</{name}>")
    }

    fn close(&mut self, name: &str) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        self.indent()?;
        writeln!(self.out, "</{name}>")
    }

    fn translated(&mut self, name: &str, text: &Translated) -> io::Result<()> {
        self.open(name, &[])?;
        for t in &text.0 {
            self.text_element(
                "TranslatedText",
                &[("xml:lang", t.lang.as_deref())],
                &t.text,
            )?;
        }
        self.close(name)
    }
}

/// Escapes markup characters; in attributes also whitespace that a parser would
/// otherwise normalise away. Characters XML 1.0 cannot carry at all become U+FFFD.
fn escape<W: Write>(out: &mut W, s: &str, attribute: bool) -> io::Result<()> {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let replacement: Option<&str> = match c {
            '&' => Some("&amp;"),
            '<' => Some("&lt;"),
            '>' => Some("&gt;"),
            '"' if attribute => Some("&quot;"),
            '\n' if attribute => Some("&#10;"),
            '\r' => Some("&#13;"),
            '\t' if attribute => Some("&#9;"),
            '\t' | '\n' => None,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => Some("\u{FFFD}"),
            _ => None,
        };
        if let Some(r) = replacement {
            out.write_all(&s.as_bytes()[start..i])?;
            out.write_all(r.as_bytes())?;
            start = i + c.len_utf8();
        }
    }
    out.write_all(&s.as_bytes()[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_values_exact() {
        let mut out = Vec::new();
        escape(&mut out, "a<b & \"c\"\n\td\u{1}", true).expect("vec write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "a&lt;b &amp; &quot;c&quot;&#10;&#9;d\u{FFFD}"
        );
    }
}
