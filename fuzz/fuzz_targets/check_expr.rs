#![no_main]
// Edit-check expressions from study designs (ODM imports): parsed, type-checked against a
// schema with one item of each type, and evaluated; errors are refusals, never a panic or
// an internal error. The first byte picks which items are blank.
use trellis_checks::{CompiledExpression, Env, EvalError, ItemRef, Slot, Value, ValueType};

const TYPES: [(ValueType, &str); 8] = [
    (ValueType::Integer, "120"),
    (ValueType::Decimal, "37.5"),
    (ValueType::Text, "M"),
    (ValueType::Boolean, "true"),
    (ValueType::Date, "2024-03-05"),
    (ValueType::PartialDate, "UN-MAR-2024"),
    (ValueType::Time, "08:30"),
    (ValueType::DateTime, "2024-03-05T08:30:00"),
];

fn schema(r: &ItemRef) -> Option<(Slot, ValueType)> {
    let i = usize::from(r.item.bytes().next()?.checked_sub(b'A')?);
    TYPES.get(i).map(|(t, _)| (Slot(i as u32), *t))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&blank, rest)) = data.split_first() else {
        return;
    };
    let Ok(source) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(expr) = CompiledExpression::compile("FUZZ", source, &schema) else {
        return;
    };
    let values: Vec<Value> = TYPES
        .iter()
        .enumerate()
        .map(|(i, (t, s))| {
            if blank & (1 << i) != 0 {
                Value::Missing
            } else {
                Value::parse(*t, s).unwrap_or(Value::Missing)
            }
        })
        .collect();
    let env = Env {
        today: jiff::civil::date(2024, 6, 15),
    };
    let result = expr.evaluate_value(&values, &env);
    assert!(
        !matches!(result, Err(EvalError::Internal(_))),
        "{source:?}: {result:?}"
    );
});
