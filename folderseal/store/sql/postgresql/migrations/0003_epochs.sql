-- Fleet mode: each acquisition of a batch's lease bumps its epoch, and each event a
-- lease holder records carries the epoch it held. (SQLite's migration 8.)
ALTER TABLE batches ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN epoch INTEGER;
