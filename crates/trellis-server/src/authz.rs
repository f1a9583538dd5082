//! Who may do what. Every decision is made here, on the server, from the
//! principal's role grants; routes declare the access they need in the route
//! table (`routes.rs`) and cannot be registered without it.

use trellis_domain::{OrgId, OrgKind, Role, SiteId, StudyId, UserId};
use trellis_store::{RoleGrant, Study};

/// A capability within a study (or, for administrators, the installation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See the study, its sites and subjects.
    ViewStudy,
    /// Enrol subjects and enter or correct their data.
    EnterData,
    /// Read the study's audit trail.
    ViewAudit,
    /// Apply an e-signature to study content.
    Sign,
    /// Raise, close and re-open data queries (monitors and data management).
    ManageQueries,
    /// Mark items as verified against source documents (monitors).
    VerifySource,
    /// Set the study's targeted SDV plan (clinical operations and data management).
    PlanSdv,
    /// See the SDV plan's subject selection and verification progress: not site staff,
    /// who should not know which subjects the sample drew.
    ViewSdvProgress,
    /// Freeze and lock data, and lift both with a reason (data management).
    LockData,
    /// Move subjects to another metadata version (protocol amendments; data management).
    ManageDesign,
    /// Download captured data as CSV (data management, biostatistics, medical review,
    /// audit); limited to the user's sites like every other view.
    ExportData,
}

/// What a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in user.
    SignedIn,
    /// A permission on the study named by the `{study}` path segment.
    Study(Permission),
    /// Installation administration (users, roles, the installation audit chain).
    Admin,
    /// Read the installation chain: administrators and auditors.
    InstallationAudit,
}

pub fn role_has(role: Role, p: Permission) -> bool {
    use Permission::*;
    use Role::*;
    match p {
        ViewStudy => true,
        EnterData => matches!(role, Investigator | SiteCoordinator),
        ViewAudit => matches!(
            role,
            Administrator
                | StudyManager
                | DataManager
                | Monitor
                | Investigator
                | MedicalMonitor
                | Auditor
        ),
        Sign => matches!(
            role,
            Investigator | Monitor | DataManager | StudyManager | MedicalMonitor | SafetyPhysician
        ),
        ManageQueries => matches!(role, Monitor | DataManager | MedicalMonitor),
        VerifySource => matches!(role, Monitor),
        PlanSdv => matches!(role, StudyManager | DataManager),
        ViewSdvProgress => matches!(
            role,
            Administrator | StudyManager | DataManager | Monitor | Auditor
        ),
        LockData => matches!(role, DataManager | StudyManager),
        ManageDesign => matches!(role, DataManager | StudyManager),
        ExportData => matches!(
            role,
            Administrator
                | StudyManager
                | DataManager
                | MedicalMonitor
                | BiostatisticianBlinded
                | BiostatisticianUnblinded
                | Auditor
        ),
    }
}

/// The signed-in user as authorization sees it.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: UserId,
    pub username: String,
    pub display_name: String,
    pub org: OrgId,
    pub org_kind: OrgKind,
    pub locale: String,
    pub time_zone: trellis_domain::TzName,
    pub grants: Vec<RoleGrant>,
    pub csrf_token: String,
    /// The password was set by someone else (or expired) and must be changed first.
    pub must_change_password: bool,
}

impl Principal {
    fn active(&self) -> impl Iterator<Item = &RoleGrant> {
        self.grants.iter().filter(|g| g.revoked_at.is_none())
    }

    pub fn is_admin(&self) -> bool {
        self.active().any(|g| g.role == Role::Administrator)
    }

    pub fn is_auditor_anywhere(&self) -> bool {
        self.active().any(|g| g.role == Role::Auditor)
    }

    /// Roles held on a study; administrators hold their role on every study.
    pub fn roles_on(&self, study: &Study) -> Vec<Role> {
        // A sponsor's people see only that sponsor's studies, whatever they were granted.
        if self.org_kind == OrgKind::Sponsor && study.sponsor != self.org {
            return Vec::new();
        }
        self.active()
            .filter(|g| g.study == Some(study.id) || g.role.is_installation_wide())
            .map(|g| g.role)
            .collect()
    }

    pub fn can(&self, study: &Study, p: Permission) -> bool {
        self.roles_on(study).into_iter().any(|r| role_has(r, p))
    }

    /// Sites the principal is limited to on a study, or `None` for the whole study.
    pub fn site_scope(&self, study: StudyId) -> Option<Vec<SiteId>> {
        let grants: Vec<&RoleGrant> = self
            .active()
            .filter(|g| g.study == Some(study) || g.role.is_installation_wide())
            .collect();
        if grants.iter().any(|g| g.site.is_none()) {
            return None;
        }
        Some(grants.iter().filter_map(|g| g.site).collect())
    }

    /// Whether the principal's scope on `study` includes `site`.
    pub fn sees_site(&self, study: StudyId, site: SiteId) -> bool {
        self.site_scope(study)
            .is_none_or(|sites| sites.contains(&site))
    }

    pub fn may(&self, access: Access, study: Option<&Study>) -> bool {
        match access {
            Access::Public | Access::SignedIn => true,
            Access::Admin => self.is_admin(),
            Access::InstallationAudit => self.is_admin() || self.is_auditor_anywhere(),
            Access::Study(p) => study.is_some_and(|s| self.can(s, p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_roles_never_enter_data() {
        for r in Role::ALL {
            if r.is_read_only() {
                assert!(!role_has(*r, Permission::EnterData), "{r}");
                assert!(!role_has(*r, Permission::Sign), "{r}");
            }
        }
    }
}
