package main

import (
	"fmt"
	"io"
	"runtime"
	"time"
)

// Targets on a 2-core machine with the brokers on it.
const (
	targetThroughputRatio = 0.5
	targetPublishP99      = 5 * time.Millisecond
	targetKafkaE2EP99     = 20 * time.Millisecond
	targetAMQPE2EP99      = 5 * time.Millisecond
)

type report struct {
	options
	started time.Time

	perfTool, perfToolTuned, busThroughput throughput
	shared, pinned                         kafkaLatencyRun // pinned: brokers and clients on separate CPUs
	pinNote                                string          // the pinned run's placement, or why it is missing
	amqpConfirm                            latencies
	amqpEndToEnd                           latencies
}

func (r *report) write(w io.Writer) {
	best := max(r.perfTool.recordsPerSec, r.perfToolTuned.recordsPerSec)
	ratio := r.busThroughput.recordsPerSec / best
	fmt.Fprintf(w, "# Fleet bus benchmark\n\n")
	fmt.Fprintf(w, "%s · %s/%s · %d CPUs · %d-byte records · latency runs at %d msg/s for %s · brokers on this machine\n\n",
		r.started.UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), r.recordSize, r.rate, r.duration)

	fmt.Fprintf(w, "## Kafka publish throughput (acks=all, idempotent, %s)\n\n", compression)
	fmt.Fprintf(w, "| producer | records | records/s | MB/s | send P99 |\n|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(w, "| Kafka ProducerPerformance (Java, unkeyed, default batch.size 16 KiB, linger.ms 5) | %d | %.0f | %.1f | %s |\n",
		r.perfTool.records, r.perfTool.recordsPerSec, r.perfTool.mbPerSec, ms(r.perfTool.p99))
	fmt.Fprintf(w, "| Kafka ProducerPerformance (Java, unkeyed, batch.size 256 KiB, linger.ms 5) | %d | %.0f | %.1f | %s |\n",
		r.perfToolTuned.records, r.perfToolTuned.recordsPerSec, r.perfToolTuned.mbPerSec, ms(r.perfToolTuned.p99))
	fmt.Fprintf(w, "| fleet kafkabus.Producer (keyed by 1,000 job ids) | %d | %.0f | %.1f | %s |\n\n",
		r.busThroughput.records, r.busThroughput.recordsPerSec, r.busThroughput.mbPerSec, ms(r.busThroughput.p99))
	fmt.Fprintf(w, "Bus / the faster tool run: **%.0f%%** (target ≥ %.0f%%: %s). Both send the same repeated random-letter payload, so zstd compresses it well on both sides; send P99 is the time a record waits in the client when it is offered as fast as possible.\n\n",
		ratio*100, targetThroughputRatio*100, verdict(ratio >= targetThroughputRatio))

	fmt.Fprintf(w, "## Latency at %d msg/s\n\n", r.rate)
	fmt.Fprintf(w, "| path | samples | P50 | P95 | P99 | max | target P99 | |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	row := func(name string, l latencies, target time.Duration) {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", name, len(l),
			ms(l.percentile(50)), ms(l.percentile(95)), ms(l.percentile(99)), ms(l.percentile(100)),
			ms(target), verdict(l.percentile(99) <= target))
	}
	kafkaRows := func(run kafkaLatencyRun, suffix string) {
		row("Kafka publish (call → ack)"+suffix, run.ack, targetPublishP99)
		fmt.Fprintf(w, "| peer: Kafka ProducerPerformance at %.0f/s (send → ack, Java, whole ms)%s | %d | %s | %s | %s | – | – | |\n",
			run.perfAtRate.recordsPerSec, suffix, run.perfAtRate.records, ms(run.perfAtRate.p50), ms(run.perfAtRate.p95), ms(run.perfAtRate.p99))
		row("Kafka publish → handler (consumer group)"+suffix, run.endToEnd, targetKafkaE2EP99)
	}
	kafkaRows(r.shared, "")
	if r.pinned.measured {
		kafkaRows(r.pinned, ", pinned apart")
	}
	row("AMQP publish → handler (confirms, manual ack)", r.amqpEndToEnd, targetAMQPE2EP99)
	fmt.Fprintf(w, "| AMQP publish → confirm | %d | %s | %s | %s | %s | – | |\n", len(r.amqpConfirm),
		ms(r.amqpConfirm.percentile(50)), ms(r.amqpConfirm.percentile(95)), ms(r.amqpConfirm.percentile(99)), ms(r.amqpConfirm.percentile(100)))
	if r.pinNote != "" {
		fmt.Fprintf(w, "\nPinned apart: %s. The Kafka rows measured so are marked \"pinned apart\"; the same rate, the same broker, the minute after the shared run. Where the pinned tail is much shorter, the shared tail is the clients and the broker contending for the same cores.\n", r.pinNote)
	}
}
