//! The JSON API of data capture: the same edit checks, reasons, queries, SDV and locks
//! as the browser, with stable problem codes and site scoping.

use axum::http::StatusCode;

use crate::app::*;

const VS: &str = "SE.SCREEN[1]/F.VS[1]";

fn enc(s: &str) -> String {
    trellis_server::ui::url_encode(s).replace('/', "%2F")
}

/// A subject at the German site, where the investigator and the monitor work.
async fn de_subject(app: &TestApp) -> trellis_store::Subject {
    let de = app
        .store
        .sites(app.study.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.code == "DE-01")
        .unwrap();
    app.subjects
        .iter()
        .find(|s| s.site == de.id)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_is_read_and_saved_through_the_api_with_its_edit_checks() {
    let app = TestApp::new().await;
    let (inv, _) = app.session("investigator").await;
    let subject = de_subject(&app).await;
    let base = format!("/api/v1/studies/{}/subjects/{}", app.study.id, subject.id);

    let (status, casebook) = call(&app, "GET", &format!("{base}/casebook"), &inv, "").await;
    assert_eq!(status, StatusCode::OK, "{casebook}");
    assert_eq!(casebook["metadata_version"], "MDV.1");
    let screening = &casebook["events"][0];
    assert_eq!(screening["oid"], "SE.SCREEN");
    assert_eq!(screening["planned_day"], -14);
    assert!(
        screening["forms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["form"] == VS && f["values"].as_u64().unwrap() > 0),
        "{screening}"
    );

    let form = format!("{base}/forms/{}", enc(VS));
    let (status, page) = call(&app, "GET", &form, &inv, "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = &page["design"]["groups"][0]["items"];
    let sysbp = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["oid"] == "I.SYSBP")
        .unwrap();
    assert_eq!(sysbp["data_type"], "integer");
    assert_eq!(
        sysbp["question"], "Systolischer Blutdruck",
        "questions in the caller's language"
    );
    assert!(page["values"]["IG.VS[1]/I.SYSBP"].is_string(), "{page}");

    // A hard check refuses everything, naming the finding; nothing is written.
    let heads = app.store.chain_heads().await.unwrap();
    let (status, p) = call(
        &app,
        "PUT",
        &form,
        &inv,
        r#"{"values": {"IG.VS[1]/I.SYSBP": "300"}, "reason": "typo"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["code"], "edit_check_refused");
    assert!(p["detail"].as_str().unwrap().contains("at most 260"), "{p}");
    assert_eq!(p["findings"][0]["severity"], "hard");
    assert_eq!(p["findings"][0]["items"][0], "IG.VS[1]/I.SYSBP");
    assert_eq!(app.store.chain_heads().await.unwrap(), heads);

    // Unknown items and rows of a non-repeating group are refused by name.
    let (status, p) = call(
        &app,
        "PUT",
        &form,
        &inv,
        r#"{"values": {"IG.VS[2]/I.SYSBP": "120"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["code"], "unknown_item");
    assert_eq!(p["field"], "values.IG.VS[2]/I.SYSBP");

    // A change without a reason is refused; with one it is saved and audited.
    let (status, p) = call(
        &app,
        "PUT",
        &form,
        &inv,
        r#"{"values": {"IG.VS[1]/I.DIABP": "70"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["code"], "reason_required");

    // A soft check that fails saves the value and opens a query by itself.
    let (status, saved) = call(
        &app,
        "PUT",
        &form,
        &inv,
        r#"{"values": {"IG.VS[1]/I.DIABP": "250"}, "reason": "Re-measured"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["saved"], true);
    assert!(
        saved["changed"]
            .as_array()
            .unwrap()
            .contains(&format!("{VS}/IG.VS[1]/I.DIABP").into()),
        "{saved}"
    );
    assert!(
        saved["values"]["IG.VS[1]/I.BMI"].is_string(),
        "derived items are computed and stored: {saved}"
    );
    assert_eq!(saved["queries_opened"].as_array().unwrap().len(), 1);
    assert_eq!(saved["findings"][0]["severity"], "soft");

    // The check holds again: its query closes in the same write.
    let (status, saved) = call(
        &app,
        "PUT",
        &form,
        &inv,
        r#"{"values": {"IG.VS[1]/I.DIABP": "80"}, "reason": "Transcription error"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["queries_closed"].as_array().unwrap().len(), 1);

    // Saving the same value again changes nothing and writes nothing.
    let heads = app.store.chain_heads().await.unwrap();
    let (status, same) = call(
        &app,
        "PUT",
        &form,
        &inv,
        r#"{"values": {"IG.VS[1]/I.DIABP": "80"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["saved"], false);
    assert_eq!(app.store.chain_heads().await.unwrap(), heads);

    // The item's history: initial entry and the two changes, with reasons.
    let item = format!("{VS}/IG.VS[1]/I.DIABP");
    let (status, history) = call(
        &app,
        "GET",
        &format!("{base}/history?item={}", enc(&item)),
        &inv,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let reasons: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"Re-measured"), "{history}");
    assert!(reasons.contains(&"Transcription error"), "{history}");

    // The raw item endpoint does not take CRF items: they go through their form.
    let (status, p) = call(
        &app,
        "PUT",
        &format!("{base}/items"),
        &inv,
        &format!(r#"{{"values": {{"{item}": "60"}}, "reason": "x"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["code"], "form_item");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("SE.SCREEN%5B1%5D%2FF.VS%5B1%5D"),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_sdv_and_locks_through_the_api() {
    let app = TestApp::new().await;
    let (inv, _) = app.session("investigator").await;
    let (monitor, _) = app.session("monitor").await;
    let (dm, _) = app.session("datamanager").await;
    let (coordinator, _) = app.session("coordinator").await;
    let subject = de_subject(&app).await;
    let study = format!("/api/v1/studies/{}", app.study.id);
    let base = format!("{study}/subjects/{}", subject.id);
    let item = format!("{VS}/IG.VS[1]/I.SYSBP");

    // The monitor raises a query; the investigator answers; the monitor closes it.
    let (status, opened) = call(
        &app,
        "POST",
        &format!("{base}/queries"),
        &monitor,
        &format!(r#"{{"item": "{item}", "text": "Please check against the source"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let id = opened["id"].as_str().unwrap().to_owned();
    // The site may not close a query, and the monitor may not answer for the site.
    let (status, _) = call(
        &app,
        "POST",
        &format!("{base}/queries/{id}/close"),
        &inv,
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answered) = call(
        &app,
        "POST",
        &format!("{base}/queries/{id}/answer"),
        &inv,
        r#"{"text": "Confirmed in the source"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(answered["status"], "answered");
    // Answering twice is not a transition of the workflow.
    let (status, p) = call(
        &app,
        "POST",
        &format!("{base}/queries/{id}/answer"),
        &inv,
        r#"{"text": "again"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    let (status, closed) = call(
        &app,
        "POST",
        &format!("{base}/queries/{id}/close"),
        &monitor,
        r#"{"text": "Thanks"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["messages"].as_array().unwrap().len(), 3);

    let (status, list) = call(
        &app,
        "GET",
        &format!("{study}/queries?status=closed"),
        &dm,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        list["queries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["id"] == id.as_str()),
        "{list}"
    );
    let de = list["per_site"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"] == "DE-01")
        .unwrap();
    assert_eq!(de["closed"], 1, "{list}");
    // The US coordinator sees neither the German subject's queries nor its casebook.
    let (_, list) = call(&app, "GET", &format!("{study}/queries"), &coordinator, "").await;
    assert!(
        list["queries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["id"] != id.as_str()),
        "{list}"
    );
    let (status, _) = call(&app, "GET", &format!("{base}/casebook"), &coordinator, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, p) = call(
        &app,
        "GET",
        &format!("{study}/queries?status=pending"),
        &dm,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "status");

    // SDV by the monitor; a later change makes it stale.
    let (status, p) = call(
        &app,
        "POST",
        &format!("{base}/verifications"),
        &monitor,
        &format!(r#"{{"items": ["{item}", "not an item"]}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "items[1]");
    let (status, v) = call(
        &app,
        "POST",
        &format!("{base}/verifications"),
        &monitor,
        &format!(r#"{{"items": ["{item}"]}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = call(
        &app,
        "POST",
        &format!("{base}/verifications"),
        &dm,
        &format!(r#"{{"items": ["{item}"]}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only monitors verify source");
    let form = format!("{base}/forms/{}", enc(VS));
    let (status, saved) = call(
        &app,
        "PUT",
        &form,
        &inv,
        r#"{"values": {"IG.VS[1]/I.SYSBP": "141"}, "reason": "Re-measured"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (_, v) = call(&app, "GET", &format!("{base}/verifications"), &monitor, "").await;
    let sdv = v["verifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["item"] == item.as_str())
        .unwrap();
    assert_eq!(sdv["stale"], true, "{v}");

    // The data manager locks the form: saving is refused with `locked`.
    let (status, l) = call(
        &app,
        "PUT",
        &format!("{study}/locks"),
        &dm,
        &format!(
            r#"{{"subject": "{}", "form": "{VS}", "state": "locked"}}"#,
            subject.id
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{l}");
    assert_eq!(l["lock"]["state"], "locked");
    let (status, p) = call(
        &app,
        "PUT",
        &form,
        &inv,
        r#"{"values": {"IG.VS[1]/I.SYSBP": "142"}, "reason": "x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["code"], "locked");
    let (_, page) = call(&app, "GET", &form, &inv, "").await;
    assert_eq!(page["lock"]["state"], "locked");
    // Reopening needs a reason.
    let unlock = format!(
        r#"{{"subject": "{}", "form": "{VS}", "state": "open"}}"#,
        subject.id
    );
    let (status, p) = call(&app, "PUT", &format!("{study}/locks"), &dm, &unlock).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["code"], "reason_required");
    let unlock = format!(
        r#"{{"subject": "{}", "form": "{VS}", "state": "open", "reason": "Late lab correction"}}"#,
        subject.id
    );
    let (status, l) = call(&app, "PUT", &format!("{study}/locks"), &dm, &unlock).await;
    assert_eq!(status, StatusCode::OK, "{l}");
    assert!(l["lock"].is_null());

    // A study-wide lock closes every casebook; a site-scoped user cannot set one.
    let (status, _) = call(
        &app,
        "PUT",
        &format!("{study}/locks"),
        &dm,
        r#"{"state": "locked"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, casebook) = call(&app, "GET", &format!("{base}/casebook"), &inv, "").await;
    assert_eq!(casebook["lock"]["state"], "locked", "{casebook}");
    assert!(casebook["lock"]["subject"].is_null());
    let (status, p) = call(
        &app,
        "PUT",
        &form,
        &inv,
        r#"{"values": {"IG.VS[1]/I.SYSBP": "143"}, "reason": "x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    let (status, _) = call(
        &app,
        "PUT",
        &format!("{study}/locks"),
        &inv,
        r#"{"state": "open", "reason": "x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, locks) = call(&app, "GET", &format!("{study}/locks"), &inv, "").await;
    assert_eq!(locks["locks"].as_array().unwrap().len(), 1, "{locks}");
}
