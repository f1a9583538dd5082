//! Targeted source data verification: a data manager sets the plan, monitors see which
//! items it requires and their progress; site staff do not see the selection.

use axum::http::StatusCode;
use serde_json::Value;

use crate::app::*;

const SYSBP: &str = "SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP";

fn subjects(progress: &Value) -> &Vec<Value> {
    progress["subjects"].as_array().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_targets_verification_and_progress_follows_it() {
    let app = TestApp::new().await;
    let (dm, _) = app.session("datamanager").await;
    let (monitor, _) = app.session("monitor").await;
    let base = format!("/api/v1/studies/{}", app.study.id);

    // No plan yet: everything of everyone (100% SDV).
    let (status, plan) = call(&app, "GET", &format!("{base}/sdv-plan"), &dm, "").await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["set"], false);
    assert_eq!(plan["sample_percent"], 100);
    assert_eq!(plan["first_subjects_per_site"], Value::Null);
    let (_, full) = call(&app, "GET", &format!("{base}/sdv-progress"), &dm, "").await;
    assert_eq!(subjects(&full).len(), app.subjects.len());
    let values_of = |p: &Value, n: &str| {
        subjects(p)
            .iter()
            .find(|s| s["screening_number"] == n)
            .unwrap()["required"]
            .as_u64()
            .unwrap()
    };
    for s in subjects(&full) {
        assert_ne!(s["level"], "targeted", "{s}");
        assert!(s["required"].as_u64().unwrap() >= 4, "every value: {s}");
    }

    // The first subject at each site in full, the rest only systolic blood pressure.
    let body = r#"{"critical_items": ["I.SYSBP"], "first_subjects_per_site": 1, "sample_percent": 0, "seed": "20261207"}"#;
    let (status, plan) = call(&app, "PUT", &format!("{base}/sdv-plan"), &dm, body).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["set"], true);
    assert_eq!(plan["critical_items"][0], "I.SYSBP");
    assert_eq!(plan["seed"], "20261207");
    let (status, progress) = call(&app, "GET", &format!("{base}/sdv-progress"), &dm, "").await;
    assert_eq!(status, StatusCode::OK, "{progress}");
    let sites = progress["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2, "{progress}");
    for site in sites {
        assert_eq!(site["full"], 1, "one subject per site in full: {site}");
    }
    let targeted: Vec<&Value> = subjects(&progress)
        .iter()
        .filter(|s| s["level"] == "targeted")
        .collect();
    assert_eq!(targeted.len(), app.subjects.len() - 2, "{progress}");
    for s in &targeted {
        assert_eq!(s["required"], 1, "only SYSBP: {s}");
        let n = s["screening_number"].as_str().unwrap();
        assert!(values_of(&full, n) > 1);
    }

    // A monitor verifies one targeted subject's SYSBP at the German site: done for them.
    let (_, mine) = call(&app, "GET", &format!("{base}/sdv-progress"), &monitor, "").await;
    let mine = subjects(&mine);
    assert!(
        mine.len() < app.subjects.len() && mine.iter().all(|s| s["site"] == "DE-01"),
        "a monitor sees their sites only: {mine:?}"
    );
    let target = mine
        .iter()
        .find(|s| s["level"] == "targeted")
        .expect("a targeted subject at DE-01");
    assert_eq!(target["outstanding"], 1);
    let subject = target["subject"].as_str().unwrap();
    let (status, v) = call(
        &app,
        "POST",
        &format!("{base}/subjects/{subject}/verifications"),
        &monitor,
        &format!(r#"{{"items": ["{SYSBP}"]}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, after) = call(&app, "GET", &format!("{base}/sdv-progress"), &monitor, "").await;
    let done = subjects(&after)
        .iter()
        .find(|s| s["subject"] == subject)
        .unwrap();
    assert_eq!(done["verified"], 1, "{done}");
    assert_eq!(done["outstanding"], 0, "{done}");

    // The form page tells the monitor which items the plan requires for this subject.
    let page = body_text(
        app.send(get(
            &format!(
                "/studies/{}/subjects/{subject}/forms/SE.SCREEN%5B1%5D%2FF.VS%5B1%5D",
                app.study.id
            ),
            &monitor,
        ))
        .await,
    )
    .await;
    assert!(page.contains("sdv-required"), "required rows are marked");
    assert!(
        page.contains("Erforderlich") && page.contains("Optional"),
        "the monitor reads German"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_plan_is_refused_naming_the_setting_and_a_change_needs_a_reason() {
    let app = TestApp::new().await;
    let (dm, _) = app.session("datamanager").await;
    let url = format!("/api/v1/studies/{}/sdv-plan", app.study.id);
    for (body, field) in [
        (
            r#"{"critical_items": ["I.NOPE"], "sample_percent": 10}"#,
            "critical_items",
        ),
        (
            r#"{"critical_forms": ["F.VS", "F.NOPE"], "sample_percent": 10}"#,
            "critical_forms",
        ),
        (r#"{"sample_percent": 101}"#, "sample_percent"),
        (r#"{"sample_percent": 10, "seed": "-1"}"#, "seed"),
        (
            r#"{"critical_items": ["I/SYSBP"], "sample_percent": 10}"#,
            "critical_items",
        ),
    ] {
        let (status, p) = call(&app, "PUT", &url, &dm, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {p}");
        assert_eq!(p["field"], field, "{body}: {p}");
    }
    assert!(
        app.store.sdv_plan(app.study.id).await.unwrap().is_none(),
        "nothing written"
    );

    let first = r#"{"critical_forms": ["F.AE"], "first_subjects_per_site": 3, "sample_percent": 25, "seed": "9"}"#;
    let (status, _) = call(&app, "PUT", &url, &dm, first).await;
    assert_eq!(status, StatusCode::OK);
    let second = r#"{"critical_forms": ["F.AE", "F.DM"], "first_subjects_per_site": 3, "sample_percent": 25, "seed": "9"}"#;
    let (status, p) = call(&app, "PUT", &url, &dm, second).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["code"], "reason_required", "{p}");
    let with_reason = second.replace('}', r#", "reason": "Monitoring plan v2"}"#);
    let (status, p) = call(&app, "PUT", &url, &dm, &with_reason).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["critical_forms"], serde_json::json!(["F.AE", "F.DM"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_staff_cannot_see_the_selection_and_monitors_cannot_change_the_plan() {
    let app = TestApp::new().await;
    let (coordinator, _) = app.session("coordinator").await;
    let (monitor, _) = app.session("monitor").await;
    let id = app.study.id;
    for path in [
        format!("/api/v1/studies/{id}/sdv-plan"),
        format!("/api/v1/studies/{id}/sdv-progress"),
    ] {
        let (status, _) = call(&app, "GET", &path, &coordinator, "").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let r = app
        .send(get(&format!("/studies/{id}/sdv"), &coordinator))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (status, _) = call(
        &app,
        "PUT",
        &format!("/api/v1/studies/{id}/sdv-plan"),
        &monitor,
        r#"{"sample_percent": 0}"#,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_is_set_in_the_browser_and_errors_keep_what_was_typed() {
    let app = TestApp::new().await;
    let (dm, csrf) = app.session("datamanager").await;
    let page_url = format!("/studies/{}/sdv", app.study.id);
    let r = app.send(get(&page_url, &dm)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = body_text(r).await;
    assert!(html.contains("100% SDV"), "no plan yet is said plainly");
    assert!(html.contains("name=\"sample_percent\""));

    let post = |body: String| form(&format!("{page_url}/plan"), &dm, &body);
    let r = app
        .send(post(format!(
            "csrf={csrf}&critical_items=I.SYSBP+I.TYPO&critical_forms=&first_subjects_per_site=2&sample_percent=20&seed=5"
        )))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = body_text(r).await;
    assert!(
        html.contains("I.TYPO is not an item"),
        "the error names the OID"
    );
    assert!(
        html.contains("value=\"I.SYSBP I.TYPO\""),
        "what was typed is kept"
    );

    let r = app
        .send(post(format!(
            "csrf={csrf}&critical_items=I.SYSBP&critical_forms=F.AE&first_subjects_per_site=2&sample_percent=20&seed=5"
        )))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = body_text(app.send(get(&page_url, &dm)).await).await;
    assert!(html.contains("I.SYSBP") && html.contains("20 %"), "{html}");
    assert!(
        html.contains("name=\"reason\""),
        "a change now asks for a reason"
    );
    let row = app.store.sdv_plan(app.study.id).await.unwrap().unwrap();
    assert!(row.plan.contains("sample-percent: 20"));

    let r = app
        .send(form(
            &format!("{page_url}/plan"),
            &dm,
            "csrf=wrong&first_subjects_per_site=1&sample_percent=1&seed=1",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
