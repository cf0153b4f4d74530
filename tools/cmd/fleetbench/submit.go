package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cosmic-horizons/fleet/libs/auth"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// Targets of SubmitJob on a 2-core machine shared with the brokers.
const (
	targetSubmitSQLite   = 2000.0
	targetSubmitPostgres = 1000.0
	targetSubmitP99      = 20 * time.Millisecond
)

type submitOptions struct {
	orchestrator string
	addr         string
	clients      int
	calls        int
	warmup       int
	databases    []string
	// held measures each database a second time with dispatch held, so
	// the calls run without the dispatch and runs they cause.
	held bool
}

func runSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleetbench submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o submitOptions
	fs.StringVar(&o.orchestrator, "orchestrator", "", "job-orchestrator binary; empty builds "+orchestratorPackage)
	fs.StringVar(&o.addr, "addr", "", "measure a running orchestrator at this gRPC address instead of starting one (its AUTH_HS256_SECRET must be the bench's)")
	fs.IntVar(&o.clients, "clients", 50, "concurrent clients")
	fs.IntVar(&o.calls, "calls", 10_000, "calls per measurement")
	fs.IntVar(&o.warmup, "warmup", 500, "calls before each measurement, not counted")
	dbs := fs.String("databases", "sqlite,postgres", "databases to measure on, comma separated")
	fs.BoolVar(&o.held, "held", true, "measure each database again with dispatch held (DISPATCH_HOLD=true): SubmitJob without the work it causes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.databases = strings.Split(*dbs, ",")
	if o.clients < 1 || o.calls < o.clients || o.warmup < 0 {
		return errors.New("clients must be positive, calls at least clients, warmup not negative")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "==> "+format+"\n", a...) }

	var results []submitResult
	if o.addr != "" {
		res, err := measureSubmit(ctx, o.addr, 0, "external", o, progress)
		if err != nil {
			return err
		}
		results = append(results, res)
	} else {
		tmp, err := osMkdirTemp()
		if err != nil {
			return err
		}
		defer removeAll(tmp)
		bin, err := buildOrchestrator(ctx, o.orchestrator, tmp)
		if err != nil {
			return err
		}
		for _, db := range o.databases {
			for _, held := range []bool{false, true} {
				if held && !o.held {
					continue
				}
				res, err := submitOn(ctx, bin, db, held, o, logger, progress)
				if err != nil {
					return err
				}
				results = append(results, res)
			}
		}
	}
	writeSubmitReport(stdout, o, results)
	return nil
}

// submitOn starts an orchestrator on db and measures it; held starts it
// with DISPATCH_HOLD, so that the submitted jobs stay SUBMITTED.
func submitOn(ctx context.Context, bin, db string, held bool, o submitOptions, logger *slog.Logger, progress func(string, ...any)) (submitResult, error) {
	var extra map[string]string
	name := db
	if held {
		extra = map[string]string{"DISPATCH_HOLD": "true"}
		name += ", dispatch held"
	}
	progress("SubmitJob on %s: starting the orchestrator", name)
	orch, err := startOrchestrator(ctx, bin, db, extra, logger)
	if err != nil {
		return submitResult{}, fmt.Errorf("%s: %w", name, err)
	}
	defer orch.stop()
	res, err := measureSubmit(ctx, orch.addr, orch.cmd.Process.Pid, db, o, progress)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	res.held = held
	return res, nil
}

type submitResult struct {
	database      string
	held          bool // DISPATCH_HOLD: no dispatch or runs during the calls
	submit, check callStats
}

// name is the run's label in the report.
func (r submitResult) name() string {
	if r.held {
		return r.database + ", dispatch held"
	}
	return r.database
}

type callStats struct {
	calls, errors int
	firstError    string
	elapsed       time.Duration
	lat           latencies
	// cpu is the server's and the machine's CPU use during the calls; nil
	// when the server is not a process of this run.
	cpu *cpuUse
}

func (c callStats) perSec() float64 { return float64(c.calls-c.errors) / c.elapsed.Seconds() }

// measureSubmit runs, against the server at addr, o.clients concurrent
// clients over one connection: first grpc.health.v1 Check, then SubmitJob
// with a unique idempotency key per call. A pid other than 0 is the
// server's process, whose CPU time is measured with each run.
func measureSubmit(ctx context.Context, addr string, pid int, db string, o submitOptions, progress func(string, ...any)) (submitResult, error) {
	res := submitResult{database: db}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return res, err
	}
	defer conn.Close()
	tok, err := auth.NewHS256Token(benchSecret, "fleetbench", false, time.Hour)
	if err != nil {
		return res, err
	}
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	jobs, health := jobpb.NewJobServiceClient(conn), healthpb.NewHealthClient(conn)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	spec := benchSpec("#!/bin/sh\nexit 0\n")
	submit := func(ctx context.Context, i int) error {
		_, err := jobs.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: run + "-" + strconv.Itoa(i), Spec: spec})
		return err
	}
	check := func(ctx context.Context, _ int) error {
		_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}

	progress("%s: warm-up, %d SubmitJob and %d Check", db, o.warmup, o.warmup)
	if o.warmup > 0 {
		load(actx, o.clients, o.warmup, func(ctx context.Context, i int) error { return submit(ctx, -1-i) })
		load(actx, o.clients, o.warmup, check)
	}
	progress("%s: %d grpc.health.v1 Check, %d clients", db, o.calls, o.clients)
	res.check = measured(pid, func() callStats { return load(actx, o.clients, o.calls, check) })
	progress("%s: %d SubmitJob, %d clients", db, o.calls, o.clients)
	res.submit = measured(pid, func() callStats { return load(actx, o.clients, o.calls, submit) })
	if res.submit.errors > 0 {
		progress("%s: %d SubmitJob failed, first: %s", db, res.submit.errors, res.submit.firstError)
	}
	return res, ctx.Err()
}

// measured runs fn and adds the CPU use of process pid and of the machine
// meanwhile; a pid of 0, or one that cannot be read, adds none.
func measured(pid int, fn func() callStats) callStats {
	if pid == 0 {
		return fn()
	}
	before, err := sampleCPU(pid)
	st := fn()
	if err != nil {
		return st
	}
	if after, err := sampleCPU(pid); err == nil {
		u := before.until(after)
		st.cpu = &u
	}
	return st
}

// load makes calls calls of fn from clients goroutines, each taking the next
// call number as soon as its previous call returned (closed loop, as ghz).
func load(ctx context.Context, clients, calls int, fn func(context.Context, int) error) callStats {
	var (
		next atomic.Int64
		mu   sync.Mutex
		st   = callStats{calls: calls, lat: make(latencies, 0, calls)}
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make(latencies, 0, calls/clients+1)
			var errs int
			var first string
			for {
				i := int(next.Add(1)) - 1
				if i >= calls || ctx.Err() != nil {
					break
				}
				t0 := time.Now()
				err := fn(ctx, i)
				lat = append(lat, time.Since(t0))
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
				}
			}
			mu.Lock()
			st.lat = append(st.lat, lat...)
			st.errors += errs
			if st.firstError == "" {
				st.firstError = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	st.elapsed = time.Since(start)
	return st
}

// benchSpec is a short custom job on the local backend.
func benchSpec(script string) *jobpb.JobSpec {
	return &jobpb.JobSpec{
		Name: "fleetbench", Agent: jobpb.Agent_AGENT_CUSTOM, DatasetId: "ds-bench",
		TaccSystem: jobpb.TaccSystem_TACC_SYSTEM_FRONTERA, Partition: "development",
		Resources:  &jobpb.Resources{Nodes: 1, CoresPerNode: 1, Walltime: durationpb.New(time.Minute)},
		Allocation: "AST21001", Payload: &jobpb.JobSpec_Script{Script: script},
	}
}

func writeSubmitReport(w io.Writer, o submitOptions, results []submitResult) {
	fmt.Fprintf(w, "# SubmitJob through the orchestrator's gRPC server\n\n")
	fmt.Fprintf(w, "%s · %s/%s · %d CPUs · load average %s · %d concurrent clients on one connection · %d calls each · unique idempotency keys · HS256 JWT on every call · tracing off\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadAverage(), o.clients, o.calls)
	fmt.Fprintf(w, "The server is the whole orchestrator: while the calls run, its reconciler hands the new jobs to the local backend, which runs them, and its relay publishes their events to Kafka and RabbitMQ. Check runs first, on the same server under the same clients. The runs marked \"dispatch held\" start the server with DISPATCH_HOLD=true: the jobs stay SUBMITTED, so they show what SubmitJob itself costs (its transaction and its events' relay), without the dispatch and runs it causes.\n\n")
	fmt.Fprintf(w, "| database | call | calls/s | errors | P50 | P95 | P99 | target | |\n|---|---|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range results {
		target := targetSubmitPostgres
		p99ok, p99target := true, ""
		if r.database == "sqlite" {
			target = targetSubmitSQLite
			p99ok, p99target = r.submit.lat.percentile(99) <= targetSubmitP99, fmt.Sprintf(", P99 ≤ %s", ms(targetSubmitP99))
		}
		judged := fmt.Sprintf("≥ %.0f/s%s | %s", target, p99target, verdict(r.submit.perSec() >= target && p99ok))
		if r.held {
			judged = "– (the targets are the whole server's) |"
		}
		fmt.Fprintf(w, "| %s | SubmitJob | %.0f | %d | %s | %s | %s | %s |\n", r.name(), r.submit.perSec(), r.submit.errors,
			ms(r.submit.lat.percentile(50)), ms(r.submit.lat.percentile(95)), ms(r.submit.lat.percentile(99)), judged)
		fmt.Fprintf(w, "| %s | grpc.health.v1 Check (peer) | %.0f | %d | %s | %s | %s | – | |\n", r.name(), r.check.perSec(), r.check.errors,
			ms(r.check.lat.percentile(50)), ms(r.check.lat.percentile(95)), ms(r.check.lat.percentile(99)))
	}
	fmt.Fprintln(w)
	for _, r := range results {
		fmt.Fprintf(w, "%s: SubmitJob / Check = **%.0f%%**.\n", r.name(), 100*r.submit.perSec()/r.check.perSec())
	}
	fmt.Fprintln(w)
	writeCPUTable(w, results)
}

// writeCPUTable says where the CPU went in each run: the server's own time
// per call, its finished jobs' time per call, how many cores the server
// used, and how busy the whole machine was. A server far below its CPUs on
// a busy machine was starved, not slow.
func writeCPUTable(w io.Writer, results []submitResult) {
	var rows []string
	for _, r := range results {
		for _, c := range []struct {
			name string
			st   callStats
		}{{"SubmitJob", r.submit}, {"Check", r.check}} {
			if u := c.st.cpu; u != nil {
				rows = append(rows, fmt.Sprintf("| %s | %s | %.3f | %.3f | %.2f | %.0f%% |", r.name(), c.name,
					perCall(u.own, c.st.calls), perCall(u.reaped, c.st.calls), u.cores(u.own), 100*u.machineBusy))
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "Where the CPU went (from /proc; jobs: the supervisors and scripts that ended during the run):\n\n")
	fmt.Fprintf(w, "| database | call | server CPU ms/call | jobs' CPU ms/call | server cores used | machine busy (%d CPUs) |\n|---|---|---:|---:|---:|---:|\n", runtime.NumCPU())
	for _, row := range rows {
		fmt.Fprintln(w, row)
	}
	for _, r := range results {
		if r.submit.cpu != nil && r.check.cpu != nil && r.check.cpu.own > 0 {
			fmt.Fprintf(w, "\n%s: server CPU per SubmitJob / per Check = **%.1f×**.", r.name(),
				perCall(r.submit.cpu.own, r.submit.calls)/perCall(r.check.cpu.own, r.check.calls))
		}
	}
	fmt.Fprintf(w, "\n\n")
}
