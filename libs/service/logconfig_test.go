package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// The startup line carries the effective configuration, never a secret.
func TestLogConfigRedactsSecrets(t *testing.T) {
	t.Parallel()
	rt, err := service.LoadConfig(service.DefaultConfig("svc", ":50051", ":8080"), envLookup(map[string]string{"LOG_LEVEL": "debug", "SHUTDOWN_DRAIN": "2s"}))
	require.NoError(t, err)
	own := struct {
		DatabaseURL  string
		AMQPURL      string
		Kafka        kafkabus.Connection
		SlurmToken   telemetry.Secret
		PageTokenKey []byte
		SMTPPassword string
		TokenFile    string
	}{
		DatabaseURL:  "postgres://fleet:db-pass-1@db:5432/fleet",
		AMQPURL:      "amqps://guest:amqp-pass-2@mq:5671/",
		Kafka:        kafkabus.Connection{Brokers: []string{"k1:9092"}, TLS: kafkabus.TLSConfig{CAFile: "/etc/ca.pem"}},
		SlurmToken:   "slurm-token-3",
		PageTokenKey: []byte("page-key-4"),
		SMTPPassword: "smtp-pass-5",
		TokenFile:    "/run/secrets/token",
	}
	var buf bytes.Buffer
	service.LogConfig(context.Background(), slog.New(slog.NewJSONHandler(&buf, nil)), rt, own)
	line := buf.String()
	for _, secret := range []string{"db-pass-1", "amqp-pass-2", "slurm-token-3", "page-key-4", "smtp-pass-5"} {
		require.NotContains(t, line, secret)
	}
	var entry struct {
		Msg     string         `json:"msg"`
		Runtime map[string]any `json:"runtime"`
		Service map[string]any `json:"service"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &entry), line)
	require.Equal(t, "effective configuration", entry.Msg)
	require.Equal(t, "svc", entry.Runtime["ServiceName"])
	require.Equal(t, "2s", entry.Runtime["ShutdownDrain"])
	require.Equal(t, "DEBUG", entry.Runtime["LogLevel"])
	require.Equal(t, "postgres://fleet:xxxxx@db:5432/fleet", entry.Service["DatabaseURL"])
	require.Equal(t, "amqps://guest:xxxxx@mq:5671/", entry.Service["AMQPURL"])
	require.Equal(t, "/run/secrets/token", entry.Service["TokenFile"])
	require.Equal(t, []any{"k1:9092"}, entry.Service["Kafka"].(map[string]any)["Brokers"])
}
