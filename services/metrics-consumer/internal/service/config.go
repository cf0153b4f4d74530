package service

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/envconf"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/app"
)

// Config is the metrics-consumer's own configuration, read from the
// environment next to the runtime's. The gRPC server's AUTH_* settings are
// read separately by prepare (see auth.LoadConfig).
type Config struct {
	// DatabaseURL (DATABASE_URL) selects the store: a SQLite file (default
	// sqlite:metrics-consumer.db, relative to the working directory) or
	// postgres://….
	DatabaseURL string `env:"DATABASE_URL"`
	// Kafka (KAFKA_BROKERS, KAFKA_CLIENT_ID, KAFKA_VERSION, KAFKA_TLS_*).
	Kafka kafkabus.Connection
	// Topics (METRICS_TOPICS, comma separated) are consumed; default
	// job-lifecycle,job-metrics. An entry "job-lifecycle=other" consumes
	// topic other holding job-lifecycle events (tests, staging copies).
	Topics []string
	// Schemas maps each consumed topic to the catalogue topic whose
	// schemas its events use.
	Schemas map[string]string
	// Group (METRICS_GROUP) is the consumer group and the inbox consumer
	// name; default metrics-consumer.
	Group string `env:"METRICS_GROUP"`
	// BatchSize (METRICS_BATCH_SIZE) and BatchWait (METRICS_BATCH_WAIT)
	// shape the batches applied in one transaction.
	BatchSize int           `env:"METRICS_BATCH_SIZE"`
	BatchWait time.Duration `env:"METRICS_BATCH_WAIT"`
	// DedupRetention (METRICS_DEDUP_RETENTION) is how long processed event
	// ids are kept; it must exceed the topics' retention. Default 35 days.
	DedupRetention time.Duration `env:"METRICS_DEDUP_RETENTION"`
}

// DefaultConfig returns the configuration before the environment is read.
func DefaultConfig() Config {
	return Config{
		DatabaseURL:    "sqlite:metrics-consumer.db",
		Topics:         []string{events.TopicJobLifecycle, events.TopicJobMetrics},
		Schemas:        map[string]string{events.TopicJobLifecycle: events.TopicJobLifecycle, events.TopicJobMetrics: events.TopicJobMetrics},
		Group:          app.ConsumerName,
		BatchSize:      1000,
		BatchWait:      20 * time.Millisecond,
		DedupRetention: 35 * 24 * time.Hour,
	}
}

// LoadConfig reads the environment through lookup over DefaultConfig.
func LoadConfig(lookup svcruntime.LookupFunc) (Config, error) {
	c := DefaultConfig()
	var errs []error
	if err := envconf.Load(&c, lookup); err != nil {
		errs = append(errs, err)
	}
	// METRICS_TOPICS replaces both Topics and Schemas.
	var topics struct {
		List topicList `env:"METRICS_TOPICS"`
	}
	if err := envconf.Load(&topics, lookup); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if topics.List.set {
		c.Topics, c.Schemas = topics.List.topics, topics.List.schemas
	}
	if c.Kafka.ClientID == "" {
		c.Kafka.ClientID = Name
	}
	return c, c.Validate()
}

// topicList is METRICS_TOPICS: comma separated entries, each a topic or a
// schema=topic pair (the topic holds the events of the catalogue topic
// schema).
type topicList struct {
	topics  []string
	schemas map[string]string
	set     bool
}

// UnmarshalText parses the entries; a blank schema or topic, or a topic
// named twice, is refused.
func (l *topicList) UnmarshalText(text []byte) error {
	list := topicList{schemas: map[string]string{}, set: true}
	for _, e := range envconf.List(string(text)) {
		schema, name, ok := strings.Cut(e, "=")
		if !ok {
			name = schema
		}
		schema, name = strings.TrimSpace(schema), strings.TrimSpace(name)
		if schema == "" || name == "" {
			return fmt.Errorf("entry %q: want topic or schema=topic", e)
		}
		if _, dup := list.schemas[name]; dup {
			return fmt.Errorf("topic %s named twice", name)
		}
		list.topics = append(list.topics, name)
		list.schemas[name] = schema
	}
	*l = list
	return nil
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("KAFKA_BROKERS: %w", err)
	}
	switch {
	case len(c.Topics) == 0:
		return errors.New("METRICS_TOPICS: no topic")
	case c.Group == "":
		return errors.New("METRICS_GROUP: empty")
	case c.BatchSize < 1:
		return fmt.Errorf("METRICS_BATCH_SIZE: %d < 1", c.BatchSize)
	case c.BatchWait <= 0:
		return fmt.Errorf("METRICS_BATCH_WAIT: %s <= 0", c.BatchWait)
	case c.DedupRetention <= 0:
		return fmt.Errorf("METRICS_DEDUP_RETENTION: %s <= 0", c.DedupRetention)
	}
	for _, t := range c.Topics {
		switch c.Schemas[t] {
		case events.TopicJobLifecycle, events.TopicJobMetrics:
		default:
			return fmt.Errorf("METRICS_TOPICS: topic %s: events of %q are not aggregated (want %s or %s)",
				t, c.Schemas[t], events.TopicJobLifecycle, events.TopicJobMetrics)
		}
	}
	return sqlstore.Config{URL: c.DatabaseURL}.Validate()
}
