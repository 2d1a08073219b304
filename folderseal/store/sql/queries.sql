-- Every query the store runs, under "-- name:" headers; loaded once by sqlite.py;
-- memory.py answers each name the same way in Python (memory/*_queries.py).
-- Guarded writes name the state they expect and, for batches, the lease: a write that
-- matches zero rows is an error the caller must not ignore.
-- :now is the store's clock; times derived from it are computed here (:now + :seconds),
-- so that a dialect that stamps with the database's own clock computes them on it too.
-- A dialect may override a query in sql/<dialect>/queries.sql.

-- name: get_meta
SELECT value FROM meta WHERE key = :key;

-- name: set_meta
INSERT INTO meta (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: insert_event
INSERT INTO events (at, node, batch_id, file_id, kind, from_state, to_state, detail, epoch)
VALUES (:now, :node, :batch_id, :file_id, :kind, :from_state, :to_state, :detail, :epoch);

-- name: insert_file
-- A claim another node registered first (it took this node's claims folder over while
-- this node was paused) stays that node's: nothing is inserted (rowcount 0).
INSERT INTO files (id, folder, source, state, dev, ino, size, mtime_ns, sha256,
                   seen_at, claimed_at, updated_at, node)
VALUES (:id, :folder, :source, 'CLAIMED', :dev, :ino, :size, :mtime_ns, :sha256,
        :seen_at, :now, :now, :node)
ON CONFLICT (id) DO NOTHING;

-- name: get_file
SELECT * FROM files WHERE id = :id;

-- name: files_in_state
SELECT * FROM files WHERE folder = :folder AND state = :state ORDER BY claimed_at, id;

-- name: unfinished_claims
SELECT * FROM files
WHERE folder = :folder AND node = :node AND batch_id IS NULL
  AND ((state = 'CLAIMED' AND sha256 IS NULL) OR state = 'REJECTED');

-- name: own_claims
-- The hashed claims of one node, the oldest :limit: what it may batch next.
SELECT * FROM files
WHERE folder = :folder AND node = :node AND state = 'CLAIMED' AND batch_id IS NULL
  AND sha256 IS NOT NULL
ORDER BY claimed_at, id
LIMIT :limit;

-- name: adopt_claims
-- The unbatched claims of every node that no longer beats (no heartbeat within
-- :alive_seconds on the store's clock, or no row at all), and those of no node (claimed
-- before migration 9), become :node's in one statement: a node that comes back finds
-- them gone from its lists, and its guarded writes on them match nothing.
UPDATE files SET node = :node
WHERE folder = :folder AND batch_id IS NULL AND state IN ('CLAIMED', 'REJECTED')
  AND (node IS NULL OR (node <> :node AND node NOT IN (
        SELECT node FROM nodes WHERE heartbeat_at > :now - :alive_seconds)));

-- name: files_of_batch
SELECT * FROM files WHERE batch_id = :batch_id ORDER BY entry;

-- name: failed_files
SELECT * FROM files WHERE state = 'FAILED' ORDER BY updated_at;

-- name: count_in_flight
-- Claimed and not yet delivered (model.NOT_DELIVERED): what max_in_flight_files limits.
SELECT count(*) FROM files
WHERE folder = :folder AND state IN ('CLAIMED', 'BATCHED', 'READY', 'REJECTED');

-- name: count_by_state
SELECT folder, state, count(*) AS n FROM files GROUP BY folder, state;

-- name: recent_claims
-- Ids begin with their claim time in hex milliseconds (new_id), so the primary key finds
-- the recent claims ("+folder" keeps the planner from walking the folder's files by
-- files_by_state_and_time instead); no index on claimed_at needed.
SELECT id, source, claimed_at FROM files
WHERE id >= :since_id AND +folder = :folder AND claimed_at > :since;

-- name: file_ids
SELECT id FROM files WHERE folder = :folder;

-- name: delivered_twin
SELECT id, source FROM files
WHERE folder = :folder AND sha256 = :sha256 AND state IN ('PUBLISHED', 'DONE') AND id != :id
LIMIT 1;

-- name: batch_file
UPDATE files SET state = 'BATCHED', batch_id = :batch_id, entry = :entry, updated_at = :now
WHERE id = :id AND state = 'CLAIMED' AND node = :node;

-- name: begin_attempt
UPDATE files SET attempts = attempts + 1, updated_at = :now
WHERE id = :id AND batch_id = :batch_id AND state = 'BATCHED'
RETURNING attempts;

-- name: forgive_attempt
UPDATE files SET attempts = max(attempts - 1, 0), updated_at = :now
WHERE id = :id AND batch_id = :batch_id AND state = 'BATCHED';

-- name: set_file_state
UPDATE files SET state = :to_state, updated_at = :now
WHERE id = :id AND state = :from_state;

-- name: set_file_result
UPDATE files SET state = :to_state, result = :result, error_code = :error_code,
                 error_message = :error_message, updated_at = :now
WHERE id = :id AND state = :from_state;

-- name: name_taken
SELECT 1 FROM output_names
WHERE folder = :folder AND area = :area AND path = :path AND file_id != :file_id;

-- name: reserve_name
INSERT INTO output_names (folder, area, path, file_id) VALUES (:folder, :area, :path, :file_id);

-- name: release_names
DELETE FROM output_names WHERE file_id = :file_id;

-- name: set_claim_hash
UPDATE files SET sha256 = :sha256, size = :size, mtime_ns = :mtime_ns, updated_at = :now
WHERE id = :id AND state = 'CLAIMED' AND node = :node;

-- name: reject_claim
UPDATE files SET state = 'REJECTED', result = :result, error_code = :error_code,
                 error_message = :error_message, updated_at = :now
WHERE id = :id AND state = 'CLAIMED' AND node = :node;

-- name: set_file_outputs
UPDATE files SET outputs = :outputs, updated_at = :now
WHERE id = :id AND state IN ('READY', 'REJECTED', 'CLAIMED', 'BATCHED');

-- name: insert_batch
INSERT INTO batches (id, folder, provider, state, next_attempt_at, created_at, updated_at)
VALUES (:id, :folder, :provider, 'BATCHED', :now, :now, :now);

-- name: get_batch
SELECT * FROM batches WHERE id = :id;

-- name: open_batch_owners
SELECT folder, provider, count(*) FROM batches WHERE next_attempt_at IS NOT NULL
GROUP BY folder, provider;

-- name: resume_batch
UPDATE batches SET state = :state, next_attempt_at = :now, attempts = 0, claimed_by = NULL,
                lease_until = NULL, updated_at = :now
WHERE id = :id AND state = :from_state;

-- name: known_file_ids
SELECT id FROM files WHERE id IN (SELECT value FROM json_each(:ids));

-- name: all_batch_ids
SELECT id FROM batches;

-- name: acquire_batch
-- :holder is "<node>/<token>", new for every acquisition; :busy lists the batches other
-- threads of this process are working on. A batch still claimed when it is taken (its
-- lease lapsed: a holder that died or paused) counts a takeover; a node's own restart
-- releases its leases first (release_node_leases), so that is none. (The busy ones'
-- leases may have lapsed.)
UPDATE batches SET claimed_by = :holder, lease_until = :now + :seconds, epoch = epoch + 1,
                   takeovers = takeovers + CASE WHEN claimed_by IS NULL THEN 0 ELSE 1 END
WHERE id = (
    SELECT id FROM batches
    WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= :now
      AND (claimed_by IS NULL OR lease_until <= :now)
      AND id NOT IN (SELECT value FROM json_each(:busy))
    ORDER BY next_attempt_at, created_at
    LIMIT 1
)
RETURNING *;

-- name: next_due
SELECT min(next_attempt_at) FROM batches
WHERE next_attempt_at IS NOT NULL AND (claimed_by IS NULL OR lease_until <= :now);

-- name: transition_batch
UPDATE batches SET state = :to_state, attempts = 0, error_code = NULL, error_message = NULL,
                remote_id = coalesce(:remote_id, remote_id), updated_at = :now
WHERE id = :id AND state = :from_state AND claimed_by = :holder AND lease_until > :now;

-- name: set_package
UPDATE batches SET package_sha256 = :package_sha256, package_bytes = :package_bytes,
                updated_at = :now
WHERE id = :id AND state = 'BATCHED' AND claimed_by = :holder AND lease_until > :now;

-- name: fail_batch
UPDATE batches SET state = 'FAILED', failed_step = :from_state, error_code = :error_code,
                error_message = :error_message, updated_at = :now
WHERE id = :id AND state = :from_state AND claimed_by = :holder AND lease_until > :now;

-- name: hold_batch
-- The first statement of each write a batch's step makes (StoreBase.holding): nobody took
-- the batch over from this holder (its token is new at each taking, so it stands for the
-- epoch too), and nobody can until the write ends: SQLite's BEGIN IMMEDIATE keeps every
-- other writer out, PostgreSQL locks the row. A lease that lapsed with nobody taking it
-- is still this holder's, as renew_lease has it: the write then goes on.
SELECT id FROM batches WHERE id = :id AND claimed_by = :holder;

-- name: try_lock_batch
-- The lease keeper's renewal does not wait for a batch whose row a step's write holds
-- (that holder is at work): no row here, and it is renewed on the next round.
SELECT id FROM batches WHERE id = :id;

-- name: renew_lease
-- A lapsed lease may be renewed by its holder as long as nobody took it over.
UPDATE batches SET lease_until = :now + :seconds
WHERE id = :id AND claimed_by = :holder
RETURNING lease_until;

-- name: release_batch
UPDATE batches SET claimed_by = NULL, lease_until = NULL, next_attempt_at = :next_attempt_at,
                updated_at = :now
WHERE id = :id AND claimed_by = :holder;

-- name: postpone_batch
UPDATE batches SET claimed_by = NULL, lease_until = NULL, next_attempt_at = :now + :delay,
                attempts = :attempts, error_code = :error_code,
                error_message = :error_message, updated_at = :now
WHERE id = :id AND claimed_by = :holder AND lease_until > :now
RETURNING next_attempt_at;

-- name: reopen_batch
UPDATE batches SET state = :to_state, next_attempt_at = :now, attempts = 0, failed_step = NULL,
                error_code = NULL, error_message = NULL, updated_at = :now
WHERE id = :id AND state = :from_state AND state IN ('FAILED', 'CLEANED')
      AND claimed_by IS NULL;

-- name: reopen_file
UPDATE files SET state = 'BATCHED', result = NULL, outputs = NULL, error_code = NULL,
                 error_message = NULL, updated_at = :now
WHERE id = :id AND state = 'RETRYING' AND batch_id IS NOT NULL;

-- name: begin_retry
UPDATE files SET state = 'RETRYING', outputs = :outputs, updated_at = :now
WHERE id = :id AND state = :from_state AND state IN ('FAILED', 'CLEARED');

-- name: set_error_place
-- A newer hint for a failure's original in the errors folder; not a transition, so
-- updated_at (the time of the failure, as status shows it) stays.
UPDATE files SET outputs = :outputs WHERE id = :id AND state IN ('FAILED', 'CLEARED');

-- name: wake_batch
-- `folderseal retry` of a batch waiting out a backoff (or a poll): due now.
UPDATE batches SET next_attempt_at = :now, updated_at = :now
WHERE id = :id AND state != 'FAILED' AND next_attempt_at > :now
  AND (claimed_by IS NULL OR lease_until <= :now);

-- name: restore_batch
UPDATE batches SET state = :state, remote_id = :remote_id, publish_key = :publish_key,
                updated_at = :now
WHERE id = :id AND state = 'BATCHED';

-- name: release_node_leases
-- Exactly this node's holders ("<node>/<token>"): a name may hold "_" or "%", so no LIKE.
-- :every is false when another instance held the name before: only its lapsed leases
-- are void then (its batch threads may still be at work).
UPDATE batches SET claimed_by = NULL, lease_until = NULL
WHERE (claimed_by = :node OR substr(claimed_by, 1, length(:node) + 1) = :node || '/')
  AND (:every OR lease_until <= :now);

-- name: node_instance
SELECT instance FROM nodes WHERE node = :node;

-- name: note_upload
UPDATE batches SET upload_sent_at = CASE WHEN upload_sent_remote IS :remote_id
                                      THEN upload_sent_at ELSE :now END,
                upload_sent_remote = :remote_id, updated_at = :now
WHERE id = :id AND state = 'CREATED' AND claimed_by = :holder AND lease_until > :now;

-- name: upload_sent
SELECT upload_sent_at FROM batches WHERE id = :batch_id AND upload_sent_remote = :remote_id;

-- name: abandon_batch
-- A remote batch abandoned before accept: the batch starts again in a new one, its
-- attempts from 0 unless kept (past MAX_LOST_ANSWERS each abandon pauses by them).
UPDATE batches SET state = 'CREATED', remote_id = :remote_id, error_code = NULL,
                attempts = CASE WHEN :keep_attempts THEN attempts ELSE 0 END,
                error_message = NULL, abandoned_lost = abandoned_lost + :lost,
                abandoned_mismatch = abandoned_mismatch + :mismatch, updated_at = :now
WHERE id = :id AND state = :from_state AND claimed_by = :holder AND lease_until > :now;

-- name: abandons
SELECT abandoned_lost, abandoned_mismatch FROM batches WHERE id = :batch_id;

-- name: set_progress
UPDATE batches SET progress = :progress
WHERE id = :id AND claimed_by = :holder AND lease_until > :now;

-- name: progress
SELECT progress FROM batches WHERE id = :batch_id;

-- name: set_remote_document
UPDATE files SET remote_document = :remote_document, updated_at = :now
WHERE id = :id AND batch_id = :batch_id AND state = 'BATCHED';

-- name: remote_documents
SELECT id, remote_document FROM files
WHERE batch_id = :batch_id AND remote_document IS NOT NULL;

-- name: batch_transitions
SELECT to_state, at FROM events WHERE batch_id = :batch_id AND kind = 'batch.state' ORDER BY id;

-- name: batch_history
SELECT kind, file_id, to_state, at FROM events
WHERE (batch_id = :batch_id AND kind = 'batch.state')
   OR (kind IN ('file.batched', 'file.state')
       AND file_id IN (SELECT id FROM files WHERE batch_id = :batch_id))
ORDER BY id;

-- name: register_node
-- A node name belongs to one running instance: another may take it only once the
-- owner's heartbeat is older than :alive_seconds (on the store's clock). A row of a
-- version before instances were recorded ('') is taken as this instance's.
INSERT INTO nodes (node, pid, started_at, heartbeat_at, notes, instance, version,
                   schema_version)
VALUES (:node, :pid, :started_at, :now, '{}', :instance, :version, :schema_version)
ON CONFLICT (node) DO UPDATE SET pid = excluded.pid, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at, notes = excluded.notes,
    instance = excluded.instance, version = excluded.version,
    schema_version = excluded.schema_version
WHERE nodes.instance IN (excluded.instance, '') OR nodes.heartbeat_at <= :now - :alive_seconds;

-- name: heartbeat
-- Only the instance that owns the name beats for it.
UPDATE nodes SET heartbeat_at = :now, notes = :notes
WHERE node = :node AND instance = :instance;

-- name: nodes
SELECT * FROM nodes ORDER BY node;

-- name: set_publish_key
UPDATE batches SET publish_key = :publish_key, updated_at = :now
WHERE id = :id AND claimed_by = :holder AND lease_until > :now;

-- name: set_remote_id
UPDATE batches SET remote_id = :remote_id, updated_at = :now
WHERE id = :id AND claimed_by = :holder AND lease_until > :now;

-- name: publish_keys
SELECT publish_key FROM batches WHERE publish_key IS NOT NULL;

-- name: count_batches_by_state
-- From here on, what status reads (reports.py): never a write.
SELECT folder, state, count(*) AS n FROM batches GROUP BY folder, state;

-- name: claims_by_node
-- Each node's claims not yet in a batch (CLAIMED or REJECTED): what a dead node leaves to
-- be taken over. NULL: claims of no node (before migration 9).
SELECT node, count(*) AS n FROM files
WHERE batch_id IS NULL AND state IN ('CLAIMED', 'REJECTED') GROUP BY node;

-- name: active_batches
-- Not finished, or due again (a failed batch a retry woke).
SELECT j.*, (SELECT count(*) FROM files f WHERE f.batch_id = j.id) AS files FROM batches j
WHERE folder = :folder AND (state NOT IN ('CLEANED', 'FAILED') OR next_attempt_at IS NOT NULL)
ORDER BY created_at;

-- name: last_changed
SELECT * FROM files WHERE folder = :folder AND state = :state
ORDER BY updated_at DESC LIMIT :limit;

-- name: records_failed
-- Delivered (model.DELIVERED), but the provider reports records of the file it could not
-- load (Centrapay's report).
SELECT id, source, updated_at,
       json_extract(result, '$.provider_block.report.errorCount') AS bad FROM files
WHERE folder = :folder AND state IN ('PUBLISHED', 'DONE') AND bad > 0
ORDER BY updated_at DESC LIMIT :limit;

-- name: oldest_in_flight
SELECT min(claimed_at) FROM files
WHERE folder = :folder AND state IN ('CLAIMED', 'BATCHED', 'READY', 'REJECTED');

-- name: suspected_fragments
-- The kind is a literal, so the partial index serves it, and CROSS JOIN keeps SQLite from
-- walking every file of the folder instead.
SELECT e.file_id, f.source, e.at, e.detail FROM events e
CROSS JOIN files f ON f.id = e.file_id
WHERE e.kind = 'file.fragment_suspected' AND e.at > :since AND f.folder = :folder
ORDER BY e.at DESC;

-- name: outputs_in_state
SELECT outputs FROM files WHERE folder = :folder AND state = :state;

-- name: changes_per_minute
-- :until is the caller's "now" (status draws the minutes before it), not the clock.
SELECT CAST((:until - updated_at) / 60 AS INTEGER) AS ago, count(*) FROM files
WHERE folder = :folder AND state = :state AND updated_at > :since
GROUP BY ago;

-- name: count_stale
SELECT count(*) FROM files WHERE folder = :folder AND state = :state AND updated_at < :before;

-- name: events
SELECT * FROM events
WHERE (:batch_id IS NULL OR batch_id = :batch_id) AND (:file_id IS NULL OR file_id = :file_id)
  AND (:kind IS NULL OR kind = :kind)
ORDER BY id;

-- name: answers
-- Whether the store answers a read at all (/healthz).
SELECT count(*) FROM meta;
