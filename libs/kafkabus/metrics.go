package kafkabus

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBuckets cover a sub-millisecond local ack up to a stalled cluster.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// register registers c with reg, or returns the collector already registered
// under the same description so that several producers or consumers of one
// process share their metrics. A nil reg leaves c unregistered.
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

type producerMetrics struct {
	published *prometheus.CounterVec
	failures  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newProducerMetrics(reg prometheus.Registerer) (*producerMetrics, error) {
	var m producerMetrics
	var err error
	if m.published, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_kafka_messages_published_total",
		Help: "Messages acknowledged by the Kafka cluster.",
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	if m.failures, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_kafka_publish_failures_total",
		Help: "Messages the Kafka cluster did not acknowledge after all retries.",
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleet_kafka_publish_duration_seconds",
		Help:    "Time from handing a message to the producer to its delivery report.",
		Buckets: latencyBuckets,
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	return &m, nil
}

type consumerMetrics struct {
	consumed *prometheus.CounterVec
	duration *prometheus.HistogramVec
	lag      *prometheus.GaugeVec
}

// Outcomes of a consumed message.
const (
	outcomeOK    = "ok"
	outcomeDLQ   = "dlq"
	outcomeError = "error"
)

func newConsumerMetrics(reg prometheus.Registerer) (*consumerMetrics, error) {
	var m consumerMetrics
	var err error
	if m.consumed, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_kafka_messages_consumed_total",
		Help: "Messages consumed, by outcome: ok (handled), dlq (sent to the dead-letter topic), error (left unmarked).",
	}, []string{"topic", "outcome"})); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleet_kafka_handler_duration_seconds",
		Help:    "Time spent in the handler chain per message, retries included.",
		Buckets: latencyBuckets,
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	if m.lag, err = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleet_kafka_consumer_lag",
		Help: "Messages behind the partition's high water mark after the last consumed message.",
	}, []string{"group", "topic", "partition"})); err != nil {
		return nil, err
	}
	return &m, nil
}
