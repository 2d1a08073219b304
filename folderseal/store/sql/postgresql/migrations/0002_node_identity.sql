-- Fleet mode: which running instance owns a node name (a new random id at each start),
-- the folderseal version it runs and the newest migration it knows. A second instance
-- may take the name only when the first stopped beating. (SQLite's migration 7.)
ALTER TABLE nodes ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 0;
