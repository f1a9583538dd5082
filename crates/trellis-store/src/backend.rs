//! The SQL of the store, written once and instantiated for each backend.
//!
//! Both backends accept the same statements (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`); the few differences are macro parameters: how a write
//! transaction begins and how a chain head is locked.

/// Instantiates the backend module's queries for one sqlx database.
macro_rules! backend_impl {
    ($db:ty, $conn:ty, begin = $begin:literal, lock_suffix = $lock:literal) => {
        use std::collections::{BTreeMap, HashMap, HashSet};

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

        fn query_text(text: &str) -> Result<String> {
            let t = text.trim();
            if t.is_empty() || t.chars().count() > 4000 {
                return Err(StoreError::invalid("text", "a query message must be 1-4000 characters"));
            }
            Ok(t.to_owned())
        }

        async fn subject_site(conn: &mut Conn, study: Uuid, subject: Uuid) -> Result<Uuid> {
            let row = sqlx::query("SELECT site_id FROM subjects WHERE study_id = $1 AND subject_id = $2")
                .bind(study).bind(subject).fetch_optional(&mut *conn).await?
                .ok_or(StoreError::NotFound { entity: "subject", id: subject.to_string() })?;
            Ok(row.try_get("site_id")?)
        }

        fn check_item_key(key: &str) -> Result<()> {
            // Item addresses (EVENT[n]/FORM[n]/GROUP[n]/ITEM) are made of ODM OIDs, which may
            // hold any printable character.
            let ok = !key.is_empty()
                && key.chars().count() <= 1000
                && key.chars().all(|c| !c.is_whitespace() && !c.is_control());
            if ok {
                Ok(())
            } else {
                Err(StoreError::invalid(
                    format!("values.{key}"),
                    "item keys are 1-1000 printable characters without spaces",
                ))
            }
        }

        /// An item value's identity: (study, subject, item key).
        type ItemKey = (Uuid, Uuid, String);

        /// A row of the bulk item read: a subject's site, or an item row that exists.
        struct ItemRow {
            study: Uuid,
            subject: Uuid,
            site: Option<Uuid>,
            key: Option<String>,
            value: Option<String>,
        }

        /// The item values a run of saves touches, read in one statement, with the
        /// run's accepted changes laid over them in order.
        #[derive(Default)]
        struct Items {
            sites: HashMap<(Uuid, Uuid), Uuid>,
            /// Freezes and locks of the batch's studies: (study, subject or nil) → (scope, state).
            locks: HashMap<(Uuid, Uuid), Vec<(String, String)>>,
            /// Rows that exist (a key that was read and is absent has no row).
            rows: HashMap<ItemKey, Option<String>>,
            /// Accepted changes not yet written to `item_values`.
            dirty: BTreeMap<ItemKey, Option<String>>,
        }

        impl Items {
            /// Reads the sites of the saves' subjects and the current values of all their keys.
            async fn load<'a>(conn: &mut Conn, saves: impl Iterator<Item = (&'a StudyId, &'a SubjectId, &'a [(String, Option<String>)])>) -> Result<Items> {
                let mut subjects = Vec::new();
                let mut seen_subjects = HashSet::new();
                let mut keys = Vec::new();
                let mut seen: HashSet<(Uuid, Uuid, &'a str)> = HashSet::new();
                for (study, subject, values) in saves {
                    let (st, su) = (study.as_uuid(), subject.as_uuid());
                    if seen_subjects.insert((st, su)) {
                        subjects.push((st, su));
                    }
                    for (k, _) in values {
                        if seen.insert((st, su, k.as_str())) {
                            keys.push((st, su, k.as_str()));
                        }
                    }
                }
                let mut items = Items::default();
                let mut studies: Vec<Uuid> = subjects.iter().map(|(st, _)| *st).collect();
                studies.sort_unstable();
                studies.dedup();
                for (st, su, scope, state) in read_locks(conn, &studies).await? {
                    items.locks.entry((st, su)).or_default().push((scope, state));
                }
                for row in read_items(conn, &subjects, &keys).await? {
                    match (row.site, row.key) {
                        (Some(site), _) => {
                            items.sites.insert((row.study, row.subject), site);
                        }
                        (None, Some(k)) => {
                            items.rows.insert((row.study, row.subject, k), row.value);
                        }
                        (None, None) => {}
                    }
                }
                Ok(items)
            }

            /// Records a request's accepted changes (all or none of a request is accepted).
            fn accept(&mut self, staged: HashMap<ItemKey, Option<String>>) {
                for (k, v) in staged {
                    self.rows.insert(k.clone(), v.clone());
                    self.dirty.insert(k, v);
                }
            }
        }

        /// Plans one `SaveItems` against the current values (with `staged`, the request's
        /// own earlier changes): validates, stages the changed rows, and records the audit
        /// entries. Nothing touches the database, so a refusal leaves no trace.
        fn plan_save(items: &Items, staged: &mut HashMap<ItemKey, Option<String>>, ctx: &mut Ctx<'_>, chain: Chain, study: StudyId, subject: SubjectId, values: &[(String, Option<String>)]) -> Result<()> {
            let mut seen = HashSet::new();
            for (key, value) in values {
                check_item_key(key)?;
                if !seen.insert(key.as_str()) {
                    return Err(StoreError::invalid(format!("values.{key}"), "appears twice in one save"));
                }
                if let Some(v) = value && v.chars().count() > 4000 {
                    return Err(StoreError::invalid(format!("values.{key}"), "must be at most 4000 characters"));
                }
            }
            let (st, su) = (study.as_uuid(), subject.as_uuid());
            let site = *items.sites.get(&(st, su)).ok_or(StoreError::NotFound { entity: "subject", id: subject.to_string() })?;
            if let Some((_, state)) = items.locks.get(&(st, Uuid::nil())).and_then(|l| l.iter().find(|(scope, _)| scope.is_empty())) {
                return Err(StoreError::Locked(format!("the study is {state}; its data cannot change")));
            }
            let subject_locks = items.locks.get(&(st, su));
            for (key, value) in values {
                if let Some((scope, state)) = subject_locks.and_then(|l| l.iter().find(|(scope, _)| scope.is_empty() || key.starts_with(&format!("{scope}/")))) {
                    let what = if scope.is_empty() { "the subject's casebook".to_owned() } else { format!("form {scope}") };
                    return Err(StoreError::Locked(format!("values.{key}: {what} is {state}; unlock it to change data")));
                }
                let k: ItemKey = (st, su, key.clone());
                match staged.get(&k).or_else(|| items.rows.get(&k)) {
                    None => {
                        ctx.audit(chain, "create", "item", format!("{subject}/{key}"), Some(key), None, value.clone(), Some(site), Some(su));
                        staged.insert(k, value.clone());
                    }
                    Some(old) if old != value => {
                        ctx.require_reason("item", key)?;
                        // An absent old value is recorded as empty text so the entry reads as a change.
                        let old = old.clone().unwrap_or_default();
                        ctx.audit(chain, "update", "item", format!("{subject}/{key}"), Some(key), Some(old), value.clone(), Some(site), Some(su));
                        staged.insert(k, value.clone());
                    }
                    Some(_) => {}
                }
            }
            Ok(())
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
                    // Within a request that also does other things: read, plan and write this save alone.
                    let mut items = Items::load(conn, std::iter::once((study, subject, values.as_slice()))).await?;
                    let mut staged = HashMap::new();
                    plan_save(&items, &mut staged, ctx, chain, *study, *subject, values)?;
                    items.accept(staged);
                    write_items(conn, &items.dirty, ctx.now).await?;
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
                Mutation::AddMetadataVersion { study, study_oid, oid, name, odm } => {
                    for (field, v, max) in [("study_oid", study_oid, 200), ("oid", oid, 200), ("name", name, 500)] {
                        if v.trim().is_empty() || v.chars().count() > max {
                            return Err(StoreError::invalid(field, format!("must be 1-{max} characters")));
                        }
                    }
                    if odm.len() > 50 * 1024 * 1024 {
                        return Err(StoreError::invalid("odm", "a metadata version must be at most 50 MB of ODM"));
                    }
                    let st = study.as_uuid();
                    let existing = sqlx::query("SELECT oid, study_oid FROM metadata_versions WHERE study_id = $1 ORDER BY seq")
                        .bind(st).fetch_all(&mut *conn).await?;
                    for r in &existing {
                        let (o, so): (String, String) = (r.try_get("oid")?, r.try_get("study_oid")?);
                        if &o == oid {
                            return Err(StoreError::Conflict(format!("metadata version {oid} already exists in this study; an amendment needs a new OID")));
                        }
                        if &so != study_oid {
                            return Err(StoreError::invalid("study_oid", format!("this study's ODM OID is {so}, not {study_oid}")));
                        }
                    }
                    let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(odm.as_bytes()).into();
                    let seq = existing.len() as i64 + 1;
                    sqlx::query("INSERT INTO metadata_versions (study_id, oid, study_oid, name, seq, odm, odm_sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                        .bind(st).bind(oid).bind(study_oid).bind(name).bind(seq).bind(odm).bind(sha.to_vec()).bind(now)
                        .execute(&mut *conn).await?;
                    for (f, v) in [("study_oid", study_oid.clone()), ("name", name.clone()), ("sequence", seq.to_string()), ("odm_sha256", hex::encode(sha))] {
                        ctx.audit(chain, "create", "metadata_version", oid.clone(), Some(f), None, Some(v), None, None);
                    }
                }
                Mutation::AssignMetadataVersion { study, subject, oid } => {
                    let (st, su) = (study.as_uuid(), subject.as_uuid());
                    let version = sqlx::query("SELECT seq FROM metadata_versions WHERE study_id = $1 AND oid = $2")
                        .bind(st).bind(oid).fetch_optional(&mut *conn).await?;
                    if version.is_none() {
                        return Err(StoreError::NotFound { entity: "metadata version", id: oid.clone() });
                    }
                    let site: Option<Uuid> = sqlx::query("SELECT site_id FROM subjects WHERE study_id = $1 AND subject_id = $2")
                        .bind(st).bind(su).fetch_optional(&mut *conn).await?
                        .map(|r| r.try_get("site_id")).transpose()?;
                    let Some(site) = site else {
                        return Err(StoreError::NotFound { entity: "subject", id: subject.to_string() });
                    };
                    let current: Option<String> = sqlx::query("SELECT oid FROM subject_versions WHERE study_id = $1 AND subject_id = $2")
                        .bind(st).bind(su).fetch_optional(&mut *conn).await?
                        .map(|r| r.try_get("oid")).transpose()?;
                    match &current {
                        Some(c) if c == oid => {}
                        Some(c) => {
                            ctx.require_reason("subject", "metadata_version")?;
                            sqlx::query("UPDATE subject_versions SET oid = $3, assigned_at = $4 WHERE study_id = $1 AND subject_id = $2")
                                .bind(st).bind(su).bind(oid).bind(now).execute(&mut *conn).await?;
                            ctx.audit(chain, "migrate", "subject", subject.to_string(), Some("metadata_version"), Some(c.clone()), Some(oid.clone()), Some(site), Some(su));
                        }
                        None => {
                            sqlx::query("INSERT INTO subject_versions (study_id, subject_id, oid, assigned_at) VALUES ($1, $2, $3, $4)")
                                .bind(st).bind(su).bind(oid).bind(now).execute(&mut *conn).await?;
                            ctx.audit(chain, "create", "subject", subject.to_string(), Some("metadata_version"), None, Some(oid.clone()), Some(site), Some(su));
                        }
                    }
                }
                Mutation::OpenQuery { study, id, subject, item_key, check_id, text } => {
                    check_item_key(item_key)?;
                    let text = query_text(text)?;
                    let (st, su) = (study.as_uuid(), subject.as_uuid());
                    let site = subject_site(conn, st, su).await?;
                    sqlx::query("INSERT INTO queries (study_id, query_id, subject_id, item_key, check_id, status, opened_by, opened_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $7)")
                        .bind(st).bind(id.as_uuid()).bind(su).bind(item_key).bind(check_id).bind(ctx.req.actor.id).bind(now)
                        .execute(&mut *conn).await?;
                    sqlx::query("INSERT INTO query_messages (study_id, query_id, seq, action, author_id, author_name, at, text) VALUES ($1, $2, 1, 'open', $3, $4, $5, $6)")
                        .bind(st).bind(id.as_uuid()).bind(ctx.req.actor.id).bind(&ctx.req.actor.name).bind(now).bind(&text)
                        .execute(&mut *conn).await?;
                    let entity = id.to_string();
                    ctx.audit(chain, "create", "query", entity.clone(), Some("item"), None, Some(item_key.clone()), Some(site), Some(su));
                    if let Some(c) = check_id {
                        ctx.audit(chain, "create", "query", entity.clone(), Some("check"), None, Some(c.clone()), Some(site), Some(su));
                    }
                    ctx.audit(chain, "create", "query", entity, Some("text"), None, Some(text), Some(site), Some(su));
                }
                Mutation::UpdateQuery { study, id, action, text } => {
                    let text = query_text(text)?;
                    let st = study.as_uuid();
                    let row = sqlx::query("SELECT subject_id, status FROM queries WHERE study_id = $1 AND query_id = $2")
                        .bind(st).bind(id.as_uuid()).fetch_optional(&mut *conn).await?
                        .ok_or(StoreError::NotFound { entity: "query", id: id.to_string() })?;
                    let su: Uuid = row.try_get("subject_id")?;
                    let status: String = row.try_get("status")?;
                    let next = match (action, status.as_str()) {
                        (QueryAction::Answer, "open") => "answered",
                        (QueryAction::Close, "open" | "answered") => "closed",
                        (QueryAction::Reopen, "answered" | "closed") => "open",
                        _ => return Err(StoreError::Conflict(format!("a {status} query cannot be given the action {}", action.as_str()))),
                    };
                    let site = subject_site(conn, st, su).await?;
                    let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM query_messages WHERE study_id = $1 AND query_id = $2")
                        .bind(st).bind(id.as_uuid()).fetch_one(&mut *conn).await?.try_get("next")?;
                    sqlx::query("UPDATE queries SET status = $3, updated_at = $4 WHERE study_id = $1 AND query_id = $2")
                        .bind(st).bind(id.as_uuid()).bind(next).bind(now).execute(&mut *conn).await?;
                    sqlx::query("INSERT INTO query_messages (study_id, query_id, seq, action, author_id, author_name, at, text) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                        .bind(st).bind(id.as_uuid()).bind(seq).bind(action.as_str()).bind(ctx.req.actor.id).bind(&ctx.req.actor.name).bind(now).bind(&text)
                        .execute(&mut *conn).await?;
                    ctx.audit(chain, action.as_str(), "query", id.to_string(), Some("status"), Some(status), Some(next.to_owned()), Some(site), Some(su));
                    ctx.audit(chain, action.as_str(), "query", id.to_string(), Some("text"), None, Some(text), Some(site), Some(su));
                }
                Mutation::VerifyItem { study, subject, item_key, verified } => {
                    check_item_key(item_key)?;
                    let (st, su) = (study.as_uuid(), subject.as_uuid());
                    let site = subject_site(conn, st, su).await?;
                    let value: Option<Option<String>> = sqlx::query("SELECT value FROM item_values WHERE study_id = $1 AND subject_id = $2 AND item_key = $3")
                        .bind(st).bind(su).bind(item_key).fetch_optional(&mut *conn).await?
                        .map(|r| r.try_get("value")).transpose()?;
                    let entity = format!("{subject}/{item_key}");
                    if *verified {
                        let Some(value) = value else {
                            return Err(StoreError::invalid("item_key", format!("{item_key} has no value to verify")));
                        };
                        sqlx::query("INSERT INTO item_verifications (study_id, subject_id, item_key, verified_value, verified_by, verified_at) VALUES ($1, $2, $3, $4, $5, $6) \
                                     ON CONFLICT (study_id, subject_id, item_key) DO UPDATE SET verified_value = excluded.verified_value, verified_by = excluded.verified_by, verified_at = excluded.verified_at")
                            .bind(st).bind(su).bind(item_key).bind(&value).bind(ctx.req.actor.id).bind(now)
                            .execute(&mut *conn).await?;
                        ctx.audit(chain, "verify", "sdv", entity, Some(item_key), None, Some(format!("verified value {:?}", value.unwrap_or_default())), Some(site), Some(su));
                    } else {
                        let n = sqlx::query("DELETE FROM item_verifications WHERE study_id = $1 AND subject_id = $2 AND item_key = $3")
                            .bind(st).bind(su).bind(item_key).execute(&mut *conn).await?.rows_affected();
                        if n == 0 {
                            return Err(StoreError::NotFound { entity: "verification", id: entity });
                        }
                        ctx.require_reason("sdv", item_key)?;
                        ctx.audit(chain, "unverify", "sdv", entity, Some(item_key), Some("verified".into()), Some("not verified".into()), Some(site), Some(su));
                    }
                }
                Mutation::SetLock { study, subject, scope, state } => {
                    let st = study.as_uuid();
                    if !scope.is_empty() && (subject.is_none() || scope.split('/').count() != 2 || scope.chars().any(|c| c.is_whitespace() || c.is_control()) || scope.len() > 500) {
                        return Err(StoreError::invalid("scope", "a form scope is EVENT[n]/FORM[n] of a subject"));
                    }
                    let su = subject.map_or(Uuid::nil(), |s| s.as_uuid());
                    let site = match subject {
                        Some(_) => Some(subject_site(conn, st, su).await?),
                        None => None,
                    };
                    let current: Option<String> = sqlx::query("SELECT state FROM data_locks WHERE study_id = $1 AND subject_id = $2 AND scope = $3")
                        .bind(st).bind(su).bind(scope).fetch_optional(&mut *conn).await?
                        .map(|r| r.try_get("state")).transpose()?;
                    let entity = match subject {
                        None => "study".to_owned(),
                        Some(s) if scope.is_empty() => format!("{s}"),
                        Some(s) => format!("{s}/{scope}"),
                    };
                    let new = state.map(|s| s.as_str().to_owned());
                    if current == new {
                        return Err(StoreError::Conflict(format!("{entity} is already {}", new.as_deref().unwrap_or("open"))));
                    }
                    match state {
                        Some(state) => {
                            sqlx::query("INSERT INTO data_locks (study_id, subject_id, scope, state, changed_by, changed_at) VALUES ($1, $2, $3, $4, $5, $6) \
                                         ON CONFLICT (study_id, subject_id, scope) DO UPDATE SET state = excluded.state, changed_by = excluded.changed_by, changed_at = excluded.changed_at")
                                .bind(st).bind(su).bind(scope).bind(state.as_str()).bind(ctx.req.actor.id).bind(now)
                                .execute(&mut *conn).await?;
                        }
                        None => {
                            ctx.require_reason("lock", &entity)?;
                            sqlx::query("DELETE FROM data_locks WHERE study_id = $1 AND subject_id = $2 AND scope = $3")
                                .bind(st).bind(su).bind(scope).execute(&mut *conn).await?;
                        }
                    }
                    // Lifting a freeze or lock is a change and carries its reason.
                    let action = if new.is_some() { "lock" } else { "unlock" };
                    ctx.audit(chain, action, "lock", entity, Some("state"), Some(current.unwrap_or_else(|| "open".into())), Some(new.unwrap_or_else(|| "open".into())), site, subject.map(|s| s.as_uuid()));
                }
                Mutation::SetSdvPlan { study, plan } => {
                    let st = study.as_uuid();
                    if plan.trim().is_empty() || plan.len() > 100_000 || plan.chars().any(|c| c.is_control() && c != '\n') {
                        return Err(StoreError::invalid("plan", "an SDV plan is 1-100,000 characters of text lines"));
                    }
                    let current: Option<String> = sqlx::query("SELECT plan FROM sdv_plans WHERE study_id = $1")
                        .bind(st).fetch_optional(&mut *conn).await?
                        .map(|r| r.try_get("plan")).transpose()?;
                    if current.as_deref() == Some(plan.as_str()) {
                        return Err(StoreError::Conflict("the study already has this SDV plan".into()));
                    }
                    if current.is_some() {
                        ctx.require_reason("sdv_plan", "plan")?;
                    }
                    sqlx::query("INSERT INTO sdv_plans (study_id, plan, changed_by, changed_at) VALUES ($1, $2, $3, $4) \
                                 ON CONFLICT (study_id) DO UPDATE SET plan = excluded.plan, changed_by = excluded.changed_by, changed_at = excluded.changed_at")
                        .bind(st).bind(plan).bind(ctx.req.actor.id).bind(now)
                        .execute(&mut *conn).await?;
                    let action = if current.is_some() { "update" } else { "create" };
                    ctx.audit(chain, action, "sdv_plan", study.to_string(), Some("plan"), current, Some(plan.clone()), None, None);
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

        /// Chains a request's pending entries onto the heads locked for the batch.
        fn chain_entries(heads: &mut BTreeMap<Chain, ChainHead>, pending: Vec<Pending>, receipt: &mut Receipt, out: &mut Vec<StoredEntry>) -> Result<()> {
            // Every chain a batch's mutations name is locked before any of them runs;
            // checked before any head moves, so a refusal here leaves the heads as they were.
            if let Some(p) = pending.iter().find(|p| !heads.contains_key(&p.chain)) {
                return Err(StoreError::invalid("chain", format!("chain {} was not locked for this batch", p.chain.id())));
            }
            for p in pending {
                let Some(&head) = heads.get(&p.chain) else { continue };
                let seq = head.seq + 1;
                let hash = entry_hash(p.chain, seq, &head.hash, &p.body);
                heads.insert(p.chain, ChainHead { seq, hash });
                receipt.entries.push((p.chain, seq));
                out.push(StoredEntry { chain: p.chain, seq, prev_hash: head.hash, hash, body: p.body });
            }
            Ok(())
        }

        fn check_reason(req: &WriteRequest) -> Result<()> {
            match &req.reason {
                Some(r) if r.chars().count() > 2000 => Err(StoreError::invalid("reason", "must be at most 2000 characters")),
                _ => Ok(()),
            }
        }

        /// A request made only of `SaveItems`: planned in memory against one bulk read.
        fn save_only(req: &WriteRequest) -> bool {
            !req.mutations.is_empty() && req.mutations.iter().all(|m| matches!(m, Mutation::SaveItems { .. }))
        }

        /// Applies a request with per-mutation statements; its audit entries go to `deferred`.
        async fn apply_request(conn: &mut Conn, heads: &mut BTreeMap<Chain, ChainHead>, req: &WriteRequest, now: UtcMicros, deferred: &mut Vec<StoredEntry>) -> Result<Receipt> {
            check_reason(req)?;
            let mut receipt = Receipt { entries: Vec::new(), committed_at: Some(now) };
            let mut entries = Vec::new();
            for m in &req.mutations {
                let mut ctx = Ctx { req, now, out: Vec::new() };
                apply(conn, &mut ctx, m).await?;
                chain_entries(heads, ctx.out, &mut receipt, &mut entries)?;
            }
            deferred.extend(entries);
            Ok(receipt)
        }

        /// Plans one save-only request against `items`: all of it is accepted (its changes
        /// join `items.dirty`, its entries are chained onto `heads` and go to `deferred`) or none.
        fn plan_request(items: &mut Items, heads: &mut BTreeMap<Chain, ChainHead>, req: &WriteRequest, now: UtcMicros, deferred: &mut Vec<StoredEntry>) -> Result<Receipt> {
            check_reason(req)?;
            let mut ctx = Ctx { req, now, out: Vec::new() };
            let mut staged = HashMap::new();
            for m in &req.mutations {
                if let Mutation::SaveItems { study, subject, values } = m {
                    plan_save(items, &mut staged, &mut ctx, m.chain(), *study, *subject, values)?;
                }
            }
            let mut receipt = Receipt { entries: Vec::new(), committed_at: Some(now) };
            let mut entries = Vec::new();
            chain_entries(heads, ctx.out, &mut receipt, &mut entries)?;
            items.accept(staged);
            deferred.extend(entries);
            Ok(receipt)
        }

        /// A run of consecutive save-only requests in bulk: one read of every key they
        /// touch, then each request planned in order in memory. A refused request gets its
        /// own error and leaves no trace; the accepted changes are added to `dirty`.
        async fn save_run(conn: &mut Conn, heads: &mut BTreeMap<Chain, ChainHead>, run: &[Job], now: UtcMicros, deferred: &mut Vec<StoredEntry>, dirty: &mut BTreeMap<ItemKey, Option<String>>) -> Result<Vec<Result<Receipt>>> {
            let saves = run.iter().flat_map(|(r, _)| r.mutations.iter()).filter_map(|m| match m {
                Mutation::SaveItems { study, subject, values } => Some((study, subject, values.as_slice())),
                _ => None,
            });
            let mut items = Items::load(conn, saves).await?;
            let results = run.iter().map(|(req, _)| plan_request(&mut items, heads, req, now, deferred)).collect();
            dirty.append(&mut items.dirty);
            Ok(results)
        }

        /// Locks (on PostgreSQL) and reads the heads of `chains`, creating missing ones.
        async fn lock_chains(conn: &mut Conn, mut chains: Vec<Chain>) -> Result<BTreeMap<Chain, ChainHead>> {
            chains.sort();
            chains.dedup();
            let mut heads = lock_heads(conn, &chains).await?;
            for c in chains {
                if !heads.contains_key(&c) {
                    // A chain's first batch (rare): create its head at genesis.
                    let h = load_head(conn, c).await?;
                    heads.insert(c, h);
                }
            }
            Ok(heads)
        }

        pub(crate) type Job = (WriteRequest, tokio::sync::oneshot::Sender<Result<Receipt>>);

        /// One attempt at a batch in one transaction. Optimistically (`isolate == false`)
        /// consecutive save-only requests are planned in bulk in memory (a refused one is
        /// simply left out) and other requests run without savepoints; a refused
        /// non-save request, or a failed statement, aborts the attempt, and the caller
        /// retries with isolation: one savepoint per request.
        async fn run_batch(pool: &Pool, jobs: &[Job], isolate: bool, counters: &crate::WriteCounters) -> Result<std::result::Result<Vec<Result<Receipt>>, (usize, StoreError)>> {
            let mut results = Vec::with_capacity(jobs.len());
            let mut conn = pool.acquire().await?;
            let mut tx = conn.begin_with($begin).await?;
            let now = UtcMicros::from_timestamp(jiff::Timestamp::now());
            // Lock every chain the batch touches in one order, so concurrent
            // batches on PostgreSQL cannot deadlock on chain heads.
            let chains: Vec<Chain> = jobs.iter().flat_map(|(r, _)| r.mutations.iter().map(Mutation::chain)).collect();
            let mut heads = lock_chains(&mut tx, chains).await?;
            let start_heads = heads.clone();
            let mut deferred: Vec<StoredEntry> = Vec::new();
            // Item rows changed by bulk-planned saves, written before the next other request and at the end.
            let mut dirty: BTreeMap<ItemKey, Option<String>> = BTreeMap::new();
            let mut i = 0;
            while i < jobs.len() {
                if isolate {
                    let (req, _) = &jobs[i];
                    sqlx::query("SAVEPOINT request").execute(&mut *tx).await?;
                    let (before, before_len) = (heads.clone(), deferred.len());
                    let r = if save_only(req) {
                        match save_run(&mut tx, &mut heads, &jobs[i..=i], now, &mut deferred, &mut dirty).await {
                            Ok(mut r) => match r.pop() {
                                Some(Ok(receipt)) => write_items(&mut tx, &std::mem::take(&mut dirty), now).await.map(|()| receipt),
                                Some(Err(e)) => Err(e),
                                None => Err(StoreError::invalid("batch", "empty save run")),
                            },
                            Err(e) => Err(e),
                        }
                    } else {
                        apply_request(&mut tx, &mut heads, req, now, &mut deferred).await
                    };
                    match r {
                        Ok(receipt) => {
                            sqlx::query("RELEASE SAVEPOINT request").execute(&mut *tx).await?;
                            results.push(Ok(receipt));
                        }
                        Err(e) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT request").execute(&mut *tx).await?;
                            sqlx::query("RELEASE SAVEPOINT request").execute(&mut *tx).await?;
                            heads = before;
                            deferred.truncate(before_len);
                            dirty.clear();
                            results.push(Err(e));
                        }
                    }
                    i += 1;
                    continue;
                }
                if save_only(&jobs[i].0) {
                    let end = (i..jobs.len()).find(|&j| !save_only(&jobs[j].0)).unwrap_or(jobs.len());
                    match save_run(&mut tx, &mut heads, &jobs[i..end], now, &mut deferred, &mut dirty).await {
                        Ok(r) => results.extend(r),
                        Err(e) => {
                            tx.rollback().await?;
                            return Ok(Err((i, e)));
                        }
                    }
                    i = end;
                    continue;
                }
                // Other requests see the item rows of the saves before them.
                let flushed = if dirty.is_empty() { Ok(()) } else { write_items(&mut tx, &std::mem::take(&mut dirty), now).await };
                match flushed {
                    Ok(()) => match apply_request(&mut tx, &mut heads, &jobs[i].0, now, &mut deferred).await {
                        Ok(r) => results.push(Ok(r)),
                        Err(e) => {
                            tx.rollback().await?;
                            return Ok(Err((i, e)));
                        }
                    },
                    Err(e) => {
                        tx.rollback().await?;
                        return Ok(Err((i, e)));
                    }
                }
                i += 1;
            }
            let changed: Vec<(Chain, ChainHead)> = heads.iter().filter(|(c, h)| start_heads.get(c) != Some(h)).map(|(c, h)| (*c, *h)).collect();
            if let Err(e) = finish_batch(&mut tx, &deferred, &dirty, &changed, now).await {
                if isolate {
                    return Err(e);
                }
                tx.rollback().await?;
                return Ok(Err((0, e)));
            }
            let committing = std::time::Instant::now();
            tx.commit().await?;
            counters.commit(committing.elapsed());
            Ok(Ok(results))
        }

        /// Applies a batch of requests in one transaction (group commit): all
        /// accepted requests become durable with one commit, and a refused request
        /// leaves no trace and does not affect the others.
        pub(crate) async fn commit_batch(pool: &Pool, jobs: Vec<Job>, counters: &crate::WriteCounters) {
            let started = std::time::Instant::now();
            let outcome: Result<Vec<Result<Receipt>>> = async {
                match run_batch(pool, &jobs, false, counters).await? {
                    Ok(results) => Ok(results),
                    Err((_, e)) if jobs.len() == 1 => Ok(vec![Err(e)]),
                    Err(_) => match run_batch(pool, &jobs, true, counters).await? {
                        Ok(results) => Ok(results),
                        // With isolation every refusal is recorded per request; this arm is unreachable in practice.
                        Err((_, e)) => Err(e),
                    },
                }
            }
            .await;
            counters.batch(jobs.len(), started.elapsed());
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
            rows.iter().map(subject_from_row).collect()
        }

        fn subject_from_row(r: &<$db as sqlx::Database>::Row) -> Result<Subject> {
            Ok(Subject {
                study: StudyId::from_uuid(r.try_get("study_id")?),
                id: SubjectId::from_uuid(r.try_get("subject_id")?),
                site: SiteId::from_uuid(r.try_get("site_id")?),
                screening_number: r.try_get("screening_number")?,
                status: parse_enum(&r.try_get::<String, _>("status")?, "subjects.status")?,
                created_at: UtcMicros::from_micros(r.try_get("created_at")?),
            })
        }

        pub(crate) async fn subject(pool: &Pool, study: StudyId, subject: SubjectId) -> Result<Option<Subject>> {
            let row = sqlx::query("SELECT * FROM subjects WHERE study_id = $1 AND subject_id = $2")
                .bind(study.as_uuid()).bind(subject.as_uuid()).fetch_optional(pool).await?;
            row.as_ref().map(subject_from_row).transpose()
        }

        pub(crate) async fn subject_context(pool: &Pool, study: StudyId, subject: SubjectId) -> Result<Option<SubjectContext>> {
            let row = sqlx::query(
                "SELECT s.*, COALESCE(sv.oid, (SELECT m.oid FROM metadata_versions m WHERE m.study_id = s.study_id ORDER BY m.seq LIMIT 1)) AS version_oid, \
                 st.time_zone AS site_time_zone \
                 FROM subjects s LEFT JOIN subject_versions sv ON sv.study_id = s.study_id AND sv.subject_id = s.subject_id \
                 LEFT JOIN sites st ON st.study_id = s.study_id AND st.site_id = s.site_id \
                 WHERE s.study_id = $1 AND s.subject_id = $2",
            )
            .bind(study.as_uuid()).bind(subject.as_uuid()).fetch_optional(pool).await?;
            row.map(|r| {
                Ok(SubjectContext {
                    subject: subject_from_row(&r)?,
                    version: r.try_get("version_oid")?,
                    site_time_zone: r.try_get::<Option<String>, _>("site_time_zone")?.map(tz),
                })
            })
            .transpose()
        }

        /// Bounds that select one subject, or all (an index range either way, where
        /// `$2 IS NULL OR subject_id = $2` would make SQLite scan the study's rows).
        fn subject_range(subject: Option<SubjectId>) -> (Uuid, Uuid) {
            match subject {
                Some(s) => (s.as_uuid(), s.as_uuid()),
                None => (Uuid::nil(), Uuid::max()),
            }
        }

        pub(crate) async fn item_values(pool: &Pool, study: StudyId, subject: SubjectId) -> Result<Vec<(String, Option<String>)>> {
            let rows = sqlx::query("SELECT item_key, value FROM item_values WHERE study_id = $1 AND subject_id = $2 ORDER BY item_key")
                .bind(study.as_uuid()).bind(subject.as_uuid()).fetch_all(pool).await?;
            rows.iter().map(|r| Ok((r.try_get("item_key")?, r.try_get("value")?))).collect()
        }

        pub(crate) async fn study_item_values(pool: &Pool, study: StudyId) -> Result<Vec<(SubjectId, String, Option<String>)>> {
            let rows = sqlx::query("SELECT subject_id, item_key, value FROM item_values WHERE study_id = $1 ORDER BY subject_id, item_key")
                .bind(study.as_uuid()).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((SubjectId::from_uuid(r.try_get("subject_id")?), r.try_get("item_key")?, r.try_get("value")?)))
                .collect()
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

        /// A user with their organization's kind and grants: one statement, one row per grant.
        async fn account_where(pool: &Pool, by: AccountBy<'_>) -> Result<Option<Account>> {
            macro_rules! account_sql {
                ($user:literal) => {
                    concat!(
                        "SELECT u.*, o.kind AS org_kind, g.grant_id, g.role AS grant_role, g.study_id AS grant_study, g.site_id AS grant_site, ",
                        "g.granted_at AS grant_granted_at, g.revoked_at AS grant_revoked_at ",
                        "FROM users u LEFT JOIN organizations o ON o.org_id = u.org_id LEFT JOIN role_grants g ON g.user_id = u.user_id ",
                        "WHERE u.user_id = ", $user, " ORDER BY g.granted_at, g.grant_id"
                    )
                };
            }
            let q = match by {
                AccountBy::Id(id) => sqlx::query(account_sql!("$1")).bind(id.as_uuid()),
                AccountBy::ApiToken(hash) => sqlx::query(account_sql!("(SELECT t.user_id FROM api_tokens t WHERE t.token_hash = $1 AND t.revoked_at IS NULL)"))
                    .bind(hash.to_vec()),
            };
            let rows = q.fetch_all(pool).await?;
            let Some(first) = rows.first() else { return Ok(None) };
            let user = user_from_row(first)?;
            let org_kind = match first.try_get::<Option<String>, _>("org_kind")? {
                Some(k) => Some(parse_enum(&k, "organizations.kind")?),
                None => None,
            };
            let mut grants = Vec::new();
            for r in &rows {
                let Some(id) = r.try_get::<Option<Uuid>, _>("grant_id")? else { continue };
                grants.push(RoleGrant {
                    id: RoleGrantId::from_uuid(id),
                    user: user.id,
                    role: parse_enum(&r.try_get::<String, _>("grant_role")?, "role_grants.role")?,
                    study: r.try_get::<Option<Uuid>, _>("grant_study")?.map(StudyId::from_uuid),
                    site: r.try_get::<Option<Uuid>, _>("grant_site")?.map(SiteId::from_uuid),
                    granted_at: UtcMicros::from_micros(r.try_get("grant_granted_at")?),
                    revoked_at: r.try_get::<Option<i64>, _>("grant_revoked_at")?.map(UtcMicros::from_micros),
                });
            }
            Ok(Some(Account { user, org_kind, grants }))
        }

        enum AccountBy<'a> {
            Id(UserId),
            ApiToken(&'a [u8; 32]),
        }

        pub(crate) async fn account(pool: &Pool, id: UserId) -> Result<Option<Account>> {
            account_where(pool, AccountBy::Id(id)).await
        }

        pub(crate) async fn account_by_api_token(pool: &Pool, token_hash: &[u8; 32]) -> Result<Option<Account>> {
            account_where(pool, AccountBy::ApiToken(token_hash)).await
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

        pub(crate) async fn metadata_versions(pool: &Pool, study: StudyId) -> Result<Vec<MetadataVersionRow>> {
            let rows = sqlx::query("SELECT study_id, oid, study_oid, name, seq, odm_sha256, created_at FROM metadata_versions WHERE study_id = $1 ORDER BY seq")
                .bind(study.as_uuid()).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(MetadataVersionRow {
                        study,
                        oid: r.try_get("oid")?,
                        study_oid: r.try_get("study_oid")?,
                        name: r.try_get("name")?,
                        seq: u32::try_from(r.try_get::<i64, _>("seq")?).unwrap_or(0),
                        odm_sha256: hash32(r.try_get("odm_sha256")?, "metadata_versions.odm_sha256")?,
                        created_at: UtcMicros::from_micros(r.try_get("created_at")?),
                    })
                })
                .collect()
        }

        pub(crate) async fn metadata_version_odm(pool: &Pool, study: StudyId, oid: &str) -> Result<Option<String>> {
            let row = sqlx::query("SELECT odm FROM metadata_versions WHERE study_id = $1 AND oid = $2")
                .bind(study.as_uuid()).bind(oid).fetch_optional(pool).await?;
            Ok(row.map(|r| r.try_get("odm")).transpose()?)
        }

        pub(crate) async fn subject_versions(pool: &Pool, study: StudyId) -> Result<Vec<(SubjectId, String)>> {
            let rows = sqlx::query("SELECT subject_id, oid FROM subject_versions WHERE study_id = $1")
                .bind(study.as_uuid()).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((SubjectId::from_uuid(r.try_get("subject_id")?), r.try_get("oid")?)))
                .collect()
        }

        pub(crate) async fn queries(pool: &Pool, study: StudyId, subject: Option<SubjectId>) -> Result<Vec<QueryRow>> {
            let st = study.as_uuid();
            let (lo, hi) = subject_range(subject);
            let rows = sqlx::query("SELECT query_id, subject_id, item_key, check_id, status, opened_by, opened_at, updated_at FROM queries \
                                    WHERE study_id = $1 AND subject_id BETWEEN $2 AND $3 ORDER BY opened_at, query_id")
                .bind(st).bind(lo).bind(hi).fetch_all(pool).await?;
            let messages = sqlx::query("SELECT m.query_id, m.seq, m.action, m.author_id, m.author_name, m.at, m.text FROM query_messages m \
                                        JOIN queries q ON q.study_id = m.study_id AND q.query_id = m.query_id \
                                        WHERE q.study_id = $1 AND q.subject_id BETWEEN $2 AND $3 ORDER BY m.query_id, m.seq")
                .bind(st).bind(lo).bind(hi).fetch_all(pool).await?;
            let mut by_query: HashMap<Uuid, Vec<QueryMessage>> = HashMap::new();
            for m in &messages {
                by_query.entry(m.try_get("query_id")?).or_default().push(QueryMessage {
                    seq: u32::try_from(m.try_get::<i64, _>("seq")?).unwrap_or(0),
                    action: m.try_get("action")?,
                    author_id: m.try_get("author_id")?,
                    author_name: m.try_get("author_name")?,
                    at: UtcMicros::from_micros(m.try_get("at")?),
                    text: m.try_get("text")?,
                });
            }
            rows.iter()
                .map(|r| {
                    let id: Uuid = r.try_get("query_id")?;
                    Ok(QueryRow {
                        study,
                        id: QueryId::from_uuid(id),
                        subject: SubjectId::from_uuid(r.try_get("subject_id")?),
                        item_key: r.try_get("item_key")?,
                        check_id: r.try_get("check_id")?,
                        status: QueryStatus::parse(&r.try_get::<String, _>("status")?).ok_or_else(|| StoreError::invalid("queries.status", "unknown status"))?,
                        opened_by: r.try_get("opened_by")?,
                        opened_at: UtcMicros::from_micros(r.try_get("opened_at")?),
                        updated_at: UtcMicros::from_micros(r.try_get("updated_at")?),
                        messages: by_query.remove(&id).unwrap_or_default(),
                    })
                })
                .collect()
        }

        /// A subject's item values (by key) and its queries without their threads (oldest
        /// first), in one statement: what a form save reads before it writes.
        pub(crate) async fn subject_form(pool: &Pool, study: StudyId, subject: SubjectId) -> Result<Option<SubjectForm>> {
            // PostgreSQL types a UNION's columns branch by branch: a NULL typed by no branch
            // before the queries' own is given its type here.
            let rows = sqlx::query(
                "SELECT 2 AS part, s.site_id, s.screening_number, s.status, s.created_at, \
                 COALESCE(sv.oid, (SELECT m.oid FROM metadata_versions m WHERE m.study_id = s.study_id ORDER BY m.seq LIMIT 1)) AS version_oid, \
                 st.time_zone AS site_time_zone, NULL AS item_key, NULL AS value, CAST(NULL AS UUID) AS query_id, NULL AS check_id, \
                 NULL AS query_status, CAST(NULL AS UUID) AS opened_by, CAST(NULL AS BIGINT) AS opened_at, CAST(NULL AS BIGINT) AS updated_at \
                 FROM subjects s LEFT JOIN subject_versions sv ON sv.study_id = s.study_id AND sv.subject_id = s.subject_id \
                 LEFT JOIN sites st ON st.study_id = s.study_id AND st.site_id = s.site_id \
                 WHERE s.study_id = $1 AND s.subject_id = $2 \
                 UNION ALL SELECT 0, NULL, NULL, NULL, NULL, NULL, NULL, item_key, value, NULL, NULL, NULL, NULL, NULL, NULL \
                 FROM item_values WHERE study_id = $1 AND subject_id = $2 \
                 UNION ALL SELECT 1, NULL, NULL, NULL, NULL, NULL, NULL, item_key, NULL, query_id, check_id, status, opened_by, opened_at, updated_at \
                 FROM queries WHERE study_id = $1 AND subject_id = $2",
            )
            .bind(study.as_uuid())
            .bind(subject.as_uuid())
            .fetch_all(pool)
            .await?;
            let mut context = None;
            let mut values: Vec<(String, Option<String>)> = Vec::new();
            let mut queries = Vec::new();
            for r in &rows {
                match r.try_get::<i32, _>("part")? {
                    0 => values.push((r.try_get("item_key")?, r.try_get("value")?)),
                    1 => {
                        let status: Option<String> = r.try_get("query_status")?;
                        queries.push(QueryRow {
                            study,
                            id: QueryId::from_uuid(r.try_get::<Option<Uuid>, _>("query_id")?.ok_or_else(|| StoreError::invalid("queries.query_id", "missing"))?),
                            subject,
                            item_key: r.try_get("item_key")?,
                            check_id: r.try_get("check_id")?,
                            status: status.as_deref().and_then(QueryStatus::parse).ok_or_else(|| StoreError::invalid("queries.status", "unknown status"))?,
                            opened_by: r.try_get::<Option<Uuid>, _>("opened_by")?.ok_or_else(|| StoreError::invalid("queries.opened_by", "missing"))?,
                            opened_at: UtcMicros::from_micros(r.try_get::<Option<i64>, _>("opened_at")?.unwrap_or(0)),
                            updated_at: UtcMicros::from_micros(r.try_get::<Option<i64>, _>("updated_at")?.unwrap_or(0)),
                            messages: Vec::new(),
                        });
                    }
                    _ => {
                        let missing = |what| StoreError::invalid(what, "missing");
                        context = Some(SubjectContext {
                            subject: Subject {
                                study,
                                id: subject,
                                site: SiteId::from_uuid(r.try_get::<Option<Uuid>, _>("site_id")?.ok_or_else(|| missing("subjects.site_id"))?),
                                screening_number: r.try_get::<Option<String>, _>("screening_number")?.ok_or_else(|| missing("subjects.screening_number"))?,
                                status: parse_enum(&r.try_get::<Option<String>, _>("status")?.ok_or_else(|| missing("subjects.status"))?, "subjects.status")?,
                                created_at: UtcMicros::from_micros(r.try_get::<Option<i64>, _>("created_at")?.ok_or_else(|| missing("subjects.created_at"))?),
                            },
                            version: r.try_get("version_oid")?,
                            site_time_zone: r.try_get::<Option<String>, _>("site_time_zone")?.map(tz),
                        });
                    }
                }
            }
            let Some(context) = context else {
                return Ok(None);
            };
            values.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            queries.sort_by_key(|q| (q.opened_at.as_micros(), q.id.as_uuid()));
            Ok(Some(SubjectForm { context, values, queries }))
        }

        pub(crate) async fn verifications(pool: &Pool, study: StudyId, subject: Option<SubjectId>) -> Result<Vec<VerificationRow>> {
            let rows = sqlx::query("SELECT subject_id, item_key, verified_value, verified_by, verified_at FROM item_verifications \
                                    WHERE study_id = $1 AND subject_id BETWEEN $2 AND $3 ORDER BY subject_id, item_key")
                .bind(study.as_uuid()).bind(subject_range(subject).0).bind(subject_range(subject).1).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(VerificationRow {
                        subject: SubjectId::from_uuid(r.try_get("subject_id")?),
                        item_key: r.try_get("item_key")?,
                        verified_value: r.try_get("verified_value")?,
                        verified_by: r.try_get("verified_by")?,
                        verified_at: UtcMicros::from_micros(r.try_get("verified_at")?),
                    })
                })
                .collect()
        }

        pub(crate) async fn sdv_plan(pool: &Pool, study: StudyId) -> Result<Option<SdvPlanRow>> {
            let row = sqlx::query("SELECT plan, changed_by, changed_at FROM sdv_plans WHERE study_id = $1")
                .bind(study.as_uuid()).fetch_optional(pool).await?;
            row.map(|r| {
                Ok(SdvPlanRow {
                    plan: r.try_get("plan")?,
                    changed_by: r.try_get("changed_by")?,
                    changed_at: UtcMicros::from_micros(r.try_get("changed_at")?),
                })
            })
            .transpose()
        }

        pub(crate) async fn locks(pool: &Pool, study: StudyId) -> Result<Vec<LockRow>> {
            let rows = sqlx::query("SELECT subject_id, scope, state, changed_by, changed_at FROM data_locks WHERE study_id = $1 ORDER BY subject_id, scope")
                .bind(study.as_uuid()).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    let su: Uuid = r.try_get("subject_id")?;
                    Ok(LockRow {
                        subject: (!su.is_nil()).then(|| SubjectId::from_uuid(su)),
                        scope: r.try_get("scope")?,
                        state: LockState::parse(&r.try_get::<String, _>("state")?).ok_or_else(|| StoreError::invalid("data_locks.state", "unknown state"))?,
                        changed_by: r.try_get("changed_by")?,
                        changed_at: UtcMicros::from_micros(r.try_get("changed_at")?),
                    })
                })
                .collect()
        }

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
                metadata_versions: sqlx::query_as("SELECT study_id, oid, study_oid, name, seq, odm, odm_sha256, created_at FROM metadata_versions ORDER BY study_id, seq").fetch_all(pool).await?,
                subject_versions: sqlx::query_as("SELECT study_id, subject_id, oid, assigned_at FROM subject_versions ORDER BY study_id, subject_id").fetch_all(pool).await?,
                queries: sqlx::query_as("SELECT study_id, query_id, subject_id, item_key, check_id, status, opened_by, opened_at, updated_at FROM queries ORDER BY study_id, query_id").fetch_all(pool).await?,
                query_messages: sqlx::query_as("SELECT study_id, query_id, seq, action, author_id, author_name, at, text FROM query_messages ORDER BY study_id, query_id, seq").fetch_all(pool).await?,
                verifications: sqlx::query_as("SELECT study_id, subject_id, item_key, verified_value, verified_by, verified_at FROM item_verifications ORDER BY study_id, subject_id, item_key").fetch_all(pool).await?,
                locks: sqlx::query_as("SELECT study_id, subject_id, scope, state, changed_by, changed_at FROM data_locks ORDER BY study_id, subject_id, scope").fetch_all(pool).await?,
                sdv_plans: sqlx::query_as("SELECT study_id, plan, changed_by, changed_at FROM sdv_plans ORDER BY study_id").fetch_all(pool).await?,
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
            for x in &r.metadata_versions {
                sqlx::query("INSERT INTO metadata_versions (study_id, oid, study_oid, name, seq, odm, odm_sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(x.0).bind(&x.1).bind(&x.2).bind(&x.3).bind(x.4).bind(&x.5).bind(&x.6).bind(x.7).execute(&mut *conn).await?;
            }
            for x in &r.subject_versions {
                sqlx::query("INSERT INTO subject_versions (study_id, subject_id, oid, assigned_at) VALUES ($1, $2, $3, $4)")
                    .bind(x.0).bind(x.1).bind(&x.2).bind(x.3).execute(&mut *conn).await?;
            }
            for x in &r.queries {
                sqlx::query("INSERT INTO queries (study_id, query_id, subject_id, item_key, check_id, status, opened_by, opened_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(x.0).bind(x.1).bind(x.2).bind(&x.3).bind(&x.4).bind(&x.5).bind(x.6).bind(x.7).bind(x.8).execute(&mut *conn).await?;
            }
            for x in &r.query_messages {
                sqlx::query("INSERT INTO query_messages (study_id, query_id, seq, action, author_id, author_name, at, text) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(x.0).bind(x.1).bind(x.2).bind(&x.3).bind(x.4).bind(&x.5).bind(x.6).bind(&x.7).execute(&mut *conn).await?;
            }
            for x in &r.locks {
                sqlx::query("INSERT INTO data_locks (study_id, subject_id, scope, state, changed_by, changed_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(x.0).bind(x.1).bind(&x.2).bind(&x.3).bind(x.4).bind(x.5).execute(&mut *conn).await?;
            }
            for x in &r.sdv_plans {
                sqlx::query("INSERT INTO sdv_plans (study_id, plan, changed_by, changed_at) VALUES ($1, $2, $3, $4)")
                    .bind(x.0).bind(&x.1).bind(x.2).bind(x.3).execute(&mut *conn).await?;
            }
            for x in &r.verifications {
                sqlx::query("INSERT INTO item_verifications (study_id, subject_id, item_key, verified_value, verified_by, verified_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(x.0).bind(x.1).bind(&x.2).bind(&x.3).bind(x.4).bind(x.5).execute(&mut *conn).await?;
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

/// SQLite's bulk statements: multi-row `VALUES` lists. A statement's rows are padded
/// with all-NULL rows (which it filters out) up to one of a few sizes, so a few dozen
/// statement texts serve every batch size and stay prepared in the connection's cache.
macro_rules! bulk_sqlite {
    () => {
        const ENTRY_COLUMNS: &str = "chain_id, seq, entry_id, recorded_at, actor_id, actor_name, action, entity_type, entity_id, field, old_value, new_value, reason, request_id, site_id, subject_id, prev_hash, hash";

        /// Rows a statement for `n` rows (at most `max`, a multiple of 32) is padded to:
        /// 8, 16, 32, then multiples of 32, so a few NULL rows are bound at most.
        fn padded(n: usize, max: usize) -> usize {
            if n <= 32 { n.next_power_of_two().max(8) } else { n.div_ceil(32) * 32 }.min(max)
        }

        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        enum SqlKind {
            LockHeads,
            ReadItems,
            WriteItems,
            InsertEntries,
            StoreHeads,
        }

        /// The text of a padded statement, built once per kind and size: under a hundred
        /// texts in all (see `padded`), kept for the life of the process.
        fn cached_sql(kind: SqlKind, rows: usize, make: impl FnOnce() -> String) -> &'static str {
            static CACHE: std::sync::Mutex<Option<HashMap<(SqlKind, usize), &'static str>>> = std::sync::Mutex::new(None);
            let mut guard = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            guard.get_or_insert_with(HashMap::new).entry((kind, rows)).or_insert_with(|| Box::leak(make().into_boxed_str()))
        }

        /// `(?, ?), (?, ?), ...`: `rows` rows of `cols` placeholders. Anonymous `?`s, because
        /// binding numbered ones looks each name up in a list (quadratic in a long statement).
        fn values_sql(rows: usize, cols: usize) -> String {
            let row = format!("({})", vec!["?"; cols].join(", "));
            vec![row; rows].join(", ")
        }

        /// Freezes and locks of `studies`: (study, subject or nil, scope, state).
        async fn read_locks(conn: &mut Conn, studies: &[Uuid]) -> Result<Vec<(Uuid, Uuid, String, String)>> {
            let mut out = Vec::new();
            for st in studies {
                for r in sqlx::query("SELECT subject_id, scope, state FROM data_locks WHERE study_id = $1").bind(st).fetch_all(&mut *conn).await? {
                    out.push((*st, r.try_get("subject_id")?, r.try_get("scope")?, r.try_get("state")?));
                }
            }
            Ok(out)
        }

        /// Reads the heads of `chains` (the transaction's `BEGIN IMMEDIATE` already excludes other writers).
        async fn lock_heads(conn: &mut Conn, chains: &[Chain]) -> Result<BTreeMap<Chain, ChainHead>> {
            let mut heads = BTreeMap::new();
            for chunk in chains.chunks(256) {
                let n = padded(chunk.len(), 256);
                let sql = cached_sql(SqlKind::LockHeads, n, || {
                    format!("SELECT chain_id, seq, hash FROM chain_heads WHERE chain_id IN (SELECT column1 FROM (VALUES {}))", values_sql(n, 1))
                });
                let mut q = sqlx::query(sql);
                for c in chunk {
                    q = q.bind(c.id());
                }
                for _ in chunk.len()..n {
                    q = q.bind(None::<Uuid>);
                }
                for row in q.fetch_all(&mut *conn).await? {
                    heads.insert(
                        Chain::from_id(row.try_get("chain_id")?),
                        ChainHead { seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0), hash: hash32(row.try_get("hash")?, "chain_heads.hash")? },
                    );
                }
            }
            Ok(heads)
        }

        /// The sites of `subjects` (one row each that exists) and the item rows of `keys` that exist.
        async fn read_items(conn: &mut Conn, subjects: &[(Uuid, Uuid)], keys: &[(Uuid, Uuid, &str)]) -> Result<Vec<ItemRow>> {
            let mut out = Vec::new();
            let chunks = subjects.len().max(keys.len()).div_ceil(512);
            for c in 0..chunks {
                let sub = subjects.get(c * 512..subjects.len().min((c + 1) * 512)).unwrap_or(&[]);
                let key = keys.get(c * 512..keys.len().min((c + 1) * 512)).unwrap_or(&[]);
                let n = padded(sub.len().max(key.len()), 512);
                // CROSS JOIN keeps the lists as the outer loops, probing the primary keys.
                let sql = cached_sql(SqlKind::ReadItems, n, || {
                    format!(
                        "WITH sk(st, su) AS (VALUES {}), k(st, su, ik) AS (VALUES {}) \
                         SELECT s.study_id, s.subject_id, s.site_id, NULL AS item_key, NULL AS value \
                         FROM sk CROSS JOIN subjects s ON s.study_id = sk.st AND s.subject_id = sk.su \
                         UNION ALL SELECT v.study_id, v.subject_id, NULL, v.item_key, v.value \
                         FROM k CROSS JOIN item_values v ON v.study_id = k.st AND v.subject_id = k.su AND v.item_key = k.ik",
                        values_sql(n, 2),
                        values_sql(n, 3)
                    )
                });
                let mut q = sqlx::query(sql);
                for (st, su) in sub {
                    q = q.bind(*st).bind(*su);
                }
                for _ in sub.len()..n {
                    q = q.bind(None::<Uuid>).bind(None::<Uuid>);
                }
                for (st, su, ik) in key {
                    q = q.bind(*st).bind(*su).bind(*ik);
                }
                for _ in key.len()..n {
                    q = q.bind(None::<Uuid>).bind(None::<Uuid>).bind(None::<&str>);
                }
                for row in q.fetch_all(&mut *conn).await? {
                    out.push(ItemRow {
                        study: row.try_get("study_id")?,
                        subject: row.try_get("subject_id")?,
                        site: row.try_get("site_id")?,
                        key: row.try_get("item_key")?,
                        value: row.try_get("value")?,
                    });
                }
            }
            Ok(out)
        }

        /// Inserts or updates item rows.
        async fn write_items(conn: &mut Conn, rows: &BTreeMap<ItemKey, Option<String>>, now: UtcMicros) -> Result<()> {
            let rows: Vec<_> = rows.iter().collect();
            for chunk in rows.chunks(1024) {
                let n = padded(chunk.len(), 1024);
                let sql = cached_sql(SqlKind::WriteItems, n, || {
                    format!(
                        "INSERT INTO item_values (study_id, subject_id, item_key, value, updated_at) \
                         SELECT column1, column2, column3, column4, column5 FROM (VALUES {}) WHERE column1 IS NOT NULL \
                         ON CONFLICT (study_id, subject_id, item_key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                        values_sql(n, 5)
                    )
                });
                let mut q = sqlx::query(sql);
                for ((st, su, k), v) in chunk {
                    q = q.bind(*st).bind(*su).bind(k.as_str()).bind(v.as_deref()).bind(now.as_micros());
                }
                for _ in chunk.len()..n {
                    q = q.bind(None::<Uuid>).bind(None::<Uuid>).bind(None::<&str>).bind(None::<&str>).bind(None::<i64>);
                }
                q.execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Inserts entries with multi-row statements (18 parameters a row, up to 256 rows a statement).
        async fn insert_entries(conn: &mut Conn, entries: &[StoredEntry]) -> Result<()> {
            for chunk in entries.chunks(256) {
                let n = padded(chunk.len(), 256);
                let sql = cached_sql(SqlKind::InsertEntries, n, || {
                    format!("INSERT INTO audit_entries ({ENTRY_COLUMNS}) SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL", values_sql(n, 18))
                });
                let mut q = sqlx::query(sql);
                for e in chunk {
                    let b = &e.body;
                    q = q
                        .bind(e.chain.id())
                        .bind(i64::try_from(e.seq).unwrap_or(i64::MAX))
                        .bind(b.entry_id)
                        .bind(b.recorded_at.as_micros())
                        .bind(b.actor_id)
                        .bind(b.actor_name.as_str())
                        .bind(b.action.as_str())
                        .bind(b.entity_type.as_str())
                        .bind(b.entity_id.as_str())
                        .bind(b.field.as_deref())
                        .bind(b.old_value.as_deref())
                        .bind(b.new_value.as_deref())
                        .bind(b.reason.as_deref())
                        .bind(b.request_id.as_deref())
                        .bind(b.site_id)
                        .bind(b.subject_id)
                        .bind(e.prev_hash.as_slice())
                        .bind(e.hash.as_slice());
                }
                for _ in chunk.len()..n {
                    for _ in 0..18 {
                        q = q.bind(None::<i64>);
                    }
                }
                q.execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// The end of a batch: its audit entries, its remaining item rows and the new chain heads.
        async fn finish_batch(conn: &mut Conn, entries: &[StoredEntry], items: &BTreeMap<ItemKey, Option<String>>, heads: &[(Chain, ChainHead)], now: UtcMicros) -> Result<()> {
            insert_entries(conn, entries).await?;
            write_items(conn, items, now).await?;
            for chunk in heads.chunks(256) {
                let n = padded(chunk.len(), 256);
                let sql = cached_sql(SqlKind::StoreHeads, n, || {
                    format!(
                        "INSERT INTO chain_heads (chain_id, seq, hash) SELECT column1, column2, column3 FROM (VALUES {}) WHERE column1 IS NOT NULL \
                         ON CONFLICT (chain_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                        values_sql(n, 3)
                    )
                });
                let mut q = sqlx::query(sql);
                for (c, h) in chunk {
                    q = q.bind(c.id()).bind(i64::try_from(h.seq).unwrap_or(i64::MAX)).bind(h.hash.as_slice());
                }
                for _ in chunk.len()..n {
                    q = q.bind(None::<Uuid>).bind(None::<i64>).bind(None::<&[u8]>);
                }
                q.execute(&mut *conn).await?;
            }
            Ok(())
        }
    };
}

pub(crate) use bulk_sqlite;

/// PostgreSQL's bulk statements: constant texts over `UNNEST` of arrays, so each is
/// prepared once per connection whatever the batch size, and a batch's writes
/// (audit entries, item rows, chain heads) go in one statement: one round trip.
macro_rules! bulk_postgres {
    () => {
        const ENTRY_COLUMNS: &str = "chain_id, seq, entry_id, recorded_at, actor_id, actor_name, action, entity_type, entity_id, field, old_value, new_value, reason, request_id, site_id, subject_id, prev_hash, hash";

        /// `SELECT * FROM UNNEST(...)` over the entry columns as parameters `$1..$18`.
        const ENTRY_UNNEST: &str = "SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::uuid[], $4::int8[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], \
            $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::uuid[], $16::uuid[], $17::bytea[], $18::bytea[])";

        /// Freezes and locks of `studies` in one round trip: (study, subject or nil, scope, state).
        async fn read_locks(conn: &mut Conn, studies: &[Uuid]) -> Result<Vec<(Uuid, Uuid, String, String)>> {
            let rows = sqlx::query("SELECT study_id, subject_id, scope, state FROM data_locks WHERE study_id = ANY($1)")
                .bind(studies)
                .fetch_all(&mut *conn)
                .await?;
            rows.iter().map(|r| Ok((r.try_get("study_id")?, r.try_get("subject_id")?, r.try_get("scope")?, r.try_get("state")?))).collect()
        }

        /// Locks the heads of `chains` (sorted) in chain order and reads them.
        async fn lock_heads(conn: &mut Conn, chains: &[Chain]) -> Result<BTreeMap<Chain, ChainHead>> {
            let ids: Vec<Uuid> = chains.iter().map(|c| c.id()).collect();
            let rows = sqlx::query("SELECT chain_id, seq, hash FROM chain_heads WHERE chain_id = ANY($1) ORDER BY chain_id FOR UPDATE")
                .bind(ids)
                .fetch_all(&mut *conn)
                .await?;
            let mut heads = BTreeMap::new();
            for row in rows {
                heads.insert(
                    Chain::from_id(row.try_get("chain_id")?),
                    ChainHead { seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0), hash: hash32(row.try_get("hash")?, "chain_heads.hash")? },
                );
            }
            Ok(heads)
        }

        /// The sites of `subjects` (one row each that exists) and the item rows of `keys` that exist.
        async fn read_items(conn: &mut Conn, subjects: &[(Uuid, Uuid)], keys: &[(Uuid, Uuid, &str)]) -> Result<Vec<ItemRow>> {
            let rows = sqlx::query(
                "SELECT s.study_id, s.subject_id, s.site_id, NULL::text AS item_key, NULL::text AS value \
                 FROM UNNEST($1::uuid[], $2::uuid[]) AS sk(st, su) JOIN subjects s ON s.study_id = sk.st AND s.subject_id = sk.su \
                 UNION ALL SELECT v.study_id, v.subject_id, NULL::uuid, v.item_key, v.value \
                 FROM UNNEST($3::uuid[], $4::uuid[], $5::text[]) AS k(st, su, ik) \
                 CROSS JOIN LATERAL (SELECT iv.study_id, iv.subject_id, iv.item_key, iv.value FROM item_values iv \
                 WHERE iv.study_id = k.st AND iv.subject_id = k.su AND iv.item_key = k.ik OFFSET 0) v",
            )
            .bind(subjects.iter().map(|k| k.0).collect::<Vec<_>>())
            .bind(subjects.iter().map(|k| k.1).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.2).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(ItemRow {
                        study: row.try_get("study_id")?,
                        subject: row.try_get("subject_id")?,
                        site: row.try_get("site_id")?,
                        key: row.try_get("item_key")?,
                        value: row.try_get("value")?,
                    })
                })
                .collect()
        }

        type Q<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

        fn bind_entries<'q>(q: Q<'q>, entries: &[StoredEntry]) -> Q<'q> {
            q.bind(entries.iter().map(|e| e.chain.id()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| i64::try_from(e.seq).unwrap_or(i64::MAX)).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.entry_id).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.recorded_at.as_micros()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.actor_id).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.actor_name.as_str()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.action.as_str()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.entity_type.as_str()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.entity_id.as_str()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.field.as_deref()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.old_value.as_deref()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.new_value.as_deref()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.reason.as_deref()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.request_id.as_deref()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.site_id).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.body.subject_id).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.prev_hash.as_slice()).collect::<Vec<_>>())
                .bind(entries.iter().map(|e| e.hash.as_slice()).collect::<Vec<_>>())
        }

        fn bind_items<'q>(q: Q<'q>, rows: &BTreeMap<ItemKey, Option<String>>) -> Q<'q> {
            q.bind(rows.keys().map(|k| k.0).collect::<Vec<_>>())
                .bind(rows.keys().map(|k| k.1).collect::<Vec<_>>())
                .bind(rows.keys().map(|k| k.2.as_str()).collect::<Vec<_>>())
                .bind(rows.values().map(Option::as_deref).collect::<Vec<_>>())
        }

        /// Inserts or updates item rows in one statement.
        async fn write_items(conn: &mut Conn, rows: &BTreeMap<ItemKey, Option<String>>, now: UtcMicros) -> Result<()> {
            if rows.is_empty() {
                return Ok(());
            }
            bind_items(sqlx::query(
                "INSERT INTO item_values (study_id, subject_id, item_key, value, updated_at) \
                 SELECT k.st, k.su, k.ik, k.v, $5 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS k(st, su, ik, v) \
                 ON CONFLICT (study_id, subject_id, item_key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
            ), rows)
            .bind(now.as_micros())
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Inserts entries with one constant statement per 10,000.
        async fn insert_entries(conn: &mut Conn, entries: &[StoredEntry]) -> Result<()> {
            for chunk in entries.chunks(10_000) {
                let sql = format!("INSERT INTO audit_entries ({ENTRY_COLUMNS}) {ENTRY_UNNEST}");
                bind_entries(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk).execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// The end of a batch in one statement: its audit entries, its remaining item rows and the new chain heads.
        async fn finish_batch(conn: &mut Conn, entries: &[StoredEntry], items: &BTreeMap<ItemKey, Option<String>>, heads: &[(Chain, ChainHead)], now: UtcMicros) -> Result<()> {
            let sql = format!(
                "WITH a AS (INSERT INTO audit_entries ({ENTRY_COLUMNS}) {ENTRY_UNNEST}), \
                 i AS (INSERT INTO item_values (study_id, subject_id, item_key, value, updated_at) \
                   SELECT k.st, k.su, k.ik, k.v, $23 FROM UNNEST($19::uuid[], $20::uuid[], $21::text[], $22::text[]) AS k(st, su, ik, v) \
                   ON CONFLICT (study_id, subject_id, item_key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at) \
                 UPDATE chain_heads SET seq = h.seq, hash = h.hash FROM UNNEST($24::uuid[], $25::int8[], $26::bytea[]) AS h(chain_id, seq, hash) \
                 WHERE chain_heads.chain_id = h.chain_id"
            );
            let q = bind_items(bind_entries(sqlx::query(sqlx::AssertSqlSafe(sql)), entries), items)
                .bind(now.as_micros())
                .bind(heads.iter().map(|(c, _)| c.id()).collect::<Vec<_>>())
                .bind(heads.iter().map(|(_, h)| i64::try_from(h.seq).unwrap_or(i64::MAX)).collect::<Vec<_>>())
                .bind(heads.iter().map(|(_, h)| h.hash.as_slice()).collect::<Vec<_>>());
            q.execute(&mut *conn).await?;
            Ok(())
        }
    };
}

pub(crate) use bulk_postgres;
