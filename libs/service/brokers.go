package service

import "github.com/cosmic-horizons/fleet/libs/kafkabus"

// Brokers is the connection block the services share, embedded in their
// configurations and read by envconf.Load: the Kafka connection
// (KAFKA_BROKERS, KAFKA_CLIENT_ID, KAFKA_VERSION, KAFKA_TLS_*) and the
// RabbitMQ URL (AMQP_URL; amqps:// for TLS).
type Brokers struct {
	Kafka   kafkabus.Connection
	AMQPURL string `env:"AMQP_URL"`
}
