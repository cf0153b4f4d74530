package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/outbox"
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

func ids(evs []outbox.PendingEvent) []string {
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

			a, err := s.ClaimOutbox(ctx, outbox.LegKafka, "relay-a", 10, time.Minute)
			require.NoError(t, err)
			require.Equal(t, wantIDs, ids(a), "a job's rows in seq order")
			require.Equal(t, "job-lifecycle", a[0].Message.Topic)
			require.Equal(t, "job-1", a[0].Message.Key)
			require.Equal(t, first[0].Event.EventID, a[0].Message.Headers["event_id"])
			require.Equal(t, "job.alice.job-1.submitted", a[0].RoutingKey)
			require.Empty(t, a[1].RoutingKey)

			b, err := s.ClaimOutbox(ctx, outbox.LegKafka, "relay-b", 10, time.Minute)
			require.NoError(t, err)
			require.Empty(t, b, "a leased job is not claimed twice")

			// relay-a publishes the first row to Kafka, fails on the second.
			boom := errors.New("broker down")
			lost, err := s.CompleteOutbox(ctx, outbox.LegKafka, "relay-a", []outbox.Result{
				{ID: a[0].ID, JobID: "job-1", At: clk.Now()},
				{ID: a[1].ID, JobID: "job-1", Err: boom},
				{ID: a[2].ID, JobID: "job-1"},
				{ID: a[3].ID, JobID: "job-1"},
			})
			require.NoError(t, err)
			require.Zero(t, lost)
			backlog, err := s.OutboxBacklog(ctx)
			require.NoError(t, err)
			require.EqualValues(t, 3+2, backlog, "three rows wait for Kafka, two for RabbitMQ")

			b, err = s.ClaimOutbox(ctx, outbox.LegKafka, "relay-b", 10, time.Minute)
			require.NoError(t, err)
			require.Equal(t, wantIDs[1:], ids(b), "released rows are claimable, in order")
			require.Equal(t, 1, b[0].Attempts)

			// relay-b stalls past its lease: relay-a takes the job over.
			clk.Add(2 * time.Minute)
			a, err = s.ClaimOutbox(ctx, outbox.LegKafka, "relay-a", 10, time.Minute)
			require.NoError(t, err)
			require.Equal(t, wantIDs[1:], ids(a))
			lost, err = s.CompleteOutbox(ctx, outbox.LegKafka, "relay-b", []outbox.Result{{ID: b[0].ID, JobID: "job-1", At: clk.Now()}})
			require.NoError(t, err)
			require.Equal(t, 1, lost, "a relay that lost its lease marks nothing")

			var results []outbox.Result
			for _, e := range a {
				results = append(results, outbox.Result{ID: e.ID, JobID: e.JobID, At: clk.Now()})
			}
			lost, err = s.CompleteOutbox(ctx, outbox.LegKafka, "relay-a", results)
			require.NoError(t, err)
			require.Zero(t, lost)
			none, err := s.ClaimOutbox(ctx, outbox.LegKafka, "relay-a", 10, time.Minute)
			require.NoError(t, err)
			require.Empty(t, none)

			// The RabbitMQ leg has the two lifecycle rows, in order.
			q, err := s.ClaimOutbox(ctx, outbox.LegAMQP, "relay-a", 10, time.Minute)
			require.NoError(t, err)
			require.Equal(t, []string{wantIDs[0], wantIDs[2]}, ids(q))
			lost, err = s.CompleteOutbox(ctx, outbox.LegAMQP, "relay-a", []outbox.Result{
				{ID: q[0].ID, JobID: "job-1", At: clk.Now()}, {ID: q[1].ID, JobID: "job-1", At: clk.Now()}})
			require.NoError(t, err)
			require.Zero(t, lost)
			backlog, err = s.OutboxBacklog(ctx)
			require.NoError(t, err)
			require.Zero(t, backlog)

			clk.Add(time.Hour)
			n, err := s.PurgeOutbox(ctx, clk.Now())
			require.NoError(t, err)
			require.EqualValues(t, 4, n)
		})
	}
}

// TestOutboxLegsAreIndependent: while RabbitMQ fails, the Kafka leg goes on
// with the job's later rows; a failed job waits for its backoff while other
// jobs are claimed; a parked row holds back its job on its leg only, is
// listed with its error and is published again after a retry.
func TestOutboxLegsAreIndependent(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := &clock{now: t0}
			s := newStore(t, d.Open(t), store.Config{Now: clk.Now})
			for _, id := range []string{"job-1", "job-2"} {
				j := newJob(id, "alice", "k-"+id, domain.SystemFrontera, t0)
				require.NoError(t, s.Create(ctx, j, lifecycle(t, j, 1)))
			}
			claim := func(leg outbox.Leg) []outbox.PendingEvent {
				t.Helper()
				rows, err := s.ClaimOutbox(ctx, leg, "relay", 10, time.Minute)
				require.NoError(t, err)
				return rows
			}
			complete := func(leg outbox.Leg, results ...outbox.Result) {
				t.Helper()
				lost, err := s.CompleteOutbox(ctx, leg, "relay", results)
				require.NoError(t, err)
				require.Zero(t, lost)
			}
			jobs := func(rows []outbox.PendingEvent) []string {
				var out []string
				for _, r := range rows {
					if len(out) == 0 || out[len(out)-1] != r.JobID {
						out = append(out, r.JobID)
					}
				}
				return out
			}

			// RabbitMQ down: job-1's first event fails there and waits 10 s.
			q := claim(outbox.LegAMQP)
			require.Equal(t, []string{"job-1", "job-2"}, jobs(q))
			complete(outbox.LegAMQP,
				outbox.Result{ID: q[0].ID, JobID: "job-1", Err: errors.New("rabbitmq down"), RetryAt: clk.Now().Add(10 * time.Second)},
				outbox.Result{ID: q[1].ID, JobID: "job-2", At: clk.Now()})
			require.Empty(t, claim(outbox.LegAMQP), "job-1 waits for its backoff on RabbitMQ")

			// Kafka is not held back: both jobs' rows go, and job-1's next
			// event too.
			k := claim(outbox.LegKafka)
			require.Equal(t, []string{"job-1", "job-2"}, jobs(k))
			var done []outbox.Result
			for _, r := range k {
				done = append(done, outbox.Result{ID: r.ID, JobID: r.JobID, At: clk.Now()})
			}
			complete(outbox.LegKafka, done...)
			_, err := s.Transition(ctx, "job-1", app.AnyVersion, func(cur *domain.Job) ([]app.OutboxRecord, error) { return lifecycle(t, cur, 2), nil })
			require.NoError(t, err)
			k = claim(outbox.LegKafka)
			require.Len(t, k, 2, "job-1's second transition goes to Kafka while its first waits for RabbitMQ")

			// A Kafka row that can never be published is parked: its job waits
			// on Kafka, job-2 does not.
			complete(outbox.LegKafka,
				outbox.Result{ID: k[0].ID, JobID: "job-1", Err: errors.New("record too large"), Park: true},
				outbox.Result{ID: k[1].ID, JobID: "job-1"})
			j2 := newJob("job-3", "alice", "k-3", domain.SystemFrontera, t0)
			require.NoError(t, s.Create(ctx, j2, lifecycle(t, j2, 1)))
			require.Equal(t, []string{"job-3"}, jobs(claim(outbox.LegKafka)), "a parked row holds back only its own job")
			parked, err := s.ListParked(ctx)
			require.NoError(t, err)
			require.Len(t, parked, 1)
			require.Equal(t, k[0].EventID, parked[0].EventID)
			require.Equal(t, outbox.LegKafka, parked[0].Leg)
			require.Equal(t, "record too large", parked[0].LastError)

			// After RabbitMQ's backoff job-1 catches up there, in order.
			clk.Add(11 * time.Second)
			q = claim(outbox.LegAMQP)
			require.Equal(t, "job-1", q[0].JobID)
			require.Equal(t, 1, q[0].Attempts)

			// A retry unparks the row: the Kafka leg publishes it again.
			clk.Add(2 * time.Minute) // job-3's lease ends
			n, err := s.RetryParked(ctx, k[0].EventID)
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
			again := claim(outbox.LegKafka)
			require.Contains(t, ids(again), k[0].EventID)
			parked, err = s.ListParked(ctx)
			require.NoError(t, err)
			require.Empty(t, parked)
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
			a, err := s.ClaimOutbox(ctx, outbox.LegKafka, "relay-a", 10, time.Minute)
			require.NoError(t, err)
			require.Len(t, a, 2)
			_, err = s.Transition(ctx, "job-1", app.AnyVersion, func(cur *domain.Job) ([]app.OutboxRecord, error) { return lifecycle(t, cur, 2), nil })
			require.NoError(t, err)
			b, err := s.ClaimOutbox(ctx, outbox.LegKafka, "relay-b", 10, time.Minute)
			require.NoError(t, err)
			require.Empty(t, b, "the job's head is leased by relay-a")
		})
	}
}
