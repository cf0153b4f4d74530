package service

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/events"
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
	DatabaseURL string
	// KafkaBrokers are the bootstrap brokers; without them the service serves
	// the stored trail but consumes nothing.
	KafkaBrokers []string
	// ConsumerGroup is the Kafka consumer group; default "compliance-auditor".
	ConsumerGroup string
	// Topics are consumed; default audit-trail and job-lifecycle.
	Topics []string
	// AlertTopic receives gap alerts; default system-health.
	AlertTopic string
	// BatchSize is the most messages appended in one transaction; default 500.
	BatchSize int
	// CheckpointInterval and CheckpointRecords: a checkpoint is signed every
	// CheckpointInterval (default 30s) and whenever CheckpointRecords records
	// (default 10000) were appended since the last one.
	CheckpointInterval time.Duration
	CheckpointRecords  int
	// Retention is how long records are kept (default 90 days, "2160h");
	// RetentionInterval is how often retention runs (default 1h).
	Retention         time.Duration
	RetentionInterval time.Duration
	// Keys says where the checkpoint signing key comes from.
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
	str := func(key string, dst *string) {
		if v := get(key); v != "" {
			*dst = v
		}
	}
	list := func(key string, dst *[]string) {
		if v := get(key); v != "" {
			var out []string
			for s := range strings.SplitSeq(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
			*dst = out
		}
	}
	dur := func(key string, dst *time.Duration) {
		if v := get(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q: not a positive duration", key, v))
				return
			}
			*dst = d
		}
	}
	integer := func(key string, dst *int) {
		if v := get(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("%s=%q: not a positive integer", key, v))
				return
			}
			*dst = n
		}
	}
	str(EnvDatabaseURL, &c.DatabaseURL)
	list(EnvKafkaBrokers, &c.KafkaBrokers)
	str(EnvConsumerGroup, &c.ConsumerGroup)
	list(EnvTopics, &c.Topics)
	str(EnvAlertTopic, &c.AlertTopic)
	integer(EnvBatchSize, &c.BatchSize)
	dur(EnvCheckpointInterval, &c.CheckpointInterval)
	integer(EnvCheckpointRecords, &c.CheckpointRecords)
	dur(EnvRetention, &c.Retention)
	dur(EnvRetentionInterval, &c.RetentionInterval)
	c.Keys = auditchain.KeyConfigFromEnv(get)
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
