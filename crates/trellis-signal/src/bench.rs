//! `trellis signal bench`: end-to-end timings on synthetic FAERS files, and
//! vigipy on the same pair table in the same run when a vigipy interpreter is
//! given (see `reference/run_bench.sh`, which creates that environment).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cli::{BenchArgs, peak_rss_bytes};
use crate::count::Convention;
use crate::error::{Error, Result, io_err};
use crate::faers::{FaersOptions, FaersStratum};
use crate::pipeline::{Input, RunConfig, RunSummary, Squash, run};
use crate::synth::{SynthConfig, synth};

/// Resets the kernel's peak-RSS counter of this process (Linux ≥ 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

struct Measured {
    label: String,
    seconds: f64,
    peak_rss: Option<u64>,
    summary: RunSummary,
}

fn measure(label: &str, cfg: &RunConfig) -> Result<Measured> {
    let resettable = reset_peak_rss();
    let t = Instant::now();
    let summary = run(cfg)?;
    let seconds = t.elapsed().as_secs_f64();
    Ok(Measured {
        label: label.to_owned(),
        seconds,
        peak_rss: if resettable { peak_rss_bytes() } else { None },
        summary,
    })
}

fn gb(x: Option<u64>) -> String {
    x.map(|b| format!("{:.2} GB", b as f64 / 1e9))
        .unwrap_or_else(|| "n/a".into())
}

fn print_run(m: &Measured) {
    let s = &m.summary;
    println!(
        "{:<44} {:>8.2} s  peak RSS {:>8}  pairs {:>9}  reports {:>9}  EB05>=2 {}",
        m.label,
        m.seconds,
        gb(m.peak_rss),
        s.n_pairs,
        s.n_reports,
        s.write.flagged_eb05
    );
    for line in s.stage_lines(40) {
        println!("    {line}");
    }
}

/// Writes `name,AE,count` (vigipy's input) from a results CSV.
fn export_pairs(results: &Path, out: &Path) -> Result<()> {
    let mut rdr = csv::Reader::from_path(results).map_err(|source| Error::Csv {
        path: results.to_owned(),
        source,
    })?;
    let file = std::fs::File::create(out).map_err(io_err(out))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "name,AE,count").map_err(io_err(out))?;
    let mut rec = csv::StringRecord::new();
    while rdr.read_record(&mut rec).map_err(|source| Error::Csv {
        path: results.to_owned(),
        source,
    })? {
        let field = |i| rec.get(i).unwrap_or("");
        writeln!(w, "{},{},{}", field(0), field(1), field(2)).map_err(io_err(out))?;
    }
    w.flush().map_err(io_err(out))
}

/// Runs the benchmark and prints figures and ratios.
pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let data: PathBuf = args.dir.join(format!(
        "synth_{}_{}_{}",
        args.reports, args.drugs, args.events
    ));
    if !data.join("DEMO25Q4.txt").exists() {
        let mut cfg = SynthConfig::new(args.reports);
        cfg.drugs = args.drugs;
        cfg.events = args.events;
        let t = Instant::now();
        let s = synth(&cfg, &data, true)?;
        println!(
            "synth: {} cases, {} versions, {} DRUG rows, {} REAC rows in {:.2} s (not part of the timings below)",
            s.cases,
            s.versions,
            s.drug_rows,
            s.reac_rows,
            t.elapsed().as_secs_f64()
        );
    }
    let threads = rayon::current_num_threads();
    println!(
        "trellis-signal bench: {} synthetic cases in {} ({} rayon threads)",
        args.reports,
        data.display(),
        threads
    );
    println!(
        "timings are wall-clock of one run each; the machine may be shared, so treat them as indicative"
    );
    let faers = |strata: Vec<FaersStratum>| Input::Faers {
        paths: vec![data.clone()],
        options: FaersOptions {
            strata,
            ..FaersOptions::default()
        },
    };
    let out = args.dir.join("bench_results.csv");
    let mut runs = Vec::new();

    let cfg = RunConfig::new(faers(Vec::new()), out.clone());
    runs.push(measure("trellis report-based, autoSquash fit", &cfg)?);
    print_run(&runs[0]);

    let cfg = RunConfig::new(
        faers(vec![
            FaersStratum::Sex,
            FaersStratum::AgeGroup,
            FaersStratum::Year,
        ]),
        out.clone(),
    );
    runs.push(measure(
        "trellis report-based, strata sex x age x year",
        &cfg,
    )?);
    print_run(&runs[1]);

    let mut cfg = RunConfig::new(faers(Vec::new()), out.clone());
    cfg.convention = Convention::CellSum;
    cfg.squash = Squash::Off;
    cfg.continuity = Some(0.5);
    runs.push(measure(
        "trellis cell-sum, unsquashed fit (vigipy-like)",
        &cfg,
    )?);
    print_run(&runs[2]);

    let Some(py) = &args.vigipy_python else {
        println!("vigipy not run (pass --vigipy-python, or use reference/run_bench.sh)");
        return Ok(());
    };
    let pairs = args.dir.join("pairs_for_vigipy.csv");
    export_pairs(&out, &pairs)?;
    println!("running vigipy on {} ...", pairs.display());
    let output = Command::new(py)
        .arg(&args.vigipy_script)
        .arg(&pairs)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", py.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "vigipy script failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| anyhow::anyhow!("no JSON line in vigipy output: {text}"))?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let get = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    println!(
        "vigipy {}: read CSV {:.2} s, convert {:.2} s, prr {:.2} s, ror {:.2} s, bcpnn {:.2} s, gps {:.2} s; compute total {:.2} s; peak RSS {:.2} GB",
        v.get("version").and_then(|x| x.as_str()).unwrap_or("?"),
        get("read"),
        get("convert"),
        get("prr"),
        get("ror"),
        get("bcpnn"),
        get("gps"),
        get("compute"),
        get("peak_rss") / 1e9
    );
    let vig = get("compute");
    for m in &runs {
        println!(
            "ratio vigipy compute ({vig:.2} s, pair table already aggregated) / {} ({:.2} s, from FAERS files): {:.1}x",
            m.label,
            m.seconds,
            vig / m.seconds
        );
    }
    Ok(())
}
