package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Targets of the stateful consumers on a 2-core machine shared with the
// brokers, on SQLite; PostgreSQL is reported without a target.
const (
	targetMetricsEventsPerSec = 20_000.0
	targetAuditAppendsPerSec  = 10_000.0
)

// peerMetric is the unit the consumer benchmarks report their peer in: the
// raw inbox rate (libs/inbox/inboxtest.Rate) measured in the same run, with
// the same batch size on a fresh database of the same kind.
const peerMetric = "peer-inbox-events/s"

// cpuMetric and peerCPUMetric are the benchmark process's CPU time per
// event of the consumer and of its peer (inboxtest.CPUMetric).
const (
	cpuMetric     = "cpu-us/event"
	peerCPUMetric = "peer-cpu-us/event"
)

// consumerBench is one go benchmark of a consumer and how to read it.
type consumerBench struct {
	consumer, what string
	pkg, bench     string
	benchtime      string
	env            []string
	metric         string
	target         float64
}

var consumerBenches = []consumerBench{
	{consumer: "metrics-consumer", what: "events/s, Kafka → decode → inbox transaction, batches of 1,000, synchronous=FULL",
		pkg: "./services/metrics-consumer/internal/service/", bench: "^BenchmarkConsumeEndToEnd$", benchtime: "1x",
		metric: "events/s", target: targetMetricsEventsPerSec},
	{consumer: "metrics-consumer (store path, no Kafka)", what: "events/s, encoded events → decode → inbox transaction, batches of 1,000, synchronous=FULL",
		pkg: "./services/metrics-consumer/internal/app/", bench: "^BenchmarkIngest$", benchtime: "100000x",
		metric: "events/s", target: targetMetricsEventsPerSec},
	{consumer: "compliance-auditor", what: "appends/s, decode → hash chain → inbox transaction, batches of 500, synchronous=FULL",
		pkg: "./services/compliance-auditor/internal/app/", bench: "^BenchmarkAppend$", benchtime: "100000x",
		metric: "appends/s", target: targetAuditAppendsPerSec},
}

// benchLine is one result line of go test -bench: its name and metrics.
type benchLine struct {
	name    string
	metrics map[string]float64
}

// parseBenchLines reads the result lines of go test -bench output.
func parseBenchLines(r io.Reader) ([]benchLine, error) {
	var out []benchLine
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		l := benchLine{name: f[0], metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: metric %q: %w", sc.Text(), f[i+1], err)
			}
			l.metrics[f[i+1]] = v
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

// database is the database of a sub-benchmark named Benchmark<X>/<db>-<procs>.
func database(name string) string {
	_, sub, ok := strings.Cut(name, "/")
	if !ok {
		return "?"
	}
	if i := strings.LastIndexByte(sub, '-'); i > 0 {
		sub = sub[:i]
	}
	return sub
}

type consumerResult struct {
	bench  consumerBench
	lines  []benchLine
	load   string
	output string
	err    error
}

// runConsumers runs the consumers' go benchmarks from the repository root (the
// working directory) and prints each figure next to its target and its peer.
func runConsumers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleetbench consumers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	auditN := fs.Int("audit-appends", 100_000, "appends of the auditor benchmark")
	skipKafka := fs.Bool("no-kafka", false, "skip the metrics-consumer's end-to-end run through Kafka")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *auditN < 1000 {
		return errors.New("audit-appends must be at least 1000")
	}
	if _, err := os.Stat("go.work"); err != nil {
		return errors.New("run fleetbench consumers from the repository root (where go.work is)")
	}
	started := time.Now()
	var results []consumerResult
	for _, b := range consumerBenches {
		if *skipKafka && strings.Contains(b.bench, "EndToEnd") {
			continue
		}
		if b.consumer == "compliance-auditor" {
			b.benchtime = fmt.Sprintf("%dx", *auditN)
		}
		fmt.Fprintf(stderr, "==> %s: go test -bench %s %s\n", b.consumer, b.bench, b.pkg)
		res := consumerResult{bench: b, load: loadAverage()}
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", b.bench, "-benchtime", b.benchtime, "-timeout", "30m", b.pkg)
		cmd.Env = append(os.Environ(), b.env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		res.err = cmd.Run()
		res.output = out.String()
		if res.err == nil {
			res.lines, res.err = parseBenchLines(&out)
			if res.err == nil && len(res.lines) == 0 {
				res.err = errors.New("no benchmark result")
			}
		}
		results = append(results, res)
	}
	writeConsumers(stdout, started, results)
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s benchmark: %w", r.bench.consumer, r.err)
		}
	}
	return nil
}

func writeConsumers(w io.Writer, started time.Time, results []consumerResult) {
	fmt.Fprintf(w, "# Stateful consumers\n\n")
	fmt.Fprintf(w, "%s · %s/%s · %d CPUs · brokers and PostgreSQL on this machine\n\n",
		started.UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(w, "Peer: the raw inbox rate, libs/inbox alone (a dedup mark per event, offsets, one transaction per batch, an apply that writes nothing) with the consumer's batch size, on a fresh database of the same kind, measured right after the consumer in the same run. The machine is shared: compare the ratio to the peer across runs, the absolute rate against the target.\n\n")
	fmt.Fprintf(w, "| consumer | database | figure | target | peer: raw inbox | of peer | load avg at start | |\n|---|---|---:|---:|---:|---:|---|---|\n")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "| %s | – | failed: %v | %s | – | – | %s | **not met** |\n", r.bench.consumer, r.err, target(r.bench.target), r.load)
			continue
		}
		for _, l := range r.lines {
			db := database(l.name)
			v, peer := l.metrics[r.bench.metric], l.metrics[peerMetric]
			ratio, tgt, ok := "–", "–", ""
			if peer > 0 {
				ratio = fmt.Sprintf("%.0f%%", 100*v/peer)
			}
			if db == "sqlite" {
				tgt, ok = target(r.bench.target), verdict(v >= r.bench.target)
			}
			fmt.Fprintf(w, "| %s | %s | %.0f %s | %s | %.0f events/s | %s | %s | %s |\n", r.bench.consumer, db, v, r.bench.metric, tgt, peer, ratio, r.load, ok)
		}
	}
	fmt.Fprintln(w)
	writeConsumerCPU(w, results)
	for _, r := range results {
		fmt.Fprintf(w, "- %s: %s.\n", r.bench.consumer, r.bench.what)
		if r.err != nil {
			fmt.Fprintf(w, "\n```\n%s\n```\n", tailLines(r.output, 20))
		}
	}
}

// writeConsumerCPU gives the CPU time per event of each benchmark that
// measured it, and the rate that CPU time allows on one core of its own: a
// figure a shared machine barely moves, unlike the rates above. On
// PostgreSQL the server's CPU is not in it.
func writeConsumerCPU(w io.Writer, results []consumerResult) {
	var rows []string
	for _, r := range results {
		for _, l := range r.lines {
			cpu, peer := l.metrics[cpuMetric], l.metrics[peerCPUMetric]
			if cpu <= 0 {
				continue
			}
			db, oneCore, ok := database(l.name), 1e6/cpu, ""
			if db == "sqlite" {
				ok = verdict(oneCore >= r.bench.target)
			}
			ratio := "–"
			if peer > 0 {
				ratio = fmt.Sprintf("%.1f×", cpu/peer)
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %.1f | %.1f | %s | %.0f/s | %s |", r.bench.consumer, db, cpu, peer, ratio, oneCore, ok))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "CPU time per event (the benchmark process: user and system, all threads, garbage collection included; on PostgreSQL without the server's):\n\n")
	fmt.Fprintf(w, "| consumer | database | CPU µs/event | peer CPU µs/event | of peer | rate on one core of its own | target on one core |\n|---|---|---:|---:|---:|---:|---|\n")
	for _, row := range rows {
		fmt.Fprintln(w, row)
	}
	fmt.Fprintln(w)
}

func target(v float64) string { return fmt.Sprintf("≥ %.0f", v) }

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
