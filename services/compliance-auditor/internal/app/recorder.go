// Package app holds the compliance-auditor's use cases: recording consumed
// events into the hash chain (with per-job gap detection), signing periodic
// checkpoints, retention, publishing gap alerts, and verifying, querying and
// exporting the trail.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/domain"
)

// Recorder turns consumed events into audit records inside the inbox
// transaction: the dedup mark, the record, the new head and the per-job
// sequence tracking commit together or not at all.
type Recorder struct {
	inbox  Inbox
	codec  *events.Codec
	logger *slog.Logger
	now    func() time.Time
	// appended is told how many records each committed delivery added.
	appended func(n int)
}

// NewRecorder returns a recorder appending through ib. appended, if not nil,
// is called after each commit with the number of records added (the
// checkpointer counts them).
func NewRecorder(ib Inbox, codec *events.Codec, logger *slog.Logger, now func() time.Time, appended func(int)) *Recorder {
	if now == nil {
		now = time.Now
	}
	if appended == nil {
		appended = func(int) {}
	}
	return &Recorder{inbox: ib, codec: codec, logger: logger, now: now, appended: appended}
}

// Handle records one message: the bus handler of the per-message consumer.
func (r *Recorder) Handle(ctx context.Context, msg *bus.Message) error {
	n := 0
	err := r.inbox.Apply(ctx, msg, func(ctx context.Context, tx RecordTx, msg *bus.Message, eventID string) error {
		n = 0
		added, err := r.apply(ctx, tx, msg, eventID)
		n = added
		return err
	})
	if err != nil {
		return err
	}
	r.appended(n)
	return nil
}

// HandleBatch records msgs in one transaction: the batch handler of the
// batch consumer. The messages are decoded before the transaction starts, so
// that decoding does not hold the database's write lock. On an error nothing
// of the batch is kept, and the consumer hands the messages one by one to
// Handle, so a poison message is retried or dead-lettered alone.
func (r *Recorder) HandleBatch(ctx context.Context, msgs []*bus.Message) error {
	decoded := make(map[*bus.Message]events.Event, len(msgs))
	for i, m := range msgs {
		ev, err := r.decode(m)
		if err != nil {
			return fmt.Errorf("batch message %d: %w", i, err)
		}
		decoded[m] = ev
	}
	n := 0
	var last RecordTx
	err := r.inbox.ApplyBatch(ctx, msgs, func(ctx context.Context, tx RecordTx, msg *bus.Message, eventID string) error {
		if tx != last {
			n, last = 0, tx // a retried transaction starts over
		}
		added, err := r.record(ctx, tx, decoded[msg], eventID)
		n += added
		return err
	})
	if err != nil {
		return err
	}
	r.appended(n)
	return nil
}

// apply records one message in tx and returns how many records it added (0
// for an event the trail does not record).
func (r *Recorder) apply(ctx context.Context, tx RecordTx, msg *bus.Message, eventID string) (int, error) {
	ev, err := r.decode(msg)
	if err != nil {
		return 0, err
	}
	return r.record(ctx, tx, ev, eventID)
}

// record records the decoded event ev in tx.
func (r *Recorder) record(ctx context.Context, tx RecordTx, ev events.Event, eventID string) (int, error) {
	if ev.EventID != eventID {
		return 0, bus.Permanent(fmt.Errorf("event_id header %q does not match the event's id %q", eventID, ev.EventID))
	}
	if !domain.Audited(ev.EventType) {
		return 0, nil
	}
	now := r.now()
	rec, err := domain.RecordFromEvent(ev, now)
	if err != nil {
		return 0, bus.Permanent(err)
	}
	if _, err := tx.Append(ctx, rec); err != nil {
		return 0, err
	}
	if ev.Topic() == events.TopicJobLifecycle && ev.Sequence > 0 {
		gap, err := tx.TrackJobSequence(ctx, ev.Key(), ev.Sequence, ev.EventID, now)
		if err != nil {
			return 0, err
		}
		if gap != nil {
			r.logger.WarnContext(ctx, "gap in job lifecycle sequence", "job_id", gap.JobID,
				"first_missing", gap.FirstMissing, "last_missing", gap.LastMissing, "event_id", gap.EventID)
		}
	}
	return 1, nil
}

// auditedTopics are the canonical topics whose schemas decode what the
// auditor consumes. A message is decoded with the schema of its own topic
// when that is one of them, else (a renamed topic, e.g. in tests) with each
// in turn.
var auditedTopics = []string{events.TopicJobLifecycle, events.TopicAuditTrail}

func (r *Recorder) decode(msg *bus.Message) (events.Event, error) {
	for _, t := range auditedTopics {
		if msg.Topic == t {
			return r.codec.FromMessage(msg)
		}
	}
	var errs []error
	for _, t := range auditedTopics {
		ev, err := r.codec.Decode(t, msg.Value)
		if err == nil {
			return ev, nil
		}
		errs = append(errs, err)
	}
	return events.Event{}, events.DecodeFailure(fmt.Errorf("decode %s message at partition %d offset %d: %w", msg.Topic, msg.Partition, msg.Offset, errors.Join(errs...)))
}
