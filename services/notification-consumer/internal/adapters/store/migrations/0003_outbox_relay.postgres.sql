-- The outbox becomes the fleet's shared one (libs/outbox): outcome events
-- are published in order per delivery, each row with its own lease,
-- attempts and parking, so an event that cannot be published holds back
-- only its delivery's later events. Times in the new table are Unix
-- nanoseconds, as libs/outbox keeps them. The rows of the old table still
-- pending are moved over by the store when it migrates (their values are
-- base64 text there); the old table is kept, empty, as outbox_legacy.
ALTER TABLE outbox RENAME TO outbox_legacy;
ALTER INDEX outbox_pkey RENAME TO outbox_legacy_pkey;

CREATE TABLE outbox (
	id                 BIGSERIAL PRIMARY KEY,
	event_id           TEXT    NOT NULL UNIQUE,
	event_type         TEXT    NOT NULL,
	delivery_id        TEXT    NOT NULL,
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
	CONSTRAINT outbox_delivery_seq UNIQUE (delivery_id, seq)
);
CREATE INDEX outbox_pending_by_delivery ON outbox (delivery_id, seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
