-- folderseal store: the current schema (the sum of migrations/, checked by a test).
-- Paths are BLOBs: file names are bytes on Linux and need not be valid UTF-8.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per batch: the batch driven through the provider's lifecycle.
-- The lease (claimed_by, lease_until) is kept apart from the state.
CREATE TABLE batches (
    id              TEXT PRIMARY KEY,
    folder          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    state           TEXT NOT NULL,
    claimed_by      TEXT,
    lease_until     REAL,
    next_attempt_at REAL,            -- NULL: nothing to do (finished, or failed and sunk)
    attempts        INTEGER NOT NULL DEFAULT 0,
    remote_id       TEXT,
    package_sha256  TEXT,
    package_bytes   INTEGER,
    failed_step     TEXT,
    error_code      TEXT,
    error_message   TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
    -- Added by migration 0004 (so written as SQLite keeps an added column): remote
    -- batches abandoned before accept because an answer was lost / because the
    -- provider showed something other than what was sent (MAX_RECREATES applies);
    -- the remote batch an upload was about to be sent to, first at what time; how far
    -- the provider says a started batch is (0-100). Added by migration 0005: the name
    -- or key create published the batch's file under for the provider to fetch.
    , abandoned_lost INTEGER NOT NULL DEFAULT 0,
    abandoned_mismatch INTEGER NOT NULL DEFAULT 0,
    upload_sent_remote TEXT,
    upload_sent_at REAL,
    progress REAL,
    publish_key TEXT,
    -- Added by migration 0008: bumped by each acquisition of the lease.
    epoch INTEGER NOT NULL DEFAULT 0,
    -- Added by migration 0010: acquisitions while another holder's lease had lapsed.
    takeovers INTEGER NOT NULL DEFAULT 0);
CREATE INDEX batches_due ON batches (next_attempt_at);

-- One row per claimed source file.
CREATE TABLE files (
    id            TEXT PRIMARY KEY,
    folder        TEXT NOT NULL,
    source        BLOB NOT NULL,
    state         TEXT NOT NULL,
    dev           INTEGER NOT NULL,
    ino           INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    sha256        TEXT,
    batch_id      TEXT REFERENCES batches (id),
    entry         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    result        TEXT,
    outputs       TEXT,
    error_code    TEXT,
    error_message TEXT,
    seen_at       REAL NOT NULL,
    claimed_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
    -- Added by migration 0004: the provider's latest answer for the file, JSON
    -- {batch, id, checksum} (id null: sent, the answer not in yet); by migration 0009:
    -- the node that claimed it (NULL: claimed before that migration).
    , remote_document TEXT, node TEXT);
CREATE INDEX files_by_state_and_time ON files (folder, state, updated_at);
CREATE INDEX files_by_batch ON files (batch_id);
CREATE INDEX files_by_hash ON files (folder, sha256);
-- The claims not yet in a batch, by node: what each node hashes, rejects and batches, and
-- what a dead node leaves (the folder's whole history is not walked for them).
CREATE INDEX files_unbatched ON files (folder, node, state) WHERE batch_id IS NULL;

-- Every transition, claim, attempt and publish, in order.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         REAL NOT NULL,
    node       TEXT NOT NULL,
    batch_id   TEXT,
    file_id    TEXT,
    kind       TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    detail     TEXT
    -- Added by migration 0008: the epoch of the lease its writer held, if any.
    , epoch INTEGER);
CREATE INDEX events_by_batch ON events (batch_id);
CREATE INDEX events_by_file ON events (file_id);
-- The last day's suspected fragments, for status.
CREATE INDEX events_fragment_suspected ON events (at) WHERE kind = 'file.fragment_suspected';

-- Output names chosen for files not yet finished (in the outbox or the errors
-- folder), so two files of the same name never plan the same output, even before
-- either is on disk. A file's names are released when it is done or failed.
CREATE TABLE output_names (
    folder  TEXT NOT NULL,
    area    TEXT NOT NULL,
    path    BLOB NOT NULL,
    file_id TEXT NOT NULL,
    PRIMARY KEY (folder, area, path)
);
CREATE INDEX output_names_by_file ON output_names (file_id);

-- What each running daemon is doing, for `folderseal status`.
CREATE TABLE nodes (
    node         TEXT PRIMARY KEY,
    pid          INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    notes        TEXT NOT NULL
    -- Added by migration 0007: the instance that owns the name (new at each start), the
    -- folderseal version it runs, the newest migration it knows.
    , instance TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL DEFAULT '',
    schema_version INTEGER NOT NULL DEFAULT 0);
