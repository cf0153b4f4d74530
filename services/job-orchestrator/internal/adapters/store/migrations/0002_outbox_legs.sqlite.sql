-- The two destinations of an outbox row progress independently: the Kafka
-- leg uses published_kafka_at, claimed_by, claimed_until, attempts and
-- last_error; the RabbitMQ leg (rows with an amqp_routing_key) has columns of
-- its own. A leg whose publish failed for a reason no retry changes is
-- parked (its *_parked_at set) until an operator retries it; a parked row
-- holds back the later rows of its job on that leg only.
ALTER TABLE outbox ADD COLUMN parked_at INTEGER;
ALTER TABLE outbox ADD COLUMN amqp_claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN amqp_claimed_until INTEGER;
ALTER TABLE outbox ADD COLUMN amqp_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN amqp_last_error TEXT;
ALTER TABLE outbox ADD COLUMN amqp_parked_at INTEGER;

CREATE INDEX outbox_kafka_pending_by_job ON outbox (job_id, seq) WHERE sent_at IS NULL AND published_kafka_at IS NULL;
CREATE INDEX outbox_kafka_pending_by_id ON outbox (id) WHERE sent_at IS NULL AND published_kafka_at IS NULL;
CREATE INDEX outbox_amqp_pending_by_job ON outbox (job_id, seq) WHERE sent_at IS NULL AND amqp_routing_key IS NOT NULL AND published_amqp_at IS NULL;
CREATE INDEX outbox_amqp_pending_by_id ON outbox (id) WHERE sent_at IS NULL AND amqp_routing_key IS NOT NULL AND published_amqp_at IS NULL;
