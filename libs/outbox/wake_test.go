package outbox_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// firstHeldKafka holds the first publish of one job until the gate opens,
// and says when it started waiting; then that publish fails with fail, or
// goes on when fail is nil.
type firstHeldKafka struct {
	outbox.KafkaPublisher
	job     string
	fail    error
	entered chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func newFirstHeldKafka(p outbox.KafkaPublisher, job string, fail error) *firstHeldKafka {
	return &firstHeldKafka{KafkaPublisher: p, job: job, fail: fail, entered: make(chan struct{}), gate: make(chan struct{})}
}

// waitHeld waits until the first publish of k's job is held.
func (k *firstHeldKafka) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-k.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the job's first change was not published after its commit")
	}
}

// commitChange commits change seq of job, as the test's writer remembers it.
func (f *faultFixture) commitChange(t *testing.T, job string, seq int64) {
	t.Helper()
	evs := f.w.records(t, job, f.owner, seq)
	f.s.commit(t, job, f.owner, evs)
	f.w.remember(job, evs)
}

func (k *firstHeldKafka) Publish(ctx context.Context, m *bus.Message) error {
	if m.Key == k.job {
		held := false
		k.once.Do(func() { held = true })
		if held {
			close(k.entered)
			select {
			case <-k.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			if k.fail != nil {
				return k.fail
			}
		}
	}
	return k.KafkaPublisher.Publish(ctx, m)
}

// A change committed while the job's earlier events are still being
// published goes out right after them, not at the next poll: the claim that
// follows its wake-up cannot take the job by its head (in flight), and
// takes the new rows as the tail of the job this relay holds.
func TestRelayPublishesAJobsLaterCommitWithoutWaitingForThePoll(t *testing.T) {
	t.Parallel()
	f := newFaultFixture(t)
	job := f.owner + "-busy"
	cfg := f.config()
	cfg.PollInterval = time.Hour // only wake-ups claim
	k := newFirstHeldKafka(f.b.producer, job, nil)
	runRelay(t, cfg, f.s, k, f.b.publisher)

	f.commitChange(t, job, 1)
	k.waitHeld(t)
	f.commitChange(t, job, 2)
	// Let the wake-up's claim run (and pass over the job) before the
	// first publish completes.
	time.Sleep(300 * time.Millisecond)
	close(k.gate)

	pending := func() int64 {
		return sqlstoretest.Count(t, f.db, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND job_id = ?", job)
	}
	require.Eventually(t, func() bool { return pending() == 0 }, 10*time.Second, 10*time.Millisecond,
		"the later change is published after the earlier one, with no poll for an hour")
	f.w.verifyKafka(t, f.b.kafka, f.prefix)
}

// A change committed while the job's earlier events are being published
// joins them, and when an earlier event then fails, it waits: it is
// published after the failed event's retry, in order, once each.
func TestRelayLaterCommitWaitsForAFailedEarlierEvent(t *testing.T) {
	t.Parallel()
	f := newFaultFixture(t)
	job := f.owner + "-failing"
	cfg := f.config()
	cfg.PollInterval = 10 * time.Millisecond
	k := newFirstHeldKafka(f.b.producer, job, errors.New("kafka: not enough in-sync replicas"))
	runRelay(t, cfg, f.s, k, f.b.publisher)

	f.commitChange(t, job, 1)
	k.waitHeld(t)
	for seq := int64(2); seq <= 4; seq++ {
		f.commitChange(t, job, seq)
	}
	time.Sleep(300 * time.Millisecond) // the later changes are claimed behind the held publish
	close(k.gate)
	waitDrained(t, f.s)
	require.EqualValues(t, 1, sqlstoretest.Count(t, f.db, "SELECT COUNT(*) FROM outbox WHERE job_id = ? AND attempts = 1", job),
		"the first event failed once")
	f.w.verifyKafka(t, f.b.kafka, f.prefix)
	f.w.verifyAMQP(t, f.q)
}
