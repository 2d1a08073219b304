-- Fleet mode: the node that claimed a file (SQLite's migration 9 says why).
ALTER TABLE files ADD COLUMN node TEXT;
