-- PostgreSQL's versions of the shared queries (../queries.sql) that its SQL must write
-- otherwise; every other query runs as written there. Loaded by postgres.py, which turns
-- :name into psycopg's %(name)s and, for a store on the database's clock, each :now into
-- clock_timestamp() as epoch seconds (never now(): that is frozen for a transaction).
-- A parameter that may be None and is not compared with a column needs a CAST: the
-- server cannot tell the type of a bare NULL.

-- name: forgive_attempt
UPDATE files SET attempts = greatest(attempts - 1, 0), updated_at = :now
WHERE id = :id AND batch_id = :batch_id AND state = 'BATCHED';

-- name: known_file_ids
SELECT id FROM files WHERE id IN (SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)));

-- name: recent_claims
-- Ids begin with their claim time in hex milliseconds (new_id): the primary key finds them.
SELECT id, source, claimed_at FROM files
WHERE id >= :since_id AND folder = :folder AND claimed_at > :since;

-- name: hold_batch
-- Nobody took the batch over from this holder, and the row stays locked until the write
-- commits: no node takes the batch over between this check and the write. FOR NO KEY
-- UPDATE is the lock the write's own UPDATE of the batch takes: a weaker one first, then
-- this one, could deadlock with a lease renewal waiting in between.
SELECT id FROM batches WHERE id = :id AND claimed_by = :holder
FOR NO KEY UPDATE;

-- name: try_lock_batch
SELECT id FROM batches WHERE id = :id
FOR NO KEY UPDATE SKIP LOCKED;

-- name: acquire_batch
-- :holder is "<node>/<token>", new for every acquisition; :busy lists the batches other
-- threads of this process are working on. A batch still claimed when it is taken (its
-- lease lapsed: a holder that died or paused) counts a takeover; a node's own restart
-- releases its leases first (release_node_leases), so that is none. SKIP LOCKED: nodes
-- taking batches at once each get another one instead of waiting for each other's row;
-- the row is checked again once locked, so a batch another node has just taken is
-- passed over.
UPDATE batches SET claimed_by = :holder, lease_until = :now + :seconds, epoch = epoch + 1,
                   takeovers = takeovers + CASE WHEN claimed_by IS NULL THEN 0 ELSE 1 END
WHERE id = (
    SELECT id FROM batches
    WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= :now
      AND (claimed_by IS NULL OR lease_until <= :now)
      AND id NOT IN (SELECT jsonb_array_elements_text(CAST(:busy AS jsonb)))
    ORDER BY next_attempt_at, created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: note_upload
UPDATE batches SET upload_sent_at = CASE WHEN upload_sent_remote IS NOT DISTINCT FROM
                                                CAST(:remote_id AS text)
                                      THEN upload_sent_at ELSE :now END,
                upload_sent_remote = :remote_id, updated_at = :now
WHERE id = :id AND state = 'CREATED' AND claimed_by = :holder AND lease_until > :now;

-- name: abandon_batch
-- A remote batch abandoned before accept: the batch starts again in a new one, its
-- attempts from 0 unless kept (past MAX_LOST_ANSWERS each abandon pauses by them).
UPDATE batches SET state = 'CREATED', remote_id = :remote_id, error_code = NULL,
                attempts = CASE WHEN :keep_attempts <> 0 THEN attempts ELSE 0 END,
                error_message = NULL, abandoned_lost = abandoned_lost + :lost,
                abandoned_mismatch = abandoned_mismatch + :mismatch, updated_at = :now
WHERE id = :id AND state = :from_state AND claimed_by = :holder AND lease_until > :now;

-- name: records_failed
-- Delivered (model.DELIVERED), but the provider reports records of the file it could not
-- load (Centrapay's report). Compared as SQLite compares json_extract's value: true is
-- 1, false 0, and text, an object or a list is greater than any number.
SELECT id, source, updated_at, bad FROM (
    SELECT id, source, updated_at,
           CAST(result AS jsonb) #> '{provider_block,report,errorCount}' AS bad FROM files
    WHERE folder = :folder AND state IN ('PUBLISHED', 'DONE')
) delivered
WHERE CASE jsonb_typeof(bad) WHEN 'number' THEN CAST(bad AS numeric) > 0
                             WHEN 'boolean' THEN bad = CAST('true' AS jsonb)
                             WHEN 'null' THEN false ELSE bad IS NOT NULL END
ORDER BY updated_at DESC LIMIT :limit;

-- name: suspected_fragments
SELECT e.file_id, f.source, e.at, e.detail FROM events e
JOIN files f ON f.id = e.file_id
WHERE e.kind = 'file.fragment_suspected' AND e.at > :since AND f.folder = :folder
ORDER BY e.at DESC;

-- name: changes_per_minute
-- :until is the caller's "now"; trunc() as SQLite's CAST AS INTEGER (a cast rounds here).
SELECT CAST(trunc((:until - updated_at) / 60) AS INTEGER) AS ago, count(*) FROM files
WHERE folder = :folder AND state = :state AND updated_at > :since
GROUP BY ago;

-- name: events
SELECT * FROM events
WHERE (CAST(:batch_id AS text) IS NULL OR batch_id = :batch_id)
  AND (CAST(:file_id AS text) IS NULL OR file_id = :file_id)
  AND (CAST(:kind AS text) IS NULL OR kind = :kind)
ORDER BY id;
