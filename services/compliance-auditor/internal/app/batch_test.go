package app_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/domain"
)

func allRecords(t *testing.T, f *audittest.Fixture) []auditchain.Record {
	t.Helper()
	var out []auditchain.Record
	for rec, err := range f.Repo.Records(context.Background(), 0, 0) {
		require.NoError(t, err)
		out = append(out, *rec)
	}
	return out
}

// TestBatchedAppendsMatchOneByOne: records appended in batches (one
// multi-row insert and one head move per batch) form the same chain, with
// the same sequences and hashes, as the same events appended one by one; an
// event repeated within a batch is appended once; per-job sequence gaps are
// found and filled the same way; and the chain verifies.
func TestBatchedAppendsMatchOneByOne(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			one, batched := audittest.New(t, d.Open(t)), audittest.New(t, d.Open(t))
			var msgs []*bus.Message
			add := func(m *bus.Message) { m.Offset = int64(len(msgs)); msgs = append(msgs, m) }
			for i := range 1100 { // two whole multi-row inserts and a part in a batch
				add(audittest.Message(t, one.Codec, audittest.Action(t, fmt.Sprintf("u-%d", i%4), fmt.Sprintf("job-%d", i)), 0))
			}
			// Job a: 1, 2, then 5 (gap 3..4) in one batch; 3 late in the next.
			// Job b: 1 then 3 (gap 2) and 2 late, all in one batch.
			for _, s := range []struct {
				job string
				seq int64
			}{{"job-a", 1}, {"job-a", 2}, {"job-b", 1}, {"job-a", 5}, {"job-b", 3}, {"job-b", 2}, {"job-a", 3}} {
				add(audittest.Message(t, one.Codec, audittest.Lifecycle(t, s.job, s.seq), 0))
			}
			record(t, one, msgs)

			first, second := slices.Clone(msgs[:len(msgs)-1]), msgs[len(msgs)-1:]
			first = append(first, msgs[3], msgs[len(msgs)-2]) // repeated within the batch
			require.NoError(t, batched.Recorder.HandleBatch(ctx, first))
			// A redelivered batch of more than a whole chunk adds nothing.
			require.NoError(t, batched.Recorder.HandleBatch(ctx, msgs[:600]))
			require.NoError(t, batched.Recorder.HandleBatch(ctx, append(second, msgs[0])))
			require.NoError(t, batched.Recorder.HandleBatch(ctx, msgs[:10]), "a batch of redeliveries")

			want, got := allRecords(t, one), allRecords(t, batched)
			require.Len(t, got, len(msgs))
			require.Equal(t, want, got, "batched and one-by-one chains differ")
			head, err := batched.Repo.Head(ctx)
			require.NoError(t, err)
			require.Equal(t, auditchain.Head{Sequence: got[len(got)-1].Sequence, Hash: got[len(got)-1].Hash}, head)
			ok, bad, reason := verify(t, batched, 0, 0)
			require.True(t, ok, "bad %d: %s", bad, reason)

			gaps := func(f *audittest.Fixture) ([]domain.Gap, []domain.Gap) {
				pending, err := f.Repo.PendingGaps(ctx, 10)
				require.NoError(t, err)
				for _, g := range pending {
					require.NoError(t, f.Repo.MarkGapAlerted(ctx, g, f.Now))
				}
				resolved, err := f.Repo.ResolvedGaps(ctx, 10)
				require.NoError(t, err)
				return pending, resolved
			}
			wantPending, wantResolved := gaps(one)
			gotPending, gotResolved := gaps(batched)
			require.Len(t, wantPending, 2)
			require.Equal(t, wantPending, gotPending)
			require.Len(t, wantResolved, 1, "job-b's gap is filled, job-a's still misses 4")
			require.Equal(t, wantResolved, gotResolved)
			require.Equal(t, "job-b", gotResolved[0].JobID)
			for _, job := range []string{"job-a", "job-b"} {
				q := "SELECT last_sequence FROM audit_job_sequences WHERE job_id = '" + job + "'"
				require.Equal(t, sqlstoretest.Count(t, one.DB, q), sqlstoretest.Count(t, batched.DB, q), job)
			}
		})
	}
}

// TestBatchContinuesJobSequencesOfEarlierBatches: a batch reads the stored
// sequences of its jobs (one query for the whole batch) and so continues
// each job where an earlier batch left it: no gap for the next sequence, a
// gap for a skipped one, a new job starting at 1.
func TestBatchContinuesJobSequencesOfEarlierBatches(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := audittest.New(t, d.Open(t))
			var offset int64
			batch := func(steps ...any) []*bus.Message {
				var out []*bus.Message
				for i := 0; i < len(steps); i += 2 {
					out = append(out, audittest.Message(t, f.Codec, audittest.Lifecycle(t, steps[i].(string), int64(steps[i+1].(int))), offset))
					offset++
				}
				return out
			}
			require.NoError(t, f.Recorder.HandleBatch(ctx, batch("job-x", 1, "job-x", 2, "job-y", 1)))
			second := batch("job-x", 3, "job-y", 4, "job-z", 1)
			second = append(second, audittest.Message(t, f.Codec, audittest.Action(t, "u-1", "job-x"), offset))
			require.NoError(t, f.Recorder.HandleBatch(ctx, second))

			pending, err := f.Repo.PendingGaps(ctx, 10)
			require.NoError(t, err)
			require.Len(t, pending, 1, "only job-y skipped sequences: %+v", pending)
			require.Equal(t, "job-y", pending[0].JobID)
			require.Equal(t, [2]int64{2, 3}, [2]int64{pending[0].FirstMissing, pending[0].LastMissing})
			for job, want := range map[string]int64{"job-x": 3, "job-y": 4, "job-z": 1} {
				require.Equal(t, want, sqlstoretest.Count(t, f.DB, "SELECT last_sequence FROM audit_job_sequences WHERE job_id = '"+job+"'"), job)
			}
			require.Equal(t, int64(7), audittest.Count(t, f.DB))
			ok, bad, reason := verify(t, f, 0, 0)
			require.True(t, ok, "bad %d: %s", bad, reason)
		})
	}
}
