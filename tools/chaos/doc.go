// Package chaos holds the fleet's fault-injection run (`make chaos`): a
// test behind the build tag "chaos" that starts its own three-broker Kafka
// cluster (replication 3, min.insync.replicas 2) from the stack's Kafka
// jars, a PostgreSQL cluster and a RabbitMQ node of its own, runs the five
// services against them, the shared mailpit and the local scheduler,
// submits a steady load of jobs, SIGKILLs brokers, consumers and the
// orchestrator and restarts them, stops PostgreSQL and RabbitMQ for 30 s,
// restarts the slurmctld of a Slurm cluster of its own (`stack.sh
// slurm-cluster chaos`) under a second orchestrator on the Slurm backend
// with jobs pending and running there, and prints a table of what the
// stream, the services, the mailbox and Slurm's accounting hold afterwards.
// CHAOS_FAULTS selects faults for a focused run.
//
// It is not part of `make test`: run it with
//
//	make chaos
//
// or, with the stack's environment exported,
//
//	go test -tags chaos -run TestChaos -v -timeout 30m ./tools/chaos/
package chaos
