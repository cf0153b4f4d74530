package domain_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/domain"
)

func ptr[T any](v T) *T { return &v }

func newEvent(t *testing.T, p events.Payload, meta events.Meta) events.Event {
	t.Helper()
	meta.Now = func() time.Time { return time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.UTC) }
	ev, err := events.NewEvent(p, meta)
	require.NoError(t, err)
	return ev
}

func TestRecordFromEvent(t *testing.T) {
	t.Parallel()
	recordedAt := time.Date(2026, 5, 1, 12, 0, 1, 0, time.FixedZone("CEST", 7200))
	orchestrator := events.Meta{Producer: "job-orchestrator", UserID: "u-ada", CorrelationID: "corr-1", CausationID: "cmd-9", Sequence: 3}
	tests := []struct {
		name         string
		payload      events.Payload
		meta         events.Meta
		wantActor    string
		wantRole     string
		wantAction   string
		wantResource [2]string
		wantDetails  map[string]string
	}{
		{
			name: "audited action",
			payload: events.AuditActionRecorded{
				AuditID: "aud-1", Action: events.AuditActionCancel, ActorUserID: "u-admin", ActorRole: "admin",
				ResourceType: "job", ResourceID: "job-7", Before: map[string]string{"status": "RUNNING"},
				After: map[string]string{"status": "CANCELLED"}, IPAddress: ptr("10.0.0.1"), Outcome: events.AuditOutcomeSuccess,
			},
			meta:      events.Meta{Producer: "job-orchestrator", UserID: "u-admin", CorrelationID: "corr-2"},
			wantActor: "u-admin", wantRole: "admin", wantAction: "job.cancel", wantResource: [2]string{"job", "job-7"},
			wantDetails: map[string]string{
				"correlation_id": "corr-2", "producer": "job-orchestrator", "audit_id": "aud-1", "outcome": "SUCCESS",
				"ip_address": "10.0.0.1", "before.status": "RUNNING", "after.status": "CANCELLED",
			},
		},
		{
			name: "job submitted",
			payload: events.JobSubmitted{
				JobID: "job-7", UserID: "u-ada", JobName: "calibrate", Agent: "calibration", DatasetID: "ds-1",
				TaccSystem: events.TaccSystemFrontera, Partition: "normal", Priority: events.JobPriorityHigh,
				ResourceRequest:    events.ResourceRequest{Nodes: 2, CoresPerNode: 56, MemoryMB: 1024, WalltimeSeconds: 3600},
				EstimatedNodeHours: 2.5, IdempotencyKey: ptr("idem-1"), ToStatus: events.JobStatusSubmitted,
			},
			meta:      orchestrator,
			wantActor: "u-ada", wantAction: "job.submitted", wantResource: [2]string{"job", "job-7"},
			wantDetails: map[string]string{
				"correlation_id": "corr-1", "causation_id": "cmd-9", "producer": "job-orchestrator", "job_sequence": "3",
				"owner": "u-ada", "job_name": "calibrate", "agent": "calibration", "dataset_id": "ds-1",
				"tacc_system": "FRONTERA", "partition": "normal", "priority": "HIGH", "nodes": "2", "cores_per_node": "56",
				"gpus_per_node": "0", "memory_mb": "1024", "walltime_seconds": "3600", "estimated_node_hours": "2.5",
				"estimated_gpu_hours": "0", "estimated_cost_usd": "0", "idempotency_key": "idem-1", "to_status": "SUBMITTED",
			},
		},
		{
			name: "job running",
			payload: events.JobRunning{
				JobID: "job-7", UserID: "u-ada", SchedulerJobID: "123", NodeList: []string{"c001", "c002"},
				StartedAt: time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC), FromStatus: events.JobStatusQueued, ToStatus: events.JobStatusRunning,
			},
			meta:      events.Meta{Producer: "job-orchestrator", UserID: "system:job-orchestrator", CorrelationID: "corr-1", Sequence: 3},
			wantActor: "system:job-orchestrator", wantAction: "job.running", wantResource: [2]string{"job", "job-7"},
			wantDetails: map[string]string{
				"correlation_id": "corr-1", "producer": "job-orchestrator", "job_sequence": "3", "owner": "u-ada",
				"scheduler_job_id": "123", "node_list": "c001,c002", "started_at": "2026-05-01T11:00:00Z",
				"from_status": "QUEUED", "to_status": "RUNNING",
			},
		},
		{
			name: "job failed",
			payload: events.JobFailed{
				JobID: "job-7", UserID: "u-ada", ErrorCode: "TIMEOUT", ErrorMessage: "walltime exceeded", ExitCode: ptr(int32(-9)),
				RunTimeMS: 3600000, FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusFailed,
			},
			meta:      orchestrator,
			wantActor: "u-ada", wantAction: "job.failed", wantResource: [2]string{"job", "job-7"},
			wantDetails: map[string]string{
				"correlation_id": "corr-1", "causation_id": "cmd-9", "producer": "job-orchestrator", "job_sequence": "3",
				"owner": "u-ada", "error_code": "TIMEOUT", "error_message": "walltime exceeded", "exit_code": "-9",
				"run_time_ms": "3600000", "from_status": "RUNNING", "to_status": "FAILED",
			},
		},
		{
			name:      "job cancelled",
			payload:   events.JobCancelled{JobID: "job-7", UserID: "u-ada", CancelledBy: "u-admin", Reason: "maintenance", FromStatus: events.JobStatusQueued, ToStatus: events.JobStatusCancelled},
			meta:      events.Meta{Producer: "job-orchestrator", UserID: "u-admin", CorrelationID: "corr-3"},
			wantActor: "u-admin", wantAction: "job.cancelled", wantResource: [2]string{"job", "job-7"},
			wantDetails: map[string]string{
				"correlation_id": "corr-3", "producer": "job-orchestrator", "owner": "u-ada", "cancelled_by": "u-admin",
				"reason": "maintenance", "from_status": "QUEUED", "to_status": "CANCELLED",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := newEvent(t, tt.payload, tt.meta)
			require.True(t, domain.Audited(ev.EventType))
			r, err := domain.RecordFromEvent(ev, recordedAt)
			require.NoError(t, err)
			require.Equal(t, ev.EventID, r.EventID)
			require.Equal(t, ev.OccurredAt, r.OccurredAt)
			require.Equal(t, recordedAt.UTC(), r.RecordedAt)
			require.Equal(t, tt.wantActor, r.Actor)
			require.Equal(t, tt.wantRole, r.ActorRole)
			require.Equal(t, tt.wantAction, r.Action)
			require.Equal(t, tt.wantResource, [2]string{r.ResourceType, r.ResourceID})
			require.Equal(t, tt.wantDetails, r.Details)
			require.Zero(t, r.Sequence, "the chain assigns the sequence")

			// The record chains, and the same event always gives the same record.
			chained, err := auditchain.NewChain(auditchain.Head{}).Append(r)
			require.NoError(t, err)
			again, err := domain.RecordFromEvent(ev, recordedAt)
			require.NoError(t, err)
			chainedAgain, err := auditchain.NewChain(auditchain.Head{}).Append(again)
			require.NoError(t, err)
			require.Equal(t, chained.Hash, chainedAgain.Hash)
		})
	}
}

func TestRecordFromEventRejects(t *testing.T) {
	t.Parallel()
	meta := events.Meta{Producer: "job-orchestrator", UserID: "u-ada"}
	metrics := newEvent(t, events.JobMetricsRecorded{JobID: "job-7", UserID: "u-ada"}, meta)
	health := newEvent(t, events.SystemHealthCheck{ComponentID: "kafka", Status: events.HealthHealthy}, meta)
	noID := newEvent(t, events.JobQueued{JobID: "job-7", UserID: "u-ada"}, meta)
	noID.EventID = ""
	badUTF8 := newEvent(t, events.JobCancelled{JobID: "job-7", UserID: "u-ada", Reason: "\xff"}, meta)
	tests := []struct {
		name    string
		ev      events.Event
		wantErr error
		wantMsg string
	}{
		{name: "metrics", ev: metrics, wantErr: domain.ErrNotAudited},
		{name: "health", ev: health, wantErr: domain.ErrNotAudited},
		{name: "no payload", ev: events.Event{}, wantMsg: "no payload"},
		{name: "no event id", ev: noID, wantMsg: "event_id is empty"},
		{name: "detail not UTF-8", ev: badUTF8, wantMsg: "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := domain.RecordFromEvent(tt.ev, time.Now())
			require.Error(t, err)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.False(t, domain.Audited(tt.ev.EventType))
			}
			if tt.wantMsg != "" {
				require.ErrorContains(t, err, tt.wantMsg)
			}
		})
	}
}

// TestRecordFromEventKeepsLongValues: no value an event carries, however
// long, makes the trail refuse the event: a job on 1,024 nodes, a long
// failure message, a long correlation id of an older producer.
func TestRecordFromEventKeepsLongValues(t *testing.T) {
	t.Parallel()
	meta := events.Meta{Producer: "job-orchestrator", UserID: "u-ada", CorrelationID: strings.Repeat("c", 5000)}
	nodes := make([]string, 0, 1024)
	for i := range 1024 {
		nodes = append(nodes, fmt.Sprintf("c%03d-%03d", 100+i/64, 1+i%64))
	}
	scattered := make([]string, 0, 1024)
	for i := range 1024 {
		scattered = append(scattered, fmt.Sprintf("node%05d", i*7))
	}
	tests := []struct {
		name    string
		payload events.Payload
		check   func(t *testing.T, d map[string]string)
	}{
		{name: "1024 nodes in runs", payload: events.JobRunning{JobID: "job-7", UserID: "u-ada", NodeList: nodes, ToStatus: events.JobStatusRunning},
			check: func(t *testing.T, d map[string]string) {
				require.Equal(t, "1024", d["node_count"])
				require.True(t, strings.HasPrefix(d["node_list"], "c100-[001-064],c101-[001-064],"), d["node_list"])
				require.NotContains(t, d, "node_list.sha256", "the compressed list fits whole")
			}},
		{name: "1024 scattered nodes", payload: events.JobRunning{JobID: "job-7", UserID: "u-ada", NodeList: scattered, ToStatus: events.JobStatusRunning},
			check: func(t *testing.T, d map[string]string) {
				require.Equal(t, "1024", d["node_count"])
				full := strings.Join(scattered, ",")
				sum := sha256.Sum256([]byte(full))
				require.Equal(t, hex.EncodeToString(sum[:]), d["node_list"+domain.DetailSHA256Suffix])
				require.Equal(t, strconv.Itoa(len(full)), d["node_list"+domain.DetailBytesSuffix])
				require.True(t, strings.HasPrefix(d["node_list"], "node00000,node00007,"))
			}},
		{name: "long failure message", payload: events.JobFailed{JobID: "job-7", UserID: "u-ada", ErrorMessage: strings.Repeat("é", 5000), ToStatus: events.JobStatusFailed},
			check: func(t *testing.T, d map[string]string) {
				require.Equal(t, "10000", d["error_message"+domain.DetailBytesSuffix])
				require.True(t, utf8.ValidString(d["error_message"]))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := domain.RecordFromEvent(newEvent(t, tt.payload, meta), time.Now())
			require.NoError(t, err)
			require.NoError(t, r.Validate())
			require.Len(t, r.Details[domain.DetailCorrelationID+domain.DetailSHA256Suffix], 64)
			tt.check(t, r.Details)
			_, err = auditchain.NewChain(auditchain.Head{}).Append(r)
			require.NoError(t, err)
		})
	}
}
