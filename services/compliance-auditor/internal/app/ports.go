package app

import (
	"context"
	"iter"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/domain"
)

// The interfaces below are what the use cases need from the outside world;
// the adapters implement them and internal/service wires them.

// RecordTx is the store seen from inside one inbox transaction: the writes
// recording an event makes, committed with its dedup mark or not at all.
// A retried transaction comes with a new RecordTx; the recorder tells them
// apart by comparing them, so an implementation must be comparable (a
// pointer, as the adapter's is).
type RecordTx interface {
	// Append chains rec after the head, stores it and moves the head.
	Append(ctx context.Context, rec auditchain.Record) (auditchain.Record, error)
	// TrackJobSequence records that the lifecycle event eventID of jobID
	// carried seq, and returns the gap it opened, if any.
	TrackJobSequence(ctx context.Context, jobID string, seq int64, eventID string, now time.Time) (*domain.Gap, error)
}

// RecordWork is the effect of one event inside the inbox transaction.
type RecordWork = func(ctx context.Context, tx RecordTx, msg *bus.Message, eventID string) error

// Inbox is the transactional inbox as a unit of work: it applies each event
// at most once, in one transaction with its dedup mark and offset
// (inbox.UnitOfWork satisfies it).
type Inbox interface {
	Apply(ctx context.Context, msg *bus.Message, work RecordWork) error
	ApplyBatch(ctx context.Context, msgs []*bus.Message, work RecordWork) error
}

// ChainReader reads the stored chain: the head, records and checkpoints.
type ChainReader interface {
	Head(ctx context.Context) (auditchain.Head, error)
	// Records yields the records from..to in sequence order.
	Records(ctx context.Context, from, to uint64) iter.Seq2[*auditchain.Record, error]
	// LatestCheckpoint returns the newest checkpoint at or below atOrBelow
	// (0 means any), or an error matching domain.ErrNotFound.
	LatestCheckpoint(ctx context.Context, atOrBelow uint64) (auditchain.Checkpoint, error)
}

// CheckpointStore is what the checkpointer reads and writes.
type CheckpointStore interface {
	ChainReader
	SaveCheckpoint(ctx context.Context, c auditchain.Checkpoint) error
}

// TrailStore is what the read side of the trail reads.
type TrailStore interface {
	ChainReader
	// Checkpoints returns the stored checkpoints over from..to.
	Checkpoints(ctx context.Context, from, to uint64) ([]auditchain.Checkpoint, error)
	// Query returns at most limit records matching f after sequence after.
	Query(ctx context.Context, f domain.Filter, after uint64, limit int) ([]auditchain.Record, error)
}

// RetentionStore drops old records behind a signed checkpoint.
type RetentionStore interface {
	ApplyRetention(ctx context.Context, cutoff time.Time) (deleted int64, anchor uint64, err error)
}

// GapStore keeps the detected sequence gaps and whether they were alerted.
type GapStore interface {
	PendingGaps(ctx context.Context, limit int) ([]domain.Gap, error)
	ResolvedGaps(ctx context.Context, limit int) ([]domain.Gap, error)
	MarkGapAlerted(ctx context.Context, g domain.Gap, at time.Time) error
	MarkGapResolveAlerted(ctx context.Context, g domain.Gap, at time.Time) error
}
