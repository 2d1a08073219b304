-- Fleet mode: the node that claimed a file (SQLite's migration 9 says why).
ALTER TABLE files ADD COLUMN node TEXT COLLATE "C";
CREATE INDEX files_unbatched ON files (folder, node, state) WHERE batch_id IS NULL;
