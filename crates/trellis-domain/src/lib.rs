//! Domain types shared by every Trellis crate.
//!
//! Architecture invariant: this crate does no I/O, knows no SQL and no HTTP.
//! Values are validated when they are constructed ("parse, don't validate"),
//! so a `StudyCode` or `TzName` in hand is always well formed.

mod ids;
mod names;
mod roles;
mod time;

pub use ids::{
    ApiTokenId, OrgId, QueryId, RoleGrantId, SignatureId, SiteId, StudyId, SubjectId, UserId,
};
pub use names::{
    CountryCode, DisplayName, Email, PasswordPolicy, PasswordProblem, ScreeningNumber, SiteCode,
    StudyCode, Username, ValidationError,
};
pub use roles::{OrgKind, Role, SignatureMeaning, SubjectStatus, UnknownVariant};
pub use time::{TzName, UtcMicros};
