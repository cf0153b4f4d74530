package kafkabus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

type producerMetrics struct {
	published *prometheus.CounterVec
	failures  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newProducerMetrics(reg prometheus.Registerer) (*producerMetrics, error) {
	var m producerMetrics
	var err error
	if m.published, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_kafka_messages_published_total",
		Help: "Messages acknowledged by the Kafka cluster.",
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	if m.failures, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_kafka_publish_failures_total",
		Help: "Messages the Kafka cluster did not acknowledge after all retries.",
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	if m.duration, err = bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleet_kafka_publish_duration_seconds",
		Help:    "Time from handing a message to the producer to its delivery report.",
		Buckets: bus.LatencyBuckets,
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	return &m, nil
}

type consumerMetrics struct {
	consumed *prometheus.CounterVec
	duration *prometheus.HistogramVec
	lag      *prometheus.GaugeVec
	retries  *prometheus.CounterVec
	stalled  *prometheus.GaugeVec
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
	if m.consumed, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_kafka_messages_consumed_total",
		Help: "Messages consumed, by outcome: ok (handled), dlq (sent to the dead-letter topic), error (left unmarked).",
	}, []string{"topic", "outcome"})); err != nil {
		return nil, err
	}
	if m.duration, err = bus.RegisterMetric(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fleet_kafka_handler_duration_seconds",
		Help:    "Time spent in the handler chain per message, retries included.",
		Buckets: bus.LatencyBuckets,
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	if m.lag, err = bus.RegisterMetric(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleet_kafka_consumer_lag",
		Help: "Messages behind the partition's high water mark after the last consumed message.",
	}, []string{"group", "topic", "partition"})); err != nil {
		return nil, err
	}
	if m.retries, err = bus.RegisterMetric(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleet_kafka_handler_retries_total",
		Help: "Retries of messages whose handler failed transiently (a dependency down): each one is a backoff step.",
	}, []string{"topic"})); err != nil {
		return nil, err
	}
	if m.stalled, err = bus.RegisterMetric(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleet_kafka_consumer_stalled",
		Help: "1 while a partition's message is being retried after a transient failure, else 0.",
	}, []string{"group", "topic", "partition"})); err != nil {
		return nil, err
	}
	return &m, nil
}
