//! The part of ODM 1.3.2 that Trellis imports and exports, as plain data.
//!
//! Every definition read from a file keeps the line it came from (`line`, 0 when the
//! value was built in memory), so that later checks, such as a clinical value that does
//! not fit its item, can still name where in the file the problem is.

use std::fmt;

/// Text in several languages (`TranslatedText` with optional `xml:lang`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Translated(pub Vec<TranslatedText>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslatedText {
    pub lang: Option<String>,
    pub text: String,
}

impl Translated {
    pub fn plain(text: impl Into<String>) -> Self {
        Self(vec![TranslatedText {
            lang: None,
            text: text.into(),
        }])
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The text for `lang` (matching the primary subtag too, so `de` finds `de-CH`),
    /// else the text without a language, else the first one.
    pub fn get(&self, lang: &str) -> Option<&str> {
        let primary = |l: &str| l.split(['-', '_']).next().unwrap_or(l).to_ascii_lowercase();
        let wanted = primary(lang);
        self.0
            .iter()
            .find(|t| {
                t.lang
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(lang))
            })
            .or_else(|| {
                self.0
                    .iter()
                    .find(|t| t.lang.as_deref().is_some_and(|l| primary(l) == wanted))
            })
            .or_else(|| self.0.iter().find(|t| t.lang.is_none()))
            .or_else(|| self.0.first())
            .map(|t| t.text.as_str())
    }
}

/// A whole ODM document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Odm {
    pub file_oid: String,
    pub creation_date_time: String,
    pub file_type: FileType,
    pub granularity: Option<String>,
    pub description: Option<String>,
    /// The version the file declared (`1.3`, `1.3.1`, `1.3.2`); we always write 1.3.2.
    pub odm_version: Option<String>,
    pub originator: Option<String>,
    pub source_system: Option<String>,
    pub source_system_version: Option<String>,
    pub studies: Vec<Study>,
    pub admin_data: Vec<AdminData>,
    pub clinical_data: Vec<ClinicalData>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileType {
    #[default]
    Snapshot,
    Transactional,
}

impl FileType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "Snapshot",
            Self::Transactional => "Transactional",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Study {
    pub oid: String,
    pub name: String,
    pub description: String,
    pub protocol_name: String,
    pub measurement_units: Vec<MeasurementUnit>,
    pub metadata_versions: Vec<MetaDataVersion>,
    pub line: u32,
}

impl Study {
    pub fn metadata_version(&self, oid: &str) -> Option<&MetaDataVersion> {
        self.metadata_versions.iter().find(|m| m.oid == oid)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeasurementUnit {
    pub oid: String,
    pub name: String,
    pub symbol: Translated,
    pub line: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    pub context: String,
    pub name: String,
}

/// One version of a study's case report forms (a protocol amendment gets a new one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetaDataVersion {
    pub oid: String,
    pub name: String,
    pub description: Option<String>,
    /// Study events in protocol order.
    pub protocol: Vec<Ref>,
    pub study_events: Vec<StudyEventDef>,
    pub forms: Vec<FormDef>,
    pub item_groups: Vec<ItemGroupDef>,
    pub items: Vec<ItemDef>,
    pub code_lists: Vec<CodeList>,
    pub conditions: Vec<ConditionDef>,
    pub methods: Vec<MethodDef>,
    pub line: u32,
}

impl MetaDataVersion {
    pub fn study_event(&self, oid: &str) -> Option<&StudyEventDef> {
        self.study_events.iter().find(|d| d.oid == oid)
    }
    pub fn form(&self, oid: &str) -> Option<&FormDef> {
        self.forms.iter().find(|d| d.oid == oid)
    }
    pub fn item_group(&self, oid: &str) -> Option<&ItemGroupDef> {
        self.item_groups.iter().find(|d| d.oid == oid)
    }
    pub fn item(&self, oid: &str) -> Option<&ItemDef> {
        self.items.iter().find(|d| d.oid == oid)
    }
    pub fn code_list(&self, oid: &str) -> Option<&CodeList> {
        self.code_lists.iter().find(|d| d.oid == oid)
    }
    pub fn condition(&self, oid: &str) -> Option<&ConditionDef> {
        self.conditions.iter().find(|d| d.oid == oid)
    }
}

/// A reference from a parent definition to a child (`StudyEventRef`, `FormRef`,
/// `ItemGroupRef`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ref {
    pub oid: String,
    pub order_number: Option<u32>,
    pub mandatory: bool,
    pub collection_exception_condition: Option<String>,
    pub line: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StudyEventType {
    #[default]
    Scheduled,
    Unscheduled,
    Common,
}

impl StudyEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "Scheduled",
            Self::Unscheduled => "Unscheduled",
            Self::Common => "Common",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StudyEventDef {
    pub oid: String,
    pub name: String,
    pub repeating: bool,
    pub event_type: StudyEventType,
    pub category: Option<String>,
    pub description: Translated,
    pub forms: Vec<Ref>,
    pub aliases: Vec<Alias>,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FormDef {
    pub oid: String,
    pub name: String,
    pub repeating: bool,
    pub description: Translated,
    pub item_groups: Vec<Ref>,
    pub aliases: Vec<Alias>,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemGroupDef {
    pub oid: String,
    pub name: String,
    /// Repeating groups hold log-form rows (adverse events, concomitant medications).
    pub repeating: bool,
    pub domain: Option<String>,
    pub sas_dataset_name: Option<String>,
    pub description: Translated,
    pub items: Vec<ItemRef>,
    pub aliases: Vec<Alias>,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemRef {
    pub item_oid: String,
    pub order_number: Option<u32>,
    pub mandatory: bool,
    pub key_sequence: Option<u32>,
    pub method_oid: Option<String>,
    pub role: Option<String>,
    /// Skip logic: the item is not collected when this ConditionDef is true.
    pub collection_exception_condition: Option<String>,
    pub line: u32,
}

/// ODM item data types (1.3.2 `DataType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DataType {
    Integer,
    Float,
    Double,
    #[default]
    Text,
    String,
    Boolean,
    Date,
    Time,
    Datetime,
    PartialDate,
    PartialTime,
    PartialDatetime,
    IncompleteDate,
    IncompleteTime,
    IncompleteDatetime,
    DurationDatetime,
    IntervalDatetime,
    Uri,
    HexBinary,
    Base64Binary,
    HexFloat,
    Base64Float,
}

impl DataType {
    pub const ALL: [DataType; 22] = [
        Self::Integer,
        Self::Float,
        Self::Double,
        Self::Text,
        Self::String,
        Self::Boolean,
        Self::Date,
        Self::Time,
        Self::Datetime,
        Self::PartialDate,
        Self::PartialTime,
        Self::PartialDatetime,
        Self::IncompleteDate,
        Self::IncompleteTime,
        Self::IncompleteDatetime,
        Self::DurationDatetime,
        Self::IntervalDatetime,
        Self::Uri,
        Self::HexBinary,
        Self::Base64Binary,
        Self::HexFloat,
        Self::Base64Float,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Double => "double",
            Self::Text => "text",
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Time => "time",
            Self::Datetime => "datetime",
            Self::PartialDate => "partialDate",
            Self::PartialTime => "partialTime",
            Self::PartialDatetime => "partialDatetime",
            Self::IncompleteDate => "incompleteDate",
            Self::IncompleteTime => "incompleteTime",
            Self::IncompleteDatetime => "incompleteDatetime",
            Self::DurationDatetime => "durationDatetime",
            Self::IntervalDatetime => "intervalDatetime",
            Self::Uri => "URI",
            Self::HexBinary => "hexBinary",
            Self::Base64Binary => "base64Binary",
            Self::HexFloat => "hexFloat",
            Self::Base64Float => "base64Float",
        }
    }

    /// Parses the attribute value; older tools differ in case (`partialdate`, `uri`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemDef {
    pub oid: String,
    pub name: String,
    pub data_type: DataType,
    pub length: Option<u32>,
    pub significant_digits: Option<u32>,
    pub sas_field_name: Option<String>,
    pub sds_var_name: Option<String>,
    pub origin: Option<String>,
    pub comment: Option<String>,
    pub description: Translated,
    pub question: Translated,
    pub measurement_units: Vec<String>,
    pub range_checks: Vec<RangeCheck>,
    pub code_list: Option<String>,
    pub aliases: Vec<Alias>,
    pub line: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparator {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    In,
    NotIn,
}

impl Comparator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lt => "LT",
            Self::Le => "LE",
            Self::Gt => "GT",
            Self::Ge => "GE",
            Self::Eq => "EQ",
            Self::Ne => "NE",
            Self::In => "IN",
            Self::NotIn => "NOTIN",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "LT" => Self::Lt,
            "LE" => Self::Le,
            "GT" => Self::Gt,
            "GE" => Self::Ge,
            "EQ" => Self::Eq,
            "NE" => Self::Ne,
            "IN" => Self::In,
            // ODM 1.3.0 spelled it NI
            "NOTIN" | "NI" => Self::NotIn,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SoftHard {
    /// A warning: the value is kept and a query is opened.
    #[default]
    Soft,
    /// The value is refused.
    Hard,
}

impl SoftHard {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Soft => "Soft",
            Self::Hard => "Hard",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RangeCheck {
    pub comparator: Option<Comparator>,
    pub soft_hard: SoftHard,
    pub check_values: Vec<String>,
    pub formal_expressions: Vec<FormalExpression>,
    pub measurement_unit: Option<String>,
    pub error_message: Translated,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormalExpression {
    pub context: Option<String>,
    pub text: String,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CodeList {
    pub oid: String,
    pub name: String,
    pub data_type: DataType,
    pub sas_format_name: Option<String>,
    pub description: Translated,
    pub items: Vec<CodeListItem>,
    /// A code list defined elsewhere (MedDRA, WHODrug), by name, version and address.
    pub external: Option<ExternalCodeList>,
    pub aliases: Vec<Alias>,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CodeListItem {
    pub coded_value: String,
    /// Empty for an `EnumeratedItem` (a code without a decode).
    pub decode: Translated,
    pub rank: Option<String>,
    pub order_number: Option<u32>,
    pub aliases: Vec<Alias>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExternalCodeList {
    pub dictionary: Option<String>,
    pub version: Option<String>,
    pub href: Option<String>,
    pub reference: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConditionDef {
    pub oid: String,
    pub name: String,
    pub description: Translated,
    pub expressions: Vec<FormalExpression>,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodDef {
    pub oid: String,
    pub name: String,
    pub method_type: Option<String>,
    pub description: Translated,
    pub expressions: Vec<FormalExpression>,
    pub line: u32,
}

/// Users and locations that audit records and signatures refer to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdminData {
    pub study_oid: Option<String>,
    pub users: Vec<User>,
    pub locations: Vec<Location>,
    pub signature_defs: Vec<SignatureDef>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub oid: String,
    pub login_name: Option<String>,
    pub display_name: Option<String>,
    pub full_name: Option<String>,
    pub organization: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub oid: String,
    pub name: String,
    pub location_type: Option<String>,
    /// (study OID, metadata version OID, effective date)
    pub metadata_versions: Vec<(String, String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureDef {
    pub oid: String,
    pub methodology: Option<String>,
    pub meaning: String,
    pub legal_reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionType {
    Insert,
    Update,
    Remove,
    Upsert,
    Context,
}

impl TransactionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "Insert",
            Self::Update => "Update",
            Self::Remove => "Remove",
            Self::Upsert => "Upsert",
            Self::Context => "Context",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "Insert" => Self::Insert,
            "Update" => Self::Update,
            "Remove" => Self::Remove,
            "Upsert" => Self::Upsert,
            "Context" => Self::Context,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClinicalData {
    pub study_oid: String,
    pub metadata_version_oid: String,
    pub subjects: Vec<SubjectData>,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubjectData {
    pub subject_key: String,
    /// The subject's label where the source's `SubjectKey` is an internal key
    /// (OpenClinica's `StudySubjectID`); Trellis registers the subject under it.
    pub label: Option<String>,
    pub transaction_type: Option<TransactionType>,
    pub audit_record: Option<AuditRecord>,
    pub signature: Option<Signature>,
    pub investigator_ref: Option<String>,
    /// The site (an AdminData `Location` OID).
    pub site_ref: Option<String>,
    pub annotations: Vec<Annotation>,
    pub study_events: Vec<StudyEventData>,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StudyEventData {
    pub study_event_oid: String,
    pub repeat_key: Option<String>,
    pub transaction_type: Option<TransactionType>,
    pub audit_record: Option<AuditRecord>,
    pub signature: Option<Signature>,
    pub annotations: Vec<Annotation>,
    pub forms: Vec<FormData>,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FormData {
    pub form_oid: String,
    pub repeat_key: Option<String>,
    pub transaction_type: Option<TransactionType>,
    pub audit_record: Option<AuditRecord>,
    pub signature: Option<Signature>,
    pub annotations: Vec<Annotation>,
    pub item_groups: Vec<ItemGroupData>,
    pub line: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemGroupData {
    pub item_group_oid: String,
    pub repeat_key: Option<String>,
    pub transaction_type: Option<TransactionType>,
    pub audit_record: Option<AuditRecord>,
    pub signature: Option<Signature>,
    pub annotations: Vec<Annotation>,
    pub items: Vec<ItemData>,
    pub line: u32,
}

/// What an `ItemData` says about its item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemValue {
    Value(String),
    /// `IsNull="Yes"`: the item is known to have no value.
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ItemData {
    pub item_oid: String,
    pub value: ItemValue,
    pub transaction_type: Option<TransactionType>,
    pub measurement_unit: Option<String>,
    pub audit_record: Option<AuditRecord>,
    pub signature: Option<Signature>,
    pub annotations: Vec<Annotation>,
    /// Query threads OpenClinica 3.x exported on this item in its own extension
    /// (`OpenClinica:DiscrepancyNotes`); never written back out.
    pub discrepancy_notes: Vec<DiscrepancyNote>,
    pub line: u32,
}

impl ItemData {
    pub fn new(item_oid: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            item_oid: item_oid.into(),
            value: ItemValue::Value(value.into()),
            transaction_type: None,
            measurement_unit: None,
            audit_record: None,
            signature: None,
            annotations: Vec::new(),
            discrepancy_notes: Vec::new(),
            line: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditPoint {
    Monitoring,
    DataManagement,
    DBAudit,
}

impl EditPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monitoring => "Monitoring",
            Self::DataManagement => "DataManagement",
            Self::DBAudit => "DBAudit",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "Monitoring" => Self::Monitoring,
            "DataManagement" => Self::DataManagement,
            "DBAudit" => Self::DBAudit,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: Option<String>,
    pub edit_point: Option<EditPoint>,
    pub used_imputation_method: Option<bool>,
    pub user_oid: String,
    pub location_oid: String,
    pub date_time_stamp: String,
    pub reason_for_change: Option<String>,
    pub source_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signature {
    pub id: Option<String>,
    pub user_oid: String,
    pub location_oid: String,
    pub signature_def_oid: String,
    pub date_time_stamp: String,
}

/// A comment and flags attached to clinical data; Trellis exports queries this way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotation {
    pub seq_num: u32,
    pub id: Option<String>,
    pub comment: Option<Comment>,
    pub flags: Vec<Flag>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comment {
    pub sponsor_or_site: Option<String>,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flag {
    pub value: String,
    pub value_code_list: String,
    pub flag_type: Option<(String, String)>,
}

/// One query or note thread from an OpenClinica 3.x extract
/// (`OpenClinica:DiscrepancyNote`), with its notes in the order written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscrepancyNote {
    pub id: Option<String>,
    /// `Query`, `Failed Validation Check`, `Annotation` or `Reason for Change`.
    pub note_type: Option<String>,
    /// The thread's status: `New`, `Updated`, `Resolution Proposed`, `Closed` or
    /// `Not Applicable`.
    pub status: Option<String>,
    pub date_updated: Option<String>,
    pub child_notes: Vec<ChildNote>,
    pub line: u32,
}

/// One note of a discrepancy note thread (`OpenClinica:ChildNote`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildNote {
    pub id: Option<String>,
    /// The thread's status this note set.
    pub status: Option<String>,
    pub date_created: Option<String>,
    /// The author's user name, and full name where the extract gives it.
    pub user_name: Option<String>,
    pub name: Option<String>,
    pub user_oid: Option<String>,
    pub description: Option<String>,
    pub detailed_note: Option<String>,
}
