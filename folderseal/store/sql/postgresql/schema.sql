-- folderseal store on PostgreSQL: the current schema (the sum of migrations/, checked by a
-- test). Paths are BYTEA (file names are bytes on Linux and need not be valid UTF-8);
-- times are epoch seconds in DOUBLE PRECISION, as SQLite's REAL; JSON is kept as TEXT.
-- The applied migrations are listed in schema_migrations (made by migrate(), not here).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per batch: the batch driven through the provider's lifecycle.
-- The lease (claimed_by, lease_until) is kept apart from the state.
CREATE TABLE batches (
    id                 TEXT PRIMARY KEY,
    folder             TEXT NOT NULL,
    provider           TEXT NOT NULL,
    state              TEXT NOT NULL,
    claimed_by         TEXT,
    lease_until        DOUBLE PRECISION,
    next_attempt_at    DOUBLE PRECISION,  -- NULL: nothing to do (finished, or failed and sunk)
    attempts           INTEGER NOT NULL DEFAULT 0,
    remote_id          TEXT,
    package_sha256     TEXT,
    package_bytes      BIGINT,
    failed_step        TEXT,
    error_code         TEXT,
    error_message      TEXT,
    created_at         DOUBLE PRECISION NOT NULL,
    updated_at         DOUBLE PRECISION NOT NULL,
    -- remote batches abandoned before accept, because an answer was lost / because the
    -- provider showed something other than what was sent
    abandoned_lost     INTEGER NOT NULL DEFAULT 0,
    abandoned_mismatch INTEGER NOT NULL DEFAULT 0,
    -- the remote batch an upload was last about to be sent to, and when (first) it was
    upload_sent_remote TEXT,
    upload_sent_at     DOUBLE PRECISION,
    progress           DOUBLE PRECISION,  -- how far the provider says it is (0-100)
    publish_key        TEXT,              -- the name or key its file is published under
    epoch              INTEGER NOT NULL DEFAULT 0, -- bumped by each acquisition of the lease
    takeovers          INTEGER NOT NULL DEFAULT 0  -- acquisitions after another holder's lapsed
);
CREATE INDEX batches_due ON batches (next_attempt_at);

-- Wake-up (migration 0004): a batch made, released or due earlier notifies the channel
-- of this schema ('folderseal_' || md5(schema)), which idle nodes listen on; polling
-- stays, so a notification nobody heard loses nothing. The payload is empty.
CREATE FUNCTION batches_wakeup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('folderseal_' || md5(TG_TABLE_SCHEMA), '');
    RETURN NULL;
END
$$;
CREATE TRIGGER batches_wakeup_made AFTER INSERT ON batches FOR EACH ROW
    WHEN (NEW.next_attempt_at IS NOT NULL)
    EXECUTE FUNCTION batches_wakeup();
CREATE TRIGGER batches_wakeup_freed AFTER UPDATE OF claimed_by, next_attempt_at ON batches
    FOR EACH ROW
    WHEN (NEW.claimed_by IS NULL AND NEW.next_attempt_at IS NOT NULL
          AND (OLD.claimed_by IS NOT NULL OR OLD.next_attempt_at IS NULL
               OR NEW.next_attempt_at < OLD.next_attempt_at))
    EXECUTE FUNCTION batches_wakeup();

-- One row per claimed source file. Text that is sorted or compared by range (ids, entry
-- names, node names) sorts by bytes, as in SQLite, whatever the database's locale.
CREATE TABLE files (
    id              TEXT COLLATE "C" PRIMARY KEY,
    folder          TEXT NOT NULL,
    source          BYTEA NOT NULL,
    state           TEXT NOT NULL,
    dev             BIGINT NOT NULL,
    ino             BIGINT NOT NULL,
    size            BIGINT NOT NULL,
    mtime_ns        BIGINT NOT NULL,
    sha256          TEXT,
    batch_id        TEXT REFERENCES batches (id),
    entry           TEXT COLLATE "C",
    attempts        INTEGER NOT NULL DEFAULT 0,
    result          TEXT,
    outputs         TEXT,
    error_code      TEXT,
    error_message   TEXT,
    seen_at         DOUBLE PRECISION NOT NULL,
    claimed_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    remote_document TEXT, -- the provider's latest answer for the file, JSON
    node            TEXT COLLATE "C"  -- the node that claimed it (NULL: before migration 5)
);
CREATE INDEX files_by_state_and_time ON files (folder, state, updated_at);
CREATE INDEX files_by_batch ON files (batch_id);
CREATE INDEX files_by_hash ON files (folder, sha256);
-- The claims not yet in a batch, by node (migration 5).
CREATE INDEX files_unbatched ON files (folder, node, state) WHERE batch_id IS NULL;

-- Every transition, claim, attempt and publish, in order.
CREATE TABLE events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         DOUBLE PRECISION NOT NULL,
    node       TEXT NOT NULL,
    batch_id   TEXT,
    file_id    TEXT,
    kind       TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    detail     TEXT,
    epoch      INTEGER   -- the epoch of the lease its writer held, if any
);
CREATE INDEX events_by_batch ON events (batch_id);
CREATE INDEX events_by_file ON events (file_id);
-- The last day's suspected fragments, for status.
CREATE INDEX events_fragment_suspected ON events (at) WHERE kind = 'file.fragment_suspected';

-- Output names chosen for files not yet finished (in the outbox or the errors folder),
-- so two files of the same name never plan the same output, even before either is on
-- disk. A file's names are released when it is done or failed.
CREATE TABLE output_names (
    folder  TEXT NOT NULL,
    area    TEXT NOT NULL,
    path    BYTEA NOT NULL,
    file_id TEXT NOT NULL,
    PRIMARY KEY (folder, area, path)
);
CREATE INDEX output_names_by_file ON output_names (file_id);

-- What each running daemon is doing, for `folderseal status`.
CREATE TABLE nodes (
    node         TEXT COLLATE "C" PRIMARY KEY,
    pid          INTEGER NOT NULL,
    started_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    notes        TEXT NOT NULL,
    -- Added by migration 0002: the instance that owns the name (new at each start), the
    -- folderseal version it runs, the newest migration it knows.
    instance     TEXT NOT NULL DEFAULT '',
    version      TEXT NOT NULL DEFAULT '',
    schema_version INTEGER NOT NULL DEFAULT 0
);

-- Request limits kept for the whole fleet (migration 0006; store/budgets.py): per limit,
-- the first request start not yet reserved and the time a 429 holds every call until,
-- on the database's clock.
CREATE TABLE request_budgets (
    key        TEXT COLLATE "C" PRIMARY KEY,
    next_at    DOUBLE PRECISION NOT NULL,
    held_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
