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
        // The one-read subject context: the subject, its version (assigned, else the
        // study's first, else none) and its site's time zone.
        let context = async || {
            db.store
                .subject_context(s.study, s.subject)
                .await
                .unwrap()
                .expect("the subject exists")
        };
        let c = context().await;
        assert_eq!(
            Some(&c.subject),
            db.store.subject(s.study, s.subject).await.unwrap().as_ref()
        );
        assert_eq!(c.version, None);
        let site = db.store.sites(s.study).await.unwrap();
        let site = site.iter().find(|x| x.id == c.subject.site).unwrap();
        assert_eq!(c.site_time_zone.as_ref(), Some(&site.time_zone));
        assert_eq!(
            db.store
                .subject_context(s.study, trellis_domain::SubjectId::new())
                .await
                .unwrap(),
            None
        );
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
        assert_eq!(context().await.version.as_deref(), Some("MDV.1"));
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
        assert_eq!(context().await.version.as_deref(), Some("MDV.2"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_is_opened_answered_closed_and_reopened_with_its_thread() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        let key = "SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.DIABP";
        let id = trellis_domain::QueryId::new();
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::OpenQuery {
                    study: s.study,
                    id,
                    subject: s.subject,
                    item_key: key.into(),
                    check_id: Some("I.DIABP.RC1".into()),
                    text: "Diastolic must be lower than systolic".into(),
                }],
            ))
            .await
            .unwrap();
        let update = |action, text: &str| {
            WriteRequest::new(
                actor(),
                vec![Mutation::UpdateQuery {
                    study: s.study,
                    id,
                    action,
                    text: text.into(),
                }],
            )
        };
        // Only the transitions of the workflow are allowed.
        let err = db
            .store
            .write(update(QueryAction::Reopen, "why"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict", "{err}");
        let err = db
            .store
            .write(update(QueryAction::Answer, "  "))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_value", "{err}");
        db.store
            .write(update(
                QueryAction::Answer,
                "Confirmed with source: 92/78, typo",
            ))
            .await
            .unwrap();
        db.store
            .write(update(QueryAction::Close, "Resolved"))
            .await
            .unwrap();
        let err = db
            .store
            .write(update(QueryAction::Close, "again"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict", "{err}");
        db.store
            .write(update(
                QueryAction::Reopen,
                "Source shows 95, please re-check",
            ))
            .await
            .unwrap();

        let queries = db.store.queries(s.study, Some(s.subject)).await.unwrap();
        assert_eq!(queries.len(), 1);
        let q = &queries[0];
        assert_eq!(q.status, QueryStatus::Open);
        assert_eq!(q.check_id.as_deref(), Some("I.DIABP.RC1"));
        assert_eq!(q.item_key, key);
        assert_eq!(
            q.messages
                .iter()
                .map(|m| m.action.as_str())
                .collect::<Vec<_>>(),
            ["open", "answer", "close", "reopen"]
        );
        // What a form save reads in one statement: the values and the queries without threads.
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::SaveItems {
                    study: s.study,
                    subject: s.subject,
                    values: vec![(key.into(), Some("78".into())), ("B".into(), None)],
                }],
            ))
            .await
            .unwrap();
        let form = db
            .store
            .subject_form(s.study, s.subject)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            Some(&form.context),
            db.store
                .subject_context(s.study, s.subject)
                .await
                .unwrap()
                .as_ref()
        );
        assert!(
            db.store
                .subject_form(s.study, trellis_domain::SubjectId::new())
                .await
                .unwrap()
                .is_none()
        );
        let (values, states) = (form.values, form.queries);
        assert_eq!(
            values,
            db.store.item_values(s.study, s.subject).await.unwrap()
        );
        assert_eq!(values.len(), 2);
        let mut threads = db.store.queries(s.study, Some(s.subject)).await.unwrap();
        for q in &mut threads {
            q.messages.clear();
        }
        assert_eq!(states, threads);
        assert_eq!(states[0].status, QueryStatus::Open);
        assert!(states[0].messages.is_empty());
        let trail = db
            .store
            .audit_entries(&AuditFilter {
                entity_type: Some("query".into()),
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert!(
            trail
                .iter()
                .any(|e| e.body.action == "close" && e.body.new_value.as_deref() == Some("closed"))
        );
        assert!(
            trail
                .iter()
                .all(|e| e.body.subject_id == Some(s.subject.as_uuid()))
        );
        db.store.verify_audit(None).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_data_verification_records_the_verified_value() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        let key = "SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP";
        let save = |v: &str| Mutation::SaveItems {
            study: s.study,
            subject: s.subject,
            values: vec![(key.into(), Some(v.into()))],
        };
        let verify = |verified| Mutation::VerifyItem {
            study: s.study,
            subject: s.subject,
            item_key: key.into(),
            verified,
        };
        let err = db
            .store
            .write(WriteRequest::new(actor(), vec![verify(true)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_value", "nothing to verify yet: {err}");
        db.store
            .write(WriteRequest::new(actor(), vec![save("152")]))
            .await
            .unwrap();
        db.store
            .write(WriteRequest::new(actor(), vec![verify(true)]))
            .await
            .unwrap();
        let v = db.store.verifications(s.study, None).await.unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].verified_value.as_deref(), Some("152"));

        // A later change leaves the verification pointing at the old value: stale.
        db.store
            .write(WriteRequest::new(actor(), vec![save("150")]).with_reason("typo"))
            .await
            .unwrap();
        let current = db.store.item_values(s.study, s.subject).await.unwrap();
        let v = db
            .store
            .verifications(s.study, Some(s.subject))
            .await
            .unwrap();
        assert_ne!(
            v[0].verified_value, current[0].1,
            "stale once the value changed"
        );

        let err = db
            .store
            .write(WriteRequest::new(actor(), vec![verify(false)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "reason_required", "{err}");
        db.store
            .write(
                WriteRequest::new(actor(), vec![verify(false)])
                    .with_reason("verified against the wrong visit"),
            )
            .await
            .unwrap();
        assert!(
            db.store
                .verifications(s.study, None)
                .await
                .unwrap()
                .is_empty()
        );
        db.store.verify_audit(None).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_and_locked_data_cannot_change_and_unlocking_needs_a_reason() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        let vs = "SE.SCREEN[1]/F.VS[1]";
        let key = format!("{vs}/IG.VS[1]/I.SYSBP");
        let save = |v: &str| {
            WriteRequest::new(
                actor(),
                vec![Mutation::SaveItems {
                    study: s.study,
                    subject: s.subject,
                    values: vec![(key.clone(), Some(v.into()))],
                }],
            )
            .with_reason("correction")
        };
        let lock =
            |subject: Option<trellis_domain::SubjectId>, scope: &str, state| Mutation::SetLock {
                study: s.study,
                subject,
                scope: scope.into(),
                state,
            };
        db.store.write(save("120")).await.unwrap();

        // Form frozen: its data cannot change; another form of the subject can.
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![lock(Some(s.subject), vs, Some(LockState::Frozen))],
            ))
            .await
            .unwrap();
        let err = db.store.write(save("121")).await.unwrap_err();
        assert_eq!(err.code(), "locked", "{err}");
        let other = WriteRequest::new(
            actor(),
            vec![Mutation::SaveItems {
                study: s.study,
                subject: s.subject,
                values: vec![(
                    "SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.SEX".into(),
                    Some("F".into()),
                )],
            }],
        );
        db.store.write(other).await.unwrap();

        // Lifting it needs a reason.
        let err = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![lock(Some(s.subject), vs, None)],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "reason_required", "{err}");
        db.store
            .write(
                WriteRequest::new(actor(), vec![lock(Some(s.subject), vs, None)])
                    .with_reason("Site found a transcription error"),
            )
            .await
            .unwrap();
        db.store.write(save("121")).await.unwrap();

        // Casebook lock and study lock.
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![lock(Some(s.subject), "", Some(LockState::Locked))],
            ))
            .await
            .unwrap();
        assert_eq!(
            db.store.write(save("122")).await.unwrap_err().code(),
            "locked"
        );
        db.store
            .write(
                WriteRequest::new(actor(), vec![lock(Some(s.subject), "", None)])
                    .with_reason("reopened"),
            )
            .await
            .unwrap();
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![lock(None, "", Some(LockState::Locked))],
            ))
            .await
            .unwrap();
        let err = db.store.write(save("122")).await.unwrap_err();
        assert!(err.to_string().contains("study is locked"), "{err}");
        let locks = db.store.locks(s.study).await.unwrap();
        assert_eq!(locks.len(), 1);
        assert_eq!(
            (locks[0].subject, locks[0].state),
            (None, LockState::Locked)
        );

        let trail = db
            .store
            .audit_entries(&AuditFilter {
                entity_type: Some("lock".into()),
                limit: 100,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let unlock = trail.iter().find(|e| e.body.action == "unlock").unwrap();
        assert_eq!(
            unlock.body.reason.as_deref(),
            Some("Site found a transcription error")
        );
        assert_eq!(unlock.body.old_value.as_deref(), Some("frozen"));
        db.store.verify_audit(None).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdv_plan_is_set_and_changed_with_a_reason() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        let set = |plan: &str| Mutation::SetSdvPlan {
            study: s.study,
            plan: plan.into(),
        };
        assert_eq!(db.store.sdv_plan(s.study).await.unwrap(), None);
        let first = "critical-items: I.CONSDAT\nsample-percent: 20";
        db.store
            .write(WriteRequest::new(actor(), vec![set(first)]))
            .await
            .unwrap();
        let row = db.store.sdv_plan(s.study).await.unwrap().unwrap();
        assert_eq!(row.plan, first);

        let err = db
            .store
            .write(WriteRequest::new(actor(), vec![set(first)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict", "the same plan again: {err}");
        let second = "critical-items: I.CONSDAT I.AESER\nsample-percent: 10";
        let err = db
            .store
            .write(WriteRequest::new(actor(), vec![set(second)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "reason_required", "{err}");
        let err = db
            .store
            .write(WriteRequest::new(actor(), vec![set("  ")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_value", "{err}");
        db.store
            .write(
                WriteRequest::new(actor(), vec![set(second)])
                    .with_reason("Monitoring plan v2: SAE seriousness is critical"),
            )
            .await
            .unwrap();
        assert_eq!(
            db.store.sdv_plan(s.study).await.unwrap().unwrap().plan,
            second
        );
        let trail = db
            .store
            .audit_entries(&AuditFilter {
                limit: 1000,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let changes: Vec<_> = trail
            .iter()
            .filter(|e| e.body.entity_type == "sdv_plan")
            .collect();
        assert_eq!(changes.len(), 2, "one entry per change");
        let last = changes.iter().find(|e| e.body.action == "update").unwrap();
        assert_eq!(last.body.old_value.as_deref(), Some(first));
        assert_eq!(last.body.new_value.as_deref(), Some(second));
        assert_eq!(
            last.body.reason.as_deref(),
            Some("Monitoring plan v2: SAE seriousness is critical")
        );
        db.store.verify_audit(None).await.unwrap();
    });
}
