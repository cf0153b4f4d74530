package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

const testSecret = "chctl-test-secret-0123456789abcdef0123"

// startOrchestrator runs the real job-orchestrator binary with the local
// scheduler on the real Kafka (its own topic prefix) and returns its gRPC
// address.
func startOrchestrator(t *testing.T) string {
	t.Helper()
	p := servicetest.RunBinary(t, "../../../services/job-orchestrator/cmd/job-orchestrator", map[string]string{
		"KAFKA_BROKERS":              strings.Join(testinfra.KafkaBrokers(t), ","),
		"AMQP_URL":                   "",
		"STATE_DIRECTORY":            servicetest.StateDir(t),
		"DATABASE_URL":               "",
		"SCHEDULER":                  "local",
		"AUTH_HS256_SECRET":          testSecret,
		"PAGE_TOKEN_KEY":             "chctl-test-page-token-key-0123456",
		"RECONCILE_INTERVAL":         "200ms",
		"ORCHESTRATOR_TOPIC_PREFIX":  kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "chctltest-"),
		"ORCHESTRATOR_ENSURE_TOPICS": "true",
		"OTEL_SDK_DISABLED":          "true",
	})
	return p.GRPCAddr
}

// chctl runs one command and returns its output.
func chctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, args, &out, &errOut)
	return out.String() + errOut.String(), err
}

var jobIDRe = regexp.MustCompile(`(?m)^job ([0-9a-f-]{36}) `)

func TestToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantErr  string
		wantRole string
	}{
		{name: "user token", args: []string{"token", "-secret", testSecret, "-user", "alice"}},
		{name: "admin token", args: []string{"token", "-secret", testSecret, "-user", "root", "-admin"}, wantRole: "admin"},
		{name: "no user", args: []string{"token", "-secret", testSecret}, wantErr: "-user is required"},
		{name: "short secret", args: []string{"token", "-secret", "short", "-user", "alice"}, wantErr: "at least 32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := chctl(t, tt.args...)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			parts := strings.Split(strings.TrimSpace(out), ".")
			require.Len(t, parts, 3)
			body, err := base64.RawURLEncoding.DecodeString(parts[1])
			require.NoError(t, err)
			var claims map[string]any
			require.NoError(t, json.Unmarshal(body, &claims))
			require.NotEmpty(t, claims["sub"])
			require.Greater(t, claims["exp"], claims["iat"])
			if tt.wantRole != "" {
				require.Equal(t, tt.wantRole, claims["role"])
			} else {
				require.NotContains(t, claims, "role")
			}
		})
	}
}

func TestJobsUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "missing subcommand", args: []string{"jobs"}, wantErr: "missing subcommand"},
		{name: "unknown subcommand", args: []string{"jobs", "frob"}, wantErr: `unknown subcommand "frob"`},
		{name: "no token", args: []string{"jobs", "get", "x", "-token", ""}, wantErr: "no token"},
		{name: "get without id", args: []string{"jobs", "get", "-token", "t"}, wantErr: "exactly one job id"},
		{name: "unknown agent", args: []string{"jobs", "submit", "-agent", "nope", "-token", "t"}, wantErr: `unknown agent "nope"`},
		{name: "unknown system", args: []string{"jobs", "submit", "-agent", "custom", "-system", "x", "-token", "t"}, wantErr: `unknown system "x"`},
		{name: "script and command", args: []string{"jobs", "submit", "-agent", "custom", "-system", "vista", "-script", "f", "-command", "true", "-token", "t"}, wantErr: "not both"},
		{name: "unknown status", args: []string{"jobs", "list", "-status", "sleeping", "-token", "t"}, wantErr: `unknown status "sleeping"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := chctl(t, tt.args...)
			require.ErrorContains(t, err, tt.wantErr)
			var usage usageError
			require.ErrorAs(t, err, &usage)
		})
	}
}

// TestJobsAgainstOrchestrator drives the real orchestrator binary through
// every jobs subcommand.
func TestJobsAgainstOrchestrator(t *testing.T) {
	t.Parallel()
	addr := startOrchestrator(t)
	tok, err := chctl(t, "token", "-secret", testSecret, "-user", "chctl-user")
	require.NoError(t, err)
	conn := []string{"-addr", addr, "-token", strings.TrimSpace(tok)}
	with := func(args ...string) []string { return append(args, conn...) }

	t.Run("unauthenticated", func(t *testing.T) {
		_, err := chctl(t, "jobs", "list", "-addr", addr, "-token", "not-a-jwt")
		require.ErrorContains(t, err, "Unauthenticated")
	})

	t.Run("invalid spec prints each field violation", func(t *testing.T) {
		_, err := chctl(t, with("jobs", "submit", "-name", "bad name!", "-agent", "AlphaCal", "-system", "frontera",
			"-partition", "no-such-partition")...)
		require.ErrorContains(t, err, "InvalidArgument")
		require.ErrorContains(t, err, "\n  spec.name: ")
		require.ErrorContains(t, err, "\n  spec.dataset_id: ")
	})

	t.Run("submit, watch to completion, get, list", func(t *testing.T) {
		out, err := chctl(t, with("jobs", "submit", "-name", "chctl-ok", "-agent", "custom", "-system", "frontera",
			"-partition", "development", "-command", "echo hello", "-walltime", "5m", "-idempotency-key", "chctl-ok-1")...)
		require.NoError(t, err, out)
		m := jobIDRe.FindStringSubmatch(out)
		require.NotNil(t, m, out)
		id := m[1]
		require.Contains(t, out, "SUBMITTED")
		require.Regexp(t, `cost estimate  \$[0-9.]+ \(0\.08 node-hours`, out)
		require.Regexp(t, `trace id       [0-9a-f]{32}`, out)

		again, err := chctl(t, with("jobs", "submit", "-name", "chctl-ok", "-agent", "custom", "-system", "frontera",
			"-partition", "development", "-command", "echo hello", "-walltime", "5m", "-idempotency-key", "chctl-ok-1")...)
		require.NoError(t, err, again)
		require.Contains(t, again, "job "+id)
		require.Contains(t, again, "the existing job")

		watch, err := chctl(t, with("jobs", "watch", id, "-replay")...)
		require.NoError(t, err, watch)
		require.Regexp(t, `(?s)#1\s+-\s+-> SUBMITTED.*#2\s+SUBMITTED\s+-> QUEUED.*#3\s+QUEUED\s+-> RUNNING.*#4\s+RUNNING\s+-> COMPLETED`, watch)

		got, err := chctl(t, with("jobs", "get", id)...)
		require.NoError(t, err, got)
		require.Regexp(t, `status\s+COMPLETED`, got)
		require.Regexp(t, `exit code\s+0`, got)

		asJSON, err := chctl(t, with("jobs", "get", id, "-json")...)
		require.NoError(t, err, asJSON)
		require.Regexp(t, `"status":\s+"JOB_STATUS_COMPLETED"`, asJSON)

		list, err := chctl(t, with("jobs", "list", "-status", "completed")...)
		require.NoError(t, err, list)
		require.Contains(t, list, id)
		require.Contains(t, list, "chctl-ok")
		none, err := chctl(t, with("jobs", "list", "-status", "running,queued")...)
		require.NoError(t, err, none)
		require.NotContains(t, none, id)
	})

	t.Run("cancel a running job", func(t *testing.T) {
		out, err := chctl(t, with("jobs", "submit", "-name", "chctl-sleep", "-agent", "custom", "-system", "vista",
			"-partition", "gg", "-command", "sleep 120")...)
		require.NoError(t, err, out)
		id := jobIDRe.FindStringSubmatch(out)[1]
		require.Eventually(t, func() bool {
			got, err := chctl(t, with("jobs", "get", id)...)
			return err == nil && strings.Contains(got, "RUNNING")
		}, 30*time.Second, 100*time.Millisecond)
		cancelled, err := chctl(t, with("jobs", "cancel", id, "-reason", "no longer needed")...)
		require.NoError(t, err, cancelled)
		require.Contains(t, cancelled, "CANCELLED")
		watch, err := chctl(t, with("jobs", "watch", id, "-replay")...)
		require.NoError(t, err, watch)
		require.Regexp(t, `RUNNING\s+-> CANCELLED\s+\(no longer needed\)`, watch)

		_, err = chctl(t, with("jobs", "cancel", "00000000-0000-0000-0000-000000000000")...)
		require.ErrorContains(t, err, "NotFound")
	})

	t.Run("failing command", func(t *testing.T) {
		out, err := chctl(t, with("jobs", "submit", "-name", "chctl-fail", "-agent", "custom", "-system", "stampede3",
			"-partition", "skx-dev", "-command", "false")...)
		require.NoError(t, err, out)
		id := jobIDRe.FindStringSubmatch(out)[1]
		watch, err := chctl(t, with("jobs", "watch", id, "-replay")...)
		require.NoError(t, err, watch)
		require.Contains(t, watch, "RUNNING   -> FAILED")
		got, err := chctl(t, with("jobs", "get", id)...)
		require.NoError(t, err, got)
		require.Regexp(t, `exit code\s+1`, got)
		require.Contains(t, got, "NON_ZERO_EXIT")
	})
}

func TestPrintJobShowsWhyItWaits(t *testing.T) {
	t.Parallel()
	const detail = "QOSMaxJobsPerUserLimit: you have as many jobs running as your QOS allows; it starts when one of them ends"
	var out bytes.Buffer
	printJob(&out, &jobpb.Job{JobId: "j-1", Status: jobpb.JobStatus_JOB_STATUS_QUEUED, SchedulerJobId: "42", SchedulerDetail: detail})
	require.Regexp(t, `(?m)^waiting\s+`+regexp.QuoteMeta(detail)+`$`, out.String())

	out.Reset()
	printJob(&out, &jobpb.Job{JobId: "j-1", Status: jobpb.JobStatus_JOB_STATUS_RUNNING, SchedulerJobId: "42"})
	require.NotContains(t, out.String(), "waiting")
}
