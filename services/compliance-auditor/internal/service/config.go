package service

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/envconf"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
)

// Environment variables of the compliance-auditor (besides the runtime's, the
// auditchain key variables AUDIT_SIGNING_KEY[_FILE], AUDIT_PUBLIC_KEY[_FILE],
// AUDIT_VERIFY_KEYS[_FILE] (the public keys of earlier signing keys) and the
// AUTH_* variables read by auth.LoadConfig).
const (
	EnvDatabaseURL        = "DATABASE_URL"
	EnvKafkaBrokers       = "KAFKA_BROKERS"
	EnvConsumerGroup      = "AUDIT_CONSUMER_GROUP"
	EnvTopics             = "AUDIT_TOPICS"
	EnvAlertTopic         = "AUDIT_ALERT_TOPIC"
	EnvBatchSize          = "AUDIT_BATCH_SIZE"
	EnvCheckpointInterval = "AUDIT_CHECKPOINT_INTERVAL"
	EnvCheckpointRecords  = "AUDIT_CHECKPOINT_RECORDS"
	EnvRetention          = "AUDIT_RETENTION"
	EnvRetentionInterval  = "AUDIT_RETENTION_INTERVAL"
)

// Config is the compliance-auditor's own configuration.
type Config struct {
	// DatabaseURL is sqlite:<path> (default sqlite:compliance-auditor.db) or postgres://…
	DatabaseURL string `env:"DATABASE_URL"`
	// Kafka is the shared connection block (KAFKA_BROKERS, KAFKA_CLIENT_ID,
	// KAFKA_VERSION, KAFKA_TLS_*); without brokers the service serves the
	// stored trail but consumes nothing.
	Kafka kafkabus.Connection
	// ConsumerGroup is the Kafka consumer group; default "compliance-auditor".
	ConsumerGroup string `env:"AUDIT_CONSUMER_GROUP"`
	// Topics are consumed; default audit-trail and job-lifecycle.
	Topics []string `env:"AUDIT_TOPICS"`
	// AlertTopic receives gap alerts; default system-health.
	AlertTopic string `env:"AUDIT_ALERT_TOPIC"`
	// BatchSize is the most messages appended in one transaction; default 500.
	BatchSize int `env:"AUDIT_BATCH_SIZE"`
	// CheckpointInterval and CheckpointRecords: a checkpoint is signed every
	// CheckpointInterval (default 30s) and whenever CheckpointRecords records
	// (default 10000) were appended since the last one.
	CheckpointInterval time.Duration `env:"AUDIT_CHECKPOINT_INTERVAL"`
	CheckpointRecords  int           `env:"AUDIT_CHECKPOINT_RECORDS"`
	// Retention is how long records are kept (default 90 days, "2160h");
	// RetentionInterval is how often retention runs (default 1h).
	Retention         time.Duration `env:"AUDIT_RETENTION"`
	RetentionInterval time.Duration `env:"AUDIT_RETENTION_INTERVAL"`
	// Keys says where the checkpoint signing key comes from (AUDIT_SIGNING_KEY[_FILE],
	// AUDIT_PUBLIC_KEY[_FILE], AUDIT_VERIFY_KEYS[_FILE], by its env tags).
	Keys auditchain.KeyConfig
	// Auth verifies the callers' bearer JWTs (AUTH_*); the AuditService
	// admits admins only.
	Auth auth.Config
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		DatabaseURL:        "sqlite:compliance-auditor.db",
		ConsumerGroup:      Name,
		Topics:             []string{events.TopicAuditTrail, events.TopicJobLifecycle},
		AlertTopic:         events.TopicSystemHealth,
		BatchSize:          500,
		CheckpointInterval: 30 * time.Second,
		CheckpointRecords:  10000,
		Retention:          90 * 24 * time.Hour,
		RetentionInterval:  time.Hour,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.DatabaseURL == "":
		return fmt.Errorf("%s is empty", EnvDatabaseURL)
	case c.ConsumerGroup == "":
		return fmt.Errorf("%s is empty", EnvConsumerGroup)
	case len(c.Topics) == 0:
		return fmt.Errorf("%s names no topic", EnvTopics)
	case c.AlertTopic == "":
		return fmt.Errorf("%s is empty", EnvAlertTopic)
	case c.BatchSize < 1 || c.CheckpointRecords < 1:
		return errors.New("batch size and checkpoint records must be positive")
	case c.CheckpointInterval <= 0 || c.Retention <= 0 || c.RetentionInterval <= 0:
		return errors.New("checkpoint interval, retention and retention interval must be positive")
	}
	if err := c.Keys.Validate(); err != nil {
		return err
	}
	return c.Auth.Validate()
}

// LoadConfig reads the configuration through lookup over the defaults.
func LoadConfig(lookup svcruntime.LookupFunc) (Config, error) {
	c := DefaultConfig()
	var errs []error
	get := func(key string) string {
		v, _ := lookup(key)
		return strings.TrimSpace(v)
	}
	if err := envconf.Load(&c, lookup); err != nil {
		errs = append(errs, err)
	}
	positive := func(key, what string, ok bool) {
		if v := get(key); v != "" && !ok {
			errs = append(errs, fmt.Errorf("%s=%q: not a positive %s", key, v, what))
		}
	}
	positive(EnvBatchSize, "integer", c.BatchSize > 0)
	positive(EnvCheckpointRecords, "integer", c.CheckpointRecords > 0)
	positive(EnvCheckpointInterval, "duration", c.CheckpointInterval > 0)
	positive(EnvRetention, "duration", c.Retention > 0)
	positive(EnvRetentionInterval, "duration", c.RetentionInterval > 0)
	if c.Kafka.ClientID == "" {
		c.Kafka.ClientID = Name
	}
	authCfg, err := auth.LoadConfig(lookup)
	if err != nil {
		errs = append(errs, err)
	}
	c.Auth = authCfg
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}
