package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// outboxRow is an encoded event about to be appended.
type outboxRow struct {
	eventID, eventType string
	msg                *bus.Message
	headers            string
	routingKey         string // "" for Kafka only
}

// outboxRows encodes the events of j's change. Job-lifecycle events also go
// to RabbitMQ, routed by the job's owner, id and event type. The trace
// context of ctx (the request or reconciler pass that caused the change) is
// stored with each row's headers, so the relay publishes it inside that trace.
func (s *Store) outboxRows(ctx context.Context, j *domain.Job, recs []app.OutboxRecord) ([]outboxRow, error) {
	trace := map[string]string{}
	telemetry.Inject(ctx, trace)
	out := make([]outboxRow, 0, len(recs))
	for _, r := range recs {
		msg, err := s.codec.Message(r.Event)
		if err != nil {
			return nil, fmt.Errorf("encode %s event of job %s: %w", r.Event.EventType, j.ID, err)
		}
		for k, v := range trace {
			if _, set := msg.Headers[k]; !set {
				msg.Headers[k] = v
			}
		}
		h, err := json.Marshal(msg.Headers)
		if err != nil {
			return nil, fmt.Errorf("encode headers of %s: %w", r.Event.EventID, err)
		}
		row := outboxRow{eventID: r.Event.EventID, eventType: r.Event.EventType, msg: msg, headers: string(h)}
		if msg.Topic == events.TopicJobLifecycle {
			row.routingKey = amqpbus.JobRoutingKey(j.Owner, j.ID, r.Event.EventType)
		}
		out = append(out, row)
	}
	return out, nil
}

// appendOutbox inserts rows for job jobID with seq after last, in order.
func (s *Store) appendOutbox(ctx context.Context, tx *sql.Tx, jobID string, last int64, rows []outboxRow) error {
	if len(rows) == 0 {
		return nil
	}
	now := nanos(s.cfg.Now())
	q := s.db.Rebind(`INSERT INTO outbox
		(event_id, event_type, job_id, seq, topic, msg_key, payload, headers, amqp_routing_key, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	for i, r := range rows {
		var rk sql.NullString
		if r.routingKey != "" {
			rk = sql.NullString{String: r.routingKey, Valid: true}
		}
		if _, err := tx.ExecContext(ctx, q, r.eventID, r.eventType, jobID, last+int64(i)+1,
			r.msg.Topic, r.msg.Key, r.msg.Value, r.headers, rk, now); err != nil {
			return err
		}
	}
	return nil
}

// PendingEvent is one outbox row a relay claimed.
type PendingEvent struct {
	ID        int64
	EventID   string
	EventType string
	JobID     string
	// Seq numbers the job's outbox rows from 1 in the order written.
	Seq int64
	// Message is the Kafka message as the events codec encoded it: catalogue
	// topic, key, Avro value and headers.
	Message *bus.Message
	// RoutingKey is the key on the job.events exchange; "" when the event
	// goes to Kafka only.
	RoutingKey string
	// KafkaDone and AMQPDone report a destination already acknowledged by an
	// earlier attempt.
	KafkaDone, AMQPDone bool
	CreatedAt           time.Time
	Attempts            int
}

// Result is what a relay did with one claimed row.
type Result struct {
	ID    int64
	JobID string
	// KafkaAt and AMQPAt are when each destination acknowledged the event;
	// zero when it did not (or, for AMQPAt, when the event has no routing key).
	KafkaAt, AMQPAt time.Time
	// Err is set when publishing failed; the row stays pending, its
	// attempts grow and the job's remaining rows are released.
	Err error
}

// ClaimOutbox gives relay owner the pending rows of up to maxJobs jobs,
// leased until now+lease, in (job, seq) order.
//
// A job is claimed through its head, the pending row of lowest seq, and
// only when that head is not leased by another relay; claiming it leases
// every pending row of the job. So one relay at a time holds a job, and no
// relay can take row n+1 of a job while row n is pending: the per-job order
// holds across relays. On PostgreSQL the heads are selected with FOR UPDATE
// SKIP LOCKED, so concurrent relays never wait on each other nor pick the
// same job. On SQLite the claim runs in a write transaction (BEGIN
// IMMEDIATE), which admits one writer at a time: claims are exclusive
// trivially.
//
// A lease that ends (relay crashed or stalled) makes the job claimable
// again. A relay must therefore stop publishing before its lease ends (see
// the relay's lease margin) and clocks of replicas must agree to well
// within that margin. A relay that crashed after publishing and before
// CompleteOutbox leaves rows that are published again by the next claim:
// delivery is at least once, and consumers deduplicate on event_id.
func (s *Store) ClaimOutbox(ctx context.Context, owner string, maxJobs int, lease time.Duration) ([]PendingEvent, error) {
	if owner == "" || maxJobs < 1 || lease <= 0 {
		return nil, errors.New("claim outbox: need an owner, maxJobs >= 1 and a positive lease")
	}
	now := s.cfg.Now()
	until := nanos(now.Add(lease))
	headQuery := `SELECT o.job_id FROM outbox o
		WHERE o.sent_at IS NULL
		  AND (o.claimed_until IS NULL OR o.claimed_until < ?)
		  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.job_id = o.job_id AND p.sent_at IS NULL AND p.seq < o.seq)
		ORDER BY o.id LIMIT ?`
	if s.pg {
		headQuery += " FOR UPDATE OF o SKIP LOCKED"
	}
	var out []PendingEvent
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		jobs, err := queryStrings(ctx, tx, s.db.Rebind(headQuery), nanos(now), maxJobs)
		if err != nil || len(jobs) == 0 {
			return err
		}
		in := placeholders(len(jobs))
		args := []any{owner, until}
		for _, j := range jobs {
			args = append(args, j)
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE outbox SET claimed_by = ?, claimed_until = ?
			WHERE sent_at IS NULL AND job_id IN (`+in+`)`), args...); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.db.Rebind(`SELECT id, event_id, event_type, job_id, seq, topic, msg_key, payload, headers,
				amqp_routing_key, published_kafka_at, published_amqp_at, created_at, attempts
			FROM outbox WHERE sent_at IS NULL AND claimed_by = ? AND job_id IN (`+in+`)
			ORDER BY job_id, seq`), append([]any{owner}, args[2:]...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e                PendingEvent
				topic, key, hdrs string
				value            []byte
				rk               sql.NullString
				kafkaAt, amqpAt  sql.NullInt64
				created          int64
			)
			if err := rows.Scan(&e.ID, &e.EventID, &e.EventType, &e.JobID, &e.Seq, &topic, &key, &value, &hdrs,
				&rk, &kafkaAt, &amqpAt, &created, &e.Attempts); err != nil {
				return err
			}
			headers := map[string]string{}
			if err := json.Unmarshal([]byte(hdrs), &headers); err != nil {
				return fmt.Errorf("outbox row %d: headers: %w", e.ID, err)
			}
			e.Message = &bus.Message{Topic: topic, Key: key, Value: value, Headers: headers}
			e.RoutingKey = rk.String
			e.KafkaDone, e.AMQPDone = kafkaAt.Valid, amqpAt.Valid
			e.CreatedAt = fromNanos(created)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, dbErr("claim outbox", err)
	}
	return out, nil
}

func queryStrings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// CompleteOutbox records what relay owner did with its claimed rows, in one
// transaction: a row whose destinations all acknowledged is marked sent and
// released; a failed row keeps the destinations that did acknowledge,
// counts an attempt, records the error and releases every still pending row
// of its job, so that the next claim (by any relay) retries it in order.
// Rows whose lease owner has meanwhile changed are left alone; lost counts
// them.
func (s *Store) CompleteOutbox(ctx context.Context, owner string, results []Result) (lost int, err error) {
	if len(results) == 0 {
		return 0, nil
	}
	now := nanos(s.cfg.Now())
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		lost = 0
		var sent []any
		for _, r := range results {
			if r.Err == nil && !r.KafkaAt.IsZero() {
				sent = append(sent, r.ID)
			}
		}
		count := func(res sql.Result) error {
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			lost -= int(n)
			return nil
		}
		for start := 0; start < len(sent); start += 500 {
			chunk := sent[start:min(start+500, len(sent))]
			lost += len(chunk)
			res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE outbox SET
					published_kafka_at = COALESCE(published_kafka_at, ?),
					published_amqp_at = CASE WHEN amqp_routing_key IS NULL THEN NULL ELSE COALESCE(published_amqp_at, ?) END,
					sent_at = ?, claimed_by = NULL, claimed_until = NULL
				WHERE claimed_by = ? AND sent_at IS NULL AND id IN (`+placeholders(len(chunk))+`)`),
				append([]any{now, now, now, owner}, chunk...)...)
			if err != nil {
				return err
			}
			if err := count(res); err != nil {
				return err
			}
		}
		for _, r := range results {
			if r.Err == nil && !r.KafkaAt.IsZero() {
				continue
			}
			if r.Err != nil {
				var kafkaAt, amqpAt sql.NullInt64
				if !r.KafkaAt.IsZero() {
					kafkaAt = sql.NullInt64{Int64: nanos(r.KafkaAt), Valid: true}
				}
				if !r.AMQPAt.IsZero() {
					amqpAt = sql.NullInt64{Int64: nanos(r.AMQPAt), Valid: true}
				}
				lost++
				res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE outbox SET
						published_kafka_at = COALESCE(published_kafka_at, ?),
						published_amqp_at = COALESCE(published_amqp_at, ?),
						attempts = attempts + 1, last_error = ?
					WHERE id = ? AND claimed_by = ? AND sent_at IS NULL`),
					kafkaAt, amqpAt, truncate(r.Err.Error(), 1000), r.ID, owner)
				if err != nil {
					return err
				}
				if err := count(res); err != nil {
					return err
				}
			}
			// Failed or not attempted: release the job's pending rows.
			if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE outbox SET claimed_by = NULL, claimed_until = NULL
				WHERE job_id = ? AND claimed_by = ? AND sent_at IS NULL`), r.JobID, owner); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, dbErr("complete outbox", err)
	}
	return lost, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// OutboxBacklog counts the rows not yet sent.
func (s *Store) OutboxBacklog(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").Scan(&n); err != nil {
		return 0, dbErr("outbox backlog", err)
	}
	return n, nil
}

// PurgeOutbox deletes rows sent before cutoff and returns how many.
func (s *Store) PurgeOutbox(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.db.Rebind("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?"), nanos(cutoff))
	if err != nil {
		return 0, dbErr("purge outbox", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, dbErr("purge outbox", err)
	}
	return n, nil
}
