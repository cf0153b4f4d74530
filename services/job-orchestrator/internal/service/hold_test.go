package service_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// TestDispatchHoldKeepsNewJobsAndFollowsJobsAtTheScheduler runs the
// orchestrator three times on one database and state directory, with the
// local backend running one job at a time:
//
//  1. Without hold: a blocker job runs and a second job (at) waits in the
//     local scheduler's queue behind it (QUEUED). The service stops
//     (SIGTERM), which ends the running blocker and leaves at queued.
//  2. With DISPATCH_HOLD=true: a job submitted now (held) is accepted as
//     SUBMITTED and its job.submitted reaches Kafka, but after several
//     reconciler passes (fleet_reconciler_passes_total) it is still
//     SUBMITTED, with no scheduler id and no directory at the scheduler;
//     meanwhile at runs and, once its script is released, COMPLETES.
//  3. Without hold again: held is dispatched and COMPLETES.
func TestDispatchHoldKeepsNewJobsAndFollowsJobsAtTheScheduler(t *testing.T) {
	t.Parallel()
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	state := stateDir(t)
	workRoot := filepath.Join(state, "jobs") // JOB_WORK_DIR's default
	release := filepath.Join(testinfra.DirFor(t, testinfra.Searchable), "release")
	ctx := authed(t, relaytest.RandomName(t, "user-"))
	// The jobs run under their own uids: the gate's directory lets them
	// look for the file, which the test creates.
	waitScript := fmt.Sprintf("#!/bin/sh\nwhile [ ! -e %s ]; do sleep 0.1; done\necho released\n", release)
	const (
		submitted = jobpb.JobStatus_JOB_STATUS_SUBMITTED
		queued    = jobpb.JobStatus_JOB_STATUS_QUEUED
		running   = jobpb.JobStatus_JOB_STATUS_RUNNING
		done      = jobpb.JobStatus_JOB_STATUS_COMPLETED
	)

	free := env(t, prefix, state)
	free["LOCAL_MAX_JOBS"] = "1"
	hold := maps.Clone(free)
	hold["DISPATCH_HOLD"] = "true"
	submit := func(c jobpb.JobServiceClient) *jobpb.Job {
		t.Helper()
		resp, err := c.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: relaytest.RandomName(t, "k-"),
			Spec: customSpec(waitScript, time.Minute)})
		require.NoError(t, err)
		require.Equal(t, submitted, resp.GetJob().GetStatus())
		return resp.GetJob()
	}
	get := func(c jobpb.JobServiceClient, id string) *jobpb.Job {
		t.Helper()
		resp, err := c.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
		require.NoError(t, err)
		return resp.GetJob()
	}

	// 1. Without hold: blocker runs, at waits behind it at the scheduler.
	bin := servicetest.Build(t, "../../cmd/job-orchestrator")
	p := servicetest.RunBuilt(t, bin, free)
	c := client(t, p.GRPCAddr)
	blocker := submit(c).GetJobId()
	waitStatus(t, c, ctx, blocker, running)
	at := submit(c).GetJobId()
	waitStatus(t, c, ctx, at, queued)
	require.NotEmpty(t, get(c, at).GetSchedulerJobId())
	p.Terminate(t)

	// 2. With hold.
	p = servicetest.RunBuilt(t, bin, hold)
	require.Eventually(t, func() bool { return strings.Contains(p.Output(), "dispatch held") }, 10*time.Second,
		50*time.Millisecond, "the reconciler warns that dispatch is held")
	c = client(t, p.GRPCAddr)
	held := submit(c).GetJobId()
	require.Eventually(t, func() bool {
		return len(lifecycleOf(t, prefix, events.TopicJobLifecycle, held)) > 0
	}, 30*time.Second, 100*time.Millisecond, "job.submitted of the held job reaches Kafka")
	// The job at the scheduler when the hold began runs and ends.
	waitStatus(t, c, ctx, at, running)
	require.NoError(t, os.WriteFile(release, nil, 0o644))
	waitStatus(t, c, ctx, at, done)
	// The stopped blocker is recorded as the scheduler reports it.
	waitStatus(t, c, ctx, blocker, jobpb.JobStatus_JOB_STATUS_FAILED)
	// Passes, each begun well after the held job's commit, leave it where it is.
	after := reconcilerPasses(t, p.HTTPAddr)
	require.Eventually(t, func() bool { return reconcilerPasses(t, p.HTTPAddr) >= after+5 }, 10*time.Second,
		50*time.Millisecond, "five more reconciler passes")
	j := get(c, held)
	require.Equal(t, submitted, j.GetStatus(), "held through the passes")
	require.Empty(t, j.GetSchedulerJobId(), "no scheduler id")
	for _, dir := range []string{filepath.Join(workRoot, held), filepath.Join(workRoot, ".state", held)} {
		_, err := os.Stat(dir)
		require.ErrorIs(t, err, os.ErrNotExist, "the local scheduler has no %s", dir)
	}
	require.Equal(t, []string{"job.submitted"}, types(lifecycleOf(t, prefix, events.TopicJobLifecycle, held)))
	p.Terminate(t)

	// 3. Without hold again: the held job is dispatched and ends.
	p = servicetest.RunBuilt(t, bin, free)
	c = client(t, p.GRPCAddr)
	waitStatus(t, c, ctx, held, done)
	for _, id := range []string{at, held} {
		var lc []events.Event
		require.Eventually(t, func() bool {
			lc = lifecycleOf(t, prefix, events.TopicJobLifecycle, id)
			return len(lc) >= len(completed)
		}, 30*time.Second, 100*time.Millisecond)
		require.Equal(t, completed, types(lc), "job %s: each transition published once", id)
	}
	p.Terminate(t)
}

// reconcilerPasses reads fleet_reconciler_passes_total from the service's
// /metrics.
func reconcilerPasses(t *testing.T, httpAddr string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "fleet_reconciler_passes_total "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			require.NoError(t, err)
			return n
		}
	}
	require.FailNow(t, "no fleet_reconciler_passes_total on /metrics")
	return 0
}
