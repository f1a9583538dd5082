//! What the store reads and writes, independent of the backend.

use trellis_audit::Chain;
use trellis_domain::{
    CountryCode, DisplayName, Email, OrgId, OrgKind, Role, RoleGrantId, ScreeningNumber,
    SignatureId, SignatureMeaning, SiteCode, SiteId, StudyCode, StudyId, SubjectId, SubjectStatus,
    TzName, UserId, Username, UtcMicros,
};
use uuid::Uuid;

/// Who is making a change, as the audit trail records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub id: Uuid,
    pub name: String,
}

impl Actor {
    pub fn user(id: UserId, printed_name: &str) -> Self {
        Self {
            id: id.as_uuid(),
            name: printed_name.to_owned(),
        }
    }
    /// The installation itself (migrations, demo seeding, scheduled jobs).
    pub fn system() -> Self {
        Self {
            id: Uuid::nil(),
            name: "Trellis system".to_owned(),
        }
    }
}

/// One unit of work: its mutations all commit, with their audit entries, or none does.
#[derive(Clone, Debug)]
pub struct WriteRequest {
    pub actor: Actor,
    /// Reason for change; required when a mutation changes previously entered data.
    pub reason: Option<String>,
    /// The client's request id, recorded in every audit entry.
    pub request_id: Option<String>,
    pub mutations: Vec<Mutation>,
}

impl WriteRequest {
    pub fn new(actor: Actor, mutations: Vec<Mutation>) -> Self {
        Self {
            actor,
            reason: None,
            request_id: None,
            mutations,
        }
    }
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}

/// Every change to regulated data and every security event. Each variant is
/// applied by the store together with the audit entries it implies.
#[derive(Clone, Debug)]
pub enum Mutation {
    CreateOrganization {
        id: OrgId,
        kind: OrgKind,
        name: DisplayName,
    },
    CreateStudy {
        id: StudyId,
        sponsor: OrgId,
        code: StudyCode,
        title: DisplayName,
        time_zone: TzName,
    },
    CreateSite {
        study: StudyId,
        id: SiteId,
        code: SiteCode,
        name: DisplayName,
        country: CountryCode,
        time_zone: TzName,
    },
    CreateSubject {
        study: StudyId,
        id: SubjectId,
        site: SiteId,
        screening_number: ScreeningNumber,
    },
    SetSubjectStatus {
        study: StudyId,
        id: SubjectId,
        status: SubjectStatus,
    },
    /// Saves captured values for a subject; `None` clears an item.
    SaveItems {
        study: StudyId,
        subject: SubjectId,
        values: Vec<(String, Option<String>)>,
    },
    CreateUser(Box<NewUser>),
    SetPassword {
        user: UserId,
        password_hash: String,
        must_change: bool,
    },
    LockUser {
        user: UserId,
    },
    /// Enables (with a base32 secret) or disables the user's TOTP second factor.
    SetTotp {
        user: UserId,
        secret: Option<String>,
    },
    UnlockUser {
        user: UserId,
    },
    GrantRole {
        id: RoleGrantId,
        user: UserId,
        role: Role,
        study: Option<StudyId>,
        site: Option<SiteId>,
    },
    RevokeRole {
        id: RoleGrantId,
    },
    /// A sign-in attempt and its outcome; failures count towards lockout.
    SignIn {
        user: UserId,
        outcome: SignInOutcome,
        lockout_after: u32,
    },
    /// A machine client's token; only its SHA-256 is stored.
    IssueApiToken {
        id: trellis_domain::ApiTokenId,
        user: UserId,
        name: String,
        token_hash: [u8; 32],
    },
    /// An event with no table of its own (sign-out, API token issue, configuration change, ...).
    SecurityEvent {
        kind: String,
        detail: String,
    },
    /// Adds a metadata version (a study definition in ODM 1.3.2: one `Study` holding this
    /// one `MetaDataVersion`). Versions are immutable; an amendment is a new version.
    AddMetadataVersion {
        study: StudyId,
        /// The ODM `Study/@OID`; every version of a study has the same one.
        study_oid: String,
        oid: String,
        name: String,
        odm: String,
    },
    /// Puts a subject's case report forms on a metadata version: at enrolment, or moving
    /// to an amendment's version (a move needs a reason; captured data are kept).
    AssignMetadataVersion {
        study: StudyId,
        subject: SubjectId,
        oid: String,
    },
    /// Opens a query on an item: by an edit check (`check_id`) or by a person.
    OpenQuery {
        study: StudyId,
        id: trellis_domain::QueryId,
        subject: SubjectId,
        item_key: String,
        check_id: Option<String>,
        text: String,
    },
    /// Answers, closes or re-opens a query, with a message.
    UpdateQuery {
        study: StudyId,
        id: trellis_domain::QueryId,
        action: QueryAction,
        text: String,
    },
    /// Marks the current value of an item as verified against source documents, or
    /// withdraws the verification.
    VerifyItem {
        study: StudyId,
        subject: SubjectId,
        item_key: String,
        verified: bool,
    },
    /// Freezes or locks data, or lifts it (`state: None`, which needs a reason): a form
    /// instance (`scope`: `EVENT[n]/FORM[n]`), a subject's casebook (`scope` empty) or,
    /// without a subject, the whole study.
    SetLock {
        study: StudyId,
        subject: Option<SubjectId>,
        scope: String,
        state: Option<LockState>,
    },
    /// Sets the study's targeted source data verification plan (its canonical text, see
    /// `trellis_edc::sdv`); changing an existing plan needs a reason.
    SetSdvPlan {
        study: StudyId,
        plan: String,
    },
    Sign {
        study: StudyId,
        id: SignatureId,
        signer: UserId,
        printed_name: String,
        meaning: SignatureMeaning,
        entity_type: String,
        entity_id: String,
        content_hash: [u8; 32],
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInOutcome {
    Success,
    Failure,
}

#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: UserId,
    pub username: Username,
    pub display_name: DisplayName,
    pub email: Option<Email>,
    pub org: OrgId,
    pub time_zone: TzName,
    pub locale: String,
    pub password_hash: String,
    pub must_change_password: bool,
}

impl Mutation {
    /// The chain this mutation's audit entries join.
    pub fn chain(&self) -> Chain {
        match self {
            Mutation::CreateStudy { id, .. } => Chain::Study(*id),
            Mutation::CreateSite { study, .. }
            | Mutation::CreateSubject { study, .. }
            | Mutation::SetSubjectStatus { study, .. }
            | Mutation::SaveItems { study, .. }
            | Mutation::AddMetadataVersion { study, .. }
            | Mutation::AssignMetadataVersion { study, .. }
            | Mutation::OpenQuery { study, .. }
            | Mutation::UpdateQuery { study, .. }
            | Mutation::VerifyItem { study, .. }
            | Mutation::SetLock { study, .. }
            | Mutation::SetSdvPlan { study, .. }
            | Mutation::Sign { study, .. } => Chain::Study(*study),
            Mutation::CreateOrganization { .. }
            | Mutation::CreateUser(_)
            | Mutation::SetPassword { .. }
            | Mutation::LockUser { .. }
            | Mutation::SetTotp { .. }
            | Mutation::UnlockUser { .. }
            | Mutation::GrantRole { .. }
            | Mutation::RevokeRole { .. }
            | Mutation::SignIn { .. }
            | Mutation::IssueApiToken { .. }
            | Mutation::SecurityEvent { .. } => Chain::Installation,
        }
    }
}

/// Where the audit entries of a committed request landed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    pub entries: Vec<(Chain, u64)>,
    pub committed_at: Option<UtcMicros>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub kind: OrgKind,
    pub name: String,
    pub created_at: UtcMicros,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Study {
    pub id: StudyId,
    pub sponsor: OrgId,
    pub code: String,
    pub title: String,
    pub time_zone: TzName,
    pub created_at: UtcMicros,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub study: StudyId,
    pub id: SiteId,
    pub code: String,
    pub name: String,
    pub country: String,
    pub time_zone: TzName,
    pub created_at: UtcMicros,
}

/// A subject with what opening one of its forms needs, read in one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectContext {
    pub subject: Subject,
    /// The metadata version its forms follow: the assigned one, else the study's first
    /// (`None` while the study has no definition).
    pub version: Option<String>,
    /// The time zone of the subject's site (dates in edit checks are the site's dates).
    pub site_time_zone: Option<TzName>,
}

/// What a form save reads before it writes, in one statement: the subject with its
/// version and site zone, its item values (sorted by key) and its queries without their
/// threads (by opening time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectForm {
    pub context: SubjectContext,
    pub values: Vec<(String, Option<String>)>,
    pub queries: Vec<QueryRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub study: StudyId,
    pub id: SubjectId,
    pub site: SiteId,
    pub screening_number: String,
    pub status: SubjectStatus,
    pub created_at: UtcMicros,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub org: OrgId,
    pub time_zone: TzName,
    pub locale: String,
    pub password_hash: String,
    pub password_changed_at: UtcMicros,
    pub must_change_password: bool,
    pub failed_sign_ins: u32,
    pub locked_at: Option<UtcMicros>,
    /// Base32 TOTP secret when the second factor is enabled.
    pub totp_secret: Option<String>,
    pub created_at: UtcMicros,
}

/// What an authenticated request needs to know about its user, read in one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub user: User,
    /// The kind of the user's organization (`None` only if the row is missing).
    pub org_kind: Option<OrgKind>,
    /// All the user's grants, revoked ones included, oldest first.
    pub grants: Vec<RoleGrant>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleGrant {
    pub id: RoleGrantId,
    pub user: UserId,
    pub role: Role,
    pub study: Option<StudyId>,
    pub site: Option<SiteId>,
    pub granted_at: UtcMicros,
    pub revoked_at: Option<UtcMicros>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub token_hash: [u8; 32],
    pub user: UserId,
    pub csrf_token: String,
    pub created_at: UtcMicros,
    pub last_seen_at: UtcMicros,
    pub absolute_expires_at: UtcMicros,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureRow {
    pub study: StudyId,
    pub id: SignatureId,
    pub signer: UserId,
    pub printed_name: String,
    pub meaning: SignatureMeaning,
    pub signed_at: UtcMicros,
    pub entity_type: String,
    pub entity_id: String,
    pub content_hash: [u8; 32],
}

/// A study definition version as stored (the ODM text is read separately).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataVersionRow {
    pub study: StudyId,
    pub oid: String,
    pub study_oid: String,
    pub name: String,
    /// Order of import: 1 for the first version.
    pub seq: u32,
    pub odm_sha256: [u8; 32],
    pub created_at: UtcMicros,
}

/// How far data are closed to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockState {
    /// Reviewed and complete: no entry until unfrozen.
    Frozen,
    /// Ready for analysis: no change until unlocked.
    Locked,
}

impl LockState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Frozen => "frozen",
            Self::Locked => "locked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "frozen" => Some(Self::Frozen),
            "locked" => Some(Self::Locked),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRow {
    /// `None`: the whole study.
    pub subject: Option<SubjectId>,
    /// A form instance `EVENT[n]/FORM[n]`, or empty for the whole casebook (or study).
    pub scope: String,
    pub state: LockState,
    pub changed_by: Uuid,
    pub changed_at: UtcMicros,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueryAction {
    /// The site answers (open → answered).
    Answer,
    /// Monitor or data manager closes (open or answered → closed).
    Close,
    /// Re-opens a closed or answered query (→ open).
    Reopen,
}

impl QueryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Close => "close",
            Self::Reopen => "reopen",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueryStatus {
    Open,
    Answered,
    Closed,
}

impl QueryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Answered => "answered",
            Self::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "answered" => Self::Answered,
            "closed" => Self::Closed,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryMessage {
    pub seq: u32,
    /// `open`, `answer`, `close` or `reopen`.
    pub action: String,
    pub author_id: Uuid,
    pub author_name: String,
    pub at: UtcMicros,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryRow {
    pub study: StudyId,
    pub id: trellis_domain::QueryId,
    pub subject: SubjectId,
    pub item_key: String,
    /// The edit check that opened the query; `None` for a manual query.
    pub check_id: Option<String>,
    pub status: QueryStatus,
    pub opened_by: Uuid,
    pub opened_at: UtcMicros,
    pub updated_at: UtcMicros,
    pub messages: Vec<QueryMessage>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdvPlanRow {
    /// The plan's canonical text.
    pub plan: String,
    pub changed_by: Uuid,
    pub changed_at: UtcMicros,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationRow {
    pub subject: SubjectId,
    pub item_key: String,
    /// The value that was verified; the verification is stale once the value differs.
    pub verified_value: Option<String>,
    pub verified_by: Uuid,
    pub verified_at: UtcMicros,
}

/// Filters for reading the audit trail; all optional and combined with AND.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub chain: Option<Chain>,
    pub site: Option<Uuid>,
    pub subject: Option<Uuid>,
    pub actor: Option<Uuid>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub from: Option<UtcMicros>,
    pub to: Option<UtcMicros>,
    /// Resume after this (recorded_at, entry_id) position: cursor pagination.
    pub after: Option<(i64, Uuid)>,
    pub limit: u32,
}
