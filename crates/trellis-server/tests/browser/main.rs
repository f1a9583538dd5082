//! End-to-end in a real headless Chromium (Debian's `chromium` + `chromedriver`):
//! sign in, open the demo study, filter its audit trail; enter, query, verify and sign
//! data; set a targeted SDV plan and import an ODM amendment.
//!
//! Without Chromium the test reports itself skipped, loudly; with
//! `TRELLIS_REQUIRE_BROWSER=1` (set by `.ci/run`) a missing browser fails it.
//! Screenshots land in `target/e2e/` for people to look at.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use trellis_domain::{Role, RoleGrantId};
use trellis_server::{AppState, ServerConfig};
use trellis_store::{Actor, DatabaseUrl, Mutation, QueryStatus, Store, StoreOptions, WriteRequest};

fn find(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(bin))
        .find(|p| p.exists())
}

struct Driver(Child);
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The demo installation served on a random port, and a headless Chromium driving it.
struct Browser {
    c: fantoccini::Client,
    base: String,
    creds: trellis_server::demo::DemoCredentials,
    store: Store,
    shots: PathBuf,
    _driver: Driver,
    _dir: tempfile::TempDir,
}

/// `None` (after a loud notice) when Chromium is not installed and not required.
async fn start() -> Option<Browser> {
    let (Some(driver_bin), Some(chromium)) = (find("chromedriver"), find("chromium")) else {
        if std::env::var("TRELLIS_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("TRELLIS_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed");
        }
        eprintln!(
            "\n*** SKIPPED: browser end-to-end test: install Debian's chromium and chromium-driver to run it. ***\n"
        );
        return None;
    };

    // The application, on a random port.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &DatabaseUrl::Sqlite(dir.path().join("e2e.db")),
        &StoreOptions {
            create: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let creds = trellis_server::demo::seed(&store).await.unwrap().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(store.clone(), ServerConfig::default()).unwrap();
    tokio::spawn(trellis_server::serve(
        listener,
        state,
        std::future::pending(),
    ));

    // chromedriver on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900"],
        }),
    );
    let mut client = None;
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let c = client.expect("chromedriver did not start");
    let shots = shots_dir();
    Some(Browser {
        c,
        base,
        creds,
        store,
        shots,
        _driver: driver,
        _dir: dir,
    })
}

impl Browser {
    async fn sign_in(&self, username: &str) {
        let c = &self.c;
        c.goto(&format!("{}/login", self.base)).await.unwrap();
        c.find(Locator::Css("#username"))
            .await
            .unwrap()
            .send_keys(username)
            .await
            .unwrap();
        c.find(Locator::Css("#password"))
            .await
            .unwrap()
            .send_keys(&self.creds.role_users_password)
            .await
            .unwrap();
        c.find(Locator::Css("form.stack button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::LinkText("ACME-HTN-301"))
            .await
            .unwrap();
    }

    /// Types `text` into the element `css` finds.
    async fn type_into(&self, css: &str, text: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn shot(&self, name: &str) {
        std::fs::write(self.shots.join(name), self.c.screenshot().await.unwrap()).unwrap();
    }

    /// Waits until the page shows `text` (a navigation has finished), or panics with the page.
    async fn wait_for_text(&self, text: &str) -> String {
        for _ in 0..100 {
            let source = self.c.source().await.unwrap();
            if source.contains(text) {
                return source;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the page never showed {text:?}: {}",
            self.c.source().await.unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_open_study_and_filter_the_audit_trail() {
    let Some(b) = start().await else { return };
    let (c, base, creds, store, shots) = (&b.c, &b.base, &b.creds, &b.store, &b.shots);

    // Sign in as the auditor.
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(
        c.current_url().await.unwrap().path().starts_with("/login"),
        "unauthenticated users are sent to sign in"
    );
    c.find(Locator::Css("#username"))
        .await
        .unwrap()
        .send_keys("auditor")
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(&creds.role_users_password)
        .await
        .unwrap();
    std::fs::write(shots.join("1-login.png"), c.screenshot().await.unwrap()).unwrap();
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The study list, then the study.
    let link = match c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::LinkText("ACME-HTN-301"))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            std::fs::write(shots.join("2-failed.png"), c.screenshot().await.unwrap()).unwrap();
            panic!(
                "no study link after sign-in ({e}); page: {}",
                c.source().await.unwrap()
            );
        }
    };
    std::fs::write(shots.join("2-studies.png"), c.screenshot().await.unwrap()).unwrap();
    link.click().await.unwrap();
    let source = c.source().await.unwrap();
    assert!(
        source.contains("DE-01") && source.contains("US-01") && source.contains("Europe/Berlin"),
        "study home lists both sites with their zones"
    );
    std::fs::write(shots.join("3-study.png"), c.screenshot().await.unwrap()).unwrap();

    // The audit trail, filtered to one subject with the keyboard-accessible form.
    c.find(Locator::LinkText("Audit trail"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let subject = c.find(Locator::Css("select[name=subject]")).await.unwrap();
    subject.select_by_label("DE01-001").await.unwrap();
    c.find(Locator::Css("form.filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Wait for the filtered page itself, not the one the click left.
    for _ in 0..100 {
        let url = c.current_url().await.unwrap();
        if url.query().is_some_and(|q| q.contains("subject="))
            && c.find(Locator::Css("main table tbody")).await.is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = c.source().await.unwrap();
    assert!(
        source.contains("Transcription error: source document reads 132"),
        "the filtered trail shows the correction with its reason"
    );
    let rows = c
        .find(Locator::Css("main table tbody"))
        .await
        .unwrap()
        .html(true)
        .await
        .unwrap();
    let study = store.studies().await.unwrap().remove(0);
    let subjects = store.subjects(study.id).await.unwrap();
    let chosen = subjects
        .iter()
        .find(|s| s.screening_number == "DE01-001")
        .unwrap();
    assert!(rows.contains(&chosen.id.to_string()));
    for other in subjects.iter().filter(|s| s.id != chosen.id) {
        assert!(
            !rows.contains(&other.id.to_string()),
            "entries of {} are filtered out",
            other.screening_number
        );
    }
    std::fs::write(
        shots.join("4-audit-filtered.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    b.c.clone().close().await.unwrap();
    store.close().await;
}

/// The data-capture story at one site: a coordinator enters screening vital signs (a hard
/// edit check refuses an impossible value, the corrected value is saved with a reason, a
/// soft check warns beside the item and opens a query, the item's history shows the
/// change); a monitor raises a query and marks an item verified against source; the
/// coordinator answers; the investigator signs the casebook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_enters_a_form_and_the_edit_checks_answer() {
    let Some(b) = start().await else { return };
    let c = &b.c;
    b.sign_in("coordinator").await;
    c.find(Locator::LinkText("ACME-HTN-301"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The coordinator works at US-01 and sees only its subjects.
    let subject = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::LinkText("US01-001"))
        .await
        .unwrap();
    subject.click().await.unwrap();
    b.wait_for_text("Casebook of").await;
    b.shot("5-casebook.png").await;
    c.find(Locator::Css("main table tbody tr:nth-child(2) a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for_text("Systolic blood pressure").await;

    let field = |name: &'static str| async move {
        let f = c
            .find(Locator::Css(&format!("input[name='v:IG.VS[1]/{name}']")))
            .await
            .unwrap();
        f.clear().await.unwrap();
        f
    };
    field("I.SYSBP").await.send_keys("300").await.unwrap();
    c.find(Locator::Css("form.crf button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = b.wait_for_text("nothing was saved").await;
    assert!(page.contains("must be at most 260 mmHg"));
    b.shot("6-form-refused.png").await;

    field("I.SYSBP").await.send_keys("150").await.unwrap();
    field("I.DIABP").await.send_keys("160").await.unwrap();
    c.find(Locator::Css("#reason"))
        .await
        .unwrap()
        .send_keys("Re-measured after 5 minutes rest")
        .await
        .unwrap();
    c.find(Locator::Css("form.crf button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = b.wait_for_text("Saved.").await;
    assert!(
        page.contains("Diastolic must be lower than systolic"),
        "the soft check warns"
    );
    b.shot("7-form-saved-with-warning.png").await;

    c.find(Locator::Css(
        "#IG_VS_1__I_DIABP ~ a.history, .crf-item:has(#IG_VS_1__I_DIABP) a.history",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let page = b.wait_for_text("Audit history of").await;
    assert!(page.contains("Re-measured after 5 minutes rest") && page.contains("160"));
    b.shot("8-item-history.png").await;

    // The US-01 monitor and investigator (granted here; the demo's work at DE-01).
    let study = b.store.studies().await.unwrap().remove(0);
    let us = b
        .store
        .sites(study.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.code == "US-01")
        .unwrap();
    let subject = b
        .store
        .subjects(study.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.screening_number == "US01-001")
        .unwrap();
    for (user, role) in [
        ("monitor", Role::Monitor),
        ("investigator", Role::Investigator),
    ] {
        let id = b.store.user_by_name(user).await.unwrap().unwrap().id;
        b.store
            .write(WriteRequest::new(
                Actor::system(),
                vec![Mutation::GrantRole {
                    id: RoleGrantId::new(),
                    user: id,
                    role,
                    study: Some(study.id),
                    site: Some(us.id),
                }],
            ))
            .await
            .unwrap();
    }
    let form_url = format!(
        "{}/studies/{}/subjects/{}/forms/SE.SCREEN%5B1%5D%2FF.VS%5B1%5D",
        b.base, study.id, subject.id
    );

    // The monitor raises a query on the systolic value and verifies the weight against source.
    c.delete_all_cookies().await.unwrap();
    b.sign_in("monitor").await;
    c.goto(&form_url).await.unwrap();
    b.wait_for_text("query-item").await;
    c.find(Locator::Css("#query-item"))
        .await
        .unwrap()
        .select_by_value("SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP")
        .await
        .unwrap();
    c.find(Locator::Css("#query-text"))
        .await
        .unwrap()
        .send_keys("Source shows 145, please check")
        .await
        .unwrap();
    c.find(Locator::Css("form.stack button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_for_text("Source shows 145, please check").await;
    c.find(Locator::Css(
        "input[type=checkbox][value='SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.WEIGHT']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    c.find(Locator::Css(
        "section.review form[action$='/sdv'] button[type=submit]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    b.wait_for_text("tag ok").await;
    b.shot("9-monitor-query-and-sdv.png").await;

    // The coordinator answers the query.
    c.delete_all_cookies().await.unwrap();
    b.sign_in("coordinator").await;
    c.goto(&form_url).await.unwrap();
    let page = b.wait_for_text("Source shows 145, please check").await;
    assert!(page.contains("Query open"));
    let manual = b
        .store
        .queries(study.id, Some(subject.id))
        .await
        .unwrap()
        .into_iter()
        .find(|q| q.check_id.is_none())
        .unwrap();
    c.find(Locator::Css(&format!("#text-{}", manual.id)))
        .await
        .unwrap()
        .send_keys("Transcription checked: 150 is correct")
        .await
        .unwrap();
    c.find(Locator::Css(&format!(
        "#query-{} button[value=answer]",
        manual.id
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    b.wait_for_text("Transcription checked: 150 is correct")
        .await;
    b.shot("10-coordinator-answers.png").await;
    let answered = b
        .store
        .queries(study.id, Some(subject.id))
        .await
        .unwrap()
        .into_iter()
        .find(|q| q.id == manual.id)
        .unwrap();
    assert_eq!(answered.status, QueryStatus::Answered);

    // The investigator signs the casebook.
    c.delete_all_cookies().await.unwrap();
    b.sign_in("investigator").await;
    c.goto(&format!(
        "{}/studies/{}/subjects/{}/sign",
        b.base, study.id, subject.id
    ))
    .await
    .unwrap();
    b.wait_for_text("content_sha256").await;
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(&b.creds.role_users_password)
        .await
        .unwrap();
    c.find(Locator::Css("main form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for _ in 0..100 {
        if !b.store.signatures(study.id).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signatures = b.store.signatures(study.id).await.unwrap();
    assert_eq!(
        signatures.len(),
        1,
        "the investigator's signature is recorded"
    );
    assert_eq!(signatures[0].entity_id, subject.id.to_string());
    b.shot("11-investigator-signed.png").await;
    b.c.clone().close().await.unwrap();
    b.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_manager_sets_an_sdv_plan_and_imports_an_amendment() {
    let Some(b) = start().await else { return };
    let c = &b.c;
    let study = b.store.studies().await.unwrap().remove(0);
    b.sign_in("datamanager").await;

    // The targeted SDV plan: first subject per site in full, systolic pressure for all.
    c.goto(&format!("{}/studies/{}/sdv", b.base, study.id))
        .await
        .unwrap();
    b.wait_for_text("100% SDV").await;
    for (field, value) in [
        ("#critical_items", "I.SYSBP"),
        ("#critical_forms", "F.AE"),
        ("#first_subjects_per_site", "1"),
        ("#sample_percent", "0"),
    ] {
        let input = c.find(Locator::Css(field)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    c.find(Locator::Css(
        "form[action$='/sdv/plan'] button[type=submit]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let page = b
        .wait_for_text("Targeted: critical items and forms only")
        .await;
    assert!(
        page.contains("name=\"reason\""),
        "a change now needs a reason"
    );
    b.shot("12-sdv-plan.png").await;
    assert!(b.store.sdv_plan(study.id).await.unwrap().is_some());

    // An amendment (the demo definition as MDV.2), checked, then imported.
    // Chromedriver wants a canonical path for an upload.
    let file = b.shots.canonicalize().unwrap().join("amendment-mdv2.xml");
    std::fs::write(
        &file,
        include_str!("../../src/demo_study.xml").replace(
            r#"<MetaDataVersion OID="MDV.1" Name="Protocol version 1.0""#,
            r#"<MetaDataVersion OID="MDV.2" Name="Protocol version 2.0""#,
        ),
    )
    .unwrap();
    c.goto(&format!("{}/studies/{}/import", b.base, study.id))
        .await
        .unwrap();
    b.wait_for_text("multipart/form-data").await;
    b.type_into("#file", file.to_str().unwrap()).await;
    b.click("button[value=check]").await;
    b.wait_for_text("Nothing has been written yet").await;
    b.shot("13-import-checked.png").await;
    b.type_into("#file", file.to_str().unwrap()).await;
    b.click("button[value=import]").await;
    b.wait_for_text("Imported in one audited write").await;
    b.shot("14-import-done.png").await;
    assert_eq!(b.store.metadata_versions(study.id).await.unwrap().len(), 2);

    // The same study on a tablet held upright, as at a site: the SDV progress table.
    c.set_window_size(800, 1100).await.unwrap();
    c.goto(&format!("{}/studies/{}/sdv", b.base, study.id))
        .await
        .unwrap();
    b.wait_for_text("Targeted: critical items and forms only")
        .await;
    c.execute(
        "document.getElementById('progress').scrollIntoView()",
        Vec::new(),
    )
    .await
    .unwrap();
    b.shot("15-sdv-progress-tablet.png").await;
    b.c.clone().close().await.unwrap();
    b.store.close().await;
}
