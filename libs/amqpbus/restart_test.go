package amqpbus_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
)

// The tests in this file disturb the broker and do not run in parallel.

func TestConsumerResubscribesAfterConnectionClosed(t *testing.T) {
	requireRabbitmqctl(t)
	reg := prometheus.NewRegistry()
	conn := dial(t, nil, reg)
	publisherConn := dial(t, func(c *amqpbus.Config) { c.ConnectionName += "-publisher" }, nil)
	pub := newPublisher(t, publisherConn, amqpbus.PublisherConfig{}, nil)

	// An exclusive queue dies with its connection; the Conn declares it again.
	queue := uniqueName(t, "resubscribe")
	declareQueue(t, conn, amqpbus.QueueSpec{Name: queue, AutoDelete: true, Exclusive: true})
	received := make(chan string, 10)
	cons, err := amqpbus.NewConsumer(conn, amqpbus.ConsumerConfig{Queue: queue, Retry: fastRetry(), ResubscribeDelay: 50 * time.Millisecond},
		func(_ context.Context, msg *bus.Message) error {
			received <- string(msg.Value)
			return nil
		}, testLogger(t), reg)
	require.NoError(t, err)
	runConsumer(t, cons)

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	receive := func(want string) {
		t.Helper()
		select {
		case got := <-received:
			require.Equal(t, want, got)
		case <-ctx.Done():
			t.Fatalf("%s not received", want)
		}
	}
	require.NoError(t, pub.Publish(ctx, "", queue, &bus.Message{Value: []byte("before")}))
	receive("before")

	closeConnection(t, conn.LocalAddr())
	require.Eventually(t, func() bool { return metricValue(t, reg, "fleet_amqp_reconnects_total") >= 1 },
		30*time.Second, 20*time.Millisecond, "reconnected")
	require.Eventually(t, conn.Connected, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, conn.Check(ctx))

	require.NoError(t, pub.Publish(ctx, "", queue, &bus.Message{Value: []byte("after")}))
	receive("after")
}

// TestPublishRepublishesAfterConnectionClosed closes the publisher's
// connection while many publishes wait for their confirms.
func TestPublishRepublishesAfterConnectionClosed(t *testing.T) {
	requireRabbitmqctl(t)
	reg := prometheus.NewRegistry()
	conn := dial(t, nil, reg)
	pub := newPublisher(t, conn, amqpbus.PublisherConfig{}, reg)
	queue := uniqueName(t, "republish")
	declareQueue(t, conn, amqpbus.QueueSpec{Name: queue, Durable: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Publish as fast as possible until well after the reconnect.
	const workers = 16
	var (
		next      atomic.Int32
		stop      atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		confirmed []string
		failed    []error
	)
	for range workers {
		wg.Go(func() {
			for !stop.Load() {
				msgID := id(int(next.Add(1)))
				err := pub.Publish(ctx, "", queue, &bus.Message{Headers: map[string]string{amqpbus.HeaderEventID: msgID}})
				mu.Lock()
				if err == nil {
					confirmed = append(confirmed, msgID)
				} else {
					failed = append(failed, err)
				}
				mu.Unlock()
			}
		})
	}
	require.Eventually(t, func() bool { return next.Load() >= 200 }, time.Minute, time.Millisecond)
	closeConnection(t, conn.LocalAddr())
	require.Eventually(t, func() bool { return metricValue(t, reg, "fleet_amqp_reconnects_total") >= 1 },
		30*time.Second, 10*time.Millisecond, "reconnected")
	resumed := next.Load()
	require.Eventually(t, func() bool { return next.Load() >= resumed+500 }, time.Minute, time.Millisecond,
		"publishing goes on after the reconnect")
	stop.Store(true)
	wg.Wait()
	require.Empty(t, failed)

	received := map[string]bool{}
	for _, d := range drain(t, rawChannel(t), queue) {
		received[d.MessageId] = true
	}
	var missing []string
	for _, msgID := range confirmed {
		if !received[msgID] {
			missing = append(missing, msgID)
		}
	}
	require.Empty(t, missing, "confirmed but not in the queue")
	t.Logf("%d published, %d retried after the connection closed",
		len(confirmed), int(metricValue(t, reg, "fleet_amqp_publish_retries_total")))
}

// TestOutagePublishSurvivesBrokerRestart stops and starts the broker application
// in the middle of a stream of publishes: every publish that returned nil
// must be in the durable queue afterwards, and the publisher must carry on
// by itself. It disturbs every client of the broker for a few seconds, so,
// like every TestOutage test, `make test` runs it alone after the others.
func TestOutagePublishSurvivesBrokerRestart(t *testing.T) {
	requireRabbitmqctl(t)
	reg := prometheus.NewRegistry()
	conn := dial(t, nil, reg)
	pub := newPublisher(t, conn, amqpbus.PublisherConfig{PublishTimeout: 2 * time.Minute}, reg)
	job := "restart-" + randomSuffix(t)
	queue := uniqueName(t, "restart")
	declareQueue(t, conn, amqpbus.QueueSpec{
		Name:     queue,
		Durable:  true,
		Bindings: []amqpbus.Binding{{Exchange: amqpbus.ExchangeJobEvents, Pattern: amqpbus.JobPattern(job)}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const total, workers = 2000, 8
	key := amqpbus.JobRoutingKey("erin", job, "job.running")
	var (
		mu        sync.Mutex
		confirmed = map[string]bool{}
		failed    []error
		count     atomic.Int32
		next      atomic.Int32
		wg        sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				err := pub.Publish(ctx, amqpbus.ExchangeJobEvents, key, &bus.Message{
					Value:   []byte(id(i)),
					Headers: map[string]string{amqpbus.HeaderEventID: id(i)},
				})
				mu.Lock()
				if err == nil {
					confirmed[id(i)] = true
				} else {
					failed = append(failed, err)
				}
				mu.Unlock()
				count.Add(1)
				time.Sleep(5 * time.Millisecond) // spread the publishes over the restart
			}
		})
	}

	require.Eventually(t, func() bool { return count.Load() >= total/4 }, time.Minute, time.Millisecond)
	doneAtStop := count.Load()
	rabbitmqctl(t, "stop_app")
	time.Sleep(500 * time.Millisecond)
	rabbitmqctl(t, "start_app")
	rabbitmqctl(t, "await_startup")
	wg.Wait()

	require.Less(t, int(doneAtStop), total, "the broker stopped in the middle of the publishes")
	require.Empty(t, failed, "publishes wait for the reconnect and publish again")
	require.Len(t, confirmed, total)
	require.GreaterOrEqual(t, metricValue(t, reg, "fleet_amqp_reconnects_total"), 1.0)
	require.Equal(t, 1.0, metricValue(t, reg, "fleet_amqp_connected"))

	// Every confirmed message is in the queue; a message whose confirm was
	// lost with the connection may be there twice.
	received := map[string]int{}
	for _, d := range drain(t, rawChannel(t), queue) {
		received[d.MessageId]++
	}
	var missing []string
	for msgID := range confirmed {
		if received[msgID] == 0 {
			missing = append(missing, msgID)
		}
	}
	require.Empty(t, missing, "confirmed but not in the queue")
	var duplicates int
	for _, n := range received {
		duplicates += n - 1
	}
	t.Logf("published %d, %d done when the broker stopped, %d received, %d duplicates, %.0f publishes retried",
		total, doneAtStop, len(received), duplicates, metricValue(t, reg, "fleet_amqp_publish_retries_total"))
}
