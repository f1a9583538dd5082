//! Integration tests of trellis-checks: the language as a data manager writes it, partial
//! dates, the ODM range-check mapping, and property tests.

mod language;
mod partial_dates;
mod props;
mod range;

use std::collections::HashMap;

use trellis_checks::{
    CheckDef, CheckError, CompiledCheck, Env, EvalError, ItemRef, Outcome, Schema, Severity, Slot,
    Value, ValueType,
};

/// A form schema keyed by the printed reference, e.g. `{I.SYSBP}` or `{SE.SCREEN/F.DM/I.BRTHDAT}`.
pub struct Form {
    items: HashMap<String, (Slot, ValueType)>,
}

impl Form {
    pub fn new(items: &[(&str, ValueType)]) -> Form {
        let items = items
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| (name.to_string(), (Slot(i as u32), *ty)))
            .collect();
        Form { items }
    }

    /// The vital-signs / demographics form used across the tests.
    pub fn vitals() -> Form {
        use ValueType as T;
        Form::new(&[
            ("{I.SYSBP}", T::Integer),
            ("{I.DIABP}", T::Integer),
            ("{I.TEMP}", T::Decimal),
            ("{I.WEIGHT}", T::Decimal),
            ("{I.HEIGHT}", T::Decimal),
            ("{I.VSDAT}", T::Date),
            ("{I.BRTHDAT}", T::PartialDate),
            ("{I.SEX}", T::Text),
            ("{I.PREG}", T::Text),
            ("{I.AEYN}", T::Boolean),
            ("{I.AETERM}", T::Text),
            ("{I.VSTIM}", T::Time),
            ("{I.DOSEDTC}", T::DateTime),
            ("{F.DM/I.CONSDAT}", T::Date),
            ("{SE.SCREEN/F.VS/I.WEIGHT}", T::Decimal),
            ("{SE.SCREEN/F.VS/IG.VS/I.HEIGHT}", T::Decimal),
            ("{I.AESTDAT}", T::PartialDate),
            ("{I.AEENDAT}", T::PartialDate),
        ])
    }

    pub fn slot(&self, name: &str) -> usize {
        self.items.get(name).map_or_else(
            || panic!("no item {name} in the test form"),
            |s| s.0.index(),
        )
    }

    /// Values for the form from `(reference, ODM string)` pairs; the rest are blank.
    pub fn values(&self, given: &[(&str, &str)]) -> Vec<Value> {
        let mut out = vec![Value::Missing; self.items.len()];
        for (name, text) in given {
            let (slot, ty) = self.items[*name];
            out[slot.index()] = Value::parse(ty, text).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        out
    }
}

impl Schema for Form {
    fn resolve(&self, item: &ItemRef) -> Option<(Slot, ValueType)> {
        self.items.get(&item.to_string()).copied()
    }
}

pub fn env() -> Env {
    Env {
        today: jiff::civil::date(2024, 6, 15),
    }
}

pub fn compile(form: &Form, source: &str) -> Result<CompiledCheck, CheckError> {
    CheckDef {
        id: "T".into(),
        severity: Severity::Soft,
        expression: source.into(),
        message: "test".into(),
        targets: vec![],
    }
    .compile(form)
}

/// Compiles `source` on the vitals form and evaluates it with `given` values.
pub fn run(source: &str, given: &[(&str, &str)]) -> Result<Outcome, EvalError> {
    let form = Form::vitals();
    let check = compile(&form, source).unwrap_or_else(|e| panic!("{e}"));
    check.evaluate(&form.values(given), &env())
}

/// The error message of a check that must not compile.
pub fn compile_error(source: &str) -> String {
    match compile(&Form::vitals(), source) {
        Ok(_) => panic!("{source} compiled but should not"),
        Err(e) => e.to_string(),
    }
}
