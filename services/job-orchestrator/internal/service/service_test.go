package service_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

const secret = "0123456789abcdef0123456789abcdef-test-secret"

// stateDir returns a state directory the isolated local backend accepts.
func stateDir(t *testing.T) string { return servicetest.StateDir(t) }

// env returns the environment of an orchestrator on the real brokers with
// its own state directory and topics.
func env(t *testing.T, prefix, stateDir string) map[string]string {
	t.Helper()
	return map[string]string{
		"KAFKA_BROKERS":              strings.Join(testinfra.KafkaBrokers(t), ","),
		"AMQP_URL":                   testinfra.AMQPURL(t),
		"STATE_DIRECTORY":            stateDir,
		"DATABASE_URL":               "",
		"SCHEDULER":                  "local",
		"AUTH_HS256_SECRET":          secret,
		"PAGE_TOKEN_KEY":             "page-token-key-of-the-tests-0123",
		"RECONCILE_INTERVAL":         "200ms",
		"ORCHESTRATOR_TOPIC_PREFIX":  prefix,
		"ORCHESTRATOR_ENSURE_TOPICS": "true",
	}
}

func token(t *testing.T, user string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}).SignedString([]byte(secret))
	require.NoError(t, err)
	return s
}

func client(t *testing.T, addr string) jobpb.JobServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return jobpb.NewJobServiceClient(conn)
}

func authed(t *testing.T, user string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token(t, user))
}

func customSpec(script string, walltime time.Duration) *jobpb.JobSpec {
	return customSpecOn("development", script, walltime)
}

// customSpecOn is a one-core custom job on frontera's partition.
func customSpecOn(partition, script string, walltime time.Duration) *jobpb.JobSpec {
	return &jobpb.JobSpec{
		Name: "e2e", Agent: jobpb.Agent_AGENT_CUSTOM, DatasetId: "ds-1",
		TaccSystem: jobpb.TaccSystem_TACC_SYSTEM_FRONTERA, Partition: partition,
		Resources:  &jobpb.Resources{Nodes: 1, CoresPerNode: 1, Walltime: durationpb.New(walltime)},
		Allocation: "AST21001", Payload: &jobpb.JobSpec_Script{Script: script},
	}
}

func TestBinaryServesAndShutsDownOnSIGTERM(t *testing.T) {
	t.Parallel()
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	servicetest.RequireLifecycle(t, "../../cmd/job-orchestrator", env(t, prefix, stateDir(t)))
}

func TestUnauthenticatedCallsAreRefused(t *testing.T) {
	t.Parallel()
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", env(t, prefix, stateDir(t)))
	c := client(t, p.GRPCAddr)
	_, err := c.GetJob(context.Background(), &jobpb.GetJobRequest{JobId: "x"})
	require.ErrorContains(t, err, "Unauthenticated")
	st, err := p.HealthStatus(context.Background(), "")
	require.NoError(t, err, "health checks need no token")
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, st)
}

// The orchestrator logs its effective configuration at start, with none of
// its secrets: the JWT secret, the page token key, the broker password.
func TestStartupLogShowsConfigurationWithoutSecrets(t *testing.T) {
	t.Parallel()
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	vars := env(t, prefix, stateDir(t))
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", vars)
	out := p.Output()
	require.Contains(t, out, `"msg":"effective configuration"`)
	require.Contains(t, out, prefix, "the topic prefix is shown")
	require.NotContains(t, out, secret)
	require.NotContains(t, out, vars["PAGE_TOKEN_KEY"])
	if u, err := url.Parse(vars["AMQP_URL"]); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			require.NotContains(t, out, u.User.Username()+":"+pw+"@", "the broker password is redacted")
		}
	}
}

// Secrets given through files (AUTH_HS256_SECRET_FILE, PAGE_TOKEN_KEY_FILE)
// are used and, like those given directly, never reach the startup log.
func TestStartupLogHidesSecretsFromFiles(t *testing.T) {
	t.Parallel()
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	dir := stateDir(t)
	vars := env(t, prefix, dir)
	pageKey := vars["PAGE_TOKEN_KEY"]
	secretsDir := t.TempDir()
	for name, v := range map[string]string{"AUTH_HS256_SECRET": secret, "PAGE_TOKEN_KEY": pageKey} {
		f := filepath.Join(secretsDir, name)
		require.NoError(t, os.WriteFile(f, []byte(v+"\n"), 0o600))
		delete(vars, name)
		vars[name+"_FILE"] = f
	}
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", vars)
	out := p.Output()
	require.Contains(t, out, `"msg":"effective configuration"`)
	require.NotContains(t, out, secret)
	require.NotContains(t, out, pageKey)
	require.Contains(t, out, `"PageTokenKeyGenerated":false`, "the key from the file is used")
}

// The state directory and an SQLite database left readable by an earlier
// version are private once the orchestrator runs; the local backend logs
// whether it isolates jobs.
func TestStateDirectoryIsPrivate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		singleUser string
		dirMode    os.FileMode
		logLine    string
	}{
		{name: "isolated jobs below it: searchable, not readable", singleUser: "false", dirMode: 0o711, logLine: "local scheduler isolates jobs"},
		{name: "single-user mode: owner only", singleUser: "true", dirMode: 0o700, logLine: "unisolated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := stateDir(t)
			require.NoError(t, os.MkdirAll(state, 0o755))
			require.NoError(t, os.Chmod(state, 0o755))
			db := filepath.Join(state, "orchestrator.db")
			require.NoError(t, os.WriteFile(db, nil, 0o644))
			require.NoError(t, os.Chmod(db, 0o644))

			vars := env(t, relaytest.RandomName(t, "orchtest-")+"-", state)
			vars["LOCAL_SINGLE_USER"] = tc.singleUser
			p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", vars)

			fi, err := os.Stat(state)
			require.NoError(t, err)
			require.Equal(t, tc.dirMode, fi.Mode().Perm())
			entries, err := os.ReadDir(state)
			require.NoError(t, err)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), "orchestrator.db") {
					fi, err := e.Info()
					require.NoError(t, err)
					require.Zero(t, fi.Mode().Perm()&0o077, "%s has mode %04o", e.Name(), fi.Mode().Perm())
				}
			}
			require.Contains(t, p.Output(), tc.logLine)
		})
	}
}

// lifecycleOf returns the event types of job on the prefixed job-lifecycle
// topic, in partition order, and the decoded events.
func lifecycleOf(t *testing.T, prefix, topic, jobID string) []events.Event {
	t.Helper()
	codec, err := events.NewCodec()
	require.NoError(t, err)
	var out []events.Event
	for _, m := range relaytest.ReadTopic(t, testinfra.KafkaBrokers(t), prefix+topic) {
		if m.Key != jobID {
			continue
		}
		m.Topic = topic
		ev, err := codec.FromMessage(m)
		require.NoError(t, err)
		out = append(out, ev)
	}
	return out
}

func types(evs []events.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.EventType)
	}
	return out
}

func amqpTypes(msgs []*bus.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Header(bus.HeaderEventType))
	}
	return out
}

func containsID(evs []events.Event, id string) bool {
	for _, e := range evs {
		if e.EventID == id {
			return true
		}
	}
	return false
}

// TestCrashBetweenCommitAndPublish kills the orchestrator (SIGKILL, via the
// armed fault point) right after the submission's commit, before the relay
// publishes; after a restart every event is published exactly once.
func TestCrashBetweenCommitAndPublish(t *testing.T) {
	t.Parallel()
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	state := stateDir(t)
	user := relaytest.RandomName(t, "user-")
	ctx := authed(t, user)

	crashing := env(t, prefix, state)
	crashing["ORCHESTRATOR_FAULT"] = "after-commit-before-publish:job.submitted"
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", crashing)
	key := relaytest.RandomName(t, "k-")
	spec := customSpec("#!/bin/sh\necho hi\n", time.Minute)
	_, err := client(t, p.GRPCAddr).SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: key, Spec: spec})
	require.Error(t, err, "the process dies before answering")
	require.Eventually(t, func() bool {
		_, err := p.HealthStatus(context.Background(), "")
		return err != nil
	}, 10*time.Second, 50*time.Millisecond, "process is gone")
	require.Empty(t, relaytest.ReadTopic(t, testinfra.KafkaBrokers(t), prefix+events.TopicJobLifecycle), "nothing was published before the crash")

	p2 := servicetest.RunBinary(t, "../../cmd/job-orchestrator", env(t, prefix, state))
	c := client(t, p2.GRPCAddr)
	resp, err := c.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: key, Spec: spec})
	require.NoError(t, err, "the committed job survived the crash")
	id := resp.GetJob().GetJobId()
	require.Eventually(t, func() bool {
		j, err := c.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
		return err == nil && j.GetJob().GetStatus() == jobpb.JobStatus_JOB_STATUS_COMPLETED
	}, 60*time.Second, 50*time.Millisecond)
	want := []string{"job.submitted", "job.queued", "job.running", "job.completed"}
	var lc []events.Event
	require.Eventually(t, func() bool {
		lc = lifecycleOf(t, prefix, events.TopicJobLifecycle, id)
		return len(lc) >= len(want)
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, want, types(lc))
	seen := map[string]int{}
	for _, topic := range []string{events.TopicJobLifecycle, events.TopicAuditTrail, events.TopicJobMetrics} {
		for _, e := range lifecycleOf(t, prefix, topic, id) {
			seen[e.EventID]++
		}
	}
	require.Len(t, seen, 4+4+1, "lifecycle, audit and metrics events")
	for id, n := range seen {
		require.Equal(t, 1, n, "event %s published once", id)
	}
}
