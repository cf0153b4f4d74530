-- Dedup marks and stored offsets of the transactional inbox.
-- processed_at is in Unix microseconds (UTC), the same on every dialect.
-- WITHOUT ROWID: both tables are looked up by their primary key only, so
-- storing rows in the key's B-tree saves one index write per event.
CREATE TABLE inbox_processed (
	consumer      TEXT    NOT NULL,
	event_id      TEXT    NOT NULL,
	topic         TEXT    NOT NULL,
	msg_partition INTEGER NOT NULL,
	msg_offset    INTEGER NOT NULL,
	processed_at  INTEGER NOT NULL,
	PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;

CREATE INDEX inbox_processed_by_age ON inbox_processed (consumer, processed_at);

CREATE TABLE inbox_offsets (
	consumer      TEXT    NOT NULL,
	topic         TEXT    NOT NULL,
	msg_partition INTEGER NOT NULL,
	msg_offset    INTEGER NOT NULL,
	PRIMARY KEY (consumer, topic, msg_partition)
) WITHOUT ROWID;
