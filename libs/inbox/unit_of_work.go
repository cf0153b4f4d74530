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
type UnitOfWork[R any] struct {
	ib   *Inbox
	bind func(tx *sql.Tx, msgs []*bus.Message) R
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
	return u.ib.Handler(func(ctx context.Context, tx *sql.Tx, msg *bus.Message, eventID string) error {
		return work(ctx, u.bind(tx, msgs), msg, eventID)
	})(ctx, msg)
}

// ApplyBatch applies msgs in one transaction with the semantics of
// Inbox.ApplyBatch; work sees every message of one transaction through the
// same R.
func (u *UnitOfWork[R]) ApplyBatch(ctx context.Context, msgs []*bus.Message, work func(ctx context.Context, tx R, msg *bus.Message, eventID string) error) error {
	var (
		cur   *sql.Tx // kept so that a new transaction never shares its address
		bound R
	)
	return u.ib.ApplyBatch(ctx, msgs, func(ctx context.Context, tx *sql.Tx, msg *bus.Message, eventID string) error {
		if tx != cur {
			cur, bound = tx, u.bind(tx, msgs)
		}
		return work(ctx, bound, msg, eventID)
	})
}
