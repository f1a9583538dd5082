use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`; expected one of: {expected}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $s)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: [$($s),+].join(", "),
                    }),
                }
            }
        }
    };
}

string_enum!(
    /// What a user may do, granted per study (and per site where it applies).
    Role, "role" {
        Administrator => "administrator",
        StudyManager => "study_manager",
        DataManager => "data_manager",
        Monitor => "monitor",
        Investigator => "investigator",
        SiteCoordinator => "site_coordinator",
        MedicalMonitor => "medical_monitor",
        SafetyPhysician => "safety_physician",
        BiostatisticianBlinded => "biostatistician_blinded",
        BiostatisticianUnblinded => "biostatistician_unblinded",
        MedicalWriter => "medical_writer",
        SponsorViewer => "sponsor_viewer",
        Auditor => "auditor",
    }
);

impl Role {
    /// Roles whose grants are limited to named sites of a study.
    pub const fn is_site_scoped(self) -> bool {
        matches!(
            self,
            Role::Monitor | Role::Investigator | Role::SiteCoordinator
        )
    }
    /// Administrators act installation-wide; all other roles are granted per study.
    pub const fn is_installation_wide(self) -> bool {
        matches!(self, Role::Administrator)
    }
    /// Roles that may never change regulated data.
    pub const fn is_read_only(self) -> bool {
        matches!(self, Role::Auditor | Role::SponsorViewer)
    }
}

string_enum!(
    /// The kind of an organization.
    OrgKind, "organization kind" {
        Cro => "cro",
        Sponsor => "sponsor",
        Institution => "institution",
    }
);

string_enum!(
    /// The meaning of an electronic signature (21 CFR 11.50(a)(3)).
    SignatureMeaning, "signature meaning" {
        Authored => "authored",
        Reviewed => "reviewed",
        Approved => "approved",
        Responsible => "responsible",
    }
);

string_enum!(
    /// Where a subject is in the study.
    SubjectStatus, "subject status" {
        Screening => "screening",
        ScreenFailed => "screen_failed",
        Enrolled => "enrolled",
        Randomized => "randomized",
        Completed => "completed",
        Withdrawn => "withdrawn",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(*r));
        }
        assert_eq!(Role::ALL.len(), 13);
        let err = "king".parse::<Role>().expect_err("unknown");
        assert!(err.to_string().contains("auditor"));
    }
}
