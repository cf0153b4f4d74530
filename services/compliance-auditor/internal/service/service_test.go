package service_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
)

// authSecret is the HS256 secret the auditor under test verifies callers' JWTs with.
const authSecret = "compliance-auditor-test-secret-0123456789"

// noKafkaEnv runs the auditor on a fresh SQLite trail without consuming.
func noKafkaEnv(t *testing.T) map[string]string {
	return map[string]string{
		"DATABASE_URL":      "sqlite:" + filepath.Join(t.TempDir(), "audit.db"),
		"KAFKA_BROKERS":     "",
		"AUTH_HS256_SECRET": authSecret,
	}
}

// bearer is a call context with a JWT of sub signed with secret.
func bearer(t *testing.T, secret, sub string, admin bool) context.Context {
	t.Helper()
	tok, err := auth.NewHS256Token(secret, sub, admin, time.Hour)
	require.NoError(t, err)
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func TestBinaryServesAndShutsDownOnSIGTERM(t *testing.T) {
	t.Parallel()
	servicetest.RequireLifecycle(t, "../../cmd/compliance-auditor", noKafkaEnv(t))
}

func TestAuditServiceAdmitsAdminsOnly(t *testing.T) {
	t.Parallel()
	p := servicetest.RunBinary(t, "../../cmd/compliance-auditor", noKafkaEnv(t))
	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c := auditpb.NewAuditServiceClient(conn)
	tests := []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{name: "no token", ctx: context.Background(), want: codes.Unauthenticated},
		{name: "token of another secret", ctx: bearer(t, "another-secret-another-secret-0123456789", "root", true), want: codes.Unauthenticated},
		{name: "user", ctx: bearer(t, authSecret, "ada", false), want: codes.PermissionDenied},
		{name: "admin", ctx: bearer(t, authSecret, "root", true), want: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Verify(tt.ctx, &auditpb.VerifyRequest{})
			require.Equal(t, tt.want, status.Code(err), "%v", err)
			_, err = c.Query(tt.ctx, &auditpb.QueryRequest{})
			require.Equal(t, tt.want, status.Code(err), "%v", err)
		})
	}
	p.Terminate(t)
}

// TestStartNeedsAuthConfig: without any AUTH_* key source the service refuses
// to start; AUTH_DISABLED=true starts it with a loud warning.
func TestStartNeedsAuthConfig(t *testing.T) {
	t.Parallel()
	bin := servicetest.Build(t, "../../cmd/compliance-auditor")
	env := noKafkaEnv(t)
	env["AUTH_HS256_SECRET"] = ""
	env["GRPC_ADDR"], env["HTTP_ADDR"] = "127.0.0.1:0", "127.0.0.1:0"
	for _, k := range []string{"AUTH_HS256_SECRET_FILE", "AUTH_JWKS_FILE", "AUTH_JWKS_URL", "AUTH_DISABLED"} {
		env[k] = ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "started without authentication:\n%s", out)
	require.Contains(t, string(out), "AUTH_DISABLED=true")

	env["AUTH_DISABLED"] = "true"
	p := servicetest.RunBinary(t, "../../cmd/compliance-auditor", env)
	require.Contains(t, p.Output(), "AUTHENTICATION IS DISABLED")
	p.Terminate(t)
}
