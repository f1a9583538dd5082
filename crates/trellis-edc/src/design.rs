//! A study's case report forms as data entry needs them, built from one ODM metadata
//! version: forms with their items in order, code lists, units, and every edit check,
//! skip condition and derivation compiled once.
//!
//! Where the checks come from (all standard ODM, so a study round-trips through ODM):
//! - `RangeCheck` with `CheckValue`s (LT, LE, ..., IN, NOTIN) on an item;
//! - `RangeCheck` with a `FormalExpression` in the Trellis check language (`Context`
//!   absent or `Trellis`): cross-item, cross-form and cross-visit checks;
//! - `ConditionDef` referenced by `CollectionExceptionConditionOID`: skip logic (the
//!   item is not collected while the condition holds);
//! - `MethodDef` referenced by `ItemRef/@MethodOID`: a derived value computed on save.
//!
//! A study event's schedule (planned day and window) is carried in standard `Alias`
//! elements with contexts `Trellis:PlannedDay`, `Trellis:WindowBefore` and
//! `Trellis:WindowAfter`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use trellis_checks::{
    CheckDef, CompiledCheck, CompiledExpression, ItemRef, Severity, Slot, ValueType,
    range_check_source,
};
use trellis_odm::{
    Comparator as OdmComparator, DataType, MetaDataVersion, SoftHard, Study, StudyEventType,
    Translated,
};

use crate::path::Oid;

/// A problem that keeps a study from being built, with the line of the definition in
/// the ODM file it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    pub line: u32,
    /// What was being built, e.g. `FormDef F.VS, check I.DIABP.RC1`.
    pub context: String,
    pub message: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} ({}): {}", self.line, self.context, self.message)
    }
}

/// Something built but not fully used (a check in another tool's expression language).
pub type BuildNote = BuildError;

#[derive(Debug, thiserror::Error)]
#[error("the study design has {} error(s): {}", .errors.len(), .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct BuildFailed {
    pub errors: Vec<BuildError>,
    pub notes: Vec<BuildNote>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Day relative to day 1 (baseline); screening is negative.
    pub planned_day: i32,
    pub window_before: u32,
    pub window_after: u32,
}

#[derive(Clone, Debug)]
pub struct EventDesign {
    pub oid: Oid,
    pub name: String,
    pub repeating: bool,
    pub event_type: StudyEventType,
    pub forms: Vec<Oid>,
    pub schedule: Option<Schedule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub code: String,
    pub decode: Translated,
}

#[derive(Clone, Debug)]
pub struct ItemDesign {
    pub oid: Oid,
    pub name: String,
    pub data_type: DataType,
    /// The type checks see; `None` for types checks cannot use (binary, durations).
    pub value_type: Option<ValueType>,
    pub question: Translated,
    pub mandatory: bool,
    pub length: Option<u32>,
    pub significant_digits: Option<u32>,
    pub units: Vec<Translated>,
    pub choices: Vec<Choice>,
    /// Index into the form's conditions: the item is not collected while it holds.
    pub skip_when: Option<usize>,
    /// A derivation: the item is computed, not entered.
    pub derivation: Option<CompiledExpression>,
    pub slot: Slot,
    /// The ODM definition, for value checks (type, length, precision).
    pub def: trellis_odm::ItemDef,
}

#[derive(Clone, Debug)]
pub struct GroupDesign {
    pub oid: Oid,
    pub name: String,
    pub repeating: bool,
    pub items: Vec<ItemDesign>,
}

/// Where a slot's value comes from when a check runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotSource {
    /// An item of the form being saved (of the current row for a repeating group).
    Local { group: usize, item: usize },
    /// An item of another form of the same subject; `event: None` means the event
    /// instance of the form being saved. Repeat keys are 1: a check cannot choose
    /// among rows of another form.
    External {
        event: Option<Oid>,
        form: Oid,
        group: Oid,
        item: Oid,
        value_type: ValueType,
    },
}

#[derive(Clone, Debug)]
pub struct FormCheck {
    pub check: CompiledCheck,
    /// The repeating group whose rows the check runs on, if any.
    pub row_group: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct FormCondition {
    pub oid: Oid,
    pub description: String,
    pub expression: CompiledExpression,
    pub row_group: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct FormDesign {
    pub oid: Oid,
    pub name: String,
    pub repeating: bool,
    pub groups: Vec<GroupDesign>,
    pub checks: Vec<FormCheck>,
    pub conditions: Vec<FormCondition>,
    pub slots: Vec<SlotSource>,
}

impl FormDesign {
    pub fn group(&self, oid: &str) -> Option<(usize, &GroupDesign)> {
        self.groups
            .iter()
            .enumerate()
            .find(|(_, g)| g.oid.as_str() == oid)
    }
}

#[derive(Clone, Debug)]
pub struct StudyDesign {
    pub study_oid: Oid,
    pub metadata_version: Oid,
    pub name: String,
    pub events: Vec<EventDesign>,
    pub forms: Vec<FormDesign>,
    pub notes: Vec<BuildNote>,
}

impl StudyDesign {
    pub fn form(&self, oid: &str) -> Option<&FormDesign> {
        self.forms.iter().find(|f| f.oid.as_str() == oid)
    }
    pub fn event(&self, oid: &str) -> Option<&EventDesign> {
        self.events.iter().find(|e| e.oid.as_str() == oid)
    }
    /// The number of compiled edit checks, for reports.
    pub fn check_count(&self) -> usize {
        self.forms.iter().map(|f| f.checks.len()).sum()
    }

    /// Builds the design of `metadata_version` of `study`. The ODM reader has already
    /// checked references; this step compiles expressions and checks that every OID can
    /// be addressed.
    pub fn build(study: &Study, metadata_version: &str) -> Result<StudyDesign, BuildFailed> {
        let mut b = Builder {
            errors: Vec::new(),
            notes: Vec::new(),
        };
        let Some(mdv) = study.metadata_version(metadata_version) else {
            return Err(BuildFailed {
                errors: vec![BuildError {
                    line: study.line,
                    context: format!("Study {}", study.oid),
                    message: format!("has no metadata version {metadata_version}"),
                }],
                notes: Vec::new(),
            });
        };
        let study_oid = b.oid(&study.oid, study.line, "Study");
        let mdv_oid = b.oid(&mdv.oid, mdv.line, "MetaDataVersion");
        let units: HashMap<&str, &Translated> = study
            .measurement_units
            .iter()
            .map(|u| (u.oid.as_str(), &u.symbol))
            .collect();

        // Protocol order first, then events the protocol does not list.
        let mut event_defs: Vec<&trellis_odm::StudyEventDef> = mdv
            .protocol
            .iter()
            .filter_map(|r| mdv.study_event(&r.oid))
            .collect();
        for e in &mdv.study_events {
            if !event_defs.iter().any(|d| d.oid == e.oid) {
                event_defs.push(e);
            }
        }
        let events = event_defs
            .into_iter()
            .map(|e| b.event(e))
            .collect::<Vec<_>>();
        let forms = mdv
            .forms
            .iter()
            .map(|f| b.form(mdv, f, &units))
            .collect::<Vec<_>>();

        let (Some(study_oid), Some(mdv_oid)) = (study_oid, mdv_oid) else {
            return Err(BuildFailed {
                errors: b.errors,
                notes: b.notes,
            });
        };
        if !b.errors.is_empty() {
            return Err(BuildFailed {
                errors: b.errors,
                notes: b.notes,
            });
        }
        Ok(StudyDesign {
            study_oid,
            metadata_version: mdv_oid,
            name: study.name.clone(),
            events: events.into_iter().flatten().collect(),
            forms: forms.into_iter().flatten().collect(),
            notes: b.notes,
        })
    }
}

struct Builder {
    errors: Vec<BuildError>,
    notes: Vec<BuildNote>,
}

/// Expressions without a context, or in the Trellis context, are in our language.
fn is_trellis_context(context: Option<&str>) -> bool {
    context.is_none_or(|c| c.eq_ignore_ascii_case("trellis"))
}

impl Builder {
    fn error(&mut self, line: u32, context: impl Into<String>, message: impl Into<String>) {
        self.errors.push(BuildError {
            line,
            context: context.into(),
            message: message.into(),
        });
    }

    fn note(&mut self, line: u32, context: impl Into<String>, message: impl Into<String>) {
        self.notes.push(BuildError {
            line,
            context: context.into(),
            message: message.into(),
        });
    }

    fn oid(&mut self, oid: &str, line: u32, what: &str) -> Option<Oid> {
        match Oid::new(oid) {
            Ok(o) => Some(o),
            Err(e) => {
                self.error(line, format!("{what} {oid}"), e.to_string());
                None
            }
        }
    }

    fn event(&mut self, e: &trellis_odm::StudyEventDef) -> Option<EventDesign> {
        let oid = self.oid(&e.oid, e.line, "StudyEventDef")?;
        let alias = |context: &str| {
            e.aliases
                .iter()
                .find(|a| a.context.eq_ignore_ascii_case(context))
                .map(|a| a.name.trim().to_owned())
        };
        let planned = alias("Trellis:PlannedDay");
        let schedule = match planned {
            None => None,
            Some(day) => {
                let before = alias("Trellis:WindowBefore").unwrap_or_else(|| "0".into());
                let after = alias("Trellis:WindowAfter").unwrap_or_else(|| "0".into());
                match (
                    day.parse::<i32>(),
                    before.parse::<u32>(),
                    after.parse::<u32>(),
                ) {
                    (Ok(planned_day), Ok(window_before), Ok(window_after)) => Some(Schedule {
                        planned_day,
                        window_before,
                        window_after,
                    }),
                    _ => {
                        self.error(
                            e.line,
                            format!("StudyEventDef {}", e.oid),
                            format!("schedule aliases must be whole numbers (planned day {day:?}, window {before:?}/{after:?})"),
                        );
                        None
                    }
                }
            }
        };
        let forms = e
            .forms
            .iter()
            .filter_map(|r| self.oid(&r.oid, r.line, "FormRef"))
            .collect();
        Some(EventDesign {
            oid,
            name: e.name.clone(),
            repeating: e.repeating,
            event_type: e.event_type,
            forms,
            schedule,
        })
    }

    fn form(
        &mut self,
        mdv: &MetaDataVersion,
        f: &trellis_odm::FormDef,
        units: &HashMap<&str, &Translated>,
    ) -> Option<FormDesign> {
        let form_oid = self.oid(&f.oid, f.line, "FormDef")?;
        let context = format!("FormDef {}", f.oid);
        let mut groups = Vec::new();
        let mut slots = Vec::new();
        for r in &f.item_groups {
            let Some(g) = mdv.item_group(&r.oid) else {
                continue;
            };
            let Some(group_oid) = self.oid(&g.oid, g.line, "ItemGroupDef") else {
                continue;
            };
            let mut items = Vec::new();
            for ir in &g.items {
                let Some(def) = mdv.item(&ir.item_oid) else {
                    continue;
                };
                let Some(item_oid) = self.oid(&def.oid, def.line, "ItemDef") else {
                    continue;
                };
                let value_type = ValueType::from_odm(def.data_type.as_str());
                let choices = def
                    .code_list
                    .as_deref()
                    .and_then(|cl| mdv.code_list(cl))
                    .map(|cl| {
                        cl.items
                            .iter()
                            .map(|i| Choice {
                                code: i.coded_value.clone(),
                                decode: if i.decode.is_empty() {
                                    Translated::plain(i.coded_value.clone())
                                } else {
                                    i.decode.clone()
                                },
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let slot = Slot(slots.len() as u32);
                slots.push(SlotSource::Local {
                    group: groups.len(),
                    item: items.len(),
                });
                items.push(ItemDesign {
                    oid: item_oid,
                    name: def.name.clone(),
                    data_type: def.data_type,
                    value_type,
                    question: def.question.clone(),
                    mandatory: ir.mandatory,
                    length: def.length,
                    significant_digits: def.significant_digits,
                    units: def
                        .measurement_units
                        .iter()
                        .filter_map(|u| units.get(u.as_str()).map(|t| (*t).clone()))
                        .collect(),
                    choices,
                    skip_when: None,
                    derivation: None,
                    slot,
                    def: def.clone(),
                });
            }
            groups.push(GroupDesign {
                oid: group_oid,
                name: g.name.clone(),
                repeating: g.repeating,
                items,
            });
        }

        let mut form = FormDesign {
            oid: form_oid,
            name: f.name.clone(),
            repeating: f.repeating,
            groups,
            checks: Vec::new(),
            conditions: Vec::new(),
            slots,
        };

        // Checks, skip conditions and derivations, each compiled in the context of the
        // item group it belongs to.
        for r in &f.item_groups {
            let Some(g) = mdv.item_group(&r.oid) else {
                continue;
            };
            let Some((group_index, _)) = form.group(&g.oid) else {
                continue;
            };
            for ir in &g.items {
                let Some(def) = mdv.item(&ir.item_oid) else {
                    continue;
                };
                let Some(item_index) = form.groups[group_index]
                    .items
                    .iter()
                    .position(|i| i.oid.as_str() == def.oid)
                else {
                    continue;
                };
                let item_type = form.groups[group_index].items[item_index].value_type;
                for (n, rc) in def.range_checks.iter().enumerate() {
                    let id = format!("{}.RC{}", def.oid, n + 1);
                    let where_ = format!("{context}, check {id}");
                    let severity = match rc.soft_hard {
                        SoftHard::Hard => Severity::Hard,
                        SoftHard::Soft => Severity::Soft,
                    };
                    let source = if let Some(c) =
                        rc.comparator.filter(|_| !rc.check_values.is_empty())
                    {
                        let Some(ty) = item_type else {
                            self.note(
                                rc.line,
                                where_,
                                format!(
                                    "range checks on {} items are not evaluated",
                                    def.data_type
                                ),
                            );
                            continue;
                        };
                        let comparator = match c {
                            OdmComparator::Lt => trellis_checks::Comparator::LT,
                            OdmComparator::Le => trellis_checks::Comparator::LE,
                            OdmComparator::Gt => trellis_checks::Comparator::GT,
                            OdmComparator::Ge => trellis_checks::Comparator::GE,
                            OdmComparator::Eq => trellis_checks::Comparator::EQ,
                            OdmComparator::Ne => trellis_checks::Comparator::NE,
                            OdmComparator::In => trellis_checks::Comparator::IN,
                            OdmComparator::NotIn => trellis_checks::Comparator::NI,
                        };
                        let values: Vec<&str> =
                            rc.check_values.iter().map(String::as_str).collect();
                        match range_check_source(&ItemRef::item(&def.oid), ty, comparator, &values)
                        {
                            Ok(s) => s,
                            Err(e) => {
                                self.error(rc.line, where_, e.to_string());
                                continue;
                            }
                        }
                    } else {
                        let Some(expr) = rc
                            .formal_expressions
                            .iter()
                            .find(|e| is_trellis_context(e.context.as_deref()))
                        else {
                            let contexts: Vec<&str> = rc
                                .formal_expressions
                                .iter()
                                .filter_map(|e| e.context.as_deref())
                                .collect();
                            self.note(rc.line, where_, format!("expression in context {} is not in the Trellis check language and is not evaluated", contexts.join(", ")));
                            continue;
                        };
                        expr.text.clone()
                    };
                    let message = rc
                        .error_message
                        .get("en")
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{} fails check: {source}", def.name));
                    let check = CheckDef {
                        id: id.clone(),
                        severity,
                        expression: source,
                        message,
                        targets: vec![ItemRef::item(&def.oid)],
                    };
                    let resolver = Resolver::new(mdv, &mut form, group_index);
                    let compiled = check.compile(&resolver);
                    let row_group = resolver.row_group();
                    if let Some(e) = resolver.take_error() {
                        self.error(rc.line, where_, e);
                        continue;
                    }
                    match compiled {
                        Ok(check) => form.checks.push(FormCheck { check, row_group }),
                        Err(e) => self.error(rc.line, where_, e.to_string()),
                    }
                }
                if let Some(cond_oid) = &ir.collection_exception_condition {
                    let Some(cond) = mdv.condition(cond_oid) else {
                        continue;
                    };
                    let where_ = format!("{context}, ConditionDef {cond_oid}");
                    let Some(expr) = cond
                        .expressions
                        .iter()
                        .find(|e| is_trellis_context(e.context.as_deref()))
                    else {
                        self.note(cond.line, where_, "condition is not in the Trellis check language; the item is always collected");
                        continue;
                    };
                    let resolver = Resolver::new(mdv, &mut form, group_index);
                    let compiled = CompiledExpression::compile(cond_oid, &expr.text, &resolver);
                    let row_group = resolver.row_group();
                    if let Some(e) = resolver.take_error() {
                        self.error(expr.line, where_, e);
                        continue;
                    }
                    match compiled {
                        Ok(expression) if expression.value_type() == ValueType::Boolean => {
                            let Some(oid) = self.oid(cond_oid, cond.line, "ConditionDef") else {
                                continue;
                            };
                            form.conditions.push(FormCondition {
                                oid,
                                description: cond
                                    .description
                                    .get("en")
                                    .unwrap_or(&cond.name)
                                    .to_owned(),
                                expression,
                                row_group,
                            });
                            form.groups[group_index].items[item_index].skip_when =
                                Some(form.conditions.len() - 1);
                        }
                        Ok(expression) => self.error(
                            expr.line,
                            where_,
                            format!(
                                "a condition must be Boolean, this one is {}",
                                expression.value_type()
                            ),
                        ),
                        Err(e) => self.error(expr.line, where_, e.to_string()),
                    }
                }
                if let Some(method_oid) = &ir.method_oid {
                    let Some(method) = mdv.methods.iter().find(|m| &m.oid == method_oid) else {
                        continue;
                    };
                    let where_ = format!("{context}, MethodDef {method_oid}");
                    let Some(expr) = method
                        .expressions
                        .iter()
                        .find(|e| is_trellis_context(e.context.as_deref()))
                    else {
                        self.note(method.line, where_, "method is not in the Trellis check language; the item is entered by hand");
                        continue;
                    };
                    let resolver = Resolver::new(mdv, &mut form, group_index);
                    let compiled = CompiledExpression::compile(method_oid, &expr.text, &resolver);
                    if let Some(e) = resolver.take_error() {
                        self.error(expr.line, where_, e);
                        continue;
                    }
                    match compiled {
                        Ok(expression) => {
                            let target = item_type;
                            let fits = match (target, expression.value_type()) {
                                (Some(a), b) if a == b => true,
                                (Some(ValueType::Decimal), ValueType::Integer) => true,
                                (Some(ValueType::Text), _) => true,
                                _ => false,
                            };
                            if fits {
                                form.groups[group_index].items[item_index].derivation =
                                    Some(expression);
                            } else {
                                self.error(
                                    expr.line,
                                    where_,
                                    format!(
                                        "derives a {} value for item {} of type {}",
                                        expression.value_type(),
                                        def.oid,
                                        def.data_type
                                    ),
                                );
                            }
                        }
                        Err(e) => self.error(expr.line, where_, e.to_string()),
                    }
                }
            }
        }
        Some(form)
    }
}

/// Resolves check references in the context of one item group of one form, adding a
/// slot for every item of another form the first time it is referred to. `Schema`
/// resolves through `&self`, so what resolution records sits in cells.
struct Resolver<'a> {
    mdv: &'a MetaDataVersion,
    form: RefCell<&'a mut FormDesign>,
    own_group: usize,
    /// Repeating groups the expression reads from (at most one is allowed).
    row_groups: RefCell<Vec<usize>>,
    error: RefCell<Option<String>>,
}

impl<'a> Resolver<'a> {
    fn new(mdv: &'a MetaDataVersion, form: &'a mut FormDesign, own_group: usize) -> Self {
        Self {
            mdv,
            form: RefCell::new(form),
            own_group,
            row_groups: RefCell::new(Vec::new()),
            error: RefCell::new(None),
        }
    }

    fn row_group(&self) -> Option<usize> {
        self.row_groups.borrow().first().copied()
    }

    fn take_error(&self) -> Option<String> {
        self.error.borrow_mut().take()
    }

    fn fail(&self, message: String) -> Option<(Slot, ValueType)> {
        let mut error = self.error.borrow_mut();
        if error.is_none() {
            *error = Some(message);
        }
        None
    }

    fn local(&self, item: &str) -> Option<(Slot, ValueType)> {
        let form = self.form.borrow();
        // The check's own group first, then any other group of the form.
        let order = std::iter::once(self.own_group)
            .chain((0..form.groups.len()).filter(|&g| g != self.own_group));
        let mut found = None;
        for g in order {
            if let Some(i) = form.groups[g]
                .items
                .iter()
                .position(|i| i.oid.as_str() == item)
            {
                found = Some((g, i));
                break;
            }
        }
        let (g, i) = found?;
        let design = &form.groups[g].items[i];
        let Some(ty) = design.value_type else {
            return self.fail(format!(
                "item {item} is {}, which checks cannot read",
                design.data_type
            ));
        };
        let slot = design.slot;
        if form.groups[g].repeating {
            let mut rows = self.row_groups.borrow_mut();
            if !rows.contains(&g) {
                rows.push(g);
            }
            if rows.len() > 1 {
                let message = format!(
                    "the expression reads rows of two repeating groups ({} and {}); a check can run on the rows of one",
                    form.groups[rows[0]].oid, form.groups[g].oid
                );
                drop(rows);
                return self.fail(message);
            }
        }
        Some((slot, ty))
    }

    fn external(&self, r: &ItemRef) -> Option<(Slot, ValueType)> {
        let own_form = self.form.borrow().oid.clone();
        let form_oid = r.form.as_deref().unwrap_or(own_form.as_str());
        let Some(form) = self.mdv.form(form_oid) else {
            return self.fail(format!(
                "{r} refers to form {form_oid}, which is not defined"
            ));
        };
        if let Some(event) = &r.study_event {
            match self.mdv.study_event(event) {
                None => {
                    return self.fail(format!(
                        "{r} refers to study event {event}, which is not defined"
                    ));
                }
                Some(e) if !e.forms.iter().any(|f| f.oid == form_oid) => {
                    return self.fail(format!(
                        "{r}: form {form_oid} is not part of study event {event}"
                    ));
                }
                Some(e) if e.repeating => {
                    return self.fail(format!("{r}: study event {event} repeats; a check cannot choose one of its occurrences"));
                }
                Some(_) => {}
            }
        }
        if form.repeating {
            return self.fail(format!(
                "{r}: form {form_oid} repeats; a check cannot choose one of its occurrences"
            ));
        }
        let groups: Vec<&trellis_odm::ItemGroupDef> = form
            .item_groups
            .iter()
            .filter_map(|g| self.mdv.item_group(&g.oid))
            .filter(|g| r.item_group.as_deref().is_none_or(|want| want == g.oid))
            .filter(|g| g.items.iter().any(|i| i.item_oid == r.item))
            .collect();
        let group = match groups[..] {
            [one] => one,
            [] => return self.fail(format!("{r}: form {form_oid} has no item {}", r.item)),
            _ => {
                return self.fail(format!(
                    "{r}: item {} is in several item groups of form {form_oid}; name the group",
                    r.item
                ));
            }
        };
        if group.repeating {
            return self.fail(format!(
                "{r}: item group {} repeats; a check cannot choose one of its rows",
                group.oid
            ));
        }
        let Some(def) = self.mdv.item(&r.item) else {
            return self.fail(format!("{r}: item {} is not defined", r.item));
        };
        let Some(ty) = ValueType::from_odm(def.data_type.as_str()) else {
            return self.fail(format!(
                "{r}: item {} is {}, which checks cannot read",
                r.item, def.data_type
            ));
        };
        let (Ok(form_oid), Ok(group_oid), Ok(item_oid)) =
            (Oid::new(form_oid), Oid::new(&group.oid), Oid::new(&r.item))
        else {
            return self.fail(format!("{r}: an OID cannot be addressed"));
        };
        let event = match &r.study_event {
            Some(e) => match Oid::new(e) {
                Ok(o) => Some(o),
                Err(err) => return self.fail(err.to_string()),
            },
            None => None,
        };
        let source = SlotSource::External {
            event,
            form: form_oid,
            group: group_oid,
            item: item_oid,
            value_type: ty,
        };
        let mut form = self.form.borrow_mut();
        let slot = match form.slots.iter().position(|s| *s == source) {
            Some(i) => Slot(i as u32),
            None => {
                form.slots.push(source);
                Slot(form.slots.len() as u32 - 1)
            }
        };
        Some((slot, ty))
    }
}

impl trellis_checks::Schema for Resolver<'_> {
    fn resolve(&self, r: &ItemRef) -> Option<(Slot, ValueType)> {
        let own_form = self.form.borrow().oid.clone();
        let in_this_form =
            r.study_event.is_none() && r.form.as_deref().is_none_or(|f| f == own_form.as_str());
        if in_this_form {
            if let Some(group) = &r.item_group {
                let form = self.form.borrow();
                let has = form
                    .group(group)
                    .is_some_and(|(_, g)| g.items.iter().any(|i| i.oid.as_str() == r.item));
                drop(form);
                if !has {
                    return self.fail(format!(
                        "{r}: item group {group} of this form has no item {}",
                        r.item
                    ));
                }
            }
            match self.local(&r.item) {
                Some(found) => Some(found),
                None if self.error.borrow().is_some() => None,
                None => self.fail(format!("{r}: form {own_form} has no item {}", r.item)),
            }
        } else {
            self.external(r)
        }
    }
}
