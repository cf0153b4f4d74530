package service_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// lifecycle returns the job-lifecycle messages of one job on its way to final.
func lifecycle(t *testing.T, codec *events.Codec, topic, job string, system events.TaccSystem, final events.Payload) []*bus.Message {
	t.Helper()
	submitted := events.JobStatusSubmitted
	payloads := []events.Payload{
		events.JobSubmitted{JobID: job, UserID: "u-hm", JobName: job, Agent: "AlphaCal", TaccSystem: system, Partition: "normal",
			Priority: events.JobPriorityNormal, ToStatus: events.JobStatusSubmitted},
		events.JobQueued{JobID: job, UserID: "u-hm", Scheduler: "slurm", SchedulerJobID: "1", FromStatus: submitted, ToStatus: events.JobStatusQueued},
	}
	if final != nil {
		payloads = append(payloads,
			events.JobRunning{JobID: job, UserID: "u-hm", SchedulerJobID: "1", StartedAt: time.Now().UTC().Truncate(time.Microsecond),
				FromStatus: events.JobStatusQueued, ToStatus: events.JobStatusRunning},
			final)
	}
	var out []*bus.Message
	for i, p := range payloads {
		ev, err := events.NewEvent(p, events.Meta{Producer: "job-orchestrator", UserID: "u-hm", Sequence: int64(i + 1)})
		require.NoError(t, err)
		msg, err := codec.Message(ev)
		require.NoError(t, err)
		msg.Topic = topic
		out = append(out, msg)
	}
	return out
}

func failed(job, code string) events.JobFailed {
	return events.JobFailed{JobID: job, UserID: "u-hm", ErrorCode: code, ErrorMessage: "it failed",
		FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusFailed}
}

func TestJobFlowFollowsJobLifecycle(t *testing.T) {
	brokers := kafkaBrokers(t)
	topic := "job-lifecycle-hm-" + suffix(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	kafkabustest.TopicsWithDLQ(t, brokers, 3, topic)

	cfg := testConfig(t)
	cfg.Kafka.Brokers = brokers
	cfg.CanaryEnabled = false
	cfg.JobsEnabled = true
	cfg.JobsTopic = topic
	cfg.JobFlow.MinFinished = 4
	cfg.JobFlow.FailureRatio = 0.5
	hm, rec := newHealthMonitor(t, cfg)

	jobs := func() domain.Component {
		c, ok := component(hm.Monitor.RunCycle(ctx), domain.JobFlowComponentID)
		require.True(t, ok, "no jobs component")
		return c
	}
	first := jobs()
	require.Equal(t, domain.TypeScheduler, first.Type)
	require.Eventually(t, hm.JobFlow.Consuming, 60*time.Second, 100*time.Millisecond, "consumer never joined")

	codec, err := events.NewCodec()
	require.NoError(t, err)
	producer, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(kafkabus.Connection{Brokers: brokers}), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	defer producer.Close()
	publish := func(msgs []*bus.Message) {
		t.Helper()
		for _, m := range msgs {
			require.NoError(t, producer.Publish(ctx, m))
		}
	}
	ok := lifecycle(t, codec, topic, "job-ok", events.TaccSystemFrontera,
		events.JobCompleted{JobID: "job-ok", UserID: "u-hm", FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusCompleted})
	bad := lifecycle(t, codec, topic, "job-bad", events.TaccSystemVista, failed("job-bad", "TIMEOUT"))
	publish(ok)
	publish(bad)
	publish(bad[2:]) // redelivered: counts once
	publish(lifecycle(t, codec, topic, "job-waiting", events.TaccSystemVista, nil))
	// A message that does not decode goes to the dead-letter topic; the flow goes on.
	require.NoError(t, producer.Publish(ctx, &bus.Message{Topic: topic, Key: "junk", Value: []byte("not avro")}))

	var c domain.Component
	require.Eventually(t, func() bool {
		c = jobs()
		return c.Metrics["submitted_jobs"] == 3 && c.Metrics["failed_jobs"] == 1
	}, 30*time.Second, 100*time.Millisecond, "flow: %v", func() map[string]float64 { return c.Metrics })
	require.Equal(t, domain.StatusHealthy, c.Status, c.Detail)
	require.Equal(t, map[string]float64{
		"active_jobs": 0, "pending_jobs": 1, "submitted_jobs": 3, "started_jobs": 2,
		"completed_jobs": 1, "failed_jobs": 1, "cancelled_jobs": 0, "failure_ratio": 0.5,
		"failed_jobs.vista": 1, "oldest_pending_seconds": c.Metrics["oldest_pending_seconds"], "window_seconds": 3600,
	}, c.Metrics)

	// Two more failures: 3 of 4 finished jobs failed.
	publish(lifecycle(t, codec, topic, "job-oom", events.TaccSystemFrontera, failed("job-oom", "OUT_OF_MEMORY")))
	publish(lifecycle(t, codec, topic, "job-late", events.TaccSystemVista, failed("job-late", "TIMEOUT")))
	require.Eventually(t, func() bool {
		c = jobs()
		return c.Status == domain.StatusDegraded
	}, 30*time.Second, 100*time.Millisecond, "flow never degraded: %s", func() string { return c.Detail })
	require.Equal(t, "3 of 4 jobs finished in the last 1h0m0s failed (TIMEOUT 2, OUT_OF_MEMORY 1)", c.Detail)

	// The judgement reaches system-health like any other component's.
	var published *events.SystemHealthCheck
	rec.mu.Lock()
	for _, ev := range rec.evs {
		if p, ok := ev.Payload.(events.SystemHealthCheck); ok && p.ComponentID == domain.JobFlowComponentID && p.Status == events.HealthDegraded {
			published = &p
		}
	}
	rec.mu.Unlock()
	require.NotNil(t, published, "no system.health_check for the jobs component")
	require.Equal(t, events.ComponentScheduler, published.ComponentType)
	require.EqualValues(t, 3, published.Metrics["failed_jobs"])
}
