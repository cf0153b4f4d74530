package app_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
)

// benchBatch is the batch size of the appends, as the batch consumer hands them over.
const benchBatch = 500

// BenchmarkAppendSQLite measures appends per second on SQLite through the
// inbox in batches: dedup mark, record, head and offset in one transaction
// per batch. Reports appends/s.
func BenchmarkAppendSQLite(b *testing.B) {
	f := audittest.New(b, sqlstoretest.OpenURL(b, "sqlite://"+filepath.Join(b.TempDir(), "bench.db")))
	msgs := audittest.Messages(b, f.Codec, b.N)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(msgs); i += benchBatch {
		require.NoError(b, f.Recorder.HandleBatch(ctx, msgs[i:min(i+benchBatch, len(msgs))]))
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
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
