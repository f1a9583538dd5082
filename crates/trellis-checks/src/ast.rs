//! Syntax tree of a check expression, and its canonical printing (`Display`), which the parser
//! reads back to the same tree.

use std::fmt;

use jiff::civil::{Date, DateTime, Time};

use crate::value::{DecimalText, PartialDate, TimeText};

/// Line and column (1-based; columns count characters) of a token in the check source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// An item reference by ODM OIDs: `{I}`, `{F/I}`, `{SE/F/I}` or `{SE/F/IG/I}`.
/// Missing parts mean "the same as where the check runs"; the caller's `Schema` resolves them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemRef {
    pub study_event: Option<String>,
    pub form: Option<String>,
    pub item_group: Option<String>,
    pub item: String,
}

impl ItemRef {
    /// An item of the same item group (or form) as the check.
    pub fn item(oid: &str) -> ItemRef {
        ItemRef {
            study_event: None,
            form: None,
            item_group: None,
            item: oid.to_owned(),
        }
    }

    /// Builds a reference from its `/`-separated parts, as written between the braces.
    pub fn from_parts(parts: &[&str]) -> Option<ItemRef> {
        let s = |p: &str| Some(p.to_owned());
        if parts.iter().any(|p| !valid_oid(p)) {
            return None;
        }
        Some(match *parts {
            [i] => ItemRef::item(i),
            [f, i] => ItemRef {
                study_event: None,
                form: s(f),
                item_group: None,
                item: i.into(),
            },
            [e, f, i] => ItemRef {
                study_event: s(e),
                form: s(f),
                item_group: None,
                item: i.into(),
            },
            [e, f, g, i] => ItemRef {
                study_event: s(e),
                form: s(f),
                item_group: s(g),
                item: i.into(),
            },
            _ => return None,
        })
    }
}

/// OIDs may hold any character except those the reference syntax itself uses.
pub(crate) fn valid_oid(s: &str) -> bool {
    !s.is_empty() && s.chars().all(oid_char)
}

pub(crate) fn oid_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !matches!(c, '{' | '}' | '/')
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for part in [&self.study_event, &self.form, &self.item_group]
            .into_iter()
            .flatten()
        {
            write!(f, "{part}/")?;
        }
        write!(f, "{}}}", self.item)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Integer(i64),
    Decimal(f64),
    Text(String),
    Boolean(bool),
    Date(Date),
    /// Never complete: a literal with every part known is a `Date`.
    PartialDate(PartialDate),
    Time(Time),
    DateTime(DateTime),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
        }
    }

    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => PREC_OR,
            BinaryOp::And => PREC_AND,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => PREC_CMP,
            BinaryOp::Add | BinaryOp::Sub => PREC_ADD,
            BinaryOp::Mul | BinaryOp::Div => PREC_MUL,
        }
    }

    pub(crate) fn is_comparison(self) -> bool {
        self.precedence() == PREC_CMP
    }
}

pub(crate) const PREC_OR: u8 = 1;
pub(crate) const PREC_AND: u8 = 2;
pub(crate) const PREC_NOT: u8 = 3;
pub(crate) const PREC_CMP: u8 = 4;
pub(crate) const PREC_ADD: u8 = 5;
pub(crate) const PREC_MUL: u8 = 6;
pub(crate) const PREC_NEG: u8 = 7;
pub(crate) const PREC_ATOM: u8 = 8;

/// The built-in functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Present,
    Blank,
    Len,
    Abs,
    Min,
    Max,
    Round,
    Today,
    DaysBetween,
    AddDays,
    AgeYears,
    Year,
    Month,
    Day,
    Earliest,
    Latest,
    DateOf,
    If,
    Coalesce,
}

impl Function {
    pub const ALL: [Function; 19] = [
        Function::Present,
        Function::Blank,
        Function::Len,
        Function::Abs,
        Function::Min,
        Function::Max,
        Function::Round,
        Function::Today,
        Function::DaysBetween,
        Function::AddDays,
        Function::AgeYears,
        Function::Year,
        Function::Month,
        Function::Day,
        Function::Earliest,
        Function::Latest,
        Function::DateOf,
        Function::If,
        Function::Coalesce,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Function::Present => "present",
            Function::Blank => "blank",
            Function::Len => "len",
            Function::Abs => "abs",
            Function::Min => "min",
            Function::Max => "max",
            Function::Round => "round",
            Function::Today => "today",
            Function::DaysBetween => "days_between",
            Function::AddDays => "add_days",
            Function::AgeYears => "age_years",
            Function::Year => "year",
            Function::Month => "month",
            Function::Day => "day",
            Function::Earliest => "earliest",
            Function::Latest => "latest",
            Function::DateOf => "date",
            Function::If => "if",
            Function::Coalesce => "coalesce",
        }
    }

    /// Case-insensitive lookup by name.
    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    /// Where the node starts, or its operator (binary operators, `in`, function name).
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    Item(ItemRef),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `expr in (a, b)` or `expr not in (a, b)`.
    In {
        negated: bool,
        expr: Box<Expr>,
        list: Vec<Expr>,
    },
    Call {
        function: Function,
        args: Vec<Expr>,
    },
}

impl Expr {
    pub fn new(kind: ExprKind, pos: Pos) -> Expr {
        Expr { kind, pos }
    }

    /// Sets every position to the default; two trees that differ only in layout then compare
    /// equal.
    pub fn clear_positions(&mut self) {
        self.pos = Pos::default();
        match &mut self.kind {
            ExprKind::Literal(_) | ExprKind::Item(_) => {}
            ExprKind::Neg(e) | ExprKind::Not(e) => e.clear_positions(),
            ExprKind::Binary { left, right, .. } => {
                left.clear_positions();
                right.clear_positions();
            }
            ExprKind::In { expr, list, .. } => {
                expr.clear_positions();
                list.iter_mut().for_each(Expr::clear_positions);
            }
            ExprKind::Call { args, .. } => args.iter_mut().for_each(Expr::clear_positions),
        }
    }

    /// Every item reference, in source order.
    pub fn items(&self) -> Vec<&ItemRef> {
        let mut out = Vec::new();
        self.collect_items(&mut out);
        out
    }

    fn collect_items<'a>(&'a self, out: &mut Vec<&'a ItemRef>) {
        match &self.kind {
            ExprKind::Literal(_) => {}
            ExprKind::Item(r) => out.push(r),
            ExprKind::Neg(e) | ExprKind::Not(e) => e.collect_items(out),
            ExprKind::Binary { left, right, .. } => {
                left.collect_items(out);
                right.collect_items(out);
            }
            ExprKind::In { expr, list, .. } => {
                expr.collect_items(out);
                list.iter().for_each(|e| e.collect_items(out));
            }
            ExprKind::Call { args, .. } => args.iter().for_each(|e| e.collect_items(out)),
        }
    }

    fn precedence(&self) -> u8 {
        match &self.kind {
            ExprKind::Literal(_) | ExprKind::Item(_) | ExprKind::Call { .. } => PREC_ATOM,
            ExprKind::Neg(_) => PREC_NEG,
            ExprKind::Not(_) => PREC_NOT,
            ExprKind::Binary { op, .. } => op.precedence(),
            ExprKind::In { .. } => PREC_CMP,
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Integer(i) => write!(f, "{i}"),
            Literal::Decimal(d) => write!(f, "{}", DecimalText(*d)),
            Literal::Text(t) => {
                f.write_str("\"")?;
                for c in t.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\t' => f.write_str("\\t")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
            Literal::Boolean(b) => write!(f, "{b}"),
            Literal::Date(d) => write!(f, "date'{}'", PartialDate::from_date(*d)),
            Literal::PartialDate(p) => write!(f, "date'{p}'"),
            Literal::Time(t) => write!(f, "time'{}'", TimeText(*t)),
            Literal::DateTime(dt) => write!(
                f,
                "datetime'{}T{}'",
                PartialDate::from_date(dt.date()),
                TimeText(dt.time())
            ),
        }
    }
}

/// Writes `e`, in parentheses when its precedence is below `min`.
fn child(f: &mut fmt::Formatter<'_>, e: &Expr, min: u8) -> fmt::Result {
    if e.precedence() < min {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

fn list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    f.write_str("(")?;
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    f.write_str(")")
}

impl fmt::Display for Expr {
    /// Canonical form with the fewest parentheses that keep the tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(l) => write!(f, "{l}"),
            ExprKind::Item(r) => write!(f, "{r}"),
            ExprKind::Neg(e) => {
                f.write_str("-")?;
                child(f, e, PREC_NEG)
            }
            ExprKind::Not(e) => {
                f.write_str("not ")?;
                child(f, e, PREC_NOT)
            }
            ExprKind::Binary { op, left, right } => {
                let p = op.precedence();
                // Comparisons do not chain, so both sides bind tighter; the others are
                // left-associative.
                let left_min = if op.is_comparison() { p + 1 } else { p };
                child(f, left, left_min)?;
                write!(f, " {} ", op.symbol())?;
                child(f, right, p + 1)
            }
            ExprKind::In {
                negated,
                expr,
                list: items,
            } => {
                child(f, expr, PREC_CMP + 1)?;
                f.write_str(if *negated { " not in " } else { " in " })?;
                list(f, items)
            }
            ExprKind::Call { function, args } => {
                f.write_str(function.name())?;
                list(f, args)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(kind: ExprKind) -> Box<Expr> {
        Box::new(Expr::new(kind, Pos::default()))
    }
    fn int(i: i64) -> Box<Expr> {
        at(ExprKind::Literal(Literal::Integer(i)))
    }
    fn bin(op: BinaryOp, l: Box<Expr>, r: Box<Expr>) -> Box<Expr> {
        at(ExprKind::Binary {
            op,
            left: l,
            right: r,
        })
    }

    #[test]
    fn prints_the_fewest_parentheses() {
        let e = bin(BinaryOp::Mul, bin(BinaryOp::Add, int(1), int(2)), int(3));
        assert_eq!(e.to_string(), "(1 + 2) * 3");
        let e = bin(BinaryOp::Sub, int(1), bin(BinaryOp::Sub, int(2), int(3)));
        assert_eq!(e.to_string(), "1 - (2 - 3)");
        let e = bin(BinaryOp::Sub, bin(BinaryOp::Sub, int(1), int(2)), int(3));
        assert_eq!(e.to_string(), "1 - 2 - 3");
        let e = bin(BinaryOp::Lt, bin(BinaryOp::Lt, int(1), int(2)), int(3));
        assert_eq!(e.to_string(), "(1 < 2) < 3");
        let e = at(ExprKind::Not(bin(BinaryOp::Eq, int(1), int(2))));
        assert_eq!(e.to_string(), "not 1 = 2");
        let e = bin(BinaryOp::Eq, at(ExprKind::Not(int(1))), int(2));
        assert_eq!(e.to_string(), "(not 1) = 2");
        let e = at(ExprKind::Neg(at(ExprKind::Neg(int(1)))));
        assert_eq!(e.to_string(), "--1");
    }

    #[test]
    fn prints_literals_and_references() {
        assert_eq!(Literal::Decimal(5.0).to_string(), "5.0");
        assert_eq!(Literal::Decimal(0.1).to_string(), "0.1");
        assert_eq!(
            Literal::Text("a\"b\\c\nd".into()).to_string(),
            r#""a\"b\\c\nd""#
        );
        let r = ItemRef::from_parts(&["SE.1", "F.VS", "IG.VS", "I.X"]).expect("valid");
        assert_eq!(r.to_string(), "{SE.1/F.VS/IG.VS/I.X}");
        assert_eq!(
            ItemRef::from_parts(&["F", "I"]).map(|r| r.form),
            Some(Some("F".into()))
        );
        assert_eq!(ItemRef::from_parts(&["a b"]), None);
        assert_eq!(ItemRef::from_parts(&[]), None);
        assert_eq!(
            Function::from_name("DAYS_BETWEEN"),
            Some(Function::DaysBetween)
        );
        for f in Function::ALL {
            assert_eq!(Function::from_name(f.name()), Some(f));
        }
    }
}
