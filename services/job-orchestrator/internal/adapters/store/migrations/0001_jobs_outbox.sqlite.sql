-- Jobs and their transactional outbox. Times are Unix nanoseconds (UTC),
-- the same on every dialect, so that the listing cursor is exact.
CREATE TABLE jobs (
	id              TEXT    PRIMARY KEY,
	owner           TEXT    NOT NULL,
	idempotency_key TEXT    NOT NULL,
	status          TEXT    NOT NULL,
	tacc_system     TEXT    NOT NULL,
	created_at      INTEGER  NOT NULL,
	updated_at      INTEGER  NOT NULL,
	version         INTEGER  NOT NULL,
	-- doc is the whole job as JSON (spec, history, scheduler reference, ...);
	-- the columns above duplicate what queries filter and sort on.
	doc             TEXT    NOT NULL,
	CONSTRAINT jobs_owner_idempotency_key UNIQUE (owner, idempotency_key)
);

CREATE INDEX jobs_by_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_by_owner_created ON jobs (owner, created_at DESC, id DESC);
CREATE INDEX jobs_by_system_created ON jobs (tacc_system, created_at DESC, id DESC);
CREATE INDEX jobs_by_status_created ON jobs (status, created_at DESC, id DESC);
CREATE INDEX jobs_active_by_updated ON jobs (updated_at, id) WHERE status IN ('SUBMITTED', 'QUEUED', 'RUNNING');

-- One row per event to publish. seq orders the events of one job (every
-- topic); the relay publishes a job's rows strictly in seq order.
CREATE TABLE outbox (
	id                 INTEGER PRIMARY KEY AUTOINCREMENT,
	event_id           TEXT    NOT NULL UNIQUE,
	event_type         TEXT    NOT NULL,
	job_id             TEXT    NOT NULL,
	seq                INTEGER  NOT NULL,
	topic              TEXT    NOT NULL,
	msg_key            TEXT    NOT NULL,
	payload            BLOB    NOT NULL,
	headers            TEXT    NOT NULL,
	-- NULL: Kafka only; else the routing key on the job.events exchange.
	amqp_routing_key   TEXT,
	created_at         INTEGER  NOT NULL,
	published_kafka_at INTEGER,
	published_amqp_at  INTEGER,
	sent_at            INTEGER,
	attempts           INTEGER NOT NULL DEFAULT 0,
	last_error         TEXT,
	claimed_by         TEXT,
	claimed_until      INTEGER,
	CONSTRAINT outbox_job_seq UNIQUE (job_id, seq)
);

CREATE INDEX outbox_pending_by_job ON outbox (job_id, seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_pending_by_id ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
