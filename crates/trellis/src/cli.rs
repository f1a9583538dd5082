//! Command-line interface. Every option is also an environment variable
//! (`TRELLIS_…`) and, for the server, a key of the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "trellis",
    version,
    about = "Trellis — the open clinical research platform",
    propagate_version = true
)]
pub struct Cli {
    /// Database: sqlite://PATH (embedded) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "TRELLIS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Config file (TOML). Default: ./trellis.toml if it exists.
    #[arg(long, global = true, env = "TRELLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where Trellis keeps its SQLite file, checkpoint key and exported checkpoints.
    #[arg(long, global = true, env = "TRELLIS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, env = "TRELLIS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at every commit: an acknowledged write survives power loss (default).
    Full,
    /// WAL default: survives a crash of Trellis, may lose the last commits on power loss.
    Normal,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server (UI and API).
    Serve(ServeArgs),
    /// Create the database if needed and apply schema migrations.
    Migrate,
    /// Manage users and their roles.
    #[command(subcommand)]
    User(UserCommand),
    /// Verify, export and checkpoint the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Whole-database operations.
    #[command(subcommand)]
    Db(DbCommand),
    /// Write a consistent online snapshot of the database to a new file.
    Backup {
        /// The new file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Study definitions in CDISC ODM: check and import.
    #[command(subcommand)]
    Study(StudyCommand),
    /// Export data in standard formats.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Pharmacovigilance signal detection (PRR, ROR, BCPNN, MGPS).
    #[command(subcommand)]
    Signal(trellis_signal::cli::SignalCommand),
    /// Biostatistics: the analyses of a clinical study report.
    #[command(subcommand)]
    Stats(trellis_stats::cli::StatsCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Create the database if needed and seed a demo study with a user for each role.
    #[arg(long, env = "TRELLIS_DEMO")]
    pub demo: bool,
    /// Address to listen on.
    #[arg(long, env = "TRELLIS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// SQLite durability.
    #[arg(long, env = "TRELLIS_SQLITE_SYNCHRONOUS", value_enum)]
    pub sqlite_synchronous: Option<Synchronous>,
    /// Minutes of inactivity after which a browser session ends.
    #[arg(long, env = "TRELLIS_SESSION_IDLE_MINUTES")]
    pub session_idle_minutes: Option<u64>,
    /// Hours after which a browser session ends regardless of activity.
    #[arg(long, env = "TRELLIS_SESSION_ABSOLUTE_HOURS")]
    pub session_absolute_hours: Option<u64>,
    /// Failed sign-ins before an account is locked.
    #[arg(long, env = "TRELLIS_LOCKOUT_AFTER")]
    pub lockout_after: Option<u32>,
    /// Mark cookies Secure (when served behind HTTPS).
    #[arg(long, env = "TRELLIS_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Minutes between signed checkpoints of the audit chains (0 disables).
    #[arg(long, env = "TRELLIS_CHECKPOINT_INTERVAL_MINUTES")]
    pub checkpoint_interval_minutes: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a one-time password.
    Add {
        username: String,
        /// Printed name (shown on signatures).
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// Organization name (default: the first CRO).
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        #[arg(long, default_value = "en")]
        locale: String,
    },
    /// Set a new one-time password (printed) that must be changed at next sign-in.
    Passwd { username: String },
    /// Lock an account.
    Lock { username: String },
    /// Unlock an account and reset its failed sign-ins.
    Unlock { username: String },
    /// Grant a role, for a study (by code) and, for site roles, a site (by code).
    Grant {
        username: String,
        role: String,
        #[arg(long)]
        study: Option<String>,
        #[arg(long)]
        site: Option<String>,
    },
    /// Issue an API token for machine clients (printed once; stored hashed).
    Token {
        username: String,
        #[arg(long)]
        name: String,
    },
    /// List users with their roles.
    List,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-compute the hash chains; exits non-zero naming the first bad entry.
    Verify {
        /// Only this study (code or id); `installation` for the installation chain.
        #[arg(long)]
        study: Option<String>,
    },
    /// Export the audit trail as CSV or JSON.
    Export {
        #[arg(long)]
        study: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a checkpoint of every chain head now and export it with the public key.
    Checkpoint {
        /// Directory to export checkpoints to (default: DATA_DIR/checkpoints).
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Check an exported checkpoint file against a public key file, outside the database.
    CheckpointVerify {
        file: PathBuf,
        #[arg(long)]
        public_key: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum StudyCommand {
    /// Import an ODM 1.3.x file into a study: its metadata versions (study definition)
    /// and, if the file has them, clinical data. All or nothing: a file with any error
    /// imports nothing and every problem is reported with its line.
    ImportOdm {
        file: PathBuf,
        /// The Trellis study (code) to import into.
        #[arg(long)]
        study: String,
        /// Create the study if it does not exist, for this sponsor (organization name).
        #[arg(long)]
        sponsor: Option<String>,
        /// Time zone of a study created by this import.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// Site (code) for subjects the file creates without a SiteRef matching a site code.
        #[arg(long)]
        site: Option<String>,
        /// The user the import is recorded for in the audit trail (default: the system).
        #[arg(long = "as")]
        as_user: Option<String>,
        /// Import the study definition only and leave the file's clinical data out (to
        /// create a study from another system's export, add its sites, then import the
        /// same file again for its data). The data are still read and checked: a file
        /// whose data do not fit its definition is refused either way.
        #[arg(long)]
        metadata_only: bool,
    },
    /// Add a site to a study (audited in the study's trail).
    AddSite {
        /// The study (code).
        #[arg(long)]
        study: String,
        /// Site code, unique in the study (e.g. DE-02).
        #[arg(long)]
        code: String,
        /// Site name (institution).
        #[arg(long)]
        name: String,
        /// ISO 3166-1 alpha-2 country code.
        #[arg(long)]
        country: String,
        /// IANA time zone of the site (e.g. Europe/Berlin).
        #[arg(long)]
        time_zone: String,
        /// The user the change is recorded for in the audit trail (default: the system).
        #[arg(long = "as")]
        as_user: Option<String>,
    },
    /// List studies with their sites.
    List,
    /// Read an ODM 1.3.x file and build its studies without touching the database:
    /// prints what would be imported, every warning (vendor extensions, unsupported
    /// elements) and every error with its line. Exits 1 if the file would be refused.
    CheckOdm {
        /// The ODM XML file (REDCap, OpenClinica, CDISC and other EDC exports).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write a study as ODM 1.3.2: metadata, admin data and clinical data with its
    /// audit records and signatures.
    Odm {
        /// The study (code); or --all.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        study: Option<String>,
        /// Every study with a study definition.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        out: PathBuf,
        /// `full`: every change as a transaction with its audit record (FileType
        /// Transactional); `none`: current values only (Snapshot).
        #[arg(long, value_enum, default_value = "full")]
        audit: AuditDetail,
    },
    /// Write current values as CSV: one form (a row per form instance, or per log row),
    /// or --wide (a row per subject, a column per item address). Columns follow the
    /// study's newest metadata version.
    Csv {
        /// The study (code).
        #[arg(long)]
        study: String,
        /// The form's OID (e.g. F.VS); or --wide.
        #[arg(long, conflicts_with = "wide", required_unless_present = "wide")]
        form: Option<String>,
        /// Every form, one row per subject.
        #[arg(long)]
        wide: bool,
        /// Output file; standard output if omitted.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AuditDetail {
    Full,
    None,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy a whole installation into an empty database (e.g. SQLite to PostgreSQL).
    Copy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}
