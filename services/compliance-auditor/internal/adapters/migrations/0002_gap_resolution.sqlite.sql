-- A gap is resolved once every missing event arrived late: filled counts
-- them, resolved_at is set when filled reaches the gap's size, and
-- resolve_alerted_at once its alert.resolved was published.
ALTER TABLE audit_sequence_gaps ADD COLUMN filled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_sequence_gaps ADD COLUMN resolved_at BIGINT;
ALTER TABLE audit_sequence_gaps ADD COLUMN resolve_alerted_at BIGINT;
