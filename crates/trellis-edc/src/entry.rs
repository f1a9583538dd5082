//! What happens when a form is saved: values are checked against their items, derived
//! items computed, skip logic applied, and every edit check of the form run (once, or
//! once per row of the repeating group it reads).

use std::collections::{BTreeMap, BTreeSet};

use trellis_checks::{Env, Outcome, Severity, Value};
use trellis_odm::values::check_value;

use crate::design::{FormDesign, SlotSource};
use crate::path::{Oid, Repeat};

/// An item of the form being saved: item group, row and item.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalKey {
    pub group: Oid,
    pub repeat: Repeat,
    pub item: Oid,
}

/// An item of another form that a check reads (repeat keys are 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalKey<'a> {
    /// `None`: the event instance of the form being saved.
    pub event: Option<&'a Oid>,
    pub form: &'a Oid,
    pub group: &'a Oid,
    pub item: &'a Oid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// The value does not fit its item (type, length, precision, code list): refused.
    Invalid,
    /// An edit check failed.
    Check,
    /// A mandatory item is blank.
    Required,
    /// An item that skip logic says is not collected has a value.
    NotCollected,
    /// A check could not be evaluated on these data (division by zero, overflow).
    CannotEvaluate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The check's id, or `ITEM#REQUIRED`-style ids for built-in findings; a query
    /// opened for a finding remembers it, so the query closes when the check passes.
    pub check_id: String,
    pub kind: FindingKind,
    pub severity: Severity,
    pub message: String,
    pub targets: Vec<LocalKey>,
}

#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    /// Checks that hold (or no longer apply) on these data, with the item each
    /// attaches to: open automatic queries for them can close.
    pub resolved: Vec<(String, LocalKey)>,
    /// Items not collected because of skip logic.
    pub not_collected: Vec<LocalKey>,
    /// Derived items and their computed values (`None`: cannot be computed yet).
    pub derived: Vec<(LocalKey, Option<String>)>,
}

impl Evaluation {
    /// A hard finding refuses the whole save.
    pub fn refused(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Hard)
    }
}

/// Evaluates the complete state of one form instance after a save: `values` holds the
/// form's non-blank values (previously saved ones merged with the submitted ones);
/// `external` looks up values of other forms of the same subject.
pub fn evaluate(
    form: &FormDesign,
    values: &BTreeMap<LocalKey, String>,
    external: &dyn Fn(&ExternalKey) -> Option<String>,
    env: &Env,
) -> Evaluation {
    let mut out = Evaluation::default();

    // 1. Every value must belong to the form and fit its item.
    let mut slots: Vec<Value> = vec![Value::Missing; form.slots.len()];
    let mut rows: BTreeMap<usize, BTreeSet<Repeat>> = BTreeMap::new();
    let mut parsed: BTreeMap<(usize, Repeat, usize), Value> = BTreeMap::new();
    for (key, raw) in values {
        let Some((g, group)) = form.group(key.group.as_str()) else {
            out.findings.push(invalid(
                key,
                format!("form {} has no item group {}", form.oid, key.group),
            ));
            continue;
        };
        let Some(i) = group.items.iter().position(|i| i.oid == key.item) else {
            out.findings.push(invalid(
                key,
                format!("item group {} has no item {}", key.group, key.item),
            ));
            continue;
        };
        if !group.repeating && key.repeat != 1 {
            out.findings.push(invalid(
                key,
                format!(
                    "item group {} does not repeat; row {} does not exist",
                    key.group, key.repeat
                ),
            ));
            continue;
        }
        let item = &group.items[i];
        if raw.trim().is_empty() {
            continue;
        }
        if let Err(e) = check_value(&item.def, raw) {
            out.findings
                .push(invalid(key, format!("{}: {e}", item.name)));
            continue;
        }
        if !item.choices.is_empty() && !item.choices.iter().any(|c| &c.code == raw) {
            let codes: Vec<&str> = item.choices.iter().map(|c| c.code.as_str()).collect();
            out.findings.push(invalid(
                key,
                format!(
                    "{}: {raw:?} is not one of the choices ({})",
                    item.name,
                    codes.join(", ")
                ),
            ));
            continue;
        }
        rows.entry(g).or_default().insert(key.repeat);
        if let Some(ty) = item.value_type {
            match Value::parse(ty, raw) {
                Ok(v) => {
                    parsed.insert((g, key.repeat, i), v);
                }
                Err(e) => out
                    .findings
                    .push(invalid(key, format!("{}: {e}", item.name))),
            }
        }
    }
    if out.refused() {
        return out;
    }
    for (slot, source) in form.slots.iter().enumerate() {
        match source {
            SlotSource::Local { group, item } if !form.groups[*group].repeating => {
                if let Some(v) = parsed.get(&(*group, 1, *item)) {
                    slots[slot] = v.clone();
                }
            }
            SlotSource::Local { .. } => {}
            SlotSource::External {
                event,
                form: f,
                group,
                item,
                value_type,
            } => {
                let key = ExternalKey {
                    event: event.as_ref(),
                    form: f,
                    group,
                    item,
                };
                if let Some(raw) = external(&key) {
                    // A stored value that no longer parses reads as blank; it was
                    // refused on its own form when it did not fit.
                    slots[slot] = Value::parse(*value_type, &raw).unwrap_or(Value::Missing);
                }
            }
        }
    }

    // The row contexts: one for the non-repeating part, one per row of each repeating group.
    let contexts: Vec<(Option<usize>, Repeat)> = std::iter::once((None, 1))
        .chain(
            form.groups
                .iter()
                .enumerate()
                .filter(|(_, g)| g.repeating)
                .flat_map(|(g, _)| {
                    rows.get(&g)
                        .into_iter()
                        .flatten()
                        .map(move |r| (Some(g), *r))
                }),
        )
        .collect();
    let with_row = |slots: &[Value], row: Option<(usize, Repeat)>| -> Vec<Value> {
        let mut v = slots.to_vec();
        if let Some((g, r)) = row {
            for (i, item) in form.groups[g].items.iter().enumerate() {
                v[item.slot.index()] = parsed.get(&(g, r, i)).cloned().unwrap_or(Value::Missing);
            }
        }
        v
    };
    let key_of = |g: usize, i: usize, repeat: Repeat| LocalKey {
        group: form.groups[g].oid.clone(),
        repeat: if form.groups[g].repeating { repeat } else { 1 },
        item: form.groups[g].items[i].oid.clone(),
    };

    for &(row_group, repeat) in &contexts {
        let mut row_slots = with_row(&slots, row_group.map(|g| (g, repeat)));
        let groups_here: Vec<usize> = match row_group {
            Some(g) => vec![g],
            None => (0..form.groups.len())
                .filter(|&g| !form.groups[g].repeating)
                .collect(),
        };

        // 2. Derived items, in form order, so later derivations see earlier ones.
        for &g in &groups_here {
            for (i, item) in form.groups[g].items.iter().enumerate() {
                let Some(expr) = &item.derivation else {
                    continue;
                };
                let value = match expr.evaluate_value(&row_slots, env) {
                    Ok(Value::Missing) | Err(_) => None,
                    Ok(v) => Some(v),
                };
                if let Some(v) = &value {
                    row_slots[item.slot.index()] = v.clone();
                }
                out.derived
                    .push((key_of(g, i, repeat), value.map(|v| v.to_string())));
            }
        }

        // 3. Skip logic and required items.
        for &g in &groups_here {
            for (i, item) in form.groups[g].items.iter().enumerate() {
                let key = key_of(g, i, repeat);
                let skipped = item.skip_when.is_some_and(|c| {
                    matches!(
                        form.conditions[c]
                            .expression
                            .evaluate_condition(&row_slots, env),
                        Ok(Some(true))
                    )
                });
                let present = values.get(&key).is_some_and(|v| !v.trim().is_empty());
                if skipped {
                    out.not_collected.push(key.clone());
                    if present {
                        let reason = item
                            .skip_when
                            .map(|c| form.conditions[c].description.clone())
                            .unwrap_or_default();
                        out.findings.push(Finding {
                            check_id: format!("{}#NOT_COLLECTED", item.oid),
                            kind: FindingKind::NotCollected,
                            severity: Severity::Soft,
                            message: format!(
                                "{} is not collected here ({reason}) but has a value",
                                item.name
                            ),
                            targets: vec![key],
                        });
                    } else {
                        out.resolved
                            .push((format!("{}#NOT_COLLECTED", item.oid), key.clone()));
                        out.resolved.push((format!("{}#REQUIRED", item.oid), key));
                    }
                    continue;
                }
                let id = format!("{}#REQUIRED", item.oid);
                if item.mandatory && item.derivation.is_none() && !present {
                    out.findings.push(Finding {
                        check_id: id,
                        kind: FindingKind::Required,
                        severity: Severity::Soft,
                        message: format!("{} is required", item.name),
                        targets: vec![key],
                    });
                } else {
                    out.resolved.push((id, key.clone()));
                    out.resolved
                        .push((format!("{}#NOT_COLLECTED", item.oid), key));
                }
            }
        }

        // 4. Edit checks that run in this context.
        for fc in form.checks.iter().filter(|c| c.row_group == row_group) {
            let targets: Vec<LocalKey> = fc
                .check
                .targets()
                .iter()
                .filter_map(|(_, slot)| match form.slots.get(slot.index()) {
                    Some(SlotSource::Local { group, item }) => Some(key_of(*group, *item, repeat)),
                    _ => None,
                })
                .collect();
            match fc.check.evaluate(&row_slots, env) {
                Ok(Outcome::Fail) => out.findings.push(Finding {
                    check_id: fc.check.id().to_owned(),
                    kind: FindingKind::Check,
                    severity: fc.check.severity(),
                    message: fc.check.message().to_owned(),
                    targets,
                }),
                Ok(Outcome::Pass | Outcome::NotApplicable) => {
                    for t in targets {
                        out.resolved.push((fc.check.id().to_owned(), t));
                    }
                }
                Err(e) => out.findings.push(Finding {
                    check_id: fc.check.id().to_owned(),
                    kind: FindingKind::CannotEvaluate,
                    severity: Severity::Soft,
                    message: format!(
                        "check {} cannot be evaluated on these values: {e}",
                        fc.check.id()
                    ),
                    targets,
                }),
            }
        }
    }
    out
}

fn invalid(key: &LocalKey, message: String) -> Finding {
    Finding {
        check_id: format!("{}#VALUE", key.item),
        kind: FindingKind::Invalid,
        severity: Severity::Hard,
        message,
        targets: vec![key.clone()],
    }
}
