-- Fleet mode (issue 12): each acquisition of a batch's lease bumps its epoch, and each
-- event a lease holder records carries the epoch it held, so the history shows which
-- turn of which node did what, and that epochs only grow.
ALTER TABLE batches ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN epoch INTEGER;
