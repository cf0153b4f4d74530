-- Dedup marks and stored offsets of the transactional inbox.
-- processed_at is in Unix microseconds (UTC), the same on every dialect.
CREATE TABLE inbox_processed (
	consumer      TEXT    NOT NULL,
	event_id      TEXT    NOT NULL,
	topic         TEXT    NOT NULL,
	msg_partition INTEGER NOT NULL,
	msg_offset    BIGINT  NOT NULL,
	processed_at  BIGINT  NOT NULL,
	PRIMARY KEY (consumer, event_id)
);

CREATE INDEX inbox_processed_by_age ON inbox_processed (consumer, processed_at);

CREATE TABLE inbox_offsets (
	consumer      TEXT    NOT NULL,
	topic         TEXT    NOT NULL,
	msg_partition INTEGER NOT NULL,
	msg_offset    BIGINT  NOT NULL,
	PRIMARY KEY (consumer, topic, msg_partition)
);
