-- Fleet mode: wake-up. A batch that becomes runnable for any node (made, released by its
-- holder, or due earlier) notifies this store's channel, so idle nodes' batch threads look
-- now rather than at their next poll (folderseal/store/wakeup.py). The channel is named
-- after the schema that holds the table (hashed: a channel name has at most 63 bytes), so
-- a store in another schema of the same database is not woken. The payload is empty, so
-- that the notifications of one transaction fold into one; nothing is read from it.
-- Polling stays: a notification sent while no node listened is simply never seen.
CREATE FUNCTION batches_wakeup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('folderseal_' || md5(TG_TABLE_SCHEMA), '');
    RETURN NULL;
END
$$;
CREATE TRIGGER batches_wakeup_made AFTER INSERT ON batches FOR EACH ROW
    WHEN (NEW.next_attempt_at IS NOT NULL)
    EXECUTE FUNCTION batches_wakeup();
-- Released (acquire_batch takes a batch whose claimed_by is NULL), made due again
-- (resume_batch, reopen_batch) or due earlier (wake_batch). A lease that lapses writes
-- nothing: polling finds that batch.
CREATE TRIGGER batches_wakeup_freed AFTER UPDATE OF claimed_by, next_attempt_at ON batches
    FOR EACH ROW
    WHEN (NEW.claimed_by IS NULL AND NEW.next_attempt_at IS NOT NULL
          AND (OLD.claimed_by IS NOT NULL OR OLD.next_attempt_at IS NULL
               OR NEW.next_attempt_at < OLD.next_attempt_at))
    EXECUTE FUNCTION batches_wakeup();
