package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	metricspb "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"
)

// lifecycle returns the job-lifecycle events of the run keyed by job id,
// in partition (so per-job) order, with the record headers.
type recorded struct {
	ev      events.Event
	headers map[string]string
}

func (f *fleet) lifecycle(t *testing.T) map[string][]recorded {
	t.Helper()
	codec, err := events.NewCodec()
	require.NoError(t, err)
	out := map[string][]recorded{}
	for _, m := range readTopic(t, f.stack.kafka, f.prefix+events.TopicJobLifecycle) {
		m.Topic = events.TopicJobLifecycle
		ev, err := codec.FromMessage(m)
		require.NoError(t, err)
		out[m.Key] = append(out[m.Key], recorded{ev: ev, headers: m.Headers})
	}
	return out
}

func eventTypes(rs []recorded) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ev.EventType)
	}
	return out
}

// requireLifecycle waits until the job's events on Kafka are exactly want,
// in order, numbered 1..n, each carrying the job's correlation id in the
// envelope and in the correlation_id header.
func (f *fleet) requireLifecycle(t *testing.T, job *jobpb.Job, want ...string) []recorded {
	t.Helper()
	return f.requireLifecycleCorrelated(t, job, nil, want...)
}

// requireLifecycleCorrelated is requireLifecycle where the events of the
// given types were caused by a later call with its own correlation id.
func (f *fleet) requireLifecycleCorrelated(t *testing.T, job *jobpb.Job, other map[string]string, want ...string) []recorded {
	t.Helper()
	var got []recorded
	require.Eventually(t, func() bool {
		got = f.lifecycle(t)[job.GetJobId()]
		return len(got) >= len(want)
	}, 30*time.Second, 200*time.Millisecond, "lifecycle events of %s", job.GetJobId())
	require.Equal(t, want, eventTypes(got))
	for i, r := range got {
		correlation := job.GetCorrelationId()
		if id, ok := other[r.ev.EventType]; ok {
			correlation = id
		}
		require.Equal(t, int64(i+1), r.ev.Sequence, "sequence of %s", r.ev.EventType)
		require.Equal(t, correlation, r.ev.CorrelationID, "envelope correlation id of %s", r.ev.EventType)
		require.Equal(t, correlation, r.headers[telemetry.HeaderCorrelationID], "correlation_id header of %s", r.ev.EventType)
		require.NotEmpty(t, r.headers[telemetry.HeaderTraceparent], "traceparent header of %s", r.ev.EventType)
	}
	return got
}

// requireAudited waits until the auditor holds a record of each action for
// the job and the whole chain verifies.
func (f *fleet) requireAudited(t *testing.T, ctx context.Context, job *jobpb.Job, minRecords int) []*auditpb.AuditRecord {
	t.Helper()
	ctx = adminContext(t, ctx)
	var recs []*auditpb.AuditRecord
	require.Eventually(t, func() bool {
		resp, err := f.trail.Query(ctx, &auditpb.QueryRequest{ResourceId: job.GetJobId()})
		if err != nil {
			return false
		}
		recs = resp.GetRecords()
		return len(recs) >= minRecords
	}, 30*time.Second, 200*time.Millisecond, "audit records of %s", job.GetJobId())
	v, err := f.trail.Verify(ctx, &auditpb.VerifyRequest{})
	require.NoError(t, err)
	require.True(t, v.GetOk(), "audit chain: first bad %d: %s", v.GetFirstBadSequence(), v.GetReason())
	require.GreaterOrEqual(t, v.GetCheckedCount(), int64(len(recs)))
	return recs
}

func (f *fleet) requireMetrics(t *testing.T, ctx context.Context, job *jobpb.Job, check func(*metricspb.JobStats) bool) *metricspb.JobStats {
	t.Helper()
	ctx = adminContext(t, ctx)
	var (
		stats *metricspb.JobStats
		last  error
	)
	eventually(t, 30*time.Second, 200*time.Millisecond, func() bool {
		window := &metricspb.TimeWindow{Start: timestamppb.New(job.GetCreatedAt().AsTime().Add(-time.Minute)),
			End: timestamppb.New(time.Now().Add(time.Minute))}
		resp, err := f.stats.GetJobMetrics(ctx, &metricspb.GetJobMetricsRequest{JobId: job.GetJobId(), Window: window})
		if err != nil {
			last = err
			return false
		}
		stats = resp.GetStats()
		return check(stats)
	}, func() string { return fmt.Sprintf("metrics of %s: %v (last error %v)", job.GetJobId(), stats, last) })
	return stats
}

func TestFleet(t *testing.T) {
	start := time.Now()
	f := startFleet(t)
	t.Logf("five services ready in %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	t.Run("complete lifecycle", func(t *testing.T) {
		u := newUser(t)
		uctx := u.ctx(ctx)
		mailbox := u.id + "@e2e.example.org"
		_, err := f.subs.CreateSubscription(uctx, &notificationpb.CreateSubscriptionRequest{
			Channel: notificationpb.Channel_CHANNEL_EMAIL, Target: mailbox, EventTypes: []string{"job.completed"},
		})
		require.NoError(t, err)

		tctx, traceID := withTrace(uctx)
		var header metadata.MD
		resp, err := f.jobs.SubmitJob(tctx, &jobpb.SubmitJobRequest{IdempotencyKey: "lifecycle-" + randomHex(4),
			Spec: f.spec("e2e-lifecycle", jobpb.TaccSystem_TACC_SYSTEM_FRONTERA, "echo calibrated")}, grpc.Header(&header))
		require.NoError(t, err)
		job := resp.GetJob()
		require.Equal(t, job.GetCorrelationId(), first(header.Get(telemetry.HeaderCorrelationID)), "correlation id in the response header")
		t.Logf("job %s, correlation id %s, trace %s", job.GetJobId(), job.GetCorrelationId(), traceID)

		job = f.waitStatus(t, uctx, job.GetJobId(), jobpb.JobStatus_JOB_STATUS_COMPLETED, f.jobWait())
		require.Equal(t, int32(0), job.GetExitCode())
		f.requireLifecycle(t, job, "job.submitted", "job.queued", "job.running", "job.completed")

		t.Run("metrics", func(t *testing.T) {
			stats := f.requireMetrics(t, ctx, job, func(s *metricspb.JobStats) bool { return s.GetCompletedCount() == 1 })
			require.Equal(t, int64(0), stats.GetFailedCount())
			require.Positive(t, stats.GetNodeHours())
		})
		t.Run("email", func(t *testing.T) {
			var msgs []mailpitMessage
			require.Eventually(t, func() bool {
				msgs, err = mailTo(ctx, f.stack.mailpit, mailbox)
				return err == nil && len(msgs) >= 1
			}, 30*time.Second, 200*time.Millisecond, "mail to %s: %v", mailbox, err)
			require.Len(t, msgs, 1, "one email for one job.completed")
			t.Logf("email %q", msgs[0].Subject)
		})
		t.Run("audit", func(t *testing.T) {
			recs := f.requireAudited(t, ctx, job, 4)
			var actions []string
			for _, r := range recs {
				actions = append(actions, r.GetAction())
				require.Equal(t, job.GetJobId(), r.GetResourceId())
			}
			t.Logf("audit actions %v", actions)
		})
		t.Run("fleet healthy", func(t *testing.T) {
			var st *healthpb.FleetStatus
			var jobs *healthpb.Component
			eventually(t, 60*time.Second, 500*time.Millisecond, func() bool {
				resp, err := f.status.GetFleetStatus(ctx, &healthpb.GetFleetStatusRequest{})
				if err != nil {
					return false
				}
				st, jobs = resp.GetStatus(), nil
				for _, c := range st.GetComponents() {
					if c.GetType() == healthpb.ComponentType_COMPONENT_TYPE_SCHEDULER {
						jobs = c
					}
				}
				// The monitor's job flow has seen the job complete.
				return st.GetOverall() == healthpb.HealthStatus_HEALTH_STATUS_HEALTHY &&
					jobs != nil && jobs.GetMetrics()["completed_jobs"] >= 1
			}, func() string {
				return fmt.Sprintf("fleet status %s: %v; job flow %v", st.GetOverall(), unhealthy(st), jobs)
			})
			services := 0
			for _, c := range st.GetComponents() {
				if c.GetType() == healthpb.ComponentType_COMPONENT_TYPE_SERVICE {
					services++
				}
			}
			require.Equal(t, 4, services, "the four probed services")
			t.Logf("job flow: %s", jobs.GetDetail())
		})
		t.Run("one trace across the fleet", func(t *testing.T) {
			// The submission's trace follows the job to its end: the SubmitJob
			// server span, the reconciler's dispatch and status changes, the
			// relay's publish of every event written by them, each consumer's
			// processing of the four lifecycle events, and the email sent for
			// job.completed.
			// A batch consumer names a batch of one "process batch <topic>"
			// and each message of a larger batch "process <topic>".
			lifecycle := f.prefix + "job-lifecycle"
			want := []struct {
				svc, prefix, suffix string
				min                 int
			}{
				{"job-orchestrator", "fleet.job.v1.JobService/SubmitJob", "", 1},
				{"job-orchestrator", "relay job.submitted", "", 1},
				{"job-orchestrator", "dispatch job", "", 1},
				{"job-orchestrator", "relay job.queued", "", 1},
				{"job-orchestrator", "record job status", "", 1},
				{"job-orchestrator", "relay job.completed", "", 1},
				{"job-orchestrator", "send", lifecycle, 4},
				{"metrics-consumer", "process", lifecycle, 4},
				{"notification-consumer", "process", lifecycle, 4},
				{"notification-consumer", "deliver email", "", 1},
				{"compliance-auditor", "process", lifecycle, 4},
				{"health-monitor", "process", lifecycle, 4},
			}
			var spans []jaegerSpan
			missing := func() []string {
				var out []string
				for _, w := range want {
					n := 0
					for _, s := range spans {
						if s.Service == w.svc && strings.HasPrefix(s.OperationName, w.prefix) && strings.HasSuffix(s.OperationName, w.suffix) {
							n++
						}
					}
					if n < w.min {
						out = append(out, fmt.Sprintf("%s: %s…%s (%d of %d)", w.svc, w.prefix, w.suffix, n, w.min))
					}
				}
				return out
			}
			eventually(t, 60*time.Second, time.Second, func() bool {
				spans, err = fetchTrace(ctx, f.stack.jaeger, traceID)
				return err == nil && len(missing()) == 0
			}, func() string {
				return fmt.Sprintf("trace %s lacks %v; has %v (error %v)", traceID, missing(), spanNames(spans), err)
			})
			t.Logf("trace %s: %d spans: %s", traceID, len(spans), strings.Join(spanNames(spans), "; "))
		})
	})

	t.Run("failure path", func(t *testing.T) {
		u := newUser(t)
		uctx := u.ctx(ctx)
		resp, err := f.jobs.SubmitJob(uctx, &jobpb.SubmitJobRequest{IdempotencyKey: "failure-" + randomHex(4),
			Spec: f.spec("e2e-failure", jobpb.TaccSystem_TACC_SYSTEM_STAMPEDE3, "sh -c 'echo anomaly >&2; exit 3'")})
		require.NoError(t, err)
		job := f.waitStatus(t, uctx, resp.GetJob().GetJobId(), jobpb.JobStatus_JOB_STATUS_FAILED, f.jobWait())
		require.Equal(t, int32(3), job.GetExitCode())
		require.Equal(t, "NON_ZERO_EXIT", job.GetErrorCode())
		f.requireLifecycle(t, job, "job.submitted", "job.queued", "job.running", "job.failed")
		f.requireMetrics(t, ctx, job, func(s *metricspb.JobStats) bool { return s.GetFailedCount() == 1 && s.GetCompletedCount() == 0 })
		f.requireAudited(t, ctx, job, 4)
	})

	t.Run("cancellation path", func(t *testing.T) {
		u := newUser(t)
		uctx := u.ctx(ctx)
		resp, err := f.jobs.SubmitJob(uctx, &jobpb.SubmitJobRequest{IdempotencyKey: "cancel-" + randomHex(4),
			Spec: f.spec("e2e-cancel", jobpb.TaccSystem_TACC_SYSTEM_LONESTAR6, "sleep 300")})
		require.NoError(t, err)
		id := resp.GetJob().GetJobId()
		f.waitStatus(t, uctx, id, jobpb.JobStatus_JOB_STATUS_RUNNING, f.jobWait())
		// Another user may not cancel it: NotFound, and the refusal is audited.
		intruder := newUser(t)
		_, err = f.jobs.CancelJob(intruder.ctx(ctx), &jobpb.CancelJobRequest{JobId: id, Reason: "not mine"})
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
		var header metadata.MD
		_, err = f.jobs.CancelJob(uctx, &jobpb.CancelJobRequest{JobId: id, Reason: "e2e: no longer needed"}, grpc.Header(&header))
		require.NoError(t, err)
		cancelCorrelation := first(header.Get(telemetry.HeaderCorrelationID))
		require.NotEmpty(t, cancelCorrelation)
		job := f.waitStatus(t, uctx, id, jobpb.JobStatus_JOB_STATUS_CANCELLED, f.jobWait())
		// job.cancelled is caused by the CancelJob call and carries its correlation id.
		evs := f.requireLifecycleCorrelated(t, job, map[string]string{"job.cancelled": cancelCorrelation},
			"job.submitted", "job.queued", "job.running", "job.cancelled")
		require.Contains(t, fmt.Sprint(evs[3].ev.Payload), "e2e: no longer needed")
		f.requireMetrics(t, ctx, job, func(s *metricspb.JobStats) bool { return s.GetCancelledCount() == 1 })
		var denied []string
		for _, r := range f.requireAudited(t, ctx, job, 5) {
			if r.GetActor() == intruder.id {
				denied = append(denied, string(r.GetDetailsJson()))
			}
		}
		require.Len(t, denied, 1, "the refused cancel is in the audit trail once")
		require.Contains(t, denied[0], `"outcome":"DENIED"`)
	})

	t.Run("ten concurrent jobs", func(t *testing.T) {
		u := newUser(t)
		uctx := u.ctx(ctx)
		systems := []jobpb.TaccSystem{jobpb.TaccSystem_TACC_SYSTEM_FRONTERA, jobpb.TaccSystem_TACC_SYSTEM_STAMPEDE3,
			jobpb.TaccSystem_TACC_SYSTEM_LONESTAR6, jobpb.TaccSystem_TACC_SYSTEM_VISTA}
		jobs := make([]*jobpb.Job, 10)
		errs := make([]error, 10)
		var wg sync.WaitGroup
		for i := range jobs {
			wg.Go(func() {
				resp, err := f.jobs.SubmitJob(uctx, &jobpb.SubmitJobRequest{IdempotencyKey: fmt.Sprintf("concurrent-%d", i),
					Spec: f.spec(fmt.Sprintf("e2e-concurrent-%d", i), systems[i%len(systems)], fmt.Sprintf("echo job %d", i))})
				jobs[i], errs[i] = resp.GetJob(), err
			})
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "job %d", i)
		}
		correlation := map[string]bool{}
		for _, j := range jobs {
			correlation[j.GetCorrelationId()] = true
		}
		require.Len(t, correlation, 10, "each submission has its own correlation id")
		for i, j := range jobs {
			jobs[i] = f.waitStatus(t, uctx, j.GetJobId(), jobpb.JobStatus_JOB_STATUS_COMPLETED, 2*f.jobWait())
		}
		// Per-job order and correlation on Kafka, read once for all ten.
		var all map[string][]recorded
		eventually(t, 30*time.Second, 200*time.Millisecond, func() bool {
			all = f.lifecycle(t)
			for _, j := range jobs {
				if len(all[j.GetJobId()]) < 4 {
					return false
				}
			}
			return true
		}, func() string { return "not every job has its four lifecycle events" })
		for _, j := range jobs {
			got := all[j.GetJobId()]
			require.Equal(t, []string{"job.submitted", "job.queued", "job.running", "job.completed"}, eventTypes(got))
			for i, r := range got {
				require.Equal(t, int64(i+1), r.ev.Sequence)
				require.Equal(t, j.GetCorrelationId(), r.ev.CorrelationID)
				require.Equal(t, j.GetCorrelationId(), r.headers[telemetry.HeaderCorrelationID])
			}
			f.requireMetrics(t, ctx, j, func(s *metricspb.JobStats) bool { return s.GetCompletedCount() == 1 })
			f.requireAudited(t, ctx, j, 4)
		}
		// The correlation ids also reach every service's logs: the
		// orchestrator's request and reconciler lines, and each consumer's
		// line for every message it handled (LOG_LEVEL=debug here).
		for name, out := range map[string]string{"job-orchestrator": f.orch.Output(), "metrics-consumer": f.metrics.Output(),
			"notification-consumer": f.notify.Output(), "compliance-auditor": f.audit.Output(), "health-monitor": f.health.Output()} {
			var missing []string
			for id := range correlation {
				if !strings.Contains(out, `"correlation_id":"`+id+`"`) {
					missing = append(missing, id)
				}
			}
			require.Empty(t, missing, "%s logs lack these correlation ids", name)
		}
	})

	t.Run("every record decodes in Avro readers no one here wrote", func(t *testing.T) {
		f.requireForeignReaders(t)
	})
}

// eventually polls cond every tick until it holds, failing the test with
// describe's account of the last state after within.
func eventually(t *testing.T, within, tick time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %s", within, describe())
		}
		time.Sleep(tick)
	}
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func spanNames(spans []jaegerSpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Service+"/"+s.OperationName)
	}
	return out
}

func unhealthy(st *healthpb.FleetStatus) []string {
	var out []string
	for _, c := range st.GetComponents() {
		if c.GetStatus() != healthpb.HealthStatus_HEALTH_STATUS_HEALTHY {
			out = append(out, c.GetId()+": "+c.GetStatus().String()+" "+c.GetDetail())
		}
	}
	for _, a := range st.GetOpenAlerts() {
		out = append(out, "alert "+a.GetComponentId()+": "+a.GetMessage())
	}
	return out
}
