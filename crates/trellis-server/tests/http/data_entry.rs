//! Data entry in the browser: edit checks on save, reasons for change, item history,
//! and read-only forms for roles that may not enter data.

use axum::http::StatusCode;
use trellis_server::ui::url_encode;

use crate::app::*;

const VS: &str = "SE.SCREEN%5B1%5D%2FF.VS%5B1%5D";

fn enc(s: &str) -> String {
    url_encode(s).replace('/', "%2F")
}

/// A subject at the (site-scoped) user's own site.
async fn subject_at_site_of(app: &TestApp, username: &str) -> trellis_store::Subject {
    let user = app.store.user_by_name(username).await.unwrap().unwrap();
    let grants = app.store.grants(Some(user.id)).await.unwrap();
    let site = grants.iter().find_map(|g| g.site).unwrap();
    app.subjects
        .iter()
        .find(|s| s.site == site)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_saves_a_form_and_edit_checks_decide() {
    let app = TestApp::new().await;
    let (cookie, csrf) = app.session("coordinator").await;
    // A subject at the coordinator's own site.
    let subject = subject_at_site_of(&app, "coordinator").await;
    let casebook = format!("/studies/{}/subjects/{}", app.study.id, subject.id);
    let html = body_text(app.send(get(&casebook, &cookie)).await).await;
    assert!(
        html.contains(VS),
        "the casebook links the screening vital signs"
    );
    assert!(
        html.contains("-14 (−7/+0)"),
        "planned day and window: {html}"
    );

    let path = format!("{casebook}/forms/{VS}");
    let html = body_text(app.send(get(&path, &cookie)).await).await;
    assert!(html.contains("Systolic blood pressure"), "{html}");
    let before = app
        .store
        .item_values(app.study.id, subject.id)
        .await
        .unwrap();
    let heads = app.store.chain_heads().await.unwrap();

    // A hard check refuses the whole save.
    let body = format!(
        "csrf={csrf}&{}=1&{}=300",
        enc("p:IG.VS[1]/I.SYSBP"),
        enc("v:IG.VS[1]/I.SYSBP")
    );
    let r = app.send(form(&path, &cookie, &body)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = body_text(r).await;
    assert!(html.contains("must be at most 260 mmHg"), "{html}");
    assert!(
        html.contains("value=\"300\""),
        "the entered value is kept on the page"
    );
    assert_eq!(
        app.store.chain_heads().await.unwrap(),
        heads,
        "nothing written"
    );

    // A change of a saved value needs a reason.
    let body = format!(
        "csrf={csrf}&{}=1&{}=190",
        enc("p:IG.VS[1]/I.DIABP"),
        enc("v:IG.VS[1]/I.DIABP")
    );
    let r = app.send(form(&path, &cookie, &body)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_text(r).await.contains("give a reason"));
    assert_eq!(
        app.store
            .item_values(app.study.id, subject.id)
            .await
            .unwrap(),
        before
    );

    // With a reason it is saved; the soft check warns beside the item.
    let r = app
        .send(form(&path, &cookie, &format!("{body}&reason=Re-measured")))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = body_text(app.send(get(&format!("{path}?saved=1"), &cookie)).await).await;
    assert!(
        html.contains("Diastolic must be lower than systolic"),
        "{html}"
    );
    assert!(html.contains("Saved."));
    let values = app
        .store
        .item_values(app.study.id, subject.id)
        .await
        .unwrap();
    let diabp = values
        .iter()
        .find(|(k, _)| k == trellis_server::demo::DEMO_DIABP)
        .unwrap();
    assert_eq!(diabp.1.as_deref(), Some("190"));
    let bmi = values
        .iter()
        .find(|(k, _)| k.ends_with("/I.BMI"))
        .expect("BMI derived and saved");
    assert!(bmi.1.is_some());

    // The item's history shows the change with its reason.
    let history = format!(
        "{casebook}/history?item={}",
        enc(trellis_server::demo::DEMO_DIABP)
    );
    let html = body_text(app.send(get(&history, &cookie)).await).await;
    assert!(
        html.contains("Re-measured") && html.contains("190"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_sees_the_form_read_only() {
    let app = TestApp::new().await;
    let (cookie, csrf) = app.session("monitor").await;
    let subject = &app.subjects[0];
    let path = format!(
        "/studies/{}/subjects/{}/forms/{VS}",
        app.study.id, subject.id
    );
    let html = body_text(app.send(get(&path, &cookie)).await).await;
    assert!(html.contains("disabled"), "{html}");
    assert!(!html.contains(">Save<"), "no save button");
    let body = format!(
        "csrf={csrf}&{}=1&{}=120",
        enc("p:IG.VS[1]/I.SYSBP"),
        enc("v:IG.VS[1]/I.SYSBP")
    );
    assert_eq!(
        app.send(form(&path, &cookie, &body)).await.status(),
        StatusCode::FORBIDDEN
    );
    let unknown = format!(
        "/studies/{}/subjects/{}/forms/SE.NOPE%5B1%5D%2FF.VS%5B1%5D",
        app.study.id, subject.id
    );
    assert_eq!(
        app.send(get(&unknown, &cookie)).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_opens_a_query_that_the_site_answers_and_the_check_closes() {
    let app = TestApp::new().await;
    let (cookie, csrf) = app.session("coordinator").await;
    let subject = subject_at_site_of(&app, "coordinator").await;
    let casebook = format!("/studies/{}/subjects/{}", app.study.id, subject.id);
    let path = format!("{casebook}/forms/{VS}");
    let diabp = |v: &str| {
        format!(
            "csrf={csrf}&{}=1&{}={v}&reason=Re-measured",
            enc("p:IG.VS[1]/I.DIABP"),
            enc("v:IG.VS[1]/I.DIABP")
        )
    };

    // The soft check fails: the save goes through and a query opens on the item.
    assert_eq!(
        app.send(form(&path, &cookie, &diabp("190"))).await.status(),
        StatusCode::SEE_OTHER
    );
    let queries = app
        .store
        .queries(app.study.id, Some(subject.id))
        .await
        .unwrap();
    assert_eq!(queries.len(), 1, "{queries:?}");
    let q = &queries[0];
    assert_eq!(q.check_id.as_deref(), Some("I.DIABP.RC1"));
    assert_eq!(q.item_key, trellis_server::demo::DEMO_DIABP);
    let html = body_text(app.send(get(&path, &cookie)).await).await;
    assert!(html.contains("Query open"), "badge beside the item");
    // The study's query list shows it with its age and counts it for the site.
    let list = body_text(
        app.send(get(&format!("/studies/{}/queries", app.study.id), &cookie))
            .await,
    )
    .await;
    assert!(
        list.contains("I.DIABP")
            && list.contains("<td>US-01</td><td>1</td><td>0</td><td>0</td><td>0</td>"),
        "{list}"
    );
    assert!(!list.contains("DE-01"), "site scope applies to the list");
    // Saving again while it is open does not open a second one.
    assert_eq!(
        app.send(form(&path, &cookie, &diabp("191"))).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        app.store
            .queries(app.study.id, Some(subject.id))
            .await
            .unwrap()
            .len(),
        1
    );

    // The site answers; a monitor may not answer, and the site may not close.
    let answer = format!(
        "csrf={csrf}&query={}&action=answer&text=Checked+against+source&back={}",
        q.id,
        enc(&path)
    );
    assert_eq!(
        app.send(form(
            &format!("{casebook}/queries/answer"),
            &cookie,
            &answer
        ))
        .await
        .status(),
        StatusCode::SEE_OTHER
    );
    let close = format!("csrf={csrf}&query={}&action=close&text=ok", q.id);
    assert_eq!(
        app.send(form(
            &format!("{casebook}/queries/resolve"),
            &cookie,
            &close
        ))
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    let q = &app
        .store
        .queries(app.study.id, Some(subject.id))
        .await
        .unwrap()[0];
    assert_eq!(q.status, trellis_store::QueryStatus::Answered);

    // Correcting the value makes the check hold, which closes its query.
    assert_eq!(
        app.send(form(&path, &cookie, &diabp("79"))).await.status(),
        StatusCode::SEE_OTHER
    );
    let q = &app
        .store
        .queries(app.study.id, Some(subject.id))
        .await
        .unwrap()[0];
    assert_eq!(q.status, trellis_store::QueryStatus::Closed);
    assert!(
        q.messages
            .last()
            .unwrap()
            .text
            .contains("edit check now holds")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_raises_a_query_and_verifies_source_data() {
    let app = TestApp::new().await;
    let (cookie, csrf) = app.session("monitor").await;
    let subject = &app.subjects[0];
    let casebook = format!("/studies/{}/subjects/{}", app.study.id, subject.id);
    let path = format!("{casebook}/forms/{VS}");
    let html = body_text(app.send(get(&path, &cookie)).await).await;
    // The monitor reads German; the forms to raise a query and to verify are there.
    assert!(
        html.contains(&format!("action=\"{casebook}/queries\""))
            && html.contains(&format!("action=\"{casebook}/sdv\"")),
        "{html}"
    );

    let sysbp = trellis_server::demo::DEMO_SYSBP;
    let raise = format!(
        "csrf={csrf}&item={}&text=Source+shows+a+different+value&back={}",
        enc(sysbp),
        enc(&path)
    );
    assert_eq!(
        app.send(form(&format!("{casebook}/queries"), &cookie, &raise))
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let q = &app
        .store
        .queries(app.study.id, Some(subject.id))
        .await
        .unwrap()[0];
    assert_eq!(q.check_id, None, "a manual query");
    assert_eq!(
        q.opened_by,
        app.store
            .user_by_name("monitor")
            .await
            .unwrap()
            .unwrap()
            .id
            .as_uuid()
    );

    let verify = format!(
        "csrf={csrf}&back={}&item={}&item={}",
        enc(&path),
        enc(sysbp),
        enc(trellis_server::demo::DEMO_DIABP)
    );
    assert_eq!(
        app.send(form(&format!("{casebook}/sdv"), &cookie, &verify))
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let v = app
        .store
        .verifications(app.study.id, Some(subject.id))
        .await
        .unwrap();
    assert_eq!(v.len(), 2);
    let html = body_text(app.send(get(&path, &cookie)).await).await;
    assert!(html.contains("tag ok"), "verified badge: {html}");

    // A site coordinator may not verify source data.
    let (cookie, csrf) = app.session("coordinator").await;
    let verify = format!("csrf={csrf}&item={}", enc(sysbp));
    assert_eq!(
        app.send(form(&format!("{casebook}/sdv"), &cookie, &verify))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_manager_freezes_a_form_and_reopens_it_with_a_reason() {
    let app = TestApp::new().await;
    let (dm_cookie, dm_csrf) = app.session("datamanager").await;
    let (cookie, csrf) = app.session("coordinator").await;
    let subject = subject_at_site_of(&app, "coordinator").await;
    let casebook = format!("/studies/{}/subjects/{}", app.study.id, subject.id);
    let path = format!("{casebook}/forms/{VS}");
    let lock = |state: &str, reason: &str| {
        format!(
            "csrf={dm_csrf}&scope={}&state={state}&reason={reason}&back={}",
            enc("SE.SCREEN[1]/F.VS[1]"),
            enc(&path)
        )
    };
    let r = app
        .send(form(
            &format!("{casebook}/lock"),
            &dm_cookie,
            &lock("frozen", ""),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The coordinator sees it frozen and cannot save.
    let html = body_text(app.send(get(&path, &cookie)).await).await;
    assert!(html.contains("This form is frozen"), "{html}");
    assert!(!html.contains(">Save<"));
    let body = format!(
        "csrf={csrf}&{}=1&{}=125&reason=x",
        enc("p:IG.VS[1]/I.SYSBP"),
        enc("v:IG.VS[1]/I.SYSBP")
    );
    let r = app.send(form(&path, &cookie, &body)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body_text(r).await.contains("is frozen"));
    // The coordinator may not lift it.
    let own = format!(
        "csrf={csrf}&scope={}&state=open&reason=please",
        enc("SE.SCREEN[1]/F.VS[1]")
    );
    assert_eq!(
        app.send(form(&format!("{casebook}/lock"), &cookie, &own))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );

    // Reopening needs a reason; with one, data can change again.
    let r = app
        .send(form(
            &format!("{casebook}/lock"),
            &dm_cookie,
            &lock("open", ""),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(form(
            &format!("{casebook}/lock"),
            &dm_cookie,
            &lock("open", "Site+correction+requested"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.send(form(&path, &cookie, &body)).await.status(),
        StatusCode::SEE_OTHER
    );
    assert!(app.store.locks(app.study.id).await.unwrap().is_empty());
}
