//! Settings: command-line flag or environment variable, then config file, then default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::cli::{Cli, LogFormat, ServeArgs, Synchronous};

/// The config file's keys (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub listen: Option<SocketAddr>,
    pub sqlite_synchronous: Option<Synchronous>,
    pub session_idle_minutes: Option<u64>,
    pub session_absolute_hours: Option<u64>,
    pub lockout_after: Option<u32>,
    pub secure_cookies: Option<bool>,
    pub checkpoint_interval_minutes: Option<u64>,
}

impl FileConfig {
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let (path, explicit) = match &cli.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("trellis.toml"), false),
        };
        if !path.exists() {
            if explicit {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }
}

/// Settings common to every command.
#[derive(Debug)]
pub struct Common {
    pub database_url: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
}

impl Common {
    pub fn resolve(cli: &Cli, file: &FileConfig) -> Self {
        let data_dir = cli
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("trellis-data"));
        let database_url = cli
            .database_url
            .clone()
            .or_else(|| file.database_url.clone())
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("trellis.db").display()));
        Self {
            database_url,
            data_dir,
            log_format: cli
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Pretty),
        }
    }
}

#[derive(Debug)]
pub struct Serve {
    pub demo: bool,
    pub listen: SocketAddr,
    pub synchronous_full: bool,
    pub server: trellis_server::ServerConfig,
    pub checkpoint_interval: Option<Duration>,
}

impl Serve {
    pub fn resolve(a: &ServeArgs, f: &FileConfig) -> Self {
        let d = trellis_server::ServerConfig::default();
        let minutes = a
            .checkpoint_interval_minutes
            .or(f.checkpoint_interval_minutes)
            .unwrap_or(60);
        Self {
            demo: a.demo,
            listen: a
                .listen
                .or(f.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            synchronous_full: a
                .sqlite_synchronous
                .or(f.sqlite_synchronous)
                .unwrap_or(Synchronous::Full)
                == Synchronous::Full,
            server: trellis_server::ServerConfig {
                session_idle: a
                    .session_idle_minutes
                    .or(f.session_idle_minutes)
                    .map_or(d.session_idle, |m| Duration::from_secs(m * 60)),
                session_absolute: a
                    .session_absolute_hours
                    .or(f.session_absolute_hours)
                    .map_or(d.session_absolute, |h| Duration::from_secs(h * 3600)),
                lockout_after: a
                    .lockout_after
                    .or(f.lockout_after)
                    .unwrap_or(d.lockout_after),
                secure_cookies: a.secure_cookies || f.secure_cookies.unwrap_or(false),
                max_body_bytes: d.max_body_bytes,
            },
            checkpoint_interval: (minutes > 0).then(|| Duration::from_secs(minutes * 60)),
        }
    }
}

/// Loads the installation's checkpoint key, creating it (mode 0600) on first use.
pub fn checkpoint_key(data_dir: &Path) -> anyhow::Result<trellis_audit::CheckpointKey> {
    let path = data_dir.join("checkpoint.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return trellis_audit::CheckpointKey::from_file_text(&text)
            .with_context(|| path.display().to_string());
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("random number generator: {e}"))?;
    let key = trellis_audit::CheckpointKey::from_seed(seed);
    write_private(&path, &key.to_file_text())?;
    std::fs::write(data_dir.join("checkpoint.pub"), key.public_key_text())?;
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}
