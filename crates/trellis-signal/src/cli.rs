//! `trellis signal ...` subcommands. Not implemented yet: see issue 4.

#[derive(Debug, clap::Subcommand)]
pub enum SignalCommand {}

pub fn run(cmd: SignalCommand) -> anyhow::Result<()> {
    match cmd {}
}
