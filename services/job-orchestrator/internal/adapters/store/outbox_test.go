package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func ids(evs []store.PendingEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

func TestOutboxClaims(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := &clock{now: t0}
			var committed [][]string
			s := newStore(t, d.Open(t), store.Config{Now: clk.Now, AfterCommit: func(types []string) { committed = append(committed, types) }})

			j := newJob("job-1", "alice", "k", domain.SystemFrontera, t0)
			first := lifecycle(t, j, 1)
			require.NoError(t, s.Create(ctx, j, first))
			second := lifecycle(t, j, 2)
			_, err := s.Transition(ctx, "job-1", app.AnyVersion, func(*domain.Job) ([]app.OutboxRecord, error) { return second, nil })
			require.NoError(t, err)
			require.Equal(t, [][]string{{"job.submitted", "audit.action_recorded"}, {"job.queued", "audit.action_recorded"}}, committed)
			wantIDs := []string{first[0].Event.EventID, first[1].Event.EventID, second[0].Event.EventID, second[1].Event.EventID}

			a, err := s.ClaimOutbox(ctx, "relay-a", 10, time.Minute)
			require.NoError(t, err)
			require.Equal(t, wantIDs, ids(a), "a job's rows in seq order")
			require.Equal(t, "job-lifecycle", a[0].Message.Topic)
			require.Equal(t, "job-1", a[0].Message.Key)
			require.Equal(t, first[0].Event.EventID, a[0].Message.Headers["event_id"])
			require.Equal(t, "job.alice.job-1.submitted", a[0].RoutingKey)
			require.Empty(t, a[1].RoutingKey)

			b, err := s.ClaimOutbox(ctx, "relay-b", 10, time.Minute)
			require.NoError(t, err)
			require.Empty(t, b, "a leased job is not claimed twice")

			// relay-a publishes the first row, fails on the second (Kafka done, AMQP not).
			boom := errors.New("broker down")
			lost, err := s.CompleteOutbox(ctx, "relay-a", []store.Result{
				{ID: a[0].ID, JobID: "job-1", KafkaAt: clk.Now(), AMQPAt: clk.Now()},
				{ID: a[1].ID, JobID: "job-1", KafkaAt: clk.Now(), Err: boom},
				{ID: a[2].ID, JobID: "job-1"},
				{ID: a[3].ID, JobID: "job-1"},
			})
			require.NoError(t, err)
			require.Zero(t, lost)
			backlog, err := s.OutboxBacklog(ctx)
			require.NoError(t, err)
			require.EqualValues(t, 3, backlog)

			b, err = s.ClaimOutbox(ctx, "relay-b", 10, time.Minute)
			require.NoError(t, err)
			require.Equal(t, wantIDs[1:], ids(b), "released rows are claimable, in order")
			require.True(t, b[0].KafkaDone)
			require.Equal(t, 1, b[0].Attempts)

			// relay-b stalls past its lease: relay-a takes the job over.
			clk.Add(2 * time.Minute)
			a, err = s.ClaimOutbox(ctx, "relay-a", 10, time.Minute)
			require.NoError(t, err)
			require.Equal(t, wantIDs[1:], ids(a))
			lost, err = s.CompleteOutbox(ctx, "relay-b", []store.Result{{ID: b[0].ID, JobID: "job-1", KafkaAt: clk.Now()}})
			require.NoError(t, err)
			require.Equal(t, 1, lost, "a relay that lost its lease marks nothing")

			var results []store.Result
			for _, e := range a {
				results = append(results, store.Result{ID: e.ID, JobID: e.JobID, KafkaAt: clk.Now(), AMQPAt: clk.Now()})
			}
			lost, err = s.CompleteOutbox(ctx, "relay-a", results)
			require.NoError(t, err)
			require.Zero(t, lost)
			backlog, err = s.OutboxBacklog(ctx)
			require.NoError(t, err)
			require.Zero(t, backlog)
			none, err := s.ClaimOutbox(ctx, "relay-a", 10, time.Minute)
			require.NoError(t, err)
			require.Empty(t, none)

			clk.Add(time.Hour)
			n, err := s.PurgeOutbox(ctx, clk.Now())
			require.NoError(t, err)
			require.EqualValues(t, 4, n)
		})
	}
}

// TestOutboxHeadOrder: rows appended to a job while another relay holds it
// stay with that job's holder; another relay cannot publish them first.
func TestOutboxHeadOrder(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t, d.Open(t), store.Config{})
			j := newJob("job-1", "alice", "k", domain.SystemFrontera, t0)
			require.NoError(t, s.Create(ctx, j, lifecycle(t, j, 1)))
			a, err := s.ClaimOutbox(ctx, "relay-a", 10, time.Minute)
			require.NoError(t, err)
			require.Len(t, a, 2)
			_, err = s.Transition(ctx, "job-1", app.AnyVersion, func(cur *domain.Job) ([]app.OutboxRecord, error) { return lifecycle(t, cur, 2), nil })
			require.NoError(t, err)
			b, err := s.ClaimOutbox(ctx, "relay-b", 10, time.Minute)
			require.NoError(t, err)
			require.Empty(t, b, "the job's head is leased by relay-a")
		})
	}
}
