-- The two destinations of an outbox row progress independently. The Kafka
-- leg keeps its state in outbox (published_kafka_at, claimed_by,
-- claimed_until, attempts, last_error, and parked_at, new); sent_at now
-- means the Kafka leg is done. The RabbitMQ leg of every row with a routing
-- key has a row of its own in outbox_amqp, so the legs never lock each
-- other's rows. A leg whose publish failed for a reason no retry changes
-- is parked (parked_at set) until an operator retries it; a parked row
-- holds back the later rows of its job on that leg only.
ALTER TABLE outbox ADD COLUMN parked_at INTEGER;

CREATE TABLE outbox_amqp (
	id            INTEGER PRIMARY KEY REFERENCES outbox (id) ON DELETE CASCADE,
	job_id        TEXT    NOT NULL,
	seq           INTEGER NOT NULL,
	published_at  INTEGER,
	attempts      INTEGER NOT NULL DEFAULT 0,
	last_error    TEXT,
	claimed_by    TEXT,
	claimed_until INTEGER,
	parked_at     INTEGER
);
CREATE INDEX outbox_amqp_pending_by_job ON outbox_amqp (job_id, seq) WHERE published_at IS NULL;
CREATE INDEX outbox_amqp_done ON outbox_amqp (published_at) WHERE published_at IS NOT NULL;

-- Rows still waiting for RabbitMQ move to the new table; the rest are done.
INSERT INTO outbox_amqp (id, job_id, seq, attempts, last_error)
	SELECT id, job_id, seq, 0, NULL FROM outbox
	WHERE amqp_routing_key IS NOT NULL AND published_amqp_at IS NULL AND sent_at IS NULL;
UPDATE outbox SET sent_at = published_kafka_at
	WHERE sent_at IS NULL AND published_kafka_at IS NOT NULL;
