package service_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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

func TestLoadConfigFromEnvTags(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "sqlite:" + t.TempDir() + "/n.db", "KAFKA_BROKERS": " k1:9092, k2:9092 ",
		"KAFKA_TLS_SERVER_NAME": "kafka", "AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/", "SMTP_ADDR": "127.0.0.1:1025",
		"AUTH_HS256_SECRET": "notification-config-test-secret-0123456789"}
	load := func(extra map[string]string) (service.Config, error) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	cfg, err := load(map[string]string{"SMTP_PASSWORD": "pw", "SMTP_STARTTLS": "required", "WEBHOOK_ALLOW_HTTP": "true",
		"WEBHOOK_RATE_PER_HOST": "2.5", "DELIVERY_MAX_ATTEMPTS": "4", "DELIVERY_BACKOFF_INITIAL": "2s", "DELIVERY_LEASE": "20s"})
	require.NoError(t, err)
	require.Equal(t, []string{"k1:9092", "k2:9092"}, cfg.Kafka.Brokers)
	require.Equal(t, "kafka", cfg.Kafka.TLS.ServerName)
	require.Equal(t, service.Name, cfg.Kafka.ClientID)
	require.Equal(t, "pw", cfg.SMTP.Password)
	require.EqualValues(t, "required", cfg.SMTP.StartTLS)
	require.True(t, cfg.Webhook.AllowHTTP)
	require.InDelta(t, 2.5, cfg.Webhook.RatePerHost, 0)
	require.Equal(t, 4, cfg.Dispatcher.Retry.MaxAttempts)
	require.Equal(t, 2*time.Second, cfg.Dispatcher.Retry.InitialBackoff)
	require.Equal(t, 20*time.Second, cfg.Dispatcher.Lease)

	for key, bad := range map[string]string{"DELIVERY_MAX_ATTEMPTS": "0", "DELIVERY_QUEUE_SIZE": "many", "SMTP_TIMEOUT": "-1s",
		"WEBHOOK_ALLOW_PRIVATE": "perhaps", "WEBHOOK_RATE_PER_HOST": "0"} {
		_, err := load(map[string]string{key: bad})
		require.ErrorContains(t, err, key+"=", "%s=%s", key, bad)
	}
	_, err = load(map[string]string{"KAFKA_BROKERS": " "})
	require.ErrorContains(t, err, service.EnvKafkaBrokers)
}

// WEBHOOK_OWNERS, WEBHOOK_SECRETS_DIR and WEBHOOK_CA_FILE are parsed through
// their env tags: a bad value is refused with its variable named.
func TestLoadConfigWebhookParsedByTags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600))
	load := func(extra map[string]string) (service.Config, error) {
		env := map[string]string{"DATABASE_URL": "sqlite:" + t.TempDir() + "/n.db", "KAFKA_BROKERS": "127.0.0.1:9092",
			"AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/", "SMTP_ADDR": "127.0.0.1:1025",
			"AUTH_HS256_SECRET": "notification-config-test-secret-0123456789"}
		for k, v := range extra {
			env[k] = v
		}
		return service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	for _, tt := range []struct{ key, bad, want string }{
		{service.EnvWebhookOwners, `{"ops-hook": "ada"}`, `WEBHOOK_OWNERS="{\"ops-hook\": \"ada\"}": want a JSON object of reference to list of users`},
		{service.EnvWebhookOwners, `ops-hook=ada`, `WEBHOOK_OWNERS="ops-hook=ada": want a JSON object`},
		{service.EnvWebhookCAFile, notPEM, `WEBHOOK_CA_FILE="` + notPEM + `": no PEM certificates could be read`},
		{service.EnvWebhookCAFile, filepath.Join(dir, "missing.pem"), `WEBHOOK_CA_FILE="` + filepath.Join(dir, "missing.pem") + `": no PEM`},
	} {
		_, err := load(map[string]string{tt.key: tt.bad})
		require.ErrorContains(t, err, tt.want)
	}

	cfg, err := load(map[string]string{service.EnvWebhookOwners: " null ", service.EnvWebhookSecretsDir: " " + dir + " "})
	require.NoError(t, err)
	require.Nil(t, cfg.WebhookSecrets.Owners, "null: as unset")
	require.Equal(t, dir, cfg.WebhookSecrets.Dir)
	require.Nil(t, cfg.Webhook.TLS, "no CA file: the system's roots")

	cfg, err = load(map[string]string{service.EnvWebhookOwners: "  "})
	require.NoError(t, err)
	require.Nil(t, cfg.WebhookSecrets.Owners, "blank is unset")

	cfg, err = load(map[string]string{service.EnvWebhookOwners: "{}", "WEBHOOK_SECRET_OPS_HOOK": "s3cret"})
	require.NoError(t, err)
	require.True(t, cfg.WebhookSecrets.Exists("ops-hook"))
	require.NotNil(t, cfg.WebhookSecrets.Owners, "{}: a reference belongs to no one")
	require.False(t, cfg.WebhookSecrets.UsableBy("ops-hook", "ada"))
}
