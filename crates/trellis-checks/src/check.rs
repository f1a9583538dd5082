//! Check definitions, compiled checks and the ODM range-check mapping.

use std::fmt;

use crate::ast::{Expr, ItemRef, Literal, Pos};
use crate::compile::{CompileError, Compiler, Node, Schema, Slot};
use crate::eval::{Env, EvalError, SlotValues, V};
use crate::parse::{SyntaxError, parse};
use crate::value::{Value, ValueError, ValueType};

/// What is wrong with a check, for `CheckError::code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckErrorKind {
    Syntax,
    UnknownItem,
    Type,
}

/// A check that cannot be built, with the position in its source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("check {check}, line {line}, column {column}: {message}")]
pub struct CheckError {
    pub check: String,
    pub line: u32,
    pub column: u32,
    pub kind: CheckErrorKind,
    pub message: String,
}

impl CheckError {
    pub fn code(&self) -> &'static str {
        match self.kind {
            CheckErrorKind::Syntax => "check_syntax",
            CheckErrorKind::UnknownItem => "check_unknown_item",
            CheckErrorKind::Type => "check_type",
        }
    }

    fn at(check: &str, pos: Pos, kind: CheckErrorKind, message: String) -> CheckError {
        CheckError {
            check: check.to_owned(),
            line: pos.line,
            column: pos.column,
            kind,
            message,
        }
    }

    fn syntax(check: &str, e: SyntaxError) -> CheckError {
        CheckError::at(check, e.pos, CheckErrorKind::Syntax, e.message)
    }

    fn compile(check: &str, e: CompileError) -> CheckError {
        let kind = if e.unknown_item {
            CheckErrorKind::UnknownItem
        } else {
            CheckErrorKind::Type
        };
        CheckError::at(check, e.pos, kind, e.message)
    }
}

/// Parses a check expression into its syntax tree (for tools: pretty-printing, listing items).
pub fn parse_expression(check: &str, source: &str) -> Result<Expr, CheckError> {
    parse(source).map_err(|e| CheckError::syntax(check, e))
}

/// A compiled expression of any type; `CompiledCheck` wraps a Boolean one.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledExpression {
    root: Node,
    value_type: ValueType,
    inputs: Vec<Slot>,
    uses_today: bool,
}

impl CompiledExpression {
    /// Parses, resolves and type-checks `source`; `check` names it in errors.
    pub fn compile<S: Schema + ?Sized>(
        check: &str,
        source: &str,
        schema: &S,
    ) -> Result<CompiledExpression, CheckError> {
        CompiledExpression::compile_tree(check, source, schema).map(|(compiled, _)| compiled)
    }

    /// As `compile`, also returning the syntax tree.
    fn compile_tree<S: Schema + ?Sized>(
        check: &str,
        source: &str,
        schema: &S,
    ) -> Result<(CompiledExpression, Expr), CheckError> {
        let expr = parse_expression(check, source)?;
        let mut c = Compiler {
            schema,
            inputs: Vec::new(),
            uses_today: false,
        };
        let (root, value_type) = c
            .compile(&expr)
            .map_err(|e| CheckError::compile(check, e))?;
        c.inputs.sort_unstable();
        let compiled = CompiledExpression {
            root,
            value_type,
            inputs: c.inputs,
            uses_today: c.uses_today,
        };
        Ok((compiled, expr))
    }

    pub fn value_type(&self) -> ValueType {
        self.value_type
    }

    /// The slots the expression reads, sorted: a save that changes none of them cannot change
    /// the result (unless `uses_today`).
    pub fn inputs(&self) -> &[Slot] {
        &self.inputs
    }

    /// Whether the result depends on `today()`.
    pub fn uses_today(&self) -> bool {
        self.uses_today
    }

    /// The result as a value; `Missing` when unknown.
    pub fn evaluate_value<S: SlotValues + ?Sized>(
        &self,
        values: &S,
        env: &Env,
    ) -> Result<Value, EvalError> {
        let v = self.root.eval(values, env)?;
        Ok(match v {
            V::U => Value::Missing,
            V::I(i) => Value::Integer(i),
            V::D(d) => Value::Decimal(d),
            V::B(b) => Value::Boolean(b),
            V::T(t) => Value::Text(t.into()),
            V::Date(d) => Value::Date(d),
            V::P(p) => Value::PartialDate(p),
            V::Time(t) => Value::Time(t),
            V::Dt(dt) => Value::DateTime(dt),
        })
    }

    /// A Boolean expression's result: `None` when unknown. For ODM ConditionDefs.
    pub fn evaluate_condition<S: SlotValues + ?Sized>(
        &self,
        values: &S,
        env: &Env,
    ) -> Result<Option<bool>, EvalError> {
        match self.root.eval(values, env)? {
            V::B(b) => Ok(Some(b)),
            V::U => Ok(None),
            _ => Err(EvalError::Internal("condition is not Boolean")),
        }
    }
}

/// Hard checks refuse the value; soft checks accept it and open a query for the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Hard,
    Soft,
}

impl Severity {
    /// ODM `SoftHard` attribute value.
    pub fn from_odm(soft_hard: &str) -> Option<Severity> {
        match soft_hard {
            "Hard" => Some(Severity::Hard),
            "Soft" => Some(Severity::Soft),
            _ => None,
        }
    }
}

/// An edit check as the study designer defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckDef {
    pub id: String,
    pub severity: Severity,
    /// What must hold, in the check language.
    pub expression: String,
    /// Shown to site staff when the check fails.
    pub message: String,
    /// Items a failure (query) attaches to. Empty means every item the expression reads.
    pub targets: Vec<ItemRef>,
}

/// The result of a check on one set of values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The expression is true.
    Pass,
    /// The expression is false: raise the check's message.
    Fail,
    /// The expression is unknown because a value it needs is blank.
    NotApplicable,
}

/// A check ready to run on every save.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledCheck {
    id: String,
    severity: Severity,
    message: String,
    expression: CompiledExpression,
    targets: Vec<(ItemRef, Slot)>,
}

impl CheckDef {
    /// Parses, resolves and type-checks the check. The expression must be Boolean.
    pub fn compile<S: Schema + ?Sized>(&self, schema: &S) -> Result<CompiledCheck, CheckError> {
        let (expression, tree) =
            CompiledExpression::compile_tree(&self.id, &self.expression, schema)?;
        let start = Pos { line: 1, column: 1 };
        if expression.value_type != ValueType::Boolean {
            return Err(CheckError::at(
                &self.id,
                start,
                CheckErrorKind::Type,
                format!(
                    "a check states a condition (Boolean), but this one is {}",
                    expression.value_type
                ),
            ));
        }
        let wanted: Vec<ItemRef> = if self.targets.is_empty() {
            let mut seen = Vec::new();
            for r in tree.items() {
                if !seen.contains(r) {
                    seen.push(r.clone());
                }
            }
            seen
        } else {
            self.targets.clone()
        };
        let mut targets = Vec::with_capacity(wanted.len());
        for r in wanted {
            let Some((slot, _)) = schema.resolve(&r) else {
                let msg = format!("unknown target item {r}");
                return Err(CheckError::at(
                    &self.id,
                    start,
                    CheckErrorKind::UnknownItem,
                    msg,
                ));
            };
            targets.push((r, slot));
        }
        Ok(CompiledCheck {
            id: self.id.clone(),
            severity: self.severity,
            message: self.message.clone(),
            expression,
            targets,
        })
    }
}

impl CompiledCheck {
    /// Runs the check. No allocation; an error means the values do not fit the schema the
    /// check was compiled with, or the data make an operation undefined (division by zero,
    /// overflow): the caller reports it rather than treating it as a pass.
    pub fn evaluate<S: SlotValues + ?Sized>(
        &self,
        values: &S,
        env: &Env,
    ) -> Result<Outcome, EvalError> {
        Ok(match self.expression.evaluate_condition(values, env)? {
            Some(true) => Outcome::Pass,
            Some(false) => Outcome::Fail,
            None => Outcome::NotApplicable,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn severity(&self) -> Severity {
        self.severity
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Items a failure attaches to, with their slots.
    pub fn targets(&self) -> &[(ItemRef, Slot)] {
        &self.targets
    }
    pub fn expression(&self) -> &CompiledExpression {
        &self.expression
    }
}

/// ODM `RangeCheck/@Comparator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Comparator {
    LT,
    LE,
    GT,
    GE,
    EQ,
    NE,
    IN,
    NI,
}

impl Comparator {
    pub fn from_odm(s: &str) -> Option<Comparator> {
        Some(match s {
            "LT" => Comparator::LT,
            "LE" => Comparator::LE,
            "GT" => Comparator::GT,
            "GE" => Comparator::GE,
            "EQ" => Comparator::EQ,
            "NE" => Comparator::NE,
            "IN" => Comparator::IN,
            "NI" => Comparator::NI,
            _ => return None,
        })
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An ODM range check that cannot be mapped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeCheckError {
    #[error("comparator {comparator} takes {expected} check value(s), found {found}")]
    ValueCount {
        comparator: Comparator,
        expected: &'static str,
        found: usize,
    },
    #[error("check value: {0}")]
    Value(#[from] ValueError),
    #[error("check value is blank")]
    Blank,
}

impl RangeCheckError {
    pub fn code(&self) -> &'static str {
        match self {
            RangeCheckError::ValueCount { .. } => "range_check_value_count",
            RangeCheckError::Value(_) => "range_check_value",
            RangeCheckError::Blank => "range_check_blank",
        }
    }
}

/// The language literal for a value (the reverse of the lexer); `None` for `Missing`.
pub fn literal_source(v: &Value) -> Option<String> {
    let lit = match v {
        Value::Missing => return None,
        // The language has no negative literals, only negation; i64::MIN needs arithmetic.
        Value::Integer(i64::MIN) => return Some(format!("(-{} - 1)", i64::MAX)),
        Value::Integer(i) => Literal::Integer(*i),
        Value::Decimal(d) => Literal::Decimal(*d),
        Value::Text(t) => Literal::Text(t.to_string()),
        Value::Boolean(b) => Literal::Boolean(*b),
        Value::Date(d) => Literal::Date(*d),
        Value::PartialDate(p) => match p.complete() {
            Some(d) => Literal::Date(d),
            None => Literal::PartialDate(*p),
        },
        Value::Time(t) => Literal::Time(*t),
        Value::DateTime(dt) => Literal::DateTime(*dt),
    };
    Some(lit.to_string())
}

/// The check-language source of an ODM RangeCheck on `item` (of type `item_type`): the
/// condition the value must meet. A blank item makes it not applicable, as in ODM.
pub fn range_check_source(
    item: &ItemRef,
    item_type: ValueType,
    comparator: Comparator,
    values: &[&str],
) -> Result<String, RangeCheckError> {
    let literals = values
        .iter()
        .map(|s| literal_source(&Value::parse(item_type, s)?).ok_or(RangeCheckError::Blank))
        .collect::<Result<Vec<_>, _>>()?;
    let op = match comparator {
        Comparator::LT => "<",
        Comparator::LE => "<=",
        Comparator::GT => ">",
        Comparator::GE => ">=",
        Comparator::EQ => "=",
        Comparator::NE => "!=",
        Comparator::IN | Comparator::NI => {
            if literals.is_empty() {
                return Err(RangeCheckError::ValueCount {
                    comparator,
                    expected: "at least 1",
                    found: 0,
                });
            }
            let kw = if comparator == Comparator::IN {
                "in"
            } else {
                "not in"
            };
            return Ok(format!("{item} {kw} ({})", literals.join(", ")));
        }
    };
    match &literals[..] {
        [one] => Ok(format!("{item} {op} {one}")),
        _ => Err(RangeCheckError::ValueCount {
            comparator,
            expected: "exactly 1",
            found: literals.len(),
        }),
    }
}

/// An ODM RangeCheck as a check definition, attached to `item`.
pub fn range_check(
    id: &str,
    item: &ItemRef,
    item_type: ValueType,
    comparator: Comparator,
    values: &[&str],
    severity: Severity,
    message: &str,
) -> Result<CheckDef, RangeCheckError> {
    Ok(CheckDef {
        id: id.to_owned(),
        severity,
        expression: range_check_source(item, item_type, comparator, values)?,
        message: message.to_owned(),
        targets: vec![item.clone()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_source_reads_back_as_the_value() {
        let schema = |_: &ItemRef| None;
        let env = Env {
            today: jiff::civil::date(2024, 1, 1),
        };
        for (ty, s) in [
            (ValueType::Integer, "-42"),
            (ValueType::Integer, "-9223372036854775808"),
            (ValueType::Decimal, "0.1"),
            (ValueType::Decimal, "-1e-7"),
            (ValueType::Text, "say \"hi\"\\\n"),
            (ValueType::Boolean, "0"),
            (ValueType::Date, "29-FEB-2024"),
            (ValueType::PartialDate, "UN-UNK-0001"),
            (ValueType::PartialDate, "2024-03-05"),
            (ValueType::Time, "23:59:59.000000001"),
            (ValueType::DateTime, "2024-03-05T00:00"),
        ] {
            let v = Value::parse(ty, s).expect("valid");
            let src = literal_source(&v).expect("not blank");
            let e = CompiledExpression::compile("L", &src, &schema).expect("compiles");
            let back = e.evaluate_value(&Vec::new(), &env).expect("evaluates");
            // A complete partial date reads back as a date.
            let want = match v {
                Value::PartialDate(p) => p.complete().map_or(v, Value::Date),
                v => v,
            };
            assert_eq!(back, want, "{s} -> {src}");
        }
        assert_eq!(literal_source(&Value::Missing), None);
    }

    #[test]
    fn check_error_display_and_codes() {
        let e = CheckError::at(
            "AGE_RANGE",
            Pos {
                line: 1,
                column: 14,
            },
            CheckErrorKind::Type,
            "cannot compare Date with Integer".into(),
        );
        assert_eq!(
            e.to_string(),
            "check AGE_RANGE, line 1, column 14: cannot compare Date with Integer"
        );
        assert_eq!(e.code(), "check_type");
    }
}
