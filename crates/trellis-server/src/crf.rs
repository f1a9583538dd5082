//! Case report forms as HTML, rendered from the study design, and the posted form read
//! back into item values. No JavaScript: what skip logic hides is decided on the
//! server at each save, and every control is a labelled native input that works with a
//! keyboard, a screen reader and a tablet.
//!
//! Field names: `v:GROUP[n]/ITEM` carries a value; a partial date comes as three
//! parts `…#d`, `…#m`, `…#y`; `p:GROUP[n]/ITEM` marks an item as present on the page,
//! so that an unchecked checkbox or an emptied field means "cleared", not "not shown".

use std::collections::BTreeMap;

use maud::{Markup, html};
use trellis_checks::Severity;
use trellis_edc::design::{GroupDesign, ItemDesign};
use trellis_edc::path::{MAX_REPEAT, parse_repeat};
use trellis_edc::{Finding, FormDesign, LocalKey, Oid};
use trellis_odm::DataType;

/// Everything the form page shows.
pub struct FormView<'a> {
    pub design: &'a FormDesign,
    pub values: &'a BTreeMap<LocalKey, String>,
    pub findings: &'a [Finding],
    pub not_collected: &'a [LocalKey],
    pub lang: &'a str,
    /// Saved data exists: a change needs a reason.
    pub needs_reason: bool,
    /// Frozen, locked or not permitted: values are shown, not editable.
    pub read_only: bool,
    /// Link to an item's audit history.
    pub history_url: &'a dyn Fn(&LocalKey) -> String,
    /// Further markup beside an item (query and verification badges).
    pub extras: &'a dyn Fn(&LocalKey) -> Markup,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

pub fn field_name(key: &LocalKey) -> String {
    format!("{}[{}]/{}", key.group, key.repeat, key.item)
}

fn dom_id(key: &LocalKey) -> String {
    // Ids must not contain characters CSS selectors and fragment links trip over.
    field_name(key)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The form's fields (the caller wraps them in its `<form>` with the CSRF token).
pub fn form_fields(view: &FormView, t: &dyn Fn(&str) -> String) -> Markup {
    html! {
        @for group in &view.design.groups {
            @if group.repeating {
                (repeating_group(view, group, t))
            } @else {
                fieldset.crf-group {
                    legend { (group.name) }
                    @for item in &group.items {
                        (item_row(view, item, &LocalKey { group: group.oid.clone(), repeat: 1, item: item.oid.clone() }, t))
                    }
                }
            }
        }
        @if view.needs_reason && !view.read_only {
            div.reason {
                label for="reason" { (t("crf-reason")) }
                input #reason type="text" name="reason" maxlength="500" aria-describedby="reason-help";
                p #reason-help .muted { (t("crf-reason-help")) }
            }
        }
    }
}

fn rows_of(view: &FormView, group: &GroupDesign) -> Vec<u16> {
    let mut rows: Vec<u16> = view
        .values
        .keys()
        .filter(|k| k.group == group.oid)
        .map(|k| k.repeat)
        .collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

fn repeating_group(view: &FormView, group: &GroupDesign, t: &dyn Fn(&str) -> String) -> Markup {
    let mut rows = rows_of(view, group);
    // One blank row to add an entry (a log form grows one row per save).
    let next = rows
        .last()
        .map_or(1, |r| r.saturating_add(1))
        .min(MAX_REPEAT);
    if !view.read_only && !rows.contains(&next) {
        rows.push(next);
    }
    html! {
        fieldset.crf-group.crf-log {
            legend { (group.name) }
            @for repeat in rows {
                div.crf-row {
                    h3.crf-row-title { (t("crf-row")) " " (repeat) }
                    @for item in &group.items {
                        (item_row(view, item, &LocalKey { group: group.oid.clone(), repeat, item: item.oid.clone() }, t))
                    }
                }
            }
        }
    }
}

fn item_row(
    view: &FormView,
    item: &ItemDesign,
    key: &LocalKey,
    t: &dyn Fn(&str) -> String,
) -> Markup {
    let id = dom_id(key);
    let name = field_name(key);
    let value = view.values.get(key).map(String::as_str).unwrap_or("");
    let findings: Vec<&Finding> = view
        .findings
        .iter()
        .filter(|f| f.targets.contains(key))
        .collect();
    let skipped = view.not_collected.contains(key);
    let label = item
        .question
        .get(view.lang)
        .unwrap_or(&item.name)
        .to_owned();
    let unit = item
        .units
        .first()
        .and_then(|u| u.get(view.lang))
        .map(str::to_owned);
    let described = if findings.is_empty() {
        None
    } else {
        Some(format!("{id}-findings"))
    };
    let disabled = view.read_only || skipped || item.derivation.is_some();
    let extra = (view.extras)(key);
    html! {
        div.crf-item.(if skipped { "skipped" } else { "" }) {
            input type="hidden" name={ "p:" (name) } value="1";
            @match control(item) {
                Control::Radio => {
                    fieldset.crf-choices aria-describedby=[described.as_deref()] {
                        legend { (label) @if item.mandatory { " " abbr.req title=(t("crf-required")) { "*" } } }
                        // One grid cell for all choices, so that they stay side by side
                        // beside the legend instead of wrapping under it.
                        div.choices {
                            @for choice in &item.choices {
                                label.choice {
                                    input type="radio" name={ "v:" (name) } value=(choice.code)
                                        checked[choice.code == value] disabled[disabled];
                                    " " (choice.decode.get(view.lang).unwrap_or(&choice.code))
                                }
                            }
                            @if !item.mandatory && !disabled {
                                label.choice.muted {
                                    input type="radio" name={ "v:" (name) } value="" checked[value.is_empty()];
                                    " " (t("crf-no-answer"))
                                }
                            }
                        }
                    }
                }
                Control::Checkbox => {
                    label for=(id) {
                        input #(id) type="checkbox" name={ "v:" (name) } value="1"
                            checked[value == "1" || value == "true"] disabled[disabled]
                            aria-describedby=[described.as_deref()];
                        " " (label)
                    }
                }
                Control::Select => {
                    label for=(id) { (label) @if item.mandatory { " " abbr.req title=(t("crf-required")) { "*" } } }
                    select #(id) name={ "v:" (name) } disabled[disabled] aria-describedby=[described.as_deref()] {
                        option value="" { "—" }
                        @for choice in &item.choices {
                            option value=(choice.code) selected[choice.code == value] {
                                (choice.decode.get(view.lang).unwrap_or(&choice.code))
                            }
                        }
                    }
                }
                Control::PartialDate => {
                    fieldset.crf-partial-date aria-describedby=[described.as_deref()] {
                        legend { (label) @if item.mandatory { " " abbr.req title=(t("crf-required")) { "*" } } }
                        @let (y, m, d) = split_partial(value);
                        label { span.sr { (t("crf-day")) }
                            select name={ "v:" (name) "#d" } disabled[disabled] {
                                option value="UN" selected[d.is_none()] { "UN" }
                                @for day in 1..=31u8 { @let s = format!("{day:02}"); option value=(s) selected[d == Some(day)] { (s) } }
                            }
                        }
                        label { span.sr { (t("crf-month")) }
                            select name={ "v:" (name) "#m" } disabled[disabled] {
                                option value="UNK" selected[m.is_none()] { "UNK" }
                                @for (i, mon) in MONTHS.iter().enumerate() { option value=(mon) selected[m == Some(i as u8 + 1)] { (mon) } }
                            }
                        }
                        label { span.sr { (t("crf-year")) }
                            input type="text" inputmode="numeric" name={ "v:" (name) "#y" } value=(y) size="4" maxlength="4"
                                pattern="[0-9]{4}" placeholder="YYYY" disabled[disabled];
                        }
                    }
                }
                Control::Input(kind, mode) => {
                    label for=(id) { (label) @if item.mandatory { " " abbr.req title=(t("crf-required")) { "*" } } }
                    span.crf-input {
                        input #(id) type=(kind) inputmode=[mode] name={ "v:" (name) } value=(value)
                            maxlength=[item.length.filter(|_| kind == "text").map(|l| l.to_string())]
                            step=[(kind == "time").then_some("1")]
                            disabled[disabled] aria-required=[item.mandatory.then_some("true")]
                            aria-describedby=[described.as_deref()];
                        @if let Some(u) = &unit { " " span.unit { (u) } }
                    }
                }
                Control::TextArea => {
                    label for=(id) { (label) @if item.mandatory { " " abbr.req title=(t("crf-required")) { "*" } } }
                    textarea #(id) name={ "v:" (name) } rows="3" disabled[disabled]
                        maxlength=[item.length.map(|l| l.to_string())] aria-describedby=[described.as_deref()] { (value) }
                }
            }
            @if skipped { p.muted { (t("crf-not-collected")) } }
            @if item.derivation.is_some() { p.muted { (t("crf-derived")) } }
            @if !findings.is_empty() {
                ul.findings #(format!("{id}-findings")) {
                    @for f in &findings {
                        li.(if f.severity == Severity::Hard { "bad" } else { "warn" }) {
                            (f.message)
                        }
                    }
                }
            }
            @if !value.is_empty() {
                a.history href=((view.history_url)(key)) { (t("crf-history")) }
            }
            (extra)
        }
    }
}

enum Control {
    Radio,
    Checkbox,
    Select,
    PartialDate,
    /// input type and inputmode
    Input(&'static str, Option<&'static str>),
    TextArea,
}

fn control(item: &ItemDesign) -> Control {
    let boolean_choice = item.data_type == DataType::Boolean
        || (item.choices.len() == 2
            && item.choices.iter().all(|c| c.code == "0" || c.code == "1")
            && item
                .choices
                .iter()
                .any(|c| c.decode.get("en") == Some("Checked")));
    if boolean_choice && (item.choices.is_empty() || item.choices.len() == 2) {
        return Control::Checkbox;
    }
    if !item.choices.is_empty() {
        return if item.choices.len() <= 5 {
            Control::Radio
        } else {
            Control::Select
        };
    }
    match item.data_type {
        DataType::Integer => Control::Input("text", Some("numeric")),
        DataType::Float | DataType::Double => Control::Input("text", Some("decimal")),
        DataType::Date => Control::Input("date", None),
        DataType::Time => Control::Input("time", None),
        DataType::Datetime => Control::Input("datetime-local", None),
        DataType::PartialDate | DataType::IncompleteDate => Control::PartialDate,
        DataType::Text | DataType::String if item.length.is_some_and(|l| l > 200) => {
            Control::TextArea
        }
        _ => Control::Input("text", None),
    }
}

/// `2024-03-05` → ("2024", Some(3), Some(5)); `2024` → ("2024", None, None).
fn split_partial(value: &str) -> (String, Option<u8>, Option<u8>) {
    let mut parts = value.split('-');
    let y = parts.next().unwrap_or("").to_owned();
    let m = parts.next().and_then(|m| m.parse().ok());
    let d = parts.next().and_then(|d| d.parse().ok());
    (y, m, d)
}

/// A posted field that cannot be read, by field and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Reads the posted fields into the items shown on the page: `Some(value)` for a
/// value, `None` for a cleared item. Fields of other forms or unknown items are errors.
pub fn read_submission(
    design: &FormDesign,
    pairs: &[(String, String)],
) -> Result<BTreeMap<LocalKey, Option<String>>, Vec<FieldError>> {
    let mut out: BTreeMap<LocalKey, Option<String>> = BTreeMap::new();
    let mut parts: BTreeMap<LocalKey, [Option<String>; 3]> = BTreeMap::new();
    let mut errors = Vec::new();
    let resolve = |field: &str| -> Option<(LocalKey, &ItemDesign)> {
        let (group_part, item) = field.rsplit_once('/')?;
        let (group, repeat) = group_part.strip_suffix(']')?.split_once('[')?;
        let repeat = parse_repeat(repeat).ok()?;
        let (_, g) = design.group(group)?;
        let item = g.items.iter().find(|i| i.oid.as_str() == item)?;
        if !g.repeating && repeat != 1 {
            return None;
        }
        Some((
            LocalKey {
                group: Oid::new(group).ok()?,
                repeat,
                item: item.oid.clone(),
            },
            item,
        ))
    };
    let unknown = |field: &str| FieldError {
        field: field.to_owned(),
        message: "not an item of this form".into(),
    };
    for (name, value) in pairs {
        if let Some(field) = name.strip_prefix("p:") {
            match resolve(field) {
                // Derived items are computed; they are never taken from the browser.
                Some((key, item)) if item.derivation.is_none() => {
                    out.entry(key).or_insert(None);
                }
                Some(_) => {}
                None => errors.push(unknown(field)),
            }
        } else if let Some(field) = name.strip_prefix("v:") {
            let (field, part) = match field.rsplit_once('#') {
                Some((f, p)) => (f, Some(p)),
                None => (field, None),
            };
            let Some((key, item)) = resolve(field) else {
                errors.push(unknown(field));
                continue;
            };
            if item.derivation.is_some() {
                continue;
            }
            match part {
                None => {
                    let v = value.trim();
                    out.insert(key, (!v.is_empty()).then(|| v.to_owned()));
                }
                Some(p @ ("d" | "m" | "y")) => {
                    let i = match p {
                        "d" => 0,
                        "m" => 1,
                        _ => 2,
                    };
                    parts.entry(key).or_default()[i] = Some(value.trim().to_owned());
                }
                Some(_) => errors.push(FieldError {
                    field: name.clone(),
                    message: "unknown date part".into(),
                }),
            }
        }
    }
    for (key, [d, m, y]) in parts {
        match combine_partial(d.as_deref(), m.as_deref(), y.as_deref()) {
            Ok(v) => {
                out.insert(key, v);
            }
            Err(message) => errors.push(FieldError {
                field: field_name(&key),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Day (`UN` or 01–31), month (`UNK` or JAN–DEC) and year into an ODM partial date.
fn combine_partial(
    d: Option<&str>,
    m: Option<&str>,
    y: Option<&str>,
) -> Result<Option<String>, String> {
    let y = y.unwrap_or("");
    let d = d.filter(|d| !d.is_empty() && *d != "UN");
    let m = m.filter(|m| !m.is_empty() && *m != "UNK");
    if y.is_empty() {
        return if d.is_none() && m.is_none() {
            Ok(None)
        } else {
            Err("a partial date needs at least the year".into())
        };
    }
    if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("year {y:?} must have four digits"));
    }
    let Some(m) = m else {
        return if d.is_some() {
            Err("a day needs a month (UN-UNK-YYYY, UN-MMM-YYYY or DD-MMM-YYYY)".into())
        } else {
            Ok(Some(y.to_owned()))
        };
    };
    let month = MONTHS
        .iter()
        .position(|x| x.eq_ignore_ascii_case(m))
        .map(|i| i + 1)
        .ok_or_else(|| format!("month {m:?} is not JAN–DEC"))?;
    match d {
        None => Ok(Some(format!("{y}-{month:02}"))),
        Some(d) => {
            let day: u8 = d
                .parse()
                .map_err(|_| format!("day {d:?} is not a number"))?;
            Ok(Some(format!("{y}-{month:02}-{day:02}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_edc::{FindingKind, StudyDesign};

    const CARDIO: &str = include_str!("../../trellis-odm/tests/fixtures/cardio_1_3_2.xml");

    fn design() -> StudyDesign {
        let odm = trellis_odm::read_str(CARDIO).expect("fixture").odm;
        StudyDesign::build(&odm.studies[0], "MDV.1").expect("builds")
    }

    fn key(group: &str, repeat: u16, item: &str) -> LocalKey {
        LocalKey {
            group: Oid::new(group).expect("oid"),
            repeat,
            item: Oid::new(item).expect("oid"),
        }
    }

    #[test]
    fn every_control_is_labelled_and_findings_are_announced() {
        let design = design();
        let vs = design.form("F.VS").expect("F.VS");
        let values: BTreeMap<LocalKey, String> = [
            (key("IG.VS", 1, "I.SYSBP"), "152".to_owned()),
            (key("IG.VS", 1, "I.DIABP"), "160".to_owned()),
        ]
        .into();
        let findings = [Finding {
            check_id: "I.DIABP.RC1".into(),
            kind: FindingKind::Check,
            severity: Severity::Soft,
            message: "Diastolic must be lower than systolic".into(),
            targets: vec![key("IG.VS", 1, "I.DIABP")],
        }];
        let history = |k: &LocalKey| format!("/history/{}", field_name(k));
        let view = FormView {
            design: vs,
            values: &values,
            findings: &findings,
            not_collected: &[],
            lang: "de",
            needs_reason: true,
            read_only: false,
            history_url: &history,
            extras: &|_| html! {},
        };
        let html = form_fields(&view, &|k| k.to_owned()).into_string();
        for id in html
            .split(" id=\"")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap_or(0)])
        {
            if id.ends_with("-findings") || id.ends_with("-help") {
                continue;
            }
            assert!(
                html.contains(&format!("for=\"{id}\"")),
                "input {id} has no label in {html}"
            );
        }
        assert!(
            html.contains("Systolischer Blutdruck"),
            "German question text"
        );
        assert!(html.contains("mmHg"));
        assert!(
            html.contains("aria-describedby=\"IG_VS_1__I_DIABP-findings\""),
            "{html}"
        );
        assert!(html.contains("Diastolic must be lower than systolic"));
        assert!(html.contains("name=\"reason\""));
        assert!(html.contains("/history/IG.VS[1]/I.SYSBP"));
        // BMI is derived: shown, not editable.
        let bmi = html.find("IG_VS_1__I_BMI").expect("BMI rendered");
        assert!(
            html[bmi..bmi + 400].contains("disabled"),
            "{}",
            &html[bmi..bmi + 400]
        );
    }

    #[test]
    fn a_log_form_offers_one_blank_row_after_the_saved_ones() {
        let design = design();
        let ae = design.form("F.AE").expect("F.AE");
        let values: BTreeMap<LocalKey, String> = [
            (key("IG.AE", 1, "I.AETERM"), "Headache".to_owned()),
            (key("IG.AE", 2, "I.AETERM"), "Rash".to_owned()),
        ]
        .into();
        let history = |_: &LocalKey| String::new();
        let view = FormView {
            design: ae,
            values: &values,
            findings: &[],
            not_collected: &[],
            lang: "en",
            needs_reason: false,
            read_only: false,
            history_url: &history,
            extras: &|_| html! {},
        };
        let html = form_fields(&view, &|k| k.to_owned()).into_string();
        assert!(
            html.contains("name=\"v:IG.AE[3]/I.AETERM\""),
            "blank third row"
        );
        assert!(!html.contains("IG.AE[4]"));
        assert!(
            html.contains("name=\"v:IG.AE[1]/I.AESTDAT#m\""),
            "partial date parts"
        );
    }

    #[test]
    fn a_submission_reads_back_into_item_values() {
        let design = design();
        let ae = design.form("F.AE").expect("F.AE");
        let pairs: Vec<(String, String)> = [
            ("p:IG.AE[1]/I.AETERM", "1"),
            ("v:IG.AE[1]/I.AETERM", " Headache "),
            ("p:IG.AE[1]/I.AESTDAT", "1"),
            ("v:IG.AE[1]/I.AESTDAT#d", "UN"),
            ("v:IG.AE[1]/I.AESTDAT#m", "MAR"),
            ("v:IG.AE[1]/I.AESTDAT#y", "2024"),
            ("p:IG.AE[1]/I.AESER", "1"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        let got = read_submission(ae, &pairs).expect("reads");
        assert_eq!(
            got.get(&key("IG.AE", 1, "I.AETERM")),
            Some(&Some("Headache".to_owned()))
        );
        assert_eq!(
            got.get(&key("IG.AE", 1, "I.AESTDAT")),
            Some(&Some("2024-03".to_owned()))
        );
        assert_eq!(
            got.get(&key("IG.AE", 1, "I.AESER")),
            Some(&None),
            "shown but blank: cleared"
        );

        let bad: Vec<(String, String)> = vec![
            ("v:IG.VS[1]/I.SYSBP".into(), "120".into()),
            ("v:IG.AE[1]/I.AESTDAT#d".into(), "05".into()),
        ];
        let errors = read_submission(ae, &bad).expect_err("refused");
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn partial_dates_combine_as_odm_expects() {
        assert_eq!(
            combine_partial(Some("UN"), Some("UNK"), Some("2024")),
            Ok(Some("2024".into()))
        );
        assert_eq!(
            combine_partial(Some("UN"), Some("MAR"), Some("2024")),
            Ok(Some("2024-03".into()))
        );
        assert_eq!(
            combine_partial(Some("05"), Some("MAR"), Some("2024")),
            Ok(Some("2024-03-05".into()))
        );
        assert_eq!(combine_partial(Some("UN"), Some("UNK"), Some("")), Ok(None));
        assert!(combine_partial(Some("05"), Some("UNK"), Some("2024")).is_err());
        assert!(combine_partial(Some("UN"), Some("MAR"), Some("")).is_err());
        assert!(combine_partial(None, None, Some("24")).is_err());
        assert_eq!(split_partial("2024-03"), ("2024".into(), Some(3), None));
    }
}
