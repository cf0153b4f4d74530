package amqpbus

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBuckets cover a sub-millisecond local confirm up to a stalled broker.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// register registers c with reg, or returns the collector already registered
// under the same description so that several connections, publishers or
// consumers of one process share their metrics. A nil reg leaves c unregistered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register metric: %w", err)
	}
	return c, nil
}

type connMetrics struct {
	connected  prometheus.Gauge
	reconnects prometheus.Counter
}

func newConnMetrics(reg prometheus.Registerer, name string) (*connMetrics, error) {
	connected, err := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleet_amqp_connected",
		Help: "1 while the AMQP connection is open, 0 while it is down.",
	}, []string{"connection"}))
	if err != nil {
		return nil, err
	}
	reconnects, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_reconnects_total",
		Help: "Successful reconnects after the AMQP connection was lost.",
	}, []string{"connection"}))
	if err != nil {
		return nil, err
	}
	return &connMetrics{
		connected:  connected.WithLabelValues(name),
		reconnects: reconnects.WithLabelValues(name),
	}, nil
}

type publisherMetrics struct {
	published   *prometheus.CounterVec
	failures    *prometheus.CounterVec
	republished *prometheus.CounterVec
	confirm     *prometheus.HistogramVec
}

func newPublisherMetrics(reg prometheus.Registerer) (*publisherMetrics, error) {
	var m publisherMetrics
	var err error
	if m.published, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_messages_published_total",
		Help: "Messages the broker confirmed.",
	}, []string{"exchange"})); err != nil {
		return nil, err
	}
	if m.failures, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_publish_failures_total",
		Help: "Publishes that returned an error (nack, unroutable, timeout, closed).",
	}, []string{"exchange"})); err != nil {
		return nil, err
	}
	if m.republished, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_publish_retries_total",
		Help: "Messages published again because the connection was lost before their confirm.",
	}, []string{"exchange"})); err != nil {
		return nil, err
	}
	if m.confirm, err = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleet_amqp_publish_confirm_seconds",
		Help:    "Time from Publish to the broker's confirm, republishes included.",
		Buckets: latencyBuckets,
	}, []string{"exchange"})); err != nil {
		return nil, err
	}
	return &m, nil
}

type consumerMetrics struct {
	consumed *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Outcomes of a consumed message.
const (
	outcomeOK   = "ok"
	outcomeDLQ  = "dead_lettered"
	outcomeLost = "ack_failed"
)

func newConsumerMetrics(reg prometheus.Registerer) (*consumerMetrics, error) {
	var m consumerMetrics
	var err error
	if m.consumed, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_amqp_messages_consumed_total",
		Help: "Deliveries handled, by outcome: ok (acked), dead_lettered (rejected to the dead-letter exchange), ack_failed (channel lost; the broker redelivers).",
	}, []string{"queue", "outcome"})); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleet_amqp_handler_duration_seconds",
		Help:    "Time spent in the handler chain per delivery, retries included.",
		Buckets: latencyBuckets,
	}, []string{"queue"})); err != nil {
		return nil, err
	}
	return &m, nil
}
