package events

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/envconf"
)

// Topic names of the fleet. These are the only topics services publish to;
// each has a dead-letter companion named by DLQTopic.
const (
	TopicJobLifecycle  = "job-lifecycle"
	TopicJobMetrics    = "job-metrics"
	TopicNotifications = "notifications"
	TopicAuditTrail    = "audit-trail"
	TopicSystemHealth  = "system-health"
	// TopicSchemas is the schema registry: every writer schema of the fleet,
	// keyed by its fingerprint (FingerprintHex), compacted, kept forever.
	// Producers write a schema there before the first event that uses it;
	// readers find the schema of a fingerprint they do not know there.
	TopicSchemas = "_fleet-schemas"
)

// DLQSuffix is appended to a topic name to form its dead-letter topic.
const DLQSuffix = bus.DLQSuffix

// DLQTopic returns the dead-letter topic of topic.
func DLQTopic(topic string) string { return bus.DLQTopic(topic) }

// KeyField names the envelope or payload field whose value is a topic's
// message key. KeyNone means messages are unkeyed (spread over partitions).
type KeyField string

const (
	KeyJobID       KeyField = "job_id"
	KeyResourceID  KeyField = "resource_id"
	KeyComponentID KeyField = "component_id"
	KeyNone        KeyField = ""
)

// TopicSpec describes one Kafka topic of the catalogue.
type TopicSpec struct {
	Name              string
	Key               KeyField
	Partitions        int32
	Retention         time.Duration
	Compression       string // Kafka compression.type: producer, zstd, lz4, snappy, gzip, uncompressed
	ReplicationFactor int16
	MinInsyncReplicas int16
	// Compacted topics keep the newest record of each key forever
	// (cleanup.policy=compact); Retention does not apply to them.
	Compacted bool
}

// Validate reports the first thing wrong with the spec.
func (s TopicSpec) Validate() error {
	switch {
	case s.Name == "":
		return errors.New("topic name is empty")
	case s.Partitions < 1:
		return fmt.Errorf("topic %s: partitions %d < 1", s.Name, s.Partitions)
	case s.Retention <= 0 && !s.Compacted:
		return fmt.Errorf("topic %s: retention %s <= 0", s.Name, s.Retention)
	case s.ReplicationFactor < 1:
		return fmt.Errorf("topic %s: replication factor %d < 1", s.Name, s.ReplicationFactor)
	case s.MinInsyncReplicas < 1 || s.MinInsyncReplicas > s.ReplicationFactor:
		return fmt.Errorf("topic %s: min.insync.replicas %d outside 1..%d", s.Name, s.MinInsyncReplicas, s.ReplicationFactor)
	}
	switch s.Compression {
	case "producer", "zstd", "lz4", "snappy", "gzip", "uncompressed":
	default:
		return fmt.Errorf("topic %s: unknown compression %q", s.Name, s.Compression)
	}
	return nil
}

// CatalogueConfig holds the cluster-dependent settings of the catalogue:
// 1/1 on a laptop, 3/2 in production.
type CatalogueConfig struct {
	ReplicationFactor int16
	MinInsyncReplicas int16
	// AuditMinInsyncReplicas overrides MinInsyncReplicas for audit-trail,
	// which must not accept a write that only one replica holds in production.
	AuditMinInsyncReplicas int16
}

// DefaultCatalogueConfig is the single-broker development setting.
func DefaultCatalogueConfig() CatalogueConfig {
	return CatalogueConfig{ReplicationFactor: 1, MinInsyncReplicas: 1, AuditMinInsyncReplicas: 1}
}

// Variables read by CatalogueConfigFrom.
const (
	EnvReplicationFactor      = "KAFKA_REPLICATION_FACTOR"
	EnvMinInsyncReplicas      = "KAFKA_MIN_INSYNC_REPLICAS"
	EnvAuditMinInsyncReplicas = "KAFKA_AUDIT_MIN_INSYNC_REPLICAS"
)

// CatalogueConfigFromEnv is CatalogueConfigFrom the process environment.
func CatalogueConfigFromEnv() (CatalogueConfig, error) { return CatalogueConfigFrom(os.LookupEnv) }

// CatalogueConfigFrom reads KAFKA_REPLICATION_FACTOR,
// KAFKA_MIN_INSYNC_REPLICAS and KAFKA_AUDIT_MIN_INSYNC_REPLICAS through
// lookup. An unset variable keeps its default; an unset
// KAFKA_AUDIT_MIN_INSYNC_REPLICAS follows KAFKA_MIN_INSYNC_REPLICAS. Every
// value must be a positive integer.
func CatalogueConfigFrom(lookup envconf.Lookup) (CatalogueConfig, error) {
	cfg := DefaultCatalogueConfig()
	vars := struct {
		ReplicationFactor *int16 `env:"KAFKA_REPLICATION_FACTOR"`
		MinInsync         *int16 `env:"KAFKA_MIN_INSYNC_REPLICAS"`
		AuditMinInsync    *int16 `env:"KAFKA_AUDIT_MIN_INSYNC_REPLICAS"` // nil: unset
	}{ReplicationFactor: &cfg.ReplicationFactor, MinInsync: &cfg.MinInsyncReplicas}
	if err := envconf.Load(&vars, lookup); err != nil {
		return cfg, err
	}
	cfg.AuditMinInsyncReplicas = cfg.MinInsyncReplicas
	if vars.AuditMinInsync != nil {
		cfg.AuditMinInsyncReplicas = *vars.AuditMinInsync
	}
	var errs []error
	for _, v := range []struct {
		name  string
		value int16
	}{{EnvReplicationFactor, cfg.ReplicationFactor}, {EnvMinInsyncReplicas, cfg.MinInsyncReplicas}, {EnvAuditMinInsyncReplicas, cfg.AuditMinInsyncReplicas}} {
		if v.value < 1 {
			errs = append(errs, fmt.Errorf("%s=%d: want a positive integer", v.name, v.value))
		}
	}
	return cfg, errors.Join(errs...)
}

const day = 24 * time.Hour

// Catalogue returns every topic of the fleet, dead-letter topics included,
// with the cluster-dependent settings of cfg applied.
func Catalogue(cfg CatalogueConfig) ([]TopicSpec, error) {
	spec := func(name string, key KeyField, partitions int32, retention time.Duration) TopicSpec {
		return TopicSpec{
			Name: name, Key: key, Partitions: partitions, Retention: retention, Compression: "zstd",
			ReplicationFactor: cfg.ReplicationFactor, MinInsyncReplicas: cfg.MinInsyncReplicas,
		}
	}
	audit := spec(TopicAuditTrail, KeyResourceID, 5, 90*day)
	audit.MinInsyncReplicas = cfg.AuditMinInsyncReplicas
	topics := []TopicSpec{
		spec(TopicJobLifecycle, KeyJobID, 10, 30*day),
		spec(TopicJobMetrics, KeyJobID, 20, 30*day),
		spec(TopicNotifications, KeyNone, 5, 7*day),
		audit,
		spec(TopicSystemHealth, KeyComponentID, 1, 7*day),
	}
	for _, t := range topics[:5] {
		dlq := t
		dlq.Name = DLQTopic(t.Name)
		dlq.Partitions = 1
		dlq.Retention = 30 * day
		topics = append(topics, dlq)
	}
	topics = append(topics, TopicSpec{
		Name: TopicSchemas, Key: KeyNone, Partitions: 1, Compacted: true, Compression: "zstd",
		ReplicationFactor: cfg.ReplicationFactor, MinInsyncReplicas: cfg.MinInsyncReplicas,
	})
	for _, t := range topics {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("topic catalogue: %w", err)
		}
	}
	return topics, nil
}

// Lookup returns the spec of the named topic.
func Lookup(topics []TopicSpec, name string) (TopicSpec, bool) {
	for _, t := range topics {
		if t.Name == name {
			return t, true
		}
	}
	return TopicSpec{}, false
}
