package service_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// backend adapts the end-to-end table to one scheduler backend.
type backend struct {
	// env is added to the orchestrator's environment (SCHEDULER, ...).
	env map[string]string
	// partition of frontera the jobs ask for.
	partition string
	// timeLimit is the walltime of the time-limit case, whose job would
	// run timeLimit+overrun.
	timeLimit, overrun time.Duration
	// wait bounds each wait for a job's state.
	wait time.Duration
	// resourceUse says whether job.metrics_recorded carries CPU time and
	// max RSS.
	resourceUse bool
	// accounting says the final job.metrics_recorded carries CPU time from
	// the scheduler's accounting, and max RSS when it was sampled.
	accounting bool
	// holdPending, when set, makes the scheduler keep the next job pending
	// and returns the function that lets it run again; the table then
	// includes the case of a job cancelled while pending.
	holdPending func(t *testing.T) (release func())
	// pending, with holdPending, checks with the scheduler's own tools that
	// the job is still pending there.
	pending func(t *testing.T, job *jobpb.Job)
	// verify, when set, checks with the scheduler's own tools that it agrees
	// with what GetJob reports about the ended job.
	verify func(t *testing.T, job *jobpb.Job)
}

// e2eCase is one path through the lifecycle.
type e2eCase struct {
	name      string
	script    string
	walltime  time.Duration
	cancel    jobpb.JobStatus // cancel once the job has this status; 0: never
	status    jobpb.JobStatus
	lifecycle []string
	errorCode string
	exitCode  *int32 // the exit code GetJob reports, when the case fixes it
}

func int32p(v int32) *int32 { return &v }

var (
	completed = []string{"job.submitted", "job.queued", "job.running", "job.completed"}
	failed    = []string{"job.submitted", "job.queued", "job.running", "job.failed"}
)

// runEndToEnd drives every path through the real orchestrator binary with
// backend b: over gRPC with a JWT, checking the ordered events on Kafka and
// RabbitMQ, the metrics at the end and, when b can, the scheduler's own view.
func runEndToEnd(t *testing.T, b backend) {
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	vars := env(t, prefix, stateDir(t))
	vars["JOB_METRICS_INTERVAL"] = "1s"
	for k, v := range b.env {
		vars[k] = v
	}
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", vars)
	c := client(t, p.GRPCAddr)
	user := relaytest.RandomName(t, "user-")
	h := &e2eHarness{b: b, prefix: prefix, c: c, user: user}

	if b.holdPending != nil {
		// Alone and first: it fills the scheduler.
		t.Run("cancelled while pending", func(t *testing.T) {
			h.run(t, e2eCase{script: "#!/bin/sh\necho should-not-run\n", walltime: time.Minute,
				cancel: jobpb.JobStatus_JOB_STATUS_QUEUED, status: jobpb.JobStatus_JOB_STATUS_CANCELLED,
				lifecycle: []string{"job.submitted", "job.queued", "job.cancelled"}})
		})
	}
	sleep := int((b.timeLimit + b.overrun).Seconds())
	tests := []e2eCase{
		// The job runs at least a second: Slurm's times have a resolution of seconds.
		{name: "completes", script: "#!/bin/sh\necho hello\nsleep 2\n", walltime: time.Minute,
			status: jobpb.JobStatus_JOB_STATUS_COMPLETED, lifecycle: completed, exitCode: int32p(0)},
		{name: "fails with exit 3", script: "#!/bin/sh\nexit 3\n", walltime: time.Minute,
			status: jobpb.JobStatus_JOB_STATUS_FAILED, lifecycle: failed, errorCode: "NON_ZERO_EXIT", exitCode: int32p(3)},
		{name: "runs past its walltime", script: fmt.Sprintf("#!/bin/sh\nsleep %d\n", sleep), walltime: b.timeLimit,
			status: jobpb.JobStatus_JOB_STATUS_FAILED, lifecycle: failed, errorCode: "TIMEOUT"},
		{name: "cancelled while running", script: "#!/bin/sh\nsleep 600\n", walltime: 15 * time.Minute,
			cancel: jobpb.JobStatus_JOB_STATUS_RUNNING, status: jobpb.JobStatus_JOB_STATUS_CANCELLED,
			lifecycle: []string{"job.submitted", "job.queued", "job.running", "job.cancelled"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h.run(t, tc)
		})
	}
}

type e2eHarness struct {
	b      backend
	prefix string
	c      jobpb.JobServiceClient
	user   string
}

// await polls GetJob until done holds and returns that job.
func (h *e2eHarness) await(t *testing.T, id, what string, done func(*jobpb.Job) bool) *jobpb.Job {
	t.Helper()
	ctx := authed(t, h.user)
	var job *jobpb.Job
	require.Eventually(t, func() bool {
		j, err := h.c.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
		if err != nil {
			return false
		}
		job = j.GetJob()
		return done(job)
	}, h.b.wait, 100*time.Millisecond, "job %s: %s (last %v)", id, what, job)
	return job
}

func (h *e2eHarness) run(t *testing.T, tc e2eCase) {
	ctx := authed(t, h.user)
	spec := customSpecOn(h.b.partition, tc.script, tc.walltime)
	key := relaytest.RandomName(t, "k-")
	// RabbitMQ: the user's queue is bound before submitting (the job id is
	// not known yet); the job's own queue right after.
	userQ := relaytest.BindQueue(t, testinfra.AMQPURL(t), amqpbus.UserPattern(h.user))
	if tc.cancel == jobpb.JobStatus_JOB_STATUS_QUEUED {
		release := h.b.holdPending(t)
		defer release()
	}
	resp, err := h.c.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: key, Spec: spec})
	require.NoError(t, err)
	id := resp.GetJob().GetJobId()
	jobQ := relaytest.BindQueue(t, testinfra.AMQPURL(t), amqpbus.JobPattern(id))
	again, err := h.c.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: key, Spec: spec})
	require.NoError(t, err)
	require.Equal(t, id, again.GetJob().GetJobId(), "a retried submission returns the same job")

	if tc.cancel != 0 {
		j := h.await(t, id, tc.cancel.String(), func(j *jobpb.Job) bool { return j.GetStatus() == tc.cancel })
		if tc.cancel == jobpb.JobStatus_JOB_STATUS_QUEUED && h.b.pending != nil {
			h.b.pending(t, j)
		}
		_, err := h.c.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: id, Reason: "test"})
		require.NoError(t, err)
	}
	job := h.await(t, id, tc.status.String(), func(j *jobpb.Job) bool { return j.GetStatus() == tc.status })
	require.Equal(t, tc.errorCode, job.GetErrorCode())
	if tc.exitCode != nil {
		require.True(t, job.ExitCode != nil, "exit code of %v", job)
		require.Equal(t, *tc.exitCode, job.GetExitCode())
	}
	if h.b.verify != nil {
		h.b.verify(t, job)
	}

	var lc []events.Event
	require.Eventually(t, func() bool {
		lc = lifecycleOf(t, h.prefix, events.TopicJobLifecycle, id)
		return len(lc) >= len(tc.lifecycle)
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, tc.lifecycle, types(lc), "ordered lifecycle events on Kafka, each once")
	for i, e := range lc {
		require.EqualValues(t, i+1, e.Sequence)
	}
	if tc.errorCode != "" {
		failed, ok := lc[len(lc)-1].Payload.(events.JobFailed)
		require.True(t, ok)
		require.Equal(t, tc.errorCode, failed.ErrorCode)
	}
	audit := lifecycleOf(t, h.prefix, events.TopicAuditTrail, id)
	require.Len(t, audit, len(tc.lifecycle), "one audit record per transition")
	samples, final := splitMetrics(t, lifecycleOf(t, h.prefix, events.TopicJobMetrics, id))
	if tc.status == jobpb.JobStatus_JOB_STATUS_CANCELLED {
		require.Nil(t, final, "a cancelled job has no final metrics")
	} else {
		require.NotNil(t, final, "the final metrics")
		h.checkMetrics(t, job, *final)
	}
	// While it ran, a sample every JOB_METRICS_INTERVAL (1 s), in the RUNNING
	// transition's sequence, each with a longer run time.
	if run := job.GetFinishedAt().AsTime().Sub(job.GetStartedAt().AsTime()); job.GetStartedAt() != nil && run > 3*time.Second {
		require.NotEmpty(t, samples, "samples of a job that ran %s", run)
	}
	for i, e := range samples {
		m := e.Payload.(events.JobMetricsRecorded)
		require.False(t, m.Final)
		require.EqualValues(t, 3, e.Sequence, "sample %d", i)
		if i > 0 {
			require.Greater(t, m.RunTimeMS, samples[i-1].Payload.(events.JobMetricsRecorded).RunTimeMS)
		}
	}

	var mine []*bus.Message
	require.Eventually(t, func() bool {
		mine = mine[:0]
		for _, m := range userQ.Messages() {
			if strings.Contains(m.Key, id) || m.Header(events.HeaderEventID) != "" && containsID(lc, m.Header(events.HeaderEventID)) {
				mine = append(mine, m)
			}
		}
		return len(mine) >= len(tc.lifecycle)
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, tc.lifecycle, amqpTypes(mine), "ordered lifecycle events on RabbitMQ")
	for i, m := range mine {
		require.Equal(t, amqpbus.JobRoutingKey(h.user, id, tc.lifecycle[i]), m.Key)
	}
	// The job's own binding sees the same events from when it was bound: a
	// suffix of the lifecycle that ends with the terminal event.
	var byJob []*bus.Message
	require.Eventually(t, func() bool {
		byJob = jobQ.Messages()
		return len(byJob) > 0 && byJob[len(byJob)-1].Header(bus.HeaderEventType) == tc.lifecycle[len(tc.lifecycle)-1]
	}, 30*time.Second, 50*time.Millisecond, "the terminal event reaches the queue bound by JobPattern")
	require.LessOrEqual(t, len(byJob), len(tc.lifecycle))
	require.Equal(t, tc.lifecycle[len(tc.lifecycle)-len(byJob):], amqpTypes(byJob), "events bound by JobPattern(%s)", id)
}

// splitMetrics returns a job's job.metrics_recorded events: the samples
// taken while it ran, then the final one (nil when there is none), which
// must be the last.
func splitMetrics(t *testing.T, evs []events.Event) (samples []events.Event, final *events.Event) {
	t.Helper()
	for i, e := range evs {
		m, ok := e.Payload.(events.JobMetricsRecorded)
		require.True(t, ok, "payload %T", e.Payload)
		if m.Final {
			require.Equal(t, len(evs)-1, i, "the final metrics come last")
			final = &evs[i]
			continue
		}
		samples = append(samples, e)
	}
	return samples, final
}

// checkMetrics checks job.metrics_recorded against the job GetJob reports.
func (h *e2eHarness) checkMetrics(t *testing.T, job *jobpb.Job, ev events.Event) {
	t.Helper()
	m, ok := ev.Payload.(events.JobMetricsRecorded)
	require.True(t, ok, "payload %T", ev.Payload)
	require.Equal(t, job.GetJobId(), m.JobID)
	require.Equal(t, h.user, m.UserID)
	require.True(t, m.Final)
	require.GreaterOrEqual(t, m.QueueWaitMS, int64(0), "queue wait")
	// Slurm reports whole seconds, so a job may seem to start before it
	// was accepted: the wait is then 0.
	require.InDelta(t, max(0, job.GetStartedAt().AsTime().Sub(job.GetCreatedAt().AsTime()).Milliseconds()), m.QueueWaitMS, 2,
		"queue wait = started - accepted")
	require.InDelta(t, job.GetFinishedAt().AsTime().Sub(job.GetStartedAt().AsTime()).Milliseconds(), m.RunTimeMS, 2,
		"run time = finished - started")
	if job.ExitCode != nil {
		require.NotNil(t, m.ExitCode)
		require.Equal(t, job.GetExitCode(), *m.ExitCode)
	}
	// One node for the run time, rounded to 1e-4 node-hours.
	require.InDelta(t, float64(m.RunTimeMS)/float64(time.Hour/time.Millisecond), m.NodeHours, 1e-4, "node-hours")
	if job.GetStatus() == jobpb.JobStatus_JOB_STATUS_COMPLETED {
		// The completed job sleeps 2 seconds.
		require.GreaterOrEqual(t, m.RunTimeMS, int64(time.Second/time.Millisecond), "run time")
		require.Positive(t, m.NodeHours, "node-hours")
	}
	require.Zero(t, m.GPUHours)
	switch {
	case h.b.accounting:
		// Slurm's accounting: CPU time for every job; max RSS once a
		// sample of a running step was taken (1 s here).
		require.NotNil(t, m.CPUTimeMS, "cpu time from slurmdbd")
		if m.MaxRSSBytes != nil {
			require.Positive(t, *m.MaxRSSBytes)
		}
	case h.b.resourceUse:
		require.NotNil(t, m.CPUTimeMS, "cpu time")
		require.NotNil(t, m.MaxRSSBytes, "max rss")
		require.Positive(t, *m.MaxRSSBytes)
	default:
		require.Nil(t, m.CPUTimeMS, "the backend does not measure cpu time")
		require.Nil(t, m.MaxRSSBytes, "the backend does not measure max rss")
	}
}

func TestEndToEndLocalScheduler(t *testing.T) {
	t.Parallel()
	runEndToEnd(t, backend{
		env:       map[string]string{"SCHEDULER": "local"},
		partition: "development",
		timeLimit: 2 * time.Second, overrun: 58 * time.Second,
		wait:        60 * time.Second,
		resourceUse: true,
	})
}
