// Package watchfeed tells this replica's job watchers about changes other
// replicas made: it consumes every job-lifecycle event the relays publish
// on the RabbitMQ job.events exchange, through a queue of its own, and
// wakes the watchers of the event's job. Without it a watch sees another
// replica's change only at its next poll.
package watchfeed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
)

// Notifier is woken for each job that changed.
type Notifier interface {
	NotifyWatchers(jobID string)
}

// QueueName returns a queue name unique to this process: the host name and
// a random suffix, so that replicas (and restarts) never share a queue.
func QueueName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "local"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "job-orchestrator.watch." + strings.NewReplacer(".", "-", "*", "-", "#", "-").Replace(host) + "-" + hex.EncodeToString(b)
}

// Start declares queue (exclusive, deleted with the connection, bounded:
// a lost wake-up only delays a watch until its next poll) bound to every
// job event, and returns the consumer that feeds n; Run it.
func Start(ctx context.Context, conn *amqpbus.Conn, queue string, codec *events.Codec, n Notifier, logger *slog.Logger, reg prometheus.Registerer) (*amqpbus.Consumer, error) {
	err := conn.DeclareQueue(ctx, amqpbus.QueueSpec{
		Name:         queue,
		Bindings:     []amqpbus.Binding{{Exchange: conn.Topology().JobEvents, Pattern: amqpbus.AllJobsPattern}},
		Exclusive:    true,
		AutoDelete:   true,
		MaxLength:    10_000,
		MessageTTL:   time.Minute,
		NoDeadLetter: true,
	})
	if err != nil {
		return nil, fmt.Errorf("declare watch queue: %w", err)
	}
	ccfg := amqpbus.DefaultConsumerConfig(queue)
	ccfg.Prefetch = 256
	ccfg.Retry = bus.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	cons, err := amqpbus.NewConsumer(conn, ccfg, Handler(codec, n), logger.With("component", "watch feed"), reg)
	if err != nil {
		return nil, fmt.Errorf("watch feed consumer: %w", err)
	}
	return cons, nil
}

// Handler decodes a job-lifecycle message and wakes the watchers of its
// job. A message that does not decode is dropped (the queue has no
// dead-letter exchange): the watchers see the change at their next poll.
func Handler(codec *events.Codec, n Notifier) bus.Handler {
	return func(_ context.Context, msg *bus.Message) error {
		m := *msg
		m.Topic = events.TopicJobLifecycle
		ev, err := codec.FromMessage(&m)
		if err != nil {
			return err
		}
		if id := jobID(ev); id != "" {
			n.NotifyWatchers(id)
		}
		return nil
	}
}

// jobID is the job of a job-lifecycle event (its message key); "" for
// anything else.
func jobID(ev events.Event) string {
	if ev.Topic() != events.TopicJobLifecycle {
		return ""
	}
	return ev.Key()
}
