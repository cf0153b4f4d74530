package service_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/service"
)

func TestLoadConfigWebhookOwners(t *testing.T) {
	t.Parallel()
	load := func(extra map[string]string) (service.Config, error) {
		env := map[string]string{"DATABASE_URL": "sqlite:" + t.TempDir() + "/n.db", "KAFKA_BROKERS": "127.0.0.1:9092",
			"AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/", "SMTP_ADDR": "127.0.0.1:1025",
			"AUTH_HS256_SECRET": "notification-config-test-secret-0123456789", "WEBHOOK_SECRET_OPS_HOOK": "s3cret"}
		for k, v := range extra {
			env[k] = v
		}
		return service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	cfg, err := load(nil)
	require.NoError(t, err)
	require.Nil(t, cfg.WebhookSecrets.Owners)
	require.True(t, cfg.WebhookSecrets.UsableBy("ops-hook", "anyone"), "no owners: shared")

	cfg, err = load(map[string]string{service.EnvWebhookOwners: `{"ops-hook": ["ada"]}`})
	require.NoError(t, err)
	require.True(t, cfg.WebhookSecrets.UsableBy("ops-hook", "ada"))
	require.False(t, cfg.WebhookSecrets.UsableBy("ops-hook", "bob"))

	_, err = load(map[string]string{service.EnvWebhookOwners: `["ada"]`})
	require.ErrorContains(t, err, service.EnvWebhookOwners)
}

func TestLoadConfigDeliveryLease(t *testing.T) {
	t.Parallel()
	load := func(lease string) error {
		env := map[string]string{"DATABASE_URL": "sqlite:" + t.TempDir() + "/n.db", "KAFKA_BROKERS": "127.0.0.1:9092",
			"AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/", "SMTP_ADDR": "127.0.0.1:1025",
			"AUTH_HS256_SECRET": "notification-config-test-secret-0123456789", service.EnvLease: lease}
		_, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		return err
	}
	require.NoError(t, load("15s"), "shorter than the send timeouts: it is renewed while sending")
	require.ErrorContains(t, load("2s"), service.EnvLease)
}
