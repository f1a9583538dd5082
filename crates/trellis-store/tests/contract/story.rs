use trellis_domain::*;
use trellis_store::*;

use crate::on_each_backend;

pub struct Seed {
    pub org: OrgId,
    pub study: StudyId,
    pub site: SiteId,
    pub subject: SubjectId,
    pub user: UserId,
}

pub fn actor() -> Actor {
    Actor {
        id: uuid::Uuid::from_u128(42),
        name: "Test Coordinator".into(),
    }
}

pub async fn seed(store: &Store) -> Seed {
    let s = Seed {
        org: OrgId::new(),
        study: StudyId::new(),
        site: SiteId::new(),
        subject: SubjectId::new(),
        user: UserId::new(),
    };
    let req = WriteRequest::new(
        Actor::system(),
        vec![
            Mutation::CreateOrganization {
                id: s.org,
                kind: OrgKind::Sponsor,
                name: DisplayName::parse("Acme Pharma").unwrap(),
            },
            Mutation::CreateStudy {
                id: s.study,
                sponsor: s.org,
                code: StudyCode::parse("ACME-001").unwrap(),
                title: DisplayName::parse("A study").unwrap(),
                time_zone: TzName::parse("Europe/Berlin").unwrap(),
            },
            Mutation::CreateSite {
                study: s.study,
                id: s.site,
                code: SiteCode::parse("DE-01").unwrap(),
                name: DisplayName::parse("Charité").unwrap(),
                country: CountryCode::parse("DE").unwrap(),
                time_zone: TzName::parse("Europe/Berlin").unwrap(),
            },
            Mutation::CreateSubject {
                study: s.study,
                id: s.subject,
                site: s.site,
                screening_number: ScreeningNumber::parse("S-001").unwrap(),
            },
            Mutation::CreateUser(Box::new(NewUser {
                id: s.user,
                username: Username::parse("coord").unwrap(),
                display_name: DisplayName::parse("Test Coordinator").unwrap(),
                email: None,
                org: s.org,
                time_zone: TzName::utc(),
                locale: "en".into(),
                password_hash: "$argon2id$dummy".into(),
                must_change_password: false,
            })),
        ],
    );
    store.write(req).await.unwrap();
    s
}

fn save(s: &Seed, values: &[(&str, Option<&str>)]) -> Mutation {
    Mutation::SaveItems {
        study: s.study,
        subject: s.subject,
        values: values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_read_and_audit() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        let studies = db.store.studies().await.unwrap();
        assert_eq!(studies.len(), 1);
        assert_eq!(studies[0].code, "ACME-001");
        assert_eq!(studies[0].time_zone.as_str(), "Europe/Berlin");
        assert_eq!(db.store.sites(s.study).await.unwrap()[0].country, "DE");
        assert_eq!(
            db.store.subjects(s.study).await.unwrap()[0].status,
            SubjectStatus::Screening
        );
        let summaries = db.store.verify_audit(None).await.unwrap();
        // Installation chain (org, user) and the study chain.
        assert_eq!(summaries.len(), 2);
        let study_chain = summaries
            .iter()
            .find(|c| c.chain == Chain::Study(s.study))
            .unwrap();
        // study: 4 fields, site: 4, subject: 3
        assert_eq!(study_chain.entries, 11);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_after_first_entry_needs_a_reason_and_leaves_nothing_half_written() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![save(
                    &s,
                    &[("VS.SYSBP", Some("120")), ("VS.DIABP", Some("80"))],
                )],
            ))
            .await
            .unwrap();
        let before = db.store.chain_heads().await.unwrap();

        // A new item plus a changed one, without a reason: refused as a whole.
        let err = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![save(
                    &s,
                    &[("VS.PULSE", Some("70")), ("VS.SYSBP", Some("130"))],
                )],
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ReasonRequired { ref field, .. } if field == "VS.SYSBP"),
            "{err}"
        );
        assert_eq!(
            db.store.chain_heads().await.unwrap(),
            before,
            "no audit entry for a refused write"
        );
        let vals = db.store.item_values(s.study, s.subject).await.unwrap();
        assert_eq!(
            vals.len(),
            2,
            "VS.PULSE must not have been written: {vals:?}"
        );
        // The study-wide read gives the same rows, with their subject.
        let all = db.store.study_item_values(s.study).await.unwrap();
        assert_eq!(
            all.iter()
                .map(|(su, k, v)| {
                    assert_eq!(*su, s.subject);
                    (k.clone(), v.clone())
                })
                .collect::<Vec<_>>(),
            vals
        );

        // With a reason it goes through, and the trail holds old, new and why.
        let r = db
            .store
            .write(
                WriteRequest::new(actor(), vec![save(&s, &[("VS.SYSBP", Some("130"))])])
                    .with_reason("transcription error")
                    .with_request_id("req-1"),
            )
            .await
            .unwrap();
        assert_eq!(r.entries.len(), 1);
        let trail = db
            .store
            .audit_entries(&AuditFilter {
                subject: Some(s.subject.as_uuid()),
                entity_id: Some(format!("{}/VS.SYSBP", s.subject)),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(trail.len(), 2);
        let last = &trail[1].body;
        assert_eq!(
            (last.old_value.as_deref(), last.new_value.as_deref()),
            (Some("120"), Some("130"))
        );
        assert_eq!(last.reason.as_deref(), Some("transcription error"));
        assert_eq!(last.request_id.as_deref(), Some("req-1"));
        assert_eq!(last.actor_name, "Test Coordinator");
        assert_eq!(last.site_id, Some(s.site.as_uuid()));

        // Saving the same value again changes nothing and writes no entry.
        let r = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![save(&s, &[("VS.SYSBP", Some("130"))])],
            ))
            .await
            .unwrap();
        assert!(r.entries.is_empty());
        db.store.verify_audit(None).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_nothing_is_written() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        let before = db.store.chain_heads().await.unwrap();
        let err = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![save(&s, &[("ok", Some("1")), ("bad key!", Some("2"))])],
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid { ref field, .. } if field == "values.bad key!"),
            "{err}"
        );
        let long = "x".repeat(4001);
        let err = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![save(&s, &[("long", Some(long.as_str()))])],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_value");
        let err = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::SaveItems {
                    study: s.study,
                    subject: SubjectId::new(),
                    values: vec![("a".into(), None)],
                }],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found");
        // A duplicate screening number is a conflict.
        let err = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::CreateSubject {
                    study: s.study,
                    id: SubjectId::new(),
                    site: s.site,
                    screening_number: ScreeningNumber::parse("S-001").unwrap(),
                }],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict", "{err}");
        assert_eq!(db.store.chain_heads().await.unwrap(), before);
        assert!(
            db.store
                .item_values(s.study, s.subject)
                .await
                .unwrap()
                .is_empty()
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits_and_keep_one_chain() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        let before = db.store.write_stats();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = db.store.clone();
            let m = save(&s, &[(&format!("ITEM{i}"), Some("1"))]);
            // Every fifth request is invalid; it must not disturb the others in its batch.
            let m = if i % 5 == 0 {
                save(&s, &[("bad key", Some("1"))])
            } else {
                m
            };
            tasks.push(tokio::spawn(async move {
                store.write(WriteRequest::new(actor(), vec![m])).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 64 - 13);
        // Each request is counted once, in one of at least 64 / max_batch (16) batches.
        let after = db.store.write_stats();
        assert_eq!(after.requests - before.requests, 64);
        let batches = after.batches - before.batches;
        assert!((4..=64).contains(&batches), "{batches} batches");
        assert!(after.busy > before.busy && after.committing > before.committing);
        assert!(after.committing - before.committing <= after.busy - before.busy);
        let vals = db.store.item_values(s.study, s.subject).await.unwrap();
        assert_eq!(vals.len(), 51);
        let chains = db
            .store
            .verify_audit(Some(Chain::Study(s.study)))
            .await
            .unwrap();
        assert_eq!(chains[0].entries, 11 + 51);
    });
}

/// Many clients saving in rounds on one study, some on the same items, one save also
/// opening a query (so not a save-only request): every acknowledged change is in the trail exactly once, each
/// item's history reads as one sequence (every change's old value is the value before
/// it), and the current values are the last ones in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_batches_of_saves_keep_every_change_in_order() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        let mut tasks = Vec::new();
        for client in 0..40u32 {
            let store = db.store.clone();
            let s_study = s.study;
            let s_subject = s.subject;
            tasks.push(tokio::spawn(async move {
                let mut entries = 0usize;
                for round in 0..6u32 {
                    // Clients 0-29 have items of their own; 30-39 share items 0-9 with them.
                    let item = format!("ITEM{}", client % 30);
                    let m = Mutation::SaveItems {
                        study: s_study,
                        subject: s_subject,
                        values: vec![
                            (item, Some(format!("{client}.{round}"))),
                            (format!("OWN{client}"), Some(round.to_string())),
                        ],
                    };
                    let mut req = WriteRequest::new(actor(), vec![m]).with_reason("round");
                    if client == 7 && round == 3 {
                        // A save that also opens a query takes the general write path.
                        req.mutations.push(Mutation::OpenQuery {
                            study: s_study,
                            id: QueryId::new(),
                            subject: s_subject,
                            item_key: "ITEM7".into(),
                            check_id: None,
                            text: "Please check".into(),
                        });
                    }
                    let receipt = store.write(req).await.unwrap();
                    entries += receipt.entries.len();
                }
                entries
            }));
        }
        let mut acknowledged = 0;
        for t in tasks {
            acknowledged += t.await.unwrap();
        }
        let chains = db
            .store
            .verify_audit(Some(Chain::Study(s.study)))
            .await
            .unwrap();
        assert_eq!(chains[0].entries as usize, 11 + acknowledged);
        let mut trail = Vec::new();
        let mut after = None;
        loop {
            let page = db
                .store
                .audit_entries(&AuditFilter {
                    chain: Some(Chain::Study(s.study)),
                    entity_type: Some("item".into()),
                    after,
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.body.recorded_at.as_micros(), last.body.entry_id));
            trail.extend(page);
        }
        trail.sort_by_key(|e| e.seq);
        let mut current: std::collections::HashMap<String, Option<String>> =
            std::collections::HashMap::new();
        for e in &trail {
            let key = e.body.field.clone().unwrap();
            let before = current.get(&key).cloned().flatten();
            assert_eq!(
                e.body.old_value.clone().filter(|v| !v.is_empty()),
                before,
                "entry {} on {key}: its old value is the value before it",
                e.seq
            );
            current.insert(key, e.body.new_value.clone());
        }
        // 40 clients × 6 rounds × 2 values, every one a change.
        assert_eq!(trail.len(), 40 * 6 * 2);
        let values = db.store.item_values(s.study, s.subject).await.unwrap();
        assert_eq!(values.len(), 30 + 40);
        for (k, v) in values {
            assert_eq!(current.get(&k), Some(&v), "{k}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_roles_lockout_and_security_chain() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        // Lockout after 3 failures.
        for _ in 0..3 {
            db.store
                .write(WriteRequest::new(
                    Actor::system(),
                    vec![Mutation::SignIn {
                        user: s.user,
                        outcome: SignInOutcome::Failure,
                        lockout_after: 3,
                    }],
                ))
                .await
                .unwrap();
        }
        let u = db.store.user(s.user).await.unwrap().unwrap();
        assert_eq!(u.failed_sign_ins, 3);
        assert!(u.locked_at.is_some());
        let trail = db
            .store
            .audit_entries(&AuditFilter {
                chain: Some(Chain::Installation),
                entity_id: Some(s.user.to_string()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(trail.iter().any(|e| e.body.action == "lockout"));

        // Role rules: study roles need a study; site scope only for site roles.
        let err = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::GrantRole {
                    id: RoleGrantId::new(),
                    user: s.user,
                    role: Role::DataManager,
                    study: None,
                    site: None,
                }],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_value");
        let err = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::GrantRole {
                    id: RoleGrantId::new(),
                    user: s.user,
                    role: Role::DataManager,
                    study: Some(s.study),
                    site: Some(s.site),
                }],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_value");
        let g = RoleGrantId::new();
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::GrantRole {
                    id: g,
                    user: s.user,
                    role: Role::SiteCoordinator,
                    study: Some(s.study),
                    site: Some(s.site),
                }],
            ))
            .await
            .unwrap();
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::RevokeRole { id: g }],
            ))
            .await
            .unwrap();
        let err = db
            .store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::RevokeRole { id: g }],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found");
        let grants = db.store.grants(Some(s.user)).await.unwrap();
        assert!(grants[0].revoked_at.is_some());

        // The one-read account view agrees with the separate reads, by id and by API token.
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::GrantRole {
                    id: RoleGrantId::new(),
                    user: s.user,
                    role: Role::DataManager,
                    study: Some(s.study),
                    site: None,
                }],
            ))
            .await
            .unwrap();
        let user = db.store.user(s.user).await.unwrap().unwrap();
        let org_kind = db
            .store
            .organizations()
            .await
            .unwrap()
            .into_iter()
            .find(|o| o.id == user.org)
            .map(|o| o.kind);
        let want = Account {
            user,
            org_kind,
            grants: db.store.grants(Some(s.user)).await.unwrap(),
        };
        assert_eq!(want.grants.len(), 2);
        assert_eq!(db.store.account(s.user).await.unwrap(), Some(want.clone()));
        assert_eq!(db.store.account(UserId::new()).await.unwrap(), None);
        let token_hash = [7u8; 32];
        db.store
            .write(WriteRequest::new(
                actor(),
                vec![Mutation::IssueApiToken {
                    id: trellis_domain::ApiTokenId::new(),
                    user: s.user,
                    name: "export robot".into(),
                    token_hash,
                }],
            ))
            .await
            .unwrap();
        assert_eq!(
            db.store.account_by_api_token(&token_hash).await.unwrap(),
            Some(want)
        );
        assert_eq!(
            db.store.account_by_api_token(&[8u8; 32]).await.unwrap(),
            None
        );
        db.store.verify_audit(None).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_filters_and_cursor_pagination() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        for i in 0..5 {
            db.store
                .write(WriteRequest::new(
                    actor(),
                    vec![save(&s, &[(&format!("P{i}"), Some("x"))])],
                ))
                .await
                .unwrap();
        }
        let all = db
            .store
            .audit_entries(&AuditFilter {
                chain: Some(Chain::Study(s.study)),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 16);
        // Walk the same set three at a time.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = db
                .store
                .audit_entries(&AuditFilter {
                    chain: Some(Chain::Study(s.study)),
                    after,
                    limit: 3,
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page
                .last()
                .map(|e| (e.body.recorded_at.as_micros(), e.body.entry_id));
            seen.extend(page.into_iter().map(|e| e.body.entry_id));
        }
        assert_eq!(
            seen,
            all.iter().map(|e| e.body.entry_id).collect::<Vec<_>>()
        );
        let by_actor = db
            .store
            .audit_entries(&AuditFilter {
                actor: Some(actor().id),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_actor.len(), 5);
        let by_site = db
            .store
            .audit_entries(&AuditFilter {
                site: Some(s.site.as_uuid()),
                entity_type: Some("site".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_site.len(), 4);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_of_one_item_chain_their_old_values_and_refusals_leave_no_trace() {
    on_each_backend!(|db| {
        let s = seed(&db.store).await;
        let mut tasks = Vec::new();
        for i in 0..48 {
            let store = db.store.clone();
            let value = format!("{i}");
            let mut req = match i % 6 {
                // Changes without a reason are refused once the item has a value (all but maybe the first).
                0 => WriteRequest::new(actor(), vec![save(&s, &[("HR", Some(&value))])]),
                // A request with two saves whose second is refused: its first must not land either.
                1 => WriteRequest::new(
                    actor(),
                    vec![
                        save(&s, &[(&format!("ONLY{i}"), Some("x"))]),
                        save(&s, &[("bad key", Some("x"))]),
                    ],
                ),
                // A save for a subject that does not exist.
                2 if i % 12 == 2 => WriteRequest::new(
                    actor(),
                    vec![Mutation::SaveItems {
                        study: s.study,
                        subject: SubjectId::new(),
                        values: vec![("HR".into(), Some(value.clone()))],
                    }],
                ),
                // A refused request that is not a save: its batch is retried with a
                // savepoint per request.
                2 => WriteRequest::new(
                    actor(),
                    vec![Mutation::SetSubjectStatus {
                        study: s.study,
                        id: SubjectId::new(),
                        status: SubjectStatus::Enrolled,
                    }],
                )
                .with_reason("correction"),
                // A save mixed with another mutation in one request.
                3 => WriteRequest::new(
                    actor(),
                    vec![
                        save(&s, &[("HR", Some(&value)), (&format!("MIX{i}"), Some("m"))]),
                        Mutation::SetSubjectStatus {
                            study: s.study,
                            id: s.subject,
                            status: if i % 12 == 3 {
                                SubjectStatus::Enrolled
                            } else {
                                SubjectStatus::Screening
                            },
                        },
                    ],
                )
                .with_reason("correction"),
                // Clearing the item.
                4 => WriteRequest::new(actor(), vec![save(&s, &[("HR", None)])])
                    .with_reason("not done"),
                _ => WriteRequest::new(actor(), vec![save(&s, &[("HR", Some(&value))])])
                    .with_reason("correction"),
            };
            req = req.with_request_id(format!("r{i}"));
            tasks.push(tokio::spawn(async move { (i, store.write(req).await) }));
        }
        let mut accepted = std::collections::BTreeMap::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            match (i % 6, r) {
                (1, r) => assert_eq!(r.unwrap_err().code(), "invalid_value"),
                (2, r) => assert_eq!(r.unwrap_err().code(), "not_found"),
                (0, Err(e)) => assert_eq!(e.code(), "reason_required"),
                (_, Err(e)) => panic!("request {i} refused: {e}"),
                (_, Ok(receipt)) => {
                    accepted.insert(format!("r{i}"), receipt);
                }
            }
        }
        let entries = db
            .store
            .chain_page(Chain::Study(s.study), 0, 10_000)
            .await
            .unwrap();
        // Only accepted requests left entries, and each receipt names exactly its entries.
        for e in &entries {
            if let Some(r) = &e.body.request_id {
                assert!(accepted[r].entries.contains(&(e.chain, e.seq)), "{r}");
            }
        }
        let mine: usize = accepted.values().map(|r| r.entries.len()).sum();
        assert_eq!(
            mine,
            entries
                .iter()
                .filter(|e| e.body.request_id.is_some())
                .count()
        );
        // The item's entries, in chain order, each start from the value the previous one left.
        let mut current: Option<Option<String>> = None;
        for e in entries
            .iter()
            .filter(|e| e.body.field.as_deref() == Some("HR"))
        {
            match &current {
                None => {
                    assert_eq!(e.body.action, "create");
                    assert_eq!(e.body.old_value, None);
                }
                Some(prev) => {
                    assert_eq!(e.body.action, "update");
                    assert_eq!(e.body.old_value, Some(prev.clone().unwrap_or_default()));
                    assert_ne!(&e.body.new_value, prev);
                }
            }
            current = Some(e.body.new_value.clone());
        }
        let vals = db.store.item_values(s.study, s.subject).await.unwrap();
        let hr = vals.iter().find(|(k, _)| k == "HR").map(|(_, v)| v.clone());
        assert_eq!(hr, current);
        assert!(!vals.iter().any(|(k, _)| k.starts_with("ONLY")));
        assert_eq!(vals.iter().filter(|(k, _)| k.starts_with("MIX")).count(), 8);
        db.store.verify_audit(None).await.unwrap();
    });
}
