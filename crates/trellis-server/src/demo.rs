//! The demo installation `serve --demo` creates: a sponsor, a CRO, one study
//! with two sites in different countries and time zones, a few subjects with
//! data, and one user for each role.

use trellis_domain::*;
use trellis_store::{Actor, Mutation, NewUser, Store, StoreError, WriteRequest};

use crate::auth;

/// The demo study's case report forms.
const DEMO_STUDY_ODM: &str = include_str!("demo_study.xml");

/// The screening systolic blood pressure of a demo subject (tests refer to it).
pub const DEMO_SYSBP: &str = "SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.SYSBP";
/// The screening diastolic blood pressure of a demo subject.
pub const DEMO_DIABP: &str = "SE.SCREEN[1]/F.VS[1]/IG.VS[1]/I.DIABP";

fn v<T>(r: Result<T, ValidationError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::invalid(e.field, e.message))
}

/// What was created, to print for the person starting the demo.
pub struct DemoCredentials {
    pub admin_username: String,
    pub admin_password: String,
    pub role_users_password: String,
    pub role_users: Vec<(String, Role)>,
}

/// Creates the demo installation unless the database already holds a study.
/// Returns `None` when there was nothing to do.
pub async fn seed(store: &Store) -> Result<Option<DemoCredentials>, StoreError> {
    if !store.studies().await?.is_empty() || store.user_by_name("admin").await?.is_some() {
        return Ok(None);
    }
    let cro = OrgId::new();
    let sponsor = OrgId::new();
    let study = StudyId::new();
    let (de, us) = (SiteId::new(), SiteId::new());
    let mut m = vec![
        Mutation::CreateOrganization {
            id: cro,
            kind: OrgKind::Cro,
            name: v(DisplayName::parse("Trellis Research CRO"))?,
        },
        Mutation::CreateOrganization {
            id: sponsor,
            kind: OrgKind::Sponsor,
            name: v(DisplayName::parse("Acme Therapeutics"))?,
        },
        Mutation::CreateStudy {
            id: study,
            sponsor,
            code: v(StudyCode::parse("ACME-HTN-301"))?,
            title: v(DisplayName::parse(
                "A randomized, double-blind study of ACM-117 in essential hypertension",
            ))?,
            time_zone: v(TzName::parse("America/New_York"))?,
        },
        Mutation::CreateSite {
            study,
            id: de,
            code: v(SiteCode::parse("DE-01"))?,
            name: v(DisplayName::parse("Charité Research Unit, Berlin"))?,
            country: v(CountryCode::parse("DE"))?,
            time_zone: v(TzName::parse("Europe/Berlin"))?,
        },
        Mutation::CreateSite {
            study,
            id: us,
            code: v(SiteCode::parse("US-01"))?,
            name: v(DisplayName::parse("Bayview Clinical Research, Boston"))?,
            country: v(CountryCode::parse("US"))?,
            time_zone: v(TzName::parse("America/New_York"))?,
        },
    ];
    let mut subjects = Vec::new();
    for (site, prefix) in [(de, "DE01"), (us, "US01")] {
        for n in 1..=3 {
            let id = SubjectId::new();
            subjects.push(id);
            m.push(Mutation::CreateSubject {
                study,
                id,
                site,
                screening_number: v(ScreeningNumber::parse(&format!("{prefix}-{n:03}")))?,
            });
        }
    }
    // The study's case report forms, defined in ODM (demo_study.xml), and every subject on them.
    let definition = trellis_odm::read_str(DEMO_STUDY_ODM)
        .map_err(|e| StoreError::invalid("demo_study.xml", e.to_string()))?
        .odm;
    // Stored exactly as an import of demo_study.xml would store it, so that the file (or
    // an export of the study) imports again as "identical".
    let (Some(odm_study), Some(mdv)) = (
        definition.studies.first(),
        definition
            .studies
            .first()
            .and_then(|s| s.metadata_versions.first()),
    ) else {
        return Err(StoreError::invalid("demo_study.xml", "no study definition"));
    };
    m.push(Mutation::AddMetadataVersion {
        study,
        study_oid: "ACME-HTN-301".into(),
        oid: "MDV.1".into(),
        name: "Protocol version 1.0".into(),
        odm: crate::odm_import::single_version_odm(odm_study, mdv),
    });
    for (i, id) in subjects.iter().enumerate() {
        m.push(Mutation::AssignMetadataVersion {
            study,
            subject: *id,
            oid: "MDV.1".into(),
        });
        let sys = 128 + (i as i32 * 7) % 25;
        let at = |form: &str, group: &str, item: &str| {
            format!("SE.SCREEN[1]/{form}[1]/{group}[1]/{item}")
        };
        m.push(Mutation::SaveItems {
            study,
            subject: *id,
            values: vec![
                (
                    at("F.DM", "IG.DM", "I.BRTHDTC"),
                    Some(format!("{}-0{}", 1950 + i * 3, 1 + i % 9)),
                ),
                (
                    at("F.DM", "IG.DM", "I.SEX"),
                    Some(if i % 2 == 0 { "F" } else { "M" }.into()),
                ),
                (
                    at("F.DM", "IG.DM", "I.HEIGHT"),
                    Some(format!("{}.5", 160 + i * 4)),
                ),
                (
                    at("F.VS", "IG.VS", "I.VSDAT"),
                    Some(format!("2026-10-{:02}", 5 + i)),
                ),
                (at("F.VS", "IG.VS", "I.SYSBP"), Some(sys.to_string())),
                (
                    at("F.VS", "IG.VS", "I.DIABP"),
                    Some((82 + i % 9).to_string()),
                ),
                (
                    at("F.VS", "IG.VS", "I.WEIGHT"),
                    Some(format!("{}.0", 64 + i * 5)),
                ),
            ],
        });
    }
    store.write(WriteRequest::new(Actor::system(), m)).await?;

    let admin_password = auth::generate_password();
    let role_password = auth::generate_password();
    let (ap, rp) = (admin_password.clone(), role_password.clone());
    let (admin_hash, role_hash) =
        tokio::task::spawn_blocking(move || (auth::hash_password(&ap), auth::hash_password(&rp)))
            .await
            .map_err(|e| StoreError::invalid("password", e.to_string()))?;
    let admin_hash = admin_hash.map_err(|e| StoreError::invalid("password", e))?;
    let role_hash = role_hash.map_err(|e| StoreError::invalid("password", e))?;

    // (user name, printed name, role, site for site roles, organization, time zone, language)
    #[allow(clippy::type_complexity)]
    let people: &[(&str, &str, Role, Option<SiteId>, OrgId, &str, &str)] = &[
        (
            "admin",
            "Alex Admin",
            Role::Administrator,
            None,
            cro,
            "UTC",
            "en",
        ),
        (
            "manager",
            "Morgan Manager",
            Role::StudyManager,
            None,
            cro,
            "America/New_York",
            "en",
        ),
        (
            "datamanager",
            "Dana Datamanager",
            Role::DataManager,
            None,
            cro,
            "Europe/London",
            "en",
        ),
        (
            "monitor",
            "Mira Monitor",
            Role::Monitor,
            Some(de),
            cro,
            "Europe/Berlin",
            "de",
        ),
        (
            "investigator",
            "Dr. Ingrid Investigator",
            Role::Investigator,
            Some(de),
            cro,
            "Europe/Berlin",
            "de",
        ),
        (
            "coordinator",
            "Chris Coordinator",
            Role::SiteCoordinator,
            Some(us),
            cro,
            "America/New_York",
            "en",
        ),
        (
            "medmonitor",
            "Dr. Max Medical",
            Role::MedicalMonitor,
            None,
            cro,
            "Europe/Berlin",
            "en",
        ),
        (
            "safety",
            "Dr. Sam Safety",
            Role::SafetyPhysician,
            None,
            cro,
            "Europe/Paris",
            "en",
        ),
        (
            "biostat",
            "Bo Blinded",
            Role::BiostatisticianBlinded,
            None,
            cro,
            "Europe/London",
            "en",
        ),
        (
            "unblinded",
            "Uma Unblinded",
            Role::BiostatisticianUnblinded,
            None,
            cro,
            "Europe/London",
            "en",
        ),
        (
            "writer",
            "Wren Writer",
            Role::MedicalWriter,
            None,
            cro,
            "America/Chicago",
            "en",
        ),
        (
            "sponsor",
            "Sia Sponsor",
            Role::SponsorViewer,
            None,
            sponsor,
            "America/New_York",
            "en",
        ),
        (
            "auditor",
            "Avery Auditor",
            Role::Auditor,
            None,
            cro,
            "Europe/Zurich",
            "en",
        ),
    ];
    let mut m = Vec::new();
    let mut role_users = Vec::new();
    for (username, name, role, site, org, tz, locale) in people {
        let id = UserId::new();
        let is_admin = *role == Role::Administrator;
        m.push(Mutation::CreateUser(Box::new(NewUser {
            id,
            username: v(Username::parse(username))?,
            display_name: v(DisplayName::parse(name))?,
            email: Some(v(Email::parse(&format!("{username}@demo.invalid")))?),
            org: *org,
            time_zone: v(TzName::parse(tz))?,
            locale: (*locale).into(),
            password_hash: if is_admin {
                admin_hash.clone()
            } else {
                role_hash.clone()
            },
            must_change_password: is_admin,
        })));
        m.push(Mutation::GrantRole {
            id: RoleGrantId::new(),
            user: id,
            role: *role,
            study: (!is_admin).then_some(study),
            site: *site,
        });
        if !is_admin {
            role_users.push(((*username).to_owned(), *role));
        }
    }
    store.write(WriteRequest::new(Actor::system(), m)).await?;

    // One corrected value, so the demo audit trail shows a reason for change.
    if let Some(first) = subjects.first() {
        store
            .write(
                WriteRequest::new(
                    Actor::system(),
                    vec![Mutation::SaveItems {
                        study,
                        subject: *first,
                        values: vec![(DEMO_SYSBP.into(), Some("132".into()))],
                    }],
                )
                .with_reason("Transcription error: source document reads 132"),
            )
            .await?;
    }
    Ok(Some(DemoCredentials {
        admin_username: "admin".into(),
        admin_password,
        role_users_password: role_password,
        role_users,
    }))
}
