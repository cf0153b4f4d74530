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
	amqp := s.db.Rebind(`INSERT INTO outbox_amqp (id, job_id, seq) SELECT id, job_id, seq FROM outbox WHERE event_id = ?`)
	for i, r := range rows {
		var rk sql.NullString
		if r.routingKey != "" {
			rk = sql.NullString{String: r.routingKey, Valid: true}
		}
		if _, err := tx.ExecContext(ctx, q, r.eventID, r.eventType, jobID, last+int64(i)+1,
			r.msg.Topic, r.msg.Key, r.msg.Value, r.headers, rk, now); err != nil {
			return err
		}
		if r.routingKey != "" {
			if _, err := tx.ExecContext(ctx, amqp, r.eventID); err != nil {
				return err
			}
		}
	}
	return nil
}

// Leg is one destination of the outbox: Kafka (every row) or RabbitMQ (the
// rows with a routing key). The legs progress independently, each in seq
// order per job, with leases, attempts and parking of their own: a RabbitMQ
// outage never holds back Kafka.
type Leg int

// The legs.
const (
	LegKafka Leg = iota
	LegAMQP
)

func (l Leg) String() string {
	if l == LegAMQP {
		return "rabbitmq"
	}
	return "kafka"
}

// legSQL names where a leg keeps its state: the Kafka leg in outbox (whose
// sent_at marks it done), the RabbitMQ leg in outbox_amqp, one row per
// outbox row with a routing key. The legs never update each other's rows.
type legSQL struct {
	table, pending string
	// doneSet marks a row done; v.column2 is its acknowledgement time.
	doneSet string
}

func (l Leg) sql() legSQL {
	if l == LegAMQP {
		return legSQL{table: "outbox_amqp", pending: "published_at IS NULL", doneSet: "published_at = v.column2"}
	}
	return legSQL{table: "outbox", pending: "sent_at IS NULL",
		doneSet: "published_kafka_at = COALESCE(published_kafka_at, v.column2), sent_at = v.column2"}
}

// PendingEvent is one outbox row a relay claimed for a leg.
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
	CreatedAt  time.Time
	// Attempts counts the failed publishes of this leg so far.
	Attempts int
}

// Result is what a relay did with one claimed row on a leg.
type Result struct {
	ID    int64
	JobID string
	// At is when the leg's broker acknowledged the event; zero when it did
	// not (a failure, or a row not attempted after an earlier row of its job
	// failed).
	At time.Time
	// Err is set when publishing failed: the row stays pending on the leg,
	// its attempts grow and the job's remaining rows of the leg are released.
	Err error
	// RetryAt, after a failure, keeps the job off the leg until then (the
	// job's backoff; other jobs are not held back). Zero: at once.
	RetryAt time.Time
	// Park, after a failure no retry can change, parks the row: the leg
	// does not publish it, nor the job's later rows, until RetryParked.
	Park bool
}

// ClaimOutbox gives relay owner the rows of up to maxJobs jobs that leg has
// to publish, leased until now+lease, in (job, seq) order.
//
// A job is claimed through its head on the leg, its pending row of lowest
// seq, and only when that head is neither leased by another relay (nor held
// back by its backoff) nor parked; claiming it leases every pending row of
// the job on that leg. So one relay at a time holds a job on a leg, and no
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
func (s *Store) ClaimOutbox(ctx context.Context, leg Leg, owner string, maxJobs int, lease time.Duration) ([]PendingEvent, error) {
	if owner == "" || maxJobs < 1 || lease <= 0 {
		return nil, errors.New("claim outbox: need an owner, maxJobs >= 1 and a positive lease")
	}
	l := leg.sql()
	now := s.cfg.Now()
	until := nanos(now.Add(lease))
	headQuery := `SELECT h.job_id FROM ` + l.table + ` h
		WHERE h.` + l.pending + ` AND h.parked_at IS NULL
		  AND (h.claimed_until IS NULL OR h.claimed_until < ?)
		  AND NOT EXISTS (SELECT 1 FROM ` + l.table + ` p WHERE p.job_id = h.job_id AND p.` + l.pending + ` AND p.seq < h.seq)
		ORDER BY h.id LIMIT ?`
	if s.pg {
		headQuery += " FOR UPDATE OF h SKIP LOCKED"
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
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE `+l.table+` SET claimed_by = ?, claimed_until = ?
			WHERE `+l.pending+` AND parked_at IS NULL AND job_id IN (`+in+`)`), args...); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.db.Rebind(`SELECT o.id, o.event_id, o.event_type, o.job_id, o.seq, o.topic, o.msg_key,
				o.payload, o.headers, o.amqp_routing_key, o.created_at, l.attempts
			FROM `+l.table+` l JOIN outbox o ON o.id = l.id
			WHERE l.`+l.pending+` AND l.claimed_by = ? AND l.job_id IN (`+in+`)
			ORDER BY l.job_id, l.seq`), append([]any{owner}, args[2:]...)...)
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
				created          int64
			)
			if err := rows.Scan(&e.ID, &e.EventID, &e.EventType, &e.JobID, &e.Seq, &topic, &key, &value, &hdrs,
				&rk, &created, &e.Attempts); err != nil {
				return err
			}
			headers := map[string]string{}
			if err := json.Unmarshal([]byte(hdrs), &headers); err != nil {
				return fmt.Errorf("outbox row %d: headers: %w", e.ID, err)
			}
			e.Message = &bus.Message{Topic: topic, Key: key, Value: value, Headers: headers}
			e.RoutingKey = rk.String
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

// CompleteOutbox records what relay owner did on leg with its claimed rows,
// in one transaction: a row the leg's broker acknowledged is marked done on
// the leg and released; a failed row counts an attempt and records the
// error, and is held back until its RetryAt, or parked; every row of a
// failed job that is still claimed is released, so that the next claim (by
// any relay) retries the job in order. Rows whose lease owner has meanwhile
// changed are left alone; lost counts them.
func (s *Store) CompleteOutbox(ctx context.Context, leg Leg, owner string, results []Result) (lost int, err error) {
	if len(results) == 0 {
		return 0, nil
	}
	l := leg.sql()
	now := nanos(s.cfg.Now())
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		lost = 0
		var done []Result
		for _, r := range results {
			if r.Err == nil && !r.At.IsZero() {
				done = append(done, r)
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
		for start := 0; start < len(done); start += 500 {
			chunk := done[start:min(start+500, len(done))]
			lost += len(chunk)
			// Each row gets its own acknowledgement time: (id, at) pairs
			// joined as v(column1, column2).
			values := make([]string, len(chunk))
			args := make([]any, 0, 2*len(chunk)+1)
			for i, r := range chunk {
				values[i] = "(CAST(? AS BIGINT), CAST(? AS BIGINT))"
				args = append(args, r.ID, nanos(r.At))
			}
			args = append(args, owner)
			res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE `+l.table+` SET `+l.doneSet+`, claimed_by = NULL, claimed_until = NULL
				FROM (VALUES `+strings.Join(values, ", ")+`) AS v
				WHERE `+l.table+`.id = v.column1 AND `+l.table+`.claimed_by = ? AND `+l.table+`.`+l.pending), args...)
			if err != nil {
				return err
			}
			if err := count(res); err != nil {
				return err
			}
		}
		for _, r := range results {
			if r.Err == nil && !r.At.IsZero() {
				continue
			}
			if r.Err != nil {
				var parked, retryAt sql.NullInt64
				if r.Park {
					parked = sql.NullInt64{Int64: now, Valid: true}
				} else if !r.RetryAt.IsZero() {
					retryAt = sql.NullInt64{Int64: nanos(r.RetryAt), Valid: true}
				}
				lost++
				res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE `+l.table+` SET
						attempts = attempts + 1, last_error = ?, parked_at = ?, claimed_by = NULL, claimed_until = ?
					WHERE id = ? AND claimed_by = ? AND `+l.pending),
					truncate(r.Err.Error(), 1000), parked, retryAt, r.ID, owner)
				if err != nil {
					return err
				}
				if err := count(res); err != nil {
					return err
				}
			}
			// Failed or not attempted: release the job's claimed rows.
			if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE `+l.table+` SET claimed_by = NULL, claimed_until = NULL
				WHERE job_id = ? AND claimed_by = ? AND `+l.pending), r.JobID, owner); err != nil {
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

// ParkedEvent is an outbox row parked on a leg.
type ParkedEvent struct {
	ID        int64
	EventID   string
	EventType string
	JobID     string
	Seq       int64
	Leg       Leg
	Attempts  int
	LastError string
	ParkedAt  time.Time
}

// ListParked returns the parked rows of both legs, oldest first.
func (s *Store) ListParked(ctx context.Context) ([]ParkedEvent, error) {
	var out []ParkedEvent
	for _, leg := range []Leg{LegKafka, LegAMQP} {
		l := leg.sql()
		rows, err := s.db.QueryContext(ctx, `SELECT o.id, o.event_id, o.event_type, o.job_id, o.seq, l.attempts, COALESCE(l.last_error, ''), l.parked_at
			FROM `+l.table+` l JOIN outbox o ON o.id = l.id WHERE l.parked_at IS NOT NULL AND l.`+l.pending+` ORDER BY o.id`)
		if err != nil {
			return nil, dbErr("list parked outbox rows", err)
		}
		for rows.Next() {
			e := ParkedEvent{Leg: leg}
			var parked int64
			if err := rows.Scan(&e.ID, &e.EventID, &e.EventType, &e.JobID, &e.Seq, &e.Attempts, &e.LastError, &parked); err != nil {
				rows.Close()
				return nil, dbErr("list parked outbox rows", err)
			}
			e.ParkedAt = fromNanos(parked)
			out = append(out, e)
		}
		if err := rows.Close(); err != nil {
			return nil, dbErr("list parked outbox rows", err)
		}
	}
	return out, nil
}

// RetryParked unparks the parked rows of both legs whose event id is in ids
// (every parked row when ids is empty), so the relay publishes them again,
// and returns how many it unparked.
func (s *Store) RetryParked(ctx context.Context, ids ...string) (int64, error) {
	var total int64
	for _, leg := range []Leg{LegKafka, LegAMQP} {
		l := leg.sql()
		q := `UPDATE ` + l.table + ` SET parked_at = NULL, claimed_until = NULL WHERE parked_at IS NOT NULL AND ` + l.pending
		var args []any
		if len(ids) > 0 {
			q += ` AND id IN (SELECT id FROM outbox WHERE event_id IN (` + placeholders(len(ids)) + `))`
			for _, id := range ids {
				args = append(args, id)
			}
		}
		res, err := s.db.ExecContext(ctx, s.db.Rebind(q), args...)
		if err != nil {
			return total, dbErr("retry parked outbox rows", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, dbErr("retry parked outbox rows", err)
		}
		total += n
	}
	return total, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// OutboxBacklog counts what the legs have still to publish: rows not yet
// on Kafka plus rows not yet on RabbitMQ.
func (s *Store) OutboxBacklog(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL)
		+ (SELECT COUNT(*) FROM outbox_amqp WHERE published_at IS NULL)`).Scan(&n); err != nil {
		return 0, dbErr("outbox backlog", err)
	}
	return n, nil
}

// PurgeOutbox deletes the rows both legs finished before cutoff and returns
// how many outbox rows it deleted.
func (s *Store) PurgeOutbox(ctx context.Context, cutoff time.Time) (int64, error) {
	var res sql.Result
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM outbox_amqp WHERE published_at IS NOT NULL AND published_at < ?`), nanos(cutoff)); err != nil {
			return err
		}
		var err error
		res, err = tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?
			AND NOT EXISTS (SELECT 1 FROM outbox_amqp a WHERE a.id = outbox.id)`), nanos(cutoff))
		return err
	})
	if err != nil {
		return 0, dbErr("purge outbox", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, dbErr("purge outbox", err)
	}
	return n, nil
}
