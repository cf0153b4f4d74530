package app_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/domain"
)

// contract runs fn on a fresh, migrated database of every dialect.
func contract(t *testing.T, fn func(t *testing.T, f *audittest.Fixture)) {
	t.Helper()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			fn(t, audittest.New(t, d.Open(t)))
		})
	}
}

func record(t *testing.T, f *audittest.Fixture, msgs []*bus.Message) {
	t.Helper()
	for _, m := range msgs {
		require.NoError(t, f.Recorder.Handle(context.Background(), m))
	}
}

func verify(t *testing.T, f *audittest.Fixture, from, to uint64) (ok bool, bad uint64, reason string) {
	t.Helper()
	res, err := f.Trail.Verify(context.Background(), from, to)
	require.NoError(t, err)
	return res.OK, res.BadSequence, res.Reason
}

func TestChainOfRecordedEventsVerifies(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		msgs := audittest.Messages(t, f.Codec, 30)
		record(t, f, msgs[:10])
		require.NoError(t, f.Recorder.HandleBatch(ctx, msgs[10:]))
		_, stored, err := f.Checkpointer.Checkpoint(ctx)
		require.NoError(t, err)
		require.True(t, stored)

		res, err := f.Trail.Verify(ctx, 0, 0)
		require.NoError(t, err)
		require.True(t, res.OK, res.Reason)
		require.EqualValues(t, 30, res.Checked)

		res, err = f.Trail.Verify(ctx, 11, 20)
		require.NoError(t, err)
		require.True(t, res.OK, res.Reason)
		require.EqualValues(t, 10, res.Checked)

		head, err := f.Repo.Head(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 30, head.Sequence)
		cp, err := f.Trail.GetCheckpoint(ctx, 0)
		require.NoError(t, err)
		require.Equal(t, head.Hash, cp.HeadHash)
		require.NoError(t, cp.Verify(f.Signer.PublicKey()))
	})
}

func TestDuplicateEventsAddNothing(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		msgs := audittest.Messages(t, f.Codec, 6)
		record(t, f, msgs)
		record(t, f, msgs)
		require.NoError(t, f.Recorder.HandleBatch(ctx, append(msgs[:3:3], msgs...)))
		require.EqualValues(t, 6, audittest.Count(t, f.DB))
		ok, _, reason := verify(t, f, 0, 0)
		require.True(t, ok, reason)
	})
}

func TestStoreRejectsUpdateAndDelete(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		record(t, f, audittest.Messages(t, f.Codec, 3))
		_, _, err := f.Checkpointer.Checkpoint(ctx)
		require.NoError(t, err)
		tests := []struct {
			name, stmt string
		}{
			{name: "update record", stmt: "UPDATE audit_records SET actor = 'mallory' WHERE sequence = 2"},
			{name: "delete record", stmt: "DELETE FROM audit_records WHERE sequence = 3"},
			{name: "update checkpoint", stmt: "UPDATE audit_checkpoints SET key_id = 'x'"},
			{name: "delete checkpoint", stmt: "DELETE FROM audit_checkpoints"},
		}
		for _, tt := range tests {
			_, err := f.DB.ExecContext(ctx, tt.stmt)
			require.ErrorContains(t, err, "append-only", tt.name)
		}
		require.EqualValues(t, 3, audittest.Count(t, f.DB))
	})
}

func TestVerifyNamesTamperedRecord(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		record(t, f, audittest.Messages(t, f.Codec, 20))
		audittest.DropGuards(t, f.DB)
		tests := []struct {
			name, stmt string
			seq        uint64
			reason     string
		}{
			// Flip one byte of a stored record: its content no longer hashes to its hash.
			{name: "content byte", stmt: "UPDATE audit_records SET actor = 'v' || substr(actor, 2) WHERE sequence = 7", seq: 7, reason: "hash mismatch"},
		}
		for _, tt := range tests {
			_, err := f.DB.ExecContext(ctx, tt.stmt)
			require.NoError(t, err, tt.name)
			ok, bad, reason := verify(t, f, 0, 0)
			require.False(t, ok, tt.name)
			require.Equal(t, tt.seq, bad, tt.name)
			require.Contains(t, reason, tt.reason, tt.name)
			// A range starting after the tampered record still verifies.
			ok, _, reason = verify(t, f, tt.seq+1, 0)
			require.True(t, ok, reason)
		}
	})
}

func TestVerifyCatchesTruncatedTail(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		record(t, f, audittest.Messages(t, f.Codec, 12))
		_, _, err := f.Checkpointer.Checkpoint(ctx)
		require.NoError(t, err)
		audittest.DropGuards(t, f.DB)
		// Remove the newest records and rewind the head, as someone hiding them would.
		_, err = f.DB.ExecContext(ctx, "DELETE FROM audit_records WHERE sequence > 9")
		require.NoError(t, err)
		_, err = f.DB.ExecContext(ctx, f.DB.Rebind("UPDATE audit_head SET sequence = 9, hash = (SELECT hash FROM audit_records WHERE sequence = 9)"))
		require.NoError(t, err)

		ok, bad, reason := verify(t, f, 0, 0)
		require.False(t, ok)
		require.EqualValues(t, 10, bad)
		require.Contains(t, reason, "truncated")
	})
}

func TestRetentionKeepsAVerifiableTrail(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		msgs := audittest.Messages(t, f.Codec, 30)
		record(t, f, msgs[:10])
		_, _, err := f.Checkpointer.Checkpoint(ctx) // checkpoint at 10
		require.NoError(t, err)
		record(t, f, msgs[10:15]) // 11..15, not behind any checkpoint yet
		f.Now = f.Now.Add(48 * time.Hour)
		record(t, f, msgs[15:])
		_, _, err = f.Checkpointer.Checkpoint(ctx) // checkpoint at 30
		require.NoError(t, err)

		// Records 1..15 are older than a day, but only 1..10 lie behind a checkpoint.
		deleted, anchor, err := f.Repo.ApplyRetention(ctx, f.Now.Add(-24*time.Hour))
		require.NoError(t, err)
		require.EqualValues(t, 10, deleted)
		require.EqualValues(t, 10, anchor)
		first, err := f.Repo.FirstSequence(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 11, first)

		ok, bad, reason := verify(t, f, 0, 0)
		require.True(t, ok, "bad %d: %s", bad, reason)
		var buf bytes.Buffer
		export(t, f, &buf, 0, 0)
		res := verifyExport(t, f, buf.Bytes())
		require.True(t, res.OK, res.String())
		require.EqualValues(t, 20, res.Records)

		// Nothing more qualifies: running it again deletes nothing.
		deleted, _, err = f.Repo.ApplyRetention(ctx, f.Now.Add(-24*time.Hour))
		require.NoError(t, err)
		require.Zero(t, deleted)
	})
}

func export(t *testing.T, f *audittest.Fixture, buf *bytes.Buffer, from, to uint64) {
	t.Helper()
	w, err := auditchain.NewWriter(buf, f.Signer.KeyID())
	require.NoError(t, err)
	require.NoError(t, f.Trail.Export(context.Background(), from, to, w.Write))
	require.NoError(t, w.Flush())
}

func verifyExport(t *testing.T, f *audittest.Fixture, data []byte) auditchain.Result {
	t.Helper()
	r := auditchain.NewReader(bytes.NewReader(data), auditchain.ReaderOptions{})
	res, err := auditchain.Verify(r.Entries(), auditchain.VerifyOptions{PublicKey: f.Signer.PublicKey()})
	if err != nil {
		return auditchain.Result{Reason: auditchain.ReasonHashMismatch, Detail: err.Error()}
	}
	return res
}

func TestExportVerifiesOfflineAndDetectsTampering(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		record(t, f, audittest.Messages(t, f.Codec, 8))
		_, _, err := f.Checkpointer.Checkpoint(ctx)
		require.NoError(t, err)
		record(t, f, audittest.Messages(t, f.Codec, 16)[8:])

		var whole bytes.Buffer
		export(t, f, &whole, 0, 0)
		res := verifyExport(t, f, whole.Bytes())
		require.True(t, res.OK, res.String())
		require.EqualValues(t, 16, res.Records)
		require.EqualValues(t, 16, res.LastCheckpoint, "a whole export ends on a fresh checkpoint")

		var part bytes.Buffer
		export(t, f, &part, 12, 14)
		res = verifyExport(t, f, part.Bytes())
		require.True(t, res.OK, res.String())
		require.EqualValues(t, 9, res.First, "a range export starts after its anchor checkpoint")

		tampered := strings.Replace(whole.String(), `"actor":"u-1"`, `"actor":"u-9"`, 1)
		require.NotEqual(t, whole.String(), tampered)
		res = verifyExport(t, f, []byte(tampered))
		require.False(t, res.OK)
		require.Equal(t, auditchain.ReasonHashMismatch, res.Reason)
	})
}

func TestGapDetection(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		var msgs []*bus.Message
		for i, seq := range []int64{1, 2, 5, 3, 6, 9} {
			msgs = append(msgs, audittest.Message(t, f.Codec, audittest.Lifecycle(t, "job-g", seq), int64(i)))
		}
		record(t, f, msgs)
		record(t, f, msgs) // redelivery detects nothing new
		gaps, err := f.Repo.PendingGaps(ctx, 10)
		require.NoError(t, err)
		require.Len(t, gaps, 2)
		require.Equal(t, [2]int64{3, 4}, [2]int64{gaps[0].FirstMissing, gaps[0].LastMissing})
		require.Equal(t, [2]int64{7, 8}, [2]int64{gaps[1].FirstMissing, gaps[1].LastMissing})
		require.NoError(t, f.Repo.MarkGapAlerted(ctx, gaps[0], f.Now))
		gaps, err = f.Repo.PendingGaps(ctx, 10)
		require.NoError(t, err)
		require.Len(t, gaps, 1)
	})
}

func TestQueryFiltersAndPages(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		record(t, f, audittest.Messages(t, f.Codec, 30))
		tests := []struct {
			name   string
			filter domain.Filter
			want   int
		}{
			{name: "all", want: 30},
			{name: "actor", filter: domain.Filter{Actor: "u-0"}, want: 5}, // actions 0, 6, 12, 18, 24
			{name: "action", filter: domain.Filter{Action: "job.cancel"}, want: 15},
			{name: "resource", filter: domain.Filter{ResourceType: "job", ResourceID: "job-4"}, want: 1},
			{name: "time range", filter: domain.Filter{OccurredBefore: time.Unix(0, 0)}, want: 0},
		}
		for _, tt := range tests {
			var got []auditchain.Record
			after := uint64(0)
			for {
				page, err := f.Repo.Query(ctx, tt.filter, after, 7)
				require.NoError(t, err, tt.name)
				got = append(got, page...)
				if len(page) < 7 {
					break
				}
				after = page[len(page)-1].Sequence
			}
			require.Len(t, got, tt.want, tt.name)
			for i := 1; i < len(got); i++ {
				require.Less(t, got[i-1].Sequence, got[i].Sequence, tt.name)
			}
		}
	})
}
