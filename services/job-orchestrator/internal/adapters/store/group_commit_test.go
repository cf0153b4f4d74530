package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// Concurrent Creates share transactions (group commit). These tests start
// many Creates at once, so that they meet in batches, and check what each
// caller was told against what a new connection reads.
func TestGroupCommitContract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, url string)
	}{
		{name: "duplicate keys in one burst make one job per key", run: testBurstDuplicateKeys},
		{name: "a bad request fails alone", run: testBurstBadRequestFailsAlone},
		{name: "a Create that returned nil is readable from a new connection", run: testCreatedIsCommitted},
		{name: "transitions in one burst: each refused or bad one fails alone", run: testBurstTransitions},
		{name: "the tags of a burst's jobs are stored once per job and tag", run: testBurstTags},
	}
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, d.URL(t))
				})
			}
		})
	}
}

func open(t *testing.T, url string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{URL: url}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// burst runs fn(i) for i in [0, n) at once and returns the errors.
func burst(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func testBurstDuplicateKeys(t *testing.T, url string) {
	db := open(t, url)
	s := newStore(t, db, store.Config{})
	ctx := context.Background()
	const keys, perKey = 10, 6
	jobs := make([]*domain.Job, keys*perKey)
	errs := burst(len(jobs), func(i int) error {
		jobs[i] = newJob(fmt.Sprintf("job-%02d", i), "alice", fmt.Sprintf("key-%d", i%keys), domain.SystemFrontera, t0)
		return s.Create(ctx, jobs[i], lifecycle(t, jobs[i], 1))
	})
	won := map[string]string{}
	for i, err := range errs {
		key := jobs[i].IdempotencyKey
		if err == nil {
			require.Empty(t, won[key], "two jobs for key %s", key)
			won[key] = jobs[i].ID
			continue
		}
		require.ErrorIs(t, err, app.ErrDuplicateIdempotencyKey, "job %s", jobs[i].ID)
	}
	require.Len(t, won, keys, "every key has its job")
	check := open(t, url)
	require.EqualValues(t, keys, count(t, check, "SELECT COUNT(*) FROM jobs"))
	require.EqualValues(t, 2*keys, count(t, check, "SELECT COUNT(*) FROM outbox"), "outbox rows of the stored jobs only")
	require.EqualValues(t, keys, count(t, check, "SELECT COUNT(*) FROM outbox_amqp"), "the RabbitMQ leg of each job.submitted")
	for key, id := range won {
		got, err := s.GetByIdempotencyKey(ctx, "alice", key)
		require.NoError(t, err)
		require.Equal(t, id, got.ID, "the job whose Create succeeded is the one stored")
		require.EqualValues(t, 2, count(t, check, "SELECT COUNT(*) FROM outbox WHERE job_id = ?", id))
	}
}

func testBurstBadRequestFailsAlone(t *testing.T, url string) {
	db := open(t, url)
	s := newStore(t, db, store.Config{})
	ctx := context.Background()
	// Stored first: a job and its events, whose ids the bad requests reuse.
	first := newJob("job-first", "alice", "key-first", domain.SystemFrontera, t0)
	firstOut := lifecycle(t, first, 1)
	require.NoError(t, s.Create(ctx, first, firstOut))

	const n = 40
	bad := map[int]string{7: "reuses a stored job id", 23: "reuses a stored event id"}
	errs := burst(n, func(i int) error {
		j := newJob(fmt.Sprintf("job-%02d", i), "bob", fmt.Sprintf("key-%d", i), domain.SystemFrontera, t0)
		out := lifecycle(t, j, 1)
		switch i {
		case 7:
			j.ID = first.ID
		case 23:
			out[1] = firstOut[1]
		}
		return s.Create(ctx, j, out)
	})
	for i, err := range errs {
		if why, ok := bad[i]; ok {
			require.Error(t, err, "request %d %s", i, why)
			require.NotErrorIs(t, err, app.ErrDuplicateIdempotencyKey)
			continue
		}
		require.NoError(t, err, "request %d", i)
	}
	check := open(t, url)
	require.EqualValues(t, 1+n-len(bad), count(t, check, "SELECT COUNT(*) FROM jobs"))
	require.EqualValues(t, 0, count(t, check, "SELECT COUNT(*) FROM jobs WHERE idempotency_key IN ('key-7', 'key-23')"), "nothing of a bad request is stored")
	require.EqualValues(t, 2*(1+n-len(bad)), count(t, check, "SELECT COUNT(*) FROM outbox"))
	require.EqualValues(t, 1+n-len(bad), count(t, check, "SELECT COUNT(*) FROM outbox_amqp"))
}

func testCreatedIsCommitted(t *testing.T, url string) {
	db := open(t, url)
	s := newStore(t, db, store.Config{})
	check := open(t, url)
	ctx := context.Background()
	const n = 60
	errs := burst(n, func(i int) error {
		j := newJob(fmt.Sprintf("job-%02d", i), "carol", fmt.Sprintf("key-%d", i), domain.SystemFrontera, t0)
		if err := s.Create(ctx, j, lifecycle(t, j, 1)); err != nil {
			return err
		}
		// Read at once through another pool: the job and its events are
		// committed when Create returns, not later.
		var jobs, events int
		if err := check.QueryRowContext(ctx, check.Rebind("SELECT COUNT(*) FROM jobs WHERE id = ?"), j.ID).Scan(&jobs); err != nil {
			return err
		}
		if err := check.QueryRowContext(ctx, check.Rebind("SELECT COUNT(*) FROM outbox WHERE job_id = ?"), j.ID).Scan(&events); err != nil {
			return err
		}
		if jobs != 1 || events != 2 {
			return fmt.Errorf("job %s returned from Create but a new connection reads %d jobs, %d outbox rows", j.ID, jobs, events)
		}
		return nil
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
}

func testBurstTransitions(t *testing.T, url string) {
	db := open(t, url)
	s := newStore(t, db, store.Config{})
	check := open(t, url)
	ctx := context.Background()
	const n = 40
	var stored []app.OutboxRecord
	for i := range n {
		j := newJob(fmt.Sprintf("job-%02d", i), "dave", fmt.Sprintf("key-%d", i), domain.SystemFrontera, t0)
		out := lifecycle(t, j, 1)
		require.NoError(t, s.Create(ctx, j, out))
		stored = append(stored, out...)
	}
	errMutate := errors.New("refused by mutate")
	errs := burst(n, func(i int) error {
		id, version := fmt.Sprintf("job-%02d", i), int64(1)
		switch i {
		case 5:
			version = 7
		case 17:
			id = "job-missing"
		}
		got, err := s.Transition(ctx, id, version, func(cur *domain.Job) ([]app.OutboxRecord, error) {
			if i == 11 {
				return nil, errMutate
			}
			cur.Spec.Tags = append(cur.Spec.Tags, "moved")
			out := lifecycle(t, cur, 2)
			if i == 23 {
				out[1] = stored[0] // an event id already stored
			}
			return out, nil
		})
		if err != nil {
			return err
		}
		if got.Version != 2 {
			return fmt.Errorf("job %s: returned version %d", id, got.Version)
		}
		var version2, events int
		if err := check.QueryRowContext(ctx, check.Rebind("SELECT COUNT(*) FROM jobs WHERE id = ? AND version = 2"), id).Scan(&version2); err != nil {
			return err
		}
		if err := check.QueryRowContext(ctx, check.Rebind("SELECT COUNT(*) FROM outbox WHERE job_id = ?"), id).Scan(&events); err != nil {
			return err
		}
		if version2 != 1 || events != 4 {
			return fmt.Errorf("job %s transitioned but a new connection reads version 2: %d, outbox rows %d", id, version2, events)
		}
		return nil
	})
	for i, err := range errs {
		switch i {
		case 5:
			require.ErrorIs(t, err, app.ErrVersionConflict)
		case 11:
			require.ErrorIs(t, err, errMutate)
		case 17:
			require.ErrorIs(t, err, domain.ErrNotFound)
		case 23:
			require.Error(t, err)
			require.NotErrorIs(t, err, app.ErrVersionConflict)
		default:
			require.NoError(t, err, "transition %d", i)
		}
	}
	// job-17 was not asked to move (its request named a missing job).
	require.EqualValues(t, n-4, count(t, check, "SELECT COUNT(*) FROM jobs WHERE version = 2"))
	require.EqualValues(t, 0, count(t, check, "SELECT COUNT(*) FROM jobs WHERE version = 2 AND id IN ('job-05', 'job-11', 'job-17', 'job-23')"))
	require.EqualValues(t, 2*n+2*(n-4), count(t, check, "SELECT COUNT(*) FROM outbox"), "the refused and the bad transitions wrote no event")
}

func testBurstTags(t *testing.T, url string) {
	db := open(t, url)
	s := newStore(t, db, store.Config{})
	ctx := context.Background()
	const n = 60
	tagsOf := func(i int) []string {
		switch {
		case i%10 == 0:
			return nil
		case i%10 == 1:
			many := make([]string, domain.MaxTags)
			for k := range many {
				many[k] = fmt.Sprintf("t%02d", k)
			}
			return many
		}
		// "sweep" twice: a repeated tag is one row.
		return []string{"sweep", fmt.Sprintf("lr=%d", i%3), "sweep"}
	}
	jobs := make([]*domain.Job, n)
	errs := burst(n, func(i int) error {
		// Every fifth request reuses the key of the one before: one of the
		// two is refused, and its tags must not be stored.
		key := fmt.Sprintf("key-%d", i)
		if i%5 == 4 {
			key = fmt.Sprintf("key-%d", i-1)
		}
		jobs[i] = newJob(fmt.Sprintf("job-%02d", i), "alice", key, domain.SystemFrontera, t0)
		jobs[i].Spec.Tags = tagsOf(i)
		return s.Create(ctx, jobs[i], lifecycle(t, jobs[i], 1))
	})
	var wantRows int64
	stored := map[string][]string{}
	for i, err := range errs {
		if err != nil {
			require.ErrorIs(t, err, app.ErrDuplicateIdempotencyKey, "job %s", jobs[i].ID)
			continue
		}
		distinct := map[string]bool{}
		for _, tag := range tagsOf(i) {
			distinct[tag] = true
		}
		wantRows += int64(len(distinct))
		stored[jobs[i].ID] = tagsOf(i)
	}
	require.Len(t, stored, n-n/5, "one job per key")
	check := open(t, url)
	require.EqualValues(t, wantRows, count(t, check, "SELECT COUNT(*) FROM job_tags"))
	for id, tags := range stored {
		for _, tag := range tags {
			require.EqualValues(t, 1, count(t, check, "SELECT COUNT(*) FROM job_tags WHERE job_id = ? AND tag = ?", id, tag),
				"job %s tag %s", id, tag)
		}
	}
	got, err := s.List(ctx, app.ListQuery{Tags: []string{"sweep", "lr=1"}, Limit: n})
	require.NoError(t, err)
	var want []string
	for id, tags := range stored {
		if len(tags) == 3 && tags[1] == "lr=1" {
			want = append(want, id)
		}
	}
	var ids []string
	for _, j := range got {
		ids = append(ids, j.ID)
	}
	require.NotEmpty(t, want)
	require.ElementsMatch(t, want, ids)
}
