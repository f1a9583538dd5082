//! Study definitions: metadata versions are immutable, each subject follows one, and a
//! move to an amendment is audited with its reason.

use trellis_store::*;

use crate::on_each_backend;
use crate::story::{actor, seed};

fn version(s: &crate::story::Seed, oid: &str, study_oid: &str) -> Mutation {
    Mutation::AddMetadataVersion {
        study: s.study,
        study_oid: study_oid.into(),
        oid: oid.into(),
        name: format!("Protocol {oid}"),
        odm: format!("<ODM><!-- {oid} --></ODM>"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_versions_are_added_in_order_and_never_change() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![version(&s, "MDV.1", "ST.ACME")],
            ))
            .await
            .unwrap();
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![version(&s, "MDV.2", "ST.ACME")],
            ))
            .await
            .unwrap();
        let versions = db.store.metadata_versions(s.study).await.unwrap();
        assert_eq!(
            versions
                .iter()
                .map(|v| (v.oid.as_str(), v.seq))
                .collect::<Vec<_>>(),
            [("MDV.1", 1), ("MDV.2", 2)]
        );
        assert_eq!(
            db.store
                .metadata_version_odm(s.study, "MDV.2")
                .await
                .unwrap()
                .as_deref(),
            Some("<ODM><!-- MDV.2 --></ODM>")
        );

        // The same OID twice, or another study OID, is refused and leaves nothing.
        let dup = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![version(&s, "MDV.1", "ST.ACME")],
            ))
            .await
            .unwrap_err();
        assert_eq!(dup.code(), "conflict", "{dup}");
        let other = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![version(&s, "MDV.3", "ST.OTHER")],
            ))
            .await
            .unwrap_err();
        assert!(other.to_string().contains("ST.ACME"), "{other}");
        assert_eq!(db.store.metadata_versions(s.study).await.unwrap().len(), 2);

        // The audit trail holds the document's hash; the table refuses changes.
        let entries = db
            .store
            .audit_entries(&AuditFilter {
                entity_type: Some("metadata_version".into()),
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let sha = hex::encode(versions[0].odm_sha256);
        assert!(
            entries
                .iter()
                .any(|e| e.body.field.as_deref() == Some("odm_sha256")
                    && e.body.new_value.as_deref() == Some(sha.as_str()))
        );
        let refused = db
            .try_raw("UPDATE metadata_versions SET odm = '<ODM/>' WHERE oid = 'MDV.1'")
            .await;
        assert!(
            refused.is_err(),
            "{}: metadata versions must be immutable",
            db.name()
        );
        let refused = db.try_raw("DELETE FROM metadata_versions").await;
        assert!(
            refused.is_err(),
            "{}: metadata versions must be immutable",
            db.name()
        );
        db.store.verify_audit(None).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_subject_to_an_amendment_needs_a_reason_and_is_audited() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![
                    version(&s, "MDV.1", "ST.ACME"),
                    version(&s, "MDV.2", "ST.ACME"),
                ],
            ))
            .await
            .unwrap();
        let assign = |oid: &str| Mutation::AssignMetadataVersion {
            study: s.study,
            subject: s.subject,
            oid: oid.into(),
        };
        db.store
            .write(WriteRequest::new(actor(), vec![assign("MDV.1")]))
            .await
            .unwrap();
        let err = db
            .store
            .write(WriteRequest::new(actor(), vec![assign("MDV.2")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "reason_required", "{err}");
        let err = db
            .store
            .write(WriteRequest::new(actor(), vec![assign("MDV.9")]).with_reason("typo"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found", "{err}");
        db.store
            .write(
                WriteRequest::new(actor(), vec![assign("MDV.2")])
                    .with_reason("Protocol amendment 1 approved"),
            )
            .await
            .unwrap();
        assert_eq!(
            db.store.subject_versions(s.study).await.unwrap(),
            [(s.subject, "MDV.2".to_owned())]
        );
        let moves = db
            .store
            .audit_entries(&AuditFilter {
                subject: Some(s.subject.as_uuid()),
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let m = moves
            .iter()
            .find(|e| e.body.action == "migrate")
            .expect("the move is in the audit trail");
        assert_eq!(m.body.old_value.as_deref(), Some("MDV.1"));
        assert_eq!(m.body.new_value.as_deref(), Some("MDV.2"));
        assert_eq!(
            m.body.reason.as_deref(),
            Some("Protocol amendment 1 approved")
        );
    });
}
