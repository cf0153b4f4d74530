-- Times are unix microseconds (BIGINT) so that SQLite and PostgreSQL store them alike.
CREATE TABLE subscriptions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    job_id      TEXT NOT NULL DEFAULT '',
    channel     TEXT NOT NULL,
    target      TEXT NOT NULL,
    event_types TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    secret_ref  TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);
CREATE INDEX subscriptions_user_job ON subscriptions (user_id, job_id);
CREATE INDEX subscriptions_user_created ON subscriptions (user_id, created_at, id);

CREATE TABLE jobs (
    job_id     TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    job_name   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    correlation_id  TEXT NOT NULL DEFAULT '',
    user_id         TEXT NOT NULL,
    job_id          TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    channel         TEXT NOT NULL,
    target          TEXT NOT NULL,
    target_key      TEXT NOT NULL,
    secret_ref      TEXT NOT NULL DEFAULT '',
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    payload         TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT,
    read_at         BIGINT,
    CONSTRAINT deliveries_dedup UNIQUE (event_id, channel, target)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_user_channel ON deliveries (user_id, channel, created_at, id);

-- Events about delivery outcomes, written in the outcome's transaction and
-- relayed to Kafka.
CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    topic      TEXT NOT NULL,
    msg_key    TEXT NOT NULL DEFAULT '',
    value      TEXT NOT NULL,
    headers    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbox_created ON outbox (created_at, id);
