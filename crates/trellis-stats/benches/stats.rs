//! Side-by-side benchmark: trellis-stats vs lifelines / statsmodels / pandas on the same data,
//! in the same run. `cargo bench -p trellis-stats --bench stats`
//!
//! Environment:
//! * `BENCH_N` rows (default 1,000,000).
//! * `BENCH_PYTHON` python with lifelines, statsmodels, pandas, pyreadstat (default
//!   /work/venv-stats/bin/python; set to `none` to skip the Python peers).
//! * `BENCH_SLOW=1` also runs statsmodels PHReg on continuous times (about 3 minutes at 1M) and
//!   the numpy MMRM reference at 100k subjects (design + BFGS only; about a minute).
//! * MMRM (`BENCH_ONLY=mmrm`): 5,000 subjects × 4 visits and 100,000 subjects × 4 visits with
//!   dropout (≈2.8 observed visits each, as in the research note's 280k-row anchor), unstructured
//!   covariance, treatment × visit and baseline × visit; the peer is
//!   `reference/mmrm_reference.py bench` (numpy/scipy) on the same data. Also 2,000 subjects × 10
//!   visits with dropout (55 covariance parameters, 40 fixed effects; no peer).
//! * Fisher's exact test on r×c tables (`BENCH_ONLY=fisher`): five fixed tables (see
//!   `fisher_tables`), p-value and work steps printed; no peer (scipy's `fisher_exact` is 2×2
//!   only), and the Python peers are not started for these tasks alone.
//!
//! Synthetic data as in shared/research/pv-and-stats.md B.3: 5 covariates (2 binary, 3 N(0,1)),
//! log-HR (0.5, −0.3, 0.2, 0, −0.1), exponential baseline, uniform(0, 5) censoring; day-tied
//! times are ceil(365.25 t). Rust timings are the median wall time of 3 runs (plus the mean
//! process CPU time per run, all threads, which is less sensitive to other load), Python peers a
//! single run (as in the research notes). Wall-clock is noisy on a shared machine.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;
use trellis_stats::data::{Column, Dataset};
use trellis_stats::survival::{ConfType, EventSpec, SurvSpec, Ties};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unif(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unif(), self.unif());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn make_data(n: usize) -> Dataset {
    let mut r = Rng(20261125);
    let beta = [0.5, -0.3, 0.2, 0.0, -0.1];
    let mut cols: Vec<Vec<f64>> = (0..5).map(|_| Vec::with_capacity(n)).collect();
    let (mut tday, mut tcont, mut ev) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut trt, mut site, mut base, mut y, mut resp, mut strat) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for _ in 0..n {
        let x = [
            (r.unif() < 0.5) as u8 as f64,
            (r.unif() < 0.3) as u8 as f64,
            r.normal(),
            r.normal(),
            r.normal(),
        ];
        let eta: f64 = x.iter().zip(&beta).map(|(a, b)| a * b).sum();
        let t = -r.unif().ln() / (0.3 * eta.exp());
        let c = 5.0 * r.unif();
        let tt = t.min(c);
        for j in 0..5 {
            cols[j].push(x[j]);
        }
        tcont.push(tt);
        tday.push((tt * 365.25).ceil());
        ev.push((t <= c) as u8 as f64);
        let g = (r.unif() * 3.0) as usize;
        let s = (r.unif() * 20.0) as usize;
        let b = 50.0 + 10.0 * r.normal();
        trt.push(["A", "B", "C"][g].to_string());
        site.push(format!("S{s:02}"));
        base.push(b);
        y.push(-1.5 * g as f64 + 0.1 * s as f64 + 0.4 * (b - 50.0) + 5.0 * r.normal());
        let p = 1.0
            / (1.0
                + (-(-0.4 + 0.5 * x[0] - 0.3 * x[1] + 0.2 * x[2] + 0.1 * x[3] - 0.1 * x[4])).exp());
        resp.push((r.unif() < p) as u8 as f64);
        strat.push((r.unif() * 4.0).floor() + 1.0);
    }
    let mut columns = vec![
        Column::numeric("T_DAY", tday),
        Column::numeric("T_CONT", tcont),
        Column::numeric("E", ev),
    ];
    for (j, c) in cols.into_iter().enumerate() {
        columns.push(Column::numeric(&format!("X{}", j + 1), c));
    }
    columns.push(Column::character("TRT", trt));
    columns.push(Column::character("SITE", site));
    columns.push(Column::numeric("BASE", base));
    columns.push(Column::numeric("Y", y));
    columns.push(Column::numeric("RESP", resp));
    columns.push(Column::numeric("STRAT", strat));
    Dataset {
        name: "BENCH".into(),
        columns,
        ..Default::default()
    }
}

/// Long repeated-measures data: 3 arms, `visits` visits ("Week 2", "Week 4", ...),
/// unstructured errors (for 4 visits the matrix of the reference fixtures; otherwise
/// heterogeneous variances with correlation 0.6^|j−k|); with `dropout`, monotone dropout
/// (for 4 visits ≈ 2.8 observed visits per subject) plus 5% intermittent gaps.
#[allow(clippy::needless_range_loop)] // index loops mirror the Cholesky formulas
fn make_mmrm_data(subjects: usize, visits: usize, dropout: bool) -> Dataset {
    let mut r = Rng(7 + subjects as u64 + visits as u64);
    let m = visits;
    let mut sigma = vec![vec![0.0f64; m]; m];
    for i in 0..m {
        for j in 0..m {
            sigma[i][j] = if m == 4 {
                [
                    [16.0, 8.0, 6.0, 5.0],
                    [8.0, 20.0, 11.0, 9.0],
                    [6.0, 11.0, 25.0, 15.0],
                    [5.0, 9.0, 15.0, 36.0],
                ][i][j]
            } else {
                let sd = |k: usize| 4.0 + 0.3 * k as f64;
                sd(i) * sd(j) * 0.6f64.powi(i.abs_diff(j) as i32)
            };
        }
    }
    let mut l = vec![vec![0.0f64; m]; m];
    for i in 0..m {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            l[i][j] = if i == j {
                (sigma[i][i] - s).sqrt()
            } else {
                (sigma[i][j] - s) / l[j][j]
            };
        }
    }
    let arms = ["Placebo", "Low", "High"];
    let (mut subj, mut trt, mut vis, mut base, mut chg) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..subjects {
        let a = (r.unif() * 3.0) as usize;
        let b = 50.0 + 8.0 * r.normal();
        let z: Vec<f64> = (0..m).map(|_| r.normal()).collect();
        let last = if dropout {
            let u = r.unif();
            if u < 0.15 {
                1.max(m / 4)
            } else if u < 0.3 {
                m / 2
            } else if u < 0.5 {
                3 * m / 4
            } else {
                m
            }
        } else {
            m
        };
        for v in 0..last {
            if v > 0 && r.unif() < 0.05 {
                continue;
            }
            let e: f64 = (0..=v).map(|k| l[v][k] * z[k]).sum();
            subj.push(format!("S{i:06}"));
            trt.push(arms[a].to_string());
            vis.push(format!("Week {}", 2 * (v + 1)));
            base.push(b);
            chg.push(
                -1.0 - 0.6 * v as f64
                    - 0.7 * a as f64 * (v + 1) as f64
                    - 0.15 * (b - 50.0) * (1.0 + 0.3 * v as f64)
                    + e,
            );
        }
    }
    Dataset {
        name: "ADMMRM".into(),
        columns: vec![
            Column::character("USUBJID", subj),
            Column::character("TRT01P", trt),
            Column::character("AVISIT", vis),
            Column::numeric("BASE", base),
            Column::numeric("CHG", chg),
        ],
        ..Default::default()
    }
}

/// Representative r×c tables: 3 arms × 4 response categories (n = 300), R's `Job`
/// satisfaction table from `?fisher.test` (4×4, n = 96), 2 arms × 6 categories (n = 600), a
/// sparse 5×5 (n = 72), and a 4×6 table with n = 995 that is too large for the default budget.
fn fisher_tables() -> Vec<(&'static str, Vec<Vec<u64>>)> {
    vec![
        (
            "fisher_rxc_3x4_n300",
            vec![
                vec![30, 35, 20, 15],
                vec![22, 33, 27, 18],
                vec![15, 28, 30, 27],
            ],
        ),
        (
            "fisher_rxc_4x4_job_n96",
            vec![
                vec![1, 3, 10, 6],
                vec![2, 3, 10, 7],
                vec![1, 6, 14, 12],
                vec![0, 1, 9, 11],
            ],
        ),
        (
            "fisher_rxc_2x6_n600",
            vec![vec![40, 60, 55, 50, 45, 50], vec![55, 50, 45, 50, 50, 50]],
        ),
        (
            "fisher_rxc_5x5_n72",
            vec![
                vec![5, 2, 1, 0, 3],
                vec![1, 4, 2, 3, 1],
                vec![2, 2, 6, 1, 2],
                vec![0, 3, 2, 7, 4],
                vec![3, 1, 4, 2, 11],
            ],
        ),
        (
            "fisher_rxc_4x6_n995",
            vec![
                vec![40, 45, 38, 42, 41, 44],
                vec![39, 44, 40, 43, 42, 40],
                vec![41, 40, 43, 39, 45, 42],
                vec![42, 41, 39, 44, 40, 41],
            ],
        ),
    ]
}

fn wanted(task: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |o| o.split(',').any(|p| task.starts_with(p)))
}

/// Process CPU time (user + system, all threads) in seconds, from /proc (Linux; 10 ms ticks).
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / 100.0)
}

thread_local! {
    static LAST_CPU: std::cell::Cell<f64> = const { std::cell::Cell::new(f64::NAN) };
}

/// Median wall time of `runs` runs; the mean CPU time per run is kept for the report.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut ts = Vec::new();
    let mut last = None;
    let c0 = cpu_seconds();
    for _ in 0..runs {
        let t0 = Instant::now();
        let v = f();
        ts.push(t0.elapsed().as_secs_f64());
        last = Some(v);
    }
    let cpu = match (c0, cpu_seconds()) {
        (Some(a), Some(b)) => (b - a) / runs as f64,
        _ => f64::NAN,
    };
    LAST_CPU.with(|c| c.set(cpu));
    ts.sort_by(f64::total_cmp);
    (ts[ts.len() / 2], last.expect("runs >= 1"))
}

fn last_cpu() -> f64 {
    LAST_CPU.with(|c| c.get())
}

fn surv(time: &str, by: Option<&str>, strata: Option<&str>, cov: &[&str]) -> SurvSpec {
    SurvSpec {
        time: time.into(),
        event: EventSpec::Event("E".into()),
        by: by.map(String::from),
        strata: strata.map(String::from),
        covariates: cov.iter().map(|s| s.to_string()).collect(),
        reference: vec![],
        factors: vec![],
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let py = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "/work/venv-stats/bin/python".into());
    let slow = std::env::var("BENCH_SLOW").is_ok_and(|v| v == "1");
    println!(
        "trellis-stats benchmark: n = {n}, {} threads available",
        std::thread::available_parallelism().map_or(1, |v| v.get())
    );
    let ds = make_data(n);
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("bench.csv");
    trellis_stats::data::write_csv(
        std::io::BufWriter::new(std::fs::File::create(&csv).expect("csv")),
        &ds,
    )
    .expect("write csv");
    // 20-column XPORT file: the 14 columns above plus 6 derived numeric ones
    let mut wide = ds.clone();
    for k in 0..6 {
        let v: Vec<f64> = wide
            .numeric("BASE")
            .expect("BASE")
            .iter()
            .map(|b| b * (k + 2) as f64 + 0.25)
            .collect();
        wide.columns.push(Column::numeric(&format!("D{k}"), v));
    }
    let xpt = dir.path().join("bench.xpt");
    trellis_stats::xport::write_xport(
        std::io::BufWriter::new(std::fs::File::create(&xpt).expect("xpt")),
        &[&wide],
    )
    .expect("write xpt");

    let cov5 = ["X1", "X2", "X3", "X4", "X5"];
    let mut rust: BTreeMap<&str, f64> = BTreeMap::new();
    let mut notes: BTreeMap<&str, String> = BTreeMap::new();
    let mut cpu: BTreeMap<&str, f64> = BTreeMap::new();

    if wanted("cox_efron_tied") {
        let (t, fit) = time(3, || {
            trellis_stats::survival::cox_analysis(
                &ds,
                &surv("T_DAY", None, None, &cov5),
                Ties::Efron,
                0.05,
            )
            .expect("cox")
        });
        rust.insert("cox_efron_tied", t);
        cpu.insert("cox_efron_tied", last_cpu());
        notes.insert(
            "cox_efron_tied",
            format!(
                "beta1 {:.6}, {} iterations",
                fit.coefficients[0].estimate, fit.iterations
            ),
        );
    }
    if wanted("cox_breslow_tied") {
        let (t, _) = time(3, || {
            trellis_stats::survival::cox_analysis(
                &ds,
                &surv("T_DAY", None, None, &cov5),
                Ties::Breslow,
                0.05,
            )
            .expect("cox")
        });
        rust.insert("cox_breslow_tied", t);
        cpu.insert("cox_breslow_tied", last_cpu());
    }
    if wanted("cox_efron_tied_4strata") {
        let (t, _) = time(3, || {
            trellis_stats::survival::cox_analysis(
                &ds,
                &surv("T_DAY", None, Some("STRAT"), &cov5),
                Ties::Efron,
                0.05,
            )
            .expect("cox")
        });
        rust.insert("cox_efron_tied_4strata", t);
        cpu.insert("cox_efron_tied_4strata", last_cpu());
    }
    if wanted("cox_efron_continuous") {
        let (t, fit) = time(3, || {
            trellis_stats::survival::cox_analysis(
                &ds,
                &surv("T_CONT", None, None, &cov5),
                Ties::Efron,
                0.05,
            )
            .expect("cox")
        });
        rust.insert("cox_efron_continuous", t);
        cpu.insert("cox_efron_continuous", last_cpu());
        notes.insert(
            "cox_efron_continuous",
            format!("beta1 {:.6}", fit.coefficients[0].estimate),
        );
    }
    if wanted("km_tied") {
        let (t, _) = time(3, || {
            trellis_stats::survival::km_analysis(
                &ds,
                &surv("T_DAY", None, None, &[]),
                ConfType::LogLog,
                0.05,
                &[],
            )
            .expect("km")
        });
        rust.insert("km_tied", t);
        cpu.insert("km_tied", last_cpu());
    }
    if wanted("km_continuous") {
        let (t, _) = time(3, || {
            trellis_stats::survival::km_analysis(
                &ds,
                &surv("T_CONT", None, None, &[]),
                ConfType::LogLog,
                0.05,
                &[],
            )
            .expect("km")
        });
        rust.insert("km_continuous", t);
        cpu.insert("km_continuous", last_cpu());
    }
    if wanted("km_plus_logrank_2groups") {
        let (t, k) = time(3, || {
            trellis_stats::survival::km_analysis(
                &ds,
                &surv("T_DAY", Some("X1"), None, &[]),
                ConfType::LogLog,
                0.05,
                &[],
            )
            .expect("km")
        });
        rust.insert("km_plus_logrank_2groups", t);
        cpu.insert("km_plus_logrank_2groups", last_cpu());
        notes.insert(
            "km_plus_logrank_2groups",
            format!(
                "chisq {:.7}",
                k.logrank.as_ref().map_or(f64::NAN, |l| l.chisq)
            ),
        );
    }
    if wanted("logrank_2groups") {
        let (t, l) = time(3, || {
            trellis_stats::survival::logrank_analysis(&ds, &surv("T_DAY", Some("X1"), None, &[]))
                .expect("logrank")
        });
        rust.insert("logrank_2groups", t);
        cpu.insert("logrank_2groups", last_cpu());
        notes.insert("logrank_2groups", format!("chisq {:.7}", l.chisq));
    }
    if wanted("logrank_stratified") {
        let (t, l) = time(3, || {
            trellis_stats::survival::logrank_analysis(
                &ds,
                &surv("T_DAY", Some("X1"), Some("STRAT"), &[]),
            )
            .expect("logrank")
        });
        rust.insert("logrank_stratified", t);
        cpu.insert("logrank_stratified", last_cpu());
        notes.insert("logrank_stratified", format!("chisq {:.7}", l.chisq));
    }
    if wanted("km_plus_logrank_stratified") {
        let (t, k) = time(3, || {
            trellis_stats::survival::km_analysis(
                &ds,
                &surv("T_DAY", Some("X1"), Some("STRAT"), &[]),
                ConfType::LogLog,
                0.05,
                &[],
            )
            .expect("km")
        });
        rust.insert("km_plus_logrank_stratified", t);
        cpu.insert("km_plus_logrank_stratified", last_cpu());
        notes.insert(
            "km_plus_logrank_stratified",
            format!(
                "chisq {:.7}",
                k.logrank.as_ref().map_or(f64::NAN, |l| l.chisq)
            ),
        );
    }
    let spec = trellis_stats::linear::LinearSpec {
        response: "Y".into(),
        treatment: "TRT".into(),
        covariates: vec!["SITE".into(), "BASE".into()],
        factors: vec![],
    };
    if wanted("ancova_type3") {
        let (t, a) = time(3, || {
            trellis_stats::linear::ancova(&ds, &spec, 0.05).expect("ancova")
        });
        rust.insert("ancova_type3", t);
        cpu.insert("ancova_type3", last_cpu());
        notes.insert("ancova_type3", format!("F(TRT) {:.6}", a.type3[1].f));
    }
    let cov5s: Vec<String> = cov5.iter().map(|s| s.to_string()).collect();
    if wanted("logistic_6_params") {
        let (t, l) = time(3, || {
            trellis_stats::linear::logistic(&ds, "RESP", None, &cov5s, &[], &[], 0.05)
                .expect("logit")
        });
        rust.insert("logistic_6_params", t);
        cpu.insert("logistic_6_params", last_cpu());
        notes.insert(
            "logistic_6_params",
            format!("beta1 {:.6}", l.coefficients[1].estimate),
        );
    }
    if wanted("xport_read_1m_x20") {
        let (t, rd) = time(3, || Dataset::load(&xpt).expect("read xpt"));
        rust.insert("xport_read_1m_x20", t);
        cpu.insert("xport_read_1m_x20", last_cpu());
        notes.insert(
            "xport_read_1m_x20",
            format!(
                "{} rows x {} cols, {:.0} MB",
                rd.nrows(),
                rd.columns.len(),
                std::fs::metadata(&xpt).map_or(0, |m| m.len()) as f64 / 1e6
            ),
        );
    }
    if wanted("xport_write_1m_x20") {
        let (t, _) = time(3, || {
            let mut sink = std::io::sink();
            trellis_stats::xport::write_xport(&mut sink, &[&wide]).expect("write");
        });
        rust.insert("xport_write_1m_x20", t);
        cpu.insert("xport_write_1m_x20", last_cpu());
    }

    // Fisher's exact test on r×c tables (no Python peer: scipy's fisher_exact is 2×2 only).
    for (task, table) in fisher_tables() {
        if !wanted(task) {
            continue;
        }
        let (t, res) = time(3, || trellis_stats::exact::fisher_exact_rxc(&table));
        rust.insert(task, t);
        cpu.insert(task, last_cpu());
        notes.insert(
            task,
            match res {
                Ok(f) => format!(
                    "p = {:.10}, P(table) = {:.4e}, {} steps",
                    f.p_two_sided, f.table_probability, f.steps
                ),
                Err(e) => format!("refused: {e}"),
            },
        );
    }
    let mmrm_spec = trellis_stats::mmrm::MmrmSpec {
        response: "CHG".into(),
        subject: "USUBJID".into(),
        visit: "AVISIT".into(),
        treatment: "TRT01P".into(),
        reference: Some("Placebo".into()),
        covariates: vec!["BASE".into()],
        visit_by_covariate: true,
        ..Default::default()
    };
    let mut peers: BTreeMap<String, f64> = BTreeMap::new();
    for (task, subjects, visits, dropout, runs) in [
        ("mmrm_us_5k_subjects", 5_000usize, 4usize, false, 3usize),
        ("mmrm_us_100k_subjects", 100_000, 4, true, 3),
        // 10 visits: 55 covariance parameters, 40 fixed effects, many missing-visit patterns
        ("mmrm_us_10_visits_2k_subjects", 2_000, 10, true, 3),
    ] {
        if !wanted(task) {
            continue;
        }
        let d = make_mmrm_data(subjects, visits, dropout);
        let (t, fit) = time(runs, || {
            trellis_stats::mmrm::mmrm(&d, &mmrm_spec, 0.05).expect("mmrm")
        });
        rust.insert(task, t);
        cpu.insert(task, last_cpu());
        notes.insert(
            task,
            format!(
                "{} obs, deviance {:.6}, {} Newton iterations, High-Placebo at Week 12 {:.6} (df {:.2})",
                fit.n_obs,
                fit.deviance,
                fit.iterations,
                fit.diffs.last().map_or(f64::NAN, |x| x.estimate),
                fit.diffs.last().map_or(f64::NAN, |x| x.df)
            ),
        );
        // the numpy reference's numerical Hessians are far too slow for 55 parameters
        let run_py = py != "none"
            && std::path::Path::new(&py).exists()
            && visits == 4
            && (subjects <= 10_000 || slow);
        if run_py {
            let path = dir.path().join(format!("{task}.csv"));
            trellis_stats::data::write_csv(
                std::io::BufWriter::new(std::fs::File::create(&path).expect("csv")),
                &d,
            )
            .expect("write csv");
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("reference/mmrm_reference.py");
            println!("running the numpy MMRM reference on {task} ...");
            // the full reference (Newton polish, numerical Satterthwaite) only at 5k subjects;
            // at 100k design + BFGS only, the research note's anchor
            let mode = if subjects <= 10_000 {
                "full"
            } else {
                "fit-only"
            };
            match std::process::Command::new(&py)
                .arg(&script)
                .arg("bench")
                .arg(&path)
                .arg(mode)
                .output()
            {
                Ok(o) if o.status.success() => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&o.stdout).unwrap_or_default();
                    if let Some(sec) = v["seconds"].as_f64() {
                        peers.insert(format!("numpy_reference_{task}"), sec);
                    }
                    if let Some(sec) = v["fit_seconds"].as_f64() {
                        peers.insert(format!("numpy_bfgs_only_{task}"), sec);
                    }
                    if let Some(dv) = v["deviance"].as_f64() {
                        peers.insert(format!("check_{task}_deviance_numpy"), dv);
                    }
                }
                Ok(o) => println!("numpy MMRM failed: {}", String::from_utf8_lossy(&o.stderr)),
                Err(e) => println!("numpy MMRM not run: {e}"),
            }
        }
    }
    let others = rust
        .keys()
        .any(|k| !k.starts_with("mmrm") && !k.starts_with("fisher"));
    if others && py != "none" && std::path::Path::new(&py).exists() {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/bench_peers.py");
        println!("running Python peers ({py}) ...");
        let out = std::process::Command::new(&py)
            .arg(&script)
            .arg(&csv)
            .arg(&xpt)
            .arg(if slow { "slow" } else { "fast" })
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                if let Some(m) = v.as_object() {
                    for (k, x) in m {
                        if let Some(t) = x.as_f64() {
                            peers.insert(k.clone(), t);
                        }
                    }
                }
            }
            Ok(o) => println!(
                "python peers failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => println!("python peers not run: {e}"),
        }
    } else if others {
        println!("Python peers skipped (BENCH_PYTHON={py})");
    }
    let pairs: &[(&str, &[&str])] = &[
        (
            "cox_efron_tied",
            &["lifelines_cox_efron_tied", "statsmodels_cox_efron_tied"],
        ),
        ("cox_breslow_tied", &["statsmodels_cox_breslow_tied"]),
        (
            "cox_efron_tied_4strata",
            &["statsmodels_cox_efron_tied_4strata"],
        ),
        (
            "cox_efron_continuous",
            &[
                "lifelines_cox_efron_continuous",
                "statsmodels_cox_efron_continuous",
            ],
        ),
        ("km_tied", &["lifelines_km_tied", "statsmodels_km_tied"]),
        (
            "km_continuous",
            &["lifelines_km_continuous", "statsmodels_km_continuous"],
        ),
        (
            "km_plus_logrank_2groups",
            &["lifelines_logrank_2groups", "statsmodels_logrank_2groups"],
        ),
        (
            "logrank_2groups",
            &["lifelines_logrank_2groups", "statsmodels_logrank_2groups"],
        ),
        ("logrank_stratified", &["statsmodels_logrank_stratified"]),
        (
            "km_plus_logrank_stratified",
            &["statsmodels_logrank_stratified"],
        ),
        ("ancova_type3", &["statsmodels_ancova_type3"]),
        ("logistic_6_params", &["statsmodels_logit_newton"]),
        (
            "xport_read_1m_x20",
            &["pandas_read_sas_xport", "pyreadstat_read_xport"],
        ),
        ("xport_write_1m_x20", &["pyreadstat_write_xport"]),
        (
            "mmrm_us_5k_subjects",
            &[
                "numpy_reference_mmrm_us_5k_subjects",
                "numpy_bfgs_only_mmrm_us_5k_subjects",
            ],
        ),
        (
            "mmrm_us_100k_subjects",
            &[
                "numpy_reference_mmrm_us_100k_subjects",
                "numpy_bfgs_only_mmrm_us_100k_subjects",
            ],
        ),
        ("mmrm_us_10_visits_2k_subjects", &["(no peer)"]),
        ("fisher_rxc_3x4_n300", &["(no r×c peer: scipy is 2×2 only)"]),
        (
            "fisher_rxc_4x4_job_n96",
            &["(no r×c peer: scipy is 2×2 only)"],
        ),
        ("fisher_rxc_2x6_n600", &["(no r×c peer: scipy is 2×2 only)"]),
        ("fisher_rxc_5x5_n72", &["(no r×c peer: scipy is 2×2 only)"]),
        ("fisher_rxc_4x6_n995", &["(no r×c peer: scipy is 2×2 only)"]),
    ];
    let mut so = std::io::stdout().lock();
    let _ = writeln!(
        so,
        "\n{:<28} {:>10} {:>8}   {:<38} {:>10} {:>9}",
        "task", "trellis s", "cpu s", "peer", "peer s", "speed-up"
    );
    for (task, ps) in pairs {
        let Some(rt) = rust.get(task).copied() else {
            continue; // not run (BENCH_ONLY)
        };
        let mut first = true;
        for p in ps.iter() {
            let ct = cpu.get(task).copied().unwrap_or(f64::NAN);
            let lead = if first {
                format!("{task:<28} {rt:>10.4} {ct:>8.3}")
            } else {
                format!("{:<28} {:>10} {:>8}", "", "", "")
            };
            first = false;
            match peers.get(*p) {
                Some(pt) => {
                    let _ = writeln!(so, "{lead}   {p:<38} {pt:>10.3} {:>8.1}x", pt / rt);
                }
                None => {
                    let _ = writeln!(so, "{lead}   {p:<38} {:>10} {:>9}", "-", "-");
                }
            }
        }
        if let Some(nt) = notes.get(task) {
            let _ = writeln!(so, "{:<28} {:>10} {:>8}   ({nt})", "", "", "");
        }
    }
    for (k, v) in &peers {
        if k.starts_with("check_") {
            let _ = writeln!(so, "peer {k}: {v}");
        }
    }
}
