-- The status page charts files delivered per minute over the last hour: find them by
-- (folder, state, updated_at). The new index also serves every (folder, state) query.
CREATE INDEX files_by_state_and_time ON files (folder, state, updated_at);
DROP INDEX files_by_state;
