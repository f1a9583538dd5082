-- The audit filter is one statement with optional filters (`$n IS NULL OR col = $n`), which
-- SQLite plans once without knowing which filters are set: it reads in recorded_at order
-- and never uses the entity or actor index. Those two cost every save page writes, the
-- entity index most: each item's history is a cluster of its own, so a save of 20 items
-- touched 20 leaf pages (about 34 of the 39 WAL frames of a 20-item form save).
-- PostgreSQL plans each execution with its values (custom plans) and keeps both indexes.
DROP INDEX audit_entries_entity;
DROP INDEX audit_entries_actor;
