package deploycheck_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/tools/deploycheck"
)

func TestDecodeIsStrict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{name: "known fields", doc: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  K: v\n"},
		{name: "unknown field", doc: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndatta:\n  K: v\n", wantErr: "unknown field"},
		{name: "field of another type", doc: "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: a\nspec:\n  maxUnavailable: 1\n  replicas: 2\n", wantErr: "unknown field"},
		{name: "duplicate field", doc: "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n", wantErr: "already set"},
		{name: "unknown kind", doc: "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: a\n", wantErr: "no API type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := deploycheck.Decode([]byte(tc.doc))
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestReadServiceCode(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	tests := []struct {
		name      string
		service   string
		grpc      int
		reads     []string
		readsNone []string
	}{
		{name: "orchestrator", service: "job-orchestrator", grpc: 50051,
			reads:     []string{"SCHEDULER", "DATABASE_URL", "KAFKA_BROKERS", "KAFKA_REPLICATION_FACTOR", "GRPC_ADDR", "OTEL_EXPORTER_OTLP_ENDPOINT", "AUTH_HS256_SECRET", "AUTH_JWKS_FILE"},
			readsNone: []string{"AUDIT_SIGNING_KEY_FILE", "METRICS_GROUP"}},
		{name: "metrics literals", service: "metrics-consumer", grpc: 50052,
			reads: []string{"METRICS_TOPICS", "METRICS_GROUP", "KAFKA_TLS_CA_FILE", "AUTH_JWKS_URL"}, readsNone: []string{"SMTP_ADDR"}},
		{name: "webhook prefix", service: "notification-consumer", grpc: 50053,
			reads: []string{"WEBHOOK_SECRET_OPS_HOOK", "SMTP_PASSWORD", "AUTH_ISSUER"}, readsNone: []string{"WEBHOOK_SECRET_", "SCHEDULER"}},
		{name: "auditor keys", service: "compliance-auditor", grpc: 50054,
			reads: []string{"AUDIT_SIGNING_KEY_FILE", "AUDIT_CONSUMER_GROUP", "AUTH_HS256_SECRET", "AUTH_DISABLED"}, readsNone: []string{"SCHEDULER"}},
		{name: "monitor", service: "health-monitor", grpc: 50055,
			reads: []string{"HEALTH_SERVICES", "DATABASE_URLS"}, readsNone: []string{"DATABASE_URL", "AUTH_HS256_SECRET", "AUTH_JWKS_FILE"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, err := deploycheck.ReadServiceCode(root, tc.service)
			require.NoError(t, err)
			require.Equal(t, tc.grpc, code.GRPCPort)
			require.Equal(t, tc.grpc-50051+8081, code.HTTPPort)
			for _, k := range tc.reads {
				require.True(t, code.Reads(k), k)
			}
			for _, k := range tc.readsNone {
				require.False(t, code.Reads(k), k)
			}
		})
	}
}
