//! Edit-check evaluation rate on one core: 10 typical checks on a 20-item vital-signs and
//! demographics form, evaluated over 64 varied records (values in range, out of range,
//! blank). Target: at least 1,000,000 check evaluations per second.
//!
//! `cargo bench -p trellis-checks --bench checks` prints the rate beside the target, then
//! criterion's figures. Wall-clock figures are noisy on a shared machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use trellis_checks::{
    CheckDef, CompiledCheck, Env, ItemRef, Outcome, Schema, Severity, Slot, Value, ValueType,
};

const TARGET_PER_SECOND: f64 = 1_000_000.0;

const ITEMS: [(&str, ValueType); 20] = [
    ("{I.SYSBP}", ValueType::Integer),
    ("{I.DIABP}", ValueType::Integer),
    ("{I.PULSE}", ValueType::Integer),
    ("{I.RESP}", ValueType::Integer),
    ("{I.TEMP}", ValueType::Decimal),
    ("{I.WEIGHT}", ValueType::Decimal),
    ("{I.HEIGHT}", ValueType::Decimal),
    ("{I.VSDAT}", ValueType::Date),
    ("{I.VSTIM}", ValueType::Time),
    ("{F.DM/I.BRTHDAT}", ValueType::PartialDate),
    ("{F.DM/I.SEX}", ValueType::Text),
    ("{I.PREG}", ValueType::Text),
    ("{I.VSPERF}", ValueType::Boolean),
    ("{F.DM/I.RACE}", ValueType::Text),
    ("{F.DM/I.CONSDAT}", ValueType::Date),
    ("{I.AEYN}", ValueType::Boolean),
    ("{I.AETERM}", ValueType::Text),
    ("{I.AESTDAT}", ValueType::PartialDate),
    ("{I.AEENDAT}", ValueType::PartialDate),
    ("{SE.SCREEN/F.VS/I.WEIGHT}", ValueType::Decimal),
];

const CHECKS: [(&str, &str); 10] = [
    ("SYSBP_RANGE", "{I.SYSBP} >= 60 and {I.SYSBP} <= 250"),
    ("BP_ORDER", "{I.DIABP} < {I.SYSBP}"),
    ("TEMP_RANGE", "{I.TEMP} >= 35.0 and {I.TEMP} <= 42.0"),
    ("PREG_REQ", "{F.DM/I.SEX} != \"F\" or present({I.PREG})"),
    ("SEX_CODE", "{F.DM/I.SEX} in (\"M\", \"F\", \"U\")"),
    ("VS_AFTER_CONSENT", "{I.VSDAT} >= {F.DM/I.CONSDAT}"),
    (
        "SCREEN_WINDOW",
        "days_between({F.DM/I.CONSDAT}, {I.VSDAT}) <= 28",
    ),
    (
        "ADULT",
        "age_years(earliest({F.DM/I.BRTHDAT}), {I.VSDAT}) >= 18",
    ),
    ("AE_END_AFTER_START", "{I.AEENDAT} >= {I.AESTDAT}"),
    (
        "WEIGHT_CHANGE",
        "{SE.SCREEN/F.VS/I.WEIGHT} > 0 and abs({I.WEIGHT} - {SE.SCREEN/F.VS/I.WEIGHT}) / {SE.SCREEN/F.VS/I.WEIGHT} <= 0.1",
    ),
];

struct Form;

impl Schema for Form {
    fn resolve(&self, item: &ItemRef) -> Option<(Slot, ValueType)> {
        let name = item.to_string();
        let i = ITEMS.iter().position(|(n, _)| *n == name)?;
        Some((Slot(i as u32), ITEMS[i].1))
    }
}

/// Deterministic generator for varied records.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// One save's item values in ODM string form: mostly plausible, sometimes out of range or blank.
fn record(r: &mut Rng) -> Vec<String> {
    let mut pick = |opts: &[&str]| opts[r.below(opts.len() as u64) as usize].to_string();
    let mut fields = vec![
        pick(&["120", "135", "98", "260", ""]),
        pick(&["80", "85", "140", ""]),
        pick(&["72", "64"]),
        pick(&["16", "14"]),
        pick(&["36.6", "37.5", "42.5", ""]),
        pick(&["70.5", "82", "95.25"]),
        pick(&["175", "162.5"]),
        pick(&["2024-03-05", "2024-04-20", "2024-02-01"]),
        pick(&["08:30", "14:05:10"]),
        pick(&["1980", "UN-MAR-2006", "12-JUN-1975", ""]),
        pick(&["M", "F", "X"]),
        pick(&["N", "", ""]),
        pick(&["true", "false"]),
        pick(&["WHITE", "ASIAN", ""]),
        pick(&["2024-02-20", "2024-03-01"]),
        pick(&["true", "false"]),
        pick(&["Headache", ""]),
        pick(&["2024-03", "2024", "2024-03-02"]),
        pick(&["2024-03-10", "2024-02", ""]),
        pick(&["71", "80", "0"]),
    ];
    fields.truncate(ITEMS.len());
    fields
}

fn parse_record(fields: &[String]) -> Vec<Value> {
    ITEMS
        .iter()
        .zip(fields)
        .map(|((_, ty), s)| Value::parse(*ty, s).unwrap_or_else(|e| panic!("bench data: {e}")))
        .collect()
}

fn compile_all() -> Vec<CompiledCheck> {
    CHECKS
        .iter()
        .map(|(id, src)| {
            CheckDef {
                id: (*id).into(),
                severity: Severity::Soft,
                expression: (*src).into(),
                message: format!("{id} failed"),
                targets: vec![],
            }
            .compile(&Form)
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

fn run_all(checks: &[CompiledCheck], records: &[Vec<Value>], env: &Env) -> [u64; 3] {
    let mut counts = [0u64; 3];
    for values in records {
        for c in checks {
            match c.evaluate(black_box(values), env) {
                Ok(Outcome::Pass) => counts[0] += 1,
                Ok(Outcome::Fail) => counts[1] += 1,
                Ok(Outcome::NotApplicable) => counts[2] += 1,
                Err(e) => panic!("{}: {e}", c.id()),
            }
        }
    }
    counts
}

/// Times `f` (which performs `per_call` operations) for about `budget`; operations per second.
fn rate(budget: Duration, per_call: u64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        f();
        calls += 1;
    }
    (calls * per_call) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let env = Env {
        today: jiff::civil::date(2024, 6, 15),
    };
    let mut rng = Rng(20_261_125);
    let raw: Vec<Vec<String>> = (0..64).map(|_| record(&mut rng)).collect();
    let records: Vec<Vec<Value>> = raw.iter().map(|r| parse_record(r)).collect();
    let checks = compile_all();
    let per_pass = (records.len() * checks.len()) as u64;

    // `cargo bench` passes --bench; `cargo test --benches` does not, and only smoke-tests.
    let measuring = std::env::args().any(|a| a == "--bench");
    if measuring {
        let counts = run_all(&checks, &records, &env);
        println!(
            "trellis-checks: {} checks x {} records: {} pass, {} fail, {} not applicable",
            checks.len(),
            records.len(),
            counts[0],
            counts[1],
            counts[2]
        );
        let evals = rate(Duration::from_secs(3), per_pass, || {
            black_box(run_all(&checks, &records, &env));
        });
        let verdict = if evals >= TARGET_PER_SECOND {
            "meets"
        } else {
            "BELOW"
        };
        println!(
            "check evaluations per second (one core): {:>12.0}   target {:>12.0}   {verdict} target ({:.1}x)",
            evals,
            TARGET_PER_SECOND,
            evals / TARGET_PER_SECOND
        );
        let saves = rate(Duration::from_secs(2), records.len() as u64, || {
            for r in &raw {
                black_box(parse_record(black_box(r)));
            }
        });
        println!("saves parsed per second (20 ODM strings each):   {saves:>12.0}");
        let builds = rate(Duration::from_secs(1), CHECKS.len() as u64, || {
            black_box(compile_all());
        });
        println!("checks compiled per second:                       {builds:>12.0}");
    } else {
        let counts = run_all(&checks, &records, &env);
        assert_eq!(counts.iter().sum::<u64>(), per_pass);
    }

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("evaluate 10 checks x 64 records", |b| {
        b.iter(|| run_all(&checks, &records, &env))
    });
    c.bench_function("parse 20 item values (one save)", |b| {
        b.iter(|| parse_record(black_box(&raw[0])))
    });
    c.final_summary();
}
