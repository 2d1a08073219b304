-- Fleet mode (issue 12): how many times a batch was taken over, each acquisition of it
-- while another holder's lease had lapsed (status alarms when it keeps happening).
ALTER TABLE batches ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0;
