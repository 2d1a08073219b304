-- Fleet mode (issue 12): the node that claimed a file. Each node hashes, rejects and
-- batches only its own claims; a dead node's claims change hands by one update of this
-- column (and a rename of their folders). NULL: claimed before this column, when one
-- node owned every claim; the next node that attaches the folder takes them.
ALTER TABLE files ADD COLUMN node TEXT;
