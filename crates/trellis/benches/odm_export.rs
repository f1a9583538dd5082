//! ODM export of a 500-subject study with its full audit trail (issue target: under
//! 10 s). Builds the study through the store (the cardio definition, 500 subjects with
//! screening demographics and vital signs, a correction with a reason on each, a query on
//! every tenth), then times `trellis export odm --audit full` as a user runs it, and
//! checks the file reads back.
//!
//! `cargo bench -p trellis --bench odm_export` (`BENCH_SUBJECTS`, default 500).
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Instant;

use trellis_domain::*;
use trellis_store::{Actor, DatabaseUrl, Mutation, Store, StoreOptions, WriteRequest};

const BIN: &str = env!("CARGO_BIN_EXE_trellis");

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let subjects: usize = std::env::var("BENCH_SUBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::open(
        &DatabaseUrl::parse(&url).unwrap(),
        &StoreOptions {
            create: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();

    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../trellis-odm/tests/fixtures/cardio_1_3_2.xml"
    );
    let text = std::fs::read_to_string(fixture).unwrap();
    let odm = trellis_odm::read_str(&text).unwrap().odm;
    let mut definition = odm.clone();
    definition.clinical_data.clear();
    definition.admin_data.clear();
    let (sponsor, study, site) = (OrgId::new(), StudyId::new(), SiteId::new());
    let setup = vec![
        Mutation::CreateOrganization {
            id: sponsor,
            kind: OrgKind::Sponsor,
            name: DisplayName::parse("Acme").unwrap(),
        },
        Mutation::CreateStudy {
            id: study,
            sponsor,
            code: StudyCode::parse("CARDIO-001").unwrap(),
            title: DisplayName::parse("Cardio").unwrap(),
            time_zone: TzName::parse("Europe/Berlin").unwrap(),
        },
        Mutation::CreateSite {
            study,
            id: site,
            code: SiteCode::parse("DE-01").unwrap(),
            name: DisplayName::parse("Charité").unwrap(),
            country: CountryCode::parse("DE").unwrap(),
            time_zone: TzName::parse("Europe/Berlin").unwrap(),
        },
        Mutation::AddMetadataVersion {
            study,
            study_oid: "ST.CARDIO-001".into(),
            oid: "MDV.1".into(),
            name: "Protocol 1.0".into(),
            odm: trellis_odm::to_string(&definition),
        },
    ];
    store
        .write(WriteRequest::new(Actor::system(), setup))
        .await
        .unwrap();

    let started = Instant::now();
    let at =
        |form: &str, group: &str, item: &str| format!("SE.SCREEN[1]/{form}[1]/{group}[1]/{item}");
    let mut entries = 0usize;
    for chunk in (0..subjects).collect::<Vec<_>>().chunks(50) {
        let mut m = Vec::new();
        let mut ids = Vec::new();
        for &i in chunk {
            let id = SubjectId::new();
            ids.push(id);
            m.push(Mutation::CreateSubject {
                study,
                id,
                site,
                screening_number: ScreeningNumber::parse(&format!("DE01-{i:04}")).unwrap(),
            });
            m.push(Mutation::AssignMetadataVersion {
                study,
                subject: id,
                oid: "MDV.1".into(),
            });
            m.push(Mutation::SaveItems {
                study,
                subject: id,
                values: vec![
                    (
                        at("F.DM", "IG.DM", "I.BRTHDTC"),
                        Some(format!("{}-0{}", 1940 + i % 50, 1 + i % 9)),
                    ),
                    (
                        at("F.DM", "IG.DM", "I.SEX"),
                        Some(if i % 2 == 0 { "F" } else { "M" }.into()),
                    ),
                    (
                        at("F.DM", "IG.DM", "I.HEIGHT"),
                        Some(format!("{}.5", 150 + i % 40)),
                    ),
                    (at("F.VS", "IG.VS", "I.VSDAT"), Some("2026-10-05".into())),
                    (
                        at("F.VS", "IG.VS", "I.SYSBP"),
                        Some((110 + i % 60).to_string()),
                    ),
                    (
                        at("F.VS", "IG.VS", "I.DIABP"),
                        Some((70 + i % 30).to_string()),
                    ),
                    (
                        at("F.VS", "IG.VS", "I.WEIGHT"),
                        Some(format!("{}.0", 55 + i % 45)),
                    ),
                    (at("F.VS", "IG.VS", "I.TEMP"), Some("36.8".into())),
                    (at("F.VS", "IG.VS", "I.BMI"), Some("24.1".into())),
                    (at("F.DM", "IG.DM", "I.CHILDPOT"), Some("N".into())),
                ],
            });
        }
        store
            .write(WriteRequest::new(Actor::system(), m))
            .await
            .unwrap();
        let mut corrections = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            corrections.push(Mutation::SaveItems {
                study,
                subject: *id,
                values: vec![(at("F.VS", "IG.VS", "I.SYSBP"), Some("131".into()))],
            });
            if n % 10 == 0 {
                corrections.push(Mutation::OpenQuery {
                    study,
                    id: QueryId::new(),
                    subject: *id,
                    item_key: at("F.VS", "IG.VS", "I.SYSBP"),
                    check_id: None,
                    text: "Please confirm against source".into(),
                });
            }
        }
        let r = store
            .write(
                WriteRequest::new(Actor::system(), corrections).with_reason("Transcription error"),
            )
            .await
            .unwrap();
        entries += r.entries.len();
    }
    let total_entries = store
        .audit_entries(&trellis_store::AuditFilter {
            chain: Some(trellis_store::Chain::Study(study)),
            limit: u32::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    store.close().await;
    println!(
        "built {subjects} subjects, {total_entries} audit entries in the study chain in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = entries;

    let out = dir.path().join("export.xml");
    let started = Instant::now();
    let status = Command::new(BIN)
        .args([
            "export",
            "odm",
            "--study",
            "CARDIO-001",
            "--audit",
            "full",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("TRELLIS_DATABASE_URL", &url)
        .env("TRELLIS_DATA_DIR", dir.path())
        .env("TRELLIS_LOG", "warn")
        .status()
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(status.success());
    let bytes = std::fs::read(&out).unwrap();
    let back = trellis_odm::read_bytes(&bytes).unwrap();
    let items: usize = back
        .odm
        .clinical_data
        .iter()
        .flat_map(|c| &c.subjects)
        .flat_map(|s| &s.study_events)
        .flat_map(|e| &e.forms)
        .flat_map(|f| &f.item_groups)
        .map(|g| g.items.len())
        .sum();
    println!(
        "ODM export, {subjects} subjects with full audit trail: {elapsed:.2} s ({:.1} MB, {items} ItemData with AuditRecords); target under 10 s: {}",
        bytes.len() as f64 / 1e6,
        if elapsed < 10.0 { "met" } else { "NOT met" }
    );
}
