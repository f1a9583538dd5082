//! Reading ODM 1.3.x files written by other tools.
//!
//! The reader accepts whatever is unambiguous even where a tool bent the schema
//! (element order, attribute case, ODM 1.3.0/1.3.1 spellings, a missing namespace) and
//! reports everything it does not import (vendor extensions, unsupported ODM elements)
//! with its line, so nothing is dropped silently. Anything that makes the meaning
//! unclear (a dangling reference, an unknown data type, an ODM 2.0 construct) is an
//! error, and a file with any error imports nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use roxmltree::{Document, Node};

use crate::model::*;
use crate::values::check_value;

pub const ODM_NS: &str = "http://www.cdisc.org/ns/odm/v1.3";
const ODM2_NS: &str = "http://www.cdisc.org/ns/odm/v2.0";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";
/// OpenClinica 3.x extension namespaces (`.../odm_ext_v130/v3.1` and its siblings).
const OPENCLINICA_NS_PREFIX: &str = "http://www.openclinica.org/ns/odm_ext";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about the file, at the line and column where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub line: u32,
    pub column: u32,
    /// Where in the document, e.g. `MetaDataVersion[v1]/ItemDef[I.AGE]`.
    pub path: String,
    pub message: String,
    /// Further lines with the same finding (vendor extensions repeat on every item).
    pub also_at: Vec<u32>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: line {}, column {}", self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, " ({})", self.path)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.also_at.is_empty() {
            const SHOWN: usize = 5;
            let lines: Vec<String> = self
                .also_at
                .iter()
                .take(SHOWN)
                .map(u32::to_string)
                .collect();
            write!(
                f,
                " (also at line{} {}{})",
                if self.also_at.len() == 1 { "" } else { "s" },
                lines.join(", "),
                if self.also_at.len() > SHOWN {
                    format!(" and {} more", self.also_at.len() - SHOWN)
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }
}

/// A file that was read; `warnings` lists what was not imported.
#[derive(Debug)]
pub struct Imported {
    pub odm: Odm,
    pub warnings: Vec<Diagnostic>,
}

/// A file that was refused; nothing in it may be imported.
#[derive(Debug, thiserror::Error)]
pub struct Rejected {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "the file was refused with {n} error{}; nothing was imported",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl Rejected {
    fn single(line: u32, column: u32, message: impl Into<String>) -> Self {
        Self {
            errors: vec![Diagnostic {
                severity: Severity::Error,
                line,
                column,
                path: String::new(),
                message: message.into(),
                also_at: Vec::new(),
            }],
            warnings: Vec::new(),
        }
    }
}

/// Reads a file's bytes: UTF-8 (with or without BOM), UTF-16 with BOM, or ISO-8859-1
/// when the XML declaration says so.
pub fn read_bytes(bytes: &[u8]) -> Result<Imported, Rejected> {
    let text = decode(bytes)?;
    read_str(&text)
}

fn decode(bytes: &[u8]) -> Result<String, Rejected> {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8(rest);
    }
    let utf16 = |rest: &[u8], big_endian: bool| -> Result<String, Rejected> {
        if !rest.len().is_multiple_of(2) {
            return Err(Rejected::single(1, 1, "truncated UTF-16 text"));
        }
        let units = rest.chunks_exact(2).map(|c| {
            if big_endian {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| Rejected::single(1, 1, "invalid UTF-16 text"))
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, false);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, true);
    }
    let head = &bytes[..bytes.len().min(200)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    if head.starts_with("<?xml")
        && (head.contains("iso-8859-1") || head.contains("latin1") || head.contains("windows-1252"))
    {
        // ISO-8859-1 maps bytes one to one onto the first 256 code points.
        return Ok(bytes.iter().map(|&b| char::from(b)).collect());
    }
    utf8(bytes)
}

fn utf8(bytes: &[u8]) -> Result<String, Rejected> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        let valid = &bytes[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
        let column = valid.iter().rev().take_while(|&&b| b != b'\n').count() as u32 + 1;
        Rejected::single(
            line,
            column,
            "the file is not valid UTF-8 and declares no other encoding",
        )
    })
}

/// Reads an ODM document from text.
pub fn read_str(text: &str) -> Result<Imported, Rejected> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| {
        let pos = e.pos();
        Rejected::single(pos.row, pos.col, format!("not well-formed XML: {e}"))
    })?;
    let mut reader = Reader {
        doc: &doc,
        odm_ns: None,
        diags: Vec::new(),
        grouped: HashMap::new(),
    };
    let odm = reader.document();
    reader.finish(odm)
}

struct Reader<'a, 'input> {
    doc: &'a Document<'input>,
    /// The namespace ODM elements are in: the ODM 1.3 one, or none for files that
    /// forgot to declare it.
    odm_ns: Option<&'a str>,
    diags: Vec<Diagnostic>,
    /// Index into `diags` of grouped warnings by (message, path-kind).
    grouped: HashMap<String, usize>,
}

/// Elements that exist only in ODM 2.0; finding one means the file is not ODM 1.3.
const ODM2_ONLY: &[&str] = &[
    "StudyEventGroupDef",
    "StudyEventGroupRef",
    "WorkflowDef",
    "WorkflowRef",
    "Coding",
    "Standards",
    "Standard",
    "StudyStructure",
    "Arm",
    "Epoch",
    "StudyTimings",
    "StudyTiming",
    "Resource",
    "SourceItems",
    "SourceItem",
    "CommentDef",
    "ValueListDef",
    "WhereClauseDef",
    "Leaf",
];

/// ODM 1.3.2 elements Trellis does not import (reported, not refused).
const NOT_IMPORTED: &[&str] = &[
    "Include",
    "ImputationMethod",
    "Presentation",
    "ArchiveLayout",
    "ArchiveLayoutRef",
    "ReferenceData",
    "Association",
    "ExternalQuestion",
    "Role",
    "Picture",
    "Address",
    "Certificate",
    "CryptoBindingManifest",
];

impl<'a, 'input> Reader<'a, 'input> {
    fn pos(&self, node: Node) -> (u32, u32) {
        let p = self.doc.text_pos_at(node.range().start);
        (p.row, p.col)
    }

    fn line(&self, node: Node) -> u32 {
        self.pos(node).0
    }

    fn push(&mut self, severity: Severity, node: Node, path: &str, message: String) {
        let (line, column) = self.pos(node);
        self.diags.push(Diagnostic {
            severity,
            line,
            column,
            path: path.to_owned(),
            message,
            also_at: Vec::new(),
        });
    }

    fn error(&mut self, node: Node, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, node, path, message.into());
    }

    /// A warning that is likely to repeat (a vendor attribute on every item) is kept
    /// once with the further lines listed.
    fn warn_grouped(&mut self, node: Node, message: String) {
        let line = self.line(node);
        if let Some(&i) = self.grouped.get(&message) {
            self.diags[i].also_at.push(line);
            return;
        }
        self.grouped.insert(message.clone(), self.diags.len());
        self.push(Severity::Warning, node, "", message);
    }

    fn warn(&mut self, node: Node, path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, node, path, message.into());
    }

    fn finish(mut self, odm: Odm) -> Result<Imported, Rejected> {
        self.diags.sort_by_key(|d| (d.severity, d.line, d.column));
        let (errors, warnings): (Vec<_>, Vec<_>) = self
            .diags
            .into_iter()
            .partition(|d| d.severity == Severity::Error);
        if errors.is_empty() {
            Ok(Imported { odm, warnings })
        } else {
            Err(Rejected { errors, warnings })
        }
    }

    fn is_odm(&self, node: Node) -> bool {
        node.is_element() && node.tag_name().namespace() == self.odm_ns
    }

    fn qualified(&self, node: Node) -> String {
        let name = node.tag_name().name();
        match node.tag_name().namespace() {
            Some(ns) => match node.lookup_prefix(ns) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}:{name}"),
                _ => format!("{{{ns}}}{name}"),
            },
            None => name.to_owned(),
        }
    }

    /// The ODM children of `node`, in document order. Anything else is reported.
    fn children(&mut self, node: Node<'a, 'input>, path: &str) -> Vec<Node<'a, 'input>> {
        let mut out = Vec::new();
        for child in node.children() {
            if child.is_text() {
                if child.text().is_some_and(|t| !t.trim().is_empty()) {
                    self.warn(
                        child,
                        path,
                        format!(
                            "text directly inside {} is not part of ODM and was ignored",
                            node.tag_name().name()
                        ),
                    );
                }
                continue;
            }
            if !child.is_element() {
                continue;
            }
            if self.is_odm(child) {
                out.push(child);
                continue;
            }
            let ns = child.tag_name().namespace();
            if ns.is_none() && self.odm_ns.is_some() {
                // An element without namespace in a namespaced file is a tool bug, not
                // an extension; take it as ODM.
                self.warn_grouped(
                    child,
                    format!(
                        "element {} has no namespace; read as ODM",
                        child.tag_name().name()
                    ),
                );
                out.push(child);
                continue;
            }
            if ns == Some(ODM2_NS) {
                self.error(
                    child,
                    path,
                    format!(
                        "{} is in the ODM 2.0 namespace; this file is not ODM 1.3.x",
                        child.tag_name().name()
                    ),
                );
                continue;
            }
            // OpenClinica's query threads on an item are read (and imported as queries).
            if node.tag_name().name() == "ItemData" && Self::is_openclinica_notes(child) {
                out.push(child);
                continue;
            }
            self.vendor_child(child, node);
        }
        out
    }

    /// Reports a vendor element that is not read, naming it and its parent.
    fn vendor_child(&mut self, child: Node, parent: Node) {
        let inside = if self.is_odm(parent) {
            parent.tag_name().name().to_owned()
        } else {
            self.qualified(parent)
        };
        let message = format!(
            "vendor extension {} inside {inside} was not imported",
            self.qualified(child)
        );
        self.warn_grouped(child, message);
    }

    /// Reports attributes that are neither expected nor XML/namespace bookkeeping.
    fn check_attributes(&mut self, node: Node, known: &[&str]) {
        self.check_attributes_reading(node, known, &[]);
    }

    /// [`Self::check_attributes`], with OpenClinica attributes the reader takes over.
    fn check_attributes_reading(&mut self, node: Node, known: &[&str], openclinica: &[&str]) {
        for attr in node.attributes() {
            match attr.namespace() {
                Some(XML_NS) | Some(XSI_NS) | Some(XMLNS_NS) => {}
                Some(ns)
                    if ns.starts_with(OPENCLINICA_NS_PREFIX)
                        && openclinica.contains(&attr.name()) => {}
                Some(ns) => {
                    let prefix = node.lookup_prefix(ns).unwrap_or(ns);
                    self.warn_grouped(
                        node,
                        format!(
                            "vendor attribute {prefix}:{} on {} was not imported",
                            attr.name(),
                            node.tag_name().name()
                        ),
                    );
                }
                None => {
                    if !known.iter().any(|k| k.eq_ignore_ascii_case(attr.name())) {
                        self.warn_grouped(
                            node,
                            format!(
                                "attribute {} is not an ODM 1.3.2 attribute of {} and was not imported",
                                attr.name(),
                                node.tag_name().name()
                            ),
                        );
                    }
                }
            }
        }
    }

    /// An attribute by name; case-insensitive because some tools write `OId` or `oid`.
    fn attr(node: Node<'a, 'input>, name: &str) -> Option<&'a str> {
        node.attribute(name).or_else(|| {
            node.attributes()
                .find(|a| a.namespace().is_none() && a.name().eq_ignore_ascii_case(name))
                .map(|a| a.value())
        })
    }

    fn opt(node: Node<'a, 'input>, name: &str) -> Option<String> {
        Self::attr(node, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    fn required(&mut self, node: Node<'a, 'input>, path: &str, name: &str) -> String {
        match Self::opt(node, name) {
            Some(v) => v,
            None => {
                self.error(
                    node,
                    path,
                    format!(
                        "{} has no {name} attribute, which it needs",
                        node.tag_name().name()
                    ),
                );
                String::new()
            }
        }
    }

    /// `Name` is required by the schema but some tools leave it out; the OID serves.
    fn name_or(&mut self, node: Node<'a, 'input>, path: &str, oid: &str) -> String {
        Self::opt(node, "Name").unwrap_or_else(|| {
            self.warn(
                node,
                path,
                format!(
                    "{} {oid} has no Name; its OID is used as the name",
                    node.tag_name().name()
                ),
            );
            oid.to_owned()
        })
    }

    fn yes_no(&mut self, node: Node<'a, 'input>, path: &str, name: &str, default: bool) -> bool {
        match Self::attr(node, name).map(str::trim) {
            None | Some("") => default,
            Some(v) if v.eq_ignore_ascii_case("yes") || v == "1" || v == "true" => true,
            Some(v) if v.eq_ignore_ascii_case("no") || v == "0" || v == "false" => false,
            Some(v) => {
                self.error(node, path, format!("{name}=\"{v}\" must be Yes or No"));
                default
            }
        }
    }

    fn number(&mut self, node: Node<'a, 'input>, path: &str, name: &str) -> Option<u32> {
        let raw = Self::opt(node, name)?;
        match raw.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    node,
                    path,
                    format!("{name}=\"{raw}\" is not a non-negative whole number"),
                );
                None
            }
        }
    }

    fn text_of(node: Node) -> String {
        node.descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect::<String>()
    }

    fn translated(&mut self, node: Node<'a, 'input>, path: &str) -> Translated {
        let mut out = Translated::default();
        self.check_attributes(node, &[]);
        for child in self.children(node, path) {
            if child.tag_name().name() == "TranslatedText" {
                self.check_attributes(child, &["Type"]);
                out.0.push(TranslatedText {
                    lang: child
                        .attribute((XML_NS, "lang"))
                        .map(str::to_owned)
                        .filter(|l| !l.is_empty()),
                    text: Self::text_of(child).trim().to_owned(),
                });
            } else {
                self.unexpected(child, path);
            }
        }
        out
    }

    fn unexpected(&mut self, node: Node<'a, 'input>, path: &str) {
        let name = node.tag_name().name();
        if ODM2_ONLY.contains(&name) {
            self.error(
                node,
                path,
                format!("{name} is an ODM 2.0 element; this file is not ODM 1.3.x"),
            );
        } else if NOT_IMPORTED.contains(&name) {
            self.warn_grouped(
                node,
                format!("ODM element {name} is not imported by Trellis"),
            );
        } else {
            self.warn(
                node,
                path,
                format!(
                    "{name} is not expected inside {} and was not imported",
                    node.parent_element()
                        .map_or("the document", |p| p.tag_name().name())
                ),
            );
        }
    }

    fn aliases(&mut self, node: Node<'a, 'input>, path: &str) -> Alias {
        self.check_attributes(node, &["Context", "Name"]);
        Alias {
            context: self.required(node, path, "Context"),
            name: self.required(node, path, "Name"),
        }
    }

    // ---- document ----------------------------------------------------------------

    fn document(&mut self) -> Odm {
        let root = self.doc.root_element();
        let mut odm = Odm::default();
        if root.tag_name().name() != "ODM" {
            self.error(
                root,
                "",
                format!(
                    "the root element is {}, not ODM: this is not an ODM file",
                    root.tag_name().name()
                ),
            );
            return odm;
        }
        match root.tag_name().namespace() {
            Some(ODM_NS) => self.odm_ns = Some(ODM_NS),
            Some(ODM2_NS) => {
                self.error(
                    root,
                    "ODM",
                    "the file is in the ODM 2.0 namespace; Trellis imports ODM 1.3.x",
                );
                return odm;
            }
            Some(other) => {
                self.error(
                    root,
                    "ODM",
                    format!("the ODM element is in namespace {other}, not the ODM 1.3 namespace {ODM_NS}"),
                );
                return odm;
            }
            None => {
                self.odm_ns = None;
                self.warn(
                    root,
                    "ODM",
                    format!(
                        "the file does not declare the ODM namespace {ODM_NS}; read as ODM 1.3"
                    ),
                );
            }
        }
        self.check_attributes(
            root,
            &[
                "Description",
                "FileType",
                "Granularity",
                "Archival",
                "FileOID",
                "CreationDateTime",
                "PriorFileOID",
                "AsOfDateTime",
                "ODMVersion",
                "Originator",
                "SourceSystem",
                "SourceSystemVersion",
                "ID",
            ],
        );
        odm.odm_version = Self::opt(root, "ODMVersion");
        match odm.odm_version.as_deref() {
            None => self.warn(root, "ODM", "ODMVersion is not given; read as ODM 1.3.2"),
            Some("1.3" | "1.3.0" | "1.3.1" | "1.3.2") => {}
            Some(v) if v.starts_with('2') => {
                self.error(
                    root,
                    "ODM",
                    format!("ODMVersion=\"{v}\": this is an ODM 2 file; Trellis imports ODM 1.3.x"),
                );
                return odm;
            }
            Some(v) => {
                self.error(
                    root,
                    "ODM",
                    format!("ODMVersion=\"{v}\" is not supported; Trellis imports ODM 1.3, 1.3.1 and 1.3.2"),
                );
                return odm;
            }
        }
        odm.file_oid = Self::opt(root, "FileOID").unwrap_or_else(|| {
            self.warn(root, "ODM", "FileOID is missing");
            String::new()
        });
        odm.creation_date_time = Self::opt(root, "CreationDateTime").unwrap_or_default();
        odm.file_type = match Self::opt(root, "FileType").as_deref() {
            Some(t) if t.eq_ignore_ascii_case("transactional") => FileType::Transactional,
            Some(t) if t.eq_ignore_ascii_case("snapshot") => FileType::Snapshot,
            None => FileType::Snapshot,
            Some(t) => {
                self.error(
                    root,
                    "ODM",
                    format!("FileType=\"{t}\" must be Snapshot or Transactional"),
                );
                FileType::Snapshot
            }
        };
        odm.granularity = Self::opt(root, "Granularity");
        odm.description = Self::opt(root, "Description");
        odm.originator = Self::opt(root, "Originator");
        odm.source_system = Self::opt(root, "SourceSystem");
        odm.source_system_version = Self::opt(root, "SourceSystemVersion");

        for child in self.children(root, "ODM") {
            match child.tag_name().name() {
                "Study" => {
                    let study = self.study(child);
                    odm.studies.push(study);
                }
                "AdminData" => {
                    let admin = self.admin_data(child);
                    odm.admin_data.push(admin);
                }
                "ClinicalData" => {
                    let data = self.clinical_data(child);
                    odm.clinical_data.push(data);
                }
                _ => self.unexpected(child, "ODM"),
            }
        }
        let mut seen = HashSet::new();
        for study in &odm.studies {
            if !seen.insert(study.oid.clone()) {
                self.diags.push(Diagnostic {
                    severity: Severity::Error,
                    line: study.line,
                    column: 1,
                    path: format!("Study[{}]", study.oid),
                    message: format!("study OID {} appears twice", study.oid),
                    also_at: Vec::new(),
                });
            }
        }
        self.check_clinical_against_metadata(&odm);
        odm
    }

    fn study(&mut self, node: Node<'a, 'input>) -> Study {
        self.check_attributes(node, &["OID"]);
        let oid = self.required(node, "Study", "OID");
        let path = format!("Study[{oid}]");
        let mut study = Study {
            oid,
            line: self.line(node),
            ..Study::default()
        };
        for child in self.children(node, &path) {
            match child.tag_name().name() {
                "GlobalVariables" => {
                    for gv in self.children(child, &path) {
                        let text = Self::text_of(gv).trim().to_owned();
                        match gv.tag_name().name() {
                            "StudyName" => study.name = text,
                            "StudyDescription" => study.description = text,
                            "ProtocolName" => study.protocol_name = text,
                            _ => self.unexpected(gv, &path),
                        }
                    }
                }
                "BasicDefinitions" => {
                    for mu in self.children(child, &path) {
                        if mu.tag_name().name() == "MeasurementUnit" {
                            let unit = self.measurement_unit(mu, &path);
                            study.measurement_units.push(unit);
                        } else {
                            self.unexpected(mu, &path);
                        }
                    }
                }
                "MetaDataVersion" => {
                    let mdv = self.metadata_version(child, &path, &study.measurement_units);
                    study.metadata_versions.push(mdv);
                }
                _ => self.unexpected(child, &path),
            }
        }
        if study.name.is_empty() {
            self.warn(node, &path, "GlobalVariables/StudyName is missing or empty");
            study.name = study.oid.clone();
        }
        if study.protocol_name.is_empty() {
            study.protocol_name = study.name.clone();
        }
        study
    }

    fn measurement_unit(&mut self, node: Node<'a, 'input>, path: &str) -> MeasurementUnit {
        self.check_attributes(node, &["OID", "Name"]);
        let oid = self.required(node, path, "OID");
        let name = self.name_or(node, path, &oid);
        let mut unit = MeasurementUnit {
            oid,
            name,
            line: self.line(node),
            ..MeasurementUnit::default()
        };
        for child in self.children(node, path) {
            match child.tag_name().name() {
                "Symbol" => unit.symbol = self.translated(child, path),
                "Alias" => {
                    self.aliases(child, path);
                }
                _ => self.unexpected(child, path),
            }
        }
        unit
    }

    fn reference(&mut self, node: Node<'a, 'input>, path: &str, oid_attr: &str) -> Ref {
        self.check_attributes(
            node,
            &[
                oid_attr,
                "OrderNumber",
                "Mandatory",
                "CollectionExceptionConditionOID",
            ],
        );
        for child in self.children(node, path) {
            self.unexpected(child, path);
        }
        Ref {
            oid: self.required(node, path, oid_attr),
            order_number: self.number(node, path, "OrderNumber"),
            mandatory: self.yes_no(node, path, "Mandatory", false),
            collection_exception_condition: Self::opt(node, "CollectionExceptionConditionOID"),
            line: self.line(node),
        }
    }

    fn metadata_version(
        &mut self,
        node: Node<'a, 'input>,
        study_path: &str,
        units: &[MeasurementUnit],
    ) -> MetaDataVersion {
        self.check_attributes(node, &["OID", "Name", "Description"]);
        let oid = self.required(node, study_path, "OID");
        let path = format!("{study_path}/MetaDataVersion[{oid}]");
        let name = self.name_or(node, &path, &oid);
        let mut mdv = MetaDataVersion {
            oid,
            name,
            description: Self::opt(node, "Description"),
            line: self.line(node),
            ..MetaDataVersion::default()
        };
        for child in self.children(node, &path) {
            match child.tag_name().name() {
                "Protocol" => {
                    for r in self.children(child, &path) {
                        match r.tag_name().name() {
                            "StudyEventRef" => {
                                let r = self.reference(r, &path, "StudyEventOID");
                                mdv.protocol.push(r);
                            }
                            "Description" => {
                                self.translated(r, &path);
                            }
                            "Alias" => {
                                self.aliases(r, &path);
                            }
                            _ => self.unexpected(r, &path),
                        }
                    }
                }
                "StudyEventDef" => {
                    let d = self.study_event_def(child, &path);
                    mdv.study_events.push(d);
                }
                "FormDef" => {
                    let d = self.form_def(child, &path);
                    mdv.forms.push(d);
                }
                "ItemGroupDef" => {
                    let d = self.item_group_def(child, &path);
                    mdv.item_groups.push(d);
                }
                "ItemDef" => {
                    let d = self.item_def(child, &path);
                    mdv.items.push(d);
                }
                "CodeList" => {
                    let d = self.code_list(child, &path);
                    mdv.code_lists.push(d);
                }
                "ConditionDef" => {
                    let d = self.condition_def(child, &path);
                    mdv.conditions.push(d);
                }
                "MethodDef" => {
                    let d = self.method_def(child, &path);
                    mdv.methods.push(d);
                }
                _ => self.unexpected(child, &path),
            }
        }
        self.check_references(node, &path, &mdv, units);
        mdv
    }

    fn study_event_def(&mut self, node: Node<'a, 'input>, path: &str) -> StudyEventDef {
        self.check_attributes(node, &["OID", "Name", "Repeating", "Type", "Category"]);
        let oid = self.required(node, path, "OID");
        let path = format!("{path}/StudyEventDef[{oid}]");
        let name = self.name_or(node, &path, &oid);
        let event_type = match Self::opt(node, "Type").as_deref() {
            None => StudyEventType::Scheduled,
            Some(t) if t.eq_ignore_ascii_case("scheduled") => StudyEventType::Scheduled,
            Some(t) if t.eq_ignore_ascii_case("unscheduled") => StudyEventType::Unscheduled,
            Some(t) if t.eq_ignore_ascii_case("common") => StudyEventType::Common,
            Some(t) => {
                self.error(
                    node,
                    &path,
                    format!("Type=\"{t}\" must be Scheduled, Unscheduled or Common"),
                );
                StudyEventType::Scheduled
            }
        };
        let mut def = StudyEventDef {
            repeating: self.yes_no(node, &path, "Repeating", false),
            oid,
            name,
            event_type,
            category: Self::opt(node, "Category"),
            line: self.line(node),
            ..StudyEventDef::default()
        };
        for child in self.children(node, &path) {
            match child.tag_name().name() {
                "Description" => def.description = self.translated(child, &path),
                "FormRef" => {
                    let r = self.reference(child, &path, "FormOID");
                    def.forms.push(r);
                }
                "Alias" => {
                    let a = self.aliases(child, &path);
                    def.aliases.push(a);
                }
                _ => self.unexpected(child, &path),
            }
        }
        def
    }

    fn form_def(&mut self, node: Node<'a, 'input>, path: &str) -> FormDef {
        self.check_attributes(node, &["OID", "Name", "Repeating"]);
        let oid = self.required(node, path, "OID");
        let path = format!("{path}/FormDef[{oid}]");
        let name = self.name_or(node, &path, &oid);
        let mut def = FormDef {
            repeating: self.yes_no(node, &path, "Repeating", false),
            oid,
            name,
            line: self.line(node),
            ..FormDef::default()
        };
        for child in self.children(node, &path) {
            match child.tag_name().name() {
                "Description" => def.description = self.translated(child, &path),
                "ItemGroupRef" => {
                    let r = self.reference(child, &path, "ItemGroupOID");
                    def.item_groups.push(r);
                }
                "Alias" => {
                    let a = self.aliases(child, &path);
                    def.aliases.push(a);
                }
                _ => self.unexpected(child, &path),
            }
        }
        def
    }

    fn item_group_def(&mut self, node: Node<'a, 'input>, path: &str) -> ItemGroupDef {
        self.check_attributes(
            node,
            &[
                "OID",
                "Name",
                "Repeating",
                "IsReferenceData",
                "SASDatasetName",
                "Domain",
                "Origin",
                "Role",
                "Purpose",
                "Comment",
            ],
        );
        let oid = self.required(node, path, "OID");
        let path = format!("{path}/ItemGroupDef[{oid}]");
        let name = self.name_or(node, &path, &oid);
        let mut def = ItemGroupDef {
            repeating: self.yes_no(node, &path, "Repeating", false),
            oid,
            name,
            domain: Self::opt(node, "Domain"),
            sas_dataset_name: Self::opt(node, "SASDatasetName"),
            line: self.line(node),
            ..ItemGroupDef::default()
        };
        for child in self.children(node, &path) {
            match child.tag_name().name() {
                "Description" => def.description = self.translated(child, &path),
                "ItemRef" => {
                    self.check_attributes(
                        child,
                        &[
                            "ItemOID",
                            "KeySequence",
                            "MethodOID",
                            "ImputationMethodOID",
                            "Role",
                            "RoleCodeListOID",
                            "OrderNumber",
                            "Mandatory",
                            "CollectionExceptionConditionOID",
                        ],
                    );
                    for c in self.children(child, &path) {
                        self.unexpected(c, &path);
                    }
                    let item_ref = ItemRef {
                        item_oid: self.required(child, &path, "ItemOID"),
                        order_number: self.number(child, &path, "OrderNumber"),
                        mandatory: self.yes_no(child, &path, "Mandatory", false),
                        key_sequence: self.number(child, &path, "KeySequence"),
                        method_oid: Self::opt(child, "MethodOID"),
                        role: Self::opt(child, "Role"),
                        collection_exception_condition: Self::opt(
                            child,
                            "CollectionExceptionConditionOID",
                        ),
                        line: self.line(child),
                    };
                    def.items.push(item_ref);
                }
                "ItemGroupRef" => self.error(
                    child,
                    &path,
                    "an ItemGroupRef inside an ItemGroupDef is an ODM 2.0 construct; this file is not ODM 1.3.x",
                ),
                "Alias" => {
                    let a = self.aliases(child, &path);
                    def.aliases.push(a);
                }
                _ => self.unexpected(child, &path),
            }
        }
        if Self::opt(node, "Type").is_some() {
            self.error(
                node,
                &path,
                "ItemGroupDef/@Type is an ODM 2.0 attribute; this file is not ODM 1.3.x",
            );
        }
        def
    }

    fn item_def(&mut self, node: Node<'a, 'input>, path: &str) -> ItemDef {
        self.check_attributes(
            node,
            &[
                "OID",
                "Name",
                "DataType",
                "Length",
                "SignificantDigits",
                "SASFieldName",
                "SDSVarName",
                "Origin",
                "Comment",
            ],
        );
        let oid = self.required(node, path, "OID");
        let path = format!("{path}/ItemDef[{oid}]");
        let name = self.name_or(node, &path, &oid);
        let data_type = match Self::opt(node, "DataType") {
            None => {
                self.error(node, &path, "ItemDef has no DataType");
                DataType::Text
            }
            Some(t) => DataType::parse(&t).unwrap_or_else(|| {
                self.error(
                    node,
                    &path,
                    format!("DataType=\"{t}\" is not an ODM 1.3 data type"),
                );
                DataType::Text
            }),
        };
        let mut def = ItemDef {
            oid,
            name,
            data_type,
            length: self.number(node, &path, "Length"),
            significant_digits: self.number(node, &path, "SignificantDigits"),
            sas_field_name: Self::opt(node, "SASFieldName"),
            sds_var_name: Self::opt(node, "SDSVarName"),
            origin: Self::opt(node, "Origin"),
            comment: Self::opt(node, "Comment"),
            line: self.line(node),
            ..ItemDef::default()
        };
        if def.length == Some(0) {
            self.error(node, &path, "Length=\"0\": a length must be at least 1");
        }
        for child in self.children(node, &path) {
            match child.tag_name().name() {
                "Description" => def.description = self.translated(child, &path),
                "Question" => def.question = self.translated(child, &path),
                "MeasurementUnitRef" => {
                    self.check_attributes(child, &["MeasurementUnitOID"]);
                    let unit = self.required(child, &path, "MeasurementUnitOID");
                    def.measurement_units.push(unit);
                }
                "RangeCheck" => {
                    let check = self.range_check(child, &path, data_type);
                    def.range_checks.push(check);
                }
                "CodeListRef" => {
                    self.check_attributes(child, &["CodeListOID"]);
                    def.code_list = Some(self.required(child, &path, "CodeListOID"));
                }
                "Alias" => {
                    let a = self.aliases(child, &path);
                    def.aliases.push(a);
                }
                _ => self.unexpected(child, &path),
            }
        }
        def
    }

    fn range_check(
        &mut self,
        node: Node<'a, 'input>,
        path: &str,
        data_type: DataType,
    ) -> RangeCheck {
        self.check_attributes(node, &["Comparator", "SoftHard"]);
        let comparator = Self::opt(node, "Comparator").and_then(|c| {
            let parsed = Comparator::parse(&c);
            if parsed.is_none() {
                self.error(
                    node,
                    path,
                    format!("RangeCheck Comparator=\"{c}\" must be one of LT, LE, GT, GE, EQ, NE, IN, NOTIN"),
                );
            }
            parsed
        });
        let soft_hard = match Self::opt(node, "SoftHard").as_deref() {
            Some(s) if s.eq_ignore_ascii_case("hard") => SoftHard::Hard,
            Some(s) if s.eq_ignore_ascii_case("soft") => SoftHard::Soft,
            None => {
                self.warn(node, path, "RangeCheck has no SoftHard; treated as Soft");
                SoftHard::Soft
            }
            Some(s) => {
                self.error(node, path, format!("SoftHard=\"{s}\" must be Soft or Hard"));
                SoftHard::Soft
            }
        };
        let mut check = RangeCheck {
            comparator,
            soft_hard,
            line: self.line(node),
            ..RangeCheck::default()
        };
        for child in self.children(node, path) {
            match child.tag_name().name() {
                "CheckValue" => {
                    let v = Self::text_of(child).trim().to_owned();
                    if let Err(e) = crate::values::check_type(data_type, &v) {
                        self.error(child, path, format!("CheckValue {e}"));
                    }
                    check.check_values.push(v);
                }
                "FormalExpression" => {
                    let e = self.formal_expression(child, path);
                    check.formal_expressions.push(e);
                }
                "MeasurementUnitRef" => {
                    check.measurement_unit = Some(self.required(child, path, "MeasurementUnitOID"));
                }
                "ErrorMessage" => check.error_message = self.translated(child, path),
                _ => self.unexpected(child, path),
            }
        }
        match (
            check.comparator,
            check.check_values.len(),
            check.formal_expressions.len(),
        ) {
            (_, 0, 0) => self.error(
                node,
                path,
                "RangeCheck has neither a CheckValue nor a FormalExpression",
            ),
            (None, n, _) if n > 0 => {
                self.error(node, path, "RangeCheck with CheckValues needs a Comparator")
            }
            (Some(Comparator::In | Comparator::NotIn), _, _) => {}
            (Some(c), n, _) if n > 1 => self.error(
                node,
                path,
                format!(
                    "RangeCheck Comparator={} takes one CheckValue, not {n}",
                    c.as_str()
                ),
            ),
            _ => {}
        }
        check
    }

    fn formal_expression(&mut self, node: Node<'a, 'input>, _path: &str) -> FormalExpression {
        self.check_attributes(node, &["Context"]);
        FormalExpression {
            context: Self::opt(node, "Context"),
            text: Self::text_of(node).trim().to_owned(),
            line: self.line(node),
        }
    }

    fn code_list(&mut self, node: Node<'a, 'input>, path: &str) -> CodeList {
        self.check_attributes(node, &["OID", "Name", "DataType", "SASFormatName"]);
        let oid = self.required(node, path, "OID");
        let path = format!("{path}/CodeList[{oid}]");
        let name = self.name_or(node, &path, &oid);
        let data_type = match Self::opt(node, "DataType") {
            None => {
                self.warn(node, &path, "CodeList has no DataType; read as text");
                DataType::Text
            }
            Some(t) => match DataType::parse(&t) {
                Some(
                    d @ (DataType::Integer
                    | DataType::Float
                    | DataType::Text
                    | DataType::String
                    | DataType::Boolean),
                ) => d,
                _ => {
                    self.error(
                        node,
                        &path,
                        format!("CodeList DataType=\"{t}\" must be integer, float, text or string"),
                    );
                    DataType::Text
                }
            },
        };
        let mut list = CodeList {
            oid,
            name,
            data_type,
            sas_format_name: Self::opt(node, "SASFormatName"),
            line: self.line(node),
            ..CodeList::default()
        };
        let mut codes = HashSet::new();
        for child in self.children(node, &path) {
            match child.tag_name().name() {
                "Description" => list.description = self.translated(child, &path),
                "CodeListItem" | "EnumeratedItem" => {
                    self.check_attributes(child, &["CodedValue", "Rank", "OrderNumber"]);
                    let coded_value = Self::attr(child, "CodedValue")
                        .unwrap_or_default()
                        .to_owned();
                    if Self::attr(child, "CodedValue").is_none() {
                        self.error(
                            child,
                            &path,
                            format!("{} has no CodedValue", child.tag_name().name()),
                        );
                    } else if let Err(e) = crate::values::check_type(data_type, &coded_value) {
                        self.error(child, &path, format!("CodedValue {e}"));
                    }
                    if !codes.insert(coded_value.clone()) {
                        self.error(
                            child,
                            &path,
                            format!("CodedValue {coded_value:?} appears twice in the code list"),
                        );
                    }
                    let mut item = CodeListItem {
                        coded_value,
                        rank: Self::opt(child, "Rank"),
                        order_number: self.number(child, &path, "OrderNumber"),
                        ..CodeListItem::default()
                    };
                    for c in self.children(child, &path) {
                        match c.tag_name().name() {
                            "Decode" => item.decode = self.translated(c, &path),
                            "Alias" => {
                                let a = self.aliases(c, &path);
                                item.aliases.push(a);
                            }
                            _ => self.unexpected(c, &path),
                        }
                    }
                    list.items.push(item);
                }
                "ExternalCodeList" => {
                    self.check_attributes(child, &["Dictionary", "Version", "href", "ref"]);
                    list.external = Some(ExternalCodeList {
                        dictionary: Self::opt(child, "Dictionary"),
                        version: Self::opt(child, "Version"),
                        href: Self::opt(child, "href"),
                        reference: Self::opt(child, "ref"),
                    });
                }
                "Alias" => {
                    let a = self.aliases(child, &path);
                    list.aliases.push(a);
                }
                _ => self.unexpected(child, &path),
            }
        }
        if list.items.is_empty() && list.external.is_none() {
            self.error(
                node,
                &path,
                "CodeList has no CodeListItem, EnumeratedItem or ExternalCodeList",
            );
        }
        list
    }

    fn condition_def(&mut self, node: Node<'a, 'input>, path: &str) -> ConditionDef {
        self.check_attributes(node, &["OID", "Name"]);
        let oid = self.required(node, path, "OID");
        let path = format!("{path}/ConditionDef[{oid}]");
        let name = self.name_or(node, &path, &oid);
        let mut def = ConditionDef {
            oid,
            name,
            line: self.line(node),
            ..ConditionDef::default()
        };
        for child in self.children(node, &path) {
            match child.tag_name().name() {
                "Description" => def.description = self.translated(child, &path),
                "FormalExpression" => {
                    let e = self.formal_expression(child, &path);
                    def.expressions.push(e);
                }
                "Alias" => {
                    self.aliases(child, &path);
                }
                _ => self.unexpected(child, &path),
            }
        }
        def
    }

    fn method_def(&mut self, node: Node<'a, 'input>, path: &str) -> MethodDef {
        self.check_attributes(node, &["OID", "Name", "Type"]);
        let oid = self.required(node, path, "OID");
        let path = format!("{path}/MethodDef[{oid}]");
        let name = self.name_or(node, &path, &oid);
        let mut def = MethodDef {
            oid,
            name,
            method_type: Self::opt(node, "Type"),
            line: self.line(node),
            ..MethodDef::default()
        };
        for child in self.children(node, &path) {
            match child.tag_name().name() {
                "Description" => def.description = self.translated(child, &path),
                "FormalExpression" => {
                    let e = self.formal_expression(child, &path);
                    def.expressions.push(e);
                }
                "Alias" => {
                    self.aliases(child, &path);
                }
                _ => self.unexpected(child, &path),
            }
        }
        def
    }

    /// Every OID a definition refers to must be defined in the same metadata version,
    /// and no OID may be defined twice.
    fn check_references(
        &mut self,
        node: Node<'a, 'input>,
        path: &str,
        mdv: &MetaDataVersion,
        units: &[MeasurementUnit],
    ) {
        let mut problems: Vec<(u32, String)> = Vec::new();
        fn dupes<'x>(
            kind: &str,
            defs: impl Iterator<Item = (&'x str, u32)>,
            out: &mut Vec<(u32, String)>,
        ) -> HashSet<&'x str> {
            let mut seen = HashSet::new();
            for (oid, line) in defs {
                if !seen.insert(oid) {
                    out.push((line, format!("{kind} {oid} is defined twice")));
                }
            }
            seen
        }
        let events = dupes(
            "StudyEventDef",
            mdv.study_events.iter().map(|d| (d.oid.as_str(), d.line)),
            &mut problems,
        );
        let forms = dupes(
            "FormDef",
            mdv.forms.iter().map(|d| (d.oid.as_str(), d.line)),
            &mut problems,
        );
        let groups = dupes(
            "ItemGroupDef",
            mdv.item_groups.iter().map(|d| (d.oid.as_str(), d.line)),
            &mut problems,
        );
        let items = dupes(
            "ItemDef",
            mdv.items.iter().map(|d| (d.oid.as_str(), d.line)),
            &mut problems,
        );
        let lists = dupes(
            "CodeList",
            mdv.code_lists.iter().map(|d| (d.oid.as_str(), d.line)),
            &mut problems,
        );
        let conditions = dupes(
            "ConditionDef",
            mdv.conditions.iter().map(|d| (d.oid.as_str(), d.line)),
            &mut problems,
        );
        let methods = dupes(
            "MethodDef",
            mdv.methods.iter().map(|d| (d.oid.as_str(), d.line)),
            &mut problems,
        );
        let units: HashSet<&str> = units.iter().map(|u| u.oid.as_str()).collect();
        let mut twice = Vec::new();

        let mut missing = |line: u32, what: &str, oid: &str, known: &HashSet<&str>, from: &str| {
            if !oid.is_empty() && !known.contains(oid) {
                problems.push((line, format!("{from} refers to {what} {oid}, which is not defined in this metadata version")));
            }
        };
        for r in &mdv.protocol {
            missing(r.line, "StudyEventDef", &r.oid, &events, "Protocol");
        }
        for e in &mdv.study_events {
            for r in &e.forms {
                missing(
                    r.line,
                    "FormDef",
                    &r.oid,
                    &forms,
                    &format!("StudyEventDef {}", e.oid),
                );
                if let Some(c) = &r.collection_exception_condition {
                    missing(
                        r.line,
                        "ConditionDef",
                        c,
                        &conditions,
                        &format!("StudyEventDef {}", e.oid),
                    );
                }
            }
        }
        for f in &mdv.forms {
            for r in &f.item_groups {
                missing(
                    r.line,
                    "ItemGroupDef",
                    &r.oid,
                    &groups,
                    &format!("FormDef {}", f.oid),
                );
                if let Some(c) = &r.collection_exception_condition {
                    missing(
                        r.line,
                        "ConditionDef",
                        c,
                        &conditions,
                        &format!("FormDef {}", f.oid),
                    );
                }
            }
        }
        for g in &mdv.item_groups {
            let mut in_group = HashSet::new();
            for r in &g.items {
                missing(
                    r.line,
                    "ItemDef",
                    &r.item_oid,
                    &items,
                    &format!("ItemGroupDef {}", g.oid),
                );
                if let Some(c) = &r.collection_exception_condition {
                    missing(
                        r.line,
                        "ConditionDef",
                        c,
                        &conditions,
                        &format!("ItemGroupDef {}", g.oid),
                    );
                }
                if let Some(m) = &r.method_oid {
                    missing(
                        r.line,
                        "MethodDef",
                        m,
                        &methods,
                        &format!("ItemGroupDef {}", g.oid),
                    );
                }
                if !in_group.insert(r.item_oid.as_str()) {
                    twice.push((
                        r.line,
                        format!(
                            "ItemGroupDef {} refers to ItemDef {} twice",
                            g.oid, r.item_oid
                        ),
                    ));
                }
            }
        }
        for i in &mdv.items {
            if let Some(cl) = &i.code_list {
                missing(
                    i.line,
                    "CodeList",
                    cl,
                    &lists,
                    &format!("ItemDef {}", i.oid),
                );
            }
            for u in &i.measurement_units {
                missing(
                    i.line,
                    "MeasurementUnit",
                    u,
                    &units,
                    &format!("ItemDef {}", i.oid),
                );
            }
            for rc in &i.range_checks {
                if let Some(u) = &rc.measurement_unit {
                    missing(
                        rc.line,
                        "MeasurementUnit",
                        u,
                        &units,
                        &format!("ItemDef {}", i.oid),
                    );
                }
            }
        }
        let column = 1;
        problems.extend(twice);
        problems.sort();
        for (line, message) in problems {
            self.diags.push(Diagnostic {
                severity: Severity::Error,
                line,
                column,
                path: path.to_owned(),
                message,
                also_at: Vec::new(),
            });
        }
        let _ = node;
    }

    // ---- admin and clinical data ---------------------------------------------------

    fn admin_data(&mut self, node: Node<'a, 'input>) -> AdminData {
        self.check_attributes(node, &["StudyOID"]);
        let path = "AdminData";
        let mut admin = AdminData {
            study_oid: Self::opt(node, "StudyOID"),
            ..AdminData::default()
        };
        for child in self.children(node, path) {
            match child.tag_name().name() {
                "User" => {
                    self.check_attributes(child, &["OID", "UserType"]);
                    let mut user = User {
                        oid: self.required(child, path, "OID"),
                        ..User::default()
                    };
                    for c in self.children(child, path) {
                        let text =
                            Some(Self::text_of(c).trim().to_owned()).filter(|t| !t.is_empty());
                        match c.tag_name().name() {
                            "LoginName" => user.login_name = text,
                            "DisplayName" => user.display_name = text,
                            "FullName" => user.full_name = text,
                            "Organization" => user.organization = text,
                            "FirstName" | "LastName" | "Email" | "Phone" | "Fax" | "Pager"
                            | "LocationRef" => {}
                            _ => self.unexpected(c, path),
                        }
                    }
                    admin.users.push(user);
                }
                "Location" => {
                    self.check_attributes(child, &["OID", "Name", "LocationType"]);
                    let oid = self.required(child, path, "OID");
                    let name = self.name_or(child, path, &oid);
                    let mut location = Location {
                        oid,
                        name,
                        location_type: Self::opt(child, "LocationType"),
                        ..Location::default()
                    };
                    for c in self.children(child, path) {
                        if c.tag_name().name() == "MetaDataVersionRef" {
                            location.metadata_versions.push((
                                self.required(c, path, "StudyOID"),
                                self.required(c, path, "MetaDataVersionOID"),
                                self.required(c, path, "EffectiveDate"),
                            ));
                        } else {
                            self.unexpected(c, path);
                        }
                    }
                    admin.locations.push(location);
                }
                "SignatureDef" => {
                    self.check_attributes(child, &["OID", "Methodology"]);
                    let mut def = SignatureDef {
                        oid: self.required(child, path, "OID"),
                        methodology: Self::opt(child, "Methodology"),
                        ..SignatureDef::default()
                    };
                    for c in self.children(child, path) {
                        let text = Self::text_of(c).trim().to_owned();
                        match c.tag_name().name() {
                            "Meaning" => def.meaning = text,
                            "LegalReason" => def.legal_reason = text,
                            _ => self.unexpected(c, path),
                        }
                    }
                    admin.signature_defs.push(def);
                }
                _ => self.unexpected(child, path),
            }
        }
        admin
    }

    fn transaction(&mut self, node: Node<'a, 'input>, path: &str) -> Option<TransactionType> {
        let raw = Self::opt(node, "TransactionType")?;
        let parsed = TransactionType::parse(&raw);
        if parsed.is_none() {
            self.error(
                node,
                path,
                format!(
                    "TransactionType=\"{raw}\" must be Insert, Update, Remove, Upsert or Context"
                ),
            );
        }
        parsed
    }

    fn audit_record(&mut self, node: Node<'a, 'input>, path: &str) -> AuditRecord {
        self.check_attributes(node, &["EditPoint", "UsedImputationMethod", "ID"]);
        let mut record = AuditRecord {
            id: Self::opt(node, "ID"),
            edit_point: Self::opt(node, "EditPoint").and_then(|e| EditPoint::parse(&e)),
            used_imputation_method: Self::opt(node, "UsedImputationMethod").map(|v| v == "Yes"),
            ..AuditRecord::default()
        };
        for c in self.children(node, path) {
            match c.tag_name().name() {
                "UserRef" => record.user_oid = self.required(c, path, "UserOID"),
                "LocationRef" => record.location_oid = self.required(c, path, "LocationOID"),
                "DateTimeStamp" => record.date_time_stamp = Self::text_of(c).trim().to_owned(),
                "ReasonForChange" => {
                    record.reason_for_change = Some(Self::text_of(c).trim().to_owned())
                }
                "SourceID" => record.source_id = Some(Self::text_of(c).trim().to_owned()),
                _ => self.unexpected(c, path),
            }
        }
        record
    }

    fn signature(&mut self, node: Node<'a, 'input>, path: &str) -> Signature {
        self.check_attributes(node, &["ID"]);
        let mut sig = Signature {
            id: Self::opt(node, "ID"),
            ..Signature::default()
        };
        for c in self.children(node, path) {
            match c.tag_name().name() {
                "UserRef" => sig.user_oid = self.required(c, path, "UserOID"),
                "LocationRef" => sig.location_oid = self.required(c, path, "LocationOID"),
                "SignatureRef" => sig.signature_def_oid = self.required(c, path, "SignatureOID"),
                "DateTimeStamp" => sig.date_time_stamp = Self::text_of(c).trim().to_owned(),
                _ => self.unexpected(c, path),
            }
        }
        sig
    }

    fn annotation(&mut self, node: Node<'a, 'input>, path: &str) -> Annotation {
        self.check_attributes(node, &["SeqNum", "TransactionType", "ID"]);
        let mut ann = Annotation {
            seq_num: self.number(node, path, "SeqNum").unwrap_or(1),
            id: Self::opt(node, "ID"),
            ..Annotation::default()
        };
        for c in self.children(node, path) {
            match c.tag_name().name() {
                "Comment" => {
                    ann.comment = Some(Comment {
                        sponsor_or_site: Self::opt(c, "SponsorOrSite"),
                        text: Self::text_of(c).trim().to_owned(),
                    })
                }
                "Flag" => {
                    let mut flag = Flag::default();
                    for f in self.children(c, path) {
                        match f.tag_name().name() {
                            "FlagValue" => {
                                flag.value = Self::text_of(f).trim().to_owned();
                                flag.value_code_list = self.required(f, path, "CodeListOID");
                            }
                            "FlagType" => {
                                flag.flag_type = Some((
                                    Self::text_of(f).trim().to_owned(),
                                    self.required(f, path, "CodeListOID"),
                                ))
                            }
                            _ => self.unexpected(f, path),
                        }
                    }
                    ann.flags.push(flag);
                }
                _ => self.unexpected(c, path),
            }
        }
        ann
    }

    fn is_openclinica_notes(node: Node) -> bool {
        node.tag_name().name() == "DiscrepancyNotes"
            && node
                .tag_name()
                .namespace()
                .is_some_and(|ns| ns.starts_with(OPENCLINICA_NS_PREFIX))
    }

    /// `OpenClinica:DiscrepancyNotes` on an item: its threads and their notes. What else
    /// the extension holds is reported like any vendor extension.
    fn discrepancy_notes(&mut self, node: Node<'a, 'input>, path: &str) -> Vec<DiscrepancyNote> {
        let mut notes = Vec::new();
        let opt = |n: Node<'a, 'input>, name: &str| {
            Self::attr(n, name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        self.vendor_attributes(node, &["EntityID"], &[]);
        self.vendor_text(node, path);
        for dn in node.children().filter(Node::is_element) {
            if dn.tag_name().name() != "DiscrepancyNote" {
                self.vendor_child(dn, node);
                continue;
            }
            self.vendor_attributes(
                dn,
                &[
                    "ID",
                    "Status",
                    "NoteType",
                    "DateUpdated",
                    "EntityName",
                    "NumberOfChildNotes",
                ],
                &[],
            );
            self.vendor_text(dn, path);
            let mut note = DiscrepancyNote {
                id: opt(dn, "ID"),
                note_type: opt(dn, "NoteType"),
                status: opt(dn, "Status"),
                date_updated: opt(dn, "DateUpdated"),
                child_notes: Vec::new(),
                line: self.line(dn),
            };
            for cn in dn.children().filter(Node::is_element) {
                if cn.tag_name().name() != "ChildNote" {
                    self.vendor_child(cn, dn);
                    continue;
                }
                self.vendor_attributes(
                    cn,
                    &["ID", "Status", "DateCreated", "UserName", "Name"],
                    &[],
                );
                self.vendor_text(cn, path);
                let mut child = ChildNote {
                    id: opt(cn, "ID"),
                    status: opt(cn, "Status"),
                    date_created: opt(cn, "DateCreated"),
                    user_name: opt(cn, "UserName"),
                    name: opt(cn, "Name"),
                    ..ChildNote::default()
                };
                for part in cn.children() {
                    if !part.is_element() {
                        continue;
                    }
                    let text =
                        || Some(Self::text_of(part).trim().to_owned()).filter(|t| !t.is_empty());
                    match part.tag_name().name() {
                        "Description" => child.description = text(),
                        "DetailedNote" => child.detailed_note = text(),
                        "UserRef" => {
                            self.vendor_attributes(part, &["UserOID"], &["UserName", "FullName"]);
                            // OpenClinica writes the OID with a trailing space.
                            child.user_oid = opt(part, "UserOID");
                            let named = |local: &str| {
                                part.attributes()
                                    .find(|a| a.name() == local && a.namespace().is_some())
                                    .map(|a| a.value().trim().to_owned())
                                    .filter(|v| !v.is_empty())
                            };
                            child.user_name = child.user_name.take().or_else(|| named("UserName"));
                            child.name = child.name.take().or_else(|| named("FullName"));
                        }
                        _ => self.warn_grouped(
                            part,
                            format!(
                                "{} inside OpenClinica:ChildNote was not imported",
                                self.qualified(part)
                            ),
                        ),
                    }
                }
                note.child_notes.push(child);
            }
            if note.child_notes.is_empty() {
                self.warn(
                    dn,
                    path,
                    "an OpenClinica discrepancy note without notes was not imported",
                );
                continue;
            }
            notes.push(note);
        }
        notes
    }

    /// Reports attributes of a vendor element that the reader does not take over: `known`
    /// are unprefixed attributes (matched ignoring case, as they are read), `prefixed`
    /// the OpenClinica-prefixed ones that are read.
    fn vendor_attributes(&mut self, node: Node, known: &[&str], prefixed: &[&str]) {
        for attr in node.attributes() {
            let read = match attr.namespace() {
                Some(XML_NS) | Some(XSI_NS) | Some(XMLNS_NS) => true,
                None => known.iter().any(|k| k.eq_ignore_ascii_case(attr.name())),
                Some(ns) => {
                    ns.starts_with(OPENCLINICA_NS_PREFIX) && prefixed.contains(&attr.name())
                }
            };
            if !read {
                self.warn_grouped(
                    node,
                    format!(
                        "attribute {} of {} was not imported",
                        attr.name(),
                        self.qualified(node)
                    ),
                );
            }
        }
    }

    /// Reports text placed directly inside a vendor element that holds elements.
    fn vendor_text(&mut self, node: Node, path: &str) {
        if node
            .children()
            .any(|c| c.is_text() && c.text().is_some_and(|t| !t.trim().is_empty()))
        {
            self.warn(
                node,
                path,
                format!("text directly inside {} was ignored", self.qualified(node)),
            );
        }
    }

    /// The audit record, signature and annotations a clinical data element may carry;
    /// returns the children that are not one of those.
    fn data_children(
        &mut self,
        node: Node<'a, 'input>,
        path: &str,
        audit: &mut Option<AuditRecord>,
        signature: &mut Option<Signature>,
        annotations: &mut Vec<Annotation>,
    ) -> Vec<Node<'a, 'input>> {
        let mut rest = Vec::new();
        for c in self.children(node, path) {
            match c.tag_name().name() {
                "AuditRecord" => *audit = Some(self.audit_record(c, path)),
                "Signature" => *signature = Some(self.signature(c, path)),
                "Annotation" => {
                    let a = self.annotation(c, path);
                    annotations.push(a);
                }
                _ => rest.push(c),
            }
        }
        rest
    }

    fn clinical_data(&mut self, node: Node<'a, 'input>) -> ClinicalData {
        self.check_attributes(node, &["StudyOID", "MetaDataVersionOID"]);
        let path = "ClinicalData";
        let mut data = ClinicalData {
            study_oid: self.required(node, path, "StudyOID"),
            metadata_version_oid: self.required(node, path, "MetaDataVersionOID"),
            line: self.line(node),
            ..ClinicalData::default()
        };
        for child in self.children(node, path) {
            match child.tag_name().name() {
                "SubjectData" => {
                    let s = self.subject_data(child);
                    data.subjects.push(s);
                }
                "AuditRecords" | "Signatures" | "Annotations" => {
                    self.warn_grouped(
                        child,
                        format!(
                            "{} at ClinicalData level is not imported (Trellis keeps its own audit trail)",
                            child.tag_name().name()
                        ),
                    );
                }
                _ => self.unexpected(child, path),
            }
        }
        data
    }

    fn subject_data(&mut self, node: Node<'a, 'input>) -> SubjectData {
        self.check_attributes_reading(
            node,
            &["SubjectKey", "TransactionType"],
            &["StudySubjectID"],
        );
        let key = self.required(node, "ClinicalData", "SubjectKey");
        let path = format!("SubjectData[{key}]");
        // OpenClinica's SubjectKey is an internal OID (SS_…); people know the subject by
        // its StudySubjectID.
        let label = node
            .attributes()
            .find(|a| {
                a.name() == "StudySubjectID"
                    && a.namespace()
                        .is_some_and(|ns| ns.starts_with(OPENCLINICA_NS_PREFIX))
            })
            .map(|a| a.value().trim().to_owned())
            .filter(|v| !v.is_empty());
        let mut subject = SubjectData {
            subject_key: key,
            label,
            transaction_type: self.transaction(node, &path),
            line: self.line(node),
            ..SubjectData::default()
        };
        let (mut audit, mut sig, mut anns) = (None, None, Vec::new());
        for c in self.data_children(node, &path, &mut audit, &mut sig, &mut anns) {
            match c.tag_name().name() {
                "InvestigatorRef" => subject.investigator_ref = Self::opt(c, "UserOID"),
                "SiteRef" => subject.site_ref = Some(self.required(c, &path, "LocationOID")),
                "StudyEventData" => {
                    let e = self.study_event_data(c, &path);
                    subject.study_events.push(e);
                }
                _ => self.unexpected(c, &path),
            }
        }
        subject.audit_record = audit;
        subject.signature = sig;
        subject.annotations = anns;
        subject
    }

    fn study_event_data(&mut self, node: Node<'a, 'input>, path: &str) -> StudyEventData {
        self.check_attributes(
            node,
            &["StudyEventOID", "StudyEventRepeatKey", "TransactionType"],
        );
        let oid = self.required(node, path, "StudyEventOID");
        let path = format!("{path}/StudyEventData[{oid}]");
        let mut event = StudyEventData {
            study_event_oid: oid,
            repeat_key: Self::opt(node, "StudyEventRepeatKey"),
            transaction_type: self.transaction(node, &path),
            line: self.line(node),
            ..StudyEventData::default()
        };
        let (mut audit, mut sig, mut anns) = (None, None, Vec::new());
        for c in self.data_children(node, &path, &mut audit, &mut sig, &mut anns) {
            if c.tag_name().name() == "FormData" {
                let f = self.form_data(c, &path);
                event.forms.push(f);
            } else {
                self.unexpected(c, &path);
            }
        }
        event.audit_record = audit;
        event.signature = sig;
        event.annotations = anns;
        event
    }

    fn form_data(&mut self, node: Node<'a, 'input>, path: &str) -> FormData {
        self.check_attributes(node, &["FormOID", "FormRepeatKey", "TransactionType"]);
        let oid = self.required(node, path, "FormOID");
        let path = format!("{path}/FormData[{oid}]");
        let mut form = FormData {
            form_oid: oid,
            repeat_key: Self::opt(node, "FormRepeatKey"),
            transaction_type: self.transaction(node, &path),
            line: self.line(node),
            ..FormData::default()
        };
        let (mut audit, mut sig, mut anns) = (None, None, Vec::new());
        for c in self.data_children(node, &path, &mut audit, &mut sig, &mut anns) {
            match c.tag_name().name() {
                "ItemGroupData" => {
                    let g = self.item_group_data(c, &path);
                    form.item_groups.push(g);
                }
                "ArchiveLayoutRef" => self.unexpected(c, &path),
                _ => self.unexpected(c, &path),
            }
        }
        form.audit_record = audit;
        form.signature = sig;
        form.annotations = anns;
        form
    }

    fn item_group_data(&mut self, node: Node<'a, 'input>, path: &str) -> ItemGroupData {
        self.check_attributes(
            node,
            &["ItemGroupOID", "ItemGroupRepeatKey", "TransactionType"],
        );
        let oid = self.required(node, path, "ItemGroupOID");
        let path = format!("{path}/ItemGroupData[{oid}]");
        let mut group = ItemGroupData {
            item_group_oid: oid,
            repeat_key: Self::opt(node, "ItemGroupRepeatKey"),
            transaction_type: self.transaction(node, &path),
            line: self.line(node),
            ..ItemGroupData::default()
        };
        let (mut audit, mut sig, mut anns) = (None, None, Vec::new());
        for c in self.data_children(node, &path, &mut audit, &mut sig, &mut anns) {
            let name = c.tag_name().name();
            if name == "ItemData" || name.starts_with("ItemData") {
                let item = self.item_data(c, &path);
                group.items.push(item);
            } else {
                self.unexpected(c, &path);
            }
        }
        group.audit_record = audit;
        group.signature = sig;
        group.annotations = anns;
        group
    }

    fn item_data(&mut self, node: Node<'a, 'input>, path: &str) -> ItemData {
        let typed = node.tag_name().name() != "ItemData";
        self.check_attributes(
            node,
            &[
                "ItemOID",
                "TransactionType",
                "IsNull",
                "Value",
                "AuditRecordID",
                "SignatureID",
                "AnnotationID",
                "MeasurementUnitOID",
            ],
        );
        let oid = self.required(node, path, "ItemOID");
        let item_path = format!("{path}/ItemData[{oid}]");
        let is_null = self.yes_no(node, &item_path, "IsNull", false);
        let value = if typed {
            // ItemDataString, ItemDataBase64Binary, ...: the value is the element's own
            // text. The schema gives these elements no children; any are reported.
            for child in node.children().filter(Node::is_element) {
                self.warn_grouped(
                    child,
                    format!(
                        "{} inside {} was not imported (typed ItemData holds only its value)",
                        self.qualified(child),
                        node.tag_name().name()
                    ),
                );
            }
            Some(
                node.children()
                    .filter(Node::is_text)
                    .filter_map(|n| n.text())
                    .collect::<String>(),
            )
        } else {
            Self::attr(node, "Value").map(str::to_owned)
        };
        let value = match (value, is_null) {
            (Some(_), true) => {
                self.error(
                    node,
                    &item_path,
                    "ItemData has both a Value and IsNull=\"Yes\"",
                );
                ItemValue::Null
            }
            (None, _) => ItemValue::Null,
            (Some(v), false) => ItemValue::Value(v),
        };
        let mut item = ItemData {
            item_oid: oid,
            value,
            transaction_type: self.transaction(node, &item_path),
            measurement_unit: Self::opt(node, "MeasurementUnitOID"),
            audit_record: None,
            signature: None,
            annotations: Vec::new(),
            discrepancy_notes: Vec::new(),
            line: self.line(node),
        };
        let (mut audit, mut sig, mut anns) = (None, None, Vec::new());
        if !typed {
            for c in self.data_children(node, &item_path, &mut audit, &mut sig, &mut anns) {
                if Self::is_openclinica_notes(c) {
                    let notes = self.discrepancy_notes(c, &item_path);
                    item.discrepancy_notes.extend(notes);
                    continue;
                }
                match c.tag_name().name() {
                    "MeasurementUnitRef" => {
                        item.measurement_unit =
                            Some(self.required(c, &item_path, "MeasurementUnitOID"))
                    }
                    _ => self.unexpected(c, &item_path),
                }
            }
        }
        item.audit_record = audit;
        item.signature = sig;
        item.annotations = anns;
        item
    }

    /// Clinical data for a metadata version defined in the same file is checked against
    /// it here; data for a version defined elsewhere (an earlier version the receiving
    /// system already holds, as when an amendment travels with data still collected on
    /// the version before it) is checked by the caller with [`check_clinical_data`], and
    /// said so in a warning.
    fn check_clinical_against_metadata(&mut self, odm: &Odm) {
        for data in &odm.clinical_data {
            let Some(study) = odm.studies.iter().find(|s| s.oid == data.study_oid) else {
                continue;
            };
            match study.metadata_version(&data.metadata_version_oid) {
                Some(mdv) => self.diags.extend(check_clinical_data(data, mdv)),
                None => self.diags.push(Diagnostic {
                    severity: Severity::Warning,
                    line: data.line,
                    column: 1,
                    path: "ClinicalData".into(),
                    message: format!(
                        "MetaDataVersionOID {} is not defined in this file for study {}: these data are checked against that version where they are imported",
                        data.metadata_version_oid, data.study_oid
                    ),
                    also_at: Vec::new(),
                }),
            }
        }
    }
}

/// Checks clinical data against the metadata it claims to follow: every OID is
/// defined, every item belongs to its group, every group to its form and every form to
/// its event; values fit their data type, length and code list; a non-repeating
/// element appears once.
pub fn check_clinical_data(data: &ClinicalData, mdv: &MetaDataVersion) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut err = |line: u32, path: &str, message: String| {
        out.push(Diagnostic {
            severity: Severity::Error,
            line,
            column: 1,
            path: path.to_owned(),
            message,
            also_at: Vec::new(),
        })
    };
    let mut seen_subjects = HashSet::new();
    for subject in &data.subjects {
        let spath = format!("SubjectData[{}]", subject.subject_key);
        if !seen_subjects.insert(subject.subject_key.as_str()) {
            err(
                subject.line,
                &spath,
                format!("subject {} appears twice", subject.subject_key),
            );
        }
        let mut event_keys: BTreeMap<(&str, Option<&str>), u32> = BTreeMap::new();
        for event in &subject.study_events {
            let epath = format!("{spath}/StudyEventData[{}]", event.study_event_oid);
            let Some(event_def) = mdv.study_event(&event.study_event_oid) else {
                err(
                    event.line,
                    &epath,
                    format!(
                        "StudyEventOID {} is not defined in metadata version {}",
                        event.study_event_oid, mdv.oid
                    ),
                );
                continue;
            };
            if event_keys
                .insert(
                    (&event.study_event_oid, event.repeat_key.as_deref()),
                    event.line,
                )
                .is_some()
            {
                err(
                    event.line,
                    &epath,
                    format!(
                        "study event {} with repeat key {:?} appears twice",
                        event.study_event_oid,
                        event.repeat_key.as_deref().unwrap_or("")
                    ),
                );
            }
            if !event_def.repeating && event.repeat_key.as_deref().is_some_and(|k| k != "1") {
                err(
                    event.line,
                    &epath,
                    format!(
                        "study event {} does not repeat but has StudyEventRepeatKey {:?}",
                        event.study_event_oid,
                        event.repeat_key.as_deref().unwrap_or("")
                    ),
                );
            }
            let mut form_keys = HashSet::new();
            for form in &event.forms {
                let fpath = format!("{epath}/FormData[{}]", form.form_oid);
                let Some(form_def) = mdv.form(&form.form_oid) else {
                    err(
                        form.line,
                        &fpath,
                        format!(
                            "FormOID {} is not defined in metadata version {}",
                            form.form_oid, mdv.oid
                        ),
                    );
                    continue;
                };
                if !event_def.forms.iter().any(|r| r.oid == form.form_oid) {
                    err(
                        form.line,
                        &fpath,
                        format!(
                            "form {} is not part of study event {}",
                            form.form_oid, event.study_event_oid
                        ),
                    );
                }
                if !form_keys.insert((&form.form_oid, form.repeat_key.as_deref())) {
                    err(
                        form.line,
                        &fpath,
                        format!(
                            "form {} with repeat key {:?} appears twice in the event",
                            form.form_oid,
                            form.repeat_key.as_deref().unwrap_or("")
                        ),
                    );
                }
                if !form_def.repeating && form.repeat_key.as_deref().is_some_and(|k| k != "1") {
                    err(
                        form.line,
                        &fpath,
                        format!(
                            "form {} does not repeat but has FormRepeatKey {:?}",
                            form.form_oid,
                            form.repeat_key.as_deref().unwrap_or("")
                        ),
                    );
                }
                let mut group_keys = HashSet::new();
                for group in &form.item_groups {
                    let gpath = format!("{fpath}/ItemGroupData[{}]", group.item_group_oid);
                    let Some(group_def) = mdv.item_group(&group.item_group_oid) else {
                        err(
                            group.line,
                            &gpath,
                            format!(
                                "ItemGroupOID {} is not defined in metadata version {}",
                                group.item_group_oid, mdv.oid
                            ),
                        );
                        continue;
                    };
                    if !form_def
                        .item_groups
                        .iter()
                        .any(|r| r.oid == group.item_group_oid)
                    {
                        err(
                            group.line,
                            &gpath,
                            format!(
                                "item group {} is not part of form {}",
                                group.item_group_oid, form.form_oid
                            ),
                        );
                    }
                    if !group_keys.insert((&group.item_group_oid, group.repeat_key.as_deref())) {
                        err(
                            group.line,
                            &gpath,
                            format!(
                                "item group {} with repeat key {:?} appears twice in the form",
                                group.item_group_oid,
                                group.repeat_key.as_deref().unwrap_or("")
                            ),
                        );
                    }
                    if !group_def.repeating && group.repeat_key.as_deref().is_some_and(|k| k != "1")
                    {
                        err(
                            group.line,
                            &gpath,
                            format!(
                                "item group {} does not repeat but has ItemGroupRepeatKey {:?}",
                                group.item_group_oid,
                                group.repeat_key.as_deref().unwrap_or("")
                            ),
                        );
                    }
                    let mut items_seen = HashSet::new();
                    for item in &group.items {
                        let ipath = format!("{gpath}/ItemData[{}]", item.item_oid);
                        let Some(item_def) = mdv.item(&item.item_oid) else {
                            err(
                                item.line,
                                &ipath,
                                format!(
                                    "ItemOID {} is not defined in metadata version {}",
                                    item.item_oid, mdv.oid
                                ),
                            );
                            continue;
                        };
                        if !group_def.items.iter().any(|r| r.item_oid == item.item_oid) {
                            err(
                                item.line,
                                &ipath,
                                format!(
                                    "item {} is not part of item group {}",
                                    item.item_oid, group.item_group_oid
                                ),
                            );
                        }
                        // In a transactional file one item may change several times, in order.
                        if !items_seen.insert(item.item_oid.as_str())
                            && item.transaction_type.is_none()
                        {
                            err(
                                item.line,
                                &ipath,
                                format!(
                                    "item {} appears twice in the same item group",
                                    item.item_oid
                                ),
                            );
                        }
                        if let ItemValue::Value(v) = &item.value {
                            if v.is_empty() {
                                continue;
                            }
                            if let Err(e) = check_value(item_def, v) {
                                err(
                                    item.line,
                                    &ipath,
                                    format!("value of {}: {e}", item.item_oid),
                                );
                            } else if let Some(cl) =
                                item_def.code_list.as_deref().and_then(|c| mdv.code_list(c))
                                && cl.external.is_none()
                                && !cl.items.iter().any(|c| &c.coded_value == v)
                            {
                                err(
                                    item.line,
                                    &ipath,
                                    format!(
                                        "value {v:?} of {} is not a code of code list {}",
                                        item.item_oid, cl.oid
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    out
}
