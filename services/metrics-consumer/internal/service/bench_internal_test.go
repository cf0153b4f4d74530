package service

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/inbox/inboxtest"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/testgen"
)

// benchEvents is the size of the pre-filled stream.
const benchEvents = 200_000

// BenchmarkConsumeEndToEnd measures the service's consumption path end to
// end: from topics pre-filled with about 200k job events, through the batch
// consumer, Avro decoding and the inbox transaction (job records, dedup
// marks and offsets) into SQLite with synchronous=FULL (the service's setting), until every event
// is committed; then the same on PostgreSQL. It reports events/s and the
// P50/P99 of the batch handler (one transaction) and of the handler time per
// event, and, measured right after in the same run, its peer: the raw inbox
// rate (inboxtest.Rate: the inbox alone, same batch size, a fresh database
// of the same kind) and the ratio of the two.
//
//	go test ./internal/service -run '^$' -bench BenchmarkConsumeEndToEnd -benchtime 1x
func BenchmarkConsumeEndToEnd(b *testing.B) {
	conn := kafkabus.Connection{Brokers: testinfra.KafkaBrokers(b), ClientID: "metrics-consumer-bench"}
	lifecycle, metrics := kafkabustest.Name("bench-mc-lifecycle"), kafkabustest.Name("bench-mc-metrics")
	kafkabustest.TopicsWithDLQ(b, conn.Brokers, 10, lifecycle, metrics)
	total := prefill(b, conn, lifecycle, metrics)
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			consumeEndToEnd(b, conn, lifecycle, metrics, total, d)
		})
	}
}

// peerEvents is the number of events of the peer measurement.
const peerEvents = 50_000

func consumeEndToEnd(b *testing.B, conn kafkabus.Connection, lifecycle, metrics string, total int64, d sqlstoretest.NamedDB) {
	logger := slog.New(slog.DiscardHandler)
	ctx := context.Background()

	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		cfg := DefaultConfig()
		cfg.Kafka = conn
		cfg.Topics = []string{lifecycle, metrics}
		cfg.Schemas = map[string]string{lifecycle: events.TopicJobLifecycle, metrics: events.TopicJobMetrics}
		cfg.Group = kafkabustest.Name("bench-mc-" + strconv.Itoa(i))
		cfg.DatabaseURL = d.URL(b)
		p, err := build(ctx, cfg, logger, nil)
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		var batchDur, perEvent []time.Duration
		timed := func(ctx context.Context, msgs []*bus.Message) error {
			start := time.Now()
			err := p.ingest.HandleBatch(ctx, msgs)
			d := time.Since(start)
			mu.Lock()
			batchDur = append(batchDur, d)
			perEvent = append(perEvent, d/time.Duration(len(msgs)))
			mu.Unlock()
			return err
		}
		ccfg := kafkabus.DefaultConsumerConfig(conn, cfg.Group, cfg.Topics...)
		ccfg.DLQ, ccfg.BatchSize, ccfg.BatchWait = p.dlq, cfg.BatchSize, cfg.BatchWait
		consumer, err := kafkabus.NewBatchConsumer(ccfg, timed, p.ingest.Handle, logger, nil)
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- consumer.Run(runCtx) }()
		for {
			var n int64
			if err := p.db.Writer().QueryRow("SELECT count(*) FROM inbox_processed").Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n >= total {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		_ = p.close()
		slices.Sort(batchDur)
		slices.Sort(perEvent)
		q := func(d []time.Duration, q float64) float64 {
			return float64(d[min(int(q*float64(len(d))), len(d)-1)]) / float64(time.Millisecond)
		}
		b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(len(batchDur)), "batches")
		b.ReportMetric(q(batchDur, 0.50), "batch-p50-ms")
		b.ReportMetric(q(batchDur, 0.99), "batch-p99-ms")
		b.ReportMetric(q(perEvent, 0.99)*1000, "handler-p99-µs/event")
		peerDB := sqlstoretest.OpenConfig(b, sqlstore.Config{URL: d.URL(b), Synchronous: sqlstore.SynchronousFull})
		peer := inboxtest.Rate(b, peerDB, peerEvents, cfg.BatchSize)
		b.ReportMetric(peer, inboxtest.PeerMetric)
		b.ReportMetric(100*float64(total)/elapsed.Seconds()/peer, "%-of-peer")
		b.StartTimer()
	}
}

// prefill publishes a generated stream of at least benchEvents events and
// returns the number of events published.
func prefill(b *testing.B, conn kafkabus.Connection, lifecycle, metrics string) int64 {
	b.Helper()
	codec, err := events.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	plans := testgen.Plans(99, benchEvents/5, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	evs, err := testgen.Stream(plans)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed sync.Once
	var pubErr error
	for _, ev := range evs {
		m, err := codec.Message(ev)
		if err != nil {
			b.Fatal(err)
		}
		if m.Topic == events.TopicJobLifecycle {
			m.Topic = lifecycle
		} else {
			m.Topic = metrics
		}
		wg.Add(1)
		if err := prod.PublishAsync(context.Background(), m, func(err error) {
			if err != nil {
				failed.Do(func() { pubErr = err })
			}
			wg.Done()
		}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	if pubErr != nil {
		b.Fatal(pubErr)
	}
	return int64(len(evs))
}
