//! Every route in the route table × every role: allowed, or refused with 403.
//! The table is the router's only source, so a new route cannot escape this test.

use axum::http::StatusCode;
use trellis_domain::Role;
use trellis_server::authz::{Access, Permission};
use trellis_server::routes::table;

use crate::app::*;

/// The intended policy, written out independently of `authz::role_has`.
fn expected(access: Access, role: Role) -> bool {
    use Role::*;
    match access {
        Access::Public | Access::SignedIn => true,
        Access::Admin => role == Administrator,
        Access::InstallationAudit => matches!(role, Administrator | Auditor),
        Access::Study(Permission::ViewStudy) => true,
        Access::Study(Permission::EnterData) => matches!(role, Investigator | SiteCoordinator),
        Access::Study(Permission::ViewAudit) => matches!(
            role,
            Administrator
                | StudyManager
                | DataManager
                | Monitor
                | Investigator
                | MedicalMonitor
                | Auditor
        ),
        Access::Study(Permission::ManageQueries) => {
            matches!(role, Monitor | DataManager | MedicalMonitor)
        }
        Access::Study(Permission::VerifySource) => role == Monitor,
        Access::Study(Permission::PlanSdv) => matches!(role, StudyManager | DataManager),
        Access::Study(Permission::ViewSdvProgress) => matches!(
            role,
            Administrator | StudyManager | DataManager | Monitor | Auditor
        ),
        Access::Study(Permission::LockData) => matches!(role, DataManager | StudyManager),
        Access::Study(Permission::ManageDesign) => matches!(role, DataManager | StudyManager),
        Access::Study(Permission::ExportData) => matches!(
            role,
            Administrator
                | StudyManager
                | DataManager
                | MedicalMonitor
                | BiostatisticianBlinded
                | BiostatisticianUnblinded
                | Auditor
        ),
        Access::Study(Permission::Sign) => matches!(
            role,
            Investigator | Monitor | DataManager | StudyManager | MedicalMonitor | SafetyPhysician
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_role() {
    let app = TestApp::new().await;
    let sites = app.store.sites(app.study.id).await.unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (spec, _) in table() {
        for role in Role::ALL {
            let username = app.username_for(*role);
            let grants = app
                .store
                .grants(Some(
                    app.store.user_by_name(&username).await.unwrap().unwrap().id,
                ))
                .await
                .unwrap();
            // Site-scoped users act on a subject of their own site.
            let site = grants.iter().find_map(|g| g.site).unwrap_or(sites[0].id);
            let subject = app.subjects.iter().find(|s| s.site == site).unwrap();
            let path = spec
                .path
                .replace("{study}", &app.study.id.to_string())
                .replace("{subject}", &subject.id.to_string())
                .replace("{form}", "SE.SCREEN%5B1%5D%2FF.VS%5B1%5D")
                .replace("{form_oid}", "F.VS");
            let (cookie, csrf) = app.session(&username).await;
            let req = match spec.method.as_str() {
                "GET" => get(&path, &cookie),
                m if spec.api => json(m, &path, &cookie, "{}"),
                _ => form(&path, &cookie, &format!("csrf={csrf}")),
            };
            let status = app.send(req).await.status();
            let allowed = expected(spec.access, *role);
            let ok = if allowed {
                status != StatusCode::FORBIDDEN
                    && status != StatusCode::UNAUTHORIZED
                    && status != StatusCode::NOT_FOUND
            } else {
                status == StatusCode::FORBIDDEN
            };
            if !ok {
                failures.push(format!(
                    "{} {} as {role}: got {status}, expected {}",
                    spec.method,
                    spec.path,
                    if allowed { "allowed" } else { "403" }
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix failures:\n{}",
        failures.join("\n")
    );
    assert_eq!(checked, table().len() * Role::ALL.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_refused() {
    let app = TestApp::new().await;
    for (spec, _) in table() {
        if spec.access == Access::Public {
            continue;
        }
        let path = spec
            .path
            .replace("{study}", &app.study.id.to_string())
            .replace("{subject}", &app.subjects[0].id.to_string())
            .replace("{form}", "SE.SCREEN%5B1%5D%2FF.VS%5B1%5D")
            .replace("{form_oid}", "F.VS");
        let req = match spec.method.as_str() {
            "GET" => get(&path, ""),
            m if spec.api => json(m, &path, "", "{}"),
            _ => form(&path, "", "a=b"),
        };
        let status = app.send(req).await.status();
        let expected = if spec.api {
            StatusCode::UNAUTHORIZED
        } else if spec.method == "GET" {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(status, expected, "{} {}", spec.method, spec.path);
    }
}
