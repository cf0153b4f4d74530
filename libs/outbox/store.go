// Package outbox is the fleet's transactional outbox: a service appends the
// events of a change inside the change's own database transaction, and a
// Relay publishes them to Kafka and, for the events that carry a routing
// key, to a RabbitMQ exchange, marking them sent as the brokers acknowledge
// them.
//
// Rows are ordered per key (a job id, a delivery's job): the relay
// publishes the rows of one key strictly in their seq order on each leg.
// Events are encoded and routed in one place, Encode.
//
// # Tables
//
// The tables are the service's, created by its own migrations, on SQLite
// or PostgreSQL (times are Unix nanoseconds). Tables names them; the store
// needs these columns:
//
//	outbox (Tables.Outbox): the event and the Kafka leg's state
//	  id                 integer primary key, ascending with inserts
//	  event_id           text not null unique
//	  event_type         text not null
//	  <Tables.Key>       text not null       the ordering key
//	  seq                bigint not null     1, 2, ... per key; unique (key, seq)
//	  topic, msg_key     text not null
//	  payload            bytes not null      (BYTEA on PostgreSQL, BLOB or TEXT on SQLite)
//	  headers            text not null       JSON object
//	  amqp_routing_key   text                NULL: Kafka only
//	  created_at         bigint not null
//	  published_kafka_at, sent_at, claimed_until, parked_at bigint
//	  attempts           integer not null default 0
//	  last_error, claimed_by text
//
//	outbox_amqp (Tables.AMQP, "" when the service publishes to Kafka only):
//	the RabbitMQ leg of each row with a routing key
//	  id                 the outbox row's id, primary key
//	  <Tables.Key>, seq  as in outbox
//	  published_at, claimed_until, parked_at bigint
//	  attempts           integer not null default 0
//	  last_error, claimed_by text
//
// testdata/0001_outbox.*.sql holds the reference DDL the contract tests run on.
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
)

// Tables names a service's outbox tables and the column rows are ordered by.
type Tables struct {
	// Outbox is the table of events and of the Kafka leg; default "outbox".
	Outbox string
	// AMQP is the table of the RabbitMQ leg; "" when the service publishes
	// to Kafka only (the store then has the Kafka leg alone).
	AMQP string
	// Key is the ordering column; default "job_id".
	Key string
}

// Options configures a Store.
type Options struct {
	Tables Tables
	// Now is the clock of the outbox's timestamps; nil means time.Now.
	Now func() time.Time
	// WrapErr shapes the errors of the store's calls (a service's
	// "unavailable" sentinel); nil wraps them as "op: err".
	WrapErr func(op string, err error) error
}

// Store is the outbox on a sqlstore.DB: Append inside the caller's
// transaction, and the claims, marks and parking the Relay uses.
type Store struct {
	db   *sqlstore.DB
	t    Tables
	now  func() time.Time
	wrap func(op string, err error) error
	pg   bool
}

// NewStore returns the outbox in db's tables named by opts.
func NewStore(db *sqlstore.DB, opts Options) *Store {
	t := opts.Tables
	if t.Outbox == "" {
		t.Outbox = "outbox"
	}
	if t.Key == "" {
		t.Key = "job_id"
	}
	s := &Store{db: db, t: t, now: opts.Now, wrap: opts.WrapErr, pg: db.Dialect() == sqlstore.DialectPostgres}
	if s.now == nil {
		s.now = time.Now
	}
	if s.wrap == nil {
		s.wrap = func(op string, err error) error { return fmt.Errorf("%s: %w", op, err) }
	}
	return s
}

// Legs returns the legs the store keeps: Kafka, and RabbitMQ when it has an
// AMQP table.
func (s *Store) Legs() []Leg {
	if s.t.AMQP == "" {
		return []Leg{LegKafka}
	}
	return []Leg{LegKafka, LegAMQP}
}

func (s *Store) err(op string, err error) error {
	if err == nil {
		return nil
	}
	return s.wrap(op, err)
}

// Row is one encoded event to append (see Encode).
type Row struct {
	EventID, EventType string
	// Message is the Kafka message: topic, key, value and headers.
	Message *bus.Message
	// RoutingKey is the key on the RabbitMQ exchange; "" for Kafka only.
	RoutingKey string
}

// Batch is the rows of one key to append after its row of seq After (0
// when the key has none yet).
type Batch struct {
	Key   string
	After int64
	Rows  []Row
}

// rowsPerInsert bounds the rows of one multi-row INSERT.
const rowsPerInsert = 200

// Append inserts the batches' rows in tx, the transaction of the change
// that caused them: row i of a batch gets seq After+i+1. Rows with a
// routing key get their RabbitMQ leg too.
func (s *Store) Append(ctx context.Context, tx *sql.Tx, batches ...Batch) error {
	now := s.now().UnixNano()
	var (
		args []any
		n    int
		amqp []any
	)
	flush := func() error {
		if n == 0 {
			return nil
		}
		q := `INSERT INTO ` + s.t.Outbox + ` (event_id, event_type, ` + s.t.Key + `, seq, topic, msg_key, payload, headers, amqp_routing_key, created_at)
			VALUES ` + sqlstore.Tuples(10, n)
		_, err := tx.ExecContext(ctx, s.db.Rebind(q), args...)
		args, n = args[:0], 0
		return err
	}
	for _, b := range batches {
		for i, r := range b.Rows {
			h, err := json.Marshal(r.Message.Headers)
			if err != nil {
				return fmt.Errorf("encode headers of %s: %w", r.EventID, err)
			}
			var rk sql.NullString
			if r.RoutingKey != "" && s.t.AMQP != "" {
				rk = sql.NullString{String: r.RoutingKey, Valid: true}
				amqp = append(amqp, r.EventID)
			}
			args = append(args, r.EventID, r.EventType, b.Key, b.After+int64(i)+1,
				r.Message.Topic, r.Message.Key, r.Message.Value, string(h), rk, now)
			if n++; n == rowsPerInsert {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	for lo := 0; lo < len(amqp); lo += rowsPerInsert {
		chunk := amqp[lo:min(lo+rowsPerInsert, len(amqp))]
		q := `INSERT INTO ` + s.t.AMQP + ` (id, ` + s.t.Key + `, seq) SELECT id, ` + s.t.Key + `, seq FROM ` + s.t.Outbox + `
			WHERE event_id IN (` + sqlstore.Placeholders(len(chunk)) + `)`
		if _, err := tx.ExecContext(ctx, s.db.Rebind(q), chunk...); err != nil {
			return err
		}
	}
	return nil
}

// Leg is one destination of the outbox: Kafka (every row) or RabbitMQ (the
// rows with a routing key). The legs progress independently, each in seq
// order per key, with leases, attempts and parking of their own: a RabbitMQ
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

// legSQL names where a leg keeps its state: the Kafka leg in the outbox
// table (whose sent_at marks it done), the RabbitMQ leg in the AMQP table,
// one row per outbox row with a routing key. The legs never update each
// other's rows.
type legSQL struct {
	table, pending string
	// doneSet marks a row done; v.column2 is its acknowledgement time.
	doneSet string
}

func (s *Store) leg(l Leg) legSQL {
	if l == LegAMQP {
		return legSQL{table: s.t.AMQP, pending: "published_at IS NULL", doneSet: "published_at = v.column2"}
	}
	return legSQL{table: s.t.Outbox, pending: "sent_at IS NULL",
		doneSet: "published_kafka_at = COALESCE(published_kafka_at, v.column2), sent_at = v.column2"}
}

func (s *Store) checkLeg(l Leg) error {
	if l == LegAMQP && s.t.AMQP == "" {
		return errors.New("this outbox has no RabbitMQ leg")
	}
	if l != LegKafka && l != LegAMQP {
		return fmt.Errorf("unknown outbox leg %d", l)
	}
	return nil
}

// PendingEvent is one outbox row a relay claimed for a leg.
type PendingEvent struct {
	ID        int64
	EventID   string
	EventType string
	// JobID is the row's ordering key.
	JobID string
	// Seq numbers the key's outbox rows from 1 in the order written.
	Seq int64
	// Message is the Kafka message as Encode built it: catalogue topic,
	// key, Avro value and headers.
	Message *bus.Message
	// RoutingKey is the key on the RabbitMQ exchange; "" when the event
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
	// not (a failure, or a row not attempted after an earlier row of its key
	// failed).
	At time.Time
	// Err is set when publishing failed: the row stays pending on the leg,
	// its attempts grow and the key's remaining rows of the leg are released.
	Err error
	// RetryAt, after a failure, keeps the key off the leg until then (the
	// key's backoff; other keys are not held back). Zero: at once.
	RetryAt time.Time
	// Park, after a failure no retry can change, parks the row: the leg
	// does not publish it, nor the key's later rows, until RetryParked.
	Park bool
}

// ClaimOutbox gives relay owner the rows of up to maxJobs keys that leg has
// to publish, leased until now+lease, in (key, seq) order.
//
// A key is claimed through its head on the leg, its pending row of lowest
// seq, and only when that head is neither leased by another relay (nor held
// back by its backoff) nor parked; claiming it leases every pending row of
// the key on that leg. So one relay at a time holds a key on a leg, and no
// relay can take row n+1 of a key while row n is pending: the per-key order
// holds across relays. On PostgreSQL the heads are selected with FOR UPDATE
// SKIP LOCKED, so concurrent relays never wait on each other nor pick the
// same key; heads and tails are read by one statement (one snapshot), and
// the rows the claim leases are locked in id order first, as CompleteOutbox
// locks the rows it marks, so that a claim and a mark of the same relay
// may wait for one commit of the other but never deadlock. On SQLite the
// claim runs in a write transaction (BEGIN IMMEDIATE), which admits one
// writer at a time: claims are exclusive trivially.
//
// The relay that holds a key also gets the key's tail: its rows appended
// since the relay claimed it (not leased, held back nor parked), which it
// publishes after the rows it holds; claiming a tail renews the lease of
// the key's rows the relay holds. So a key's next change is published
// without waiting for the marks of its earlier ones, and still by one
// relay, in order.
//
// A lease that ends (relay crashed or stalled) makes the key claimable
// again. A relay must therefore stop publishing before its lease ends (see
// the relay's lease margin) and clocks of replicas must agree to well
// within that margin. A relay that crashed after publishing and before
// CompleteOutbox leaves rows that are published again by the next claim:
// delivery is at least once, and consumers deduplicate on event_id.
func (s *Store) ClaimOutbox(ctx context.Context, leg Leg, owner string, maxJobs int, lease time.Duration) ([]PendingEvent, error) {
	if owner == "" || maxJobs < 1 || lease <= 0 {
		return nil, errors.New("claim outbox: need an owner, maxJobs >= 1 and a positive lease")
	}
	if err := s.checkLeg(leg); err != nil {
		return nil, fmt.Errorf("claim outbox: %w", err)
	}
	l, key := s.leg(leg), s.t.Key
	now := s.now()
	until := now.Add(lease).UnixNano()
	// The heads are found through the pending rows' index (key, seq) WHERE
	// pending, and only then ordered by id: "+h.id" keeps the planners from
	// walking the primary key instead, through every row already sent
	// (which would make each claim cost the whole retained table).
	headQuery := `SELECT h.` + key + ` FROM ` + l.table + ` h
		WHERE h.` + l.pending + ` AND h.parked_at IS NULL
		  AND (h.claimed_until IS NULL OR h.claimed_until < ?)
		  AND NOT EXISTS (SELECT 1 FROM ` + l.table + ` p WHERE p.` + key + ` = h.` + key + ` AND p.` + l.pending + ` AND p.seq < h.seq)
		ORDER BY +h.id LIMIT ?`
	if s.pg {
		headQuery += " FOR UPDATE OF h SKIP LOCKED"
	}
	// The tails of the keys owner holds: rows appended since its claim,
	// neither leased nor held back nor parked, of a key with a row still
	// under owner's lease.
	tailQuery := `SELECT t.id, t.` + key + ` FROM ` + l.table + ` t
		WHERE t.` + l.pending + ` AND t.parked_at IS NULL AND t.claimed_by IS NULL AND t.claimed_until IS NULL
		  AND EXISTS (SELECT 1 FROM ` + l.table + ` p WHERE p.` + key + ` = t.` + key + ` AND p.` + l.pending + `
		    AND p.claimed_by = ? AND p.claimed_until >= ?)`
	// Heads and tails are read by one statement, so from one snapshot. Read
	// by two, a mark of the key's held rows committing between them hides a
	// row appended behind them from both: not a head in the first (the held
	// rows are pending), not a tail in the second (none is pending any
	// more). Its commit's wake-up would then claim nothing, and the row
	// would wait for the next wake-up or poll.
	pickQuery := `WITH heads AS (` + headQuery + `), tails AS (` + tailQuery + `)
		SELECT 0, ` + key + `, 0 FROM heads UNION ALL SELECT 1, ` + key + `, id FROM tails`
	var out []PendingEvent
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		picked, err := tx.QueryContext(ctx, s.db.Rebind(pickQuery), now.UnixNano(), maxJobs, owner, now.UnixNano())
		if err != nil {
			return err
		}
		var (
			keys, tailOf []string
			tailIDs      []any
		)
		for picked.Next() {
			var (
				tail int
				k    string
				id   int64
			)
			if err := picked.Scan(&tail, &k, &id); err != nil {
				picked.Close()
				return err
			}
			switch {
			case tail == 0:
				keys = append(keys, k)
			default:
				tailIDs = append(tailIDs, id)
				if !slices.Contains(tailOf, k) {
					tailOf = append(tailOf, k)
				}
			}
		}
		if err := picked.Close(); err != nil {
			return err
		}
		heads := len(keys)
		for _, k := range tailOf {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return nil
		}
		// The rows claimed: every pending row of the heads' keys, and the
		// tails by id (a row appended since is not one of them).
		var set []any
		for _, k := range keys[:heads] {
			set = append(set, k)
		}
		set = append(set, tailIDs...)
		rowsOf := func(p string) string {
			var which []string
			if heads > 0 {
				which = append(which, p+key+` IN (`+sqlstore.Placeholders(heads)+`)`)
			}
			if len(tailIDs) > 0 {
				which = append(which, p+`id IN (`+sqlstore.Placeholders(len(tailIDs))+`)`)
			}
			return `(` + strings.Join(which, " OR ") + `)`
		}
		claimed := rowsOf("")
		upd, args := claimed, append([]any{owner, until}, set...)
		if tailKeys := keys[heads:]; len(tailKeys) > 0 {
			// Claiming a tail renews the lease of the rows of its key
			// that owner holds.
			upd = `(` + claimed + ` OR (claimed_by = ? AND ` + key + ` IN (` + sqlstore.Placeholders(len(tailKeys)) + `)))`
			args = append(args, owner)
			for _, k := range tailKeys {
				args = append(args, k)
			}
		}
		if s.pg {
			// The rows are locked in id order, as CompleteOutbox locks the
			// rows it marks: the lease renewal above touches rows owner's
			// mark may be marking at the same time, and two transactions
			// that lock overlapping rows in different orders deadlock.
			if err := s.lockInIDOrder(ctx, tx, `SELECT id FROM `+l.table+`
				WHERE `+l.pending+` AND parked_at IS NULL AND `+upd+` ORDER BY id FOR NO KEY UPDATE`, args[2:]...); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE `+l.table+` SET claimed_by = ?, claimed_until = ?
			WHERE `+l.pending+` AND parked_at IS NULL AND `+upd), args...); err != nil {
			return err
		}
		sel := append([]any{owner}, set...)
		rows, err := tx.QueryContext(ctx, s.db.Rebind(`SELECT o.id, o.event_id, o.event_type, o.`+key+`, o.seq, o.topic, o.msg_key,
				o.payload, o.headers, o.amqp_routing_key, o.created_at, l.attempts
			FROM `+l.table+` l JOIN `+s.t.Outbox+` o ON o.id = l.id
			WHERE l.`+l.pending+` AND l.claimed_by = ? AND `+rowsOf("l.")+`
			ORDER BY l.`+key+`, l.seq`), sel...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e               PendingEvent
				topic, mk, hdrs string
				value           []byte
				rk              sql.NullString
				created         int64
			)
			if err := rows.Scan(&e.ID, &e.EventID, &e.EventType, &e.JobID, &e.Seq, &topic, &mk, &value, &hdrs,
				&rk, &created, &e.Attempts); err != nil {
				return err
			}
			headers := map[string]string{}
			if err := json.Unmarshal([]byte(hdrs), &headers); err != nil {
				return fmt.Errorf("outbox row %d: headers: %w", e.ID, err)
			}
			e.Message = &bus.Message{Topic: topic, Key: mk, Value: value, Headers: headers}
			e.RoutingKey = rk.String
			e.CreatedAt = time.Unix(0, created).UTC()
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.err("claim outbox", err)
	}
	return out, nil
}

// CompleteOutbox records what relay owner did on leg with its claimed rows,
// in one transaction: a row the leg's broker acknowledged is marked done on
// the leg and released; a failed row counts an attempt and records the
// error, and is held back until its RetryAt, or parked; every row of a
// failed key that is still claimed is released, so that the next claim (by
// any relay) retries the key in order. Rows whose lease owner has meanwhile
// changed are left alone; lost counts them.
func (s *Store) CompleteOutbox(ctx context.Context, leg Leg, owner string, results []Result) (lost int, err error) {
	if len(results) == 0 {
		return 0, nil
	}
	if err := s.checkLeg(leg); err != nil {
		return 0, fmt.Errorf("complete outbox: %w", err)
	}
	l := s.leg(leg)
	now := s.now().UnixNano()
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		lost = 0
		if s.pg {
			// Lock what this transaction changes, in id order, before
			// changing it (see ClaimOutbox): owner's rows of these results
			// and of their keys.
			ids := make([]int64, len(results))
			keys := make([]string, 0, len(results))
			for i, r := range results {
				ids[i] = r.ID
				if !slices.Contains(keys, r.JobID) {
					keys = append(keys, r.JobID)
				}
			}
			if err := s.lockInIDOrder(ctx, tx, `SELECT id FROM `+l.table+` WHERE claimed_by = ? AND `+l.pending+`
				AND (id = ANY(?) OR `+s.t.Key+` = ANY(?)) ORDER BY id FOR NO KEY UPDATE`, owner, ids, keys); err != nil {
				return err
			}
		}
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
				args = append(args, r.ID, r.At.UnixNano())
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
		var release []any // the keys of failed or unattempted rows, once each
		seen := map[string]bool{}
		for _, r := range results {
			if r.Err == nil && !r.At.IsZero() {
				continue
			}
			if !seen[r.JobID] {
				seen[r.JobID] = true
				release = append(release, r.JobID)
			}
			if r.Err != nil {
				var parked, retryAt sql.NullInt64
				if r.Park {
					parked = sql.NullInt64{Int64: now, Valid: true}
				} else if !r.RetryAt.IsZero() {
					retryAt = sql.NullInt64{Int64: r.RetryAt.UnixNano(), Valid: true}
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
		}
		// Failed or not attempted: release their keys' claimed rows, after
		// the failures are recorded.
		for lo := 0; lo < len(release); lo += 500 {
			chunk := release[lo:min(lo+500, len(release))]
			if _, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE `+l.table+` SET claimed_by = NULL, claimed_until = NULL
				WHERE claimed_by = ? AND `+l.pending+` AND `+s.t.Key+` IN (`+sqlstore.Placeholders(len(chunk))+`)`),
				append([]any{owner}, chunk...)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, s.err("complete outbox", err)
	}
	return lost, nil
}

// ParkedEvent is an outbox row parked on a leg.
type ParkedEvent struct {
	ID        int64
	EventID   string
	EventType string
	// JobID is the row's ordering key.
	JobID     string
	Seq       int64
	Leg       Leg
	Attempts  int
	LastError string
	ParkedAt  time.Time
}

// ListParked returns the parked rows of every leg, oldest first.
func (s *Store) ListParked(ctx context.Context) ([]ParkedEvent, error) {
	var out []ParkedEvent
	for _, leg := range s.Legs() {
		l := s.leg(leg)
		rows, err := s.db.QueryContext(ctx, `SELECT o.id, o.event_id, o.event_type, o.`+s.t.Key+`, o.seq, l.attempts, COALESCE(l.last_error, ''), l.parked_at
			FROM `+l.table+` l JOIN `+s.t.Outbox+` o ON o.id = l.id WHERE l.parked_at IS NOT NULL AND l.`+l.pending+` ORDER BY o.id`)
		if err != nil {
			return nil, s.err("list parked outbox rows", err)
		}
		for rows.Next() {
			e := ParkedEvent{Leg: leg}
			var parked int64
			if err := rows.Scan(&e.ID, &e.EventID, &e.EventType, &e.JobID, &e.Seq, &e.Attempts, &e.LastError, &parked); err != nil {
				rows.Close()
				return nil, s.err("list parked outbox rows", err)
			}
			e.ParkedAt = time.Unix(0, parked).UTC()
			out = append(out, e)
		}
		if err := rows.Close(); err != nil {
			return nil, s.err("list parked outbox rows", err)
		}
	}
	return out, nil
}

// RetryParked unparks the parked rows of every leg whose event id is in ids
// (every parked row when ids is empty), so the relay publishes them again,
// and returns how many it unparked.
func (s *Store) RetryParked(ctx context.Context, ids ...string) (int64, error) {
	var total int64
	for _, leg := range s.Legs() {
		l := s.leg(leg)
		q := `UPDATE ` + l.table + ` SET parked_at = NULL, claimed_until = NULL WHERE parked_at IS NOT NULL AND ` + l.pending
		var args []any
		if len(ids) > 0 {
			q += ` AND id IN (SELECT id FROM ` + s.t.Outbox + ` WHERE event_id IN (` + sqlstore.Placeholders(len(ids)) + `))`
			for _, id := range ids {
				args = append(args, id)
			}
		}
		res, err := s.db.ExecContext(ctx, s.db.Rebind(q), args...)
		if err != nil {
			return total, s.err("retry parked outbox rows", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, s.err("retry parked outbox rows", err)
		}
		total += n
	}
	return total, nil
}

// OutboxBacklog counts what the legs have still to publish: rows not yet
// on Kafka plus rows not yet on RabbitMQ.
func (s *Store) OutboxBacklog(ctx context.Context) (int64, error) {
	q := `SELECT (SELECT COUNT(*) FROM ` + s.t.Outbox + ` WHERE sent_at IS NULL)`
	if s.t.AMQP != "" {
		q += ` + (SELECT COUNT(*) FROM ` + s.t.AMQP + ` WHERE published_at IS NULL)`
	}
	var n int64
	if err := s.db.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return 0, s.err("outbox backlog", err)
	}
	return n, nil
}

// PurgeOutbox deletes the rows every leg finished before cutoff and returns
// how many outbox rows it deleted.
func (s *Store) PurgeOutbox(ctx context.Context, cutoff time.Time) (int64, error) {
	var res sql.Result
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		q := `DELETE FROM ` + s.t.Outbox + ` WHERE sent_at IS NOT NULL AND sent_at < ?`
		if s.t.AMQP != "" {
			if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM `+s.t.AMQP+` WHERE published_at IS NOT NULL AND published_at < ?`), cutoff.UnixNano()); err != nil {
				return err
			}
			q += ` AND NOT EXISTS (SELECT 1 FROM ` + s.t.AMQP + ` a WHERE a.id = ` + s.t.Outbox + `.id)`
		}
		var err error
		res, err = tx.ExecContext(ctx, s.db.Rebind(q), cutoff.UnixNano())
		return err
	})
	if err != nil {
		return 0, s.err("purge outbox", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.err("purge outbox", err)
	}
	return n, nil
}

// lockInIDOrder runs query, a SELECT of ids ... ORDER BY id FOR NO KEY
// UPDATE, on PostgreSQL: it locks the rows in id order. The claims and
// marks of a leg lock the rows they change this way first, so that they
// wait for each other (one commit) instead of deadlocking, which
// PostgreSQL detects only after deadlock_timeout (one second by default).
func (s *Store) lockInIDOrder(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	rows, err := tx.QueryContext(ctx, s.db.Rebind(query), args...)
	if err != nil {
		return err
	}
	for rows.Next() {
	}
	if err := rows.Close(); err != nil {
		return err
	}
	return rows.Err()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
