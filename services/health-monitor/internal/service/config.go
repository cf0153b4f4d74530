package service

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

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
	Interval time.Duration
	// ProbeTimeout bounds each probe; at most Interval.
	ProbeTimeout time.Duration
	// Services are the grpc.health.v1 endpoints probed, "name=host:port,...".
	Services []Target
	// Databases are pinged, "name=url,..." or "url,..." (named by position).
	Databases []Target
	// LagThreshold is the lag on one topic above which a group is degraded.
	LagThreshold int64
	// GroupPrefix keeps the consumer groups whose id starts with it; empty: all.
	GroupPrefix string
	// StallAfter is how long a group's committed offset on a partition may
	// stay put while the partition has records beyond it before the group
	// is reported stalled (degraded, with the partition); 0 disables it.
	StallAfter time.Duration
	// QueueDepthThreshold is the number of ready messages in a RabbitMQ
	// queue above which the broker is degraded.
	QueueDepthThreshold int64
	// RaiseAfter and ResolveAfter are the hysteresis, in cycles.
	RaiseAfter   int
	ResolveAfter int
	// PublishEvery: a system.health_check is published when a component's
	// status changes, and for every component every PublishEvery cycles.
	PublishEvery int

	// KafkaBrokers and AMQPURL select the brokers; empty disables their
	// probes, canary and (for Kafka) the events.
	KafkaBrokers []string
	AMQPURL      string
	// RabbitMQMgmtURL is the management API for queue depths; empty skips them.
	RabbitMQMgmtURL string

	CanaryEnabled    bool
	CanaryTopic      string
	CanaryGroup      string
	CanaryQueue      string
	CanaryRoutingKey string
	// CanaryTimeout is how long a canary may take to return; below ProbeTimeout.
	CanaryTimeout time.Duration

	// JobsEnabled follows job-lifecycle (needs Kafka) and reports the job
	// flow as the component "jobs": how many jobs wait and run, how many
	// finished in JobFlow.Window and how many failed.
	JobsEnabled bool
	JobsTopic   string
	// JobsGroup is this replica's consumer group of JobsTopic.
	JobsGroup string
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
	get := func(key string) (string, bool) {
		v, ok := lookup(key)
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}
	str := func(key string, dst *string) {
		if v, ok := get(key); ok {
			*dst = v
		}
	}
	dur := func(key string, dst *time.Duration) {
		if v, ok := get(key); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want a duration such as 5s", key, v))
				return
			}
			*dst = d
		}
	}
	integer := func(key string, dst *int64) {
		if v, ok := get(key); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want an integer", key, v))
				return
			}
			*dst = n
		}
	}
	small := func(key string, dst *int) {
		n := int64(*dst)
		integer(key, &n)
		*dst = int(n)
	}
	dur(EnvInterval, &cfg.Interval)
	dur(EnvProbeTimeout, &cfg.ProbeTimeout)
	dur(EnvCanaryTimeout, &cfg.CanaryTimeout)
	integer(EnvLagThreshold, &cfg.LagThreshold)
	dur(EnvStallAfter, &cfg.StallAfter)
	integer(EnvQueueDepthThreshold, &cfg.QueueDepthThreshold)
	small(EnvRaiseAfter, &cfg.RaiseAfter)
	small(EnvResolveAfter, &cfg.ResolveAfter)
	small(EnvPublishEvery, &cfg.PublishEvery)
	str(EnvGroupPrefix, &cfg.GroupPrefix)
	str(EnvAMQPURL, &cfg.AMQPURL)
	str(EnvRabbitMQMgmtURL, &cfg.RabbitMQMgmtURL)
	str(EnvCanaryTopic, &cfg.CanaryTopic)
	str(EnvCanaryGroup, &cfg.CanaryGroup)
	str(EnvCanaryQueue, &cfg.CanaryQueue)
	str(EnvCanaryRoutingKey, &cfg.CanaryRoutingKey)
	boolean := func(key string, dst *bool) {
		if v, ok := get(key); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want true or false", key, v))
				return
			}
			*dst = b
		}
	}
	boolean(EnvCanaryEnabled, &cfg.CanaryEnabled)
	boolean(EnvJobsEnabled, &cfg.JobsEnabled)
	str(EnvJobsTopic, &cfg.JobsTopic)
	str(EnvJobsGroup, &cfg.JobsGroup)
	dur(EnvJobsWindow, &cfg.JobFlow.Window)
	small(EnvJobsMinFinished, &cfg.JobFlow.MinFinished)
	if v, ok := get(EnvJobsFailureRatio); ok {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want a number such as 0.5", EnvJobsFailureRatio, v))
		}
		cfg.JobFlow.FailureRatio = r
	}
	if v, ok := get(EnvKafkaBrokers); ok {
		for b := range strings.SplitSeq(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				cfg.KafkaBrokers = append(cfg.KafkaBrokers, b)
			}
		}
	}
	if v, ok := get(EnvServices); ok {
		ts, err := ParseTargets(v, "")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvServices, err))
		}
		cfg.Services = ts
	}
	if v, ok := get(EnvDatabaseURLs); ok {
		ts, err := ParseTargets(v, "db")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvDatabaseURLs, err))
		}
		cfg.Databases = ts
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("health-monitor config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ParseTargets parses "name=addr,name=addr". With a non-empty defaultName,
// an entry without "name=" is named defaultName plus its position (1-based);
// otherwise a name is required. A database URL's own "=" (in its query) is
// kept: only a name before "://" or a leading "name=" counts.
func ParseTargets(s, defaultName string) ([]Target, error) {
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
				return nil, fmt.Errorf("entry %q: want name=host:port", entry)
			}
			name, addr = fmt.Sprintf("%s%d", defaultName, i+1), entry
		}
		name, addr = strings.TrimSpace(name), strings.TrimSpace(addr)
		if name == "" || addr == "" {
			return nil, fmt.Errorf("entry %q: empty name or address", entry)
		}
		if seen[name] {
			return nil, fmt.Errorf("entry %q: name %s used twice", entry, name)
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
