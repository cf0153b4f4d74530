package amqpbus_test

import (
	"context"
	"testing"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
)

// BenchmarkPublishConfirm publishes persistent 256-byte messages with
// confirms to a durable queue from 8 goroutines per CPU.
func BenchmarkPublishConfirm(b *testing.B) {
	conn := dial(b, nil, nil)
	pub := newPublisher(b, conn, amqpbus.PublisherConfig{}, nil)
	queue := uniqueName(b, "bench")
	declareQueue(b, conn, amqpbus.QueueSpec{Name: queue, Durable: true, MaxLength: -1, NoDeadLetter: true})
	payload := make([]byte, 256)
	ctx := context.Background()
	b.SetBytes(int64(len(payload)))
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := pub.Publish(ctx, "", queue, &bus.Message{Value: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
