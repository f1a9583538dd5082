//! Type checking and compilation of a syntax tree to a tree over slots.
//!
//! Every operation in the compiled tree is specialised for the static types of its operands
//! (integer or decimal arithmetic, decimal conversion inserted where an integer meets a
//! decimal), so evaluation does no type inference and no lookups, only a walk over the tree.

use crate::ast::{BinaryOp, Expr, ExprKind, Function, ItemRef, Literal, Pos};
use crate::value::{Value, ValueType};

/// Index of an item value in the values the caller passes to `evaluate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(pub u32);

impl Slot {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Resolves item references to slots and types while checks are built. The caller decides
/// what a reference without event or form means (usually: the form the check belongs to).
pub trait Schema {
    fn resolve(&self, item: &ItemRef) -> Option<(Slot, ValueType)>;
}

impl<F: Fn(&ItemRef) -> Option<(Slot, ValueType)>> Schema for F {
    fn resolve(&self, item: &ItemRef) -> Option<(Slot, ValueType)> {
        self(item)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    AddInt,
    SubInt,
    MulInt,
    AddDec,
    SubDec,
    MulDec,
    DivDec,
    /// Date − Date: days.
    SubDate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The compiled form. Constants are `Value`s (never `Missing`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Const(Value),
    Load(Slot, ValueType),
    IntToDec(Box<Node>),
    Neg(Box<Node>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    In {
        negated: bool,
        expr: Box<Node>,
        list: Box<[Node]>,
    },
    Call(Function, Box<[Node]>),
}

/// A type error or unresolved reference at a position; the caller adds the check id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CompileError {
    pub pos: Pos,
    pub unknown_item: bool,
    pub message: String,
}

fn type_err<T>(pos: Pos, message: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        pos,
        unknown_item: false,
        message: message.into(),
    })
}

pub(crate) struct Compiler<'s, S: Schema + ?Sized> {
    pub schema: &'s S,
    pub inputs: Vec<Slot>,
    pub uses_today: bool,
}

type Typed = (Node, ValueType);

/// Integer → Decimal where the target is Decimal; constants are converted at once.
fn coerce((node, ty): Typed, target: ValueType) -> Node {
    if ty == ValueType::Integer && target == ValueType::Decimal {
        match node {
            Node::Const(Value::Integer(i)) => Node::Const(Value::Decimal(i as f64)),
            n => Node::IntToDec(Box::new(n)),
        }
    } else {
        node
    }
}

/// The common type of values that meet (in a comparison, a list, `if`, `min`): the same
/// type, Decimal for a mix of numbers, PartialDate for a mix of dates and partial dates.
fn unify(types: impl IntoIterator<Item = ValueType>) -> Option<ValueType> {
    let mut it = types.into_iter();
    let mut acc = it.next()?;
    for t in it {
        acc = match (acc, t) {
            (a, b) if a == b => a,
            (a, b) if a.is_numeric() && b.is_numeric() => ValueType::Decimal,
            (
                ValueType::Date | ValueType::PartialDate,
                ValueType::Date | ValueType::PartialDate,
            ) => ValueType::PartialDate,
            _ => return None,
        };
    }
    Some(acc)
}

impl<S: Schema + ?Sized> Compiler<'_, S> {
    pub fn compile(&mut self, e: &Expr) -> Result<Typed, CompileError> {
        let pos = e.pos;
        match &e.kind {
            ExprKind::Literal(l) => Ok(literal(l)),
            ExprKind::Item(r) => {
                let Some((slot, ty)) = self.schema.resolve(r) else {
                    return Err(CompileError {
                        pos,
                        unknown_item: true,
                        message: format!("unknown item {r}"),
                    });
                };
                if !self.inputs.contains(&slot) {
                    self.inputs.push(slot);
                }
                Ok((Node::Load(slot, ty), ty))
            }
            ExprKind::Neg(x) => {
                let (n, ty) = self.compile(x)?;
                if !ty.is_numeric() {
                    return type_err(pos, format!("cannot negate {ty}"));
                }
                Ok((Node::Neg(Box::new(n)), ty))
            }
            ExprKind::Not(x) => {
                let n = self.boolean(x, "not")?;
                Ok((Node::Not(Box::new(n)), ValueType::Boolean))
            }
            ExprKind::Binary { op, left, right } => self.binary(*op, left, right, pos),
            ExprKind::In {
                negated,
                expr,
                list,
            } => {
                let x = self.compile(expr)?;
                let items = list
                    .iter()
                    .map(|e| self.compile(e))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut target = x.1;
                for (item, e) in items.iter().zip(list) {
                    target = match unify([target, item.1]) {
                        Some(t) => t,
                        None => {
                            return type_err(
                                e.pos,
                                format!("cannot compare {} with {}", x.1, item.1),
                            );
                        }
                    };
                }
                let kw = if *negated { "not in" } else { "in" };
                if matches!(target, ValueType::Boolean) {
                    return type_err(pos, format!("{kw} does not apply to Boolean; use = or !="));
                }
                let list = items.into_iter().map(|t| coerce(t, target)).collect();
                Ok((
                    Node::In {
                        negated: *negated,
                        expr: Box::new(coerce(x, target)),
                        list,
                    },
                    ValueType::Boolean,
                ))
            }
            ExprKind::Call { function, args } => self.call(*function, args, pos),
        }
    }

    fn boolean(&mut self, e: &Expr, context: &str) -> Result<Node, CompileError> {
        let (n, ty) = self.compile(e)?;
        if ty != ValueType::Boolean {
            return type_err(e.pos, format!("{context} needs a Boolean, found {ty}"));
        }
        Ok(n)
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        l: &Expr,
        r: &Expr,
        pos: Pos,
    ) -> Result<Typed, CompileError> {
        use ValueType as T;
        if matches!(op, BinaryOp::And | BinaryOp::Or) {
            let (a, b) = (self.boolean(l, op.symbol())?, self.boolean(r, op.symbol())?);
            let (a, b) = (Box::new(a), Box::new(b));
            let n = if op == BinaryOp::And {
                Node::And(a, b)
            } else {
                Node::Or(a, b)
            };
            return Ok((n, T::Boolean));
        }
        let a = self.compile(l)?;
        let b = self.compile(r)?;
        let (ta, tb) = (a.1, b.1);
        if op.is_comparison() {
            let cmp = match op {
                BinaryOp::Eq => CmpOp::Eq,
                BinaryOp::Ne => CmpOp::Ne,
                BinaryOp::Lt => CmpOp::Lt,
                BinaryOp::Le => CmpOp::Le,
                BinaryOp::Gt => CmpOp::Gt,
                _ => CmpOp::Ge,
            };
            let Some(target) = unify([ta, tb]) else {
                return type_err(pos, format!("cannot compare {ta} with {tb}"));
            };
            if matches!(target, T::Text | T::Boolean) && !matches!(cmp, CmpOp::Eq | CmpOp::Ne) {
                return type_err(
                    pos,
                    format!("cannot order {target} values; only = and != apply"),
                );
            }
            let n = Node::Cmp(
                cmp,
                Box::new(coerce(a, target)),
                Box::new(coerce(b, target)),
            );
            return Ok((n, T::Boolean));
        }
        let sym = op.symbol();
        if op == BinaryOp::Sub && ta == T::Date && tb == T::Date {
            return Ok((
                Node::Arith(ArithOp::SubDate, Box::new(a.0), Box::new(b.0)),
                T::Integer,
            ));
        }
        if !ta.is_numeric() || !tb.is_numeric() {
            let hint = if ta == T::PartialDate || tb == T::PartialDate {
                "; impute partial dates with earliest() or latest() first"
            } else if ta == T::Date
                && tb == T::Integer
                && matches!(op, BinaryOp::Add | BinaryOp::Sub)
            {
                "; use add_days(date, n)"
            } else {
                ""
            };
            return type_err(pos, format!("cannot apply {sym} to {ta} and {tb}{hint}"));
        }
        let int = ta == T::Integer && tb == T::Integer && op != BinaryOp::Div;
        let (arith, ty) = match (op, int) {
            (BinaryOp::Add, true) => (ArithOp::AddInt, T::Integer),
            (BinaryOp::Sub, true) => (ArithOp::SubInt, T::Integer),
            (BinaryOp::Mul, true) => (ArithOp::MulInt, T::Integer),
            (BinaryOp::Add, false) => (ArithOp::AddDec, T::Decimal),
            (BinaryOp::Sub, false) => (ArithOp::SubDec, T::Decimal),
            (BinaryOp::Mul, false) => (ArithOp::MulDec, T::Decimal),
            _ => (ArithOp::DivDec, T::Decimal),
        };
        Ok((
            Node::Arith(arith, Box::new(coerce(a, ty)), Box::new(coerce(b, ty))),
            ty,
        ))
    }

    fn call(&mut self, f: Function, args: &[Expr], pos: Pos) -> Result<Typed, CompileError> {
        use Function as F;
        use ValueType as T;
        let name = f.name();
        let arity = |n: usize| -> Result<(), CompileError> {
            if args.len() == n {
                Ok(())
            } else {
                let s = if n == 1 { "" } else { "s" };
                type_err(
                    pos,
                    format!("{name} takes {n} argument{s}, found {}", args.len()),
                )
            }
        };
        match f {
            F::Today => arity(0)?,
            F::Present
            | F::Blank
            | F::Len
            | F::Abs
            | F::Year
            | F::Month
            | F::Day
            | F::Earliest
            | F::Latest
            | F::DateOf => arity(1)?,
            F::Round | F::DaysBetween | F::AddDays | F::AgeYears => arity(2)?,
            F::If => arity(3)?,
            F::Min | F::Max | F::Coalesce => {
                if args.is_empty() {
                    return type_err(pos, format!("{name} needs at least one argument"));
                }
            }
        }
        let typed = args
            .iter()
            .map(|a| self.compile(a))
            .collect::<Result<Vec<_>, _>>()?;
        let types: Vec<ValueType> = typed.iter().map(|t| t.1).collect();
        let want = |i: usize, ok: &[ValueType], what: &str| -> Result<(), CompileError> {
            if ok.contains(&types[i]) {
                Ok(())
            } else {
                type_err(
                    args[i].pos,
                    format!("{name} needs {what}, found {}", types[i]),
                )
            }
        };
        let ty = match f {
            F::Present | F::Blank => T::Boolean,
            F::Len => {
                want(0, &[T::Text], "Text")?;
                T::Integer
            }
            F::Abs => {
                want(0, &[T::Integer, T::Decimal], "a number")?;
                types[0]
            }
            F::Round => {
                want(0, &[T::Integer, T::Decimal], "a number")?;
                want(1, &[T::Integer], "an Integer number of digits")?;
                T::Decimal
            }
            F::Today => {
                self.uses_today = true;
                T::Date
            }
            F::DaysBetween | F::AgeYears => {
                want(
                    0,
                    &[T::Date],
                    "a Date (impute partial dates with earliest() or latest())",
                )?;
                want(
                    1,
                    &[T::Date],
                    "a Date (impute partial dates with earliest() or latest())",
                )?;
                T::Integer
            }
            F::AddDays => {
                want(0, &[T::Date], "a Date")?;
                want(1, &[T::Integer], "an Integer number of days")?;
                T::Date
            }
            F::Year | F::Month | F::Day => {
                want(0, &[T::Date, T::PartialDate, T::DateTime], "a date")?;
                T::Integer
            }
            F::Earliest | F::Latest => {
                want(0, &[T::PartialDate, T::Date], "a PartialDate")?;
                T::Date
            }
            F::DateOf => {
                want(0, &[T::DateTime], "a DateTime")?;
                T::Date
            }
            F::If => {
                want(0, &[T::Boolean], "a Boolean condition first")?;
                let Some(t) = unify([types[1], types[2]]) else {
                    return type_err(
                        pos,
                        format!("if branches differ: {} and {}", types[1], types[2]),
                    );
                };
                let mut it = typed.into_iter();
                let nodes: Vec<Node> = [
                    it.next().map(|c| c.0),
                    it.next().map(|a| coerce(a, t)),
                    it.next().map(|b| coerce(b, t)),
                ]
                .into_iter()
                .flatten()
                .collect();
                return Ok((Node::Call(f, nodes.into()), t));
            }
            F::Min | F::Max | F::Coalesce => {
                let Some(t) = unify(types.iter().copied()) else {
                    return type_err(pos, format!("{name} arguments must have one type"));
                };
                if f != F::Coalesce
                    && !matches!(t, T::Integer | T::Decimal | T::Date | T::Time | T::DateTime)
                {
                    return type_err(
                        pos,
                        format!("{name} needs numbers, dates or times, found {t}"),
                    );
                }
                let nodes: Vec<Node> = typed.into_iter().map(|a| coerce(a, t)).collect();
                return Ok((Node::Call(f, nodes.into()), t));
            }
        };
        let nodes: Vec<Node> = typed.into_iter().map(|t| t.0).collect();
        Ok((Node::Call(f, nodes.into()), ty))
    }
}

fn literal(l: &Literal) -> Typed {
    let v = match l {
        Literal::Integer(i) => Value::Integer(*i),
        Literal::Decimal(d) => Value::Decimal(*d),
        Literal::Text(t) => Value::Text(t.as_str().into()),
        Literal::Boolean(b) => Value::Boolean(*b),
        Literal::Date(d) => Value::Date(*d),
        Literal::PartialDate(p) => Value::PartialDate(*p),
        Literal::Time(t) => Value::Time(*t),
        Literal::DateTime(dt) => Value::DateTime(*dt),
    };
    let ty = v.value_type().unwrap_or(ValueType::Text);
    (Node::Const(v), ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn compiled(src: &str) -> Result<Typed, CompileError> {
        let schema = |r: &ItemRef| match r.item.as_str() {
            "I" => Some((Slot(0), ValueType::Integer)),
            "D" => Some((Slot(1), ValueType::Decimal)),
            "P" => Some((Slot(2), ValueType::PartialDate)),
            _ => None,
        };
        let mut c = Compiler {
            schema: &schema,
            inputs: Vec::new(),
            uses_today: false,
        };
        c.compile(&parse(src).map_err(|e| CompileError {
            pos: e.pos,
            unknown_item: false,
            message: e.message,
        })?)
    }

    #[test]
    fn integers_meeting_decimals_become_decimals() {
        let (node, ty) = compiled("{I} + 1.5").expect("compiles");
        assert_eq!(ty, ValueType::Decimal);
        let Node::Arith(ArithOp::AddDec, l, r) = node else {
            panic!("{node:?}")
        };
        assert_eq!(
            *l,
            Node::IntToDec(Box::new(Node::Load(Slot(0), ValueType::Integer)))
        );
        assert_eq!(*r, Node::Const(Value::Decimal(1.5)));
        // Integer constants are converted at compile time.
        let (node, _) = compiled("{D} < 2").expect("compiles");
        let Node::Cmp(CmpOp::Lt, _, r) = node else {
            panic!("{node:?}")
        };
        assert_eq!(*r, Node::Const(Value::Decimal(2.0)));
        assert_eq!(compiled("{I} * 2").map(|t| t.1), Ok(ValueType::Integer));
        assert_eq!(compiled("{I} / 2").map(|t| t.1), Ok(ValueType::Decimal));
    }

    #[test]
    fn unify_rules() {
        use ValueType as T;
        assert_eq!(unify([T::Integer, T::Integer]), Some(T::Integer));
        assert_eq!(unify([T::Integer, T::Decimal]), Some(T::Decimal));
        assert_eq!(
            unify([T::Date, T::PartialDate, T::Date]),
            Some(T::PartialDate)
        );
        assert_eq!(unify([T::Date, T::DateTime]), None);
        assert_eq!(unify([T::Text, T::Integer]), None);
        assert_eq!(unify([]), None);
    }

    #[test]
    fn unknown_items_are_marked() {
        let e = compiled("{X} > 1").expect_err("unknown");
        assert!(e.unknown_item);
        assert_eq!((e.pos.line, e.pos.column), (1, 1));
        let e = compiled("{P} + 1 > 1").expect_err("type");
        assert!(!e.unknown_item);
    }
}
