//! The server and administration commands.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use trellis_domain::{
    DisplayName, Email, OrgKind, Role, RoleGrantId, TzName, UserId, Username, UtcMicros,
};
use trellis_store::{
    Actor, AuditFilter, Chain, DatabaseUrl, Mutation, NewUser, Store, StoreError, StoreOptions,
    WriteRequest,
};

use crate::cli::{AuditCommand, ExportFormat, UserCommand};
use crate::config::{self, Common, Serve};

pub async fn serve(common: &Common, s: Serve) -> anyhow::Result<()> {
    let store = crate::open(common, s.demo, s.synchronous_full).await?;
    let key = config::checkpoint_key(&common.data_dir)?;
    if s.demo {
        match trellis_server::demo::seed(&store).await? {
            Some(c) => {
                println!(
                    "\nDemo study ACME-HTN-301 created (two sites: DE-01 Berlin, US-01 Boston)."
                );
                println!(
                    "  administrator: user `{}`, one-time password `{}`",
                    c.admin_username, c.admin_password
                );
                println!(
                    "  one user per role, all with password `{}`:",
                    c.role_users_password
                );
                for (u, r) in &c.role_users {
                    println!("    {u:<14} {r}");
                }
            }
            None => println!(
                "\nDemo data already present; sign in with the accounts printed when it was created (reset with `trellis user passwd admin`)."
            ),
        }
    }
    // The effective configuration is a security-relevant record: audit it at every start.
    let settings = format!(
        "server start: listen {}, database {}, sqlite synchronous {}, session idle {} s, session absolute {} s, lockout after {}, secure cookies {}, checkpoint interval {}",
        s.listen,
        store.url(),
        if s.synchronous_full { "FULL" } else { "NORMAL" },
        s.server.session_idle.as_secs(),
        s.server.session_absolute.as_secs(),
        s.server.lockout_after,
        s.server.secure_cookies,
        s.checkpoint_interval
            .map_or("off".to_owned(), |d| format!("{} s", d.as_secs())),
    );
    store
        .write(WriteRequest::new(
            Actor::system(),
            vec![Mutation::SecurityEvent {
                kind: "configuration".into(),
                detail: settings,
            }],
        ))
        .await?;
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("listening on {}", s.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "\nTrellis is serving http://{addr}/ on {} (database {})\n",
        store.backend_name(),
        store.url()
    );
    let _ = std::io::stdout().flush();
    if let Some(every) = s.checkpoint_interval {
        let (store, dir) = (store.clone(), common.data_dir.join("checkpoints"));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = checkpoint(&store, &key, &dir).await {
                    tracing::error!(error = %e, "periodic audit checkpoint failed");
                }
            }
        });
    }
    let state =
        trellis_server::AppState::new(store.clone(), s.server).map_err(anyhow::Error::msg)?;
    trellis_server::serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    store.close().await;
    Ok(())
}

/// Signs a checkpoint of every chain whose head moved since its last checkpoint, stores it and exports it.
pub async fn checkpoint(
    store: &Store,
    key: &trellis_audit::CheckpointKey,
    dir: &std::path::Path,
) -> anyhow::Result<usize> {
    let existing = store.checkpoints().await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("checkpoint.pub"), key.public_key_text())?;
    let now = UtcMicros::from_timestamp(jiff::Timestamp::now());
    let mut n = 0;
    for (chain, head) in store.chain_heads().await? {
        if head.seq == 0 || existing.iter().any(|c| c.chain == chain && c.head == head) {
            continue;
        }
        let cp = key.sign(chain, head, now);
        store.insert_checkpoint(&cp).await?;
        let name = format!("{}-{:012}.checkpoint", chain.id(), head.seq);
        std::fs::write(dir.join(name), cp.to_text())?;
        n += 1;
    }
    Ok(n)
}

fn v<T>(r: Result<T, trellis_domain::ValidationError>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) async fn find_user(
    store: &Store,
    username: &str,
) -> anyhow::Result<trellis_store::User> {
    store
        .user_by_name(username)
        .await?
        .with_context(|| format!("no user named `{username}`"))
}

async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || trellis_server::auth::hash_password(&password))
        .await?
        .map_err(anyhow::Error::msg)
}

pub async fn user(store: &Store, cmd: UserCommand) -> anyhow::Result<()> {
    let cli_actor = Actor {
        id: uuid::Uuid::nil(),
        name: format!(
            "trellis CLI ({})",
            std::env::var("USER").unwrap_or_else(|_| "unknown operator".into())
        ),
    };
    match cmd {
        UserCommand::Add {
            username,
            name,
            email,
            org,
            time_zone,
            locale,
        } => {
            let orgs = store.organizations().await?;
            let org = match org {
                Some(n) => orgs
                    .iter()
                    .find(|o| o.name == n)
                    .with_context(|| format!("no organization named `{n}`"))?,
                None => orgs
                    .iter()
                    .find(|o| o.kind == OrgKind::Cro)
                    .context("no CRO organization exists yet; name one with --org")?,
            };
            let password = trellis_server::auth::generate_password();
            let u = NewUser {
                id: UserId::new(),
                username: v(Username::parse(&username))?,
                display_name: v(DisplayName::parse(&name))?,
                email: email
                    .as_deref()
                    .map(Email::parse)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                org: org.id,
                time_zone: v(TzName::parse(&time_zone))?,
                locale: trellis_server::i18n::supported(&locale).to_owned(),
                password_hash: hash(password.clone()).await?,
                must_change_password: true,
            };
            store
                .write(WriteRequest::new(
                    cli_actor,
                    vec![Mutation::CreateUser(Box::new(u))],
                ))
                .await?;
            println!("user `{username}` created; one-time password: {password}");
        }
        UserCommand::Passwd { username } => {
            let u = find_user(store, &username).await?;
            let password = trellis_server::auth::generate_password();
            store
                .write(WriteRequest::new(
                    cli_actor,
                    vec![Mutation::SetPassword {
                        user: u.id,
                        password_hash: hash(password.clone()).await?,
                        must_change: true,
                    }],
                ))
                .await?;
            println!("new one-time password for `{username}`: {password}");
        }
        UserCommand::Lock { username } => {
            let u = find_user(store, &username).await?;
            store
                .write(WriteRequest::new(
                    cli_actor,
                    vec![Mutation::LockUser { user: u.id }],
                ))
                .await?;
            println!("`{username}` locked");
        }
        UserCommand::Unlock { username } => {
            let u = find_user(store, &username).await?;
            store
                .write(WriteRequest::new(
                    cli_actor,
                    vec![Mutation::UnlockUser { user: u.id }],
                ))
                .await?;
            println!("`{username}` unlocked");
        }
        UserCommand::Grant {
            username,
            role,
            study,
            site,
        } => {
            let u = find_user(store, &username).await?;
            let role: Role = role.parse()?;
            let study = match study {
                Some(code) => Some(find_study(store, &code).await?),
                None => None,
            };
            let site = match (&study, site) {
                (Some(s), Some(code)) => Some(
                    store
                        .sites(s.id)
                        .await?
                        .into_iter()
                        .find(|x| x.code == code)
                        .with_context(|| format!("study {} has no site `{code}`", s.code))?
                        .id,
                ),
                (None, Some(_)) => bail!("--site needs --study"),
                (_, None) => None,
            };
            store
                .write(WriteRequest::new(
                    cli_actor,
                    vec![Mutation::GrantRole {
                        id: RoleGrantId::new(),
                        user: u.id,
                        role,
                        study: study.map(|s| s.id),
                        site,
                    }],
                ))
                .await?;
            println!("granted {role} to `{username}`");
        }
        UserCommand::Token { username, name } => {
            let u = find_user(store, &username).await?;
            let token = trellis_server::auth::random_token();
            let id = trellis_domain::ApiTokenId::new();
            store
                .write(WriteRequest::new(
                    cli_actor,
                    vec![Mutation::IssueApiToken {
                        id,
                        user: u.id,
                        name,
                        token_hash: trellis_server::auth::token_hash(&token),
                    }],
                ))
                .await?;
            println!("{token}");
            eprintln!(
                "API token {id} for `{username}` (shown once; send as `Authorization: Bearer <token>`)"
            );
        }
        UserCommand::List => {
            let grants = store.grants(None).await?;
            let studies = store.studies().await?;
            for u in store.users().await? {
                let roles: Vec<String> = grants
                    .iter()
                    .filter(|g| g.user == u.id && g.revoked_at.is_none())
                    .map(
                        |g| match g.study.and_then(|s| studies.iter().find(|x| x.id == s)) {
                            Some(s) => format!("{}@{}", g.role, s.code),
                            None => g.role.to_string(),
                        },
                    )
                    .collect();
                println!(
                    "{:<16} {:<28} {:<7} {}",
                    u.username,
                    u.display_name,
                    if u.locked_at.is_some() {
                        "LOCKED"
                    } else {
                        "active"
                    },
                    roles.join(", ")
                );
            }
        }
    }
    Ok(())
}

pub(crate) async fn find_study(
    store: &Store,
    code_or_id: &str,
) -> anyhow::Result<trellis_store::Study> {
    if let Ok(id) = code_or_id.parse()
        && let Some(s) = store.study(id).await?
    {
        return Ok(s);
    }
    store
        .study_by_code(code_or_id)
        .await?
        .with_context(|| format!("no study `{code_or_id}`"))
}

async fn chain_arg(store: &Store, study: Option<String>) -> anyhow::Result<Option<Chain>> {
    Ok(match study.as_deref() {
        None => None,
        Some("installation") => Some(Chain::Installation),
        Some(s) => Some(Chain::Study(find_study(store, s).await?.id)),
    })
}

pub async fn audit(common: &Common, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { study } => {
            let store = crate::open(common, false, true).await?;
            let chain = chain_arg(&store, study).await?;
            match store.verify_audit(chain).await {
                Ok(chains) => {
                    let checkpoints = store.checkpoints().await?;
                    for c in &chains {
                        println!(
                            "ok  {:<52} {:>9} entries  head {}",
                            c.chain.to_string(),
                            c.entries,
                            hex::encode(&c.head.hash[..8])
                        );
                    }
                    // A checkpoint whose head is not on the chain any more means history was rewritten.
                    let key = config::checkpoint_key(&common.data_dir)?;
                    for cp in &checkpoints {
                        if cp.verify(&key.public_key()).is_err() {
                            println!(
                                "BAD checkpoint of {} at entry {}: signature does not verify",
                                cp.chain, cp.head.seq
                            );
                            return Ok(ExitCode::FAILURE);
                        }
                        let page = store
                            .chain_page(cp.chain, cp.head.seq.saturating_sub(1), 1)
                            .await?;
                        if page.first().map(|e| e.hash) != Some(cp.head.hash) {
                            println!(
                                "BAD {}: entry {} differs from the checkpoint signed at {}",
                                cp.chain, cp.head.seq, cp.created_at
                            );
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                    println!(
                        "audit trail verified: {} chain(s), {} signed checkpoint(s) consistent",
                        chains.len(),
                        checkpoints.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(StoreError::Integrity(e)) => {
                    println!("BAD {e}");
                    println!("first bad entry: {} entry {}", chain_name(&e), e.seq());
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e.into()),
            }
        }
        AuditCommand::Export { study, format, out } => {
            let store = crate::open(common, false, true).await?;
            let chain = chain_arg(&store, study).await?;
            let mut f = AuditFilter {
                chain,
                limit: 5000,
                ..Default::default()
            };
            let mut w: Box<dyn std::io::Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            if matches!(format, ExportFormat::Csv) {
                writeln!(w, "{}", trellis_server::api::AUDIT_CSV_HEADER)?;
            } else {
                writeln!(w, "[")?;
            }
            let mut first = true;
            loop {
                let page = store.audit_entries(&f).await?;
                for e in &page {
                    match format {
                        ExportFormat::Csv => writeln!(w, "{}", csv_row(e))?,
                        ExportFormat::Json => {
                            writeln!(
                                w,
                                "{}{}",
                                if first { "" } else { "," },
                                serde_json::to_string(&json_row(e))?
                            )?;
                        }
                    }
                    first = false;
                }
                if page.len() < f.limit as usize {
                    break;
                }
                f.after = page
                    .last()
                    .map(|e| (e.body.recorded_at.as_micros(), e.body.entry_id));
            }
            if matches!(format, ExportFormat::Json) {
                writeln!(w, "]")?;
            }
            w.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { export } => {
            let store = crate::open(common, false, true).await?;
            let key = config::checkpoint_key(&common.data_dir)?;
            let dir = export.unwrap_or_else(|| common.data_dir.join("checkpoints"));
            let n = checkpoint(&store, &key, &dir).await?;
            println!(
                "{n} checkpoint(s) signed with key {} and exported to {}",
                key.key_id(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::CheckpointVerify { file, public_key } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let pk = trellis_audit::parse_public_key(
                &std::fs::read_to_string(&public_key)
                    .with_context(|| format!("reading {}", public_key.display()))?,
            )?;
            match trellis_audit::Checkpoint::parse_and_verify(&text, &pk) {
                Ok(cp) => {
                    println!(
                        "ok  {}: {} entries, head {}, signed {}",
                        cp.chain,
                        cp.head.seq,
                        hex::encode(cp.head.hash),
                        cp.created_at
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("BAD {}: {e}", file.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn chain_name(e: &trellis_audit::ChainError) -> String {
    match e {
        trellis_audit::ChainError::SequenceBroken { chain, .. }
        | trellis_audit::ChainError::LinkBroken { chain, .. }
        | trellis_audit::ChainError::ContentAltered { chain, .. }
        | trellis_audit::ChainError::HeadMismatch { chain, .. }
        | trellis_audit::ChainError::WrongChain { chain, .. } => chain.to_string(),
    }
}

fn csv_row(e: &trellis_store::StoredEntry) -> String {
    trellis_server::api::audit_csv_row(e)
}

fn json_row(e: &trellis_store::StoredEntry) -> serde_json::Value {
    trellis_server::api::entry_json(e)
}

pub async fn db_copy(from: &str, to: &str) -> anyhow::Result<()> {
    let from_url = DatabaseUrl::parse(from)?;
    let to_url = DatabaseUrl::parse(to)?;
    let src = Store::open(&from_url, &StoreOptions::default())
        .await
        .with_context(|| format!("opening {from_url}"))?;
    let dst = Store::open(
        &to_url,
        &StoreOptions {
            create: true,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("opening {to_url}"))?;
    dst.migrate().await?;
    let n = trellis_store::copy_installation(&src, &dst).await?;
    let chains = dst.verify_audit(None).await?;
    println!(
        "copied {from_url} to {to_url}: {n} rows; audit trail verified on the target ({} chains)",
        chains.len()
    );
    Ok(())
}
