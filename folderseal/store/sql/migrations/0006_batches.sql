-- One name per concept: what the store called a job is a batch, as everywhere else.
ALTER TABLE jobs RENAME TO batches;
DROP INDEX jobs_due;
CREATE INDEX batches_due ON batches (next_attempt_at);
ALTER TABLE events RENAME COLUMN job_id TO batch_id;
DROP INDEX events_by_job;
CREATE INDEX events_by_batch ON events (batch_id);
