//! The CLI contract (`cli::run` with parsed `SignalCommand`s): synth → run
//! with HTML, and the synthetic data's shape.
#![allow(clippy::unwrap_used)]

mod common;

use clap::Parser;
use common::Table;
use trellis_signal::cli::{SignalCommand, run};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: SignalCommand,
}

fn cli(args: &[&str]) -> SignalCommand {
    Cli::try_parse_from(std::iter::once("signal").chain(args.iter().copied()))
        .unwrap()
        .cmd
}

#[test]
fn synth_then_run_with_html() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("faers");
    let data_s = data.to_str().unwrap();
    run(cli(&[
        "synth",
        "--reports",
        "30000",
        "--out",
        data_s,
        "--drugs",
        "300",
        "--events",
        "200",
        "--signals",
        "20",
        "--quarters",
        "2",
        "--quiet",
    ]))
    .unwrap();
    let demos: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("DEMO"))
        .collect();
    assert_eq!(demos.len(), 2);

    let out = dir.path().join("results.csv");
    let html = dir.path().join("report.html");
    run(cli(&[
        "run",
        "--faers",
        data_s,
        "--out",
        out.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--strata",
        "sex,age,year",
        "--quiet",
    ]))
    .unwrap();
    let header = std::fs::read_to_string(&out).unwrap();
    assert!(header.starts_with(trellis_signal::output::HEADER));
    let prior: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("results.prior.json")).unwrap(),
    )
    .unwrap();
    for k in ["alpha1", "beta1", "alpha2", "beta2", "p", "loglik"] {
        assert!(prior[k].is_number(), "{k} missing in {prior}");
    }
    // Injected signals are strongly over-reported: most are flagged by EB05.
    let t = Table::load(&out);
    let signals = csv::Reader::from_path(data.join("signals.csv"))
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), r[1].to_owned())
        })
        .collect::<Vec<_>>();
    let present: Vec<_> = signals.iter().filter(|k| t.rows.contains_key(*k)).collect();
    let flagged = present
        .iter()
        .filter(|k| t.get(k, "flag_eb05") == 1.0)
        .count();
    assert!(
        present.len() >= 15,
        "only {} signals present",
        present.len()
    );
    assert!(
        flagged * 10 >= present.len() * 7,
        "{flagged} of {} injected signals flagged",
        present.len()
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("<circle"));
    assert!(page.contains("<details class=\"drug\""));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
}

#[test]
fn bad_arguments_are_errors() {
    assert!(Cli::try_parse_from(["signal", "run", "--out", "x.csv"]).is_err());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.csv");
    let err = run(cli(&[
        "run",
        "--faers",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]))
    .unwrap_err();
    assert!(format!("{err:#}").contains("DEMO"), "{err:#}");
}
