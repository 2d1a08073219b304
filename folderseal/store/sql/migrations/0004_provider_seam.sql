-- The provider seam (issue 9): decisions read columns, never an event's text.
-- A batch counts the remote batches it abandoned before accept, by cause: an answer
-- the network lost (no limit but a safety cap) or a provider showing something other
-- than what was sent (MAX_RECREATES applies).
ALTER TABLE jobs ADD COLUMN abandoned_lost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN abandoned_mismatch INTEGER NOT NULL DEFAULT 0;
-- The remote batch an upload was last about to be sent to, and when (first) it was.
ALTER TABLE jobs ADD COLUMN upload_sent_remote TEXT;
ALTER TABLE jobs ADD COLUMN upload_sent_at REAL;
-- How far the provider says a started batch is (0-100), when it says.
ALTER TABLE jobs ADD COLUMN progress REAL;
-- What the provider answered for a file, as JSON {batch, id, checksum} (id null: sent,
-- the answer not yet in): the latest note, whatever remote batch it was for.
ALTER TABLE files ADD COLUMN remote_document TEXT;
-- An upload noted before this version lives in an event: carry it over, so a batch
-- waiting in CREATED never gets a second upload.
UPDATE jobs SET
    upload_sent_remote = (SELECT e.detail FROM events e WHERE e.job_id = jobs.id
                          AND e.kind = 'batch.upload_sent' ORDER BY e.id DESC LIMIT 1),
    upload_sent_at = (SELECT min(e.at) FROM events e WHERE e.job_id = jobs.id
                      AND e.kind = 'batch.upload_sent'
                      AND e.detail = (SELECT l.detail FROM events l WHERE l.job_id = jobs.id
                                      AND l.kind = 'batch.upload_sent'
                                      ORDER BY l.id DESC LIMIT 1))
WHERE EXISTS (SELECT 1 FROM events e WHERE e.job_id = jobs.id
              AND e.kind = 'batch.upload_sent');
