-- The reference outbox tables (see the package documentation), keyed by
-- job_id as in the orchestrator's migrations; the contract tests run on it.
CREATE TABLE outbox (
	id                 BIGSERIAL PRIMARY KEY,
	event_id           TEXT    NOT NULL UNIQUE,
	event_type         TEXT    NOT NULL,
	job_id             TEXT    NOT NULL,
	seq                BIGINT  NOT NULL,
	topic              TEXT    NOT NULL,
	msg_key            TEXT    NOT NULL,
	payload            BYTEA   NOT NULL,
	headers            TEXT    NOT NULL,
	amqp_routing_key   TEXT,
	created_at         BIGINT  NOT NULL,
	published_kafka_at BIGINT,
	sent_at            BIGINT,
	attempts           INTEGER NOT NULL DEFAULT 0,
	last_error         TEXT,
	claimed_by         TEXT,
	claimed_until      BIGINT,
	parked_at          BIGINT,
	CONSTRAINT outbox_job_seq UNIQUE (job_id, seq)
);
CREATE INDEX outbox_pending_by_job ON outbox (job_id, seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;

CREATE TABLE outbox_amqp (
	id            BIGINT  PRIMARY KEY REFERENCES outbox (id) ON DELETE CASCADE,
	job_id        TEXT    NOT NULL,
	seq           BIGINT  NOT NULL,
	published_at  BIGINT,
	attempts      INTEGER NOT NULL DEFAULT 0,
	last_error    TEXT,
	claimed_by    TEXT,
	claimed_until BIGINT,
	parked_at     BIGINT
);
CREATE INDEX outbox_amqp_pending_by_job ON outbox_amqp (job_id, seq) WHERE published_at IS NULL;
