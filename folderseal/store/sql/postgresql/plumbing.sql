-- What only the PostgreSQL store runs, beside the shared queries: the database's clock,
-- and the bookkeeping of migrations (postgres.py).

-- name: now
-- Not a query: the expression each :now of a query becomes in a store on the database's
-- clock. clock_timestamp(), not now(): now() is frozen at the start of a transaction, and
-- a lease is checked against the time its write is made.
CAST(extract(epoch FROM clock_timestamp()) AS double precision)

-- name: database_time
-- The database's clock, where Python needs "now" (a lease checked before a side effect,
-- a time a caller adds a delay to).
SELECT :now;

-- name: migrate_lock
-- One migrating node at a time per store (a schema of a database); released at commit.
SELECT pg_advisory_xact_lock(hashtextextended('folderseal migrate ' || coalesce(current_schema(), ''), 0));

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL,
    applied_by TEXT NOT NULL             -- the folderseal version that applied it
);

-- name: record_migration
INSERT INTO schema_migrations (version, applied_at, applied_by)
VALUES (:version, :now, :code);

-- name: has_schema
-- Whether migrate() ever ran on this store (in the first schema of the search path).
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: schema_version
-- The last migration applied (0: none yet).
SELECT coalesce(max(version), 0) FROM schema_migrations;

-- name: wakeup_channel
-- The channel the batches table's trigger notifies (migration 0004): named after the
-- schema that holds the table this connection's search path finds. NULL: no such table.
SELECT 'folderseal_' || md5(n.nspname) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass('batches');

-- name: lock_node_starts
-- Nodes start one at a time per store: a node's check for live nodes and its register
-- are one step, so of two nodes starting at once the second sees the first. Waited for
-- (the other start takes a moment); released at commit.
SELECT pg_advisory_xact_lock(hashtextextended('folderseal start ' || coalesce(current_schema(), ''), 0));

-- name: hold_off_recover
-- True unless `folderseal recover` holds the store (recover_lock): tried, never waited
-- for. Free, it stays taken by this transaction until commit, so a recover starting
-- meanwhile refuses instead of missing this node's register. Shared: nodes starting at
-- once do not keep each other out, only recover's exclusive lock does.
SELECT pg_try_advisory_xact_lock_shared(hashtextextended('folderseal recover ' || coalesce(current_schema(), ''), 0));

-- name: recover_lock
-- The store for one `folderseal recover` alone, for its whole run (this session's, until
-- recover_unlock or the connection ends); false while another recover holds it or a
-- node is between its start check and its register.
SELECT pg_try_advisory_lock(hashtextextended('folderseal recover ' || coalesce(current_schema(), ''), 0));

-- name: recover_unlock
SELECT pg_advisory_unlock(hashtextextended('folderseal recover ' || coalesce(current_schema(), ''), 0));
