//! `trellis stats ...` subcommands. Not implemented yet: see issue 5.

#[derive(Debug, clap::Subcommand)]
pub enum StatsCommand {}

pub fn run(cmd: StatsCommand) -> anyhow::Result<()> {
    match cmd {}
}
