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
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/cosmic-horizons/fleet/libs/auth"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// targetReconcileRate is the dispatch and record rate the reconciler must
// reach on SQLite (jobs per second).
const targetReconcileRate = 1000.0

type sweepOptions struct {
	orchestrator string
	database     string
	jobs         int
	clients      int
	localMax     int
	timeout      time.Duration
}

func runSweep(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleetbench sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o sweepOptions
	fs.StringVar(&o.orchestrator, "orchestrator", "", "job-orchestrator binary; empty builds "+orchestratorPackage)
	fs.StringVar(&o.database, "database", "sqlite", "sqlite or postgres")
	fs.IntVar(&o.jobs, "jobs", 10_000, "jobs in the sweep")
	fs.IntVar(&o.clients, "clients", 50, "concurrent submitting clients")
	fs.IntVar(&o.localMax, "local-max", 0, "LOCAL_MAX_JOBS of the orchestrator (jobs running at once); 0 keeps its default, the CPU count")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up when the sweep has not finished by then")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.jobs < 1 || o.clients < 1 || o.localMax < 0 || o.timeout <= 0 {
		return errors.New("jobs, clients and timeout must be positive, local-max not negative")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "==> "+format+"\n", a...) }

	tmp, err := osMkdirTemp()
	if err != nil {
		return err
	}
	defer removeAll(tmp)
	bin, err := buildOrchestrator(ctx, o.orchestrator, tmp)
	if err != nil {
		return err
	}
	extra := map[string]string{"JOB_METRICS_INTERVAL": "0"}
	if o.localMax > 0 {
		extra["LOCAL_MAX_JOBS"] = strconv.Itoa(o.localMax)
	}
	orch, err := startOrchestrator(ctx, bin, o.database, extra, logger)
	if err != nil {
		return err
	}
	defer orch.stop()
	before, cpuErr := sampleCPU(orch.cmd.Process.Pid)
	res, err := sweep(ctx, orch.addr, o, progress)
	if err != nil {
		return fmt.Errorf("%w; orchestrator log: %s", err, tail(orch.logPath))
	}
	if after, err := sampleCPU(orch.cmd.Process.Pid); err == nil && cpuErr == nil {
		u := before.until(after)
		res.cpu = &u
	}
	if res.holds, err = scrapeHolds(ctx, orch.httpAddr); err != nil {
		return err
	}
	res.write(stdout, o)
	return nil
}

type sweepResult struct {
	firstCall, lastReply, allDispatched, allDone time.Time
	submit                                       callStats
	jobs                                         []*jobpb.Job
	// cpu is the orchestrator's and its jobs' CPU use over the whole sweep.
	cpu *cpuUse
	// holds is how long the orchestrator's writes held the database, from
	// its /metrics at the end.
	holds *dbHolds
}

func sweep(ctx context.Context, addr string, o sweepOptions, progress func(string, ...any)) (*sweepResult, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	tok, err := auth.NewHS256Token(benchSecret, "fleetbench", false, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	c := jobpb.NewJobServiceClient(conn)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	spec := benchSpec("#!/bin/sh\nexit 0\n")

	// The poller watches, from the first call on, when no job is SUBMITTED
	// any more (dispatch done) and when none is active (sweep done).
	res := &sweepResult{firstCall: time.Now()}
	submitted := make(chan struct{})
	pollDone := make(chan error, 1)
	go func() {
		pollDone <- res.poll(actx, c, submitted)
	}()
	progress("sweep: submitting %d jobs with %d clients", o.jobs, o.clients)
	res.submit = load(actx, o.clients, o.jobs, func(ctx context.Context, i int) error {
		_, err := c.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: run + "-" + strconv.Itoa(i), Spec: spec})
		return err
	})
	res.lastReply = time.Now()
	close(submitted)
	if res.submit.errors > 0 {
		return nil, fmt.Errorf("%d of %d SubmitJob failed, first: %s", res.submit.errors, o.jobs, res.submit.firstError)
	}
	progress("sweep: submitted in %s; waiting for the last job to end", res.lastReply.Sub(res.firstCall).Round(time.Millisecond))
	if err := <-pollDone; err != nil {
		return nil, err
	}
	var token string
	for {
		page, err := c.ListJobs(actx, &jobpb.ListJobsRequest{PageSize: 500, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		res.jobs = append(res.jobs, page.GetJobs()...)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(res.jobs) != o.jobs {
		return nil, fmt.Errorf("listed %d jobs, submitted %d", len(res.jobs), o.jobs)
	}
	return res, nil
}

// poll records when no job is SUBMITTED and when none is active, after
// every job was submitted.
func (r *sweepResult) poll(ctx context.Context, c jobpb.JobServiceClient, submitted <-chan struct{}) error {
	none := func(statuses ...jobpb.JobStatus) (bool, error) {
		page, err := c.ListJobs(ctx, &jobpb.ListJobsRequest{PageSize: 1, Statuses: statuses})
		if err != nil {
			return false, fmt.Errorf("list jobs: %w", err)
		}
		return len(page.GetJobs()) == 0, nil
	}
	done := false
	for {
		select {
		case <-submitted:
			done = true
		default:
		}
		if done {
			if r.allDispatched.IsZero() {
				ok, err := none(jobpb.JobStatus_JOB_STATUS_SUBMITTED)
				if err != nil {
					return err
				}
				if ok {
					r.allDispatched = time.Now()
				}
			}
			ok, err := none(jobpb.JobStatus_JOB_STATUS_SUBMITTED, jobpb.JobStatus_JOB_STATUS_QUEUED, jobpb.JobStatus_JOB_STATUS_RUNNING)
			if err != nil {
				return err
			}
			if ok {
				r.allDone = time.Now()
				if r.allDispatched.IsZero() {
					r.allDispatched = r.allDone
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sweep not finished: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *sweepResult) write(w io.Writer, o sweepOptions) {
	var (
		dispatch, wait, runTime                                           latencies
		firstCreated, lastQueued, firstQueued, lastFinished, firstStarted time.Time
		statuses                                                          = map[string]int{}
	)
	earliest := func(t *time.Time, v time.Time) {
		if !v.IsZero() && (t.IsZero() || v.Before(*t)) {
			*t = v
		}
	}
	latest := func(t *time.Time, v time.Time) {
		if v.After(*t) {
			*t = v
		}
	}
	for _, j := range r.jobs {
		statuses[j.GetStatus().String()]++
		created, queued := j.GetCreatedAt().AsTime(), j.GetQueuedAt().AsTime()
		started, finished := j.GetStartedAt().AsTime(), j.GetFinishedAt().AsTime()
		earliest(&firstCreated, created)
		earliest(&firstQueued, queued)
		earliest(&firstStarted, started)
		latest(&lastQueued, queued)
		latest(&lastFinished, finished)
		if j.GetQueuedAt() != nil {
			dispatch = append(dispatch, queued.Sub(created))
		}
		if j.GetStartedAt() != nil && j.GetQueuedAt() != nil {
			wait = append(wait, started.Sub(queued))
		}
		if j.GetFinishedAt() != nil && j.GetStartedAt() != nil {
			runTime = append(runTime, finished.Sub(started))
		}
	}
	n := float64(len(r.jobs))
	rate := func(d time.Duration) string {
		if d <= 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f", n/d.Seconds())
	}
	span := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	fmt.Fprintf(w, "# Sweep: %d short jobs on the local backend (%s)\n\n", len(r.jobs), o.database)
	fmt.Fprintf(w, "%s · %s/%s · %d CPUs · load average %s · %d submitting clients · LOCAL_MAX_JOBS %s · outcome %v\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadAverage(), o.clients, localMax(o.localMax), statuses)
	fmt.Fprintf(w, "| phase | measured from → to | span | jobs/s | per job P50 | per job P99 | target |\n|---|---|---:|---:|---:|---:|---|\n")
	fmt.Fprintf(w, "| submit | first SubmitJob call → last reply | %s | %s | %s | %s | – |\n",
		span(r.lastReply.Sub(r.firstCall)), rate(r.lastReply.Sub(r.firstCall)), ms(r.submit.lat.percentile(50)), ms(r.submit.lat.percentile(99)))
	dispatchSpan := lastQueued.Sub(firstCreated)
	fmt.Fprintf(w, "| dispatch | first created → last QUEUED (per job: created → queued) | %s | %s | %s | %s | ≥ %.0f/s: %s |\n",
		span(dispatchSpan), rate(dispatchSpan), ms(dispatch.percentile(50)), ms(dispatch.percentile(99)),
		targetReconcileRate, verdict(n/dispatchSpan.Seconds() >= targetReconcileRate))
	runSpan := lastFinished.Sub(firstQueued)
	fmt.Fprintf(w, "| run | first QUEUED → last process end (per job: queued → started; started → ended) | %s | %s | %s; %s | %s; %s | – |\n",
		span(runSpan), rate(runSpan), ms(wait.percentile(50)), ms(runTime.percentile(50)), ms(wait.percentile(99)), ms(runTime.percentile(99)))
	recordLag := r.allDone.Sub(lastFinished)
	fmt.Fprintf(w, "| record | last process end → no job active, seen by polling ListJobs every 50 ms | %s | – | – | – | lag only |\n", span(recordLag))
	fmt.Fprintf(w, "| total | first SubmitJob call → no job active | %s | %s | – | – | – |\n\n",
		span(r.allDone.Sub(r.firstCall)), rate(r.allDone.Sub(r.firstCall)))
	fmt.Fprintf(w, "No job SUBMITTED any more %s after the first call (%s after the last reply).\n\n",
		span(r.allDispatched.Sub(r.firstCall)), span(r.allDispatched.Sub(r.lastReply)))
	if u := r.cpu; u != nil {
		fmt.Fprintf(w, "CPU over the sweep (from /proc): the orchestrator %.2f ms per job (%.2f cores), its jobs' supervisors and scripts %.2f ms per job (%.2f cores), the machine %.0f%% busy on %d CPUs.\n\n",
			perCall(u.own, len(r.jobs)), u.cores(u.own), perCall(u.reaped, len(r.jobs)), u.cores(u.reaped), 100*u.machineBusy, runtime.NumCPU())
	}
	if r.holds != nil {
		r.holds.write(w, r.submit.lat.percentile(99), o.database)
	}
}

func localMax(n int) string {
	if n == 0 {
		return "default (CPU count)"
	}
	return strconv.Itoa(n)
}
