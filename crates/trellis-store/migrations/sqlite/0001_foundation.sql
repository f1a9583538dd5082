-- Trellis foundation schema (SQLite). Times are UTC microseconds since the Unix epoch.
-- Study-owned tables carry study_id in their primary key so that the PostgreSQL
-- schema can later be distributed by study.

CREATE TABLE organizations (
    org_id      BLOB    NOT NULL PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('cro', 'sponsor', 'institution')),
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    user_id              BLOB    NOT NULL PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE,
    display_name         TEXT    NOT NULL,
    email                TEXT,
    org_id               BLOB    NOT NULL REFERENCES organizations (org_id),
    time_zone            TEXT    NOT NULL,
    locale               TEXT    NOT NULL,
    password_hash        TEXT    NOT NULL,
    password_changed_at  INTEGER NOT NULL,
    must_change_password INTEGER NOT NULL,
    failed_sign_ins      INTEGER NOT NULL DEFAULT 0,
    locked_at            INTEGER,
    totp_secret          TEXT,
    created_at           INTEGER NOT NULL
) STRICT;

CREATE TABLE studies (
    study_id    BLOB    NOT NULL PRIMARY KEY,
    sponsor_id  BLOB    NOT NULL REFERENCES organizations (org_id),
    code        TEXT    NOT NULL UNIQUE,
    title       TEXT    NOT NULL,
    time_zone   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE sites (
    study_id    BLOB    NOT NULL REFERENCES studies (study_id),
    site_id     BLOB    NOT NULL,
    code        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    country     TEXT    NOT NULL,
    time_zone   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (study_id, site_id),
    UNIQUE (study_id, code)
) STRICT;

CREATE TABLE subjects (
    study_id          BLOB    NOT NULL,
    subject_id        BLOB    NOT NULL,
    site_id           BLOB    NOT NULL,
    screening_number  TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (study_id, subject_id),
    UNIQUE (study_id, screening_number),
    FOREIGN KEY (study_id, site_id) REFERENCES sites (study_id, site_id)
) STRICT;

-- Current value of every captured data item; history lives in the audit trail.
CREATE TABLE item_values (
    study_id    BLOB    NOT NULL,
    subject_id  BLOB    NOT NULL,
    item_key    TEXT    NOT NULL,
    value       TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (study_id, subject_id, item_key),
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id)
) STRICT;

CREATE TABLE role_grants (
    grant_id    BLOB    NOT NULL PRIMARY KEY,
    user_id     BLOB    NOT NULL REFERENCES users (user_id),
    role        TEXT    NOT NULL,
    study_id    BLOB,
    site_id     BLOB,
    granted_at  INTEGER NOT NULL,
    granted_by  BLOB    NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX role_grants_user ON role_grants (user_id);

CREATE TABLE sessions (
    token_hash          BLOB    NOT NULL PRIMARY KEY,
    user_id             BLOB    NOT NULL REFERENCES users (user_id),
    csrf_token          TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE api_tokens (
    token_id    BLOB    NOT NULL PRIMARY KEY,
    token_hash  BLOB    NOT NULL UNIQUE,
    user_id     BLOB    NOT NULL REFERENCES users (user_id),
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

CREATE TABLE signatures (
    study_id      BLOB    NOT NULL,
    signature_id  BLOB    NOT NULL,
    signer_id     BLOB    NOT NULL REFERENCES users (user_id),
    printed_name  TEXT    NOT NULL,
    meaning       TEXT    NOT NULL,
    signed_at     INTEGER NOT NULL,
    entity_type   TEXT    NOT NULL,
    entity_id     TEXT    NOT NULL,
    content_hash  BLOB    NOT NULL,
    PRIMARY KEY (study_id, signature_id)
) STRICT;

-- The audit trail: one hash chain per study plus the installation chain (nil id).
CREATE TABLE audit_entries (
    chain_id     BLOB    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq >= 1),
    entry_id     BLOB    NOT NULL UNIQUE,
    recorded_at  INTEGER NOT NULL,
    actor_id     BLOB    NOT NULL,
    actor_name   TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    entity_type  TEXT    NOT NULL,
    entity_id    TEXT    NOT NULL,
    field        TEXT,
    old_value    TEXT,
    new_value    TEXT,
    reason       TEXT,
    request_id   TEXT,
    site_id      BLOB,
    subject_id   BLOB,
    prev_hash    BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash         BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (chain_id, seq)
) STRICT;
CREATE INDEX audit_entries_time ON audit_entries (recorded_at);
CREATE INDEX audit_entries_entity ON audit_entries (entity_type, entity_id);
CREATE INDEX audit_entries_actor ON audit_entries (actor_id);

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;

CREATE TABLE chain_heads (
    chain_id  BLOB    NOT NULL PRIMARY KEY,
    seq       INTEGER NOT NULL,
    hash      BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

CREATE TABLE checkpoints (
    chain_id    BLOB    NOT NULL,
    seq         INTEGER NOT NULL,
    head_hash   BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    key_id      TEXT    NOT NULL,
    signature   BLOB    NOT NULL,
    PRIMARY KEY (chain_id, seq, created_at)
) STRICT;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only'); END;
