-- item_values is only ever reached by its key (study, subject, item key): stored in key
-- order without a separate rowid table, an upsert touches one B-tree instead of two.
CREATE TABLE item_values_by_key (
    study_id    BLOB    NOT NULL,
    subject_id  BLOB    NOT NULL,
    item_key    TEXT    NOT NULL,
    value       TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (study_id, subject_id, item_key),
    FOREIGN KEY (study_id, subject_id) REFERENCES subjects (study_id, subject_id)
) STRICT, WITHOUT ROWID;
INSERT INTO item_values_by_key (study_id, subject_id, item_key, value, updated_at)
    SELECT study_id, subject_id, item_key, value, updated_at FROM item_values;
DROP TABLE item_values;
ALTER TABLE item_values_by_key RENAME TO item_values;
