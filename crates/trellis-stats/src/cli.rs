//! `trellis stats ...` subcommands.
//!
//! Every analysis reads `--data FILE` (`.csv` or `.xpt`), writes `--format json|csv|html|rtf`
//! (default json) to `--out FILE` or standard output. JSON shapes are stable (see README).

use crate::data::Dataset;
use crate::describe::QuantileDef;
use crate::render::{self, Table};
use crate::survival::{ConfType, EventSpec, SurvSpec, Ties};
use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Json,
    Csv,
    Html,
    Rtf,
}

/// Options shared by every analysis.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Input dataset: .csv (header row) or .xpt (SAS XPORT v5)
    #[arg(long)]
    pub data: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Write to this file instead of standard output
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Table title (html/rtf/csv)
    #[arg(long)]
    pub title: Option<String>,
    /// 1 − confidence level
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
}

/// Survival endpoint columns.
#[derive(Debug, Clone, clap::Args)]
pub struct SurvCols {
    /// Time-to-event column
    #[arg(long)]
    pub time: String,
    /// Event indicator column (1 = event, 0 = censored)
    #[arg(long, conflicts_with = "censor")]
    pub event: Option<String>,
    /// Censoring column (ADaM CNSR); rows equal to --censor-value are censored
    #[arg(long)]
    pub censor: Option<String>,
    /// Value of --censor that means censored
    #[arg(long, default_value = "1")]
    pub censor_value: String,
    /// Stratification column (stratified log-rank / Cox strata)
    #[arg(long)]
    pub strata: Option<String>,
}

impl SurvCols {
    fn spec(
        &self,
        by: Option<String>,
        covariates: Vec<String>,
        reference: Vec<(String, String)>,
        factors: Vec<String>,
    ) -> anyhow::Result<SurvSpec> {
        let event = match (&self.event, &self.censor) {
            (Some(e), None) => EventSpec::Event(e.clone()),
            (None, Some(c)) => EventSpec::Censor {
                column: c.clone(),
                value: self.censor_value.clone(),
            },
            _ => bail!("give either --event COL (1 = event) or --censor COL [--censor-value V]"),
        };
        Ok(SurvSpec {
            time: self.time.clone(),
            event,
            by,
            strata: self.strata.clone(),
            covariates,
            reference,
            factors,
        })
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Variables to summarise (numeric: n/mean/SD/median/Q1/Q3/min/max; character: n (%))
    #[arg(long, value_delimiter = ',', required = true)]
    pub vars: Vec<String>,
    /// Group (treatment arm) column; a Total column is added
    #[arg(long)]
    pub by: Option<String>,
    /// Variables to summarise as categorical (n, %) even if numeric (e.g. AGEGR1N)
    #[arg(long, value_delimiter = ',')]
    pub factors: Vec<String>,
    /// Quartile definition
    #[arg(long, value_enum, default_value_t = QuantileDef::Sas5)]
    pub quantiles: QuantileDef,
}

#[derive(Debug, Clone, clap::Args)]
pub struct KmArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub surv: SurvCols,
    /// Group column (one curve per level; log-rank test between levels)
    #[arg(long)]
    pub by: Option<String>,
    /// Confidence-interval transform
    #[arg(long, value_enum, default_value_t = ConfType::LogLog)]
    pub conf_type: ConfType,
    /// Report survival at these times (comma separated)
    #[arg(long, value_delimiter = ',')]
    pub at: Vec<f64>,
    /// Also write a Kaplan–Meier figure with numbers at risk (.svg, or .png)
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Shade pointwise confidence bands in the figure
    #[arg(long)]
    pub plot_ci: bool,
    /// Time unit label for tables and figures
    #[arg(long, default_value = "days")]
    pub time_unit: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CoxArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub surv: SurvCols,
    /// Treatment column, entered first (character: indicators vs the first sorted level)
    #[arg(long)]
    pub by: Option<String>,
    /// Covariates (numeric as is; character as indicators vs the first sorted level)
    #[arg(long, value_delimiter = ',')]
    pub covariates: Vec<String>,
    /// Numeric covariates to treat as factors (indicators)
    #[arg(long, value_delimiter = ',')]
    pub factors: Vec<String>,
    /// Reference levels of factor covariates, e.g. TRT01A=Placebo (comma separated)
    #[arg(long = "ref", value_delimiter = ',', value_parser = parse_ref)]
    pub reference: Vec<(String, String)>,
    /// Tie handling
    #[arg(long, value_enum, default_value_t = Ties::Efron)]
    pub ties: Ties,
    /// Also write a forest plot of the hazard ratios (.svg, or .png)
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AncovaArgs {
    #[command(flatten)]
    pub common: Common,
    /// Response column (e.g. CHG)
    #[arg(long)]
    pub response: String,
    /// Treatment factor (LS means and pairwise differences by its levels)
    #[arg(long)]
    pub by: String,
    /// Further terms: character columns are factors, numeric ones continuous
    #[arg(long, value_delimiter = ',')]
    pub covariates: Vec<String>,
    /// Numeric covariates to treat as factors
    #[arg(long, value_delimiter = ',')]
    pub factors: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MmrmArgs {
    #[command(flatten)]
    pub common: Common,
    /// Response column (e.g. CHG)
    #[arg(long)]
    pub response: String,
    /// Subject identifier column (e.g. USUBJID)
    #[arg(long)]
    pub subject: String,
    /// Visit column (e.g. AVISIT); ordered naturally ("Week 2" before "Week 12") unless
    /// --visit-order is given
    #[arg(long)]
    pub visit: String,
    /// Treatment column (e.g. TRT01P): LS means per arm and visit, differences vs --ref
    #[arg(long)]
    pub by: String,
    /// Reference levels, e.g. TRT01P=Placebo (the reference arm) and factor covariates'
    /// reference levels (comma separated)
    #[arg(long = "ref", value_delimiter = ',', value_parser = parse_ref)]
    pub reference: Vec<(String, String)>,
    /// Covariates (e.g. BASE): character columns are factors, numeric ones continuous
    #[arg(long, value_delimiter = ',')]
    pub covariates: Vec<String>,
    /// Numeric covariates to treat as factors
    #[arg(long, value_delimiter = ',')]
    pub factors: Vec<String>,
    /// Add continuous covariate × visit terms (e.g. baseline × visit)
    #[arg(long)]
    pub visit_by_covariate: bool,
    /// Visit order (comma separated visit values)
    #[arg(long, value_delimiter = ',')]
    pub visit_order: Vec<String>,
    /// Within-subject covariance structure
    #[arg(long, value_enum, default_value_t = crate::mmrm::CovStructure::Us)]
    pub cov: crate::mmrm::CovStructure,
    /// Degrees of freedom / SE method: satterthwaite (model-based SEs) or kr (Kenward–Roger
    /// adjusted SEs)
    #[arg(long, value_enum, default_value_t = crate::mmrm::DfMethod::Satterthwaite)]
    pub df: crate::mmrm::DfMethod,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogisticArgs {
    #[command(flatten)]
    pub common: Common,
    /// Binary response column (0/1 unless --event-value is given)
    #[arg(long)]
    pub response: String,
    /// Response value that counts as the event (e.g. Y)
    #[arg(long)]
    pub event_value: Option<String>,
    /// Covariates (character ones as indicators vs the first sorted level)
    #[arg(long, value_delimiter = ',')]
    pub covariates: Vec<String>,
    /// Numeric covariates to treat as factors
    #[arg(long, value_delimiter = ',')]
    pub factors: Vec<String>,
    /// Reference levels of factors, e.g. TRT01P=Placebo (comma separated)
    #[arg(long = "ref", value_delimiter = ',', value_parser = parse_ref)]
    pub reference: Vec<(String, String)>,
    /// Also write a forest plot of the odds ratios (.svg, or .png)
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FreqArgs {
    #[command(flatten)]
    pub common: Common,
    /// Row variable (e.g. treatment)
    #[arg(long)]
    pub row: String,
    /// Column variable (e.g. response)
    #[arg(long)]
    pub col: String,
    /// Stratification variable: generalised CMH statistics (and, for 2×2×K, CMH with the
    /// Mantel–Haenszel odds ratio and Breslow–Day)
    #[arg(long)]
    pub strata: Option<String>,
    /// Fisher's exact test for tables other than 2×2: exact (refused with a message when the
    /// table is too large), mc (seeded Monte Carlo), none
    #[arg(long, value_enum, default_value_t = FisherArg::Exact)]
    pub fisher: FisherArg,
    /// Monte Carlo samples for --fisher mc
    #[arg(long, default_value_t = 10_000)]
    pub mc_samples: u64,
    /// Random seed for --fisher mc
    #[arg(long, default_value_t = 20_261_207)]
    pub seed: u64,
}

/// `--fisher` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FisherArg {
    Exact,
    Mc,
    None,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConvertArgs {
    /// Input .csv or .xpt
    #[arg(long)]
    pub data: PathBuf,
    /// Output .csv or .xpt (by extension)
    #[arg(long)]
    pub out: PathBuf,
    /// Dataset (member) name for XPORT output (default: file stem, upper-cased)
    #[arg(long)]
    pub name: Option<String>,
    /// Dataset label for XPORT output
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ContentsArgs {
    /// Input .csv or .xpt
    #[arg(long)]
    pub data: PathBuf,
}

/// `trellis stats <analysis>`
#[derive(Debug, clap::Subcommand)]
pub enum StatsCommand {
    /// Descriptive summaries by group (demographics table)
    Describe(DescribeArgs),
    /// Kaplan–Meier estimates with CIs, medians, and the log-rank test between groups
    Km(KmArgs),
    /// Cox proportional hazards regression (Efron/Breslow ties, strata)
    Cox(CoxArgs),
    /// ANCOVA / linear model: type III tests, LS means with CIs, pairwise differences
    Ancova(AncovaArgs),
    /// Mixed model for repeated measures (REML, unstructured covariance, Satterthwaite df):
    /// LS means by visit and differences vs a reference arm
    Mmrm(MmrmArgs),
    /// Logistic regression with odds ratios
    Logistic(LogisticArgs),
    /// Contingency table: Pearson chi-square, Fisher's exact (2×2 and r×c), CMH statistics
    /// (with --strata)
    Freq(FreqArgs),
    /// Convert between CSV and SAS XPORT v5
    Convert(ConvertArgs),
    /// List variables with type, length, label and format
    Contents(ContentsArgs),
}

fn parse_ref(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((c, l)) if !c.is_empty() && !l.is_empty() => Ok((c.to_string(), l.to_string())),
        _ => Err(format!("expected COLUMN=LEVEL, got `{s}`")),
    }
}

fn load(p: &Path) -> anyhow::Result<Dataset> {
    Dataset::load(p).with_context(|| format!("reading {}", p.display()))
}

fn emit(common: &Common, json: &serde_json::Value, tables: &[Table]) -> anyhow::Result<()> {
    let text = match common.format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(json)?;
            s.push('\n');
            s
        }
        Format::Csv => Table::to_csv(tables),
        Format::Html => Table::to_html(tables),
        Format::Rtf => Table::to_rtf(tables),
    };
    write_out(common.out.as_deref(), &text)
}

fn write_out(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            let mut so = std::io::stdout().lock();
            so.write_all(text.as_bytes())?;
            so.flush()?;
            Ok(())
        }
    }
}

/// Writes a figure after the result itself has been written, so a figure that cannot be
/// made (no system font for PNG, an unwritable path) costs the figure, not the analysis;
/// the error says where the result went.
fn figure(common: &Common, path: &Path, svg: &str) -> anyhow::Result<()> {
    render::write_figure(path, svg).with_context(|| {
        let fmt = format!("{:?}", common.format).to_ascii_lowercase();
        match &common.out {
            Some(o) => format!(
                "writing figure {} (the {fmt} result was written to {})",
                path.display(),
                o.display()
            ),
            None => format!(
                "writing figure {} (the {fmt} result was written to standard output)",
                path.display()
            ),
        }
    })
}

fn check_alpha(a: f64) -> anyhow::Result<()> {
    if !(a > 0.0 && a < 1.0) {
        bail!("--alpha must be in (0, 1), got {a}");
    }
    Ok(())
}

/// Runs one `trellis stats` subcommand.
pub fn run(cmd: StatsCommand) -> anyhow::Result<()> {
    match cmd {
        StatsCommand::Describe(a) => {
            check_alpha(a.common.alpha)?;
            let ds = load(&a.common.data)?;
            let d = crate::describe::describe_with(
                &ds,
                &a.vars,
                &a.factors,
                a.by.as_deref(),
                a.quantiles,
            )?;
            let title =
                a.common.title.clone().unwrap_or_else(|| {
                    "Summary of Demographic and Baseline Characteristics".into()
                });
            emit(
                &a.common,
                &serde_json::to_value(&d)?,
                &[render::describe_table(&d, &title)],
            )
        }
        StatsCommand::Km(a) => {
            check_alpha(a.common.alpha)?;
            let ds = load(&a.common.data)?;
            let spec = a.surv.spec(a.by.clone(), vec![], vec![], vec![])?;
            let k = crate::survival::km_analysis(&ds, &spec, a.conf_type, a.common.alpha, &a.at)?;
            let title = a
                .common
                .title
                .clone()
                .unwrap_or_else(|| format!("Kaplan-Meier Analysis of {}", a.surv.time));
            emit(
                &a.common,
                &serde_json::to_value(&k)?,
                &[render::km_table(&k, &title, &a.time_unit)],
            )?;
            match &a.plot {
                Some(p) => figure(
                    &a.common,
                    p,
                    &render::km_svg(&k, &title, &format!("Time ({})", a.time_unit), a.plot_ci),
                ),
                None => Ok(()),
            }
        }
        StatsCommand::Cox(a) => {
            check_alpha(a.common.alpha)?;
            let ds = load(&a.common.data)?;
            let spec = a.surv.spec(
                a.by.clone(),
                a.covariates.clone(),
                a.reference.clone(),
                a.factors.clone(),
            )?;
            let c = crate::survival::cox_analysis(&ds, &spec, a.ties, a.common.alpha)?;
            let title =
                a.common.title.clone().unwrap_or_else(|| {
                    format!("Cox Proportional Hazards Model of {}", a.surv.time)
                });
            emit(
                &a.common,
                &serde_json::to_value(&c)?,
                &[render::cox_table(&c, &title)],
            )?;
            if let Some(p) = &a.plot {
                let rows: Vec<_> = c
                    .coefficients
                    .iter()
                    .map(|k| (k.term.clone(), k.hr, k.hr_lo, k.hr_hi))
                    .collect();
                let svg =
                    render::forest_svg(&rows, &title, "Hazard ratio (log scale)", a.common.alpha);
                figure(&a.common, p, &svg)?;
            }
            Ok(())
        }
        StatsCommand::Ancova(a) => {
            check_alpha(a.common.alpha)?;
            let ds = load(&a.common.data)?;
            let spec = crate::linear::LinearSpec {
                response: a.response.clone(),
                treatment: a.by.clone(),
                covariates: a.covariates.clone(),
                factors: a.factors.clone(),
            };
            let fit = crate::linear::ancova(&ds, &spec, a.common.alpha)?;
            let title = a
                .common
                .title
                .clone()
                .unwrap_or_else(|| format!("Analysis of Covariance of {}", a.response));
            emit(
                &a.common,
                &serde_json::to_value(&fit)?,
                &render::ancova_tables(&fit, &title),
            )
        }
        StatsCommand::Mmrm(a) => {
            check_alpha(a.common.alpha)?;
            let ds = load(&a.common.data)?;
            let (trt_ref, factor_refs): (Vec<_>, Vec<_>) = a
                .reference
                .iter()
                .cloned()
                .partition(|(c, _)| c.eq_ignore_ascii_case(&a.by));
            let spec = crate::mmrm::MmrmSpec {
                response: a.response.clone(),
                subject: a.subject.clone(),
                visit: a.visit.clone(),
                treatment: a.by.clone(),
                reference: trt_ref.into_iter().next().map(|(_, l)| l),
                covariates: a.covariates.clone(),
                factors: a.factors.clone(),
                factor_refs,
                visit_by_covariate: a.visit_by_covariate,
                cov: a.cov,
                df: a.df,
                visit_order: (!a.visit_order.is_empty()).then(|| a.visit_order.clone()),
            };
            let fit = crate::mmrm::mmrm(&ds, &spec, a.common.alpha)?;
            let title = a.common.title.clone().unwrap_or_else(|| {
                format!(
                    "Mixed Model for Repeated Measures of {} by {}",
                    a.response, a.visit
                )
            });
            emit(
                &a.common,
                &serde_json::to_value(&fit)?,
                &render::mmrm_tables(&fit, &title),
            )
        }
        StatsCommand::Logistic(a) => {
            check_alpha(a.common.alpha)?;
            let ds = load(&a.common.data)?;
            let fit = crate::linear::logistic(
                &ds,
                &a.response,
                a.event_value.as_deref(),
                &a.covariates,
                &a.factors,
                &a.reference,
                a.common.alpha,
            )?;
            let title = a
                .common
                .title
                .clone()
                .unwrap_or_else(|| format!("Logistic Regression of {}", a.response));
            emit(
                &a.common,
                &serde_json::to_value(&fit)?,
                &[render::logistic_table(&fit, &title)],
            )?;
            if let Some(p) = &a.plot {
                let rows: Vec<_> = fit
                    .coefficients
                    .iter()
                    .skip(1)
                    .map(|k| (k.term.clone(), k.or, k.or_lo, k.or_hi))
                    .collect();
                let svg =
                    render::forest_svg(&rows, &title, "Odds ratio (log scale)", a.common.alpha);
                figure(&a.common, p, &svg)?;
            }
            Ok(())
        }
        StatsCommand::Freq(a) => {
            check_alpha(a.common.alpha)?;
            let ds = load(&a.common.data)?;
            let mode = match a.fisher {
                FisherArg::Exact => crate::freq::FisherMode::Exact,
                FisherArg::Mc => crate::freq::FisherMode::MonteCarlo {
                    samples: a.mc_samples,
                    seed: a.seed,
                },
                FisherArg::None => crate::freq::FisherMode::None,
            };
            let r = crate::freq::freq_with(
                &ds,
                &a.row,
                &a.col,
                a.strata.as_deref(),
                a.common.alpha,
                mode,
            )?;
            let title = a
                .common
                .title
                .clone()
                .unwrap_or_else(|| format!("{} by {}", a.col, a.row));
            emit(
                &a.common,
                &serde_json::to_value(&r)?,
                &[render::freq_table(&r, &title)],
            )
        }
        StatsCommand::Convert(a) => {
            let mut ds = load(&a.data)?;
            let ext = a
                .out
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            let file = std::fs::File::create(&a.out)
                .with_context(|| format!("creating {}", a.out.display()))?;
            match ext.as_str() {
                "xpt" | "xport" => {
                    // FDA convention: the member name is the file name.
                    ds.name = match &a.name {
                        Some(n) => n.clone(),
                        None => a
                            .out
                            .file_stem()
                            .and_then(|s| s.to_str())
                            .unwrap_or("DATA")
                            .to_ascii_uppercase(),
                    };
                    if let Some(l) = &a.label {
                        ds.label = l.clone();
                    }
                    crate::xport::write_xport(file, &[&ds])?;
                }
                "csv" => crate::data::write_csv(std::io::BufWriter::new(file), &ds)?,
                _ => bail!("--out must end in .csv or .xpt"),
            }
            Ok(())
        }
        StatsCommand::Contents(a) => {
            let ds = load(&a.data)?;
            let vars: Vec<serde_json::Value> = ds
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let fmt = if c.format.name.is_empty() && c.format.width == 0 {
                        String::new()
                    } else {
                        format!(
                            "{}{}.{}",
                            c.format.name,
                            if c.format.width > 0 {
                                c.format.width.to_string()
                            } else {
                                String::new()
                            },
                            if c.format.decimals > 0 {
                                c.format.decimals.to_string()
                            } else {
                                String::new()
                            }
                        )
                    };
                    serde_json::json!({
                        "position": i + 1,
                        "name": c.name,
                        "type": if c.is_numeric() { "num" } else { "char" },
                        "length": c.length,
                        "label": c.label,
                        "format": fmt,
                    })
                })
                .collect();
            let j = serde_json::json!({"name": ds.name, "label": ds.label, "rows": ds.nrows(), "variables": vars});
            write_out(None, &(serde_json::to_string_pretty(&j)? + "\n"))
        }
    }
}
