// Package inbox is the one transactional inbox of the fleet's stateful
// consumers (metrics, notifications, auditor).
//
// For every message the inbox opens one database transaction in which it
// records the event id as processed for its consumer, applies the consumer's
// writes and records the message's offset. A redelivered event finds its id
// already recorded and changes nothing; an apply that fails rolls back its
// writes and the mark together, so a retry applies the event exactly once.
// The bus runner marks the Kafka offset only after the handler returned nil,
// that is after the commit.
//
// Dedup marks are kept in inbox_processed and pruned by PruneProcessed: the
// retention given to it must exceed the longest horizon over which an event
// can be delivered again (consumer-group rewinds, replays from the topic,
// duplicate publishes by a relay after a crash). A rebuild that replays a
// topic from the start calls Reset (or ResetTx inside the transaction that
// clears the consumer's own tables) instead of relying on dedup.
package inbox

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
)

// HeaderEventID is the message header carrying the event id, the dedup key.
// Producers set it on every event (Kafka and AMQP alike).
const HeaderEventID = "event_id"

// ErrNoEventID is the (permanent) failure of a message without an event id.
var ErrNoEventID = errors.New("message without event_id")

// MigrationComponent is the component the inbox's tables are migrated as.
const MigrationComponent = "inbox"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the inbox tables in db.
func Migrate(ctx context.Context, db *sqlstore.DB) error {
	return sqlstore.Migrate(ctx, db, migrations, "migrations", sqlstore.WithComponent(MigrationComponent))
}

// ApplyFunc applies one event's effect inside the inbox transaction tx. It
// must write only through tx, and may be called again for the same event
// after a rolled-back attempt. An error rolls back the whole transaction;
// wrap a failure that retrying cannot fix with bus.Permanent.
type ApplyFunc func(ctx context.Context, tx *sql.Tx, msg *bus.Message, eventID string) error

// Option adjusts an Inbox.
type Option func(*Inbox)

// WithClock replaces time.Now for processed_at and pruning.
func WithClock(now func() time.Time) Option {
	return func(ib *Inbox) { ib.now = now }
}

// WithoutOffsets stops the inbox from recording offsets, for sources such as
// AMQP whose delivery tags are not positions in a log.
func WithoutOffsets() Option {
	return func(ib *Inbox) { ib.trackOffsets = false }
}

// Inbox deduplicates and applies the events of one consumer.
type Inbox struct {
	db           *sqlstore.DB
	consumer     string
	logger       *slog.Logger
	now          func() time.Time
	trackOffsets bool
	q            queries

	processed  prometheus.Counter
	duplicates prometheus.Counter

	// markMu guards markStmt, q.markFull prepared once on the write pool
	// (see markStatement).
	markMu   sync.Mutex
	markStmt *sql.Stmt
}

type queries struct {
	insertProcessed, upsertOffset, offsets, resetProcessed, resetOffsets, prune string
	// markFull marks markChunk events in one statement (see markBatch).
	markFull string
}

// markChunk bounds the events one statement of a batch marks (6 parameters
// each, well below SQLite's and PostgreSQL's parameter limits).
const markChunk = 500

// markRows is the statement marking n events and returning the ids it
// inserted, that is the ones not processed before.
func markRows(db *sqlstore.DB, n int) string {
	return db.Rebind(`INSERT INTO inbox_processed (consumer, event_id, topic, msg_partition, msg_offset, processed_at) VALUES ` +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", n), ", ") +
		` ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id`)
}

// pruneChunk bounds the rows one pruning transaction deletes, so pruning
// never holds the (SQLite) write lock for long.
const pruneChunk = 5000

// New returns the inbox of consumer over db, whose inbox tables must have
// been created with Migrate. Its counters fleet_inbox_processed_total and
// fleet_inbox_duplicates_total are registered with reg unless reg is nil;
// several inboxes may share one registry. New panics when db is nil or
// consumer is empty, which are programming errors.
func New(db *sqlstore.DB, consumer string, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) *Inbox {
	if db == nil || consumer == "" {
		panic("inbox.New: nil db or empty consumer name")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ib := &Inbox{
		db:           db,
		consumer:     consumer,
		logger:       logger.With("component", "inbox", "consumer", consumer),
		now:          time.Now,
		trackOffsets: true,
		q: queries{
			insertProcessed: db.Rebind(`INSERT INTO inbox_processed (consumer, event_id, topic, msg_partition, msg_offset, processed_at)
VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (consumer, event_id) DO NOTHING`),
			upsertOffset: db.Rebind(`INSERT INTO inbox_offsets (consumer, topic, msg_partition, msg_offset) VALUES (?, ?, ?, ?)
ON CONFLICT (consumer, topic, msg_partition) DO UPDATE SET msg_offset = excluded.msg_offset
WHERE excluded.msg_offset > inbox_offsets.msg_offset`),
			offsets:        db.Rebind(`SELECT msg_partition, msg_offset FROM inbox_offsets WHERE consumer = ? AND topic = ?`),
			resetProcessed: db.Rebind(`DELETE FROM inbox_processed WHERE consumer = ?`),
			resetOffsets:   db.Rebind(`DELETE FROM inbox_offsets WHERE consumer = ?`),
			prune: db.Rebind(fmt.Sprintf(`DELETE FROM inbox_processed WHERE consumer = ? AND event_id IN (
SELECT event_id FROM inbox_processed WHERE consumer = ? AND processed_at < ? LIMIT %d)`, pruneChunk)),
		},
	}
	ib.q.markFull = markRows(db, markChunk)
	for _, opt := range opts {
		opt(ib)
	}
	labels := prometheus.Labels{"consumer": consumer}
	processed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_inbox_processed_total",
		Help: "Events whose effect the inbox applied and committed, by consumer.",
	}, []string{"consumer"})
	duplicates := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_inbox_duplicates_total",
		Help: "Redelivered events the inbox recognised by event_id and skipped, by consumer.",
	}, []string{"consumer"})
	ib.processed = register(reg, processed, ib.logger).With(labels)
	ib.duplicates = register(reg, duplicates, ib.logger).With(labels)
	return ib
}

// register registers c with reg, sharing a collector already registered
// under the same name; a failure only costs the metric, so it is logged.
func register(reg prometheus.Registerer, c *prometheus.CounterVec, logger *slog.Logger) *prometheus.CounterVec {
	c, err := bus.RegisterMetric(reg, c)
	if err != nil {
		logger.Warn("register inbox metrics", "error", err)
	}
	return c
}

// Consumer is the consumer name the inbox deduplicates for.
func (ib *Inbox) Consumer() string { return ib.consumer }

// EventID returns the event id of msg, or a permanent ErrNoEventID.
func EventID(msg *bus.Message) (string, error) {
	id := msg.Header(HeaderEventID)
	if id == "" {
		return "", bus.Permanent(ErrNoEventID)
	}
	return id, nil
}

// Handler returns the bus handler that applies each message once: in one
// transaction it marks the event id processed, runs apply and records the
// offset (keeping the highest). A message whose event id is already marked
// commits nothing else and returns nil. A message without event id fails
// permanently. Errors from apply are returned wrapped, so the runner retries
// them or, for bus.Permanent ones, sends the message to the dead-letter topic.
func (ib *Inbox) Handler(apply ApplyFunc) bus.Handler {
	return ib.handler(apply, nil)
}

// FinishFunc runs once at the end of a transaction that applied at least one
// event, after the last apply and before the offsets are stored and the
// transaction commits: the place for writes an apply deferred (coalesced
// rows, a multi-row insert). An error rolls back the whole transaction.
type FinishFunc func(ctx context.Context, tx *sql.Tx) error

// handler is Handler with finish run after a (non-duplicate) apply.
func (ib *Inbox) handler(apply ApplyFunc, finish FinishFunc) bus.Handler {
	return func(ctx context.Context, msg *bus.Message) error {
		id, err := EventID(msg)
		if err != nil {
			return fmt.Errorf("inbox %s: %w", ib.consumer, err)
		}
		var dup bool
		err = ib.db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			dup, err = ib.process(ctx, tx, msg, id, apply)
			if err != nil || dup {
				return err
			}
			if finish != nil {
				if err := finish(ctx, tx); err != nil {
					return fmt.Errorf("finish: %w", err)
				}
			}
			if !ib.trackOffsets {
				return nil
			}
			return ib.storeOffset(ctx, tx, msg.Topic, msg.Partition, msg.Offset)
		})
		if err != nil {
			return fmt.Errorf("inbox %s: event %s: %w", ib.consumer, id, err)
		}
		if dup {
			ib.duplicates.Inc()
			ib.logger.DebugContext(ctx, "duplicate event skipped", "event_id", id, "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset)
			return nil
		}
		ib.processed.Inc()
		return nil
	}
}

// process marks id processed and applies msg, or reports a duplicate.
func (ib *Inbox) process(ctx context.Context, tx *sql.Tx, msg *bus.Message, id string, apply ApplyFunc) (dup bool, err error) {
	res, err := tx.ExecContext(ctx, ib.q.insertProcessed, ib.consumer, id, msg.Topic, msg.Partition, msg.Offset, ib.now().UnixMicro())
	if err != nil {
		return false, fmt.Errorf("mark processed: %w", err)
	}
	// ON CONFLICT DO NOTHING inserts no row for a known id. On PostgreSQL a
	// concurrent transaction inserting the same id makes this statement wait
	// for it: if it commits, this one is a duplicate; if it rolls back, this
	// one inserts. No unique-violation error reaches the caller either way.
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("mark processed: %w", err)
	}
	if n == 0 {
		return true, nil
	}
	if err := apply(ctx, tx, msg, id); err != nil {
		return false, fmt.Errorf("apply: %w", err)
	}
	return false, nil
}

func (ib *Inbox) storeOffset(ctx context.Context, tx *sql.Tx, topic string, partition int32, offset int64) error {
	if _, err := tx.ExecContext(ctx, ib.q.upsertOffset, ib.consumer, topic, partition, offset); err != nil {
		return fmt.Errorf("store offset %s/%d@%d: %w", topic, partition, offset, err)
	}
	return nil
}

// BatchError is the failure of ApplyBatch: the message at Index failed and
// the whole batch was rolled back.
type BatchError struct {
	Index   int
	EventID string
	Err     error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("inbox batch: message %d (event %q): %v", e.Index, e.EventID, e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

type partitionKey struct {
	topic     string
	partition int32
}

// ApplyBatch applies msgs in one transaction with the same per-event
// semantics as Handler: each event id is applied at most once, whether it
// repeats within the batch or was processed before; the highest offset per
// topic partition among the applied messages is recorded. When any message
// fails (no event id, or apply returns an error) nothing of the batch is
// kept and a *BatchError names the message; the caller then delivers the
// messages one by one through Handler, so the failing one is retried or
// dead-lettered on its own while the others are applied.
func (ib *Inbox) ApplyBatch(ctx context.Context, msgs []*bus.Message, apply ApplyFunc) error {
	return ib.applyBatch(ctx, msgs, apply, nil)
}

// applyBatch is ApplyBatch with finish run once after the last apply, when
// at least one message was applied. A failing finish is a *BatchError whose
// Index is len(msgs): no single message is to blame.
func (ib *Inbox) applyBatch(ctx context.Context, msgs []*bus.Message, apply ApplyFunc, finish FinishFunc) error {
	if len(msgs) == 0 {
		return nil
	}
	ids := make([]string, len(msgs))
	for i, msg := range msgs {
		id, err := EventID(msg)
		if err != nil {
			return &BatchError{Index: i, Err: err}
		}
		ids[i] = id
	}
	var full *sql.Stmt
	if len(msgs) >= markChunk {
		full = ib.markStatement(ctx)
	}
	var applied, dups int
	err := ib.db.InTx(ctx, func(tx *sql.Tx) error {
		applied, dups = 0, 0
		fresh, err := ib.markBatch(ctx, tx, msgs, ids, full)
		if err != nil {
			return err
		}
		offsets := make(map[partitionKey]int64, 4)
		for i, msg := range msgs {
			if !fresh[ids[i]] {
				dups++
				continue
			}
			delete(fresh, ids[i]) // a repeat later in the batch is a duplicate
			if err := apply(ctx, tx, msg, ids[i]); err != nil {
				return &BatchError{Index: i, EventID: ids[i], Err: fmt.Errorf("apply: %w", err)}
			}
			applied++
			k := partitionKey{msg.Topic, msg.Partition}
			if cur, ok := offsets[k]; !ok || msg.Offset > cur {
				offsets[k] = msg.Offset
			}
		}
		if finish != nil && applied > 0 {
			if err := finish(ctx, tx); err != nil {
				return &BatchError{Index: len(msgs), Err: fmt.Errorf("finish: %w", err)}
			}
		}
		if !ib.trackOffsets {
			return nil
		}
		for k, off := range offsets {
			if err := ib.storeOffset(ctx, tx, k.topic, k.partition, off); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("inbox %s: %w", ib.consumer, err)
	}
	ib.processed.Add(float64(applied))
	ib.duplicates.Add(float64(dups))
	if dups > 0 {
		ib.logger.DebugContext(ctx, "duplicate events skipped in batch", "duplicates", dups, "applied", applied)
	}
	return nil
}

// markStatement returns the statement marking markChunk events prepared on
// the write pool, preparing it on first use, or nil when that fails (the
// transaction then prepares it itself and reports the error). A batch's
// transactions use it through Tx.StmtContext, so that on SQLite's one write
// connection the statement is parsed once, not once per batch. It must be
// called outside a transaction: preparing waits for a write connection.
func (ib *Inbox) markStatement(ctx context.Context) *sql.Stmt {
	ib.markMu.Lock()
	defer ib.markMu.Unlock()
	if ib.markStmt == nil {
		st, err := ib.db.Writer().PrepareContext(ctx, ib.q.markFull)
		if err != nil {
			return nil
		}
		ib.markStmt = st
	}
	return ib.markStmt
}

// markBatch marks the event ids of msgs processed in tx, markChunk per
// statement and in id order (so concurrent batches on PostgreSQL wait for
// each other's marks in one order instead of deadlocking), and returns the
// ids it marked: those not processed before. An id repeated within the batch
// is marked once, with its first message. As in process, a mark that a
// concurrent transaction is inserting makes the statement wait for it.
//
// full, when not nil, is the statement of a whole chunk prepared on the
// write pool (markStatement).
func (ib *Inbox) markBatch(ctx context.Context, tx *sql.Tx, msgs []*bus.Message, ids []string, full *sql.Stmt) (map[string]bool, error) {
	first := make(map[string]int, len(msgs))
	for i, id := range ids {
		if _, ok := first[id]; !ok {
			first[id] = i
		}
	}
	unique := make([]string, 0, len(first))
	for id := range first {
		unique = append(unique, id)
	}
	slices.Sort(unique)
	now := ib.now().UnixMicro()
	fresh := make(map[string]bool, len(unique))
	args := make([]any, 0, 6*min(len(unique), markChunk))
	for len(unique) > 0 {
		chunk := unique[:min(markChunk, len(unique))]
		unique = unique[len(chunk):]
		args = args[:0]
		for _, id := range chunk {
			m := msgs[first[id]]
			args = append(args, ib.consumer, id, m.Topic, m.Partition, m.Offset, now)
		}
		var rows *sql.Rows
		var err error
		switch {
		case len(chunk) == markChunk && full != nil:
			rows, err = tx.StmtContext(ctx, full).QueryContext(ctx, args...)
		case len(chunk) == markChunk:
			rows, err = tx.QueryContext(ctx, ib.q.markFull, args...)
		default:
			rows, err = tx.QueryContext(ctx, markRows(ib.db, len(chunk)), args...)
		}
		if err != nil {
			return nil, fmt.Errorf("mark processed: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("mark processed: %w", err)
			}
			fresh[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("mark processed: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("mark processed: %w", err)
		}
	}
	return fresh, nil
}

// Offsets returns, per partition of topic, the offset of the highest message
// this consumer has applied. A consumer resuming from its own store starts
// each partition at the returned offset + 1.
func (ib *Inbox) Offsets(ctx context.Context, topic string) (map[int32]int64, error) {
	rows, err := ib.db.QueryContext(ctx, ib.q.offsets, ib.consumer, topic)
	if err != nil {
		return nil, fmt.Errorf("inbox %s: read offsets of %s: %w", ib.consumer, topic, err)
	}
	defer rows.Close()
	out := make(map[int32]int64)
	for rows.Next() {
		var p int32
		var off int64
		if err := rows.Scan(&p, &off); err != nil {
			return nil, fmt.Errorf("inbox %s: read offsets of %s: %w", ib.consumer, topic, err)
		}
		out[p] = off
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inbox %s: read offsets of %s: %w", ib.consumer, topic, err)
	}
	return out, nil
}

// Reset forgets every processed event id and stored offset of this consumer.
func (ib *Inbox) Reset(ctx context.Context) error {
	return ib.db.InTx(ctx, func(tx *sql.Tx) error { return ib.ResetTx(ctx, tx) })
}

// ResetTx is Reset inside the caller's transaction, so a rebuild can clear
// the consumer's own tables and its inbox state atomically.
func (ib *Inbox) ResetTx(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, ib.q.resetProcessed, ib.consumer); err != nil {
		return fmt.Errorf("inbox %s: reset processed: %w", ib.consumer, err)
	}
	if _, err := tx.ExecContext(ctx, ib.q.resetOffsets, ib.consumer); err != nil {
		return fmt.Errorf("inbox %s: reset offsets: %w", ib.consumer, err)
	}
	return nil
}

// PruneProcessed deletes the dedup marks of events processed more than
// olderThan ago and returns how many it deleted. It deletes in chunks, each
// in its own transaction. olderThan must exceed the redelivery horizon (see
// the package documentation); it must be positive.
func (ib *Inbox) PruneProcessed(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("inbox %s: prune: retention %s is not positive (use Reset to forget everything)", ib.consumer, olderThan)
	}
	cutoff := ib.now().Add(-olderThan).UnixMicro()
	var total int64
	for {
		var n int64
		err := ib.db.InTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, ib.q.prune, ib.consumer, ib.consumer, cutoff)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("inbox %s: prune: %w", ib.consumer, err)
		}
		total += n
		if n < pruneChunk {
			break
		}
	}
	if total > 0 {
		ib.logger.InfoContext(ctx, "pruned dedup marks", "deleted", total, "older_than", olderThan)
	}
	return total, nil
}
