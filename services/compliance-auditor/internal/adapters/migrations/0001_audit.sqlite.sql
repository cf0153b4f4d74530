-- The append-only audit trail (SQLite). Times are Unix microseconds (UTC).
-- details is the canonical JSON object of the record's details (sorted keys).
-- sequence is the rowid, so appends go to the end of the table's B-tree.
CREATE TABLE audit_records (
	sequence      INTEGER PRIMARY KEY,
	event_id      TEXT    NOT NULL UNIQUE,
	occurred_at   INTEGER NOT NULL,
	recorded_at   INTEGER NOT NULL,
	actor         TEXT    NOT NULL,
	actor_role    TEXT    NOT NULL,
	action        TEXT    NOT NULL,
	resource_type TEXT    NOT NULL,
	resource_id   TEXT    NOT NULL,
	details       TEXT    NOT NULL,
	prev_hash     BLOB    NOT NULL,
	hash          BLOB    NOT NULL
);

CREATE INDEX audit_records_by_resource ON audit_records (resource_type, resource_id);
CREATE INDEX audit_records_by_actor ON audit_records (actor);
CREATE INDEX audit_records_by_action ON audit_records (action);

-- The chain head: the sequence and hash of the last appended record.
CREATE TABLE audit_head (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	sequence INTEGER NOT NULL,
	hash     BLOB    NOT NULL
);
INSERT INTO audit_head (id, sequence, hash) VALUES (1, 0, zeroblob(32));

-- Signed checkpoints over the chain head.
CREATE TABLE audit_checkpoints (
	sequence  INTEGER PRIMARY KEY,
	head_hash BLOB    NOT NULL,
	signed_at INTEGER NOT NULL,
	key_id    TEXT    NOT NULL,
	signature BLOB    NOT NULL
);

-- A row exists here only inside the retention transaction, which is the one
-- path allowed to delete records and checkpoints.
CREATE TABLE audit_retention_window (
	id INTEGER PRIMARY KEY CHECK (id = 1)
);

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN
	SELECT RAISE(ABORT, 'audit_records is append-only: UPDATE rejected');
END;

CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
WHEN NOT EXISTS (SELECT 1 FROM audit_retention_window)
BEGIN
	SELECT RAISE(ABORT, 'audit_records is append-only: DELETE outside retention rejected');
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
	SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE rejected');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
WHEN NOT EXISTS (SELECT 1 FROM audit_retention_window)
BEGIN
	SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE outside retention rejected');
END;

-- Per-job lifecycle sequence tracking for gap detection.
CREATE TABLE audit_job_sequences (
	job_id        TEXT    PRIMARY KEY,
	last_sequence INTEGER NOT NULL
) WITHOUT ROWID;

-- Detected gaps; alerted_at is set once the alert was published.
CREATE TABLE audit_sequence_gaps (
	job_id        TEXT    NOT NULL,
	first_missing INTEGER NOT NULL,
	last_missing  INTEGER NOT NULL,
	event_id      TEXT    NOT NULL,
	detected_at   INTEGER NOT NULL,
	alerted_at    INTEGER,
	PRIMARY KEY (job_id, first_missing)
);
CREATE INDEX audit_sequence_gaps_pending ON audit_sequence_gaps (detected_at) WHERE alerted_at IS NULL;
