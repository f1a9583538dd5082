//! Stand-alone driver for the `trellis stats` subcommands (same code path as the `trellis`
//! binary): `cargo run -p trellis-stats --example stats_cli -- km --data ... `.
use clap::Parser;

#[derive(Parser)]
#[command(name = "trellis stats")]
struct Args {
    #[command(subcommand)]
    cmd: trellis_stats::cli::StatsCommand,
}

fn main() -> anyhow::Result<()> {
    trellis_stats::cli::run(Args::parse().cmd)
}
