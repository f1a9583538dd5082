//! `trellis signal ...` subcommands.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::count::Convention;
use crate::faers::{FaersOptions, FaersStratum, Roles};
use crate::mgps::Prior;
use crate::pairs_csv::CsvOptions;
use crate::pipeline::{Input, RunConfig, RunSummary, Squash};
use crate::synth::{SynthConfig, synth};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConventionArg {
    /// Unique reports (FDA, openEBGM).
    Report,
    /// Sums of pair counts (PhViD, vigipy).
    CellSum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SquashArg {
    /// openEBGM autoSquash defaults.
    Auto,
    /// Fit on every pair.
    Off,
}

/// Arguments of `trellis signal run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// FAERS/AERS quarterly extracts: directories, DEMO/DRUG/REAC .txt files or zips.
    #[arg(long, num_args = 1.., required_unless_present = "pairs", conflicts_with = "pairs")]
    pub faers: Vec<PathBuf>,
    /// Generic CSV with header `report_id,drug,event[,strata...]`.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Stratum variables: CSV column names, or for FAERS any of sex, age, year.
    #[arg(long, value_delimiter = ',')]
    pub strata: Vec<String>,
    /// FAERS drug roles to keep: PS, SS, C, I, suspect, all.
    #[arg(long, default_value = "PS,SS")]
    pub roles: String,
    /// Use the verbatim drug name even when the active ingredient is given.
    #[arg(long)]
    pub verbatim_drug_names: bool,
    /// Keep cases on the FDA's deleted-case lists (Deleted/DELE*.txt), which are
    /// otherwise dropped with all their versions.
    #[arg(long)]
    pub keep_deleted: bool,
    /// Fail on the first malformed line.
    #[arg(long)]
    pub strict: bool,
    /// Output CSV (the fitted prior goes beside it as <name>.prior.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a self-contained HTML report.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Counting convention for the margins.
    #[arg(long, value_enum, default_value = "report")]
    pub convention: ConventionArg,
    /// Add this to all four cells of tables with a zero cell (PRR, ROR, chi-square).
    #[arg(long)]
    pub continuity: Option<f64>,
    /// N*: smallest count used by the truncated likelihood of the prior fit.
    #[arg(long, default_value_t = 1)]
    pub min_count: u32,
    /// Data squashing before the prior fit.
    #[arg(long, value_enum, default_value = "auto")]
    pub squash: SquashArg,
    /// Use this prior `alpha1,beta1,alpha2,beta2,p` instead of fitting one.
    #[arg(long, value_delimiter = ',', num_args = 5)]
    pub prior: Option<Vec<f64>>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `trellis signal synth`.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Number of cases.
    #[arg(long)]
    pub reports: usize,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 4000)]
    pub drugs: usize,
    #[arg(long, default_value_t = 2000)]
    pub events: usize,
    /// Number of injected true signals.
    #[arg(long, default_value_t = 200)]
    pub signals: usize,
    /// Share of cases with an older duplicate version.
    #[arg(long, default_value_t = 0.05)]
    pub duplicate_rate: f64,
    #[arg(long, default_value_t = 1)]
    pub quarters: usize,
    /// Write each quarter as a zip archive.
    #[arg(long)]
    pub zip: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `trellis signal bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Number of synthetic cases.
    #[arg(long, default_value_t = 1_000_000)]
    pub reports: usize,
    #[arg(long, default_value_t = 4000)]
    pub drugs: usize,
    #[arg(long, default_value_t = 2000)]
    pub events: usize,
    /// Working directory (synthetic data is generated there once and reused).
    #[arg(long, default_value = "/tmp/trellis-signal-bench")]
    pub dir: PathBuf,
    /// Python interpreter of a virtual environment with vigipy 3.5.1; when
    /// given, vigipy runs on the same pair table in the same benchmark.
    #[arg(long)]
    pub vigipy_python: Option<PathBuf>,
    /// The vigipy driver script.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/vigipy_bench.py"))]
    pub vigipy_script: PathBuf,
}

/// `trellis signal <subcommand>`.
#[derive(Debug, clap::Subcommand)]
pub enum SignalCommand {
    /// Compute PRR, ROR, IC and EBGM for every drug–event pair.
    Run(RunArgs),
    /// Write synthetic FAERS-format extracts.
    Synth(SynthArgs),
    /// Time the engine on synthetic data (and vigipy on the same data).
    Bench(BenchArgs),
}

pub fn run(cmd: SignalCommand) -> anyhow::Result<()> {
    match cmd {
        SignalCommand::Run(args) => run_cmd(&args),
        SignalCommand::Synth(args) => synth_cmd(&args),
        SignalCommand::Bench(args) => bench_cmd(&args),
    }
}

/// Builds the run configuration from CLI arguments.
pub fn run_config(args: &RunArgs) -> anyhow::Result<RunConfig> {
    let input = if let Some(p) = &args.pairs {
        Input::Pairs {
            path: p.clone(),
            options: CsvOptions {
                strata: args.strata.clone(),
                strict: args.strict,
            },
        }
    } else {
        let strata = args
            .strata
            .iter()
            .map(|s| FaersStratum::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        Input::Faers {
            paths: args.faers.clone(),
            options: FaersOptions {
                roles: Roles::parse(&args.roles)?,
                strata,
                strict: args.strict,
                prefer_active_ingredient: !args.verbatim_drug_names,
                keep_deleted: args.keep_deleted,
            },
        }
    };
    let mut cfg = RunConfig::new(input, args.out.clone());
    cfg.html = args.html.clone();
    cfg.convention = match args.convention {
        ConventionArg::Report => Convention::ReportBased,
        ConventionArg::CellSum => Convention::CellSum,
    };
    cfg.continuity = args.continuity;
    if args.min_count == 0 {
        bail!("--min-count must be at least 1 (zero cells are not enumerated)");
    }
    cfg.min_count = args.min_count;
    cfg.squash = match args.squash {
        SquashArg::Auto => Squash::Auto,
        SquashArg::Off => Squash::Off,
    };
    if let Some(v) = &args.prior {
        cfg.fixed_prior = Some(Prior::new(v[0], v[1], v[2], v[3], v[4]));
    }
    cfg.progress = !args.quiet;
    Ok(cfg)
}

fn print_summary(s: &RunSummary) {
    eprintln!(
        "{} reports, {} drugs, {} events, {} {}, {} pairs, N = {}",
        s.n_reports,
        s.n_drugs,
        s.n_events,
        s.n_strata,
        if s.n_strata == 1 { "stratum" } else { "strata" },
        s.n_pairs,
        s.n_total
    );
    if s.malformed > 0 {
        eprintln!("{} malformed lines skipped, e.g.:", s.malformed);
        for m in s.malformed_examples.iter().take(10) {
            eprintln!("  {m}");
        }
    }
    for n in &s.notes {
        eprintln!("note: {n}");
    }
    if let Some(f) = &s.fit {
        let p = &f.prior;
        eprintln!(
            "prior: alpha1={} beta1={} alpha2={} beta2={} p={} loglik={} ({} points, weight {}, {} close starts)",
            p.alpha1,
            p.beta1,
            p.alpha2,
            p.beta2,
            p.p,
            f.loglik,
            f.n_points,
            f.total_weight,
            f.num_close
        );
        for r in &f.starts {
            let shared = r
                .same_as
                .map(|j| format!("; same run as start {}", j + 1))
                .unwrap_or_default();
            eprintln!(
                "  start {:?} -> nll {} in {} iterations (converged {}, in bounds {}{shared})",
                [
                    r.start.alpha1,
                    r.start.beta1,
                    r.start.alpha2,
                    r.start.beta2,
                    r.start.p
                ],
                r.neg_log_lik,
                r.iterations,
                r.converged,
                r.in_bounds
            );
        }
        for w in &f.warnings {
            eprintln!("warning: {w}");
        }
    }
    eprintln!(
        "flags: Evans {}, EB05>=2 {}, IC025>0 {}",
        s.write.flagged_evans, s.write.flagged_eb05, s.write.flagged_ic025
    );
    for line in s.stage_lines(34) {
        eprintln!("  {line}");
    }
}

fn run_cmd(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = run_config(args)?;
    let summary = crate::pipeline::run(&cfg).context("signal run failed")?;
    print_summary(&summary);
    eprintln!(
        "wrote {} and {}",
        cfg.out.display(),
        crate::pipeline::prior_file(&cfg.out).display()
    );
    Ok(())
}

fn synth_cmd(args: &SynthArgs) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        reports: args.reports,
        drugs: args.drugs,
        events: args.events,
        signals: args.signals,
        duplicate_rate: args.duplicate_rate,
        quarters: args.quarters,
        zip: args.zip,
        seed: args.seed,
    };
    let t = Instant::now();
    let s = synth(&cfg, &args.out, !args.quiet)?;
    eprintln!(
        "wrote {} cases ({} versions, {} DRUG rows, {} REAC rows, {} injected signals) in {:.2} s",
        s.cases,
        s.versions,
        s.drug_rows,
        s.reac_rows,
        s.signals.len(),
        t.elapsed().as_secs_f64()
    );
    for f in &s.files {
        eprintln!("  {}", f.display());
    }
    Ok(())
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn bench_cmd(args: &BenchArgs) -> anyhow::Result<()> {
    crate::bench::run_bench(args)
}
