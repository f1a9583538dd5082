//! End-to-end run: read → count → measures → prior fit → posterior → write.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::count::{Convention, PairTable, count_pairs};
use crate::data::Dataset;
use crate::error::Result;
use crate::faers::{FaersOptions, read_faers};
use crate::measures::IcTable;
use crate::mgps::{
    DEFAULT_STARTS, FitPoint, FitResult, InverseHessian, PosteriorCalc, Prior, auto_squash,
    auto_squash_owned, fit_prior, fit_prior_from,
};
use crate::output::{RowCalc, WriteSummary, prior_path, write_prior, write_results};
use crate::pairs_csv::{CsvOptions, read_pairs_csv};

/// Input source.
#[derive(Debug, Clone)]
pub enum Input {
    Faers {
        paths: Vec<PathBuf>,
        options: FaersOptions,
    },
    Pairs {
        path: PathBuf,
        options: CsvOptions,
    },
}

/// Data squashing before the prior fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Squash {
    /// No squashing: every pair is a point.
    Off,
    /// openEBGM `autoSquash` defaults.
    Auto,
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub input: Input,
    pub out: PathBuf,
    pub html: Option<PathBuf>,
    pub convention: Convention,
    pub continuity: Option<f64>,
    /// N*: minimum count used by the truncated likelihood.
    pub min_count: u32,
    pub squash: Squash,
    pub starts: Vec<Prior>,
    /// Use this prior instead of fitting one.
    pub fixed_prior: Option<Prior>,
    pub progress: bool,
}

impl RunConfig {
    pub fn new(input: Input, out: PathBuf) -> Self {
        RunConfig {
            input,
            out,
            html: None,
            convention: Convention::ReportBased,
            continuity: None,
            min_count: 1,
            squash: Squash::Auto,
            starts: DEFAULT_STARTS.to_vec(),
            fixed_prior: None,
            progress: false,
        }
    }
}

/// Timings and sizes of a run.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub n_reports: usize,
    pub n_drugs: usize,
    pub n_events: usize,
    pub n_strata: usize,
    pub n_pairs: usize,
    pub n_total: u64,
    pub fit: Option<FitResult>,
    pub prior: Option<Prior>,
    pub write: WriteSummary,
    pub timings: Vec<(&'static str, Duration)>,
    /// CPU time (user + system, all threads) of each stage in `timings`,
    /// where the platform reports it: on a shared machine the wall-clock
    /// figures vary, this one much less.
    pub cpu_timings: Vec<Option<Duration>>,
    pub notes: Vec<String>,
    pub malformed: u64,
    pub malformed_examples: Vec<String>,
}

impl RunSummary {
    /// One line per stage: its name padded to `width`, wall-clock seconds
    /// and, where known, CPU seconds.
    pub fn stage_lines(&self, width: usize) -> Vec<String> {
        self.timings
            .iter()
            .enumerate()
            .map(|(i, (name, t))| {
                let wall = format!("{name:<width$} {:>9.3} s", t.as_secs_f64());
                match self.cpu_timings.get(i).copied().flatten() {
                    Some(cpu) => format!("{wall}  (CPU {:.2} s)", cpu.as_secs_f64()),
                    None => wall,
                }
            })
            .collect()
    }
}

pub(crate) fn bytes_bar(show: bool, total: u64, msg: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>16} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

pub(crate) fn count_bar(show: bool, total: u64, msg: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>16} [{bar:40}] {human_pos}/{human_len} ({eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

/// CPU time of the whole process so far (user + system, every thread),
/// from `/proc/self/stat` in clock ticks of 1/100 s.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at `)`.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_ascii_whitespace();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after `)`.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Wall-clock and CPU time of one stage.
struct Stage {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Stage {
    fn start() -> Stage {
        Stage {
            wall: Instant::now(),
            cpu: process_cpu_time(),
        }
    }

    fn record(self, summary: &mut RunSummary, name: &'static str) {
        summary.timings.push((name, self.wall.elapsed()));
        let cpu = match (self.cpu, process_cpu_time()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        summary.cpu_timings.push(cpu);
    }
}

/// Reads the configured input.
pub fn read_input(input: &Input, progress: bool) -> Result<Dataset> {
    match input {
        Input::Faers { paths, options } => read_faers(paths, options, progress),
        Input::Pairs { path, options } => read_pairs_csv(path, options),
    }
}

/// Unsquashed fits on more points than this are warm-started from the
/// squashed fit of each start.
pub const WARM_START_MIN_POINTS: usize = 20_000;

/// Points for the prior fit: all pairs with `a >= n_star`, optionally squashed.
pub fn fit_points(table: &PairTable, n_star: u32, squash: Squash) -> Vec<FitPoint> {
    let points: Vec<FitPoint> = table
        .a
        .iter()
        .zip(&table.expected)
        .filter(|(a, _)| **a >= n_star)
        .map(|(&a, &e)| FitPoint { n: a, e, w: 1.0 })
        .collect();
    match squash {
        Squash::Off => points,
        Squash::Auto => auto_squash_owned(points),
    }
}

/// Computes everything from a dataset already read.
pub fn run_dataset(ds: &Dataset, cfg: &RunConfig, summary: &mut RunSummary) -> Result<()> {
    let t = Stage::start();
    let bar = count_bar(cfg.progress, ds.drug_names.len() as u64, "counting");
    let table = count_pairs(ds, cfg.convention, &|n| bar.inc(n));
    bar.finish_and_clear();
    t.record(summary, "count pairs + expected");
    summary.n_reports = ds.n_reports;
    summary.n_drugs = ds.drug_names.len();
    summary.n_events = ds.event_names.len();
    summary.n_strata = table.n_strata;
    summary.n_pairs = table.len();
    summary.n_total = table.n_total;

    let t = Stage::start();
    let (prior, fit) = match cfg.fixed_prior {
        Some(p) => (p, None),
        None => {
            let points = fit_points(&table, cfg.min_count, cfg.squash);
            let bar = count_bar(cfg.progress, cfg.starts.len() as u64, "fitting prior");
            let fit = if cfg.squash == Squash::Off && points.len() > WARM_START_MIN_POINTS {
                // Each start is first run on the squashed points (cheap), and
                // the unsquashed likelihood is then maximized from there: same
                // maximum, far fewer iterations on the full data.
                let pre = fit_prior(&auto_squash(&points), cfg.min_count, &cfg.starts, &|| {})?;
                let warm: Vec<(Prior, Option<InverseHessian>)> = pre
                    .starts
                    .iter()
                    .map(|r| {
                        if r.in_bounds {
                            (r.estimate, Some(r.inverse_hessian))
                        } else {
                            (r.start, None)
                        }
                    })
                    .collect();
                let mut fit = fit_prior_from(&points, cfg.min_count, &warm, &|| bar.inc(1))?;
                for (r, s) in fit.starts.iter_mut().zip(&cfg.starts) {
                    r.start = *s;
                }
                fit
            } else {
                fit_prior(&points, cfg.min_count, &cfg.starts, &|| bar.inc(1))?
            };
            bar.finish_and_clear();
            (fit.prior, Some(fit))
        }
    };
    t.record(summary, "prior fit");

    let t = Stage::start();
    let ic = IcTable::new(&table.a);
    let post =
        PosteriorCalc::for_counts(prior, &table.a).with_start_grids(&table.a, &table.expected);
    t.record(summary, "IC and posterior start tables");
    let t = Stage::start();
    let calc = RowCalc::new(&table, &ic, &post, cfg.continuity);
    let bar = count_bar(cfg.progress, table.len() as u64, "measures+write");
    summary.write = write_results(
        &cfg.out,
        &calc,
        &ds.drug_names,
        &ds.event_names,
        2000,
        &|n| bar.inc(n),
    )?;
    bar.finish_and_clear();
    if let Some(fit) = &fit {
        write_prior(&prior_path(&cfg.out), fit)?;
    } else {
        let pseudo = FitResult {
            prior,
            loglik: f64::NAN,
            n_points: 0,
            total_weight: 0.0,
            starts: Vec::new(),
            num_close: 0,
            warnings: vec!["prior given on the command line, not fitted".into()],
        };
        write_prior(&prior_path(&cfg.out), &pseudo)?;
    }
    t.record(summary, "measures + EB quantiles + write");
    summary.prior = Some(prior);
    summary.fit = fit;

    if let Some(html) = &cfg.html {
        let t = Stage::start();
        crate::html::write_report(html, ds, &table, &calc, summary)?;
        t.record(summary, "html report");
    }
    Ok(())
}

/// Full run from the configured input.
pub fn run(cfg: &RunConfig) -> Result<RunSummary> {
    let mut summary = RunSummary::default();
    let t = Stage::start();
    let ds = read_input(&cfg.input, cfg.progress)?;
    t.record(&mut summary, "read input");
    summary.notes = ds.diagnostics.notes.clone();
    summary.malformed = ds.diagnostics.malformed;
    summary.malformed_examples = ds.diagnostics.malformed_examples.clone();
    run_dataset(&ds, cfg, &mut summary)?;
    Ok(summary)
}

/// Convenience: results path's prior file.
pub fn prior_file(out: &Path) -> PathBuf {
    prior_path(out)
}
