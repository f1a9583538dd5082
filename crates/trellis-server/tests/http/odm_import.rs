//! Importing ODM through the browser and the API: an amendment and clinical data, checked
//! first or imported, all or nothing, by data management only.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::app::*;

const DEMO: &str = include_str!("../../src/demo_study.xml");

/// The demo definition as amendment MDV.2.
fn amendment() -> String {
    DEMO.replace(
        r#"<MetaDataVersion OID="MDV.1" Name="Protocol version 1.0""#,
        r#"<MetaDataVersion OID="MDV.2" Name="Protocol version 2.0""#,
    )
}

/// The demo definition (already imported) with a weight for one existing subject, as a
/// lab or migration file would carry it.
fn data_file(screening_number: &str) -> String {
    let clinical = format!(
        r#"<ClinicalData StudyOID="ACME-HTN-301" MetaDataVersionOID="MDV.1"><SubjectData SubjectKey="{screening_number}"><StudyEventData StudyEventOID="SE.SCREEN"><FormData FormOID="F.VS"><ItemGroupData ItemGroupOID="IG.VS"><ItemData ItemOID="I.WEIGHT" Value="71.5"/></ItemGroupData></FormData></StudyEventData></SubjectData></ClinicalData>"#
    );
    DEMO.replace("</ODM>", &format!("{clinical}\n</ODM>"))
}

/// How many metadata versions the demo study holds.
/// The subject's stored weight is `weight`.
async fn assert_weight(app: &TestApp, subject: &trellis_store::Subject, weight: &str) {
    let values = app
        .store
        .item_values(app.study.id, subject.id)
        .await
        .unwrap();
    assert!(
        values
            .iter()
            .any(|(k, v)| k.ends_with("/I.WEIGHT") && v.as_deref() == Some(weight)),
        "{values:?}"
    );
}

async fn versions(app: &TestApp) -> usize {
    app.store
        .metadata_versions(app.study.id)
        .await
        .unwrap()
        .len()
}

fn xml(path: &str, cookie: &str, body: String) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/xml")
        .body(Body::from(body))
        .unwrap()
}

fn multipart(path: &str, cookie: &str, fields: &[(&str, Option<&str>, &str)]) -> Request<Body> {
    let boundary = "trellis-test-boundary-7d3f";
    let mut body = String::new();
    for (name, file_name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(f) = file_name {
            body.push_str(&format!(
                "; filename=\"{f}\"\r\nContent-Type: application/xml"
            ));
        }
        body.push_str(&format!("\r\n\r\n{value}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    Request::post(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, cookie)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap()
}

/// Posts the import page's form: a file and the button pressed.
async fn upload(
    app: &TestApp,
    cookie: &str,
    csrf: &str,
    (file_name, body): (&str, &str),
    action: &str,
) -> (StatusCode, String) {
    let url = format!("/studies/{}/import", app.study.id);
    let r = app
        .send(multipart(
            &url,
            cookie,
            &[
                ("csrf", None, csrf),
                ("file", Some(file_name), body),
                ("action", None, action),
            ],
        ))
        .await;
    let status = r.status();
    (status, body_text(r).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_checks_then_imports_an_amendment_and_clinical_data() {
    let app = TestApp::new().await;
    let (dm, _) = app.session("datamanager").await;
    let subject = &app.subjects[0];
    let url = format!("/api/v1/studies/{}/odm", app.study.id);
    let file = amendment();

    let r = app
        .send(xml(
            &format!("{url}?check=true&file_name=amendment2.xml"),
            &dm,
            file.clone(),
        ))
        .await;
    let status = r.status();
    let v = body_json(r).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["imported"], false, "{v}");
    assert_eq!(v["report"]["new_metadata_versions"][0], "MDV.2", "{v}");
    assert_eq!(versions(&app).await, 1, "a check writes nothing");

    let r = app
        .send(xml(
            &format!("{url}?file_name=amendment2.xml"),
            &dm,
            file.clone(),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = body_json(r).await;
    assert_eq!(v["imported"], true, "{v}");
    assert!(v["audit_entries"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(versions(&app).await, 2);
    let trail = app
        .store
        .audit_entries(&trellis_store::AuditFilter {
            entity_type: Some("metadata_version".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        trail.iter().any(|e| e
            .body
            .request_id
            .as_deref()
            .is_some_and(|r| r.contains("odm-import amendment2.xml"))),
        "the audit trail names the file: {trail:?}"
    );

    // Clinical data for a subject already there, on the version it follows.
    let r = app
        .send(xml(
            &format!("{url}?file_name=weights.xml"),
            &dm,
            data_file(&subject.screening_number),
        ))
        .await;
    let v = body_json(r).await;
    assert_eq!(v["imported"], true, "{v}");
    assert_eq!(
        v["report"]["identical_metadata_versions"][0], "MDV.1",
        "{v}"
    );
    assert_eq!(v["report"]["values"], 1, "{v}");
    assert_weight(&app, subject, "71.5").await;

    // The same file again: nothing new.
    let r = app.send(xml(&url, &dm, file)).await;
    let v = body_json(r).await;
    assert_eq!(v["imported"], false, "{v}");
    assert_eq!(
        v["report"]["identical_metadata_versions"][0], "MDV.2",
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_refused_with_its_lines_and_only_data_management_may_import() {
    let app = TestApp::new().await;
    let (dm, _) = app.session("datamanager").await;
    let url = format!("/api/v1/studies/{}/odm", app.study.id);

    // A value that does not fit its item: refused, naming the line; nothing written.
    let bad = data_file(&app.subjects[0].screening_number).replace("71.5", "heavy");
    let line = bad.lines().position(|l| l.contains("heavy")).unwrap() + 1;
    let r = app.send(xml(&url, &dm, bad)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p = body_json(r).await;
    assert!(
        p["errors"].to_string().contains(&format!("line {line}")),
        "{p}"
    );
    assert_eq!(versions(&app).await, 1);

    // Not XML at all, and not ODM 1.3.
    let r = app.send(xml(&url, &dm, "{\"odm\": 1}".into())).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body_json(r).await["code"], "odm_unreadable");
    let r = app
        .send(xml(
            &url,
            &dm,
            DEMO.replace(r#"ODMVersion="1.3.2""#, r#"ODMVersion="2.0""#),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // JSON is not an ODM file.
    let r = app.send(json("POST", &url, &dm, "{}")).await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    for user in ["coordinator", "monitor", "investigator"] {
        let (cookie, _) = app.session(user).await;
        let r = app.send(xml(&url, &cookie, DEMO.into())).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_uploads_checks_and_imports_a_file() {
    let app = TestApp::new().await;
    let (dm, csrf) = app.session("datamanager").await;
    let url = format!("/studies/{}/import", app.study.id);
    let page = body_text(app.send(get(&url, &dm)).await).await;
    assert!(page.contains("enctype=\"multipart/form-data\""), "{page}");
    let file = amendment();

    let (status, page) = upload(&app, &dm, &csrf, ("amendment2.xml", &file), "check").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Nothing has been written yet"), "{page}");
    assert!(page.contains("MDV.2"));
    assert_eq!(versions(&app).await, 1);

    let (status, page) = upload(&app, &dm, &csrf, ("amendment2.xml", &file), "import").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Imported in one audited write"), "{page}");
    assert_eq!(versions(&app).await, 2);

    // A broken file: the page lists the problem with its line.
    let (status, page) = upload(&app, &dm, &csrf, ("broken.xml", "<ODM><Study"), "import").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("nothing was imported"), "{page}");

    let (status, _) = upload(&app, &dm, "forged", ("amendment3.xml", &file), "import").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A lab transfer: clinical data alone, no study definition, for the version the
/// subjects follow.
fn lab_transfer(screening_number: &str, weight: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileType="Transactional" FileOID="LAB.2026-12-07" CreationDateTime="2026-12-07T08:00:00Z" ODMVersion="1.3.2">
  <ClinicalData StudyOID="ACME-HTN-301" MetaDataVersionOID="MDV.1">
    <SubjectData SubjectKey="{screening_number}">
      <StudyEventData StudyEventOID="SE.SCREEN">
        <FormData FormOID="F.VS">
          <ItemGroupData ItemGroupOID="IG.VS">
            <ItemData ItemOID="I.WEIGHT" Value="{weight}"/>
          </ItemGroupData>
        </FormData>
      </StudyEventData>
    </SubjectData>
  </ClinicalData>
</ODM>
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinical_data_alone_imports_against_the_stored_definition() {
    let app = TestApp::new().await;
    let (dm, _) = app.session("datamanager").await;
    let subject = &app.subjects[1];
    let url = format!("/api/v1/studies/{}/odm?file_name=lab.xml", app.study.id);

    let r = app
        .send(xml(
            &url,
            &dm,
            lab_transfer(&subject.screening_number, "68.5"),
        ))
        .await;
    let status = r.status();
    let v = body_json(r).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["imported"], true, "{v}");
    assert_eq!(v["report"]["values"], 1, "{v}");
    assert_eq!(versions(&app).await, 1);
    assert_weight(&app, subject, "68.5").await;

    // A value that does not fit its item is checked against the stored definition.
    let bad = lab_transfer(&subject.screening_number, "sixty");
    let line = bad.lines().position(|l| l.contains("sixty")).unwrap() + 1;
    let r = app.send(xml(&url, &dm, bad)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p = body_json(r).await;
    assert!(
        p["errors"].to_string().contains(&format!("line {line}")),
        "{p}"
    );

    // Data for another study are refused, naming it.
    let other = lab_transfer(&subject.screening_number, "68.5").replace("ACME-HTN-301", "OTHER-1");
    let r = app.send(xml(&url, &dm, other)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body_json(r).await["detail"]
            .as_str()
            .unwrap()
            .contains("OTHER-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amendment_travels_with_data_still_on_the_version_before_it() {
    let app = TestApp::new().await;
    let (dm, _) = app.session("datamanager").await;
    let subject = &app.subjects[2];
    let clinical = lab_transfer(&subject.screening_number, "70.5");
    let data = &clinical[clinical.find("<ClinicalData").unwrap()..clinical.find("</ODM>").unwrap()];
    let file = amendment().replace("</ODM>", &format!("{data}</ODM>"));
    let url = format!(
        "/api/v1/studies/{}/odm?file_name=amendment-with-data.xml",
        app.study.id
    );
    let r = app.send(xml(&url, &dm, file)).await;
    let status = r.status();
    let v = body_json(r).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["report"]["new_metadata_versions"][0], "MDV.2", "{v}");
    assert_eq!(v["report"]["values"], 1, "{v}");
    assert!(
        v["report"]["warnings"]
            .to_string()
            .contains("MDV.1 is not defined in this file"),
        "{v}"
    );
    assert_weight(&app, subject, "70.5").await;
}
