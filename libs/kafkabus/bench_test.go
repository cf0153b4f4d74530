package kafkabus_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// benchRecordSize matches the record size given to Kafka's ProducerPerformance
// when comparing throughput.
const benchRecordSize = 512

func benchConn(b *testing.B) kafkabus.Connection {
	b.Helper()
	return kafkabus.Connection{Brokers: testinfra.KafkaBrokers(b), ClientID: "kafkabus-bench"}
}

// benchPayload is random upper-case text, like ProducerPerformance's payload.
func benchPayload() []byte {
	p := make([]byte, benchRecordSize)
	for i := range p {
		p[i] = byte('A' + rand.N(26))
	}
	return p
}

func BenchmarkPublish(b *testing.B) {
	conn := benchConn(b)
	topic := newTopic(b, conn, "bench", 6)
	producer := newProducer(b, kafkabus.DefaultProducerConfig(conn))
	payload := benchPayload()
	ctx := context.Background()
	// Warm up metadata and the connection.
	require.NoError(b, producer.Publish(ctx, &bus.Message{Topic: topic, Value: payload}))

	b.Run("sequential", func(b *testing.B) {
		b.SetBytes(benchRecordSize)
		i := 0
		for b.Loop() {
			i++
			if err := producer.Publish(ctx, &bus.Message{Topic: topic, Key: strconv.Itoa(i % 1000), Value: payload}); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(benchRecordSize)
		b.SetParallelism(64) // many concurrent publishers, as in a busy service
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				if err := producer.Publish(ctx, &bus.Message{Topic: topic, Key: strconv.FormatInt(i%1000, 10), Value: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	b.Run("async", func(b *testing.B) {
		b.SetBytes(benchRecordSize)
		var wg sync.WaitGroup
		var failed atomic.Int64
		var firstErr atomic.Value
		i := 0
		for b.Loop() {
			i++
			wg.Add(1)
			err := producer.PublishAsync(ctx, &bus.Message{Topic: topic, Key: strconv.Itoa(i % 1000), Value: payload}, func(err error) {
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				wg.Done()
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
		if failed.Load() > 0 {
			b.Fatalf("%d publishes failed, first: %v", failed.Load(), firstErr.Load())
		}
	})
}

// BenchmarkPublishLatency publishes at a fixed 1,000 msg/s and reports the
// latency percentiles of Publish (hand-over to acknowledgement).
func BenchmarkPublishLatency(b *testing.B) {
	conn := benchConn(b)
	topic := newTopic(b, conn, "bench-latency", 6)
	producer := newProducer(b, kafkabus.DefaultProducerConfig(conn))
	payload := benchPayload()
	ctx := context.Background()
	require.NoError(b, producer.Publish(ctx, &bus.Message{Topic: topic, Value: payload}))

	const rate = 1000
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	ticker := time.NewTicker(time.Second / rate)
	defer ticker.Stop()
	i := 0
	for b.Loop() {
		<-ticker.C
		i++
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			start := time.Now()
			if err := producer.Publish(ctx, &bus.Message{Topic: topic, Key: strconv.Itoa(i % 1000), Value: payload}); err != nil {
				b.Error(err)
				return
			}
			d := time.Since(start)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(0.999), "p99.9-ms")
}
