//! Property tests: the parser never panics, printing and parsing round-trip, compiled
//! well-typed expressions never hit an internal error, and integer/decimal arithmetic and
//! comparisons agree with a straightforward reference evaluation.

use jiff::civil::{Date, DateTime, Time};
use proptest::prelude::*;
use trellis_checks::{
    BinaryOp, CompiledExpression, EvalError, Expr, ExprKind, Function, ItemRef, Literal, Outcome,
    PartialDate, Pos, Slot, Value, ValueType, parse_expression,
};

use super::{Form, compile, env};

fn date() -> impl Strategy<Value = Date> {
    (0i16..=9999, 1i8..=12, 1i8..=28).prop_map(|(y, m, d)| jiff::civil::date(y, m, d))
}

fn time() -> impl Strategy<Value = Time> {
    (
        0i8..24,
        0i8..60,
        0i8..60,
        prop_oneof![Just(0), 0i32..1_000_000_000],
    )
        .prop_map(|(h, m, s, ns)| jiff::civil::time(h, m, s, ns))
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        (0i64..=i64::MAX).prop_map(Literal::Integer),
        (0i64..100).prop_map(Literal::Integer),
        (0f64..1e15).prop_map(Literal::Decimal),
        (0u32..100_000).prop_map(|c| Literal::Decimal(f64::from(c) / 100.0)),
        ".{0,8}".prop_map(Literal::Text),
        any::<bool>().prop_map(Literal::Boolean),
        date().prop_map(Literal::Date),
        (0i16..=9999, prop::option::of(1i8..=12))
            .prop_map(|(y, m)| Literal::PartialDate(PartialDate::new(y, m, None).expect("valid"))),
        time().prop_map(Literal::Time),
        (date(), time()).prop_map(|(d, t)| Literal::DateTime(DateTime::from_parts(d, t))),
    ]
}

fn oid_item() -> impl Strategy<Value = ItemRef> {
    prop::collection::vec("[A-Z][A-Za-z0-9._-]{0,6}", 1..=4).prop_map(|parts| {
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        ItemRef::from_parts(&parts).expect("valid parts")
    })
}

const OPS: [BinaryOp; 12] = [
    BinaryOp::Or,
    BinaryOp::And,
    BinaryOp::Eq,
    BinaryOp::Ne,
    BinaryOp::Lt,
    BinaryOp::Le,
    BinaryOp::Gt,
    BinaryOp::Ge,
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
];

fn expr(item: impl Strategy<Value = ItemRef> + 'static) -> impl Strategy<Value = Expr> {
    let at = |kind| Expr::new(kind, Pos::default());
    let leaf = prop_oneof![
        literal().prop_map(ExprKind::Literal),
        item.prop_map(ExprKind::Item)
    ]
    .prop_map(at);
    leaf.prop_recursive(6, 48, 4, move |inner| {
        let b = |e: Expr| Box::new(e);
        prop_oneof![
            inner.clone().prop_map(move |e| at(ExprKind::Neg(b(e)))),
            inner.clone().prop_map(move |e| at(ExprKind::Not(b(e)))),
            (prop::sample::select(&OPS[..]), inner.clone(), inner.clone()).prop_map(
                move |(op, l, r)| at(ExprKind::Binary {
                    op,
                    left: b(l),
                    right: b(r)
                })
            ),
            (
                any::<bool>(),
                inner.clone(),
                prop::collection::vec(inner.clone(), 1..4)
            )
                .prop_map(move |(negated, e, list)| at(ExprKind::In {
                    negated,
                    expr: b(e),
                    list
                })),
            (
                prop::sample::select(&Function::ALL[..]),
                prop::collection::vec(inner, 0..4)
            )
                .prop_map(move |(function, args)| at(ExprKind::Call { function, args })),
        ]
    })
}

/// Eight slots, one per type; an item reference `{X}` picks a slot by the first letter of X.
const TYPES: [ValueType; 8] = [
    ValueType::Integer,
    ValueType::Decimal,
    ValueType::Text,
    ValueType::Boolean,
    ValueType::Date,
    ValueType::PartialDate,
    ValueType::Time,
    ValueType::DateTime,
];

fn typed_item() -> impl Strategy<Value = ItemRef> {
    prop::sample::select(vec!["A", "B", "C", "D", "E", "F", "G", "H"]).prop_map(ItemRef::item)
}

fn any_value(ty: ValueType) -> BoxedStrategy<Value> {
    let samples: Vec<&str> = match ty {
        ValueType::Integer => vec![
            "0",
            "1",
            "-1",
            "120",
            "9223372036854775807",
            "-9223372036854775808",
        ],
        ValueType::Decimal => vec!["0", "0.1", "-37.5", "1e300", "2.675"],
        ValueType::Text => vec!["M", "", "Kopfschmerz"],
        ValueType::Boolean => vec!["true", "false"],
        ValueType::Date => vec!["2024-03-05", "0000-01-01", "9999-12-31"],
        ValueType::PartialDate => vec!["2024", "2024-02", "2024-02-29"],
        ValueType::Time => vec!["00:00", "23:59:59.5"],
        ValueType::DateTime => vec!["2024-03-05T08:30"],
    };
    prop_oneof![
        1 => Just(Value::Missing),
        4 => prop::sample::select(samples).prop_map(move |s| Value::parse(ty, s).expect("sample")),
    ]
    .boxed()
}

fn values() -> impl Strategy<Value = Vec<Value>> {
    TYPES.iter().map(|t| any_value(*t)).collect::<Vec<_>>()
}

fn typed_schema(r: &ItemRef) -> Option<(Slot, ValueType)> {
    let i = usize::from(r.item.bytes().next()?.checked_sub(b'A')?);
    TYPES.get(i).map(|t| (Slot(i as u32), *t))
}

/// Source fragments for token soup that reaches deeper than random characters.
const TOKENS: [&str; 40] = [
    "{A}",
    "{B}",
    "{SE.X/F.Y/I.Z}",
    "{",
    "}",
    "1",
    "2.5",
    "9223372036854775808",
    "\"x\"",
    "\"",
    "true",
    "date'2024'",
    "date'2024-03-05'",
    "date'",
    "time'08:00'",
    "datetime'2024-03-05T08:00'",
    "+",
    "-",
    "*",
    "/",
    "//",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "and",
    "or",
    "not",
    "in",
    "(",
    ")",
    ",",
    "present",
    "round",
    "if",
    "min",
    "\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
        let _ = parse_expression("P", &s);
    }

    #[test]
    fn parser_never_panics_on_token_soup(toks in prop::collection::vec(prop::sample::select(&TOKENS[..]), 0..60)) {
        let s = toks.join(" ");
        let _ = parse_expression("P", &s);
        if let Ok(c) = CompiledExpression::compile("P", &s, &typed_schema) {
            let vals: Vec<Value> = TYPES.iter().map(|_| Value::Missing).collect();
            prop_assert!(!matches!(c.evaluate_value(&vals, &env()), Err(EvalError::Internal(_))));
        }
    }

    #[test]
    fn print_then_parse_round_trips(e in expr(oid_item())) {
        let printed = e.to_string();
        let mut back = parse_expression("P", &printed).map_err(|err| TestCaseError::fail(format!("{err}\n{printed}")))?;
        back.clear_positions();
        prop_assert_eq!(&back, &e, "{}", printed);
        prop_assert_eq!(back.to_string(), printed);
    }

    #[test]
    fn well_typed_expressions_evaluate_without_internal_errors(e in expr(typed_item()), vals in values()) {
        let printed = e.to_string();
        if let Ok(c) = CompiledExpression::compile("P", &printed, &typed_schema) {
            let r = c.evaluate_value(&vals, &env());
            prop_assert!(!matches!(r, Err(EvalError::Internal(_))), "{printed}: {r:?}");
            if let Ok(v) = r {
                prop_assert!(v.is_missing() || v.value_type() == Some(c.value_type()) ||
                    (c.value_type() == ValueType::PartialDate && v.value_type() == Some(ValueType::Date)),
                    "{printed}: {v:?} is not {}", c.value_type());
            }
        }
    }
}

/// Source of well-typed expressions, by type, for up to `depth` levels of operators: every
/// output must compile. Index by `TYPES` order.
fn typed_sources(depth: u32) -> Vec<BoxedStrategy<String>> {
    use ValueType as T;
    let leaves: Vec<BoxedStrategy<String>> = TYPES
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            let item = Just(format!("{{{}}}", (b'A' + i as u8) as char));
            let lits: Vec<&'static str> = match ty {
                T::Integer => vec!["0", "1", "7", "9223372036854775807"],
                T::Decimal => vec!["0.0", "0.1", "2.675", "37.5"],
                T::Text => vec!["\"M\"", "\"\"", "\"Kopfschmerz\""],
                T::Boolean => vec!["true", "false"],
                T::Date => vec!["date'2024-03-05'", "date'9999-12-31'", "today()"],
                T::PartialDate => vec!["date'2024'", "date'2024-02'", "date'UN-MAR-2023'"],
                T::Time => vec!["time'08:30'", "time'23:59:59.5'"],
                T::DateTime => vec!["datetime'2024-03-05T08:30'"],
            };
            prop_oneof![item, prop::sample::select(lits).prop_map(String::from)].boxed()
        })
        .collect();
    let mut level = leaves.clone();
    for _ in 0..depth {
        let g = |t: T| level[TYPES.iter().position(|x| *x == t).unwrap_or(0)].clone();
        let any_typed = prop::sample::select(TYPES.to_vec()).prop_flat_map({
            let level = level.clone();
            move |t| level[TYPES.iter().position(|x| *x == t).unwrap_or(0)].clone()
        });
        let (i, d, b, tx, dt, p, tm, dtm) = (
            g(T::Integer),
            g(T::Decimal),
            g(T::Boolean),
            g(T::Text),
            g(T::Date),
            g(T::PartialDate),
            g(T::Time),
            g(T::DateTime),
        );
        let num = prop_oneof![i.clone(), d.clone()];
        let day = prop_oneof![dt.clone(), p.clone()];
        let op = |ops: &'static [&'static str]| prop::sample::select(ops);
        let bin =
            |a: BoxedStrategy<String>, ops: &'static [&'static str], c: BoxedStrategy<String>| {
                (a, op(ops), c).prop_map(|(a, o, c)| format!("({a} {o} {c})"))
            };
        let f1 = |name: &'static str, a: BoxedStrategy<String>| {
            a.prop_map(move |a| format!("{name}({a})"))
        };
        let f2 = |name: &'static str, a: BoxedStrategy<String>, c: BoxedStrategy<String>| {
            (a, c).prop_map(move |(a, c)| format!("{name}({a}, {c})"))
        };
        let cond = |t: BoxedStrategy<String>, b: BoxedStrategy<String>| {
            prop_oneof![
                (b, t.clone(), t.clone()).prop_map(|(c, x, y)| format!("if({c}, {x}, {y})")),
                (t.clone(), t).prop_map(|(x, y)| format!("coalesce({x}, {y})")),
            ]
        };
        const CMP: &[&str] = &["=", "!=", "<", "<=", ">", ">="];
        let integer = prop_oneof![
            level[0].clone(),
            bin(i.clone(), &["+", "-", "*"], i.clone()),
            i.clone().prop_map(|a| format!("(-{a})")),
            f1("abs", i.clone()),
            f1("len", tx.clone()),
            f2("days_between", dt.clone(), dt.clone()),
            f2("age_years", dt.clone(), dt.clone()),
            bin(dt.clone(), &["-"], dt.clone()),
            (
                prop::sample::select(vec!["year", "month", "day"]),
                prop_oneof![dt.clone(), p.clone(), dtm.clone()]
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
            f2("min", i.clone(), i.clone()),
            cond(i.clone(), b.clone()),
        ]
        .boxed();
        let decimal = prop_oneof![
            level[1].clone(),
            bin(num.clone().boxed(), &["+", "-", "*", "/"], d.clone()),
            bin(i.clone(), &["/"], i.clone()),
            f2(
                "round",
                num.clone().boxed(),
                prop::sample::select(vec!["0", "2", "-1", "16"])
                    .prop_map(String::from)
                    .boxed()
            ),
            f1("abs", d.clone()),
            f2("max", d.clone(), i.clone()),
            cond(d.clone(), b.clone()),
        ]
        .boxed();
        let boolean = prop_oneof![
            level[3].clone(),
            bin(num.clone().boxed(), CMP, num.clone().boxed()),
            bin(day.clone().boxed(), CMP, day.clone().boxed()),
            bin(tm.clone(), CMP, tm.clone()),
            bin(dtm.clone(), CMP, dtm.clone()),
            bin(tx.clone(), &["=", "!="], tx.clone()),
            bin(b.clone(), &["=", "!=", "and", "or"], b.clone()),
            b.clone().prop_map(|a| format!("(not {a})")),
            (day.clone(), any::<bool>(), day.clone(), day.clone()).prop_map(
                |(x, n, a, c)| format!("({x} {}in ({a}, {c}))", if n { "not " } else { "" })
            ),
            (tx.clone(), tx.clone()).prop_map(|(x, a)| format!("({x} in ({a}, \"F\"))")),
            (
                prop::sample::select(vec!["present", "blank"]),
                any_typed.clone()
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
        ]
        .boxed();
        let date = prop_oneof![
            level[4].clone(),
            f2("add_days", dt.clone(), i.clone()),
            f1("earliest", p.clone()),
            f1("latest", p.clone()),
            f1("date", dtm.clone()),
            f2("max", dt.clone(), dt.clone()),
            cond(dt.clone(), b.clone()),
        ]
        .boxed();
        level = vec![
            integer,
            decimal,
            prop_oneof![level[2].clone(), cond(tx, b.clone())].boxed(),
            boolean,
            date,
            prop_oneof![level[5].clone(), cond(day.boxed(), b.clone())].boxed(),
            prop_oneof![
                level[6].clone(),
                f2("min", tm.clone(), tm),
                cond(g(T::Time), b.clone())
            ]
            .boxed(),
            prop_oneof![level[7].clone(), cond(dtm, b)].boxed(),
        ];
    }
    level
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Type-directed generation: every expression must compile to its intended type (or
    /// PartialDate's wider form) and evaluate without an internal error on any values.
    #[test]
    fn generated_well_typed_expressions_compile_and_evaluate(
        (ty, src) in prop::sample::select((0..TYPES.len()).collect::<Vec<_>>())
            .prop_flat_map(|t| (Just(TYPES[t]), typed_sources(3)[t].clone())),
        vals in values(),
    ) {
        let c = CompiledExpression::compile("P", &src, &typed_schema)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        // A mix of dates and partial dates may come out as either.
        let date_ok = ty == ValueType::PartialDate && c.value_type() == ValueType::Date;
        prop_assert!(c.value_type() == ty || date_ok, "{src}: {} is not {ty}", c.value_type());
        let r = c.evaluate_value(&vals, &env());
        prop_assert!(!matches!(r, Err(EvalError::Internal(_))), "{src}: {r:?}");
        if let Ok(v) = r {
            prop_assert!(v.is_missing() || v.value_type() == Some(ty)
                || (ty == ValueType::PartialDate && v.value_type() == Some(ValueType::Date)),
                "{src}: {v:?} is not {ty}");
        }
    }
}

/// Numeric expressions over three integer and three decimal items, for the reference check.
#[derive(Clone, Debug)]
enum N {
    Int(i64),
    /// Hundredths, written as a two-decimal literal.
    Cents(u32),
    IntItem(usize),
    DecItem(usize),
    Neg(Box<N>),
    Bin(char, Box<N>, Box<N>),
}

fn numeric() -> impl Strategy<Value = N> {
    let leaf = prop_oneof![
        prop_oneof![0i64..20, 0i64..=i64::MAX].prop_map(N::Int),
        (0u32..100_000).prop_map(N::Cents),
        (0usize..3).prop_map(N::IntItem),
        (0usize..3).prop_map(N::DecItem),
    ];
    leaf.prop_recursive(5, 32, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|n| N::Neg(Box::new(n))),
            (
                prop::sample::select(vec!['+', '-', '*', '/']),
                inner.clone(),
                inner
            )
                .prop_map(|(op, a, b)| N::Bin(op, Box::new(a), Box::new(b))),
        ]
    })
}

/// Fully parenthesised source, so the test does not rely on the printer under test.
fn source(n: &N) -> String {
    match n {
        N::Int(i) => i.to_string(),
        N::Cents(c) => format!("{}.{:02}", c / 100, c % 100),
        N::IntItem(i) => format!("{{I{i}}}"),
        N::DecItem(i) => format!("{{D{i}}}"),
        N::Neg(x) => format!("(-{})", source(x)),
        N::Bin(op, a, b) => format!("({} {op} {})", source(a), source(b)),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum R {
    I(Option<i64>),
    D(Option<f64>),
}

fn as_f64(r: R) -> Option<f64> {
    match r {
        R::I(i) => i.map(|i| i as f64),
        R::D(d) => d,
    }
}

/// Reference semantics, written directly: operands left to right, a blank operand makes the
/// result blank, integers stay integers (exact, overflow is an error) unless a decimal or a
/// division is involved, decimals are f64 (division by zero and non-finite results are errors).
fn reference(n: &N, ints: &[Option<i64>; 3], decs: &[Option<f64>; 3]) -> Result<R, EvalError> {
    Ok(match n {
        N::Int(i) => R::I(Some(*i)),
        N::Cents(c) => R::D(Some(f64::from(*c) / 100.0)),
        N::IntItem(i) => R::I(ints[*i]),
        N::DecItem(i) => R::D(decs[*i]),
        N::Neg(x) => match reference(x, ints, decs)? {
            R::I(Some(i)) => R::I(Some(i.checked_neg().ok_or(EvalError::Overflow)?)),
            R::D(d) => R::D(d.map(|d| -d)),
            blank => blank,
        },
        N::Bin(op, a, b) => {
            let (ra, rb) = (reference(a, ints, decs)?, reference(b, ints, decs)?);
            match (ra, rb) {
                (R::I(x), R::I(y)) if *op != '/' => {
                    let (Some(x), Some(y)) = (x, y) else {
                        return Ok(R::I(None));
                    };
                    let (x, y) = (i128::from(x), i128::from(y));
                    let wide = match op {
                        '+' => x + y,
                        '-' => x - y,
                        _ => x * y,
                    };
                    R::I(Some(i64::try_from(wide).map_err(|_| EvalError::Overflow)?))
                }
                _ => {
                    let (Some(x), Some(y)) = (as_f64(ra), as_f64(rb)) else {
                        return Ok(R::D(None));
                    };
                    let v = match op {
                        '+' => x + y,
                        '-' => x - y,
                        '*' => x * y,
                        _ if y == 0.0 => return Err(EvalError::DivisionByZero),
                        _ => x / y,
                    };
                    if !v.is_finite() {
                        return Err(EvalError::Overflow);
                    }
                    R::D(Some(v))
                }
            }
        }
    })
}

fn numeric_form() -> Form {
    use ValueType as T;
    Form::new(&[
        ("{I0}", T::Integer),
        ("{I1}", T::Integer),
        ("{I2}", T::Integer),
        ("{D0}", T::Decimal),
        ("{D1}", T::Decimal),
        ("{D2}", T::Decimal),
    ])
}

fn int_value() -> impl Strategy<Value = Option<i64>> {
    prop::option::weighted(0.9, prop_oneof![-100i64..100, any::<i64>()])
}

fn dec_value() -> impl Strategy<Value = Option<f64>> {
    prop::option::weighted(
        0.9,
        prop_oneof![
            (-100_000i32..100_000).prop_map(|c| f64::from(c) / 100.0),
            -1e300f64..1e300
        ],
    )
}

fn item_values(ints: &[Option<i64>; 3], decs: &[Option<f64>; 3]) -> Vec<Value> {
    let i = ints
        .iter()
        .map(|v| v.map_or(Value::Missing, Value::Integer));
    let d = decs
        .iter()
        .map(|v| v.map_or(Value::Missing, Value::Decimal));
    i.chain(d).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arithmetic_agrees_with_reference(
        n in numeric(),
        ints in prop::array::uniform3(int_value()),
        decs in prop::array::uniform3(dec_value()),
    ) {
        let form = numeric_form();
        let src = source(&n);
        let c = CompiledExpression::compile("N", &src, &form).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = c.evaluate_value(&item_values(&ints, &decs), &env());
        let want = reference(&n, &ints, &decs).map(|r| match r {
            R::I(i) => i.map_or(Value::Missing, Value::Integer),
            R::D(d) => d.map_or(Value::Missing, Value::Decimal),
        });
        prop_assert_eq!(got, want, "{}", src);
        let static_type = match reference(&n, &[Some(1); 3], &[Some(1.0); 3]) {
            Ok(R::I(_)) => Some(ValueType::Integer),
            Ok(R::D(_)) => Some(ValueType::Decimal),
            Err(_) => None,
        };
        if let Some(t) = static_type {
            prop_assert_eq!(c.value_type(), t, "{}", src);
        }
    }

    #[test]
    fn comparisons_agree_with_reference(
        a in numeric(),
        b in numeric(),
        op in prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]),
        ints in prop::array::uniform3(int_value()),
        decs in prop::array::uniform3(dec_value()),
    ) {
        let form = numeric_form();
        let src = format!("{} {op} {}", source(&a), source(&b));
        let check = compile(&form, &src).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = check.evaluate(&item_values(&ints, &decs), &env());
        let want = (|| {
            let (ra, rb) = (reference(&a, &ints, &decs)?, reference(&b, &ints, &decs)?);
            let ord = match (ra, rb) {
                (R::I(Some(x)), R::I(Some(y))) => Some(x.cmp(&y)),
                (R::I(_), R::I(_)) => None,
                _ => match (as_f64(ra), as_f64(rb)) {
                    // The documented decimal rule: equal within 4 ulp-sized steps of the larger.
                    (Some(x), Some(y)) if (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()) => {
                        Some(std::cmp::Ordering::Equal)
                    }
                    (Some(x), Some(y)) => x.partial_cmp(&y),
                    _ => None,
                },
            };
            Ok(match ord {
                None => Outcome::NotApplicable,
                Some(o) => {
                    let holds = match op {
                        "=" => o.is_eq(),
                        "!=" => o.is_ne(),
                        "<" => o.is_lt(),
                        "<=" => o.is_le(),
                        ">" => o.is_gt(),
                        _ => o.is_ge(),
                    };
                    if holds { Outcome::Pass } else { Outcome::Fail }
                }
            })
        })();
        prop_assert_eq!(got, want, "{}", src);
    }
}
