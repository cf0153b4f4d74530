package service

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/envconf"
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
	DatabaseURL string `env:"DATABASE_URL"`
	// Brokers is the shared connection block (KAFKA_BROKERS, KAFKA_CLIENT_ID,
	// KAFKA_VERSION, KAFKA_TLS_*, AMQP_URL).
	svcruntime.Brokers
	ConsumerGroup string `env:"KAFKA_CONSUMER_GROUP"`
	// LifecycleTopic is consumed; default job-lifecycle (another name serves
	// isolated tests and replays of a copy).
	LifecycleTopic  string `env:"KAFKA_LIFECYCLE_TOPIC"`
	SMTP            email.Config
	Webhook         webhook.Config
	WebhookSecrets  webhook.Secrets
	Dispatcher      app.DispatcherConfig
	SubjectTemplate string `env:"NOTIFY_SUBJECT_TEMPLATE"`
	BodyTemplate    string `env:"NOTIFY_BODY_TEMPLATE"`
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
	if err := envconf.Load(&c, lookup); err != nil {
		errs = append(errs, err)
	}
	// The adapters' and the dispatcher's settings, bound to their variables.
	nested := struct {
		SMTPAddr       *string        `env:"SMTP_ADDR"`
		SMTPFrom       *string        `env:"SMTP_FROM"`
		SMTPStartTLS   *email.TLSMode `env:"SMTP_STARTTLS"`
		SMTPUsername   *string        `env:"SMTP_USERNAME"`
		SMTPPassword   *string        `env:"SMTP_PASSWORD"`
		SMTPTimeout    *time.Duration `env:"SMTP_TIMEOUT"`
		AllowHTTP      *bool          `env:"WEBHOOK_ALLOW_HTTP"`
		AllowPrivate   *bool          `env:"WEBHOOK_ALLOW_PRIVATE"`
		WebhookTimeout *time.Duration `env:"WEBHOOK_TIMEOUT"`
		WebhookRate    *float64       `env:"WEBHOOK_RATE_PER_HOST"`
		WebhookBurst   *int           `env:"WEBHOOK_BURST"`
		MaxAttempts    *int           `env:"DELIVERY_MAX_ATTEMPTS"`
		BackoffInitial *time.Duration `env:"DELIVERY_BACKOFF_INITIAL"`
		BackoffMax     *time.Duration `env:"DELIVERY_BACKOFF_MAX"`
		Lease          *time.Duration `env:"DELIVERY_LEASE"`
		QueueSize      *int           `env:"DELIVERY_QUEUE_SIZE"`
		PerTarget      *int           `env:"DELIVERY_PER_TARGET_CONCURRENCY"`
		PollInterval   *time.Duration `env:"DELIVERY_POLL_INTERVAL"`
		SecretsDir     *string        `env:"WEBHOOK_SECRETS_DIR"`
		Owners         *webhookOwners `env:"WEBHOOK_OWNERS"`
		CA             certPool       `env:"WEBHOOK_CA_FILE"`
	}{
		SMTPAddr: &c.SMTP.Addr, SMTPFrom: &c.SMTP.From, SMTPStartTLS: &c.SMTP.StartTLS, SMTPUsername: &c.SMTP.Username,
		SMTPPassword: &c.SMTP.Password, SMTPTimeout: &c.SMTP.SendTimeout,
		AllowHTTP: &c.Webhook.AllowHTTP, AllowPrivate: &c.Webhook.AllowPrivateNetworks, WebhookTimeout: &c.Webhook.Timeout,
		WebhookRate: &c.Webhook.RatePerHost, WebhookBurst: &c.Webhook.Burst,
		MaxAttempts: &c.Dispatcher.Retry.MaxAttempts, BackoffInitial: &c.Dispatcher.Retry.InitialBackoff,
		BackoffMax: &c.Dispatcher.Retry.MaxBackoff, Lease: &c.Dispatcher.Lease, QueueSize: &c.Dispatcher.QueueSize,
		PerTarget: &c.Dispatcher.PerTargetConcurrency, PollInterval: &c.Dispatcher.PollInterval,
		SecretsDir: &c.WebhookSecrets.Dir, Owners: (*webhookOwners)(&c.WebhookSecrets.Owners),
	}
	if err := envconf.Load(&nested, lookup); err != nil {
		errs = append(errs, err)
	}
	get := func(key string) string {
		v, _ := lookup(key)
		return strings.TrimSpace(v)
	}
	positive := func(key, what string, ok bool) {
		if v := get(key); v != "" && !ok {
			errs = append(errs, fmt.Errorf("%s=%q: not a positive %s", key, v, what))
		}
	}
	for key, d := range map[string]time.Duration{EnvSMTPTimeout: c.SMTP.SendTimeout, EnvWebhookTimeout: c.Webhook.Timeout,
		EnvBackoffInitial: c.Dispatcher.Retry.InitialBackoff, EnvBackoffMax: c.Dispatcher.Retry.MaxBackoff,
		EnvLease: c.Dispatcher.Lease, EnvPollInterval: c.Dispatcher.PollInterval} {
		positive(key, "duration", d > 0)
	}
	for key, n := range map[string]int{EnvWebhookBurst: c.Webhook.Burst, EnvMaxAttempts: c.Dispatcher.Retry.MaxAttempts,
		EnvQueueSize: c.Dispatcher.QueueSize, EnvPerTarget: c.Dispatcher.PerTargetConcurrency} {
		positive(key, "integer", n > 0)
	}
	positive(EnvWebhookRate, "number", c.Webhook.RatePerHost > 0)
	if c.Kafka.ClientID == "" {
		c.Kafka.ClientID = Name
	}
	if nested.CA.pool != nil {
		c.Webhook.TLS = &tls.Config{RootCAs: nested.CA.pool, MinVersion: tls.VersionTLS12}
	}
	c.WebhookSecrets.Lookup, c.WebhookSecrets.EnvPrefix = lookup, WebhookSecretEnvPrefix
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

// webhookOwners is WEBHOOK_OWNERS: a JSON object from each webhook secret
// reference to the users who may sign with it.
type webhookOwners map[string][]string

// UnmarshalText parses the JSON object; null leaves no owners, as unset.
func (o *webhookOwners) UnmarshalText(text []byte) error {
	owners := map[string][]string{}
	if err := json.Unmarshal(text, &owners); err != nil {
		return fmt.Errorf("want a JSON object of reference to list of users: %w", err)
	}
	*o = owners
	return nil
}

// certPool is WEBHOOK_CA_FILE: the PEM certificates of the file it names,
// trusted by the webhook client instead of the system's.
type certPool struct{ pool *x509.CertPool }

// UnmarshalText reads the file named by text.
func (p *certPool) UnmarshalText(text []byte) error {
	pem, err := os.ReadFile(string(text))
	pool := x509.NewCertPool()
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		return errors.New("no PEM certificates could be read")
	}
	p.pool = pool
	return nil
}

// Validate reports what cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, fmt.Errorf("%s is empty", EnvDatabaseURL))
	}
	if len(c.Kafka.Brokers) == 0 {
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
