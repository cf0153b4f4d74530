package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// correlationHeader and maxCorrelationID are the gRPC edge's correlation
// id metadata key and length bound (libs/service).
const (
	correlationHeader = "correlation_id"
	maxCorrelationID  = 128
)

// edgeFleet is the orchestrator (local scheduler, SQLite) and the
// compliance-auditor over the real Kafka: the path of a job's audit records.
type edgeFleet struct {
	prefix string
	kafka  string
	jobs   jobpb.JobServiceClient
	trail  auditpb.AuditServiceClient
}

// bigCatalogue lets jobs of up to 1,024 nodes run on the local scheduler
// (Frontera's "large" partition allows as many).
func bigCatalogue(t *testing.T) string {
	t.Helper()
	doc := `{"systems":[{"name":"frontera","partitions":[{"name":"large","max_nodes":1024,"max_walltime":"2h","cores_per_node":1,"gpus_per_node":0,"memory_mb":1024}]}]}`
	f := filepath.Join(t.TempDir(), "catalogue.json")
	require.NoError(t, os.WriteFile(f, []byte(doc), 0o600))
	return f
}

func startEdgeFleet(t *testing.T) *edgeFleet {
	t.Helper()
	kafka := os.Getenv("KAFKA_BROKERS")
	if kafka == "" {
		testinfra.Unavailable(t, "Kafka: KAFKA_BROKERS is not set (eval \"$(tools/stack/stack.sh env)\")")
	}
	f := &edgeFleet{prefix: kafkabustest.Prefix(t, strings.Split(kafka, ","), "edge-"), kafka: kafka}
	orch := servicetest.RunBinary(t, servicesDir+"job-orchestrator/cmd/job-orchestrator", map[string]string{
		"KAFKA_BROKERS":              kafka,
		"DATABASE_URL":               "sqlite:" + filepath.Join(t.TempDir(), "orchestrator.db"),
		"STATE_DIRECTORY":            stateDir(t),
		"AUTH_HS256_SECRET":          authSecret,
		"PAGE_TOKEN_KEY":             "edge-page-token-key-0123456789abcdef",
		"RECONCILE_INTERVAL":         "200ms",
		"ORCHESTRATOR_TOPIC_PREFIX":  f.prefix,
		"ORCHESTRATOR_ENSURE_TOPICS": "true",
		"SCHEDULER":                  "local",
		"SYSTEM_CATALOGUE_FILE":      bigCatalogue(t),
		"AMQP_URL":                   "",
	})
	audit := servicetest.RunBinary(t, servicesDir+"compliance-auditor/cmd/compliance-auditor", map[string]string{
		"KAFKA_BROKERS":             kafka,
		"DATABASE_URL":              "sqlite:" + filepath.Join(t.TempDir(), "audit.db"),
		"AUTH_HS256_SECRET":         authSecret,
		"AUDIT_CONSUMER_GROUP":      f.prefix + "compliance-auditor",
		"AUDIT_TOPICS":              f.prefix + "audit-trail," + f.prefix + "job-lifecycle",
		"AUDIT_ALERT_TOPIC":         f.prefix + "system-health",
		"AUDIT_CHECKPOINT_INTERVAL": "1s",
	})
	f.jobs = jobpb.NewJobServiceClient(dial(t, orch.GRPCAddr))
	f.trail = auditpb.NewAuditServiceClient(dial(t, audit.GRPCAddr))
	return f
}

// records returns the audit records of one job.
func (f *edgeFleet) records(t *testing.T, jobID string) []*auditpb.AuditRecord {
	t.Helper()
	resp, err := f.trail.Query(adminContext(t, t.Context()), &auditpb.QueryRequest{ResourceType: "job", ResourceId: jobID, PageSize: 100})
	require.NoError(t, err)
	return resp.GetRecords()
}

// waitRecords waits until every action of want is in the job's audit trail
// and returns the records.
func (f *edgeFleet) waitRecords(t *testing.T, jobID string, want ...string) []*auditpb.AuditRecord {
	t.Helper()
	var recs []*auditpb.AuditRecord
	missing := func() []string {
		have := map[string]bool{}
		for _, r := range recs {
			have[r.GetAction()] = true
		}
		var out []string
		for _, a := range want {
			if !have[a] {
				out = append(out, a)
			}
		}
		return out
	}
	eventually(t, 60*time.Second, 200*time.Millisecond, func() bool {
		recs = f.records(t, jobID)
		return len(missing()) == 0
	}, func() string { return fmt.Sprintf("job %s: audit records missing %v", jobID, missing()) })
	return recs
}

func recordDetails(t *testing.T, r *auditpb.AuditRecord) map[string]string {
	t.Helper()
	d := map[string]string{}
	if len(r.GetDetailsJson()) > 0 {
		require.NoError(t, json.Unmarshal(r.GetDetailsJson(), &d))
	}
	return d
}

var jobActions = []string{"job.submit", "job.submitted", "job.queued", "job.running", "job.completed"}

// TestHostileInputsStayInTheAuditTrail: no value a client sends keeps a job
// out of the audit trail. A 5,000-byte correlation id is replaced at the
// edge, a JWT whose subject the trail could not hold is refused before
// anything is written, and a job on 1,024 nodes is recorded; a node list of
// 1,024 names (what Slurm reports for such a job, the local scheduler names
// one host) is recorded too.
func TestHostileInputsStayInTheAuditTrail(t *testing.T) {
	f := startEdgeFleet(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	spec := func(name string, nodes int32) *jobpb.JobSpec {
		return &jobpb.JobSpec{
			Name: name, Agent: jobpb.Agent_AGENT_CUSTOM, TaccSystem: jobpb.TaccSystem_TACC_SYSTEM_FRONTERA, Partition: "large",
			Resources:  &jobpb.Resources{Nodes: nodes, CoresPerNode: 1, Walltime: durationFor(10 * time.Minute)},
			Allocation: "AST21001", Payload: &jobpb.JobSpec_Command{Command: "true"},
		}
	}
	submit := func(t *testing.T, ctx context.Context, s *jobpb.JobSpec) (*jobpb.Job, metadata.MD, error) {
		var header metadata.MD
		resp, err := f.jobs.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: uuid.NewString(), Spec: s}, grpc.Header(&header))
		return resp.GetJob(), header, err
	}
	waitDone := func(t *testing.T, ctx context.Context, id string) {
		eventually(t, 60*time.Second, 100*time.Millisecond, func() bool {
			resp, err := f.jobs.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
			return err == nil && resp.GetJob().GetStatus() == jobpb.JobStatus_JOB_STATUS_COMPLETED
		}, func() string { return "job " + id + " did not complete" })
	}

	t.Run("5000-byte correlation id", func(t *testing.T) {
		u := newUser(t)
		huge := strings.Repeat("c", 5000)
		cctx := metadata.AppendToOutgoingContext(u.ctx(ctx), correlationHeader, huge)
		j, header, err := submit(t, cctx, spec("huge-correlation", 1))
		require.NoError(t, err)
		waitDone(t, u.ctx(ctx), j.GetJobId())
		recs := f.waitRecords(t, j.GetJobId(), jobActions...)
		corr := header.Get(correlationHeader)
		require.Len(t, corr, 1)
		require.NotEqual(t, huge, corr[0], "the id is replaced at the edge")
		require.LessOrEqual(t, len(corr[0]), maxCorrelationID)
		for _, r := range recs {
			require.Equal(t, corr[0], recordDetails(t, r)["correlation_id"], r.GetAction())
		}
	})

	t.Run("JWT subject", func(t *testing.T) {
		for _, sub := range []string{strings.Repeat("s", 5000), strings.Repeat("s", 256), "alice smith", "alice\u00e9"} {
			bad := user{id: sub, token: mintToken(t, sub, false)}
			_, _, err := submit(t, bad.ctx(ctx), spec("long-subject", 1))
			require.Equal(t, codes.Unauthenticated, status.Code(err), "subject of %d bytes: %v", len(sub), err)
		}
		// The longest subject admitted reaches the trail as the actor.
		longest := strings.Repeat("s", 200) + "@" + strings.Repeat("d", 50) + ".edu"
		ok := user{id: longest, token: mintToken(t, longest, false)}
		j, _, err := submit(t, ok.ctx(ctx), spec("longest-subject", 1))
		require.NoError(t, err)
		waitDone(t, ok.ctx(ctx), j.GetJobId())
		recs := f.waitRecords(t, j.GetJobId(), jobActions...)
		require.Equal(t, longest, recs[0].GetActor())

		// Nothing of a refused call reached the trail.
		resp, err := f.trail.Query(adminContext(t, ctx), &auditpb.QueryRequest{Actor: strings.Repeat("s", 256), PageSize: 10})
		require.NoError(t, err)
		require.Empty(t, resp.GetRecords())
	})

	t.Run("job on 1024 nodes", func(t *testing.T) {
		u := newUser(t)
		j, _, err := submit(t, u.ctx(ctx), spec("wide", 1024))
		require.NoError(t, err)
		waitDone(t, u.ctx(ctx), j.GetJobId())
		recs := f.waitRecords(t, j.GetJobId(), jobActions...)
		for _, r := range recs {
			if r.GetAction() == "job.submitted" {
				require.Equal(t, "1024", recordDetails(t, r)["nodes"])
			}
		}
	})

	t.Run("node list of 1024 names", func(t *testing.T) {
		// The job.running event the orchestrator writes for a job that
		// Slurm ran on 1,024 scattered nodes, through the real Kafka.
		codec, err := events.NewCodec()
		require.NoError(t, err)
		nodes := make([]string, 1024)
		for i := range nodes {
			nodes[i] = fmt.Sprintf("c%03d-%03d", 100+i*7/64, 1+(i*7)%64)
		}
		jobID := uuid.NewString()
		ev, err := events.NewEvent(events.JobRunning{JobID: jobID, UserID: "edge-user", SchedulerJobID: "4242",
			NodeList: nodes, StartedAt: time.Now().UTC().Truncate(time.Microsecond),
			FromStatus: events.JobStatusQueued, ToStatus: events.JobStatusRunning},
			events.Meta{Producer: "job-orchestrator", UserID: "edge-user", Sequence: 3})
		require.NoError(t, err)
		msg, err := codec.Message(ev)
		require.NoError(t, err)
		msg.Topic = f.prefix + events.TopicJobLifecycle
		p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(kafkabus.Connection{Brokers: []string{f.kafka}}), slog.New(slog.DiscardHandler), nil)
		require.NoError(t, err)
		defer p.Close()
		require.NoError(t, p.Publish(ctx, msg))

		recs := f.waitRecords(t, jobID, "job.running")
		d := recordDetails(t, recs[0])
		require.Equal(t, "1024", d["node_count"])
		require.NotEmpty(t, d["node_list"])
	})
}
