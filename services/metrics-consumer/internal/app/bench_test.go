package app_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/inbox/inboxtest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/testgen"
)

// ingestBatch is the batch size of the benchmark: the service's default.
const ingestBatch = 1000

// BenchmarkIngest measures the consumer's store path without Kafka: encoded
// job events (a generated stream, several per job) through HandleBatch, that
// is Avro decoding and the inbox transaction (dedup marks, job records,
// offsets), on SQLite with synchronous=FULL (the service's setting) and on
// PostgreSQL. b.N is the number of events. Next to events/s it reports its
// peer measured right after in the same run: the raw inbox rate
// (inboxtest.Rate, same batch size and number of events, a fresh database of
// the same kind), and the ratio of the two.
//
//	go test ./internal/app -run '^$' -bench BenchmarkIngest -benchtime 100000x
func BenchmarkIngest(b *testing.B) {
	codec, err := events.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			ctx := context.Background()
			open := func() *sqlstore.DB {
				return sqlstoretest.OpenConfig(b, sqlstore.Config{URL: d.URL(b), Synchronous: sqlstore.SynchronousFull})
			}
			db := open()
			if err := inbox.Migrate(ctx, db); err != nil {
				b.Fatal(err)
			}
			if err := adapters.Migrate(ctx, db); err != nil {
				b.Fatal(err)
			}
			repo := adapters.NewJobRepository(db)
			uow := inbox.NewUnitOfWork(inbox.New(db, app.ConsumerName, nil, nil),
				func(tx *sql.Tx, msgs []*bus.Message) app.JobWriter { return repo.Bind(tx, msgs) })
			ingest := app.NewIngest(uow, codec, nil)

			evs, err := testgen.Stream(testgen.Plans(99, b.N/5+1, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)))
			if err != nil {
				b.Fatal(err)
			}
			evs = evs[:min(len(evs), b.N)]
			msgs := make([]*bus.Message, len(evs))
			for i, ev := range evs {
				if msgs[i], err = codec.Message(ev); err != nil {
					b.Fatal(err)
				}
				msgs[i].Offset = int64(i)
			}
			b.ResetTimer()
			cpu, start := inboxtest.CPUTime(b), time.Now()
			for i := 0; i < len(msgs); i += ingestBatch {
				if err := ingest.HandleBatch(ctx, msgs[i:min(i+ingestBatch, len(msgs))]); err != nil {
					b.Fatal(err)
				}
			}
			rate := float64(len(msgs)) / time.Since(start).Seconds()
			cpuPer := inboxtest.MicrosPer(inboxtest.CPUTime(b)-cpu, len(msgs))
			b.StopTimer()
			if n := sqlstoretest.Count(b, db, "SELECT count(*) FROM inbox_processed"); n != int64(len(msgs)) {
				b.Fatalf("%d events marked, want %d", n, len(msgs))
			}
			peer, peerCPU := inboxtest.RateCPU(b, open(), len(msgs), ingestBatch)
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(peer, inboxtest.PeerMetric)
			b.ReportMetric(cpuPer, inboxtest.CPUMetric)
			b.ReportMetric(peerCPU, inboxtest.PeerCPUMetric)
			b.ReportMetric(100*rate/peer, "%-of-peer")
		})
	}
}
