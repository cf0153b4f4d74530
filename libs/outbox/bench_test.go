package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// BenchmarkRelay measures the outbox relay against the real Kafka and
// RabbitMQ on each database, per b.N run:
//   - drain: a backlog of 300 jobs (1,200 commits, 2,700 events) is written
//     first, then the relay publishes it; events/s is the drain rate, and
//     drain_cpu_us/event the CPU time of this process (relay, clients and,
//     on SQLite, the database) per event while it drains.
//   - latency: with the relay running, 200 jobs are written at about 50
//     jobs/s (200 commits/s, 450 events/s); commit_to_kafka_p50/p99_ms is the
//     time from each event's commit to its Kafka acknowledgement, read from
//     the outbox's created_at and published_kafka_at.
//
// Run it with -benchtime 1x (make bench does).
func BenchmarkRelay(b *testing.B) {
	brk := connect(b)
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			for range b.N {
				drain, cpu, p50, p99 := relayRun(b, d, brk)
				b.ReportMetric(drain, "events/s")
				b.ReportMetric(cpu, "drain_cpu_us/event")
				b.ReportMetric(p50, "commit_to_kafka_p50_ms")
				b.ReportMetric(p99, "commit_to_kafka_p99_ms")
			}
		})
	}
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func relayRun(b *testing.B, d sqlstoretest.NamedDB, brk brokers) (drainRate, cpuPerEvent, p50, p99 float64) {
	prefix := relaytest.RandomName(b, "relaybench-") + "-"
	relaytest.EnsureTopics(b, brk.kafka, prefix)
	owner := relaytest.RandomName(b, "user-")
	relaytest.BindQueue(b, brk.amqpURL, amqpbus.UserPattern(owner))
	db := d.Open(b)
	wake := make(chan struct{}, 1)
	s := openStore(b, db, wake)
	w := newWriter()

	for i := range 300 {
		w.job(b, s, fmt.Sprintf("%s-backlog-%d", owner, i), owner)
	}
	backlog := len(w.all)
	cfg := outbox.DefaultRelayConfig()
	cfg.TopicPrefix, cfg.Wake = prefix, wake
	start, cpu := time.Now(), cpuTime(b)
	startRelay(b, cfg, s, brk)
	waitDrained(b, s)
	drainRate = float64(backlog) / time.Since(start).Seconds()
	cpuPerEvent = float64((cpuTime(b) - cpu).Microseconds()) / float64(backlog)

	var since int64
	require.NoError(b, db.Writer().QueryRowContext(context.Background(), "SELECT COALESCE(MAX(created_at), 0) FROM outbox").Scan(&since))
	tick := time.NewTicker(20 * time.Millisecond)
	for i := range 200 {
		<-tick.C
		w.job(b, s, fmt.Sprintf("%s-paced-%d", owner, i), owner)
	}
	tick.Stop()
	waitDrained(b, s)

	rows, err := db.Writer().QueryContext(context.Background(),
		db.Rebind("SELECT published_kafka_at - created_at FROM outbox WHERE created_at > ? AND published_kafka_at IS NOT NULL"), since)
	require.NoError(b, err)
	defer rows.Close()
	var lat []float64
	for rows.Next() {
		var ns int64
		require.NoError(b, rows.Scan(&ns))
		lat = append(lat, float64(ns)/1e6)
	}
	require.NoError(b, rows.Err())
	require.Len(b, lat, len(w.all)-backlog, "every paced event was published")
	slices.Sort(lat)
	return drainRate, cpuPerEvent, lat[len(lat)/2], lat[len(lat)*99/100]
}

// BenchmarkClaimOutbox measures one claim of 100 keys (and the release of
// what it claimed) in an outbox that retains 50,000 sent rows, as a
// service's does between purges, on each database.
func BenchmarkClaimOutbox(b *testing.B) {
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			ctx := context.Background()
			db := d.Open(b)
			s := openStore(b, db, nil)
			const sent, keys = 50_000, 100
			var batches []outbox.Batch
			flush := func() {
				require.NoError(b, db.InTx(ctx, func(tx *sql.Tx) error { return s.Append(ctx, tx, batches...) }))
				batches = batches[:0]
			}
			for i := range sent + keys {
				batches = append(batches, outbox.Batch{Key: fmt.Sprintf("job-%d", i), Rows: []outbox.Row{{
					EventID: fmt.Sprintf("ev-%d", i), EventType: "t",
					Message: &bus.Message{Topic: "t", Key: "k", Value: []byte("v"), Headers: map[string]string{"event_id": "x"}}}}})
				if len(batches) == 1000 {
					flush()
				}
			}
			flush()
			_, err := db.Writer().ExecContext(ctx, db.Rebind("UPDATE outbox SET sent_at = 1 WHERE id <= ?"), sent)
			require.NoError(b, err)
			b.ResetTimer()
			for range b.N {
				rows, err := s.ClaimOutbox(ctx, outbox.LegKafka, "bench", keys, time.Minute)
				require.NoError(b, err)
				require.Len(b, rows, keys)
				results := make([]outbox.Result, len(rows))
				for i, r := range rows {
					results[i] = outbox.Result{ID: r.ID, JobID: r.JobID}
				}
				_, err = s.CompleteOutbox(ctx, outbox.LegKafka, "bench", results)
				require.NoError(b, err)
			}
		})
	}
}
