package inbox

import (
	"context"
	"database/sql"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

// UnitOfWork is the inbox as use-case code sees it: it applies each event
// once, in one transaction with its dedup mark and offset, through R, a view
// of the consumer's store bound to that transaction. The use case declares R
// (the writes it needs) and never sees the *sql.Tx; the composition root
// supplies bind, which builds R over the transaction from the adapter.
//
// bind is called once per transaction: once per message for Apply, once
// per batch for ApplyBatch, and again when a rolled-back transaction is
// retried, so R may cache what it read in its transaction (statements, rows).
// bind also gets the messages the transaction applies, for a view that reads
// their records ahead.
//
// When R is a Flusher, Flush runs once per transaction that applied at least
// one event, after the last work and before the offsets are stored and the
// transaction commits: a view may so keep its writes in memory and write
// them once per transaction (one row per record touched, multi-row inserts)
// instead of once per event, with the same exactly-once guarantee.
type UnitOfWork[R any] struct {
	ib   *Inbox
	bind func(tx *sql.Tx, msgs []*bus.Message) R
}

// Flusher is a transaction view that defers writes to the end of its
// transaction; see UnitOfWork.
type Flusher interface {
	// Flush writes what the view deferred, in its transaction.
	Flush(ctx context.Context) error
}

// NewUnitOfWork returns the unit of work of ib whose transactions are seen
// through bind. It panics when ib or bind is nil, which are programming errors.
func NewUnitOfWork[R any](ib *Inbox, bind func(tx *sql.Tx, msgs []*bus.Message) R) *UnitOfWork[R] {
	if ib == nil || bind == nil {
		panic("inbox.NewUnitOfWork: nil inbox or bind")
	}
	return &UnitOfWork[R]{ib: ib, bind: bind}
}

// Inbox returns the inbox the unit of work applies through.
func (u *UnitOfWork[R]) Inbox() *Inbox { return u.ib }

// Apply applies msg with the semantics of Inbox.Handler: work runs at most
// once per event id, inside the transaction that marks it and records the
// offset; a duplicate returns nil without calling work. work may be called
// again, with a new R, after a rolled-back attempt.
func (u *UnitOfWork[R]) Apply(ctx context.Context, msg *bus.Message, work func(ctx context.Context, tx R, msg *bus.Message, eventID string) error) error {
	msgs := []*bus.Message{msg}
	var (
		cur   *sql.Tx
		bound R
	)
	return u.ib.handler(func(ctx context.Context, tx *sql.Tx, msg *bus.Message, eventID string) error {
		cur, bound = tx, u.bind(tx, msgs)
		return work(ctx, bound, msg, eventID)
	}, func(ctx context.Context, tx *sql.Tx) error {
		return flush(ctx, tx, cur, bound)
	})(ctx, msg)
}

// flush flushes bound when it is a Flusher bound to tx.
func flush[R any](ctx context.Context, tx, cur *sql.Tx, bound R) error {
	if f, ok := any(bound).(Flusher); ok && tx == cur {
		return f.Flush(ctx)
	}
	return nil
}

// ApplyBatch applies msgs in one transaction with the semantics of
// Inbox.ApplyBatch; work sees every message of one transaction through the
// same R, flushed once at its end when it is a Flusher.
func (u *UnitOfWork[R]) ApplyBatch(ctx context.Context, msgs []*bus.Message, work func(ctx context.Context, tx R, msg *bus.Message, eventID string) error) error {
	var (
		cur   *sql.Tx // kept so that a new transaction never shares its address
		bound R
	)
	return u.ib.applyBatch(ctx, msgs, func(ctx context.Context, tx *sql.Tx, msg *bus.Message, eventID string) error {
		if tx != cur {
			cur, bound = tx, u.bind(tx, msgs)
		}
		return work(ctx, bound, msg, eventID)
	}, func(ctx context.Context, tx *sql.Tx) error {
		return flush(ctx, tx, cur, bound)
	})
}
