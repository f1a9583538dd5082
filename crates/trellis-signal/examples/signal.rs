//! Stand-alone driver for `trellis signal ...` (used by the benchmark script
//! until the workspace binary exists): `signal run|synth|bench ...`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "signal", about = "Trellis signal detection")]
struct Cli {
    #[command(subcommand)]
    cmd: trellis_signal::cli::SignalCommand,
}

fn main() -> anyhow::Result<()> {
    trellis_signal::cli::run(Cli::parse().cmd)
}
