-- Fleet mode (issue 12): the node that claimed a file. Each node hashes, rejects and
-- batches only its own claims; a dead node's claims change hands by one update of this
-- column (and a rename of their folders). NULL: claimed before this column, when one
-- node owned every claim; the next node that attaches the folder takes them.
ALTER TABLE files ADD COLUMN node TEXT;
-- The claims not yet in a batch, by node: what each node hashes, rejects and batches, and
-- what a dead node leaves (the folder's whole history is not walked for them).
CREATE INDEX files_unbatched ON files (folder, node, state) WHERE batch_id IS NULL;
