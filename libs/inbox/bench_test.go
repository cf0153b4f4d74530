package inbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// counterApply is the trivial apply of the benchmarks: upsert one counter
// row per partition.
func counterApply(b *testing.B, db *sqlstore.DB) inbox.ApplyFunc {
	sqlstoretest.MustExec(b, db, "CREATE TABLE bench_counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL)")
	q := db.Rebind("INSERT INTO bench_counters (name, n) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET n = bench_counters.n + 1")
	names := make([]string, 20)
	for i := range names {
		names[i] = fmt.Sprintf("partition-%d", i)
	}
	return func(ctx context.Context, tx *sql.Tx, msg *bus.Message, _ string) error {
		_, err := tx.ExecContext(ctx, q, names[int(msg.Partition)%len(names)])
		return err
	}
}

func benchMessage(i int) *bus.Message {
	m := &bus.Message{Topic: "job-metrics", Partition: int32(i % 20), Offset: int64(i / 20)}
	m.SetHeader(inbox.HeaderEventID, fmt.Sprintf("0193c1f0-7a2b-7c3d-9e4f-%012d", i))
	return m
}

func BenchmarkInboxApply(b *testing.B) {
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			db := d.Open(b)
			if err := inbox.Migrate(ctx, db); err != nil {
				b.Fatal(err)
			}
			h := inbox.New(db, "bench", nil, nil).Handler(counterApply(b, db))
			i := 0
			for b.Loop() {
				if err := h(ctx, benchMessage(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func BenchmarkInboxApplyBatch(b *testing.B) {
	const batchSize = 500
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			db := d.Open(b)
			if err := inbox.Migrate(ctx, db); err != nil {
				b.Fatal(err)
			}
			ib := inbox.New(db, "bench", nil, nil)
			apply := counterApply(b, db)
			batch := make([]*bus.Message, batchSize)
			events := 0
			for b.Loop() {
				for j := range batch {
					batch[j] = benchMessage(events + j)
				}
				if err := ib.ApplyBatch(ctx, batch, apply); err != nil {
					b.Fatal(err)
				}
				events += batchSize
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
