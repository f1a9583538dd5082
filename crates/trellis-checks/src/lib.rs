//! Edit checks for electronic case report forms: a small expression language over item
//! values, parsed and type-checked when the study is built and evaluated on every save.
//!
//! The language reference is `README.md` beside this crate. In short:
//!
//! ```
//! use trellis_checks::{CheckDef, Env, ItemRef, Outcome, Severity, Slot, Value, ValueType};
//!
//! // The caller's schema maps item references to slots and types.
//! let schema = |r: &ItemRef| match r.item.as_str() {
//!     "I.SYSBP" => Some((Slot(0), ValueType::Integer)),
//!     "I.DIABP" => Some((Slot(1), ValueType::Integer)),
//!     _ => None,
//! };
//! let def = CheckDef {
//!     id: "BP_ORDER".into(),
//!     severity: Severity::Soft,
//!     expression: "{I.SYSBP} > {I.DIABP}".into(),
//!     message: "Systolic must exceed diastolic".into(),
//!     targets: vec![],
//! };
//! let check = def.compile(&schema)?;
//! let env = Env { today: jiff::civil::date(2024, 3, 5) };
//! let values = [Value::parse(ValueType::Integer, "120")?, Value::parse(ValueType::Integer, "80")?];
//! assert_eq!(check.evaluate(&values, &env)?, Outcome::Pass);
//! let blank = [Value::Missing, Value::Integer(80)];
//! assert_eq!(check.evaluate(&blank, &env)?, Outcome::NotApplicable);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Architecture invariant: pure; no I/O, no database, no ODM parsing (the ODM import maps
//! RangeChecks with `range_check` and passes ConditionDefs as expression text).

mod ast;
mod check;
mod compile;
mod eval;
mod parse;
mod value;

pub use ast::{BinaryOp, Expr, ExprKind, Function, ItemRef, Literal, Pos};
pub use check::{
    CheckDef, CheckError, CheckErrorKind, Comparator, CompiledCheck, CompiledExpression, Outcome,
    RangeCheckError, Severity, literal_source, parse_expression, range_check, range_check_source,
};
pub use compile::{Schema, Slot};
pub use eval::{Env, EvalError, SlotValues};
pub use parse::{MAX_DEPTH, MAX_SOURCE_LEN};
pub use value::{PartialDate, Value, ValueError, ValueType};
