package app_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/inbox/inboxtest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
)

// benchBatch is the batch size of the appends, as the batch consumer hands them over.
const benchBatch = 500

// BenchmarkAppend measures appends per second on SQLite and PostgreSQL
// (synchronous=FULL, as the service) through the inbox in batches: dedup marks, records, head, job sequences
// and offsets in one transaction per batch. b.N is the number of appends.
// Next to appends/s it reports, in the same run, its peer: the raw inbox rate
// (inboxtest.Rate, the same number of events and batch size on a fresh
// database of the same kind), and the ratio of the two.
//
//	go test ./internal/app -run '^$' -bench BenchmarkAppend -benchtime 100000x
func BenchmarkAppend(b *testing.B) {
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			// synchronous=FULL, as the service opens its database.
			open := func() *sqlstore.DB {
				return sqlstoretest.OpenConfig(b, sqlstore.Config{URL: d.URL(b), Synchronous: sqlstore.SynchronousFull})
			}
			f := audittest.New(b, open())
			msgs := audittest.Messages(b, f.Codec, b.N)
			ctx := context.Background()
			b.ResetTimer()
			cpu, start := inboxtest.CPUTime(b), time.Now()
			for i := 0; i < len(msgs); i += benchBatch {
				require.NoError(b, f.Recorder.HandleBatch(ctx, msgs[i:min(i+benchBatch, len(msgs))]))
			}
			rate := float64(b.N) / time.Since(start).Seconds()
			cpuPer := inboxtest.MicrosPer(inboxtest.CPUTime(b)-cpu, b.N)
			b.StopTimer()
			require.Equal(b, int64(b.N), audittest.Count(b, f.DB))
			peer, peerCPU := inboxtest.RateCPU(b, open(), b.N, benchBatch)
			b.ReportMetric(rate, "appends/s")
			b.ReportMetric(peer, inboxtest.PeerMetric)
			b.ReportMetric(cpuPer, inboxtest.CPUMetric)
			b.ReportMetric(peerCPU, inboxtest.PeerCPUMetric)
			b.ReportMetric(100*rate/peer, "%-of-peer")
		})
	}
}

// BenchmarkVerifySQLite measures Verify over a whole chain read from SQLite
// and reports the time per million records. b.N is the number of records.
func BenchmarkVerifySQLite(b *testing.B) {
	f := audittest.New(b, sqlstoretest.OpenURL(b, "sqlite://"+filepath.Join(b.TempDir(), "bench.db")))
	msgs := audittest.Messages(b, f.Codec, b.N)
	ctx := context.Background()
	for i := 0; i < len(msgs); i += benchBatch {
		require.NoError(b, f.Recorder.HandleBatch(ctx, msgs[i:min(i+benchBatch, len(msgs))]))
	}
	_, _, err := f.Checkpointer.Checkpoint(ctx)
	require.NoError(b, err)
	b.ResetTimer()
	start := time.Now()
	res, err := f.Trail.Verify(ctx, 0, 0)
	elapsed := time.Since(start)
	require.NoError(b, err)
	require.True(b, res.OK, res.Reason)
	b.ReportMetric(elapsed.Seconds()*1e6/float64(b.N), "s/1M-records")
}
