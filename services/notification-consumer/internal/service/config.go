package service

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/events"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/email"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/webhook"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/app"
)

// Environment variables of the notification-consumer (besides the runtime's,
// KAFKA_* read by kafkabus and AUTH_* read by auth.LoadConfig).
const (
	EnvDatabaseURL         = "DATABASE_URL"
	EnvKafkaBrokers        = "KAFKA_BROKERS"
	EnvConsumerGroup       = "KAFKA_CONSUMER_GROUP"
	EnvLifecycleTopic      = "KAFKA_LIFECYCLE_TOPIC"
	EnvAMQPURL             = "AMQP_URL"
	EnvSMTPAddr            = "SMTP_ADDR"
	EnvSMTPFrom            = "SMTP_FROM"
	EnvSMTPStartTLS        = "SMTP_STARTTLS"
	EnvSMTPUsername        = "SMTP_USERNAME"
	EnvSMTPPassword        = "SMTP_PASSWORD"
	EnvSMTPTimeout         = "SMTP_TIMEOUT"
	EnvWebhookAllowHTTP    = "WEBHOOK_ALLOW_HTTP"
	EnvWebhookAllowPrivate = "WEBHOOK_ALLOW_PRIVATE"
	EnvWebhookTimeout      = "WEBHOOK_TIMEOUT"
	EnvWebhookRate         = "WEBHOOK_RATE_PER_HOST"
	EnvWebhookBurst        = "WEBHOOK_BURST"
	EnvWebhookCAFile       = "WEBHOOK_CA_FILE"
	EnvWebhookSecretsDir   = "WEBHOOK_SECRETS_DIR"
	// EnvWebhookOwners is a JSON object from each webhook secret reference
	// to the users who may sign with it, e.g. {"ops-hook": ["alice"]}; a
	// reference it does not list belongs to no one. Unset, every user may
	// name every secret (a warning is logged at start).
	EnvWebhookOwners       = "WEBHOOK_OWNERS"
	EnvMaxAttempts         = "DELIVERY_MAX_ATTEMPTS"
	EnvBackoffInitial      = "DELIVERY_BACKOFF_INITIAL"
	EnvBackoffMax          = "DELIVERY_BACKOFF_MAX"
	EnvLease               = "DELIVERY_LEASE"
	EnvQueueSize           = "DELIVERY_QUEUE_SIZE"
	EnvPerTarget           = "DELIVERY_PER_TARGET_CONCURRENCY"
	EnvPollInterval        = "DELIVERY_POLL_INTERVAL"
	EnvSubjectTemplate     = "NOTIFY_SUBJECT_TEMPLATE"
	EnvBodyTemplate        = "NOTIFY_BODY_TEMPLATE"
	WebhookSecretEnvPrefix = "WEBHOOK_SECRET_"
)

// Config is the notification-consumer's own configuration.
type Config struct {
	DatabaseURL   string
	KafkaBrokers  []string
	ConsumerGroup string
	// LifecycleTopic is consumed; default job-lifecycle (another name serves
	// isolated tests and replays of a copy).
	LifecycleTopic  string
	AMQPURL         string
	SMTP            email.Config
	Webhook         webhook.Config
	WebhookSecrets  webhook.Secrets
	Dispatcher      app.DispatcherConfig
	SubjectTemplate string
	BodyTemplate    string
	// Auth verifies the callers' bearer JWTs (AUTH_*).
	Auth auth.Config
}

// DefaultConfig returns the defaults: an SQLite file in the working directory.
func DefaultConfig() Config {
	return Config{
		DatabaseURL:    "sqlite:notification-consumer.db",
		ConsumerGroup:  Name,
		LifecycleTopic: events.TopicJobLifecycle,
		SMTP:           email.DefaultConfig("", "fleet-notifications@localhost"),
		Webhook:        webhook.DefaultConfig(),
		Dispatcher:     app.DefaultDispatcherConfig(),
	}
}

// LoadConfig reads the environment through lookup over the defaults.
func LoadConfig(lookup svcruntime.LookupFunc) (Config, error) {
	c := DefaultConfig()
	var errs []error
	str := func(key string, dst *string) {
		if v, ok := lookup(key); ok && v != "" {
			*dst = v
		}
	}
	dur := func(key string, dst *time.Duration) {
		if v, ok := lookup(key); ok && v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q: not a positive duration", key, v))
				return
			}
			*dst = d
		}
	}
	integer := func(key string, dst *int) {
		if v, ok := lookup(key); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("%s=%q: not a positive integer", key, v))
				return
			}
			*dst = n
		}
	}
	str(EnvDatabaseURL, &c.DatabaseURL)
	if v, ok := lookup(EnvKafkaBrokers); ok {
		for b := range strings.SplitSeq(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				c.KafkaBrokers = append(c.KafkaBrokers, b)
			}
		}
	}
	str(EnvConsumerGroup, &c.ConsumerGroup)
	str(EnvLifecycleTopic, &c.LifecycleTopic)
	str(EnvAMQPURL, &c.AMQPURL)
	str(EnvSMTPAddr, &c.SMTP.Addr)
	str(EnvSMTPFrom, &c.SMTP.From)
	var mode string
	str(EnvSMTPStartTLS, &mode)
	if mode != "" {
		c.SMTP.StartTLS = email.TLSMode(mode)
	}
	str(EnvSMTPUsername, &c.SMTP.Username)
	str(EnvSMTPPassword, &c.SMTP.Password)
	dur(EnvSMTPTimeout, &c.SMTP.SendTimeout)
	if v, ok := lookup(EnvWebhookAllowHTTP); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a boolean", EnvWebhookAllowHTTP, v))
		}
		c.Webhook.AllowHTTP = b
	}
	if v, ok := lookup(EnvWebhookAllowPrivate); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a boolean", EnvWebhookAllowPrivate, v))
		}
		c.Webhook.AllowPrivateNetworks = b
	}
	dur(EnvWebhookTimeout, &c.Webhook.Timeout)
	if v, ok := lookup(EnvWebhookRate); ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: not a positive number", EnvWebhookRate, v))
		}
		c.Webhook.RatePerHost = f
	}
	integer(EnvWebhookBurst, &c.Webhook.Burst)
	var caFile string
	str(EnvWebhookCAFile, &caFile)
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			errs = append(errs, fmt.Errorf("%s=%q: no PEM certificates could be read", EnvWebhookCAFile, caFile))
		}
		c.Webhook.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c.WebhookSecrets = webhook.Secrets{Lookup: lookup, EnvPrefix: WebhookSecretEnvPrefix}
	str(EnvWebhookSecretsDir, &c.WebhookSecrets.Dir)
	if v, ok := lookup(EnvWebhookOwners); ok && strings.TrimSpace(v) != "" {
		owners := map[string][]string{}
		if err := json.Unmarshal([]byte(v), &owners); err != nil {
			errs = append(errs, fmt.Errorf("%s: want a JSON object of reference to list of users: %w", EnvWebhookOwners, err))
		}
		c.WebhookSecrets.Owners = owners
	}
	integer(EnvMaxAttempts, &c.Dispatcher.Retry.MaxAttempts)
	dur(EnvBackoffInitial, &c.Dispatcher.Retry.InitialBackoff)
	dur(EnvBackoffMax, &c.Dispatcher.Retry.MaxBackoff)
	dur(EnvLease, &c.Dispatcher.Lease)
	integer(EnvQueueSize, &c.Dispatcher.QueueSize)
	integer(EnvPerTarget, &c.Dispatcher.PerTargetConcurrency)
	dur(EnvPollInterval, &c.Dispatcher.PollInterval)
	str(EnvSubjectTemplate, &c.SubjectTemplate)
	str(EnvBodyTemplate, &c.BodyTemplate)
	authCfg, err := auth.LoadConfig(lookup)
	if err != nil {
		errs = append(errs, err)
	}
	c.Auth = authCfg
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// Validate reports what cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, fmt.Errorf("%s is empty", EnvDatabaseURL))
	}
	if len(c.KafkaBrokers) == 0 {
		errs = append(errs, fmt.Errorf("%s is required", EnvKafkaBrokers))
	}
	if c.AMQPURL == "" {
		errs = append(errs, fmt.Errorf("%s is required", EnvAMQPURL))
	}
	if c.SMTP.Addr == "" {
		errs = append(errs, fmt.Errorf("%s is required", EnvSMTPAddr))
	}
	if c.Dispatcher.Retry.MaxBackoff < c.Dispatcher.Retry.InitialBackoff {
		errs = append(errs, fmt.Errorf("%s must not be below %s", EnvBackoffMax, EnvBackoffInitial))
	}
	if err := c.Dispatcher.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	// The lease is renewed every third of it while a send runs, so it need
	// not outlast the send timeouts; it must leave the renewal time.
	if c.Dispatcher.Lease < 3*time.Second {
		errs = append(errs, fmt.Errorf("%s (%s) must be at least 3s: it is renewed every third of it while a delivery is sent", EnvLease, c.Dispatcher.Lease))
	}
	return errors.Join(errs...)
}
