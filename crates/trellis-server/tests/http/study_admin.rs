//! Subjects and study-level data management: registration at a site, status changes,
//! moves between metadata versions, the study-wide lock, CSV exports and the prompt to
//! sign again after a change — in the browser and through the API.

use axum::http::{StatusCode, header};
use trellis_domain::SubjectStatus;
use trellis_store::{AuditFilter, Chain, Mutation, WriteRequest};

use crate::app::*;

fn enc(s: &str) -> String {
    trellis_server::ui::url_encode(s).replace('/', "%2F")
}

async fn site_id(app: &TestApp, code: &str) -> trellis_domain::SiteId {
    app.store
        .sites(app.study.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.code == code)
        .unwrap()
        .id
}

async fn subject_by_number(app: &TestApp, number: &str) -> Option<trellis_store::Subject> {
    app.store
        .subjects(app.study.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.screening_number == number)
}

async fn study_entries(app: &TestApp) -> Vec<trellis_store::StoredEntry> {
    app.store
        .audit_entries(&AuditFilter {
            chain: Some(Chain::Study(app.study.id)),
            limit: 100_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_staff_register_subjects_at_their_own_sites_only() {
    let app = TestApp::new().await;
    let (cookie, csrf) = app.session("coordinator").await;
    let home = format!("/studies/{}", app.study.id);
    let html = body_text(app.send(get(&home, &cookie)).await).await;
    assert!(html.contains("Register a subject"), "{html}");
    assert!(
        html.contains("US-01 — "),
        "the coordinator's site is offered"
    );
    assert!(
        !html.contains("DE-01 — "),
        "another site is not offered: {html}"
    );

    let us = site_id(&app, "US-01").await;
    let de = site_id(&app, "DE-01").await;
    let url = format!("/studies/{}/subjects", app.study.id);
    let r = app
        .send(form(
            &url,
            &cookie,
            &format!("csrf={csrf}&site={us}&screening_number=US01-010"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let created = subject_by_number(&app, "US01-010")
        .await
        .expect("registered");
    assert_eq!(created.site, us);
    assert_eq!(created.status, SubjectStatus::Screening);
    let location = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{home}/subjects/{}", created.id));
    // New subjects follow the newest metadata version, recorded in the same write.
    let versions = app.store.subject_versions(app.study.id).await.unwrap();
    assert!(
        versions.contains(&(created.id, "MDV.1".to_owned())),
        "{versions:?}"
    );
    let entries = study_entries(&app).await;
    assert!(
        entries
            .iter()
            .any(|e| e.body.entity_type == "subject" && e.body.entity_id == created.id.to_string()),
        "the registration is in the audit trail"
    );

    // Another site, a taken number, an empty number: refused, nothing written.
    let heads = app.store.chain_heads().await.unwrap();
    for (body, status, says) in [
        (
            format!("csrf={csrf}&site={de}&screening_number=DE01-099"),
            StatusCode::FORBIDDEN,
            "your roles do not allow this",
        ),
        (
            format!("csrf={csrf}&site={us}&screening_number=US01-010"),
            StatusCode::CONFLICT,
            "already taken",
        ),
        (
            format!("csrf={csrf}&site={us}&screening_number=+"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "screening_number",
        ),
    ] {
        let r = app.send(form(&url, &cookie, &body)).await;
        assert_eq!(r.status(), status, "{body}");
        let html = body_text(r).await;
        assert!(html.contains(says), "{says}: {html}");
    }
    assert_eq!(app.store.chain_heads().await.unwrap(), heads);
    // A forged form without the session's CSRF token does nothing.
    let r = app
        .send(form(
            &url,
            &cookie,
            &format!("csrf=forged&site={us}&screening_number=US01-011"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(subject_by_number(&app, "US01-011").await.is_none());

    // The API takes the same path.
    let r = app
        .send(json(
            "POST",
            &format!("/api/v1/studies/{}/subjects", app.study.id),
            &cookie,
            &format!("{{\"site\": \"{us}\", \"screening_number\": \"US01-012\"}}"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = subject_by_number(&app, "US01-012").await.unwrap().id;
    let versions = app.store.subject_versions(app.study.id).await.unwrap();
    assert!(versions.contains(&(id, "MDV.1".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_change_needs_a_reason_and_is_audited() {
    let app = TestApp::new().await;
    let (cookie, csrf) = app.session("coordinator").await;
    let us = site_id(&app, "US-01").await;
    let subject = app.subjects.iter().find(|s| s.site == us).unwrap().clone();
    let casebook = format!("/studies/{}/subjects/{}", app.study.id, subject.id);
    let html = body_text(app.send(get(&casebook, &cookie)).await).await;
    assert!(html.contains("Change status"), "{html}");

    let r = app
        .send(form(
            &format!("{casebook}/status"),
            &cookie,
            &format!("csrf={csrf}&status=enrolled&reason="),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_text(r).await.contains("reason"));
    let r = app
        .send(form(
            &format!("{casebook}/status"),
            &cookie,
            &format!("csrf={csrf}&status=enrolled&reason=Eligibility+confirmed"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let now = subject_by_number(&app, &subject.screening_number)
        .await
        .unwrap();
    assert_eq!(now.status, SubjectStatus::Enrolled);
    let entries = study_entries(&app).await;
    let e = entries
        .iter()
        .rev()
        .find(|e| e.body.field.as_deref() == Some("status"))
        .unwrap();
    assert_eq!(e.body.old_value.as_deref(), Some("screening"));
    assert_eq!(e.body.new_value.as_deref(), Some("enrolled"));
    assert_eq!(e.body.reason.as_deref(), Some("Eligibility confirmed"));

    // API: unknown statuses are named; a subject at another site is not found.
    let api = format!(
        "/api/v1/studies/{}/subjects/{}/status",
        app.study.id, subject.id
    );
    let r = app
        .send(json(
            "PUT",
            &api,
            &cookie,
            r#"{"status": "dead", "reason": "x"}"#,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p = body_json(r).await;
    assert_eq!(p["field"], "status");
    assert!(p["detail"].as_str().unwrap().contains("withdrawn"), "{p}");
    let r = app
        .send(json(
            "PUT",
            &api,
            &cookie,
            r#"{"status": "withdrawn", "reason": "Consent withdrawn"}"#,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let de = site_id(&app, "DE-01").await;
    let other = app.subjects.iter().find(|s| s.site == de).unwrap();
    let r = app
        .send(json(
            "PUT",
            &format!(
                "/api/v1/studies/{}/subjects/{}/status",
                app.study.id, other.id
            ),
            &cookie,
            r#"{"status": "withdrawn", "reason": "x"}"#,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_manager_moves_a_subject_to_an_amendment_keeping_its_data() {
    let app = TestApp::new().await;
    // An amendment: the same definition under a new version OID.
    let odm = app
        .store
        .metadata_version_odm(app.study.id, "MDV.1")
        .await
        .unwrap()
        .unwrap()
        .replace(
            "MetaDataVersion OID=\"MDV.1\"",
            "MetaDataVersion OID=\"MDV.2\"",
        )
        .replace("Protocol version 1.0", "Protocol version 2.0");
    app.store
        .write(WriteRequest::new(
            trellis_store::Actor::system(),
            vec![Mutation::AddMetadataVersion {
                study: app.study.id,
                study_oid: "ACME-HTN-301".into(),
                oid: "MDV.2".into(),
                name: "Protocol version 2.0".into(),
                odm,
            }],
        ))
        .await
        .unwrap();
    let (cookie, csrf) = app.session("datamanager").await;
    let subject = &app.subjects[0];
    let before = app
        .store
        .item_values(app.study.id, subject.id)
        .await
        .unwrap();
    let casebook = format!("/studies/{}/subjects/{}", app.study.id, subject.id);
    let html = body_text(app.send(get(&casebook, &cookie)).await).await;
    assert!(html.contains("Move to metadata version"), "{html}");
    let r = app
        .send(form(
            &format!("{casebook}/version"),
            &cookie,
            &format!("csrf={csrf}&oid=MDV.9&reason=Amendment+2"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(form(
            &format!("{casebook}/version"),
            &cookie,
            &format!("csrf={csrf}&oid=MDV.2&reason=Amendment+2+approved"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let versions = app.store.subject_versions(app.study.id).await.unwrap();
    assert!(
        versions.contains(&(subject.id, "MDV.2".to_owned())),
        "{versions:?}"
    );
    assert_eq!(
        app.store
            .item_values(app.study.id, subject.id)
            .await
            .unwrap(),
        before,
        "captured data are kept"
    );
    let html = body_text(app.send(get(&casebook, &cookie)).await).await;
    assert!(html.contains("MDV.2"), "{html}");
    // Site staff may not move subjects.
    let (coord, _) = app.session("coordinator").await;
    let us = site_id(&app, "US-01").await;
    let theirs = app.subjects.iter().find(|s| s.site == us).unwrap();
    let r = app
        .send(json(
            "PUT",
            &format!(
                "/api/v1/studies/{}/subjects/{}/metadata-version",
                app.study.id, theirs.id
            ),
            &coord,
            r#"{"oid": "MDV.2", "reason": "x"}"#,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_study_lock_stops_every_change_until_reopened_with_a_reason() {
    let app = TestApp::new().await;
    let (dm, dm_csrf) = app.session("datamanager").await;
    let home = format!("/studies/{}", app.study.id);
    let lock = format!("{home}/lock");
    let r = app
        .send(form(&lock, &dm, &format!("csrf={dm_csrf}&state=locked")))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = body_text(app.send(get(&home, &dm)).await).await;
    assert!(html.contains("The whole study is locked"), "{html}");

    let (coord, _) = app.session("coordinator").await;
    let us = site_id(&app, "US-01").await;
    let subject = app.subjects.iter().find(|s| s.site == us).unwrap();
    let save = format!(
        "/api/v1/studies/{}/subjects/{}/forms/{}",
        app.study.id,
        subject.id,
        enc("SE.SCREEN[1]/F.VS[1]")
    );
    let r = app
        .send(json(
            "PUT",
            &save,
            &coord,
            r#"{"values": {"IG.VS[1]/I.SYSBP": "121"}, "reason": "re-measured"}"#,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(body_json(r).await["code"], "locked");

    // Reopening needs a reason.
    let r = app
        .send(form(
            &lock,
            &dm,
            &format!("csrf={dm_csrf}&state=open&reason="),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(form(&lock, &dm, &format!("csrf={dm_csrf}&state=bogus")))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(form(
            &lock,
            &dm,
            &format!("csrf={dm_csrf}&state=open&reason=Late+lab+data"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = app
        .send(json(
            "PUT",
            &save,
            &coord,
            r#"{"values": {"IG.VS[1]/I.SYSBP": "121"}, "reason": "re-measured"}"#,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", body_text(r).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_give_a_csv_per_form_and_a_wide_csv_within_the_users_sites() {
    let app = TestApp::new().await;
    let (coord, _) = app.session("coordinator").await;
    let us = site_id(&app, "US-01").await;
    let subject = app.subjects.iter().find(|s| s.site == us).unwrap();
    let save = format!(
        "/api/v1/studies/{}/subjects/{}/forms/{}",
        app.study.id,
        subject.id,
        enc("SE.SCREEN[1]/F.VS[1]")
    );
    let r = app
        .send(json(
            "PUT",
            &save,
            &coord,
            r#"{"values": {"IG.VS[1]/I.SYSBP": "133"}, "reason": "transcription error"}"#,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", body_text(r).await);

    let (dm, _) = app.session("datamanager").await;
    let page = body_text(
        app.send(get(&format!("/studies/{}/export", app.study.id), &dm))
            .await,
    )
    .await;
    assert!(page.contains("/export/forms/F.VS"), "{page}");
    assert!(page.contains("/export/subjects"), "{page}");

    let r = app
        .send(get(
            &format!("/studies/{}/export/forms/F.VS", app.study.id),
            &dm,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        r.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"ACME-HTN-301_F.VS.csv\""
    );
    let csv = body_text(r).await;
    let mut lines = csv.lines();
    let header_line = lines.next().unwrap();
    assert!(
        header_line.starts_with(
            "study,site,subject,subject_status,event,event_repeat,form_repeat,I.VSDAT,I.SYSBP"
        ),
        "{header_line}"
    );
    let row = csv
        .lines()
        .find(|l| l.contains(&subject.screening_number) && l.contains(",SE.SCREEN,"))
        .unwrap_or_else(|| panic!("{csv}"));
    let cells: Vec<&str> = row.split(',').collect();
    assert_eq!(cells[8], "133", "{row}");
    assert!(csv.contains("DE-01"), "a study-wide role sees both sites");

    // Wide: a row per subject (six demo subjects), through the API as well.
    let r = app
        .send(get(
            &format!("/api/v1/studies/{}/exports/subjects", app.study.id),
            &dm,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let wide = body_text(r).await;
    assert_eq!(wide.lines().count(), 1 + app.subjects.len(), "{wide}");
    assert!(
        wide.lines()
            .next()
            .unwrap()
            .contains("SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP")
    );

    // Unknown form: not found, named. Site staff and sponsors may not export.
    let r = app
        .send(get(
            &format!("/api/v1/studies/{}/exports/forms/F.NOPE", app.study.id),
            &dm,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_json(r).await["code"], "unknown_form");
    for who in ["coordinator", "sponsor", "monitor"] {
        let (c, _) = app.session(who).await;
        let r = app
            .send(get(
                &format!("/studies/{}/export/forms/F.VS", app.study.id),
                &c,
            ))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{who}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_casebook_asks_for_a_new_signature() {
    let app = TestApp::new().await;
    let de = site_id(&app, "DE-01").await;
    let subject = app.subjects.iter().find(|s| s.site == de).unwrap();
    let inv = app
        .store
        .user_by_name("investigator")
        .await
        .unwrap()
        .unwrap();
    let values = app
        .store
        .item_values(app.study.id, subject.id)
        .await
        .unwrap();
    app.store
        .write(WriteRequest::new(
            trellis_store::Actor::user(inv.id, &inv.display_name),
            vec![Mutation::Sign {
                study: app.study.id,
                id: trellis_domain::SignatureId::new(),
                signer: inv.id,
                printed_name: inv.display_name.clone(),
                meaning: trellis_domain::SignatureMeaning::Responsible,
                entity_type: "casebook".into(),
                entity_id: subject.id.to_string(),
                content_hash: trellis_server::api::casebook_hash(&values),
            }],
        ))
        .await
        .unwrap();
    let (cookie, _) = app.session("investigator").await;
    let casebook = format!("/studies/{}/subjects/{}", app.study.id, subject.id);
    let html = body_text(app.send(get(&casebook, &cookie)).await).await;
    assert!(html.contains("gültig"), "valid, in German: {html}");
    assert!(!html.contains("Erneut unterschreiben"));

    let save = format!("/api/v1{}/forms/{}", &casebook, enc("SE.SCREEN[1]/F.VS[1]"));
    let r = app
        .send(json(
            "PUT",
            &save,
            &cookie,
            r#"{"values": {"IG.VS[1]/I.SYSBP": "127"}, "reason": "re-measured"}"#,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", body_text(r).await);
    let html = body_text(app.send(get(&casebook, &cookie)).await).await;
    assert!(html.contains("nicht mehr gültig"), "{html}");
    assert!(html.contains("Erneut unterschreiben"), "{html}");
}
