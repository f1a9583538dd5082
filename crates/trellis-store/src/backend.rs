//! The SQL of the store, written once and instantiated for each backend.
//!
//! Both backends accept the same statements (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`); the few differences are macro parameters: how a write
//! transaction begins and how a chain head is locked.

/// Instantiates the backend module's queries for one sqlx database.
macro_rules! backend_impl {
    ($db:ty, $conn:ty, begin = $begin:literal, lock_suffix = $lock:literal) => {
        use std::collections::BTreeMap;

        use sqlx::{Connection as _, Row as _};
        use trellis_audit::{Chain, ChainHead, EntryBody, StoredEntry, entry_hash};
        use trellis_domain::*;
        use uuid::Uuid;

        use $crate::error::{Result, StoreError};
        use $crate::model::*;

        pub(crate) type Pool = sqlx::Pool<$db>;
        type Conn = $conn;
        type DbRow = <$db as sqlx::Database>::Row;

        fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
            <[u8; 32]>::try_from(v.as_slice())
                .map_err(|_| StoreError::invalid(what.to_owned(), "stored hash is not 32 bytes"))
        }

        fn tz(s: String) -> TzName {
            // Stored zones were validated on the way in; an unknown one shows as UTC rather than failing a read.
            TzName::parse(&s).unwrap_or_else(|_| TzName::utc())
        }

        fn parse_enum<T: std::str::FromStr>(s: &str, what: &str) -> Result<T> {
            s.parse()
                .map_err(|_| StoreError::invalid(what.to_owned(), format!("unknown stored value `{s}`")))
        }

        // ---------------------------------------------------------------- audit chain

        async fn load_head(conn: &mut Conn, chain: Chain) -> Result<ChainHead> {
            sqlx::query("INSERT INTO chain_heads (chain_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (chain_id) DO NOTHING")
                .bind(chain.id())
                .bind(trellis_audit::GENESIS_HASH.to_vec())
                .execute(&mut *conn)
                .await?;
            let row = sqlx::query(concat!("SELECT seq, hash FROM chain_heads WHERE chain_id = $1", $lock))
                .bind(chain.id())
                .fetch_one(&mut *conn)
                .await?;
            Ok(ChainHead {
                seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
                hash: hash32(row.try_get("hash")?, "chain_heads.hash")?,
            })
        }

        async fn store_head(conn: &mut Conn, chain: Chain, head: ChainHead) -> Result<()> {
            sqlx::query("UPDATE chain_heads SET seq = $2, hash = $3 WHERE chain_id = $1")
                .bind(chain.id())
                .bind(i64::try_from(head.seq).unwrap_or(i64::MAX))
                .bind(head.hash.to_vec())
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        fn entry_from_row(row: &DbRow) -> Result<StoredEntry> {
            Ok(StoredEntry {
                chain: Chain::from_id(row.try_get("chain_id")?),
                seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
                prev_hash: hash32(row.try_get("prev_hash")?, "audit_entries.prev_hash")?,
                hash: hash32(row.try_get("hash")?, "audit_entries.hash")?,
                body: EntryBody {
                    entry_id: row.try_get("entry_id")?,
                    recorded_at: UtcMicros::from_micros(row.try_get("recorded_at")?),
                    actor_id: row.try_get("actor_id")?,
                    actor_name: row.try_get("actor_name")?,
                    action: row.try_get("action")?,
                    entity_type: row.try_get("entity_type")?,
                    entity_id: row.try_get("entity_id")?,
                    field: row.try_get("field")?,
                    old_value: row.try_get("old_value")?,
                    new_value: row.try_get("new_value")?,
                    reason: row.try_get("reason")?,
                    request_id: row.try_get("request_id")?,
                    site_id: row.try_get("site_id")?,
                    subject_id: row.try_get("subject_id")?,
                },
            })
        }

        // ---------------------------------------------------------------- the write path

        /// An audit entry produced by a mutation, before it is chained.
        struct Pending {
            chain: Chain,
            body: EntryBody,
        }

        struct Ctx<'a> {
            req: &'a WriteRequest,
            now: UtcMicros,
            out: Vec<Pending>,
        }

        impl Ctx<'_> {
            #[allow(clippy::too_many_arguments)]
            fn audit(
                &mut self,
                chain: Chain,
                action: &str,
                entity_type: &str,
                entity_id: String,
                field: Option<&str>,
                old_value: Option<String>,
                new_value: Option<String>,
                site: Option<Uuid>,
                subject: Option<Uuid>,
            ) {
                let is_change = old_value.is_some();
                self.out.push(Pending {
                    chain,
                    body: EntryBody {
                        entry_id: Uuid::now_v7(),
                        recorded_at: self.now,
                        actor_id: self.req.actor.id,
                        actor_name: self.req.actor.name.clone(),
                        action: action.to_owned(),
                        entity_type: entity_type.to_owned(),
                        entity_id,
                        field: field.map(str::to_owned),
                        old_value,
                        new_value,
                        // The reason is recorded on changes; first entries need none.
                        reason: if is_change || action != "create" { self.req.reason.clone() } else { None },
                        request_id: self.req.request_id.clone(),
                        site_id: site,
                        subject_id: subject,
                    },
                });
            }

            fn require_reason(&self, entity: &'static str, field: &str) -> Result<()> {
                match self.req.reason.as_deref().map(str::trim) {
                    Some(r) if !r.is_empty() => Ok(()),
                    _ => Err(StoreError::ReasonRequired { entity, field: field.to_owned() }),
                }
            }
        }

        fn check_item_key(key: &str) -> Result<()> {
            let ok = !key.is_empty()
                && key.len() <= 100
                && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if ok {
                Ok(())
            } else {
                Err(StoreError::invalid(
                    format!("values.{key}"),
                    "item keys are 1-100 characters of letters, digits, '_', '.', '-'",
                ))
            }
        }

        async fn subject_site(conn: &mut Conn, study: StudyId, subject: SubjectId) -> Result<Uuid> {
            sqlx::query("SELECT site_id FROM subjects WHERE study_id = $1 AND subject_id = $2")
                .bind(study.as_uuid())
                .bind(subject.as_uuid())
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get::<Uuid, _>("site_id"))
                .transpose()?
                .ok_or(StoreError::NotFound { entity: "subject", id: subject.to_string() })
        }

        async fn apply(conn: &mut Conn, ctx: &mut Ctx<'_>, m: &Mutation) -> Result<()> {
            let now = ctx.now.as_micros();
            let chain = m.chain();
            match m {
                Mutation::CreateOrganization { id, kind, name } => {
                    sqlx::query("INSERT INTO organizations (org_id, kind, name, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(id.as_uuid()).bind(kind.as_str()).bind(name.as_str()).bind(now)
                        .execute(&mut *conn).await?;
                    for (f, v) in [("kind", kind.as_str()), ("name", name.as_str())] {
                        ctx.audit(chain, "create", "organization", id.to_string(), Some(f), None, Some(v.to_owned()), None, None);
                    }
                }
                Mutation::CreateStudy { id, sponsor, code, title, time_zone } => {
                    sqlx::query("INSERT INTO studies (study_id, sponsor_id, code, title, time_zone, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(id.as_uuid()).bind(sponsor.as_uuid()).bind(code.as_str()).bind(title.as_str()).bind(time_zone.as_str()).bind(now)
                        .execute(&mut *conn).await?;
                    for (f, v) in [("sponsor", sponsor.to_string()), ("code", code.to_string()), ("title", title.to_string()), ("time_zone", time_zone.to_string())] {
                        ctx.audit(chain, "create", "study", id.to_string(), Some(f), None, Some(v), None, None);
                    }
                }
                Mutation::CreateSite { study, id, code, name, country, time_zone } => {
                    sqlx::query("INSERT INTO sites (study_id, site_id, code, name, country, time_zone, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(study.as_uuid()).bind(id.as_uuid()).bind(code.as_str()).bind(name.as_str()).bind(country.as_str()).bind(time_zone.as_str()).bind(now)
                        .execute(&mut *conn).await?;
                    for (f, v) in [("code", code.as_str()), ("name", name.as_str()), ("country", country.as_str()), ("time_zone", time_zone.as_str())] {
                        ctx.audit(chain, "create", "site", id.to_string(), Some(f), None, Some(v.to_owned()), Some(id.as_uuid()), None);
                    }
                }
                Mutation::CreateSubject { study, id, site, screening_number } => {
                    let status = SubjectStatus::Screening;
                    sqlx::query("INSERT INTO subjects (study_id, subject_id, site_id, screening_number, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(study.as_uuid()).bind(id.as_uuid()).bind(site.as_uuid()).bind(screening_number.as_str()).bind(status.as_str()).bind(now)
                        .execute(&mut *conn).await?;
                    for (f, v) in [("site", site.to_string()), ("screening_number", screening_number.to_string()), ("status", status.to_string())] {
                        ctx.audit(chain, "create", "subject", id.to_string(), Some(f), None, Some(v), Some(site.as_uuid()), Some(id.as_uuid()));
                    }
                }
                Mutation::SetSubjectStatus { study, id, status } => {
                    let row = sqlx::query("SELECT status, site_id FROM subjects WHERE study_id = $1 AND subject_id = $2")
                        .bind(study.as_uuid()).bind(id.as_uuid())
                        .fetch_optional(&mut *conn).await?
                        .ok_or(StoreError::NotFound { entity: "subject", id: id.to_string() })?;
                    let old: String = row.try_get("status")?;
                    let site: Uuid = row.try_get("site_id")?;
                    if old != status.as_str() {
                        ctx.require_reason("subject", "status")?;
                        sqlx::query("UPDATE subjects SET status = $3 WHERE study_id = $1 AND subject_id = $2")
                            .bind(study.as_uuid()).bind(id.as_uuid()).bind(status.as_str())
                            .execute(&mut *conn).await?;
                        ctx.audit(chain, "update", "subject", id.to_string(), Some("status"), Some(old), Some(status.to_string()), Some(site), Some(id.as_uuid()));
                    }
                }
                Mutation::SaveItems { study, subject, values } => {
                    let mut seen = std::collections::BTreeSet::new();
                    for (key, value) in values {
                        check_item_key(key)?;
                        if !seen.insert(key.as_str()) {
                            return Err(StoreError::invalid(format!("values.{key}"), "appears twice in one save"));
                        }
                        if let Some(v) = value && v.chars().count() > 4000 {
                            return Err(StoreError::invalid(format!("values.{key}"), "must be at most 4000 characters"));
                        }
                    }
                    // One round trip for the current values, one for all new rows: a save costs
                    // a handful of statements whatever its size (PostgreSQL is a network away).
                    // The subject's site and the items' current values in one statement.
                    let mut existing: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
                    let mut site: Option<Uuid> = None;
                    for chunk in values.chunks(500) {
                        let list = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ");
                        let sql = format!(
                            "SELECT s.site_id, v.item_key, v.value FROM subjects s LEFT JOIN item_values v \
                             ON v.study_id = s.study_id AND v.subject_id = s.subject_id AND v.item_key IN ({list}) \
                             WHERE s.study_id = $1 AND s.subject_id = $2"
                        );
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(study.as_uuid()).bind(subject.as_uuid());
                        for (k, _) in chunk {
                            q = q.bind(k);
                        }
                        for row in q.fetch_all(&mut *conn).await? {
                            site = Some(row.try_get("site_id")?);
                            if let Some(key) = row.try_get::<Option<String>, _>("item_key")? {
                                existing.insert(key, row.try_get("value")?);
                            }
                        }
                    }
                    let site = match site {
                        Some(s) => s,
                        None => subject_site(conn, *study, *subject).await?,
                    };
                    let mut inserts: Vec<(&String, &Option<String>)> = Vec::new();
                    for (key, value) in values {
                        match existing.get(key) {
                            None => {
                                inserts.push((key, value));
                                ctx.audit(chain, "create", "item", format!("{subject}/{key}"), Some(key), None, value.clone(), Some(site), Some(subject.as_uuid()));
                            }
                            Some(old) if old != value => {
                                ctx.require_reason("item", key)?;
                                sqlx::query("UPDATE item_values SET value = $4, updated_at = $5 WHERE study_id = $1 AND subject_id = $2 AND item_key = $3")
                                    .bind(study.as_uuid()).bind(subject.as_uuid()).bind(key).bind(value).bind(now)
                                    .execute(&mut *conn).await?;
                                // An absent old value is recorded as empty text so the entry reads as a change.
                                ctx.audit(chain, "update", "item", format!("{subject}/{key}"), Some(key), Some(old.clone().unwrap_or_default()), value.clone(), Some(site), Some(subject.as_uuid()));
                            }
                            Some(_) => {}
                        }
                    }
                    for chunk in inserts.chunks(500) {
                        let rows = (0..chunk.len()).map(|i| format!("($1, $2, $3, ${}, ${})", 4 + 2 * i, 5 + 2 * i)).collect::<Vec<_>>().join(", ");
                        let sql = format!("INSERT INTO item_values (study_id, subject_id, updated_at, item_key, value) VALUES {rows}");
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(study.as_uuid()).bind(subject.as_uuid()).bind(now);
                        for (k, v) in chunk {
                            q = q.bind(*k).bind(*v);
                        }
                        q.execute(&mut *conn).await?;
                    }
                }
                Mutation::CreateUser(u) => {
                    sqlx::query("INSERT INTO users (user_id, username, display_name, email, org_id, time_zone, locale, password_hash, password_changed_at, must_change_password, failed_sign_ins, created_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $9)")
                        .bind(u.id.as_uuid()).bind(u.username.as_str()).bind(u.display_name.as_str()).bind(u.email.as_ref().map(Email::as_str))
                        .bind(u.org.as_uuid()).bind(u.time_zone.as_str()).bind(&u.locale).bind(&u.password_hash).bind(now).bind(u.must_change_password)
                        .execute(&mut *conn).await?;
                    let fields: [(&str, Option<String>); 6] = [
                        ("username", Some(u.username.to_string())),
                        ("display_name", Some(u.display_name.to_string())),
                        ("email", u.email.as_ref().map(ToString::to_string)),
                        ("organization", Some(u.org.to_string())),
                        ("time_zone", Some(u.time_zone.to_string())),
                        ("locale", Some(u.locale.clone())),
                    ];
                    for (f, v) in fields {
                        ctx.audit(chain, "create", "user", u.id.to_string(), Some(f), None, v, None, None);
                    }
                }
                Mutation::SetPassword { user, password_hash, must_change } => {
                    let n = sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = $3, must_change_password = $4, failed_sign_ins = 0 WHERE user_id = $1")
                        .bind(user.as_uuid()).bind(password_hash).bind(now).bind(*must_change)
                        .execute(&mut *conn).await?.rows_affected();
                    if n == 0 { return Err(StoreError::NotFound { entity: "user", id: user.to_string() }); }
                    // The hash itself never enters the audit trail.
                    ctx.audit(chain, "password_change", "user", user.to_string(), Some("password"), None, Some(if *must_change { "reset (must change at next sign-in)".into() } else { "changed".into() }), None, None);
                }
                Mutation::SetTotp { user, secret } => {
                    let n = sqlx::query("UPDATE users SET totp_secret = $2 WHERE user_id = $1")
                        .bind(user.as_uuid()).bind(secret)
                        .execute(&mut *conn).await?.rows_affected();
                    if n == 0 { return Err(StoreError::NotFound { entity: "user", id: user.to_string() }); }
                    // The secret never enters the audit trail.
                    ctx.audit(chain, if secret.is_some() { "totp_enable" } else { "totp_disable" }, "user", user.to_string(), Some("second_factor"), None, Some(secret.is_some().to_string()), None, None);
                }
                Mutation::LockUser { user } | Mutation::UnlockUser { user } => {
                    let lock = matches!(m, Mutation::LockUser { .. });
                    let n = sqlx::query("UPDATE users SET locked_at = $2, failed_sign_ins = CASE WHEN $3 THEN failed_sign_ins ELSE 0 END WHERE user_id = $1")
                        .bind(user.as_uuid()).bind(lock.then_some(now)).bind(lock)
                        .execute(&mut *conn).await?.rows_affected();
                    if n == 0 { return Err(StoreError::NotFound { entity: "user", id: user.to_string() }); }
                    ctx.audit(chain, if lock { "lock" } else { "unlock" }, "user", user.to_string(), Some("locked"), None, Some(lock.to_string()), None, None);
                }
                Mutation::GrantRole { id, user, role, study, site } => {
                    if role.is_installation_wide() != study.is_none() {
                        return Err(StoreError::invalid("study", if role.is_installation_wide() {
                            format!("role {role} is installation-wide and is granted without a study")
                        } else {
                            format!("role {role} is granted for a study: name the study")
                        }));
                    }
                    if site.is_some() && !role.is_site_scoped() {
                        return Err(StoreError::invalid("site", format!("role {role} applies to a whole study, not to a site")));
                    }
                    sqlx::query("INSERT INTO role_grants (grant_id, user_id, role, study_id, site_id, granted_at, granted_by) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(id.as_uuid()).bind(user.as_uuid()).bind(role.as_str()).bind(study.map(|s| s.as_uuid())).bind(site.map(|s| s.as_uuid())).bind(now).bind(ctx.req.actor.id)
                        .execute(&mut *conn).await?;
                    let scope = match (study, site) {
                        (None, _) => "installation".to_owned(),
                        (Some(s), None) => format!("study {s}"),
                        (Some(s), Some(x)) => format!("study {s} site {x}"),
                    };
                    ctx.audit(chain, "grant_role", "user", user.to_string(), Some("role"), None, Some(format!("{role} ({scope}) grant {id}")), site.map(|s| s.as_uuid()), None);
                }
                Mutation::RevokeRole { id } => {
                    let row = sqlx::query("UPDATE role_grants SET revoked_at = $2 WHERE grant_id = $1 AND revoked_at IS NULL RETURNING user_id, role")
                        .bind(id.as_uuid()).bind(now)
                        .fetch_optional(&mut *conn).await?
                        .ok_or(StoreError::NotFound { entity: "active role grant", id: id.to_string() })?;
                    let user: Uuid = row.try_get("user_id")?;
                    let role: String = row.try_get("role")?;
                    ctx.audit(chain, "revoke_role", "user", user.to_string(), Some("role"), Some(format!("{role} grant {id}")), Some("revoked".into()), None, None);
                }
                Mutation::SignIn { user, outcome, lockout_after } => match outcome {
                    SignInOutcome::Success => {
                        sqlx::query("UPDATE users SET failed_sign_ins = 0 WHERE user_id = $1").bind(user.as_uuid()).execute(&mut *conn).await?;
                        ctx.audit(chain, "sign_in", "user", user.to_string(), None, None, None, None, None);
                    }
                    SignInOutcome::Failure => {
                        let row = sqlx::query("UPDATE users SET failed_sign_ins = failed_sign_ins + 1 WHERE user_id = $1 RETURNING failed_sign_ins, locked_at")
                            .bind(user.as_uuid())
                            .fetch_optional(&mut *conn).await?
                            .ok_or(StoreError::NotFound { entity: "user", id: user.to_string() })?;
                        let failures: i64 = row.try_get("failed_sign_ins")?;
                        let locked: Option<i64> = row.try_get("locked_at")?;
                        ctx.audit(chain, "sign_in_failed", "user", user.to_string(), Some("failed_sign_ins"), None, Some(failures.to_string()), None, None);
                        if locked.is_none() && failures >= i64::from(*lockout_after) {
                            sqlx::query("UPDATE users SET locked_at = $2 WHERE user_id = $1").bind(user.as_uuid()).bind(now).execute(&mut *conn).await?;
                            ctx.audit(chain, "lockout", "user", user.to_string(), Some("locked"), None, Some(format!("true after {failures} failed sign-ins")), None, None);
                        }
                    }
                },
                Mutation::IssueApiToken { id, user, name, token_hash } => {
                    if name.trim().is_empty() || name.chars().count() > 100 {
                        return Err(StoreError::invalid("name", "token name must be 1-100 characters"));
                    }
                    sqlx::query("INSERT INTO api_tokens (token_id, token_hash, user_id, name, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(id.as_uuid()).bind(token_hash.to_vec()).bind(user.as_uuid()).bind(name).bind(now)
                        .execute(&mut *conn).await?;
                    ctx.audit(chain, "api_token_issue", "user", user.to_string(), Some("api_token"), None, Some(format!("{name} ({id})")), None, None);
                }
                Mutation::SecurityEvent { kind, detail } => {
                    if kind.is_empty() || kind.len() > 64 {
                        return Err(StoreError::invalid("kind", "security event kind must be 1-64 characters"));
                    }
                    ctx.audit(chain, kind, "installation", "installation".into(), None, None, Some(detail.clone()), None, None);
                }
                Mutation::Sign { study, id, signer, printed_name, meaning, entity_type, entity_id, content_hash } => {
                    sqlx::query("INSERT INTO signatures (study_id, signature_id, signer_id, printed_name, meaning, signed_at, entity_type, entity_id, content_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                        .bind(study.as_uuid()).bind(id.as_uuid()).bind(signer.as_uuid()).bind(printed_name).bind(meaning.as_str()).bind(now).bind(entity_type).bind(entity_id).bind(content_hash.to_vec())
                        .execute(&mut *conn).await?;
                    ctx.audit(chain, "sign", entity_type, entity_id.clone(), Some("signature"), None,
                        Some(format!("{meaning} by {printed_name}; content sha256 {}; signature {id}", hex::encode(content_hash))), None, None);
                }
            }
            Ok(())
        }

        const ENTRY_COLUMNS: &str = "chain_id, seq, entry_id, recorded_at, actor_id, actor_name, action, entity_type, entity_id, field, old_value, new_value, reason, request_id, site_id, subject_id, prev_hash, hash";

        /// Inserts entries with multi-row statements (18 parameters a row, up to 10 rows a statement).
        async fn insert_entries(conn: &mut Conn, entries: &[StoredEntry]) -> Result<()> {
            // Small fixed-size chunks keep the statement texts few, so they stay prepared in the cache.
            for chunk in entries.chunks(10) {
                let rows = (0..chunk.len())
                    .map(|i| format!("({})", (1..=18).map(|c| format!("${}", i * 18 + c)).collect::<Vec<_>>().join(", ")))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!("INSERT INTO audit_entries ({ENTRY_COLUMNS}) VALUES {rows}");
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for e in chunk {
                    let b = &e.body;
                    q = q
                        .bind(e.chain.id())
                        .bind(i64::try_from(e.seq).unwrap_or(i64::MAX))
                        .bind(b.entry_id)
                        .bind(b.recorded_at.as_micros())
                        .bind(b.actor_id)
                        .bind(b.actor_name.clone())
                        .bind(b.action.clone())
                        .bind(b.entity_type.clone())
                        .bind(b.entity_id.clone())
                        .bind(b.field.clone())
                        .bind(b.old_value.clone())
                        .bind(b.new_value.clone())
                        .bind(b.reason.clone())
                        .bind(b.request_id.clone())
                        .bind(b.site_id)
                        .bind(b.subject_id)
                        .bind(e.prev_hash.to_vec())
                        .bind(e.hash.to_vec());
                }
                q.execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Chains pending entries onto the in-transaction heads and inserts them,
        /// or, with `deferred`, leaves them for one insert at the end of the batch
        /// (nothing in a transaction reads the audit table back).
        async fn append(conn: &mut Conn, heads: &mut BTreeMap<Chain, ChainHead>, pending: Vec<Pending>, receipt: &mut Receipt, deferred: Option<&mut Vec<StoredEntry>>) -> Result<()> {
            let mut entries = Vec::with_capacity(pending.len());
            for p in pending {
                let head = match heads.get(&p.chain) {
                    Some(h) => *h,
                    None => {
                        let h = load_head(conn, p.chain).await?;
                        heads.insert(p.chain, h);
                        h
                    }
                };
                let seq = head.seq + 1;
                let hash = entry_hash(p.chain, seq, &head.hash, &p.body);
                heads.insert(p.chain, ChainHead { seq, hash });
                receipt.entries.push((p.chain, seq));
                entries.push(StoredEntry { chain: p.chain, seq, prev_hash: head.hash, hash, body: p.body });
            }
            match deferred {
                Some(d) => {
                    d.extend(entries);
                    Ok(())
                }
                None => insert_entries(conn, &entries).await,
            }
        }

        async fn apply_request(conn: &mut Conn, heads: &mut BTreeMap<Chain, ChainHead>, req: &WriteRequest, now: UtcMicros, mut deferred: Option<&mut Vec<StoredEntry>>) -> Result<Receipt> {
            if let Some(r) = &req.reason && r.chars().count() > 2000 {
                return Err(StoreError::invalid("reason", "must be at most 2000 characters"));
            }
            let mut receipt = Receipt { entries: Vec::new(), committed_at: Some(now) };
            for m in &req.mutations {
                let mut ctx = Ctx { req, now, out: Vec::new() };
                apply(conn, &mut ctx, m).await?;
                append(conn, heads, ctx.out, &mut receipt, deferred.as_deref_mut()).await?;
            }
            Ok(receipt)
        }

        pub(crate) type Job = (WriteRequest, tokio::sync::oneshot::Sender<Result<Receipt>>);

        /// Applies a batch of requests in one transaction (group commit): each
        /// request is isolated by a savepoint, so one refused request does not
        /// affect the others, and all accepted ones become durable with one commit.
        /// One attempt at a batch. Optimistically (`isolate == false`) requests run
        /// without savepoints, saving two round trips each; the first refused request
        /// aborts the attempt with its index, and the caller retries with isolation.
        async fn run_batch(pool: &Pool, jobs: &[Job], isolate: bool) -> Result<std::result::Result<Vec<Result<Receipt>>, (usize, StoreError)>> {
            let mut results = Vec::with_capacity(jobs.len());
            let mut conn = pool.acquire().await?;
            let mut tx = conn.begin_with($begin).await?;
            let now = UtcMicros::from_timestamp(jiff::Timestamp::now());
            let mut heads: BTreeMap<Chain, ChainHead> = BTreeMap::new();
            // Lock every chain the batch touches in one order, so concurrent
            // batches on PostgreSQL cannot deadlock on chain heads.
            let mut chains: Vec<Chain> = jobs.iter().flat_map(|(r, _)| r.mutations.iter().map(Mutation::chain)).collect();
            chains.sort();
            chains.dedup();
            for c in chains {
                let h = load_head(&mut tx, c).await?;
                heads.insert(c, h);
            }
            let start_heads = heads.clone();
            let mut deferred: Vec<StoredEntry> = Vec::new();
            for (i, (req, _)) in jobs.iter().enumerate() {
                if !isolate {
                    match apply_request(&mut tx, &mut heads, req, now, Some(&mut deferred)).await {
                        Ok(r) => results.push(Ok(r)),
                        Err(e) => {
                            tx.rollback().await?;
                            return Ok(Err((i, e)));
                        }
                    }
                    continue;
                }
                sqlx::query("SAVEPOINT request").execute(&mut *tx).await?;
                let before = heads.clone();
                match apply_request(&mut tx, &mut heads, req, now, None).await {
                    Ok(r) => {
                        sqlx::query("RELEASE SAVEPOINT request").execute(&mut *tx).await?;
                        results.push(Ok(r));
                    }
                    Err(e) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT request").execute(&mut *tx).await?;
                        sqlx::query("RELEASE SAVEPOINT request").execute(&mut *tx).await?;
                        heads = before;
                        results.push(Err(e));
                    }
                }
            }
            insert_entries(&mut tx, &deferred).await?;
            for (c, h) in &heads {
                if start_heads.get(c) != Some(h) {
                    store_head(&mut tx, *c, *h).await?;
                }
            }
            tx.commit().await?;
            Ok(Ok(results))
        }

        /// Applies a batch of requests in one transaction (group commit): all
        /// accepted requests become durable with one commit, and a refused request
        /// leaves no trace and does not affect the others.
        pub(crate) async fn commit_batch(pool: &Pool, jobs: Vec<Job>) {
            let outcome: Result<Vec<Result<Receipt>>> = async {
                match run_batch(pool, &jobs, false).await? {
                    Ok(results) => Ok(results),
                    Err((_, e)) if jobs.len() == 1 => Ok(vec![Err(e)]),
                    Err(_) => match run_batch(pool, &jobs, true).await? {
                        Ok(results) => Ok(results),
                        // With isolation every refusal is recorded per request; this arm is unreachable in practice.
                        Err((_, e)) => Err(e),
                    },
                }
            }
            .await;
            match outcome {
                Ok(results) => {
                    for ((_, reply), r) in jobs.into_iter().zip(results) {
                        // The requester may have gone away; the write stands either way.
                        let _ = reply.send(r);
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for (_, reply) in jobs {
                        let _ = reply.send(Err(StoreError::Database(sqlx::Error::Protocol(format!("batch not committed: {msg}")))));
                    }
                }
            }
        }

        // ---------------------------------------------------------------- reads

        pub(crate) async fn chain_heads(pool: &Pool) -> Result<Vec<(Chain, ChainHead)>> {
            let rows = sqlx::query("SELECT chain_id, seq, hash FROM chain_heads ORDER BY chain_id").fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        Chain::from_id(r.try_get("chain_id")?),
                        ChainHead { seq: u64::try_from(r.try_get::<i64, _>("seq")?).unwrap_or(0), hash: hash32(r.try_get("hash")?, "chain_heads.hash")? },
                    ))
                })
                .collect()
        }

        /// A page of a chain's entries in sequence order, starting after `after_seq`.
        pub(crate) async fn chain_page(pool: &Pool, chain: Chain, after_seq: u64, limit: u32) -> Result<Vec<StoredEntry>> {
            let rows = sqlx::query("SELECT * FROM audit_entries WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
                .bind(chain.id())
                .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(entry_from_row).collect()
        }

        /// Distinct chain ids present in the entries table (a chain whose head row was deleted still shows).
        pub(crate) async fn entry_chains(pool: &Pool) -> Result<Vec<Chain>> {
            let rows = sqlx::query("SELECT DISTINCT chain_id FROM audit_entries").fetch_all(pool).await?;
            rows.iter().map(|r| Ok(Chain::from_id(r.try_get("chain_id")?))).collect()
        }

        pub(crate) async fn audit_entries(pool: &Pool, f: &AuditFilter) -> Result<Vec<StoredEntry>> {
            // Optional filters are written as `($n IS NULL OR col = $n)` so one static statement serves all.
            let sql = "SELECT * FROM audit_entries WHERE \
                ($1 IS NULL OR chain_id = $1) AND ($2 IS NULL OR site_id = $2) AND ($3 IS NULL OR subject_id = $3) \
                AND ($4 IS NULL OR actor_id = $4) AND ($5 IS NULL OR entity_type = $5) AND ($6 IS NULL OR entity_id = $6) \
                AND ($7 IS NULL OR recorded_at >= $7) AND ($8 IS NULL OR recorded_at < $8) \
                AND ($9 IS NULL OR recorded_at > $9 OR (recorded_at = $9 AND entry_id > $10)) \
                ORDER BY recorded_at, entry_id LIMIT $11";
            let rows = sqlx::query(sql)
                .bind(f.chain.map(Chain::id))
                .bind(f.site)
                .bind(f.subject)
                .bind(f.actor)
                .bind(f.entity_type.as_deref())
                .bind(f.entity_id.as_deref())
                .bind(f.from.map(UtcMicros::as_micros))
                .bind(f.to.map(UtcMicros::as_micros))
                .bind(f.after.map(|a| a.0))
                .bind(f.after.map(|a| a.1).unwrap_or(Uuid::nil()))
                .bind(i64::from(f.limit.clamp(1, 10_000)))
                .fetch_all(pool)
                .await?;
            rows.iter().map(entry_from_row).collect()
        }

        fn study_from_row(r: &DbRow) -> Result<Study> {
            Ok(Study {
                id: StudyId::from_uuid(r.try_get("study_id")?),
                sponsor: OrgId::from_uuid(r.try_get("sponsor_id")?),
                code: r.try_get("code")?,
                title: r.try_get("title")?,
                time_zone: tz(r.try_get("time_zone")?),
                created_at: UtcMicros::from_micros(r.try_get("created_at")?),
            })
        }

        pub(crate) async fn studies(pool: &Pool) -> Result<Vec<Study>> {
            let rows = sqlx::query("SELECT * FROM studies ORDER BY code").fetch_all(pool).await?;
            rows.iter().map(study_from_row).collect()
        }

        pub(crate) async fn study(pool: &Pool, id: StudyId) -> Result<Option<Study>> {
            let row = sqlx::query("SELECT * FROM studies WHERE study_id = $1").bind(id.as_uuid()).fetch_optional(pool).await?;
            row.as_ref().map(study_from_row).transpose()
        }

        pub(crate) async fn study_by_code(pool: &Pool, code: &str) -> Result<Option<Study>> {
            let row = sqlx::query("SELECT * FROM studies WHERE code = $1").bind(code).fetch_optional(pool).await?;
            row.as_ref().map(study_from_row).transpose()
        }

        pub(crate) async fn organizations(pool: &Pool) -> Result<Vec<Organization>> {
            let rows = sqlx::query("SELECT * FROM organizations ORDER BY name").fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(Organization {
                        id: OrgId::from_uuid(r.try_get("org_id")?),
                        kind: parse_enum(&r.try_get::<String, _>("kind")?, "organizations.kind")?,
                        name: r.try_get("name")?,
                        created_at: UtcMicros::from_micros(r.try_get("created_at")?),
                    })
                })
                .collect()
        }

        pub(crate) async fn sites(pool: &Pool, study: StudyId) -> Result<Vec<Site>> {
            let rows = sqlx::query("SELECT * FROM sites WHERE study_id = $1 ORDER BY code").bind(study.as_uuid()).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(Site {
                        study: StudyId::from_uuid(r.try_get("study_id")?),
                        id: SiteId::from_uuid(r.try_get("site_id")?),
                        code: r.try_get("code")?,
                        name: r.try_get("name")?,
                        country: r.try_get("country")?,
                        time_zone: tz(r.try_get("time_zone")?),
                        created_at: UtcMicros::from_micros(r.try_get("created_at")?),
                    })
                })
                .collect()
        }

        pub(crate) async fn subjects(pool: &Pool, study: StudyId) -> Result<Vec<Subject>> {
            let rows = sqlx::query("SELECT * FROM subjects WHERE study_id = $1 ORDER BY screening_number").bind(study.as_uuid()).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(Subject {
                        study: StudyId::from_uuid(r.try_get("study_id")?),
                        id: SubjectId::from_uuid(r.try_get("subject_id")?),
                        site: SiteId::from_uuid(r.try_get("site_id")?),
                        screening_number: r.try_get("screening_number")?,
                        status: parse_enum(&r.try_get::<String, _>("status")?, "subjects.status")?,
                        created_at: UtcMicros::from_micros(r.try_get("created_at")?),
                    })
                })
                .collect()
        }

        pub(crate) async fn item_values(pool: &Pool, study: StudyId, subject: SubjectId) -> Result<Vec<(String, Option<String>)>> {
            let rows = sqlx::query("SELECT item_key, value FROM item_values WHERE study_id = $1 AND subject_id = $2 ORDER BY item_key")
                .bind(study.as_uuid()).bind(subject.as_uuid()).fetch_all(pool).await?;
            rows.iter().map(|r| Ok((r.try_get("item_key")?, r.try_get("value")?))).collect()
        }

        fn user_from_row(r: &DbRow) -> Result<User> {
            Ok(User {
                id: UserId::from_uuid(r.try_get("user_id")?),
                username: r.try_get("username")?,
                display_name: r.try_get("display_name")?,
                email: r.try_get("email")?,
                org: OrgId::from_uuid(r.try_get("org_id")?),
                time_zone: tz(r.try_get("time_zone")?),
                locale: r.try_get("locale")?,
                password_hash: r.try_get("password_hash")?,
                password_changed_at: UtcMicros::from_micros(r.try_get("password_changed_at")?),
                must_change_password: r.try_get("must_change_password")?,
                failed_sign_ins: u32::try_from(r.try_get::<i64, _>("failed_sign_ins")?).unwrap_or(u32::MAX),
                locked_at: r.try_get::<Option<i64>, _>("locked_at")?.map(UtcMicros::from_micros),
                totp_secret: r.try_get("totp_secret")?,
                created_at: UtcMicros::from_micros(r.try_get("created_at")?),
            })
        }

        pub(crate) async fn users(pool: &Pool) -> Result<Vec<User>> {
            let rows = sqlx::query("SELECT * FROM users ORDER BY username").fetch_all(pool).await?;
            rows.iter().map(user_from_row).collect()
        }

        pub(crate) async fn user_by_name(pool: &Pool, username: &str) -> Result<Option<User>> {
            let row = sqlx::query("SELECT * FROM users WHERE username = $1").bind(username).fetch_optional(pool).await?;
            row.as_ref().map(user_from_row).transpose()
        }

        pub(crate) async fn user(pool: &Pool, id: UserId) -> Result<Option<User>> {
            let row = sqlx::query("SELECT * FROM users WHERE user_id = $1").bind(id.as_uuid()).fetch_optional(pool).await?;
            row.as_ref().map(user_from_row).transpose()
        }

        pub(crate) async fn grants(pool: &Pool, user: Option<UserId>) -> Result<Vec<RoleGrant>> {
            let rows = sqlx::query("SELECT * FROM role_grants WHERE ($1 IS NULL OR user_id = $1) ORDER BY granted_at, grant_id")
                .bind(user.map(|u| u.as_uuid())).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(RoleGrant {
                        id: RoleGrantId::from_uuid(r.try_get("grant_id")?),
                        user: UserId::from_uuid(r.try_get("user_id")?),
                        role: parse_enum(&r.try_get::<String, _>("role")?, "role_grants.role")?,
                        study: r.try_get::<Option<Uuid>, _>("study_id")?.map(StudyId::from_uuid),
                        site: r.try_get::<Option<Uuid>, _>("site_id")?.map(SiteId::from_uuid),
                        granted_at: UtcMicros::from_micros(r.try_get("granted_at")?),
                        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(UtcMicros::from_micros),
                    })
                })
                .collect()
        }

        pub(crate) async fn signatures(pool: &Pool, study: StudyId) -> Result<Vec<SignatureRow>> {
            let rows = sqlx::query("SELECT * FROM signatures WHERE study_id = $1 ORDER BY signed_at").bind(study.as_uuid()).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(SignatureRow {
                        study: StudyId::from_uuid(r.try_get("study_id")?),
                        id: SignatureId::from_uuid(r.try_get("signature_id")?),
                        signer: UserId::from_uuid(r.try_get("signer_id")?),
                        printed_name: r.try_get("printed_name")?,
                        meaning: parse_enum(&r.try_get::<String, _>("meaning")?, "signatures.meaning")?,
                        signed_at: UtcMicros::from_micros(r.try_get("signed_at")?),
                        entity_type: r.try_get("entity_type")?,
                        entity_id: r.try_get("entity_id")?,
                        content_hash: hash32(r.try_get("content_hash")?, "signatures.content_hash")?,
                    })
                })
                .collect()
        }

        // ---------------------------------------------------------------- sessions (operational state, not regulated data)

        pub(crate) async fn create_session(pool: &Pool, s: &SessionRow) -> Result<()> {
            sqlx::query("INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, absolute_expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(s.token_hash.to_vec()).bind(s.user.as_uuid()).bind(&s.csrf_token).bind(s.created_at.as_micros()).bind(s.last_seen_at.as_micros()).bind(s.absolute_expires_at.as_micros())
                .execute(pool).await?;
            Ok(())
        }

        pub(crate) async fn session(pool: &Pool, token_hash: &[u8; 32]) -> Result<Option<SessionRow>> {
            let row = sqlx::query("SELECT * FROM sessions WHERE token_hash = $1").bind(token_hash.to_vec()).fetch_optional(pool).await?;
            row.map(|r| {
                Ok(SessionRow {
                    token_hash: hash32(r.try_get("token_hash")?, "sessions.token_hash")?,
                    user: UserId::from_uuid(r.try_get("user_id")?),
                    csrf_token: r.try_get("csrf_token")?,
                    created_at: UtcMicros::from_micros(r.try_get("created_at")?),
                    last_seen_at: UtcMicros::from_micros(r.try_get("last_seen_at")?),
                    absolute_expires_at: UtcMicros::from_micros(r.try_get("absolute_expires_at")?),
                })
            })
            .transpose()
        }

        pub(crate) async fn touch_session(pool: &Pool, token_hash: &[u8; 32], at: UtcMicros) -> Result<()> {
            sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1").bind(token_hash.to_vec()).bind(at.as_micros()).execute(pool).await?;
            Ok(())
        }

        pub(crate) async fn delete_session(pool: &Pool, token_hash: &[u8; 32]) -> Result<()> {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash.to_vec()).execute(pool).await?;
            Ok(())
        }

        pub(crate) async fn api_token_user(pool: &Pool, token_hash: &[u8; 32]) -> Result<Option<UserId>> {
            let row = sqlx::query("SELECT user_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
                .bind(token_hash.to_vec()).fetch_optional(pool).await?;
            row.map(|r| Ok(UserId::from_uuid(r.try_get("user_id")?))).transpose()
        }

        // ---------------------------------------------------------------- whole-installation copy

        pub(crate) async fn is_empty(pool: &Pool) -> Result<bool> {
            let n: i64 = sqlx::query_scalar("SELECT (SELECT COUNT(*) FROM organizations) + (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM audit_entries)")
                .fetch_one(pool).await?;
            Ok(n == 0)
        }

        pub(crate) async fn dump_rows(pool: &Pool) -> Result<$crate::copy::Rows> {
            Ok($crate::copy::Rows {
                organizations: sqlx::query_as("SELECT org_id, kind, name, created_at FROM organizations ORDER BY org_id").fetch_all(pool).await?,
                users: sqlx::query_as("SELECT user_id, username, display_name, email, org_id, time_zone, locale, password_hash, password_changed_at, must_change_password, failed_sign_ins, locked_at, totp_secret, created_at FROM users ORDER BY user_id").fetch_all(pool).await?,
                studies: sqlx::query_as("SELECT study_id, sponsor_id, code, title, time_zone, created_at FROM studies ORDER BY study_id").fetch_all(pool).await?,
                sites: sqlx::query_as("SELECT study_id, site_id, code, name, country, time_zone, created_at FROM sites ORDER BY study_id, site_id").fetch_all(pool).await?,
                subjects: sqlx::query_as("SELECT study_id, subject_id, site_id, screening_number, status, created_at FROM subjects ORDER BY study_id, subject_id").fetch_all(pool).await?,
                items: sqlx::query_as("SELECT study_id, subject_id, item_key, value, updated_at FROM item_values ORDER BY study_id, subject_id, item_key").fetch_all(pool).await?,
                grants: sqlx::query_as("SELECT grant_id, user_id, role, study_id, site_id, granted_at, granted_by, revoked_at FROM role_grants ORDER BY grant_id").fetch_all(pool).await?,
                api_tokens: sqlx::query_as("SELECT token_id, token_hash, user_id, name, created_at, revoked_at FROM api_tokens ORDER BY token_id").fetch_all(pool).await?,
                signatures: sqlx::query_as("SELECT study_id, signature_id, signer_id, printed_name, meaning, signed_at, entity_type, entity_id, content_hash FROM signatures ORDER BY study_id, signature_id").fetch_all(pool).await?,
            })
        }

        pub(crate) async fn restore_rows(conn: &mut Conn, r: &$crate::copy::Rows) -> Result<()> {
            for x in &r.organizations {
                sqlx::query("INSERT INTO organizations (org_id, kind, name, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(x.0).bind(&x.1).bind(&x.2).bind(x.3).execute(&mut *conn).await?;
            }
            for x in &r.users {
                sqlx::query("INSERT INTO users (user_id, username, display_name, email, org_id, time_zone, locale, password_hash, password_changed_at, must_change_password, failed_sign_ins, locked_at, totp_secret, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
                    .bind(x.0).bind(&x.1).bind(&x.2).bind(&x.3).bind(x.4).bind(&x.5).bind(&x.6).bind(&x.7).bind(x.8).bind(x.9).bind(x.10).bind(x.11).bind(&x.12).bind(x.13)
                    .execute(&mut *conn).await?;
            }
            for x in &r.studies {
                sqlx::query("INSERT INTO studies (study_id, sponsor_id, code, title, time_zone, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(x.0).bind(x.1).bind(&x.2).bind(&x.3).bind(&x.4).bind(x.5).execute(&mut *conn).await?;
            }
            for x in &r.sites {
                sqlx::query("INSERT INTO sites (study_id, site_id, code, name, country, time_zone, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(x.0).bind(x.1).bind(&x.2).bind(&x.3).bind(&x.4).bind(&x.5).bind(x.6).execute(&mut *conn).await?;
            }
            for x in &r.subjects {
                sqlx::query("INSERT INTO subjects (study_id, subject_id, site_id, screening_number, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(x.0).bind(x.1).bind(x.2).bind(&x.3).bind(&x.4).bind(x.5).execute(&mut *conn).await?;
            }
            for x in &r.items {
                sqlx::query("INSERT INTO item_values (study_id, subject_id, item_key, value, updated_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(x.0).bind(x.1).bind(&x.2).bind(&x.3).bind(x.4).execute(&mut *conn).await?;
            }
            for x in &r.grants {
                sqlx::query("INSERT INTO role_grants (grant_id, user_id, role, study_id, site_id, granted_at, granted_by, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(x.0).bind(x.1).bind(&x.2).bind(x.3).bind(x.4).bind(x.5).bind(x.6).bind(x.7).execute(&mut *conn).await?;
            }
            for x in &r.api_tokens {
                sqlx::query("INSERT INTO api_tokens (token_id, token_hash, user_id, name, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(x.0).bind(&x.1).bind(x.2).bind(&x.3).bind(x.4).bind(x.5).execute(&mut *conn).await?;
            }
            for x in &r.signatures {
                sqlx::query("INSERT INTO signatures (study_id, signature_id, signer_id, printed_name, meaning, signed_at, entity_type, entity_id, content_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(x.0).bind(x.1).bind(x.2).bind(&x.3).bind(&x.4).bind(x.5).bind(&x.6).bind(&x.7).bind(&x.8).execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Copies audit entries verbatim (same hashes): only for `copy_installation` into an empty database.
        pub(crate) async fn restore_entries(conn: &mut Conn, entries: &[StoredEntry]) -> Result<()> {
            insert_entries(conn, entries).await
        }

        pub(crate) async fn restore_head(conn: &mut Conn, chain: Chain, head: ChainHead) -> Result<()> {
            sqlx::query("INSERT INTO chain_heads (chain_id, seq, hash) VALUES ($1, $2, $3)")
                .bind(chain.id()).bind(i64::try_from(head.seq).unwrap_or(i64::MAX)).bind(head.hash.to_vec())
                .execute(&mut *conn).await?;
            Ok(())
        }

        pub(crate) async fn restore_checkpoint(conn: &mut Conn, cp: &trellis_audit::Checkpoint) -> Result<()> {
            sqlx::query("INSERT INTO checkpoints (chain_id, seq, head_hash, created_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(cp.chain.id()).bind(i64::try_from(cp.head.seq).unwrap_or(i64::MAX)).bind(cp.head.hash.to_vec())
                .bind(cp.created_at.as_micros()).bind(&cp.key_id).bind(cp.signature.to_vec())
                .execute(&mut *conn).await?;
            Ok(())
        }

        pub(crate) async fn begin_restore(pool: &Pool) -> Result<sqlx::Transaction<'static, $db>> {
            Ok(pool.begin_with($begin).await?)
        }

        // ---------------------------------------------------------------- checkpoints

        pub(crate) async fn insert_checkpoint(pool: &Pool, cp: &trellis_audit::Checkpoint) -> Result<()> {
            sqlx::query("INSERT INTO checkpoints (chain_id, seq, head_hash, created_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(cp.chain.id()).bind(i64::try_from(cp.head.seq).unwrap_or(i64::MAX)).bind(cp.head.hash.to_vec())
                .bind(cp.created_at.as_micros()).bind(&cp.key_id).bind(cp.signature.to_vec())
                .execute(pool).await?;
            Ok(())
        }

        pub(crate) async fn checkpoints(pool: &Pool) -> Result<Vec<trellis_audit::Checkpoint>> {
            let rows = sqlx::query("SELECT * FROM checkpoints ORDER BY created_at, chain_id").fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    let sig: Vec<u8> = r.try_get("signature")?;
                    Ok(trellis_audit::Checkpoint {
                        chain: Chain::from_id(r.try_get("chain_id")?),
                        head: ChainHead { seq: u64::try_from(r.try_get::<i64, _>("seq")?).unwrap_or(0), hash: hash32(r.try_get("head_hash")?, "checkpoints.head_hash")? },
                        created_at: UtcMicros::from_micros(r.try_get("created_at")?),
                        key_id: r.try_get("key_id")?,
                        signature: <[u8; 64]>::try_from(sig.as_slice()).map_err(|_| StoreError::invalid("checkpoints.signature", "not 64 bytes"))?,
                    })
                })
                .collect()
        }
    };
}

pub(crate) use backend_impl;
