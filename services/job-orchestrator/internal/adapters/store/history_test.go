package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// The part of the repository contract that migration 0003 serves: the tag
// filter of List, the resubmission link and the actor and scheduler code
// of each transition, on both dialects.
func TestRepositoryContractTagsAndHistory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, db *sqlstore.DB, s *store.Store)
	}{
		{name: "list keeps jobs carrying every tag", run: testListTags},
		{name: "resubmitted_from is stored", run: testResubmittedFrom},
		{name: "transition actor, scheduler code and error code are stored", run: testTransitionSource},
	}
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					db := d.Open(t)
					tc.run(t, db, newStore(t, db, store.Config{}))
				})
			}
			t.Run("migration 0003 indexes the tags of existing jobs", func(t *testing.T) {
				t.Parallel()
				testTagsBackfill(t, d.Open(t))
			})
		})
	}
}

func testListTags(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	tagSets := [][]string{
		{"sweep:s1", "lr=0.1"}, {"sweep:s1", "lr=0.01"}, {"sweep:s2", "lr=0.1"}, nil, {"lr=0.1"}, {"sweep:s1", "lr=0.1", "extra"},
	}
	for i, tags := range tagSets {
		j := newJob(fmt.Sprintf("job-%d", i), []string{"alice", "bob"}[i%2], fmt.Sprintf("k-%d", i), domain.SystemFrontera, t0.Add(time.Duration(i)*time.Second))
		j.Spec.Tags = tags
		require.NoError(t, s.Create(ctx, j, nil))
	}
	require.EqualValues(t, 10, count(t, db, "SELECT COUNT(*) FROM job_tags"))
	tests := []struct {
		name  string
		q     app.ListQuery
		want  []string
		pages int
	}{
		{name: "one tag", q: app.ListQuery{Tags: []string{"sweep:s1"}}, want: []string{"job-5", "job-1", "job-0"}},
		{name: "every tag must match", q: app.ListQuery{Tags: []string{"sweep:s1", "lr=0.1"}}, want: []string{"job-5", "job-0"}},
		{name: "tags and owner", q: app.ListQuery{Tags: []string{"lr=0.1"}, Owner: "alice"}, want: []string{"job-4", "job-2", "job-0"}},
		{name: "unknown tag", q: app.ListQuery{Tags: []string{"sweep:none"}}},
		{name: "a tag no job has with one that some have", q: app.ListQuery{Tags: []string{"sweep:s2", "extra"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{1, 100} {
				var got []string
				q := tc.q
				q.Limit = size
				for page := 0; ; page++ {
					require.Less(t, page, 20)
					jobs, err := s.List(ctx, q)
					require.NoError(t, err)
					for _, j := range jobs {
						got = append(got, j.ID)
						for _, tag := range tc.q.Tags {
							require.Contains(t, j.Spec.Tags, tag)
						}
					}
					if len(jobs) < size {
						break
					}
					last := jobs[len(jobs)-1]
					q.After = &app.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
				}
				require.Equal(t, tc.want, got, "page size %d", size)
			}
		})
	}
}

func testResubmittedFrom(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	first := newJob("job-1", "alice", "k-1", domain.SystemFrontera, t0)
	require.NoError(t, s.Create(ctx, first, nil))
	second := newJob("job-2", "alice", "k-2", domain.SystemFrontera, t0.Add(time.Second))
	second.ResubmittedFrom = "job-1"
	require.NoError(t, s.Create(ctx, second, nil))

	got, err := s.Get(ctx, "job-2")
	require.NoError(t, err)
	require.Equal(t, "job-1", got.ResubmittedFrom)
	got, err = s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Empty(t, got.ResubmittedFrom)
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM jobs WHERE resubmitted_from = ?", "job-1"))
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM jobs WHERE resubmitted_from IS NULL"))
}

func testTransitionSource(t *testing.T, _ *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	j := newJob("job-1", "alice", "k-1", domain.SystemFrontera, t0)
	require.NoError(t, s.Create(ctx, j, nil))
	_, err := s.Transition(ctx, "job-1", 1, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		tr, err := cur.MarkQueued(domain.SchedulerRef{Scheduler: "slurm", ID: "42", SubmittedAt: t0}, t0.Add(time.Second))
		require.NoError(t, err)
		cur.SetTransitionSource(tr.Sequence, domain.ActorOrchestrator, "")
		tr, err = cur.Fail("OUT_OF_MEMORY", domain.FailureMessage("OUT_OF_MEMORY", "OutOfMemory"), nil, t0.Add(2*time.Second), domain.DefaultRates())
		require.NoError(t, err)
		cur.SetTransitionSource(tr.Sequence, domain.ActorScheduler, "OutOfMemory")
		return nil, nil
	})
	require.NoError(t, err)
	got, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Len(t, got.History, 3)
	require.Equal(t, "alice", got.History[0].Actor, "the submitter")
	require.Equal(t, domain.ActorOrchestrator, got.History[1].Actor)
	last := got.History[2]
	require.Equal(t, domain.ActorScheduler, last.Actor)
	require.Equal(t, "OutOfMemory", last.SchedulerCode)
	require.Equal(t, "OUT_OF_MEMORY", last.ErrorCode)
	require.True(t, strings.HasPrefix(last.Reason, "The job ran out of memory on a node"), last.Reason)
}

// testTagsBackfill stores a job with tags under migrations 0001 and 0002
// only, then applies 0003: the job is found by its tags.
func testTagsBackfill(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	dialect := "sqlite"
	if db.Dialect() == sqlstore.DialectPostgres {
		dialect = "postgres"
	}
	old := fstest.MapFS{}
	for _, name := range []string{"0001_jobs_outbox", "0002_outbox_legs"} {
		file := name + "." + dialect + ".sql"
		b, err := os.ReadFile("migrations/" + file)
		require.NoError(t, err)
		old["migrations/"+file] = &fstest.MapFile{Data: b}
	}
	require.NoError(t, sqlstore.Migrate(ctx, db, old, "migrations", sqlstore.WithComponent(store.MigrationComponent)))

	for i, tags := range [][]string{{"sweep:old", "b"}, {"sweep:old"}, nil} {
		j := newJob(fmt.Sprintf("old-%d", i), "alice", fmt.Sprintf("k-%d", i), domain.SystemFrontera, t0.Add(time.Duration(i)*time.Second))
		j.Spec.Tags = tags
		doc, err := json.Marshal(j)
		require.NoError(t, err)
		_, err = db.Writer().ExecContext(ctx, db.Rebind(`INSERT INTO jobs (id, owner, idempotency_key, status, tacc_system, created_at, updated_at, version, doc)
			VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)`), j.ID, j.Owner, j.IdempotencyKey, string(j.Status), j.Spec.System,
			j.CreatedAt.UnixNano(), j.UpdatedAt.UnixNano(), string(doc))
		require.NoError(t, err)
	}

	s := newStore(t, db, store.Config{})
	ids := func(tags ...string) []string {
		jobs, err := s.List(ctx, app.ListQuery{Tags: tags, Limit: 10})
		require.NoError(t, err)
		var out []string
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		slices.Sort(out)
		return out
	}
	require.Equal(t, []string{"old-0", "old-1"}, ids("sweep:old"))
	require.Equal(t, []string{"old-0"}, ids("sweep:old", "b"))
	got, err := s.Get(ctx, "old-0")
	require.NoError(t, err)
	require.Empty(t, got.ResubmittedFrom)
}
