// Package chaos holds the fleet's fault-injection run (`make chaos`): a
// test behind the build tag "chaos" that starts its own three-broker Kafka
// cluster (replication 3, min.insync.replicas 2) from the stack's Kafka
// jars, runs the five services against it and the shared RabbitMQ, mailpit
// and the local scheduler, submits a steady load of jobs, SIGKILLs brokers,
// consumers and the orchestrator and restarts them, and prints a table of
// what the stream, the services and the mailbox hold afterwards.
//
// It is not part of `make test`: run it with
//
//	make chaos
//
// or, with the stack's environment exported,
//
//	go test -tags chaos -run TestChaos -v -timeout 30m ./tools/chaos/
package chaos
