-- Fleet mode: how many times a batch was taken over, each acquisition of it while
-- another holder's lease had lapsed. (SQLite's migration 10.)
ALTER TABLE batches ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0;
