package service_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/service"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c service.Config)
		wantErr string
	}{
		{name: "defaults", env: map[string]string{}, check: func(t *testing.T, c service.Config) {
			require.Equal(t, "sqlite:compliance-auditor.db", c.DatabaseURL)
			require.Equal(t, []string{"audit-trail", "job-lifecycle"}, c.Topics)
			require.Equal(t, 500, c.BatchSize)
			require.Equal(t, 90*24*time.Hour, c.Retention)
			require.Empty(t, c.Kafka.Brokers)
		}},
		{name: "overrides, trimmed; Kafka from the lookup", env: map[string]string{
			"DATABASE_URL": " postgres://db/audit ", "AUDIT_TOPICS": "a, ,b", "AUDIT_BATCH_SIZE": "7", "AUDIT_RETENTION": "24h",
			"KAFKA_BROKERS": "k1:9092,k2:9092", "KAFKA_TLS_CA_FILE": "/ca.pem"},
			check: func(t *testing.T, c service.Config) {
				require.Equal(t, "postgres://db/audit", c.DatabaseURL)
				require.Equal(t, []string{"a", "b"}, c.Topics)
				require.Equal(t, 7, c.BatchSize)
				require.Equal(t, 24*time.Hour, c.Retention)
				require.Equal(t, kafkabus.Connection{Brokers: []string{"k1:9092", "k2:9092"}, ClientID: service.Name,
					TLS: kafkabus.TLSConfig{CAFile: "/ca.pem"}}, c.Kafka)
			}},
		{name: "bad integer", env: map[string]string{"AUDIT_BATCH_SIZE": "lots"}, wantErr: `AUDIT_BATCH_SIZE="lots"`},
		{name: "zero integer", env: map[string]string{"AUDIT_CHECKPOINT_RECORDS": "0"}, wantErr: `AUDIT_CHECKPOINT_RECORDS="0": not a positive integer`},
		{name: "negative duration", env: map[string]string{"AUDIT_RETENTION": "-1h"}, wantErr: `AUDIT_RETENTION="-1h": not a positive duration`},
		{name: "bad duration", env: map[string]string{"AUDIT_RETENTION_INTERVAL": "hourly"}, wantErr: `AUDIT_RETENTION_INTERVAL="hourly"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"AUTH_DISABLED": "true"}
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}
