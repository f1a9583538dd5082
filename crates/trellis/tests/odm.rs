//! `trellis study import-odm` and `trellis export odm` against a real database file:
//! imports are all-or-nothing, exports validate against the ODM 1.3.2 schema, and an
//! export imports back into another study with the same values.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trellis_domain::*;
use trellis_store::{Actor, DatabaseUrl, Mutation, QueryStatus, Store, StoreOptions, WriteRequest};

const BIN: &str = env!("CARGO_BIN_EXE_trellis");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../trellis-odm/tests/fixtures")
        .join(name)
}

struct Env {
    dir: tempfile::TempDir,
    url: String,
}

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("TRELLIS_DATABASE_URL", &self.url)
            .env("TRELLIS_DATA_DIR", self.dir.path())
            .env("TRELLIS_LOG", "warn")
            .output()
            .unwrap()
    }
    async fn store(&self) -> Store {
        Store::open(
            &DatabaseUrl::parse(&self.url).unwrap(),
            &StoreOptions::default(),
        )
        .await
        .unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A database with a sponsor and two studies, each with a site DE-01.
async fn setup() -> (Env, StudyId, StudyId) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let env = Env { dir, url };
    assert!(env.run(&["migrate"]).status.success());
    let store = env.store().await;
    let sponsor = OrgId::new();
    let (a, b) = (StudyId::new(), StudyId::new());
    let mut m = vec![Mutation::CreateOrganization {
        id: sponsor,
        kind: OrgKind::Sponsor,
        name: DisplayName::parse("Acme Therapeutics").unwrap(),
    }];
    for (id, code) in [(a, "CARDIO-001"), (b, "CARDIO-COPY")] {
        m.push(Mutation::CreateStudy {
            id,
            sponsor,
            code: StudyCode::parse(code).unwrap(),
            title: DisplayName::parse("Cardio").unwrap(),
            time_zone: TzName::parse("Europe/Berlin").unwrap(),
        });
        m.push(Mutation::CreateSite {
            study: id,
            id: SiteId::new(),
            code: SiteCode::parse("DE-01").unwrap(),
            name: DisplayName::parse("Charité Berlin").unwrap(),
            country: CountryCode::parse("DE").unwrap(),
            time_zone: TzName::parse("Europe/Berlin").unwrap(),
        });
    }
    store
        .write(WriteRequest::new(Actor::system(), m))
        .await
        .unwrap();
    store.close().await;
    (env, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_export_and_import_again() {
    let (env, a, b) = setup().await;
    let cardio = fixture("cardio_1_3_2.xml");
    let out = env.run(&[
        "study",
        "import-odm",
        cardio.to_str().unwrap(),
        "--study",
        "CARDIO-001",
        "--site",
        "DE-01",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("1 metadata version, 1 new subject"),
        "{shown}"
    );
    assert!(
        shown.contains("1 audit record(s) of the source system not imported"),
        "{shown}"
    );
    assert!(
        shown.contains("1 annotation(s) give no status") && shown.contains("1 query;"),
        "{shown}"
    );

    // A broken file imports nothing and names the line.
    let broken_path = env.dir.path().join("broken.xml");
    let broken = std::fs::read_to_string(&cardio)
        .unwrap()
        .replace("MDV.1", "MDV.2")
        .replace(r#"Value="152""#, r#"Value="15x""#);
    std::fs::write(&broken_path, &broken).unwrap();
    let store = env.store().await;
    let heads_before = store.chain_heads().await.unwrap();
    let out = env.run(&[
        "study",
        "import-odm",
        broken_path.to_str().unwrap(),
        "--study",
        "CARDIO-001",
        "--site",
        "DE-01",
    ]);
    assert!(!out.status.success());
    let line = broken.lines().position(|l| l.contains("15x")).unwrap() + 1;
    assert!(
        text(&out).contains(&format!("line {line}")),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("nothing would be imported"),
        "{}",
        text(&out)
    );
    assert_eq!(
        store.chain_heads().await.unwrap(),
        heads_before,
        "nothing written"
    );
    assert_eq!(store.metadata_versions(a).await.unwrap().len(), 1);

    // A query on the height goes out as an annotation on that item.
    let subject_a = store
        .subjects(a)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.screening_number == "BER-001")
        .unwrap();
    store
        .write(WriteRequest::new(
            Actor::system(),
            vec![Mutation::OpenQuery {
                study: a,
                id: QueryId::new(),
                subject: subject_a.id,
                item_key: "SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.HEIGHT".into(),
                check_id: None,
                text: "Please confirm the height <in cm> & units".into(),
            }],
        ))
        .await
        .unwrap();
    // ... and so does the verification of the birth date against source.
    store
        .write(WriteRequest::new(
            Actor::system(),
            vec![Mutation::VerifyItem {
                study: a,
                subject: subject_a.id,
                item_key: "SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.BRTHDTC".into(),
                verified: true,
            }],
        ))
        .await
        .unwrap();

    // Export with the full audit trail: valid ODM 1.3.2.
    let export = env.dir.path().join("export.xml");
    let out = env.run(&[
        "export",
        "odm",
        "--study",
        "CARDIO-001",
        "--out",
        export.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let xml = std::fs::read(&export).unwrap();
    trellis_odm::xsd::assert_valid(&xml, "the export", Path::new(env!("CARGO_TARGET_TMPDIR")));
    let odm = trellis_odm::read_bytes(&xml).unwrap().odm;
    assert_eq!(odm.file_type, trellis_odm::FileType::Transactional);
    let subject = &odm.clinical_data[0].subjects[0];
    assert_eq!(subject.subject_key, "BER-001");
    let first = &subject.study_events[0].forms[0].item_groups[0].items[0];
    assert_eq!(first.item_oid, "I.BRTHDTC", "definition order");
    let height = subject.study_events[0].forms[0].item_groups[0]
        .items
        .iter()
        .rfind(|i| i.item_oid == "I.HEIGHT")
        .unwrap();
    let note = height.annotations[0].comment.as_ref().unwrap();
    assert!(
        note.text.starts_with("Query open (raised manually)"),
        "{}",
        note.text
    );
    assert!(
        note.text
            .contains("Please confirm the height <in cm> & units")
    );
    let birth = subject.study_events[0].forms[0].item_groups[0]
        .items
        .iter()
        .rfind(|i| i.item_oid == "I.BRTHDTC")
        .unwrap();
    let sdv = birth.annotations[0].comment.as_ref().unwrap();
    assert!(
        sdv.text.starts_with("Source data verified ") && sdv.text.ends_with("(current)."),
        "{}",
        sdv.text
    );
    let audit = first.audit_record.as_ref().unwrap();
    assert_eq!(audit.location_oid, "LOC.DE-01");
    assert!(audit.source_id.as_deref().unwrap().starts_with("audit "));

    // The export imports into another study with the same values.
    let out = env.run(&[
        "study",
        "import-odm",
        export.to_str().unwrap(),
        "--study",
        "CARDIO-COPY",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let subject_in = |study| {
        let store = store.clone();
        async move {
            let s = store.subjects(study).await.unwrap();
            let s = s
                .iter()
                .find(|s| s.screening_number == "BER-001")
                .unwrap()
                .id;
            store.item_values(study, s).await.unwrap()
        }
    };
    assert_eq!(subject_in(b).await, subject_in(a).await);
    assert_eq!(subject_in(a).await.len(), 17);
    // The query came along, still open, naming where it came from; the verification did
    // not (monitors verify again), and the import says so.
    assert!(
        text(&out).contains("1 source data verification(s) not imported"),
        "{}",
        text(&out)
    );
    // (The fixture's site comment on the temperature came into study A as a closed query
    // and travels the same way.)
    let copied = store.queries(b, None).await.unwrap();
    assert_eq!(copied.len(), 2, "{copied:#?}");
    let height = copied
        .iter()
        .find(|q| q.item_key == "SE.SCREEN[1]/F.DM[1]/IG.DM[1]/I.HEIGHT")
        .unwrap();
    assert_eq!(height.status, QueryStatus::Open);
    assert!(
        height.messages[0]
            .text
            .contains("Please confirm the height <in cm> & units"),
        "{:?}",
        height.messages
    );
    let temp = copied
        .iter()
        .find(|q| q.item_key.ends_with("I.TEMP"))
        .unwrap();
    assert_eq!(temp.status, QueryStatus::Closed);
    assert!(
        temp.messages[0]
            .text
            .contains("Thermometer unavailable at screening")
    );

    // The export imported back into its own study changes nothing: its queries are
    // recognised by their ids.
    let before = store.queries(a, None).await.unwrap();
    let out = env.run(&[
        "study",
        "import-odm",
        export.to_str().unwrap(),
        "--study",
        "CARDIO-001",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("2 queries are already in CARDIO-001"),
        "{}",
        text(&out)
    );
    assert_eq!(store.queries(a, None).await.unwrap(), before);

    let out = env.run(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amendment_is_a_new_version_and_a_changed_version_is_refused() {
    let (env, a, _) = setup().await;
    let cardio = std::fs::read_to_string(fixture("cardio_1_3_2.xml")).unwrap();
    let definition_only = |text: &str| {
        let end = text.find("<AdminData").unwrap();
        format!("{}</ODM>\n", &text[..end])
    };
    let v1 = env.dir.path().join("v1.xml");
    std::fs::write(&v1, definition_only(&cardio)).unwrap();
    assert!(
        env.run(&[
            "study",
            "import-odm",
            v1.to_str().unwrap(),
            "--study",
            "CARDIO-001"
        ])
        .status
        .success()
    );

    // Same OID, different content: refused.
    let changed = env.dir.path().join("changed.xml");
    std::fs::write(
        &changed,
        definition_only(&cardio.replace("Body temperature", "Temperature")),
    )
    .unwrap();
    let out = env.run(&[
        "study",
        "import-odm",
        changed.to_str().unwrap(),
        "--study",
        "CARDIO-001",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("an amendment needs a new OID"),
        "{}",
        text(&out)
    );

    // A new OID: the amendment is added.
    let amended = env.dir.path().join("v2.xml");
    std::fs::write(
        &amended,
        definition_only(&cardio.replace("Body temperature", "Temperature").replace(
            r#"OID="MDV.1" Name="Protocol version 1.0""#,
            r#"OID="MDV.2" Name="Amendment 1""#,
        )),
    )
    .unwrap();
    let out = env.run(&[
        "study",
        "import-odm",
        amended.to_str().unwrap(),
        "--study",
        "CARDIO-001",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let store = env.store().await;
    let versions: Vec<String> = store
        .metadata_versions(a)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.oid)
        .collect();
    assert_eq!(versions, ["MDV.1", "MDV.2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_are_added_and_data_exported_as_csv() {
    let (env, a, _) = setup().await;
    // A site with a bad country, then a good one, then the same code again.
    let add = |code: &str, country: &str| {
        env.run(&[
            "study",
            "add-site",
            "--study",
            "CARDIO-001",
            "--code",
            code,
            "--name",
            "Hôpital Necker, Paris",
            "--country",
            country,
            "--time-zone",
            "Europe/Paris",
        ])
    };
    let out = add("FR-01", "France");
    assert!(!out.status.success());
    assert!(text(&out).contains("--country"), "{}", text(&out));
    let out = add("FR-01", "FR");
    assert!(out.status.success(), "{}", text(&out));
    let out = add("FR-01", "FR");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("already has a site FR-01"),
        "{}",
        text(&out)
    );
    let store = env.store().await;
    let sites = store.sites(a).await.unwrap();
    assert!(
        sites
            .iter()
            .any(|s| s.code == "FR-01" && s.time_zone.as_str() == "Europe/Paris")
    );
    store.close().await;
    let out = env.run(&["study", "list"]);
    assert!(text(&out).contains("FR-01"), "{}", text(&out));

    let cardio = fixture("cardio_1_3_2.xml");
    let out = env.run(&[
        "study",
        "import-odm",
        cardio.to_str().unwrap(),
        "--study",
        "CARDIO-001",
        "--site",
        "DE-01",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // The file again, with its subject at a SiteRef that names none of the study's sites:
    // the subject is found by number and keeps its site, which is reported.
    let variant = |name: &str, site_ref: &str| {
        let path = env.dir.path().join(name);
        std::fs::write(
            &path,
            std::fs::read_to_string(&cardio).unwrap().replace(
                r#"<SiteRef LocationOID="LOC.BER"/>"#,
                &format!(r#"<SiteRef LocationOID="{site_ref}"/>"#),
            ),
        )
        .unwrap();
        path
    };
    let elsewhere = variant("elsewhere.xml", "LOC.NOWHERE");
    let import = |path: &Path| {
        env.run(&[
            "study",
            "import-odm",
            path.to_str().unwrap(),
            "--study",
            "CARDIO-001",
        ])
    };
    // A new subject whose data come in two SubjectData naming two sites: the second may not
    // move it from the site the first created it at.
    let twice = env.dir.path().join("twice.xml");
    let cardio_text = std::fs::read_to_string(&cardio).unwrap();
    let (start, end) = (
        cardio_text.find("<ClinicalData").unwrap(),
        cardio_text.find("</ClinicalData>").unwrap() + "</ClinicalData>".len(),
    );
    let block = cardio_text[start..end].replace("BER-001", "BER-002");
    let elsewhere_block = block.replace("LOC.BER", "LOC.FR-01");
    std::fs::write(
        &twice,
        format!(
            "{}{block}\n{elsewhere_block}{}",
            &cardio_text[..start],
            &cardio_text[end..]
        )
        .replace(r#"FileType="Snapshot""#, r#"FileType="Transactional""#),
    )
    .unwrap();
    let out = import(&twice);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "subject BER-002 of study CARDIO-001 is at site DE-01, but the file puts it at site FR-01 (SiteRef LOC.FR-01)"
        ),
        "{}",
        text(&out)
    );
    let out = import(&elsewhere);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "1 subject(s) already in the study have a SiteRef that names none of its sites (e.g. BER-001 at LOC.NOWHERE)"
        ),
        "{}",
        text(&out)
    );
    // A file that puts the subject at another of the study's sites is refused whole: its
    // data must not land in the casebook of the subject that has the number here.
    let out = import(&variant("moved.xml", "LOC.FR-01"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "subject BER-001 of study CARDIO-001 is at site DE-01, but the file puts it at site FR-01 (SiteRef LOC.FR-01)"
        ),
        "{}",
        text(&out)
    );
    // The subject's own site, named by its code: nothing to report.
    let out = import(&variant("home.xml", "DE-01"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("SiteRef"), "{}", text(&out));
    let csv_path = env.dir.path().join("vs.csv");
    let out = env.run(&[
        "export",
        "csv",
        "--study",
        "CARDIO-001",
        "--form",
        "F.VS",
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = csv.lines();
    assert!(
        lines.next().unwrap().starts_with(
            "study,site,subject,subject_status,event,event_repeat,form_repeat,I.VSDAT"
        ),
        "{csv}"
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("CARDIO-001,DE-01,"), "{row}");
    // The fixture's screening systolic pressure.
    assert!(row.contains(",152,"), "{csv}");

    let out = env.run(&["export", "csv", "--study", "CARDIO-001", "--wide"]);
    assert!(out.status.success(), "{}", text(&out));
    let wide = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        wide.lines()
            .next()
            .unwrap()
            .contains("SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP"),
        "{wide}"
    );
    assert_eq!(wide.lines().count(), 2, "one subject: {wide}");

    let out = env.run(&["export", "csv", "--study", "CARDIO-001", "--form", "F.NOPE"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("F.VS"),
        "names the forms there are: {}",
        text(&out)
    );
    let out = env.run(&["export", "csv", "--study", "NOPE", "--wide"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no study `NOPE`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclinica_discrepancy_notes_become_queries_once() {
    let (env, _, _) = setup().await;
    let file = fixture("openclinica_style_1_3.xml");
    // A migration: the study is created from the definition alone, its site added, then
    // the same file brings the data.
    let out = env.run(&[
        "study",
        "import-odm",
        file.to_str().unwrap(),
        "--study",
        "ONCO-7",
        "--sponsor",
        "Acme Therapeutics",
        "--metadata-only",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("clinical data of 1 subject(s) left out (metadata only)"),
        "{}",
        text(&out)
    );
    let out = env.run(&[
        "study",
        "add-site",
        "--study",
        "ONCO-7",
        "--code",
        "AT-01",
        "--name",
        "Medizinische Universität Wien",
        "--country",
        "AT",
        "--time-zone",
        "Europe/Vienna",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let import = || {
        env.run(&[
            "study",
            "import-odm",
            file.to_str().unwrap(),
            "--study",
            "ONCO-7",
            "--site",
            "AT-01",
        ])
    };
    let out = import();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 queries"), "{}", text(&out));
    assert!(
        text(&out).contains(
            "1 new subject(s) registered under OpenClinica's StudySubjectID rather than the SubjectKey (e.g. 1001 for SS_1001)"
        ),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("vendor extension OpenClinica:DiscrepancyNotes inside SubjectData"),
        "a note on the subject itself is reported: {}",
        text(&out)
    );
    let store = env.store().await;
    let b = store.study_by_code("ONCO-7").await.unwrap().unwrap().id;
    let registered = store.subjects(b).await.unwrap();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].screening_number, "1001");
    let queries = store.queries(b, None).await.unwrap();
    assert_eq!(queries.len(), 3, "{queries:#?}");
    let on = |item: &str, dn: &str| {
        queries
            .iter()
            .find(|q| q.item_key.ends_with(item) && q.messages[0].text.contains(dn))
            .unwrap_or_else(|| panic!("{dn} on {item}: {queries:#?}"))
    };
    // A monitor's query the site answered: still to be closed in Trellis.
    let consent = on("I_ELIG_CONSENTDT", "DN_14");
    assert_eq!(
        consent.item_key,
        "SE_SCREENING[1]/F_ELIG_V1[1]/IG_ELIG_UNGROUPED[1]/I_ELIG_CONSENTDT"
    );
    assert_eq!(consent.status, QueryStatus::Answered);
    let actions: Vec<&str> = consent.messages.iter().map(|m| m.action.as_str()).collect();
    assert_eq!(actions, ["open", "answer"]);
    assert!(
        consent.messages[0]
            .text
            .contains("Note CDN_21 of 2024-02-05 by mon_ana (Ana Monitor), status New: Consent date after screening?"),
        "{}",
        consent.messages[0].text
    );
    assert!(consent.messages[1].text.contains("pre-dated copy"));
    // A site's annotation: a closed note.
    assert_eq!(on("I_ELIG_CONSENTDT", "DN_15").status, QueryStatus::Closed);
    // A failed check, discussed and closed: the discussion is kept.
    let dose = on("I_DOSIN_DOSE", "DN_20");
    assert_eq!(dose.status, QueryStatus::Closed);
    assert!(
        dose.messages
            .last()
            .unwrap()
            .text
            .contains("Please confirm against the pharmacy log"),
        "{:?}",
        dose.messages
    );

    // The monitor closes the answered query in Trellis; that is not a change in the source.
    store
        .write(WriteRequest::new(
            Actor::system(),
            vec![Mutation::UpdateQuery {
                study: b,
                id: consent.id,
                action: trellis_store::QueryAction::Close,
                text: "Accepted".into(),
            }],
        ))
        .await
        .unwrap();
    // The same file again opens no query twice, and nothing else changes either.
    let out = import();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("changed in the source"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("nothing new to import into ONCO-7"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("3 queries are already in ONCO-7"),
        "{}",
        text(&out)
    );
    assert_eq!(store.queries(b, None).await.unwrap().len(), 3);
    // A newer extract, in which the monitor has since closed DN_14: the query is
    // recognised by its note id, left as it is, and the import says it changed.
    let newer = env.dir.path().join("newer.xml");
    std::fs::write(
        &newer,
        std::fs::read_to_string(&file).unwrap().replace(
            r#"<OpenClinica:DiscrepancyNote ID="DN_14" Status="Resolution Proposed""#,
            r#"<OpenClinica:DiscrepancyNote ID="DN_14" Status="Closed""#,
        ),
    )
    .unwrap();
    let out = env.run(&[
        "study",
        "import-odm",
        newer.to_str().unwrap(),
        "--study",
        "ONCO-7",
        "--site",
        "AT-01",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 query(ies) imported earlier have changed in the source since"),
        "{}",
        text(&out)
    );
    let after = store.queries(b, None).await.unwrap();
    assert_eq!(after.len(), 3);
    assert_eq!(
        after
            .iter()
            .find(|q| q.messages[0].text.contains("DN_14"))
            .unwrap()
            .messages
            .len(),
        3,
        "left as it was in Trellis"
    );

    // Two source subjects with one StudySubjectID cannot both be registered under it.
    let twins = env.dir.path().join("twins.xml");
    let original = std::fs::read_to_string(&file).unwrap();
    let first = original.find("<SubjectData ").unwrap();
    let end = original.find("</SubjectData>").unwrap() + "</SubjectData>".len();
    let copy = original[first..end].replace(r#"SubjectKey="SS_1001""#, r#"SubjectKey="SS_1001B""#);
    std::fs::write(
        &twins,
        format!("{}\n    {copy}{}", &original[..end], &original[end..]),
    )
    .unwrap();
    let out = env.run(&[
        "study",
        "import-odm",
        twins.to_str().unwrap(),
        "--study",
        "ONCO-7",
        "--site",
        "AT-01",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("SS_1001 (line ")
            && text(&out).contains("and SS_1001B have the same StudySubjectID 1001"),
        "{}",
        text(&out)
    );
    let out = env.run(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}
