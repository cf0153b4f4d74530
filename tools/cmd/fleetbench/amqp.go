package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
)

// amqpPublishers is how many publishes may wait for their confirm at once, so
// that a slow confirm does not hold back the fixed publish rate.
const amqpPublishers = 8

// benchAMQP publishes persistent messages with confirms at a fixed rate to a
// queue consumed with manual acks, and records the confirm latency and the
// publish→handler latency.
func benchAMQP(ctx context.Context, env environment, o options, logger *slog.Logger, progress func(string, ...any), r *report) error {
	progress("AMQP latency: %d msg/s for %s with publisher confirms", o.rate, o.duration)
	conn, err := amqpbus.Dial(ctx, amqpbus.Config{URL: env.amqpURL, ConnectionName: "fleetbench"}, logger, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer conn.Close()
	queue := "fleetbench." + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := conn.DeclareQueue(ctx, amqpbus.QueueSpec{Name: queue, Exclusive: true, AutoDelete: true,
		NoDeadLetter: true, MaxLength: -1, MessageTTL: -1}); err != nil {
		return err
	}
	publisher, err := amqpbus.NewPublisher(conn, amqpbus.PublisherConfig{}, logger, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer publisher.Close()

	total := o.rate * int(o.duration/time.Second)
	handled := make(chan time.Duration, total+1)
	cfg := amqpbus.DefaultConsumerConfig(queue)
	cfg.Prefetch = 256
	consumer, err := amqpbus.NewConsumer(conn, cfg, func(_ context.Context, m *bus.Message) error {
		ns, err := strconv.ParseInt(m.Header(headerSentAt), 10, 64)
		if err != nil {
			return bus.Permanent(err)
		}
		handled <- time.Since(time.Unix(0, ns))
		return nil
	}, logger, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- consumer.Run(runCtx) }()
	defer func() { stop(); <-runErr }()

	payload := letters(o.recordSize)
	publish := func() (time.Duration, error) {
		sent := time.Now()
		msg := &bus.Message{Value: payload, Headers: map[string]string{headerSentAt: strconv.FormatInt(sent.UnixNano(), 10)}}
		err := publisher.Publish(ctx, "", queue, msg)
		return time.Since(sent), err
	}
	// The first message proves the subscription is active; it is not measured.
	if _, err := publish(); err != nil {
		return err
	}
	if _, err := collect(ctx, handled, 1); err != nil {
		return fmt.Errorf("first message: %w", err)
	}

	confirms := make(chan time.Duration, total)
	ticks := make(chan struct{})
	var wg sync.WaitGroup
	for range amqpPublishers {
		wg.Go(func() {
			for range ticks {
				d, err := publish()
				if err != nil {
					logger.Error("publish", "err", err)
					d = -1
				}
				confirms <- d
			}
		})
	}
	pace := newPacer(o.rate)
	for range total {
		pace.wait()
		ticks <- struct{}{}
	}
	close(ticks)
	wg.Wait()
	if r.amqpConfirm, err = collect(ctx, confirms, total); err != nil {
		return fmt.Errorf("confirms: %w", err)
	}
	if r.amqpEndToEnd, err = collect(ctx, handled, total); err != nil {
		return fmt.Errorf("handled messages: %w", err)
	}
	return nil
}
