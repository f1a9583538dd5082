//! Raw SQL tampering with the audit table must be caught by verification,
//! on both backends, naming the entry.
use trellis_store::*;

use crate::story::{actor, seed};

fn hex_id(s: &trellis_domain::StudyId) -> String {
    s.as_uuid().simple().to_string()
}

/// SQL literal for a study chain id, per backend.
fn chain_lit(db: &crate::harness::TestDb, s: &trellis_domain::StudyId) -> String {
    match db.url {
        DatabaseUrl::Sqlite(_) => format!("x'{}'", hex_id(s)),
        DatabaseUrl::Postgres(_) => format!("'{}'::uuid", s.as_uuid()),
    }
}

/// Turns off the append-only guard, as someone with full database access could.
fn disable_guard(db: &crate::harness::TestDb) -> &'static str {
    match db.url {
        DatabaseUrl::Sqlite(_) => {
            "DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete;"
        }
        DatabaseUrl::Postgres(_) => "ALTER TABLE audit_entries DISABLE TRIGGER USER;",
    }
}

async fn with_entries() -> Vec<(crate::harness::TestDb, trellis_domain::StudyId)> {
    let mut out = Vec::new();
    for db in crate::harness::backends().await {
        let s = seed(&db.store).await;
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::SaveItems {
                    study: s.study,
                    subject: s.subject,
                    values: (0..10)
                        .map(|i| (format!("I{i}"), Some(i.to_string())))
                        .collect(),
                }],
            ))
            .await
            .unwrap();
        // 11 seeding entries + 10 values = 21 in the study chain.
        db.store.verify_audit(None).await.unwrap();
        out.push((db, s.study));
    }
    out
}

fn expect_bad(r: Result<Vec<ChainSummary>, StoreError>, seq: u64, what: &str) {
    match r {
        Err(StoreError::Integrity(e)) => {
            assert_eq!(e.seq(), seq, "{what}: {e}");
            eprintln!("{what}: caught: {e}");
        }
        other => panic!("{what}: tampering not detected: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_refuses_update_and_delete() {
    for (db, _) in with_entries().await {
        let e = db
            .try_raw("UPDATE audit_entries SET new_value = 'x'")
            .await
            .unwrap_err();
        assert!(e.contains("append-only"), "{}: {e}", db.name());
        let e = db.try_raw("DELETE FROM audit_entries").await.unwrap_err();
        assert!(e.contains("append-only"), "{}: {e}", db.name());
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_row_is_caught() {
    for (db, study) in with_entries().await {
        db.raw(&format!(
            "{} UPDATE audit_entries SET new_value = '999' WHERE chain_id = {} AND seq = 15",
            disable_guard(&db),
            chain_lit(&db, &study)
        ))
        .await;
        expect_bad(db.store.verify_audit(None).await, 15, db.name());
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_row_is_caught() {
    for (db, study) in with_entries().await {
        db.raw(&format!(
            "{} DELETE FROM audit_entries WHERE chain_id = {} AND seq = 7",
            disable_guard(&db),
            chain_lit(&db, &study)
        ))
        .await;
        expect_bad(db.store.verify_audit(None).await, 8, db.name());
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_last_row_is_caught() {
    for (db, study) in with_entries().await {
        db.raw(&format!(
            "{} DELETE FROM audit_entries WHERE chain_id = {} AND seq = 21",
            disable_guard(&db),
            chain_lit(&db, &study)
        ))
        .await;
        expect_bad(db.store.verify_audit(None).await, 20, db.name());
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inserted_row_is_caught() {
    for (db, study) in with_entries().await {
        // Make room at seq 10 by shifting later entries up, then copy entry 9 into the gap with new content.
        let c = chain_lit(&db, &study);
        // Two steps, so no row collides with another on the way (PostgreSQL checks keys per row).
        let shift = format!(
            "UPDATE audit_entries SET seq = seq + 1000 WHERE chain_id = {c} AND seq >= 10; UPDATE audit_entries SET seq = seq - 999 WHERE chain_id = {c} AND seq >= 1010;"
        );
        let new_id = match db.url {
            DatabaseUrl::Sqlite(_) => "randomblob(16)",
            DatabaseUrl::Postgres(_) => "gen_random_uuid()",
        };
        db.raw(&format!(
            "{} {shift} INSERT INTO audit_entries SELECT chain_id, 10, {new_id}, recorded_at, actor_id, actor_name, action, entity_type, entity_id, field, old_value, 'forged', reason, request_id, site_id, subject_id, hash, hash FROM audit_entries WHERE chain_id = {c} AND seq = 9;",
            disable_guard(&db)
        ))
        .await;
        expect_bad(db.store.verify_audit(None).await, 10, db.name());
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_rows_are_caught() {
    for (db, study) in with_entries().await {
        let c = chain_lit(&db, &study);
        db.raw(&format!(
            "{} UPDATE audit_entries SET seq = 100000 WHERE chain_id = {c} AND seq = 12; UPDATE audit_entries SET seq = 12 WHERE chain_id = {c} AND seq = 13; UPDATE audit_entries SET seq = 13 WHERE chain_id = {c} AND seq = 100000;",
            disable_guard(&db)
        ))
        .await;
        expect_bad(db.store.verify_audit(None).await, 12, db.name());
        db.cleanup().await;
    }
}
