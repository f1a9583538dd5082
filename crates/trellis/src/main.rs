//! The `trellis` binary: parses the command line, sets up logging, dispatches.

mod admin;
mod cli;
mod config;
mod study;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use trellis_store::{DatabaseUrl, Store, StoreOptions};

use crate::cli::{Cli, Command, LogFormat};

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRELLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.compact().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(e.chain().map(ToString::to_string)));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, outermost first. Many errors (ours, sqlx's)
/// already end their message with `: ` and their cause's message; such a cause is not
/// repeated. Only a whole trailing message counts, so a cause `2` after `… id 12` stays.
fn error_chain(messages: impl Iterator<Item = String>) -> String {
    let mut line = String::new();
    let mut last = String::new();
    for m in messages {
        let said = last == m || last.ends_with(&format!(": {m}"));
        if !said {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&m);
        }
        last = m;
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = config::FileConfig::load(&cli)?;
    let common = config::Common::resolve(&cli, &file);
    match cli.command {
        // Pure-compute commands need neither the database nor the async runtime.
        Command::Signal(cmd) => return trellis_signal::cli::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Stats(cmd) => return trellis_stats::cli::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Study(cli::StudyCommand::CheckOdm { file }) => return study::check_odm(&file),
        _ => {}
    }
    init_logging(common.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let serve = config::Serve::resolve(&args, &file);
                admin::serve(&common, serve)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::Migrate => {
                let store = open(&common, true, true).await?;
                store.migrate().await?;
                println!("database {} is up to date", store.url());
                Ok(ExitCode::SUCCESS)
            }
            Command::User(cmd) => admin::user(&open(&common, false, true).await?, cmd)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Audit(cmd) => admin::audit(&common, cmd).await,
            Command::Db(cli::DbCommand::Copy { from, to }) => {
                admin::db_copy(&from, &to).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Backup { out } => {
                let store = open(&common, false, true).await?;
                store.backup_to(&out).await?;
                println!("snapshot of {} written to {}", store.url(), out.display());
                Ok(ExitCode::SUCCESS)
            }
            Command::Study(cli::StudyCommand::ImportOdm {
                file,
                study,
                sponsor,
                time_zone,
                site,
                as_user,
                metadata_only,
            }) => {
                let store = open(&common, false, true).await?;
                study::import_odm(
                    &store,
                    &study::ImportArgs {
                        file,
                        study,
                        sponsor,
                        time_zone,
                        site,
                        as_user,
                        metadata_only,
                    },
                )
                .await
            }
            Command::Study(cli::StudyCommand::AddSite {
                study,
                code,
                name,
                country,
                time_zone,
                as_user,
            }) => {
                let store = open(&common, false, true).await?;
                study::add_site(
                    &store,
                    &study::NewSite {
                        study,
                        code,
                        name,
                        country,
                        time_zone,
                        as_user,
                    },
                )
                .await
                .map(|()| ExitCode::SUCCESS)
            }
            Command::Study(cli::StudyCommand::List) => {
                let store = open(&common, false, true).await?;
                study::list(&store).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Export(cli::ExportCommand::Odm {
                study,
                all,
                out,
                audit,
            }) => {
                let store = open(&common, false, true).await?;
                study::export_odm(&store, study.as_deref(), all, &out, audit)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::Export(cli::ExportCommand::Csv {
                study,
                form,
                wide,
                out,
            }) => {
                let store = open(&common, false, true).await?;
                let what = if wide { None } else { form.as_deref() };
                study::export_csv(&store, &study, what, out.as_deref())
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::Signal(_) | Command::Stats(_) | Command::Study(_) => Ok(ExitCode::SUCCESS),
        }
    })
}

/// Opens the configured database. A SQLite file is created only when `create` is set.
pub async fn open(
    common: &config::Common,
    create: bool,
    synchronous_full: bool,
) -> anyhow::Result<Store> {
    let url = DatabaseUrl::parse(&common.database_url)?;
    let store = Store::open(
        &url,
        &StoreOptions {
            create,
            sqlite_synchronous_full: synchronous_full,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("opening {url}"))?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {url}"))?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn a_cause_already_in_its_wrappers_message_is_said_once() {
        let chain = |v: &[&str]| error_chain(v.iter().map(|s| s.to_string()));
        assert_eq!(
            chain(&[
                "signal run failed",
                "I/O error on x.csv: No such file or directory (os error 2)",
                "No such file or directory (os error 2)",
            ]),
            "signal run failed: I/O error on x.csv: No such file or directory (os error 2)"
        );
        assert_eq!(chain(&["a", "b", "c"]), "a: b: c");
        assert_eq!(chain(&["only"]), "only");
        // A repeated cause deeper down is still dropped only where its wrapper ends with it.
        assert_eq!(chain(&["x: y", "y", "z"]), "x: y: z");
        assert_eq!(chain(&["no subject id 12", "2"]), "no subject id 12: 2");
        assert_eq!(chain(&["same", "same"]), "same");
    }
}
