package service

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/envconf"
	"github.com/cosmic-horizons/fleet/libs/events"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// Environment variables of the job-orchestrator (beyond the runtime's and
// the AUTH_* variables read by auth.LoadConfig).
const (
	EnvDatabaseURL    = "DATABASE_URL"    // default sqlite:<state dir>/orchestrator.db
	EnvStateDirectory = "STATE_DIRECTORY" // default ./data
	EnvScheduler      = "SCHEDULER"       // local (default) or slurm
	EnvJobWorkDir     = "JOB_WORK_DIR"    // job output directories; default <state dir>/jobs
	EnvLocalMaxJobs   = "LOCAL_MAX_JOBS"  // local backend: jobs run at once; default the CPU count
	// Local backend isolation (docs/security.md).
	EnvLocalSingleUser    = "LOCAL_SINGLE_USER"           // true: run jobs unisolated as the service's user
	EnvLocalUIDRange      = "LOCAL_JOB_UID_RANGE"         // first-last; default 61000-61999
	EnvLocalGIDRange      = "LOCAL_JOB_GID_RANGE"         // first-last; default the uid range
	EnvLocalCgroupParent  = "LOCAL_CGROUP_PARENT"         // default fleet-local
	EnvLocalDefaultMemory = "LOCAL_JOB_DEFAULT_MEMORY_MB" // limit of a job asking for none; default 0, none
	EnvLocalMaxProcesses  = "LOCAL_JOB_MAX_PROCESSES"     // default 1024
	EnvLocalMaxOpenFiles  = "LOCAL_JOB_MAX_OPEN_FILES"    // default 1024
	EnvLocalMaxFileSizeMB = "LOCAL_JOB_MAX_FILE_SIZE_MB"  // default 16384
	EnvLocalSupervisor    = "LOCAL_JOB_SUPERVISOR"        // cmd/job-supervisor's executable; default job-supervisor next to the service's, else the service's own
	EnvSlurmURL           = "SLURMRESTD_URL"              // slurm backend: http(s)://host:port or unix:///socket
	EnvSlurmUser          = "SLURM_USER"                  // X-SLURM-USER-NAME
	EnvSlurmToken         = "SLURM_JWT_TOKEN"             // the slurmrestd JWT, or:
	EnvSlurmTokenFile     = "SLURM_JWT_TOKEN_FILE"
	EnvSlurmAPIVersion    = "SLURM_API_VERSION" // v0.0.40, v0.0.41 or v0.0.42; default the newest slurmrestd serves
	EnvPageTokenKey       = "PAGE_TOKEN_KEY"    // or PAGE_TOKEN_KEY_FILE; replicas must share it
	EnvPageTokenKeyFile   = "PAGE_TOKEN_KEY_FILE"
	EnvCatalogueFile      = "SYSTEM_CATALOGUE_FILE"
	// EnvAllocationsFile names a JSON object from each user to the
	// allocations they may charge, e.g. {"alice": ["AST21001"]}.
	EnvAllocationsFile  = "ALLOCATIONS_FILE"
	EnvCostNodeHour     = "COST_USD_PER_NODE_HOUR"
	EnvCostGPUHour      = "COST_USD_PER_GPU_HOUR"
	EnvReconcileEvery   = "RECONCILE_INTERVAL"
	EnvMetricsInterval  = "JOB_METRICS_INTERVAL" // running jobs' metrics samples; default 30s, 0 none
	EnvWatchPoll        = "WATCH_POLL_INTERVAL"  // WatchJob's re-read when no wake-up came; default 1s
	EnvAMQPURL          = "AMQP_URL"             // empty: job events go to Kafka only
	EnvEnsureTopics     = "ORCHESTRATOR_ENSURE_TOPICS"
	EnvTopicPrefix      = "ORCHESTRATOR_TOPIC_PREFIX"
	EnvFault            = "ORCHESTRATOR_FAULT"
	defaultDatabaseFile = "orchestrator.db"
)

// FaultAfterCommitBeforePublish is the one fault point: ORCHESTRATOR_FAULT=
// after-commit-before-publish[:<event type>] kills the process with SIGKILL
// right after the first database commit that appended outbox rows (of that
// event type, when given), before the relay can publish them. It is a test
// hook for crash-safety tests and is inert unless the variable is set.
const FaultAfterCommitBeforePublish = "after-commit-before-publish"

// Config is the job-orchestrator's own configuration.
type Config struct {
	DatabaseURL string `env:"DATABASE_URL"`
	StateDir    string `env:"STATE_DIRECTORY"`
	Scheduler   string `env:"SCHEDULER"`
	WorkDir     string `env:"JOB_WORK_DIR"`
	LocalMax    int    `env:"LOCAL_MAX_JOBS"`
	// Local is the local backend's isolation and limits (WorkRoot, Logger
	// and MaxConcurrent are set when the backend is built).
	Local      local.Config
	Slurm      slurm.Config
	Auth       auth.Config
	App        app.Config
	Reconciler app.ReconcilerConfig
	Catalogue  string `env:"SYSTEM_CATALOGUE_FILE"`
	// Brokers is the shared connection block (KAFKA_*, AMQP_URL); the Kafka
	// client id is always the service's name.
	svcruntime.Brokers
	// EnsureTopics applies the topic catalogue (create or verify) at start.
	EnsureTopics bool   `env:"ORCHESTRATOR_ENSURE_TOPICS"`
	TopicPrefix  string `env:"ORCHESTRATOR_TOPIC_PREFIX"`
	// Topics are the cluster-dependent settings of the topic catalogue
	// (KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS,
	// KAFKA_AUDIT_MIN_INSYNC_REPLICAS; events.CatalogueConfigFrom).
	Topics events.CatalogueConfig
	// Fault is the armed fault point, "" normally.
	Fault, FaultEventType string
	// PageTokenKeyGenerated is set when no key was configured and a random
	// one is used (page tokens then die with the process).
	PageTokenKeyGenerated bool
}

// LoadConfig reads the configuration from lookup and validates it.
func LoadConfig(lookup svcruntime.LookupFunc) (Config, error) {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	var errs []error
	c := Config{App: app.DefaultConfig(), Reconciler: app.DefaultReconcilerConfig(), EnsureTopics: true}
	var reconcileEvery time.Duration
	var fileSizeMB int64
	// The backends' and the App's settings, bound to their variables.
	nested := struct {
		SlurmURL        *string           `env:"SLURMRESTD_URL"`
		SlurmUser       *string           `env:"SLURM_USER"`
		SlurmToken      *telemetry.Secret `env:"SLURM_JWT_TOKEN"`
		SlurmTokenFile  *string           `env:"SLURM_JWT_TOKEN_FILE"`
		SlurmAPIVersion *string           `env:"SLURM_API_VERSION"`
		CostNodeHour    *float64          `env:"COST_USD_PER_NODE_HOUR"`
		CostGPUHour     *float64          `env:"COST_USD_PER_GPU_HOUR"`
		ReconcileEvery  *time.Duration    `env:"RECONCILE_INTERVAL"`
		HoldDispatch    *bool             `env:"DISPATCH_HOLD"`
		WatchPoll       *time.Duration    `env:"WATCH_POLL_INTERVAL"`
		MetricsInterval *time.Duration    `env:"JOB_METRICS_INTERVAL"`
		PageTokenKey    *telemetry.Secret `env:"PAGE_TOKEN_KEY" envFile:"PAGE_TOKEN_KEY_FILE"`
		FileSizeMB      *int64            `env:"LOCAL_JOB_MAX_FILE_SIZE_MB"`
		Allocations     *allocationsFile  `env:"ALLOCATIONS_FILE"`
	}{
		SlurmURL: &c.Slurm.BaseURL, SlurmUser: &c.Slurm.UserName, SlurmToken: &c.Slurm.Token,
		SlurmTokenFile: &c.Slurm.TokenFile, SlurmAPIVersion: &c.Slurm.APIVersion,
		CostNodeHour: &c.App.Rates.USDPerNodeHour, CostGPUHour: &c.App.Rates.USDPerGPUHour,
		ReconcileEvery: &reconcileEvery, HoldDispatch: &c.Reconciler.HoldDispatch, WatchPoll: &c.App.WatchPollInterval, MetricsInterval: &c.Reconciler.SampleInterval,
		PageTokenKey: &c.App.PageTokenKey, FileSizeMB: &fileSizeMB, Allocations: (*allocationsFile)(&c.App.Allocations),
	}
	var fault struct {
		Point faultPoint `env:"ORCHESTRATOR_FAULT"`
	}
	for _, dst := range []any{&c, &nested, &fault} {
		if err := envconf.Load(dst, lookup); err != nil {
			errs = append(errs, err)
		}
	}
	c.Kafka.ClientID = Name
	topics, err := events.CatalogueConfigFrom(lookup)
	if err != nil {
		errs = append(errs, err)
	}
	c.Topics = topics
	if c.StateDir == "" {
		c.StateDir = "data"
	}
	if abs, err := filepath.Abs(c.StateDir); err == nil {
		c.StateDir = abs
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = "sqlite://" + filepath.Join(c.StateDir, defaultDatabaseFile)
	}
	if c.Scheduler == "" {
		c.Scheduler = "local"
	}
	if c.WorkDir == "" {
		c.WorkDir = filepath.Join(c.StateDir, "jobs")
	}
	checkLocal(&c.Local, fileSizeMB, get, &errs)

	authCfg, err := auth.LoadConfig(lookup)
	if err != nil {
		errs = append(errs, err)
	}
	c.Auth = authCfg

	c.App.WorkDir = c.WorkDir
	if c.App.PageTokenKey == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		c.App.PageTokenKey = telemetry.Secret(b)
		c.PageTokenKeyGenerated = true
	}
	if get(EnvReconcileEvery) != "" {
		c.Reconciler.Interval = reconcileEvery
		c.Reconciler.MaxInterval = max(c.Reconciler.MaxInterval, reconcileEvery)
	}
	if v := get(EnvWatchPoll); v != "" && c.App.WatchPollInterval <= 0 {
		errs = append(errs, fmt.Errorf("%s=%q: want a positive duration", EnvWatchPoll, v))
	}
	if v := get(EnvMetricsInterval); v != "" && c.Reconciler.SampleInterval < 0 {
		errs = append(errs, fmt.Errorf("%s=%q: want a duration of 0 or more", EnvMetricsInterval, v))
	}
	c.Fault, c.FaultEventType = fault.Point.point, fault.Point.eventType
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("job-orchestrator config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	switch c.Scheduler {
	case "local":
		if c.LocalMax < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", EnvLocalMaxJobs))
		}
		lc := c.Local
		lc.WorkRoot, lc.MaxConcurrent = c.WorkDir, c.LocalMax
		if err := lc.WithDefaults().Validate(); err != nil {
			errs = append(errs, err)
		}
	case "slurm":
		if err := c.Slurm.WithDefaults().Validate(); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want local or slurm", EnvScheduler, c.Scheduler))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.App.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Reconciler.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("KAFKA_BROKERS: %w", err))
	}
	if c.Fault != "" && c.Fault != FaultAfterCommitBeforePublish {
		errs = append(errs, fmt.Errorf("%s=%q: the only fault point is %s", EnvFault, c.Fault, FaultAfterCommitBeforePublish))
	}
	if c.FaultEventType != "" && c.FaultEventType != domainEventType(c.FaultEventType) {
		errs = append(errs, fmt.Errorf("%s: unknown event type %q", EnvFault, c.FaultEventType))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("job-orchestrator config: %w", err)
	}
	return nil
}

// domainEventType returns t when it names an event the orchestrator writes.
func domainEventType(t string) string {
	for _, s := range domain.Statuses() {
		if t == "job."+strings.ToLower(string(s)) {
			return t
		}
	}
	if t == "job.metrics_recorded" || t == "audit.action_recorded" {
		return t
	}
	return ""
}

// checkLocal completes the local backend's settings read through their
// env tags: the supervisor's default, the limits that must be positive when
// set, and the file size limit given in megabytes.
func checkLocal(lc *local.Config, fileSizeMB int64, get func(string) string, errs *[]error) {
	if lc.SupervisorPath == "" {
		lc.SupervisorPath = siblingSupervisor()
	}
	for _, l := range []struct {
		key string
		n   int64
	}{{EnvLocalDefaultMemory, lc.DefaultMemoryMB}, {EnvLocalMaxProcesses, lc.MaxProcesses},
		{EnvLocalMaxOpenFiles, int64(min(lc.MaxOpenFiles, 1<<62))}, {EnvLocalMaxFileSizeMB, fileSizeMB}} {
		if v := get(l.key); v != "" && l.n < 1 {
			*errs = append(*errs, fmt.Errorf("%s=%q: want a positive integer", l.key, v))
		}
	}
	if fileSizeMB > 1<<43 {
		*errs = append(*errs, fmt.Errorf("%s=%d: too large", EnvLocalMaxFileSizeMB, fileSizeMB))
	} else if fileSizeMB > 0 {
		lc.MaxFileSize = fileSizeMB << 20
	}
}

// faultPoint is ORCHESTRATOR_FAULT: a fault point and, after a colon, an
// event type; Validate checks both.
type faultPoint struct{ point, eventType string }

// UnmarshalText splits the value at its first colon.
func (f *faultPoint) UnmarshalText(text []byte) error {
	f.point, f.eventType, _ = strings.Cut(string(text), ":")
	return nil
}

// allocationsFile is ALLOCATIONS_FILE: the file, a JSON object from each
// user to the allocations they may charge, is read when the variable is.
type allocationsFile map[string][]string

// UnmarshalText reads the file named by text.
func (a *allocationsFile) UnmarshalText(text []byte) error {
	b, err := os.ReadFile(string(text))
	if err != nil {
		return err
	}
	m := map[string][]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("want a JSON object of user to list of allocations: %w", err)
	}
	*a = m
	return nil
}

// supervisorName is the file name of cmd/job-supervisor's executable.
const supervisorName = "job-supervisor"

// siblingSupervisor returns the job supervisor installed next to this
// process's executable, or "" when there is none (the local backend then
// starts its own executable as the supervisor).
func siblingSupervisor() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), supervisorName)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return p
	}
	return ""
}
