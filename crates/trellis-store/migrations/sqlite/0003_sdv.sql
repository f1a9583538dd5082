-- Targeted source data verification: one plan per study, kept as the canonical text of
-- trellis-edc's SdvPlan (critical items and forms, first subjects per site, sample
-- percentage and seed). Its history is in the audit trail (old and new text).
CREATE TABLE sdv_plans (
    study_id    BLOB    NOT NULL PRIMARY KEY REFERENCES studies (study_id),
    plan        TEXT    NOT NULL,
    changed_by  BLOB    NOT NULL,
    changed_at  INTEGER NOT NULL
) STRICT;
