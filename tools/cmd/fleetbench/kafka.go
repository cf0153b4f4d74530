package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

// headerSentAt carries the publish time of a latency probe in Unix nanoseconds.
const headerSentAt = "x-sent-at-ns"

// compression is used by both producers of the throughput comparison.
const compression = "zstd"

func benchKafka(ctx context.Context, env environment, o options, logger *slog.Logger, progress func(string, ...any), r *report) error {
	conn := kafkabus.Connection{Brokers: env.brokers, ClientID: "fleetbench"}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	throughputTopic := "fleetbench.throughput." + suffix
	latencyTopics := []string{"fleetbench.latency." + suffix, "fleetbench.latency-pinned." + suffix}
	specs := []events.TopicSpec{benchTopic(throughputTopic, o.partitions)}
	names := []string{throughputTopic}
	for _, t := range latencyTopics {
		// The latency runs' consumer needs a dead-letter topic to start.
		specs = append(specs, benchTopic(t, o.partitions), benchTopic(events.DLQTopic(t), 1))
		names = append(names, t, events.DLQTopic(t))
	}
	if _, err := kafkabus.EnsureTopics(ctx, env.brokers, specs, logger, kafkabus.EnsureOptions{ClientID: "fleetbench"}); err != nil {
		return err
	}
	defer func() {
		if err := kafkabus.DeleteTopics(context.WithoutCancel(ctx), conn, names...); err != nil {
			logger.Warn("delete benchmark topics", "err", err)
		}
	}()

	producer, err := kafkabus.NewProducer(kafkabus.ProducerConfig{Connection: conn, Compression: compression}, logger, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer producer.Close()
	payload := letters(o.recordSize)

	// The latency runs come first: the throughput runs leave the broker
	// writing hundreds of megabytes back to disk for a while after.
	if r.shared, err = latencyRun(ctx, env, conn, producer, latencyTopics[0], throughputTopic, payload, o, nil, logger, progress); err != nil {
		return err
	}
	if o.pin {
		if r.pinned, r.pinNote, err = pinnedLatencyRun(ctx, env, conn, producer, latencyTopics[1], throughputTopic, payload, o, logger, progress); err != nil {
			return err
		}
	}

	progress("Kafka throughput: ProducerPerformance with its default batching, %d records of %d B", o.records, o.recordSize)
	r.perfTool, err = runProducerPerformance(ctx, env, throughputTopic, o, o.records, -1, nil)
	if err != nil {
		return err
	}
	progress("Kafka throughput: ProducerPerformance with 256 KiB batches, %d records of %d B", o.records, o.recordSize)
	r.perfToolTuned, err = runProducerPerformance(ctx, env, throughputTopic, o, o.records, -1, nil, "batch.size=262144", "linger.ms=5")
	if err != nil {
		return err
	}
	progress("Kafka throughput: the fleet's producer, %d records of %d B", o.records, o.recordSize)
	r.busThroughput, err = busThroughput(ctx, producer, throughputTopic, payload, o.records)
	return err
}

// kafkaLatencyRun is one measurement of the call → ack latency at a fixed
// rate with its peer, Kafka's own producer at the same rate on the same
// broker just before.
type kafkaLatencyRun struct {
	perfAtRate    throughput
	ack, endToEnd latencies
	measured      bool
}

func latencyRun(ctx context.Context, env environment, conn kafkabus.Connection, p *kafkabus.Producer, topic, perfTopic string,
	payload []byte, o options, pin *pinning, logger *slog.Logger, progress func(string, ...any)) (kafkaLatencyRun, error) {
	var run kafkaLatencyRun
	var err error
	progress("Kafka latency: ProducerPerformance at %d msg/s for %s", o.rate, o.duration)
	perfRecords := o.rate * int(o.duration/time.Second)
	if run.perfAtRate, err = runProducerPerformance(ctx, env, perfTopic, o, max(perfRecords, o.rate), o.rate, pin); err != nil {
		return run, err
	}
	progress("Kafka latency: %d msg/s for %s through a consumer group", o.rate, o.duration)
	run.ack, run.endToEnd, err = kafkaLatency(ctx, conn, p, topic, payload, o, logger)
	run.measured = err == nil
	return run, err
}

// pinnedLatencyRun repeats the latency run with the brokers and the clients
// on separate CPUs. A broker that cannot be pinned (not on this machine, no
// taskset) is reported in note, not as a failure.
func pinnedLatencyRun(ctx context.Context, env environment, conn kafkabus.Connection, p *kafkabus.Producer, topic, perfTopic string,
	payload []byte, o options, logger *slog.Logger, progress func(string, ...any)) (run kafkaLatencyRun, note string, err error) {
	pids, err := brokerPIDs(ctx, env.brokers)
	if err == nil {
		var pin *pinning
		if pin, err = pinApart(ctx, pids); err == nil {
			progress("Kafka latency, pinned apart: %s", pin)
			note = pin.String()
			run, err = latencyRun(ctx, env, conn, p, topic, perfTopic, payload, o, pin, logger, progress)
			if uerr := pin.undo(); uerr != nil {
				return run, note, errors.Join(err, uerr)
			}
			return run, note, err
		}
	}
	logger.Warn("latency with the brokers pinned apart not measured", "err", err)
	return run, "not measured: " + err.Error(), nil
}

func benchTopic(name string, partitions int32) events.TopicSpec {
	return events.TopicSpec{Name: name, Partitions: partitions, Retention: time.Hour, Compression: "producer",
		ReplicationFactor: 1, MinInsyncReplicas: 1}
}

// letters returns n random upper-case letters, the payload ProducerPerformance
// sends when it is given no payload file.
func letters(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('A' + rand.IntN(26))
	}
	return b
}

// throughput is a measured send rate.
type throughput struct {
	records       int
	recordsPerSec float64
	mbPerSec      float64
	p50, p95, p99 time.Duration // per-record send latency, as the tool reports it (whole ms)
}

var perfSummary = regexp.MustCompile(`(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\).* (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th`)

// runProducerPerformance runs Kafka's own producer benchmark with the same
// record size, acks, idempotence and compression as the fleet's producer;
// extraProps override its other producer settings.
func runProducerPerformance(ctx context.Context, env environment, topic string, o options, records, rate int, pin *pinning, extraProps ...string) (throughput, error) {
	args := []string{"-Xmx512m", "-cp", env.kafkaClasspath,
		"org.apache.kafka.tools.ProducerPerformance",
		"--topic", topic, "--num-records", strconv.Itoa(records), "--record-size", strconv.Itoa(o.recordSize),
		"--throughput", strconv.Itoa(rate),
		"--producer-props", "bootstrap.servers=" + strings.Join(env.brokers, ","), "acks=all",
		"enable.idempotence=true", "compression.type=" + compression}
	name, args := pin.command("java", append(args, extraProps...)...)
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return throughput{}, fmt.Errorf("ProducerPerformance: %w\n%s", err, out.String())
	}
	var last []string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if m := perfSummary.FindStringSubmatch(sc.Text()); m != nil {
			last = m
		}
	}
	if last == nil {
		return throughput{}, fmt.Errorf("ProducerPerformance printed no summary:\n%s", out.String())
	}
	n, _ := strconv.Atoi(last[1])
	rps, _ := strconv.ParseFloat(last[2], 64)
	mbps, _ := strconv.ParseFloat(last[3], 64)
	p50, _ := strconv.Atoi(last[4])
	p95, _ := strconv.Atoi(last[5])
	p99, _ := strconv.Atoi(last[6])
	return throughput{records: n, recordsPerSec: rps, mbPerSec: mbps,
		p50: time.Duration(p50) * time.Millisecond, p95: time.Duration(p95) * time.Millisecond, p99: time.Duration(p99) * time.Millisecond}, nil
}

// busThroughput sends records as fast as the producer takes them, keyed by
// 1,000 job ids as the fleet's lifecycle events are, and waits for every
// acknowledgement.
func busThroughput(ctx context.Context, p *kafkabus.Producer, topic string, payload []byte, records int) (throughput, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		lats     = make(latencies, 0, records)
	)
	wg.Add(records)
	start := time.Now()
	for i := range records {
		sent := time.Now()
		msg := &bus.Message{Topic: topic, Key: "job-" + strconv.Itoa(i%1000), Value: payload}
		err := p.PublishAsync(ctx, msg, func(err error) {
			d := time.Since(sent)
			mu.Lock()
			lats = append(lats, d)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
			wg.Done()
		})
		if err != nil {
			return throughput{}, err
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return throughput{}, firstErr
	}
	rps := float64(records) / elapsed.Seconds()
	return throughput{records: records, recordsPerSec: rps, mbPerSec: rps * float64(len(payload)) / (1 << 20), p99: lats.percentile(99)}, nil
}

// kafkaLatency publishes at a fixed rate while a consumer group reads the
// topic, and returns the call→acknowledgement and publish→handler latencies.
func kafkaLatency(ctx context.Context, conn kafkabus.Connection, p *kafkabus.Producer, topic string, payload []byte,
	o options, logger *slog.Logger) (ack, endToEnd latencies, err error) {
	total := o.rate * int(o.duration/time.Second)
	handled := make(chan time.Duration, total+1)
	cfg := kafkabus.DefaultConsumerConfig(conn, "fleetbench."+topic, topic)
	cfg.DLQ = p
	consumer, err := kafkabus.NewConsumer(cfg, func(_ context.Context, m *bus.Message) error {
		ns, err := strconv.ParseInt(m.Header(headerSentAt), 10, 64)
		if err != nil {
			return bus.Permanent(err)
		}
		handled <- time.Since(time.Unix(0, ns))
		return nil
	}, logger, prometheus.NewRegistry())
	if err != nil {
		return nil, nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- consumer.Run(runCtx) }()
	defer func() { stop(); <-runErr }()
	if err := waitFor(ctx, 30*time.Second, consumer.Ready); err != nil {
		return nil, nil, fmt.Errorf("consumer group did not get its partitions: %w", err)
	}

	acks := make(chan time.Duration, total)
	pace := newPacer(o.rate)
	for i := range total {
		pace.wait()
		sent := time.Now()
		msg := &bus.Message{Topic: topic, Key: "job-" + strconv.Itoa(i%1000), Value: payload,
			Headers: map[string]string{headerSentAt: strconv.FormatInt(sent.UnixNano(), 10)}}
		if err := p.PublishAsync(ctx, msg, func(err error) {
			if err == nil {
				acks <- time.Since(sent)
			} else {
				acks <- -1
			}
		}); err != nil {
			return nil, nil, err
		}
	}
	ack, err = collect(ctx, acks, total)
	if err != nil {
		return nil, nil, fmt.Errorf("acknowledgements: %w", err)
	}
	endToEnd, err = collect(ctx, handled, total)
	if err != nil {
		return nil, nil, fmt.Errorf("handled messages: %w", err)
	}
	return ack, endToEnd, nil
}

// collect reads n samples; a negative sample is a failed message.
func collect(ctx context.Context, ch <-chan time.Duration, n int) (latencies, error) {
	out := make(latencies, 0, n)
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for len(out) < n {
		select {
		case d := <-ch:
			if d < 0 {
				return nil, fmt.Errorf("message %d failed", len(out))
			}
			out = append(out, d)
		case <-timeout.C:
			return nil, fmt.Errorf("only %d of %d after a minute", len(out), n)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
