-- Trellis foundation schema (PostgreSQL). Times are UTC microseconds since the Unix epoch.
-- Study-owned tables carry study_id in their primary key so that the PostgreSQL
-- schema can later be distributed by study.

CREATE TABLE organizations (
    org_id      UUID    NOT NULL PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('cro', 'sponsor', 'institution')),
    name        TEXT    NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    user_id              UUID    NOT NULL PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE,
    display_name         TEXT    NOT NULL,
    email                TEXT,
    org_id               UUID    NOT NULL REFERENCES organizations (org_id),
    time_zone            TEXT    NOT NULL,
    locale               TEXT    NOT NULL,
    password_hash        TEXT    NOT NULL,
    password_changed_at  BIGINT NOT NULL,
    must_change_password BOOLEAN NOT NULL,
    failed_sign_ins      BIGINT NOT NULL DEFAULT 0,
    locked_at            BIGINT,
    totp_secret          TEXT,
    created_at           BIGINT NOT NULL
);

CREATE TABLE studies (
    study_id    UUID    NOT NULL PRIMARY KEY,
    sponsor_id  UUID    NOT NULL REFERENCES organizations (org_id),
    code        TEXT    NOT NULL UNIQUE,
    title       TEXT    NOT NULL,
    time_zone   TEXT    NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE sites (
    study_id    UUID    NOT NULL REFERENCES studies (study_id),
    site_id     UUID    NOT NULL,
    code        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    country     TEXT    NOT NULL,
    time_zone   TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (study_id, site_id),
    UNIQUE (study_id, code)
);

CREATE TABLE subjects (
    study_id          UUID    NOT NULL,
    subject_id        UUID    NOT NULL,
    site_id           UUID    NOT NULL,
    screening_number  TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (study_id, subject_id),
    UNIQUE (study_id, screening_number),
    FOREIGN KEY (study_id, site_id) REFERENCES sites (study_id, site_id)
);

-- Current value of every captured data item; history lives in the audit trail.
CREATE TABLE item_values (
    study_id    UUID    NOT NULL,
    subject_id  UUID    NOT NULL,
    item_key    TEXT    NOT NULL,
    value       TEXT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (study_id, subject_id, item_key),
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id)
);

CREATE TABLE role_grants (
    grant_id    UUID    NOT NULL PRIMARY KEY,
    user_id     UUID    NOT NULL REFERENCES users (user_id),
    role        TEXT    NOT NULL,
    study_id    UUID,
    site_id     UUID,
    granted_at  BIGINT NOT NULL,
    granted_by  UUID    NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX role_grants_user ON role_grants (user_id);

CREATE TABLE sessions (
    token_hash          BYTEA    NOT NULL PRIMARY KEY,
    user_id             UUID    NOT NULL REFERENCES users (user_id),
    csrf_token          TEXT    NOT NULL,
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_id    UUID    NOT NULL PRIMARY KEY,
    token_hash  BYTEA    NOT NULL UNIQUE,
    user_id     UUID    NOT NULL REFERENCES users (user_id),
    name        TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE signatures (
    study_id      UUID    NOT NULL,
    signature_id  UUID    NOT NULL,
    signer_id     UUID    NOT NULL REFERENCES users (user_id),
    printed_name  TEXT    NOT NULL,
    meaning       TEXT    NOT NULL,
    signed_at     BIGINT NOT NULL,
    entity_type   TEXT    NOT NULL,
    entity_id     TEXT    NOT NULL,
    content_hash  BYTEA    NOT NULL,
    PRIMARY KEY (study_id, signature_id)
);

-- The audit trail: one hash chain per study plus the installation chain (nil id).
CREATE TABLE audit_entries (
    chain_id     UUID    NOT NULL,
    seq          BIGINT NOT NULL CHECK (seq >= 1),
    entry_id     UUID    NOT NULL UNIQUE,
    recorded_at  BIGINT NOT NULL,
    actor_id     UUID    NOT NULL,
    actor_name   TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    entity_type  TEXT    NOT NULL,
    entity_id    TEXT    NOT NULL,
    field        TEXT,
    old_value    TEXT,
    new_value    TEXT,
    reason       TEXT,
    request_id   TEXT,
    site_id      UUID,
    subject_id   UUID,
    prev_hash    BYTEA   NOT NULL CHECK (length(prev_hash) = 32),
    hash         BYTEA   NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (chain_id, seq)
);
CREATE INDEX audit_entries_time ON audit_entries (recorded_at);
CREATE INDEX audit_entries_entity ON audit_entries (entity_type, entity_id);
CREATE INDEX audit_entries_actor ON audit_entries (actor_id);

CREATE FUNCTION trellis_reject_change() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE TRIGGER audit_entries_immutable BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION trellis_reject_change();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION trellis_reject_change();

CREATE TABLE chain_heads (
    chain_id  UUID    NOT NULL PRIMARY KEY,
    seq       BIGINT NOT NULL,
    hash      BYTEA   NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE checkpoints (
    chain_id    UUID    NOT NULL,
    seq         BIGINT NOT NULL,
    head_hash   BYTEA    NOT NULL,
    created_at  BIGINT NOT NULL,
    key_id      TEXT    NOT NULL,
    signature   BYTEA    NOT NULL,
    PRIMARY KEY (chain_id, seq, created_at)
);
CREATE TRIGGER checkpoints_immutable BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION trellis_reject_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION trellis_reject_change();
