-- The append-only audit trail (PostgreSQL). Times are Unix microseconds (UTC).
-- details is the canonical JSON object of the record's details (sorted keys).
CREATE TABLE audit_records (
	sequence      BIGINT PRIMARY KEY,
	event_id      TEXT   NOT NULL UNIQUE,
	occurred_at   BIGINT NOT NULL,
	recorded_at   BIGINT NOT NULL,
	actor         TEXT   NOT NULL,
	actor_role    TEXT   NOT NULL,
	action        TEXT   NOT NULL,
	resource_type TEXT   NOT NULL,
	resource_id   TEXT   NOT NULL,
	details       TEXT   NOT NULL,
	prev_hash     BYTEA  NOT NULL,
	hash          BYTEA  NOT NULL
);

CREATE INDEX audit_records_by_resource ON audit_records (resource_type, resource_id);
CREATE INDEX audit_records_by_actor ON audit_records (actor);
CREATE INDEX audit_records_by_action ON audit_records (action);

-- The chain head: the sequence and hash of the last appended record. Appenders
-- lock this row (SELECT ... FOR UPDATE), which serialises appends across replicas.
CREATE TABLE audit_head (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	sequence BIGINT  NOT NULL,
	hash     BYTEA   NOT NULL
);
INSERT INTO audit_head (id, sequence, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Signed checkpoints over the chain head.
CREATE TABLE audit_checkpoints (
	sequence  BIGINT PRIMARY KEY,
	head_hash BYTEA  NOT NULL,
	signed_at BIGINT NOT NULL,
	key_id    TEXT   NOT NULL,
	signature BYTEA  NOT NULL
);

-- A row exists here only inside the retention transaction, which is the one
-- path allowed to delete records and checkpoints.
CREATE TABLE audit_retention_window (
	id INTEGER PRIMARY KEY CHECK (id = 1)
);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_retention_window) THEN
		RETURN OLD;
	END IF;
	RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
		USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
	FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
	FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- Per-job lifecycle sequence tracking for gap detection.
CREATE TABLE audit_job_sequences (
	job_id        TEXT   PRIMARY KEY,
	last_sequence BIGINT NOT NULL
);

-- Detected gaps; alerted_at is set once the alert was published.
CREATE TABLE audit_sequence_gaps (
	job_id        TEXT   NOT NULL,
	first_missing BIGINT NOT NULL,
	last_missing  BIGINT NOT NULL,
	event_id      TEXT   NOT NULL,
	detected_at   BIGINT NOT NULL,
	alerted_at    BIGINT,
	PRIMARY KEY (job_id, first_missing)
);
CREATE INDEX audit_sequence_gaps_pending ON audit_sequence_gaps (detected_at) WHERE alerted_at IS NULL;
