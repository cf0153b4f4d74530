// Package app holds the metrics-consumer's use cases: ingesting events
// through the transactional inbox, and the aggregate queries.
package app

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/domain"
)

// ConsumerName is the inbox consumer name and the Kafka consumer group.
const ConsumerName = "metrics-consumer"

// JobWriter is the job store seen from inside one inbox transaction. A
// retried transaction comes with a new JobWriter.
type JobWriter interface {
	// Apply merges ev into its job's record; events not about a job are ignored.
	Apply(ctx context.Context, ev events.Event) error
}

// IngestWork is the effect of one event inside the inbox transaction.
type IngestWork = func(ctx context.Context, jobs JobWriter, msg *bus.Message, eventID string) error

// Inbox is the transactional inbox as a unit of work: it applies each event
// at most once, in one transaction with its dedup mark and offset
// (inbox.UnitOfWork satisfies it).
type Inbox interface {
	Apply(ctx context.Context, msg *bus.Message, work IngestWork) error
	ApplyBatch(ctx context.Context, msgs []*bus.Message, work IngestWork) error
}

// JobReader reads the stored job records.
type JobReader interface {
	// Each calls fn for every job matching f.
	Each(ctx context.Context, f domain.Filter, fn func(domain.Row) error) error
}

// Ingest applies job events to the store exactly once: the job records, the
// processed event ids and the offsets commit in one inbox transaction.
type Ingest struct {
	inbox   Inbox
	codec   *events.Codec
	schemas map[string]string
}

// NewIngest returns the ingest use case, writing through ib. schemas maps a
// consumed topic to the catalogue topic whose schemas it carries; a topic
// not in it is its own catalogue topic.
func NewIngest(ib Inbox, codec *events.Codec, schemas map[string]string) *Ingest {
	return &Ingest{inbox: ib, codec: codec, schemas: schemas}
}

// decode reads the event of msg, with the schemas of its catalogue topic.
// The error is permanent (bad bytes never decode) unless the schema
// registry could not be asked.
func (in *Ingest) decode(msg *bus.Message) (events.Event, error) {
	topic := msg.Topic
	if schema, ok := in.schemas[topic]; ok {
		topic = schema
	}
	ev, err := in.codec.Decode(topic, msg.Value)
	if err != nil {
		return events.Event{}, events.DecodeFailure(fmt.Errorf("decode %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err))
	}
	return ev, nil
}

// Handle applies one message; it is the bus handler of the one-by-one path.
func (in *Ingest) Handle(ctx context.Context, msg *bus.Message) error {
	return in.inbox.Apply(ctx, msg, func(ctx context.Context, jobs JobWriter, msg *bus.Message, _ string) error {
		ev, err := in.decode(msg)
		if err != nil {
			return err
		}
		return jobs.Apply(ctx, ev)
	})
}

// HandleBatch applies msgs in one transaction; on any failure nothing is
// kept and the error is returned, so the caller falls back to Handle.
// Messages are decoded before the transaction starts, so decoding runs in
// parallel across partitions while transactions take turns.
func (in *Ingest) HandleBatch(ctx context.Context, msgs []*bus.Message) error {
	decoded := make(map[*bus.Message]events.Event, len(msgs))
	for i, m := range msgs {
		ev, err := in.decode(m)
		if err != nil {
			return fmt.Errorf("batch message %d: %w", i, err)
		}
		decoded[m] = ev
	}
	return in.inbox.ApplyBatch(ctx, msgs, func(ctx context.Context, jobs JobWriter, msg *bus.Message, _ string) error {
		return jobs.Apply(ctx, decoded[msg])
	})
}

// Window is a half-open interval [Start, End) of job creation times.
type Window struct{ Start, End time.Time }

// Queries answers aggregate questions from the store.
type Queries struct {
	jobs JobReader
}

// NewQueries returns the query use cases.
func NewQueries(jobs JobReader) *Queries { return &Queries{jobs: jobs} }

func (w Window) filter() domain.Filter {
	return domain.Filter{FromUS: w.Start.UnixMicro(), ToUS: w.End.UnixMicro()}
}

// JobFilter narrows JobMetrics; empty fields match everything.
type JobFilter struct{ JobID, Agent, System string }

// JobMetrics aggregates the jobs created in w that match f.
func (q *Queries) JobMetrics(ctx context.Context, w Window, f JobFilter) (*domain.Stats, error) {
	flt := w.filter()
	flt.JobID, flt.Agent, flt.System = f.JobID, f.Agent, f.System
	var s domain.Stats
	err := q.jobs.Each(ctx, flt, func(r domain.Row) error {
		s.AddFacts(r.Facts)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("job metrics: %w", err)
	}
	return &s, nil
}

// JobOwner returns the user who owns the job, and false when the store
// knows no job of that id.
func (q *Queries) JobOwner(ctx context.Context, jobID string) (string, bool, error) {
	var owner string
	found := false
	err := q.jobs.Each(ctx, domain.Filter{JobID: jobID}, func(r domain.Row) error {
		owner, found = r.UserID, true
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("job owner: %w", err)
	}
	return owner, found, nil
}

// SystemStats aggregates the jobs created in w per system; system narrows
// to one when not empty.
func (q *Queries) SystemStats(ctx context.Context, w Window, system string) (map[string]*domain.Stats, error) {
	flt := w.filter()
	flt.System = system
	out := map[string]*domain.Stats{}
	err := q.jobs.Each(ctx, flt, func(r domain.Row) error {
		s := out[r.System]
		if s == nil {
			s = &domain.Stats{}
			out[r.System] = s
		}
		s.AddFacts(r.Facts)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("system stats: %w", err)
	}
	return out, nil
}

// Allocation is a user's usage charged to one allocation.
type Allocation struct {
	Name                string
	Jobs                int64
	NodeHours, GPUHours float64
}

// UserUsage aggregates user's jobs created in w, in total and per
// allocation ordered by name.
func (q *Queries) UserUsage(ctx context.Context, w Window, user string) (*domain.Stats, []Allocation, error) {
	flt := w.filter()
	flt.UserID = user
	var total domain.Stats
	byAlloc := map[string]*Allocation{}
	err := q.jobs.Each(ctx, flt, func(r domain.Row) error {
		total.AddFacts(r.Facts)
		a := byAlloc[r.Allocation]
		if a == nil {
			a = &Allocation{Name: r.Allocation}
			byAlloc[r.Allocation] = a
		}
		a.Jobs++
		a.NodeHours += r.NodeHours
		a.GPUHours += r.GPUHours
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("user usage: %w", err)
	}
	allocs := make([]Allocation, 0, len(byAlloc))
	for _, a := range byAlloc {
		allocs = append(allocs, *a)
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].Name < allocs[j].Name })
	return &total, allocs, nil
}
