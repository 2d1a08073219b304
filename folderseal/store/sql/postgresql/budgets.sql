-- A request limit shared by the nodes of a fleet (budgets.py). Each is one statement in
-- its own transaction: a row is locked only while the statement runs, so no node ever
-- waits on another's lock while it sleeps until its turn. :now is clock_timestamp(),
-- read ONCE per statement (the clock CTE is evaluated once), so the turn and the time
-- it is compared with are two readings of the same clock.

-- name: reserve
-- The next free start for one request: the later of the first start not yet reserved
-- and now; the one after it moves :spacing seconds on. Returns the reserved start and
-- the database's now (the caller waits the difference).
WITH clock AS (SELECT :now AS now)
INSERT INTO request_budgets AS b (key, next_at)
SELECT :key, now + :spacing FROM clock
ON CONFLICT (key) DO UPDATE
    SET next_at = greatest(b.next_at, (SELECT now FROM clock)) + :spacing
RETURNING b.next_at - :spacing AS start, (SELECT now FROM clock) AS now;

-- name: hold
-- No request starts for :seconds from now (a 429's Retry-After): new reservations come
-- after it, and a turn reserved earlier that falls before it is given up (see held).
WITH clock AS (SELECT :now AS now)
INSERT INTO request_budgets AS b (key, next_at, held_until)
SELECT :key, now + :seconds, now + :seconds FROM clock
ON CONFLICT (key) DO UPDATE
    SET next_at = greatest(b.next_at, EXCLUDED.next_at),
        held_until = greatest(b.held_until, EXCLUDED.held_until);

-- name: held
-- Until when a 429 holds every request (0: never), and the database's now: whether a
-- turn reserved earlier may still be used.
SELECT coalesce((SELECT held_until FROM request_budgets WHERE key = :key), 0) AS held_until,
       :now AS now;
