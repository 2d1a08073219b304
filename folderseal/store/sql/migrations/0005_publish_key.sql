-- Centrapay (issue 10): the name or key a batch's file was published under for the
-- provider to fetch (recorded before it is published; cleared once it is removed), so
-- that nothing published stays readable unnamed.
ALTER TABLE jobs ADD COLUMN publish_key TEXT;
