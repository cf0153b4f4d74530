package events_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
)

func ptr[T any](v T) *T { return &v }

var at = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

// samplePayloads has one payload of every event type with every field set.
func samplePayloads() []events.Payload {
	const job = "0195f2a0-7c1e-7b3a-9c4d-1a2b3c4d5e6f"
	return []events.Payload{
		events.JobSubmitted{JobID: job, UserID: "u-ada", JobName: "calibrate night 12", Agent: "AlphaCal", DatasetID: "vlass-2.1",
			TaccSystem: events.TaccSystemFrontera, Partition: "rtx", ResourceRequest: events.ResourceRequest{Nodes: 2, CoresPerNode: 32, GPUsPerNode: 2, MemoryMB: 131072, WalltimeSeconds: 7200},
			EstimatedNodeHours: 4, EstimatedGPUHours: 8, EstimatedCostUSD: 2.8, Priority: events.JobPriorityHigh, IdempotencyKey: ptr("req-42"),
			ToStatus: events.JobStatusSubmitted},
		events.JobQueued{JobID: job, UserID: "u-ada", Scheduler: "slurm", SchedulerJobID: "1234", FromStatus: events.JobStatusSubmitted, ToStatus: events.JobStatusQueued},
		events.JobRunning{JobID: job, UserID: "u-ada", SchedulerJobID: "1234", NodeList: []string{"c001", "c002"}, StartedAt: at.Add(time.Minute).Truncate(time.Microsecond),
			FromStatus: events.JobStatusQueued, ToStatus: events.JobStatusRunning},
		events.JobCompleted{JobID: job, UserID: "u-ada", ExitCode: 0, RunTimeMS: 3_600_000, QueueWaitMS: 60_000, OutputLocation: "s3://out/j1",
			FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusCompleted},
		events.JobFailed{JobID: job, UserID: "u-ada", ErrorCode: "OUT_OF_MEMORY", ErrorMessage: "oom-kill on c002", ExitCode: ptr(int32(137)), RunTimeMS: 12,
			FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusFailed},
		events.JobCancelled{JobID: job, UserID: "u-ada", CancelledBy: "u-admin", Reason: "wrong dataset", FromStatus: events.JobStatusQueued, ToStatus: events.JobStatusCancelled},
		events.JobMetricsRecorded{JobID: job, TaccSystem: events.TaccSystemVista, UserID: "u-ada", Agent: "AlphaCal", QueueWaitMS: 60_000, RunTimeMS: 30_000,
			ExitCode: ptr(int32(0)), NodeHours: 0.5, GPUHours: 1, CPUTimeMS: ptr(int64(99)), MaxRSSBytes: ptr(int64(1 << 30)), Final: true},
		events.NotificationSent{NotificationID: "n-1", RecipientUserID: "u-ada", Channel: events.ChannelEmail, Target: "ada@example.org", Subject: "Job done",
			RelatedJobID: ptr(job), Attempt: 1},
		events.NotificationFailed{NotificationID: "n-2", RecipientUserID: "u-ada", Channel: events.ChannelWebhook, Target: "https://hook.example.org", Subject: "Job failed",
			Attempt: 3, Error: "410 Gone", Permanent: true},
		events.AuditActionRecorded{AuditID: "a-1", Action: events.AuditActionCancel, ActorUserID: "u-admin", ActorRole: "admin", ResourceType: "job", ResourceID: job,
			Before: map[string]string{"status": "QUEUED"}, After: map[string]string{"status": "CANCELLED"}, IPAddress: ptr("192.0.2.7"), Outcome: events.AuditOutcomeSuccess},
		events.SystemHealthCheck{ComponentID: "kafka", ComponentType: events.ComponentBroker, Status: events.HealthDegraded, Detail: "1 of 3 brokers down",
			LatencyMS: ptr(int64(12)), Metrics: map[string]float64{"consumer_lag": 42, "active_jobs": 7}},
		events.AlertRaised{AlertID: "al-1", ComponentID: "kafka", Severity: events.SeverityCritical, Message: "consumer lag above 5 s"},
		events.AlertResolved{AlertID: "al-1", ComponentID: "kafka", Message: "lag back to normal"},
	}
}

func sampleEvent(t testing.TB, p events.Payload) events.Event {
	t.Helper()
	ev, err := events.NewEvent(p, events.Meta{Producer: "job-orchestrator", UserID: "u-ada", CorrelationID: "corr-1",
		CausationID: "cmd-9", Sequence: 3, Tags: map[string]string{"env": "test"}, Now: func() time.Time { return at }})
	require.NoError(t, err)
	return ev
}

func TestNewEvent(t *testing.T) {
	t.Parallel()
	ev, err := events.NewEvent(events.AlertResolved{AlertID: "a", ComponentID: "kafka", Message: "ok"}, events.Meta{Producer: "health-monitor", UserID: "system:health-monitor"})
	require.NoError(t, err)
	id, err := uuid.Parse(ev.EventID)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), id.Version())
	require.Equal(t, events.TypeAlertResolved, ev.EventType)
	require.Equal(t, ev.EventID, ev.CorrelationID, "a root event correlates to itself")
	require.Nil(t, ev.CausationID)
	require.Equal(t, int32(1), ev.SchemaVersion)
	require.False(t, ev.OccurredAt.IsZero())
	require.Equal(t, time.UTC, ev.OccurredAt.Location())
	require.Zero(t, ev.OccurredAt.Nanosecond()%1000)

	_, err = events.NewEvent(nil, events.Meta{Producer: "x", UserID: "y"})
	require.Error(t, err)
	_, err = events.NewEvent(events.JobQueued{}, events.Meta{Producer: "x", UserID: "y"})
	require.ErrorContains(t, err, "job_id is empty")
}

func TestEventTopicAndKeyMatchCatalogue(t *testing.T) {
	t.Parallel()
	topics, err := events.Catalogue(events.DefaultCatalogueConfig())
	require.NoError(t, err)
	for _, p := range samplePayloads() {
		ev := sampleEvent(t, p)
		spec, ok := events.Lookup(topics, ev.Topic())
		require.True(t, ok, ev.EventType)
		switch spec.Key {
		case events.KeyNone:
			require.Empty(t, ev.Key(), ev.EventType)
		case events.KeyJobID:
			require.Equal(t, "0195f2a0-7c1e-7b3a-9c4d-1a2b3c4d5e6f", ev.Key(), ev.EventType)
		case events.KeyResourceID:
			require.Equal(t, p.(events.AuditActionRecorded).ResourceID, ev.Key())
		case events.KeyComponentID:
			require.Equal(t, "kafka", ev.Key(), ev.EventType)
		}
	}
	require.Empty(t, events.Event{}.Topic())
	require.Empty(t, events.Event{}.Key())
}

func TestEventValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*events.Event)
		wantErr string
	}{
		{name: "valid", mutate: func(*events.Event) {}},
		{name: "no payload", mutate: func(e *events.Event) { e.Payload = nil }, wantErr: "no payload"},
		{name: "type mismatch", mutate: func(e *events.Event) { e.EventType = events.TypeJobFailed }, wantErr: "does not match payload"},
		{name: "bad event id", mutate: func(e *events.Event) { e.EventID = "nope" }, wantErr: "event_id"},
		{name: "zero time", mutate: func(e *events.Event) { e.OccurredAt = time.Time{} }, wantErr: "occurred_at"},
		{name: "no correlation", mutate: func(e *events.Event) { e.CorrelationID = "" }, wantErr: "correlation_id"},
		{name: "no producer", mutate: func(e *events.Event) { e.Producer = "" }, wantErr: "producer"},
		{name: "no actor", mutate: func(e *events.Event) { e.UserID = "" }, wantErr: "user_id"},
		{name: "negative sequence", mutate: func(e *events.Event) { e.Sequence = -1 }, wantErr: "sequence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := sampleEvent(t, samplePayloads()[3])
			tt.mutate(&ev)
			err := ev.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
