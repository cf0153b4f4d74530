// Command fleetbench measures the fleet's Kafka and AMQP buses against the
// real brokers of the local stack and prints a markdown report. Every number
// of one report comes from one run on the same brokers:
//
//   - Kafka publish throughput of the bus against Kafka's own producer
//     performance tool (org.apache.kafka.tools.ProducerPerformance from the
//     stack's jars), same record size, acks=all, idempotence and compression;
//   - Kafka publish latency (call to acknowledgement) at a fixed rate;
//   - Kafka publish→handler latency through a consumer group;
//   - AMQP publish→consumer latency with publisher confirms, and the confirm
//     latency, at a fixed rate.
//
// It reads KAFKA_BROKERS, AMQP_URL and KAFKA_CLASSPATH (`tools/stack/stack.sh env`).
//
// Subcommands measure the job-orchestrator through its real gRPC server,
// started from its binary on a fresh database:
//
//   - fleetbench submit: SubmitJob with N concurrent clients on SQLite and
//     PostgreSQL, next to grpc.health.v1 Check under the same load;
//   - fleetbench sweep: N short jobs on the local backend from the first
//     SubmitJob to the last COMPLETED, split into submit, dispatch, run and
//     record.
//
// fleetbench consumers runs the stateful consumers' go benchmarks (from the
// repository root) and prints each figure next to its target and its peer,
// the raw inbox rate measured in the same run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type options struct {
	records    int           // throughput: records per producer
	recordSize int           // bytes per record, all measurements
	rate       int           // latency runs: messages per second
	duration   time.Duration // latency runs: how long each lasts
	partitions int32
	pin        bool // repeat the Kafka latency runs with brokers and clients on separate CPUs
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "submit":
			return runSubmit(ctx, args[1:], stdout, stderr)
		case "sweep":
			return runSweep(ctx, args[1:], stdout, stderr)
		case "consumers":
			return runConsumers(ctx, args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("fleetbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.records, "records", 300_000, "records sent by each producer in the throughput comparison")
	fs.IntVar(&o.recordSize, "record-size", 512, "record size in bytes")
	fs.IntVar(&o.rate, "rate", 1000, "messages per second in the latency runs")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each latency run")
	partitions := fs.Int("partitions", 10, "partitions of the benchmark topic")
	fs.BoolVar(&o.pin, "pin", true, "repeat the Kafka latency runs with the local brokers pinned to the last CPU and the clients to the others (taskset)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.partitions = int32(*partitions)
	if o.records < 1 || o.recordSize < 16 || o.rate < 1 || o.duration <= 0 || o.partitions < 1 {
		return errors.New("records, rate, duration and partitions must be positive; record-size at least 16")
	}
	env, err := envFromOS()
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "==> "+format+"\n", a...) }

	r := report{options: o, started: time.Now()}
	if err := benchKafka(ctx, env, o, logger, progress, &r); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if err := benchAMQP(ctx, env, o, logger, progress, &r); err != nil {
		return fmt.Errorf("amqp: %w", err)
	}
	r.write(stdout)
	return nil
}

type environment struct {
	brokers        []string
	amqpURL        string
	kafkaClasspath string
}

func envFromOS() (environment, error) {
	e := environment{
		amqpURL:        os.Getenv("AMQP_URL"),
		kafkaClasspath: os.Getenv("KAFKA_CLASSPATH"),
	}
	e.brokers = strings.FieldsFunc(os.Getenv("KAFKA_BROKERS"), func(r rune) bool { return r == ',' })
	if len(e.brokers) == 0 || e.amqpURL == "" || e.kafkaClasspath == "" {
		return e, errors.New(`KAFKA_BROKERS, AMQP_URL and KAFKA_CLASSPATH must be set: eval "$(tools/stack/stack.sh env)"`)
	}
	return e, nil
}
