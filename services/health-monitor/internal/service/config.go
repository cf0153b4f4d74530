package service

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/envconf"
	"github.com/cosmic-horizons/fleet/libs/events"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// Environment variables of the health-monitor, besides the runtime's.
const (
	EnvInterval            = "HEALTH_INTERVAL"
	EnvProbeTimeout        = "HEALTH_PROBE_TIMEOUT"
	EnvServices            = "HEALTH_SERVICES"
	EnvLagThreshold        = "HEALTH_LAG_THRESHOLD"
	EnvGroupPrefix         = "HEALTH_GROUP_PREFIX"
	EnvStallAfter          = "HEALTH_STALL_AFTER"
	EnvQueueDepthThreshold = "HEALTH_QUEUE_DEPTH_THRESHOLD"
	EnvRaiseAfter          = "HEALTH_RAISE_AFTER"
	EnvResolveAfter        = "HEALTH_RESOLVE_AFTER"
	EnvPublishEvery        = "HEALTH_PUBLISH_EVERY"
	EnvCanaryEnabled       = "HEALTH_CANARY_ENABLED"
	EnvCanaryTopic         = "HEALTH_CANARY_TOPIC"
	EnvCanaryGroup         = "HEALTH_CANARY_GROUP"
	EnvCanaryQueue         = "HEALTH_CANARY_QUEUE"
	EnvCanaryRoutingKey    = "HEALTH_CANARY_ROUTING_KEY"
	EnvCanaryTimeout       = "HEALTH_CANARY_TIMEOUT"
	EnvJobsEnabled         = "HEALTH_JOBS_ENABLED"
	EnvJobsTopic           = "HEALTH_JOBS_TOPIC"
	EnvJobsGroup           = "HEALTH_JOBS_GROUP"
	EnvJobsWindow          = "HEALTH_JOBS_WINDOW"
	EnvJobsFailureRatio    = "HEALTH_JOBS_FAILURE_RATIO"
	EnvJobsMinFinished     = "HEALTH_JOBS_MIN_FINISHED"
	EnvDatabaseURLs        = "DATABASE_URLS"
	EnvKafkaBrokers        = "KAFKA_BROKERS"
	EnvAMQPURL             = "AMQP_URL"
	EnvRabbitMQMgmtURL     = "RABBITMQ_MGMT_URL"
)

// Target is a named address: a service's gRPC endpoint or a database URL.
type Target struct {
	Name string
	Addr string
}

// Config is the health-monitor's own configuration.
type Config struct {
	// Interval is the time between two probe cycles.
	Interval time.Duration `env:"HEALTH_INTERVAL"`
	// ProbeTimeout bounds each probe; at most Interval.
	ProbeTimeout time.Duration `env:"HEALTH_PROBE_TIMEOUT"`
	// Services are the grpc.health.v1 endpoints probed, "name=host:port,...".
	Services []Target
	// Topics are the topic catalogue's cluster settings the topics probe
	// expects (events.CatalogueConfigFrom).
	Topics events.CatalogueConfig
	// Databases are pinged, "name=url,..." or "url,..." (named by position).
	Databases []Target
	// LagThreshold is the lag on one topic above which a group is degraded.
	LagThreshold int64 `env:"HEALTH_LAG_THRESHOLD"`
	// GroupPrefix keeps the consumer groups whose id starts with it; empty: all.
	GroupPrefix string `env:"HEALTH_GROUP_PREFIX"`
	// StallAfter is how long a group's committed offset on a partition may
	// stay put while the partition has records beyond it before the group
	// is reported stalled (degraded, with the partition); 0 disables it.
	StallAfter time.Duration `env:"HEALTH_STALL_AFTER"`
	// QueueDepthThreshold is the number of ready messages in a RabbitMQ
	// queue above which the broker is degraded.
	QueueDepthThreshold int64 `env:"HEALTH_QUEUE_DEPTH_THRESHOLD"`
	// RaiseAfter and ResolveAfter are the hysteresis, in cycles.
	RaiseAfter   int `env:"HEALTH_RAISE_AFTER"`
	ResolveAfter int `env:"HEALTH_RESOLVE_AFTER"`
	// PublishEvery: a system.health_check is published when a component's
	// status changes, and for every component every PublishEvery cycles.
	PublishEvery int `env:"HEALTH_PUBLISH_EVERY"`

	// Brokers is the shared connection block (KAFKA_BROKERS,
	// KAFKA_CLIENT_ID, KAFKA_VERSION, KAFKA_TLS_*, AMQP_URL): no Kafka
	// brokers or no AMQP URL disables that broker's probes, canary and (for
	// Kafka) the events. The Kafka client id defaults to the service's name.
	svcruntime.Brokers
	// RabbitMQMgmtURL is the management API for queue depths; empty skips them.
	RabbitMQMgmtURL string `env:"RABBITMQ_MGMT_URL"`

	CanaryEnabled    bool   `env:"HEALTH_CANARY_ENABLED"`
	CanaryTopic      string `env:"HEALTH_CANARY_TOPIC"`
	CanaryGroup      string `env:"HEALTH_CANARY_GROUP"`
	CanaryQueue      string `env:"HEALTH_CANARY_QUEUE"`
	CanaryRoutingKey string `env:"HEALTH_CANARY_ROUTING_KEY"`
	// CanaryTimeout is how long a canary may take to return; below ProbeTimeout.
	CanaryTimeout time.Duration `env:"HEALTH_CANARY_TIMEOUT"`

	// JobsEnabled follows job-lifecycle (needs Kafka) and reports the job
	// flow as the component "jobs": how many jobs wait and run, how many
	// finished in JobFlow.Window and how many failed.
	JobsEnabled bool   `env:"HEALTH_JOBS_ENABLED"`
	JobsTopic   string `env:"HEALTH_JOBS_TOPIC"`
	// JobsGroup is this replica's consumer group of JobsTopic.
	JobsGroup string `env:"HEALTH_JOBS_GROUP"`
	JobFlow   domain.JobFlowConfig
}

// DefaultConfig returns the defaults; the canary names carry the host name
// so that several monitors do not consume each other's canaries.
func DefaultConfig() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "local"
	}
	host = strings.NewReplacer(".", "-", "*", "-", "#", "-").Replace(host)
	return Config{
		Topics:              events.DefaultCatalogueConfig(),
		Interval:            5 * time.Second,
		ProbeTimeout:        4 * time.Second,
		LagThreshold:        1000,
		StallAfter:          30 * time.Second,
		QueueDepthThreshold: 10000,
		RaiseAfter:          2,
		ResolveAfter:        2,
		PublishEvery:        12,
		CanaryEnabled:       true,
		CanaryTopic:         "fleet-canary",
		CanaryGroup:         "health-monitor-canary-" + host,
		CanaryQueue:         "health-monitor.canary." + host,
		CanaryRoutingKey:    "health.canary." + host,
		CanaryTimeout:       3 * time.Second,
		JobsEnabled:         true,
		JobsTopic:           events.TopicJobLifecycle,
		JobsGroup:           "health-monitor-jobs-" + host,
		JobFlow:             domain.DefaultJobFlowConfig(),
	}
}

// LoadConfig reads the environment through lookup over DefaultConfig and validates it.
func LoadConfig(lookup svcruntime.LookupFunc) (Config, error) {
	cfg := DefaultConfig()
	var errs []error
	if err := envconf.Load(&cfg, lookup); err != nil {
		errs = append(errs, err)
	}
	topics, err := events.CatalogueConfigFrom(lookup)
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Topics = topics
	// The job flow's settings, bound to their variables.
	jobFlow := struct {
		Window       *time.Duration `env:"HEALTH_JOBS_WINDOW"`
		MinFinished  *int           `env:"HEALTH_JOBS_MIN_FINISHED"`
		FailureRatio *float64       `env:"HEALTH_JOBS_FAILURE_RATIO"`
		// The probed targets, "name=addr,...".
		Services  *serviceTargets  `env:"HEALTH_SERVICES"`
		Databases *databaseTargets `env:"DATABASE_URLS" secret:"true"`
	}{Window: &cfg.JobFlow.Window, MinFinished: &cfg.JobFlow.MinFinished, FailureRatio: &cfg.JobFlow.FailureRatio,
		Services: (*serviceTargets)(&cfg.Services), Databases: (*databaseTargets)(&cfg.Databases)}
	if err := envconf.Load(&jobFlow, lookup); err != nil {
		errs = append(errs, err)
	}
	if cfg.Kafka.ClientID == "" {
		cfg.Kafka.ClientID = Name
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("health-monitor config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// serviceTargets is HEALTH_SERVICES: name=host:port entries.
type serviceTargets []Target

// UnmarshalText parses the entries with ParseTargets; each needs a name.
func (t *serviceTargets) UnmarshalText(text []byte) error {
	ts, err := ParseTargets(string(text), "")
	if err != nil {
		return err
	}
	*t = ts
	return nil
}

// databaseTargets is DATABASE_URLS: name=url or url entries.
type databaseTargets []Target

// UnmarshalText parses the entries as ParseTargets does, naming an entry
// without a name db<position>. Its errors name an entry by its position,
// never by its text: a database URL may hold a password.
func (t *databaseTargets) UnmarshalText(text []byte) error {
	ts, err := parseTargets(string(text), "db", func(i int, _ string) string { return fmt.Sprintf("entry %d", i+1) })
	if err != nil {
		return err
	}
	*t = ts
	return nil
}

// ParseTargets parses "name=addr,name=addr". With a non-empty defaultName,
// an entry without "name=" is named defaultName plus its position (1-based);
// otherwise a name is required. A database URL's own "=" (in its query) is
// kept: only a name before "://" or a leading "name=" counts.
func ParseTargets(s, defaultName string) ([]Target, error) {
	return parseTargets(s, defaultName, func(_ int, entry string) string { return fmt.Sprintf("entry %q", entry) })
}

// parseTargets is ParseTargets with describe naming the i-th entry in its
// errors.
func parseTargets(s, defaultName string, describe func(i int, entry string) string) ([]Target, error) {
	var out []Target
	seen := make(map[string]bool)
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, addr, found := strings.Cut(entry, "=")
		if !found || strings.ContainsAny(name, ":/?") {
			if defaultName == "" {
				return nil, fmt.Errorf("%s: want name=host:port", describe(i, entry))
			}
			name, addr = fmt.Sprintf("%s%d", defaultName, i+1), entry
		}
		name, addr = strings.TrimSpace(name), strings.TrimSpace(addr)
		if name == "" || addr == "" {
			return nil, fmt.Errorf("%s: empty name or address", describe(i, entry))
		}
		if seen[name] {
			return nil, fmt.Errorf("%s: name %s used twice", describe(i, entry), name)
		}
		seen[name] = true
		out = append(out, Target{Name: name, Addr: addr})
	}
	return out, nil
}

// Validate reports every setting that cannot work, naming its variable.
func (c Config) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("%s=%s: must be positive", EnvInterval, c.Interval))
	}
	if c.ProbeTimeout <= 0 || c.ProbeTimeout > c.Interval {
		errs = append(errs, fmt.Errorf("%s=%s: must be positive and at most %s=%s", EnvProbeTimeout, c.ProbeTimeout, EnvInterval, c.Interval))
	}
	if c.LagThreshold < 0 {
		errs = append(errs, fmt.Errorf("%s=%d: must not be negative", EnvLagThreshold, c.LagThreshold))
	}
	if c.StallAfter < 0 {
		errs = append(errs, fmt.Errorf("%s=%s: must not be negative", EnvStallAfter, c.StallAfter))
	}
	if c.QueueDepthThreshold < 0 {
		errs = append(errs, fmt.Errorf("%s=%d: must not be negative", EnvQueueDepthThreshold, c.QueueDepthThreshold))
	}
	if c.RaiseAfter < 1 {
		errs = append(errs, fmt.Errorf("%s=%d: must be at least 1", EnvRaiseAfter, c.RaiseAfter))
	}
	if c.ResolveAfter < 1 {
		errs = append(errs, fmt.Errorf("%s=%d: must be at least 1", EnvResolveAfter, c.ResolveAfter))
	}
	if c.PublishEvery < 1 {
		errs = append(errs, fmt.Errorf("%s=%d: must be at least 1", EnvPublishEvery, c.PublishEvery))
	}
	if len(c.Kafka.Brokers) > 0 {
		if err := c.Kafka.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvKafkaBrokers, err))
		}
	}
	for _, s := range c.Services {
		if _, _, err := net.SplitHostPort(s.Addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s=%q: want host:port", EnvServices, s.Name, s.Addr))
		}
	}
	if c.CanaryEnabled {
		if c.CanaryTimeout <= 0 || c.CanaryTimeout >= c.ProbeTimeout {
			errs = append(errs, fmt.Errorf("%s=%s: must be positive and below %s=%s", EnvCanaryTimeout, c.CanaryTimeout, EnvProbeTimeout, c.ProbeTimeout))
		}
		if c.CanaryTopic == "" || c.CanaryGroup == "" || c.CanaryQueue == "" || c.CanaryRoutingKey == "" {
			errs = append(errs, fmt.Errorf("%s, %s, %s and %s must not be empty", EnvCanaryTopic, EnvCanaryGroup, EnvCanaryQueue, EnvCanaryRoutingKey))
		}
		if strings.HasPrefix(c.CanaryRoutingKey, "job.") {
			errs = append(errs, fmt.Errorf("%s=%q: must not start with \"job.\" (job watchers would receive canaries)", EnvCanaryRoutingKey, c.CanaryRoutingKey))
		}
	}
	if c.JobsEnabled {
		if c.JobsTopic == "" || c.JobsGroup == "" {
			errs = append(errs, fmt.Errorf("%s and %s must not be empty", EnvJobsTopic, EnvJobsGroup))
		}
		if c.JobFlow.Window <= 0 {
			errs = append(errs, fmt.Errorf("%s=%s: must be positive", EnvJobsWindow, c.JobFlow.Window))
		}
		if c.JobFlow.FailureRatio <= 0 || c.JobFlow.FailureRatio > 1 {
			errs = append(errs, fmt.Errorf("%s=%g: must be above 0 and at most 1", EnvJobsFailureRatio, c.JobFlow.FailureRatio))
		}
		if c.JobFlow.MinFinished < 1 {
			errs = append(errs, fmt.Errorf("%s=%d: must be at least 1", EnvJobsMinFinished, c.JobFlow.MinFinished))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("health-monitor config: %w", err)
	}
	return nil
}
