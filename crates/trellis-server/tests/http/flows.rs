use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use trellis_store::{AuditFilter, Chain};

use crate::app::*;

fn set_cookies(r: &axum::http::Response<Body>) -> Vec<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no hidden {name} in {html}"))
        + needle.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn login(app: &TestApp, username: &str, password: &str) -> axum::http::Response<Body> {
    let page = app.send(get("/login", "")).await;
    let login_cookie = cookie_pair(&set_cookies(&page)[0]);
    let html = body_text(page).await;
    let csrf = hidden(&html, "csrf");
    app.send(form(
        "/login",
        &login_cookie,
        &format!(
            "csrf={csrf}&next=%2F&username={username}&password={}",
            trellis_server::ui::url_encode(password)
        ),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_opens_the_study_list_and_is_audited() {
    let app = TestApp::new().await;
    let r = login(&app, "investigator", &app.creds.role_users_password.clone()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("trellis_session="))
        .unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    let r = app.send(get("/", &cookie_pair(&session))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get(header::CONTENT_SECURITY_POLICY).is_some());
    let html = body_text(r).await;
    assert!(html.contains("ACME-HTN-301"), "{html}");
    assert!(
        html.contains("lang=\"de\""),
        "the investigator reads German"
    );
    let trail = app
        .store
        .audit_entries(&AuditFilter {
            chain: Some(Chain::Installation),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.body.action == "sign_in" && e.body.actor_name == "Dr. Ingrid Investigator")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_account() {
    let app = TestApp::new().await;
    for _ in 0..5 {
        let r = login(&app, "monitor", "Wrong-password-1").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused.
    let r = login(&app, "monitor", &app.creds.role_users_password.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let u = app.store.user_by_name("monitor").await.unwrap().unwrap();
    assert!(u.locked_at.is_some());
    let trail = app
        .store
        .audit_entries(&AuditFilter {
            chain: Some(Chain::Installation),
            entity_id: Some(u.id.to_string()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(trail.iter().any(|e| e.body.action == "lockout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_input_is_a_problem_naming_the_field_and_writes_nothing() {
    let app = TestApp::new().await;
    let (cookie, _) = app.session("coordinator").await;
    let us = app
        .store
        .sites(app.study.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.code == "US-01")
        .unwrap();
    let subject = app.subjects.iter().find(|s| s.site == us.id).unwrap();
    let path = format!(
        "/api/v1/studies/{}/subjects/{}/items",
        app.study.id, subject.id
    );
    let before = app.store.chain_heads().await.unwrap();

    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            json("PUT", &path, &cookie, "{\"values\": {\"VS.PULSE\": \"70\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
        ),
        (
            json("PUT", &path, &cookie, "{\"values\": {}, \"colour\": 1}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
        ),
        (
            json("PUT", &path, &cookie, "{\"values\": 5}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
        ),
        (
            json(
                "PUT",
                &path,
                &cookie,
                &format!("{{\"values\": {{\"VS.NOTE\": \"{}\"}}}}", "x".repeat(5000)),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json(
                "PUT",
                &path,
                &cookie,
                &format!(
                    "{{\"values\": {{\"{}\": \"999\"}}}}",
                    trellis_server::demo::DEMO_SYSBP
                ),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "form_item",
        ),
        (
            json(
                "PUT",
                &path,
                &cookie,
                &format!("{{\"values\": {{\"A\": \"{}\"}}}}", "x".repeat(2 << 20)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            Request::put(&path)
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(vec![b'{', 0xff, 0xfe, b'}']))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
        ),
        (
            Request::put(&path)
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("values"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (req, status, code) in cases {
        let r = app.send(req).await;
        assert_eq!(r.status(), status, "{code}");
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        let p = body_json(r).await;
        assert_eq!(p["code"], code, "{p}");
        assert!(p["detail"].as_str().unwrap().len() > 5);
    }
    let r = app
        .send(json(
            "PUT",
            &path,
            &cookie,
            "{\"values\": {}, \"colour\": 1}",
        ))
        .await;
    let p = body_json(r).await;
    assert_eq!(p["field"], "colour", "{p}");
    assert_eq!(
        app.store.chain_heads().await.unwrap(),
        before,
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correction_with_reason_and_signature_that_becomes_invalid() {
    let app = TestApp::new().await;
    let (cookie, _) = app.session("investigator").await;
    let de = app
        .store
        .sites(app.study.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.code == "DE-01")
        .unwrap();
    let subject = app.subjects.iter().find(|s| s.site == de.id).unwrap();
    let vital_signs = format!(
        "/api/v1/studies/{}/subjects/{}/forms/SE.SCREEN%5B1%5D%2FF.VS%5B1%5D",
        app.study.id, subject.id
    );
    let sigs = format!("/api/v1/studies/{}/signatures", app.study.id);

    // Wrong password: no signature.
    let r = app
        .send(json(
            "POST",
            &sigs,
            &cookie,
            &format!(
                "{{\"subject\": \"{}\", \"meaning\": \"responsible\", \"password\": \"nope\"}}",
                subject.id
            ),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .send(json(
            "POST",
            &sigs,
            &cookie,
            &format!(
                "{{\"subject\": \"{}\", \"meaning\": \"responsible\", \"password\": \"{}\"}}",
                subject.id, app.creds.role_users_password
            ),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let list = body_json(app.send(get(&sigs, &cookie)).await).await;
    assert_eq!(list["signatures"][0]["valid"], true);
    assert_eq!(
        list["signatures"][0]["printed_name"],
        "Dr. Ingrid Investigator"
    );
    assert_eq!(list["signatures"][0]["meaning"], "responsible");

    let r = app
        .send(json(
            "PUT",
            &vital_signs,
            &cookie,
            "{\"values\": {\"IG.VS[1]/I.DIABP\": \"79\"}, \"reason\": \"Re-measured per protocol\"}",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", body_text(r).await);
    let list = body_json(app.send(get(&sigs, &cookie)).await).await;
    assert_eq!(
        list["signatures"][0]["valid"], false,
        "a signature is no longer valid once its content changes"
    );

    let audit = body_json(
        app.send(get(
            &format!(
                "/api/v1/studies/{}/audit?entity_id={}/{}",
                app.study.id,
                subject.id,
                trellis_server::ui::url_encode(trellis_server::demo::DEMO_DIABP)
            ),
            &cookie,
        ))
        .await,
    )
    .await;
    let last = audit["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "Re-measured per protocol");
    assert_eq!(last["new_value"], "79");
    assert!(last["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    app.store.verify_audit(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_scope_and_sponsor_isolation() {
    let app = TestApp::new().await;
    let (coordinator, _) = app.session("coordinator").await;
    let subjects = body_json(
        app.send(get(
            &format!("/api/v1/studies/{}/subjects", app.study.id),
            &coordinator,
        ))
        .await,
    )
    .await;
    assert_eq!(
        subjects["subjects"].as_array().unwrap().len(),
        3,
        "the US-01 coordinator sees only US-01 subjects"
    );
    let de = app
        .store
        .sites(app.study.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.code == "DE-01")
        .unwrap();
    let de_subject = app.subjects.iter().find(|s| s.site == de.id).unwrap();
    let r = app
        .send(json(
            "PUT",
            &format!(
                "/api/v1/studies/{}/subjects/{}/items",
                app.study.id, de_subject.id
            ),
            &coordinator,
            "{\"values\": {\"X\": \"1\"}}",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (sponsor, _) = app.session("sponsor").await;
    let studies = body_json(app.send(get("/api/v1/studies", &sponsor)).await).await;
    assert_eq!(
        studies["studies"].as_array().unwrap().len(),
        1,
        "the sponsor sees its own study"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_keeps_the_form_for_after_sign_in() {
    let app = TestApp::with_config(trellis_server::ServerConfig {
        session_idle: std::time::Duration::from_secs(0),
        ..Default::default()
    })
    .await;
    let (cookie, csrf) = app.session("admin").await;
    let r = app
        .send(form(
            "/admin/users",
            &cookie,
            &format!("csrf={csrf}&username=new.user&display_name=New+User&time_zone=UTC&locale=en"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let html = body_text(r).await;
    assert!(html.contains("name=\"resume_body\""), "{html}");
    let kept = hidden(&html, "resume_body");
    assert!(kept.contains("new.user") && !kept.contains(&csrf), "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_page_filters() {
    let app = TestApp::new().await;
    let (cookie, _) = app.session("auditor").await;
    let first = &app.subjects[0];
    let r = app
        .send(get(
            &format!("/studies/{}/audit?subject={}", app.study.id, first.id),
            &cookie,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = body_text(r).await;
    assert!(
        html.contains("Transcription error: source document reads 132"),
        "{html}"
    );
    let csv = body_text(
        app.send(get(
            &format!("/studies/{}/audit.csv?subject={}", app.study.id, first.id),
            &cookie,
        ))
        .await,
    )
    .await;
    assert!(csv.lines().count() > 3);
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.contains(&first.id.to_string()))
    );
}

#[tokio::test]
async fn openapi_document_snapshot() {
    insta::assert_json_snapshot!(trellis_server::openapi::document());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes() {
    let app = TestApp::new().await;
    assert_eq!(app.send(get("/healthz", "")).await.status(), StatusCode::OK);
    let r = body_json(app.send(get("/readyz", "")).await).await;
    assert_eq!(r["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_password_must_be_changed_first() {
    let app = TestApp::new().await;
    let (cookie, csrf) = app.session("auditor").await;
    let user = app.store.user_by_name("auditor").await.unwrap().unwrap();
    app.store
        .write(trellis_store::WriteRequest::new(
            trellis_store::Actor::system(),
            vec![trellis_store::Mutation::SetPassword {
                user: user.id,
                password_hash: user.password_hash.clone(),
                must_change: true,
            }],
        ))
        .await
        .unwrap();
    let r = app.send(get("/", &cookie)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers().get(header::LOCATION).unwrap(),
        "/account/password"
    );
    let current = trellis_server::ui::url_encode(&app.creds.role_users_password);
    let r = app
        .send(form(
            "/account/password",
            &cookie,
            &format!(
                "csrf={csrf}&current={current}&new=Brand-New-Pass-42&confirm=Brand-New-Pass-43"
            ),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(form(
            "/account/password",
            &cookie,
            &format!("csrf={csrf}&current={current}&new=short&confirm=short"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(form(
            "/account/password",
            &cookie,
            &format!("csrf={csrf}&current=wrong&new=Brand-New-Pass-42&confirm=Brand-New-Pass-42"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(form(
            "/account/password",
            &cookie,
            &format!(
                "csrf={csrf}&current={current}&new=Brand-New-Pass-42&confirm=Brand-New-Pass-42"
            ),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.send(get("/", &cookie)).await.status(), StatusCode::OK);
    let u = app.store.user(user.id).await.unwrap().unwrap();
    assert!(
        !u.must_change_password
            && trellis_server::auth::verify_password("Brand-New-Pass-42", &u.password_hash)
    );
    let trail = app
        .store
        .audit_entries(&AuditFilter {
            chain: Some(Chain::Installation),
            entity_id: Some(user.id.to_string()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        trail.iter().any(|e| e.body.action == "password_change"
            && e.body.new_value.as_deref() == Some("changed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_totp_second_factor_is_required_once_enabled() {
    let app = TestApp::new().await;
    let (cookie, csrf) = app.session("writer").await;
    let secret = trellis_server::totp::new_secret();
    let raw = trellis_server::totp::base32_decode(&secret).unwrap();
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap();
    let r = app
        .send(form(
            "/account/totp",
            &cookie,
            &format!("csrf={csrf}&action=enable&secret={secret}&code=000000"),
        ))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a wrong confirmation code does not enable it"
    );
    let code = trellis_server::totp::code_at(&raw, now);
    let r = app
        .send(form(
            "/account/totp",
            &cookie,
            &format!("csrf={csrf}&action=enable&secret={secret}&code={code}"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let password = app.creds.role_users_password.clone();
    let r = login(&app, "writer", &password).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "password alone no longer signs in"
    );
    let r = login_with_code(
        &app,
        "writer",
        &password,
        &trellis_server::totp::code_at(&raw, now),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let user = app.store.user_by_name("writer").await.unwrap().unwrap();
    let trail = app
        .store
        .audit_entries(&AuditFilter {
            chain: Some(Chain::Installation),
            entity_id: Some(user.id.to_string()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(trail.iter().any(|e| e.body.action == "totp_enable"));
    assert!(
        trail.iter().all(|e| !e
            .body
            .new_value
            .as_deref()
            .unwrap_or_default()
            .contains(&secret)),
        "the secret is never audited"
    );
}

async fn login_with_code(
    app: &TestApp,
    username: &str,
    password: &str,
    code: &str,
) -> axum::http::Response<Body> {
    let page = app.send(get("/login", "")).await;
    let login_cookie = cookie_pair(&set_cookies(&page)[0]);
    let html = body_text(page).await;
    let csrf = hidden(&html, "csrf");
    app.send(form(
        "/login",
        &login_cookie,
        &format!(
            "csrf={csrf}&next=%2F&username={username}&code={code}&password={}",
            trellis_server::ui::url_encode(password)
        ),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_a_casebook_in_the_browser() {
    let app = TestApp::new().await;
    let (cookie, csrf) = app.session("investigator").await;
    let de = app
        .store
        .sites(app.study.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.code == "DE-01")
        .unwrap();
    let subject = app.subjects.iter().find(|s| s.site == de.id).unwrap();
    let path = format!("/studies/{}/subjects/{}/sign", app.study.id, subject.id);
    let html = body_text(app.send(get(&path, &cookie)).await).await;
    let hash = hidden(&html, "content_sha256");
    assert!(html.contains("I.SYSBP"), "the page shows what is signed");
    let password = trellis_server::ui::url_encode(&app.creds.role_users_password);
    let r = app
        .send(form(
            &path,
            &cookie,
            &format!("csrf={csrf}&meaning=responsible&password=wrong&content_sha256={hash}"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .send(form(
            &path,
            &cookie,
            &format!(
                "csrf={csrf}&meaning=responsible&password={password}&content_sha256={}",
                "0".repeat(64)
            ),
        ))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "content changed since the page was shown: not signed"
    );
    let r = app
        .send(form(
            &path,
            &cookie,
            &format!("csrf={csrf}&meaning=responsible&password={password}&content_sha256={hash}"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let home = body_text(
        app.send(get(&format!("/studies/{}", app.study.id), &cookie))
            .await,
    )
    .await;
    assert!(
        home.contains("responsible · Dr. Ingrid Investigator"),
        "{home}"
    );
    assert!(home.contains("gültig"), "shown valid (German UI)");
    let items = format!(
        "/api/v1/studies/{}/subjects/{}/items",
        app.study.id, subject.id
    );
    let r = app
        .send(json(
            "PUT",
            &items,
            &cookie,
            "{\"values\": {\"VS.DIABP\": \"77\"}, \"reason\": \"Re-measured\"}",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let home = body_text(
        app.send(get(&format!("/studies/{}", app.study.id), &cookie))
            .await,
    )
    .await;
    assert!(
        home.contains("nicht mehr gültig"),
        "shown no longer valid after the change"
    );
}
