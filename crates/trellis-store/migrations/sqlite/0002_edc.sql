-- Electronic data capture: study definitions as ODM metadata versions, and the version
-- each subject's case report forms follow. Captured values stay in item_values, keyed by
-- their item address EVENT[n]/FORM[n]/GROUP[n]/ITEM.

-- One ODM 1.3.2 document per (study, metadata version), kept verbatim and immutable: an
-- amendment is a new version, never an edit. Its SHA-256 is in the audit trail.
CREATE TABLE metadata_versions (
    study_id    BLOB    NOT NULL REFERENCES studies (study_id),
    oid         TEXT    NOT NULL,
    study_oid   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    odm         TEXT    NOT NULL,
    odm_sha256  BLOB    NOT NULL CHECK (length(odm_sha256) = 32),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (study_id, oid),
    UNIQUE (study_id, seq)
) STRICT;

CREATE TRIGGER metadata_versions_no_update BEFORE UPDATE ON metadata_versions
BEGIN SELECT RAISE(ABORT, 'metadata_versions are immutable'); END;
CREATE TRIGGER metadata_versions_no_delete BEFORE DELETE ON metadata_versions
BEGIN SELECT RAISE(ABORT, 'metadata_versions are immutable'); END;

CREATE TABLE subject_versions (
    study_id     BLOB    NOT NULL,
    subject_id   BLOB    NOT NULL,
    oid          TEXT    NOT NULL,
    assigned_at  INTEGER NOT NULL,
    PRIMARY KEY (study_id, subject_id),
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id),
    FOREIGN KEY (study_id, oid) REFERENCES metadata_versions (study_id, oid)
) STRICT;

-- Queries on captured items: opened by an edit check (check_id) or by a person,
-- answered by the site, closed or re-opened; the thread is in query_messages.
CREATE TABLE queries (
    study_id    BLOB    NOT NULL,
    query_id    BLOB    NOT NULL,
    subject_id  BLOB    NOT NULL,
    item_key    TEXT    NOT NULL,
    check_id    TEXT,
    status      TEXT    NOT NULL CHECK (status IN ('open', 'answered', 'closed')),
    opened_by   BLOB    NOT NULL,
    opened_at   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (study_id, query_id),
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id)
) STRICT;
CREATE INDEX queries_item ON queries (study_id, subject_id, item_key);

CREATE TABLE query_messages (
    study_id     BLOB    NOT NULL,
    query_id     BLOB    NOT NULL,
    seq          INTEGER NOT NULL,
    action       TEXT    NOT NULL CHECK (action IN ('open', 'answer', 'close', 'reopen')),
    author_id    BLOB    NOT NULL,
    author_name  TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    text         TEXT    NOT NULL,
    PRIMARY KEY (study_id, query_id, seq),
    FOREIGN KEY (study_id, query_id) REFERENCES queries (study_id, query_id)
) STRICT;

-- Source data verification: who verified which value of an item, when. A later change
-- of the value makes the verification stale (the verified value no longer matches).
CREATE TABLE item_verifications (
    study_id        BLOB    NOT NULL,
    subject_id      BLOB    NOT NULL,
    item_key        TEXT    NOT NULL,
    verified_value  TEXT,
    verified_by     BLOB    NOT NULL,
    verified_at     INTEGER NOT NULL,
    PRIMARY KEY (study_id, subject_id, item_key),
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id)
) STRICT;

-- Review states. A row freezes or locks data: scope is a form instance
-- (EVENT[n]/FORM[n]) or '' for the subject's whole casebook; the nil subject id with
-- scope '' is the whole study. Frozen or locked data cannot change; lifting either needs
-- a reason. History is in the audit trail.
CREATE TABLE data_locks (
    study_id    BLOB    NOT NULL,
    subject_id  BLOB    NOT NULL,
    scope       TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('frozen', 'locked')),
    changed_by  BLOB    NOT NULL,
    changed_at  INTEGER NOT NULL,
    PRIMARY KEY (study_id, subject_id, scope),
    FOREIGN KEY (study_id) REFERENCES studies (study_id)
) STRICT;
