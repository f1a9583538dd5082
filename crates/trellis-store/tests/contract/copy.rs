//! `copy_installation`: everything arrives, hashes unchanged, chains verify on the target.
use trellis_store::*;

use crate::harness;
use crate::story::{actor, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_sqlite_to_each_backend_and_verify() {
    let src = harness::sqlite().await;
    let s = seed(&src.store).await;
    src.store
        .write(WriteRequest::new(
            actor(),
            vec![Mutation::SaveItems {
                study: s.study,
                subject: s.subject,
                values: vec![("A".into(), Some("1".into()))],
            }],
        ))
        .await
        .unwrap();
    src.store
        .write(
            WriteRequest::new(
                actor(),
                vec![Mutation::SaveItems {
                    study: s.study,
                    subject: s.subject,
                    values: vec![("A".into(), Some("2".into()))],
                }],
            )
            .with_reason("corrected"),
        )
        .await
        .unwrap();
    src.store
        .write(WriteRequest::new(
            actor(),
            vec![
                Mutation::AddMetadataVersion {
                    study: s.study,
                    study_oid: "ST.ACME".into(),
                    oid: "MDV.1".into(),
                    name: "Protocol 1.0".into(),
                    odm: "<ODM/>".into(),
                },
                Mutation::AssignMetadataVersion {
                    study: s.study,
                    subject: s.subject,
                    oid: "MDV.1".into(),
                },
                Mutation::OpenQuery {
                    study: s.study,
                    id: trellis_domain::QueryId::new(),
                    subject: s.subject,
                    item_key: "A".into(),
                    check_id: None,
                    text: "Please confirm".into(),
                },
                Mutation::VerifyItem {
                    study: s.study,
                    subject: s.subject,
                    item_key: "A".into(),
                    verified: true,
                },
                Mutation::SetLock {
                    study: s.study,
                    subject: Some(s.subject),
                    scope: "SE.SCREEN[1]/F.VS[1]".into(),
                    state: Some(LockState::Frozen),
                },
                Mutation::SetSdvPlan {
                    study: s.study,
                    plan: "sample-percent: 20".into(),
                },
            ],
        ))
        .await
        .unwrap();
    let heads = src.store.chain_heads().await.unwrap();
    let all = AuditFilter {
        limit: 10_000,
        ..Default::default()
    };
    let src_entries = src.store.audit_entries(&all).await.unwrap();

    for dst in harness::backends().await {
        eprintln!("-- copy sqlite -> {}", dst.name());
        let n = copy_installation(&src.store, &dst.store).await.unwrap();
        assert!(n as usize >= src_entries.len());
        assert_eq!(dst.store.chain_heads().await.unwrap(), heads);
        assert_eq!(
            dst.store.audit_entries(&all).await.unwrap(),
            src_entries,
            "entries copied verbatim"
        );
        dst.store.verify_audit(None).await.unwrap();
        assert_eq!(
            dst.store.metadata_versions(s.study).await.unwrap(),
            src.store.metadata_versions(s.study).await.unwrap()
        );
        assert_eq!(
            dst.store
                .metadata_version_odm(s.study, "MDV.1")
                .await
                .unwrap()
                .as_deref(),
            Some("<ODM/>")
        );
        assert_eq!(
            dst.store.queries(s.study, None).await.unwrap(),
            src.store.queries(s.study, None).await.unwrap()
        );
        assert_eq!(
            dst.store.locks(s.study).await.unwrap(),
            src.store.locks(s.study).await.unwrap()
        );
        assert_eq!(
            dst.store.verifications(s.study, None).await.unwrap(),
            src.store.verifications(s.study, None).await.unwrap()
        );
        assert_eq!(
            dst.store.sdv_plan(s.study).await.unwrap(),
            src.store.sdv_plan(s.study).await.unwrap()
        );
        assert!(dst.store.sdv_plan(s.study).await.unwrap().is_some());
        assert_eq!(
            dst.store.subject_versions(s.study).await.unwrap(),
            [(s.subject, "MDV.1".to_owned())]
        );
        assert_eq!(
            dst.store.item_values(s.study, s.subject).await.unwrap(),
            vec![("A".to_owned(), Some("2".to_owned()))]
        );
        assert_eq!(
            dst.store.users().await.unwrap(),
            src.store.users().await.unwrap()
        );
        // Writing continues the copied chains.
        dst.store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::SaveItems {
                    study: s.study,
                    subject: s.subject,
                    values: vec![("B".into(), Some("x".into()))],
                }],
            ))
            .await
            .unwrap();
        dst.store.verify_audit(None).await.unwrap();
        // A second copy into a non-empty database is refused.
        let err = copy_installation(&src.store, &dst.store).await.unwrap_err();
        assert_eq!(err.code(), "invalid_value");
        dst.cleanup().await;
    }
    src.cleanup().await;
}
