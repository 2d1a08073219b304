-- A file that appears where one was claimed moments ago may be the rest of a writer
-- that paused: status lists the last day's suspicions by time. A partial index: it
-- holds those events only, so the events table's other writers pay nothing for it.
CREATE INDEX events_fragment_suspected ON events (at) WHERE kind = 'file.fragment_suspected';
