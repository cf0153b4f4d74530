// Package e2e_test runs the five fleet services as separate processes
// against the real stack (Kafka, RabbitMQ, PostgreSQL, mailpit, Jaeger and
// Slurm when SLURMRESTD_URL is set, else the local scheduler) and checks a
// job's whole journey through them.
package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	metricspb "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"
)

const (
	authSecret  = "e2e-development-secret-0123456789abcdef"
	servicesDir = "../../services/"
)

// stackEnv is what the suite needs from tools/stack/stack.sh env.
type stackEnv struct {
	kafka, amqp, rabbitMgmt, postgres, smtp, mailpit, otlp, jaeger string
	slurmURL                                                       string
}

func requireStack(t *testing.T) stackEnv {
	t.Helper()
	s := stackEnv{
		kafka: os.Getenv("KAFKA_BROKERS"), amqp: os.Getenv("AMQP_URL"), rabbitMgmt: os.Getenv("RABBITMQ_MGMT_URL"),
		postgres: os.Getenv(sqlstoretest.EnvPostgresURL), smtp: os.Getenv("SMTP_ADDR"), mailpit: os.Getenv("MAILPIT_URL"),
		otlp: os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), jaeger: os.Getenv("JAEGER_QUERY_URL"),
		slurmURL: os.Getenv("SLURMRESTD_URL"),
	}
	var missing []string
	for name, v := range map[string]string{"KAFKA_BROKERS": s.kafka, "AMQP_URL": s.amqp,
		sqlstoretest.EnvPostgresURL: s.postgres, "SMTP_ADDR": s.smtp, "MAILPIT_URL": s.mailpit,
		"OTEL_EXPORTER_OTLP_ENDPOINT": s.otlp, "JAEGER_QUERY_URL": s.jaeger} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		testinfra.Unavailable(t, "the end-to-end suite needs the local stack (eval \"$(tools/stack/stack.sh env)\"); unset: %s",
			strings.Join(missing, ", "))
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fleet is the five services of one test run, isolated by topic prefix and
// consumer group names.
type fleet struct {
	stack     stackEnv
	prefix    string
	scheduler string
	// partition per system: the built-in catalogue's names on the local
	// scheduler, the stack Slurm's one partition on Slurm.
	partitions map[jobpb.TaccSystem]string

	orch, metrics, notify, audit, health *servicetest.Process
	// started is when the fleet was started: the first instant whose
	// records on the shared topics belong to this run.
	started time.Time

	jobs   jobpb.JobServiceClient
	stats  metricspb.MetricsServiceClient
	trail  auditpb.AuditServiceClient
	status healthpb.HealthMonitorServiceClient
	subs   notificationpb.NotificationServiceClient
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// otelEnv sends every service's spans to the stack's Jaeger, exported
// quickly so the test can fetch them.
func (s stackEnv) otelEnv(env map[string]string) map[string]string {
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = s.otlp
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
	env["OTEL_TRACES_SAMPLER"] = "parentbased_always_on"
	env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
	env["OTEL_SERVICE_NAME"] = ""
	env["KAFKA_BROKERS"] = s.kafka
	return env
}

// slurmCatalogue writes a system catalogue whose every system has the
// stack Slurm's partition "normal", so that jobs of every system run there.
func slurmCatalogue(t *testing.T) string {
	t.Helper()
	type part struct {
		Name         string `json:"name"`
		MaxNodes     int    `json:"max_nodes"`
		MaxWalltime  string `json:"max_walltime"`
		CoresPerNode int    `json:"cores_per_node"`
		GPUsPerNode  int    `json:"gpus_per_node"`
		MemoryMB     int    `json:"memory_mb"`
	}
	type system struct {
		Name       string `json:"name"`
		Partitions []part `json:"partitions"`
	}
	var doc struct {
		Systems []system `json:"systems"`
	}
	for _, name := range []string{"frontera", "stampede3", "lonestar6", "vista"} {
		doc.Systems = append(doc.Systems, system{Name: name, Partitions: []part{
			{Name: "normal", MaxNodes: 1, MaxWalltime: "2h", CoresPerNode: 1, MemoryMB: 1024},
		}})
	}
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "catalogue.json")
	require.NoError(t, os.WriteFile(f, b, 0o600))
	return f
}

// sharedWorkDir is a job output directory the Slurm job user can write.
func sharedWorkDir(t *testing.T) string { return testinfra.DirFor(t, testinfra.Shared) }

func stateDir(t *testing.T) string { return servicetest.StateDir(t) }

func startFleet(t *testing.T) *fleet {
	t.Helper()
	s := requireStack(t)
	f := &fleet{stack: s, prefix: kafkabustest.Prefix(t, strings.Split(s.kafka, ","), "e2e-"), scheduler: "local", started: time.Now()}
	t.Logf("topic and group prefix %s", f.prefix)
	topic := func(name string) string { return f.prefix + name }

	orchEnv := s.otelEnv(map[string]string{
		"AMQP_URL":                   s.amqp,
		"DATABASE_URL":               sqlstoretest.Databases(t)[1].URL(t), // a fresh PostgreSQL database
		"STATE_DIRECTORY":            stateDir(t),
		"AUTH_HS256_SECRET":          authSecret,
		"PAGE_TOKEN_KEY":             "e2e-page-token-key-0123456789abcdef",
		"RECONCILE_INTERVAL":         "200ms",
		"ORCHESTRATOR_TOPIC_PREFIX":  f.prefix,
		"ORCHESTRATOR_ENSURE_TOPICS": "true",
		"SCHEDULER":                  "local",
	})
	f.partitions = map[jobpb.TaccSystem]string{
		jobpb.TaccSystem_TACC_SYSTEM_FRONTERA: "development", jobpb.TaccSystem_TACC_SYSTEM_STAMPEDE3: "skx-dev",
		jobpb.TaccSystem_TACC_SYSTEM_LONESTAR6: "development", jobpb.TaccSystem_TACC_SYSTEM_VISTA: "gg",
	}
	if s.slurmURL != "" && os.Getenv("E2E_SCHEDULER") != "local" {
		f.scheduler = "slurm"
		orchEnv["SCHEDULER"] = "slurm"
		orchEnv["SYSTEM_CATALOGUE_FILE"] = slurmCatalogue(t)
		orchEnv["JOB_WORK_DIR"] = sharedWorkDir(t)
		orchEnv["RECONCILE_INTERVAL"] = "1s"
		for sys := range f.partitions {
			f.partitions[sys] = "normal"
		}
	}
	t.Logf("scheduler %s", f.scheduler)
	f.orch = servicetest.RunBinary(t, servicesDir+"job-orchestrator/cmd/job-orchestrator", orchEnv)

	f.metrics = servicetest.RunBinary(t, servicesDir+"metrics-consumer/cmd/metrics-consumer", s.otelEnv(map[string]string{
		"DATABASE_URL":      "sqlite:" + filepath.Join(t.TempDir(), "metrics.db"),
		"AUTH_HS256_SECRET": authSecret,
		"METRICS_TOPICS":    "job-lifecycle=" + topic("job-lifecycle") + ",job-metrics=" + topic("job-metrics"),
		"METRICS_GROUP":     topic("metrics-consumer"),
	}))
	f.notify = servicetest.RunBinary(t, servicesDir+"notification-consumer/cmd/notification-consumer", s.otelEnv(map[string]string{
		"DATABASE_URL":           "sqlite:" + filepath.Join(t.TempDir(), "notifications.db"),
		"AUTH_HS256_SECRET":      authSecret,
		"AMQP_URL":               s.amqp,
		"SMTP_ADDR":              s.smtp,
		"KAFKA_CONSUMER_GROUP":   topic("notification-consumer"),
		"KAFKA_LIFECYCLE_TOPIC":  topic("job-lifecycle"),
		"DELIVERY_POLL_INTERVAL": "200ms",
	}))
	f.audit = servicetest.RunBinary(t, servicesDir+"compliance-auditor/cmd/compliance-auditor", s.otelEnv(map[string]string{
		"DATABASE_URL":              "sqlite:" + filepath.Join(t.TempDir(), "audit.db"),
		"AUTH_HS256_SECRET":         authSecret,
		"AUDIT_CONSUMER_GROUP":      topic("compliance-auditor"),
		"AUDIT_TOPICS":              topic("audit-trail") + "," + topic("job-lifecycle"),
		"AUDIT_ALERT_TOPIC":         topic("system-health"),
		"AUDIT_CHECKPOINT_INTERVAL": "1s",
	}))
	f.health = servicetest.RunBinary(t, servicesDir+"health-monitor/cmd/health-monitor", s.otelEnv(map[string]string{
		"AMQP_URL":          s.amqp,
		"RABBITMQ_MGMT_URL": s.rabbitMgmt,
		"HEALTH_SERVICES": strings.Join([]string{
			"job-orchestrator=" + f.orch.GRPCAddr, "metrics-consumer=" + f.metrics.GRPCAddr,
			"notification-consumer=" + f.notify.GRPCAddr, "compliance-auditor=" + f.audit.GRPCAddr,
		}, ","),
		"HEALTH_GROUP_PREFIX":   f.prefix,
		"HEALTH_JOBS_TOPIC":     topic("job-lifecycle"),
		"HEALTH_JOBS_GROUP":     topic("health-monitor-jobs"),
		"HEALTH_INTERVAL":       "1s",
		"HEALTH_PROBE_TIMEOUT":  "900ms",
		"HEALTH_CANARY_TIMEOUT": "800ms",
		"HEALTH_RAISE_AFTER":    "2",
		"HEALTH_RESOLVE_AFTER":  "1",
	}))

	f.jobs = jobpb.NewJobServiceClient(dial(t, f.orch.GRPCAddr))
	f.stats = metricspb.NewMetricsServiceClient(dial(t, f.metrics.GRPCAddr))
	f.trail = auditpb.NewAuditServiceClient(dial(t, f.audit.GRPCAddr))
	f.status = healthpb.NewHealthMonitorServiceClient(dial(t, f.health.GRPCAddr))
	f.subs = notificationpb.NewNotificationServiceClient(dial(t, f.notify.GRPCAddr))

	// The monitor's job flow starts at the newest offsets: wait until it
	// consumes before the first job is submitted.
	var jobs *healthpb.Component
	eventually(t, 60*time.Second, 200*time.Millisecond, func() bool {
		jobs = nil
		resp, err := f.status.GetFleetStatus(t.Context(), &healthpb.GetFleetStatusRequest{})
		if err != nil {
			return false
		}
		for _, c := range resp.GetStatus().GetComponents() {
			if c.GetId() == "jobs" {
				jobs = c
			}
		}
		return jobs != nil && jobs.GetStatus() == healthpb.HealthStatus_HEALTH_STATUS_HEALTHY
	}, func() string { return fmt.Sprintf("health-monitor job flow: %v", jobs) })
	return f
}

// user is a caller of the fleet with its JWT.
type user struct {
	id    string
	token string
}

func newUser(t *testing.T) user {
	t.Helper()
	id := "e2e-user-" + randomHex(4)
	return user{id: id, token: mintToken(t, id, false)}
}

func (u user) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+u.token)
}

// withTrace makes ctx's calls part of a new sampled trace and returns its id.
func withTrace(ctx context.Context) (context.Context, string) {
	traceID := randomHex(16)
	return metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-"+randomHex(8)+"-01"), traceID
}

func (f *fleet) spec(name string, system jobpb.TaccSystem, command string) *jobpb.JobSpec {
	return &jobpb.JobSpec{
		Name: name, Agent: jobpb.Agent_AGENT_CUSTOM, DatasetId: "ds-e2e",
		TaccSystem: system, Partition: f.partitions[system],
		Resources:  &jobpb.Resources{Nodes: 1, CoresPerNode: 1, Walltime: durationFor(10 * time.Minute)},
		Allocation: "AST21001", Payload: &jobpb.JobSpec_Command{Command: command},
	}
}

// waitStatus polls the job until it reaches want (or any terminal status).
func (f *fleet) waitStatus(t *testing.T, ctx context.Context, id string, want jobpb.JobStatus, within time.Duration) *jobpb.Job {
	t.Helper()
	var last *jobpb.Job
	require.Eventually(t, func() bool {
		resp, err := f.jobs.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
		if err != nil {
			return false
		}
		last = resp.GetJob()
		return last.GetStatus() == want || terminalStatus(last.GetStatus())
	}, within, 100*time.Millisecond, "job %s did not reach %s", id, want)
	require.Equal(t, want.String(), last.GetStatus().String(), "job %s: %s %s", id, last.GetErrorCode(), last.GetErrorMessage())
	return last
}

func terminalStatus(s jobpb.JobStatus) bool {
	return s == jobpb.JobStatus_JOB_STATUS_COMPLETED || s == jobpb.JobStatus_JOB_STATUS_FAILED || s == jobpb.JobStatus_JOB_STATUS_CANCELLED
}

// jobWait is how long a short job may take from submission to its end.
func (f *fleet) jobWait() time.Duration {
	if f.scheduler == "slurm" {
		return 2 * time.Minute
	}
	return 30 * time.Second
}
