//! Lexer and recursive-descent parser.
//!
//! Grammar, loosest binding first:
//! ```text
//! expr  := and ("or" and)*
//! and   := not ("and" not)*
//! not   := "not" not | cmp
//! cmp   := add [ cmpop add | ["not"] "in" "(" expr ("," expr)* ")" ]   -- no chaining
//! add   := mul (("+" | "-") mul)*
//! mul   := unary (("*" | "/") unary)*
//! unary := "-" unary | atom
//! atom  := literal | "{" item-ref "}" | name "(" [expr ("," expr)*] ")" | "(" expr ")"
//! ```

use crate::ast::{BinaryOp, Expr, ExprKind, Function, ItemRef, Literal, Pos, oid_char};
use crate::value::{parse_datetime, parse_decimal, parse_partial_date, parse_time};

/// Deepest tree the parser builds. Compilation and evaluation recurse over the tree, so the
/// bound keeps their stack use small whatever a study designer (or an attacker) writes.
pub const MAX_DEPTH: u32 = 64;
/// Longest source accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 10_000;

/// A syntax error at a position; the caller adds the check id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

fn err<T>(pos: Pos, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        pos,
        message: message.into(),
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Lit(Literal),
    Item(ItemRef),
    Name(String),
    And,
    Or,
    Not,
    In,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Lit(l) => format!("literal {l}"),
            Tok::Item(r) => format!("item {r}"),
            Tok::Name(n) => format!("name {n}"),
            Tok::And => "and".into(),
            Tok::Or => "or".into(),
            Tok::Not => "not".into(),
            Tok::In => "in".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Plus => "+".into(),
            Tok::Minus => "-".into(),
            Tok::Star => "*".into(),
            Tok::Slash => "/".into(),
            Tok::Eq => "=".into(),
            Tok::Ne => "!=".into(),
            Tok::Lt => "<".into(),
            Tok::Le => "<=".into(),
            Tok::Gt => ">".into(),
            Tok::Ge => ">=".into(),
            Tok::Eof => "end of the check".into(),
        }
    }
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

impl Lexer<'_> {
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else {
            self.pos.column += 1;
        }
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn tokens(mut self) -> Result<Vec<(Tok, Pos)>, SyntaxError> {
        let mut out = Vec::new();
        loop {
            while self.peek().is_some_and(char::is_whitespace) {
                self.bump();
            }
            let start = self.pos;
            let Some(c) = self.bump() else {
                out.push((Tok::Eof, start));
                return Ok(out);
            };
            let tok = match c {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                '+' => Tok::Plus,
                '-' => Tok::Minus,
                '*' => Tok::Star,
                '/' if self.eat('/') => {
                    // Comment to the end of the line.
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                    continue;
                }
                '/' => Tok::Slash,
                '=' => Tok::Eq,
                '!' if self.eat('=') => Tok::Ne,
                '<' if self.eat('=') => Tok::Le,
                '<' if self.eat('>') => Tok::Ne,
                '<' => Tok::Lt,
                '>' if self.eat('=') => Tok::Ge,
                '>' => Tok::Gt,
                '"' => Tok::Lit(Literal::Text(self.text(start)?)),
                '{' => Tok::Item(self.item(start)?),
                '0'..='9' => Tok::Lit(self.number(c, start)?),
                c if c.is_ascii_alphabetic() || c == '_' => self.word(c, start)?,
                c => return err(start, format!("unexpected character {c:?}")),
            };
            out.push((tok, start));
        }
    }

    fn text(&mut self, start: Pos) -> Result<String, SyntaxError> {
        let mut s = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return err(start, "text is not closed with \""),
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    _ => return err(at, "unknown escape; use \\\", \\\\, \\n or \\t"),
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn item(&mut self, start: Pos) -> Result<ItemRef, SyntaxError> {
        let mut s = String::new();
        loop {
            match self.bump() {
                Some('}') => break,
                Some(c) if oid_char(c) || c == '/' => s.push(c),
                _ => return err(start, "item reference is not closed with }"),
            }
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return err(start, "empty OID in item reference");
        }
        ItemRef::from_parts(&parts).map_or_else(
            || err(start, "an item reference is {ITEM}, {FORM/ITEM}, {EVENT/FORM/ITEM} or {EVENT/FORM/GROUP/ITEM}"),
            Ok,
        )
    }

    fn number(&mut self, first: char, start: Pos) -> Result<Literal, SyntaxError> {
        let mut s = String::from(first);
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            s.push(c);
            self.bump();
        }
        if self.eat('.') {
            s.push('.');
            let before = s.len();
            while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                s.push(c);
                self.bump();
            }
            if s.len() == before {
                return err(start, "a decimal needs digits after the point, as in 5.0");
            }
            return parse_decimal(&s)
                .map(Literal::Decimal)
                .or_else(|m| err(start, m));
        }
        s.parse::<i64>()
            .map(Literal::Integer)
            .or_else(|_| err(start, "integer out of range"))
    }

    fn word(&mut self, first: char, start: Pos) -> Result<Tok, SyntaxError> {
        let mut s = String::from(first);
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            s.push(c);
            self.bump();
        }
        let lower = s.to_ascii_lowercase();
        if self.peek() == Some('\'') && matches!(lower.as_str(), "date" | "time" | "datetime") {
            self.bump();
            let mut body = String::new();
            loop {
                match self.bump() {
                    Some('\'') => break,
                    Some(c) if c != '\n' => body.push(c),
                    _ => return err(start, format!("{lower} literal is not closed with '")),
                }
            }
            let bad = |m: &str| err(start, format!("invalid {lower} literal '{body}': {m}"));
            return Ok(Tok::Lit(match lower.as_str() {
                "date" => match parse_partial_date(&body) {
                    Ok(p) => p.complete().map_or(Literal::PartialDate(p), Literal::Date),
                    Err(m) => return bad(m),
                },
                "time" => match parse_time(&body) {
                    Ok(t) => Literal::Time(t),
                    Err(m) => return bad(m),
                },
                _ => match parse_datetime(&body) {
                    Ok(t) => Literal::DateTime(t),
                    Err(m) => return bad(m),
                },
            }));
        }
        Ok(match lower.as_str() {
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "in" => Tok::In,
            "true" => Tok::Lit(Literal::Boolean(true)),
            "false" => Tok::Lit(Literal::Boolean(false)),
            _ => Tok::Name(s),
        })
    }
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    at: usize,
    /// Current recursion through prefix operators, parentheses and argument lists.
    nesting: u32,
}

/// A parsed subtree and its depth.
type Parsed = (Expr, u32);

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.at).map_or(&Tok::Eof, |t| &t.0)
    }

    fn pos(&self) -> Pos {
        self.toks
            .get(self.at)
            .or(self.toks.last())
            .map_or(Pos::default(), |t| t.1)
    }

    fn next(&mut self) -> (Tok, Pos) {
        let t = self
            .toks
            .get(self.at)
            .cloned()
            .unwrap_or((Tok::Eof, self.pos()));
        self.at += 1;
        t
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), SyntaxError> {
        if *self.peek() == want {
            self.at += 1;
            Ok(())
        } else {
            err(
                self.pos(),
                format!("expected {what}, found {}", self.peek().describe()),
            )
        }
    }

    fn node(kind: ExprKind, pos: Pos, depth: u32) -> Result<Parsed, SyntaxError> {
        if depth > MAX_DEPTH {
            return err(
                pos,
                format!("expression nested more than {MAX_DEPTH} levels deep"),
            );
        }
        Ok((Expr::new(kind, pos), depth))
    }

    fn binary(op: BinaryOp, l: Parsed, r: Parsed, pos: Pos) -> Result<Parsed, SyntaxError> {
        let depth = l.1.max(r.1) + 1;
        Parser::node(
            ExprKind::Binary {
                op,
                left: Box::new(l.0),
                right: Box::new(r.0),
            },
            pos,
            depth,
        )
    }

    fn or(&mut self) -> Result<Parsed, SyntaxError> {
        let mut l = self.and()?;
        while *self.peek() == Tok::Or {
            let (_, pos) = self.next();
            let r = self.and()?;
            l = Parser::binary(BinaryOp::Or, l, r, pos)?;
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Parsed, SyntaxError> {
        let mut l = self.not()?;
        while *self.peek() == Tok::And {
            let (_, pos) = self.next();
            let r = self.not()?;
            l = Parser::binary(BinaryOp::And, l, r, pos)?;
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Parsed, SyntaxError> {
        if *self.peek() == Tok::Not {
            let (_, pos) = self.next();
            let (e, d) = self.not_guarded(pos)?;
            return Parser::node(ExprKind::Not(Box::new(e)), pos, d + 1);
        }
        self.cmp()
    }

    /// Recursion guard for prefix operators and parentheses, checked before descending so a
    /// long run of `not not not ...` or `((((...` cannot exhaust the stack.
    fn not_guarded(&mut self, pos: Pos) -> Result<Parsed, SyntaxError> {
        self.guard(pos, |p| p.not())
    }

    fn guard(
        &mut self,
        pos: Pos,
        f: impl FnOnce(&mut Self) -> Result<Parsed, SyntaxError>,
    ) -> Result<Parsed, SyntaxError> {
        self.nesting += 1;
        let r = if self.nesting > MAX_DEPTH {
            err(
                pos,
                format!("expression nested more than {MAX_DEPTH} levels deep"),
            )
        } else {
            f(self)
        };
        self.nesting -= 1;
        r
    }

    fn cmp(&mut self) -> Result<Parsed, SyntaxError> {
        let l = self.add()?;
        let op = match self.peek() {
            Tok::Eq => BinaryOp::Eq,
            Tok::Ne => BinaryOp::Ne,
            Tok::Lt => BinaryOp::Lt,
            Tok::Le => BinaryOp::Le,
            Tok::Gt => BinaryOp::Gt,
            Tok::Ge => BinaryOp::Ge,
            Tok::In | Tok::Not => return self.in_list(l),
            _ => return Ok(l),
        };
        let (_, pos) = self.next();
        let r = self.add()?;
        let out = Parser::binary(op, l, r, pos)?;
        self.no_chain()?;
        Ok(out)
    }

    fn no_chain(&self) -> Result<(), SyntaxError> {
        if matches!(
            self.peek(),
            Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge | Tok::In
        ) {
            return err(
                self.pos(),
                "comparisons cannot be chained; join them with and",
            );
        }
        Ok(())
    }

    fn in_list(&mut self, l: Parsed) -> Result<Parsed, SyntaxError> {
        let negated = *self.peek() == Tok::Not;
        let pos = self.pos();
        if negated {
            self.at += 1;
            if *self.peek() != Tok::In {
                return err(
                    self.pos(),
                    format!("expected in after not, found {}", self.peek().describe()),
                );
            }
        }
        self.at += 1;
        let (list, d) = self.arguments(pos, "a list such as (1, 2, 3)")?;
        if list.is_empty() {
            return err(pos, "the list after in is empty");
        }
        let out = Parser::node(
            ExprKind::In {
                negated,
                expr: Box::new(l.0),
                list,
            },
            pos,
            l.1.max(d) + 1,
        )?;
        self.no_chain()?;
        Ok(out)
    }

    /// `( [expr ("," expr)*] )`; returns the items and their greatest depth.
    fn arguments(&mut self, pos: Pos, what: &str) -> Result<(Vec<Expr>, u32), SyntaxError> {
        self.expect(Tok::LParen, what)?;
        let mut out = Vec::new();
        let mut depth = 0;
        if *self.peek() == Tok::RParen {
            self.at += 1;
            return Ok((out, depth));
        }
        loop {
            let (e, d) = self.guard(pos, |p| p.or())?;
            depth = depth.max(d);
            out.push(e);
            match self.next() {
                (Tok::Comma, _) => {}
                (Tok::RParen, _) => return Ok((out, depth)),
                (t, at) => return err(at, format!("expected , or ), found {}", t.describe())),
            }
        }
    }

    fn add(&mut self) -> Result<Parsed, SyntaxError> {
        let mut l = self.mul()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinaryOp::Add,
                Tok::Minus => BinaryOp::Sub,
                _ => return Ok(l),
            };
            let (_, pos) = self.next();
            let r = self.mul()?;
            l = Parser::binary(op, l, r, pos)?;
        }
    }

    fn mul(&mut self) -> Result<Parsed, SyntaxError> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinaryOp::Mul,
                Tok::Slash => BinaryOp::Div,
                _ => return Ok(l),
            };
            let (_, pos) = self.next();
            let r = self.unary()?;
            l = Parser::binary(op, l, r, pos)?;
        }
    }

    fn unary(&mut self) -> Result<Parsed, SyntaxError> {
        if *self.peek() == Tok::Minus {
            let (_, pos) = self.next();
            let (e, d) = self.guard(pos, |p| p.unary())?;
            return Parser::node(ExprKind::Neg(Box::new(e)), pos, d + 1);
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Parsed, SyntaxError> {
        let (tok, pos) = self.next();
        match tok {
            Tok::Lit(l) => Parser::node(ExprKind::Literal(l), pos, 1),
            Tok::Item(r) => Parser::node(ExprKind::Item(r), pos, 1),
            Tok::LParen => {
                let inner = self.guard(pos, |p| p.or())?;
                self.expect(Tok::RParen, ")")?;
                Ok(inner)
            }
            Tok::Name(name) => {
                let Some(function) = Function::from_name(&name) else {
                    return err(pos, format!("unknown function {name}"));
                };
                let (args, d) = self.arguments(pos, &format!("( after {name}"))?;
                Parser::node(ExprKind::Call { function, args }, pos, d + 1)
            }
            t => err(pos, format!("expected a value, found {}", t.describe())),
        }
    }
}

/// Parses a check expression.
pub(crate) fn parse(source: &str) -> Result<Expr, SyntaxError> {
    let start = Pos { line: 1, column: 1 };
    if source.len() > MAX_SOURCE_LEN {
        return err(
            start,
            format!("the check is longer than {MAX_SOURCE_LEN} bytes"),
        );
    }
    let toks = Lexer {
        chars: source.chars().peekable(),
        pos: start,
    }
    .tokens()?;
    let mut p = Parser {
        toks,
        at: 0,
        nesting: 0,
    };
    let (e, _) = p.or()?;
    if *p.peek() != Tok::Eof {
        return err(
            p.pos(),
            format!(
                "expected an operator or the end, found {}",
                p.peek().describe()
            ),
        );
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical print of `src`, fully parenthesised by the tree's shape.
    fn shape(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Literal(l) => l.to_string(),
            ExprKind::Item(r) => r.to_string(),
            ExprKind::Neg(x) => format!("(-{})", shape(x)),
            ExprKind::Not(x) => format!("(not {})", shape(x)),
            ExprKind::Binary { op, left, right } => {
                format!("({} {} {})", shape(left), op.symbol(), shape(right))
            }
            ExprKind::In {
                negated,
                expr,
                list,
            } => {
                let items: Vec<String> = list.iter().map(shape).collect();
                let kw = if *negated { "not in" } else { "in" };
                format!("({} {kw} [{}])", shape(expr), items.join(", "))
            }
            ExprKind::Call { function, args } => {
                let items: Vec<String> = args.iter().map(shape).collect();
                format!("{}[{}]", function.name(), items.join(", "))
            }
        }
    }

    fn parsed(src: &str) -> String {
        shape(&parse(src).unwrap_or_else(|e| panic!("{src}: {e:?}")))
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(parsed("1 + 2 * 3"), "(1 + (2 * 3))");
        assert_eq!(parsed("1 - 2 - 3"), "((1 - 2) - 3)");
        assert_eq!(parsed("8 / 4 / 2"), "((8 / 4) / 2)");
        assert_eq!(parsed("-2 * 3"), "((-2) * 3)");
        assert_eq!(parsed("1 - -2"), "(1 - (-2))");
    }

    #[test]
    fn logic_binds_looser_than_comparison() {
        assert_eq!(
            parsed("true or false and false"),
            "(true or (false and false))"
        );
        assert_eq!(parsed("not {A} = 1 and {B}"), "((not ({A} = 1)) and {B})");
        assert_eq!(parsed("not not true"), "(not (not true))");
        assert_eq!(
            parsed("{A} + 1 in (1, 2 + 3)"),
            "(({A} + 1) in [1, (2 + 3)])"
        );
        assert_eq!(parsed("{A} NOT IN (1)"), "({A} not in [1])");
        assert_eq!(
            parsed("present({A}) and today() > date'2024'"),
            "(present[{A}] and (today[] > date'2024'))"
        );
    }

    #[test]
    fn positions_are_line_and_character_column() {
        let e = parse("\"é\" = {A} or\n  {B}").expect("parses");
        assert_eq!(
            e.pos,
            Pos {
                line: 1,
                column: 11
            }
        );
        let ExprKind::Binary { left, right, .. } = &e.kind else {
            panic!("not binary")
        };
        assert_eq!(left.pos, Pos { line: 1, column: 5 });
        assert_eq!(right.pos, Pos { line: 2, column: 3 });
    }

    #[test]
    fn literals() {
        assert_eq!(parsed("date'2024-03'"), "date'2024-03'");
        assert_eq!(parsed("DATE'05-MAR-2024'"), "date'2024-03-05'");
        assert_eq!(parsed("time'08:00'"), "time'08:00:00'");
        assert_eq!(parsed("\"a\\\"b\""), "\"a\\\"b\"");
        for bad in [
            "time'8:00'",
            "date'2024-3'",
            "datetime'2024-03-05'",
            "1.",
            "\"\\q\"",
            "a(1)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
