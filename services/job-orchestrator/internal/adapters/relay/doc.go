// Package relay holds the integration tests of the outbox relay
// (libs/outbox) on the orchestrator's store: job events written by store
// transitions, published to the real Kafka and RabbitMQ.
package relay
