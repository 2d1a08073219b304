-- Fleet mode: a provider's request limit (Centrapay's max_requests_per_minute) kept for
-- the whole fleet. One row per limit (its key, e.g. 'centrapay:<provider name>'): the
-- first request start not yet reserved by any node, and the time a 429 holds every call
-- until, both on the database's clock (epoch seconds). PostgreSQL only: a SQLite store
-- has one node, whose limiter is in its own memory.
CREATE TABLE request_budgets (
    key        TEXT COLLATE "C" PRIMARY KEY,
    next_at    DOUBLE PRECISION NOT NULL,
    held_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
