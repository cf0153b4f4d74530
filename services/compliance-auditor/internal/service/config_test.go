package service_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/envconf"
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

// The checkpoint keys are read by the env tags of auditchain.KeyConfig
// through the service's lookup: trimmed, a key given twice is refused, and
// the startup line hides the key but shows where a key file is.
func TestLoadConfigKeys(t *testing.T) {
	t.Parallel()
	load := func(extra map[string]string) (service.Config, error) {
		env := map[string]string{"AUTH_DISABLED": "true"}
		for k, v := range extra {
			env[k] = v
		}
		return service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	const seed = "s3cretAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	c, err := load(map[string]string{"AUDIT_SIGNING_KEY": " " + seed + " ", "AUDIT_VERIFY_KEYS_FILE": " /etc/audit/old.pem ",
		"AUDIT_PUBLIC_KEY_FILE": "/etc/audit/pub.pem"})
	require.NoError(t, err)
	require.Equal(t, auditchain.KeyConfig{PrivateKey: seed, PublicKeyFile: "/etc/audit/pub.pem", VerifyKeysFile: "/etc/audit/old.pem"}, c.Keys)
	line, err := json.Marshal(envconf.Redact(&c))
	require.NoError(t, err)
	require.NotContains(t, string(line), "s3cret")
	require.Contains(t, string(line), `"PublicKeyFile":"/etc/audit/pub.pem"`)

	_, err = load(map[string]string{"AUDIT_SIGNING_KEY": seed, "AUDIT_SIGNING_KEY_FILE": "/k.pem"})
	require.ErrorContains(t, err, "set only one of AUDIT_SIGNING_KEY and AUDIT_SIGNING_KEY_FILE")
	_, err = load(map[string]string{"AUDIT_PUBLIC_KEY": "x", "AUDIT_PUBLIC_KEY_FILE": "/p.pem"})
	require.ErrorContains(t, err, "set only one of AUDIT_PUBLIC_KEY and AUDIT_PUBLIC_KEY_FILE")
}
