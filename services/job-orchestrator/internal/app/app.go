// Package app holds the job-orchestrator's use cases: submit, get, list,
// cancel and watch jobs, stream, list and download their outputs, and the
// reconciler that drives jobs through the scheduler. It depends on ports
// (JobRepository, Scheduler, JobOutputs) only.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// Defaults of Config.
const (
	DefaultProducer          = "job-orchestrator"
	DefaultPageSize          = 50
	DefaultMaxPageSize       = 500
	DefaultWatchPollInterval = time.Second
	DefaultWorkDir           = "/var/lib/fleet/jobs"
	// DefaultOutputPollInterval is how often a followed job output is
	// checked for new bytes.
	DefaultOutputPollInterval = 100 * time.Millisecond
)

// Config configures the use cases.
type Config struct {
	// Producer names the service in event envelopes and is the actor of
	// system transitions.
	Producer string
	// Rates price the cost estimate.
	Rates domain.Rates
	// PageTokenKey signs page tokens (HMAC-SHA256), so that a client cannot
	// forge or alter one. Replicas must share it; at least 16 bytes.
	PageTokenKey telemetry.Secret
	// DefaultPageSize and MaxPageSize bound ListJobs pages.
	DefaultPageSize, MaxPageSize int
	// WatchPollInterval is how often a watch re-reads the job, to see
	// changes committed by other replicas whose wake-up (adapters/watchfeed,
	// through RabbitMQ) did not arrive.
	WatchPollInterval time.Duration
	// OutputPollInterval is how often StreamJobOutput with follow looks
	// for new bytes in the job's output file.
	OutputPollInterval time.Duration
	// WorkDir is the directory under which each job gets <WorkDir>/<job id>
	// for its output files.
	WorkDir string
	// Allocations maps a user to the allocations they may charge (from
	// ALLOCATIONS_FILE). A token's allocations claim takes precedence; a
	// user with neither may charge none while the map is set. With no map
	// and no claim any allocation is accepted (see docs/security.md).
	Allocations map[string][]string
}

// DefaultConfig returns the configuration with defaults; PageTokenKey must
// still be set.
func DefaultConfig() Config {
	return Config{
		Producer:           DefaultProducer,
		Rates:              domain.DefaultRates(),
		DefaultPageSize:    DefaultPageSize,
		MaxPageSize:        DefaultMaxPageSize,
		WatchPollInterval:  DefaultWatchPollInterval,
		OutputPollInterval: DefaultOutputPollInterval,
		WorkDir:            DefaultWorkDir,
	}
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	if c.Producer == "" {
		errs = append(errs, errors.New("producer is required"))
	}
	if err := c.Rates.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.PageTokenKey) < 16 {
		errs = append(errs, errors.New("page token key must have at least 16 bytes"))
	}
	if c.DefaultPageSize < 1 || c.MaxPageSize < c.DefaultPageSize {
		errs = append(errs, errors.New("page sizes must satisfy 1 <= default <= max"))
	}
	if c.WatchPollInterval <= 0 {
		errs = append(errs, errors.New("watch poll interval must be positive"))
	}
	if c.OutputPollInterval <= 0 {
		errs = append(errs, errors.New("output poll interval must be positive"))
	}
	if c.WorkDir == "" || !filepath.IsAbs(c.WorkDir) {
		errs = append(errs, errors.New("work dir must be an absolute path"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("app config: %w", err)
	}
	return nil
}

// Deps are the ports and helpers the use cases need.
type Deps struct {
	Repo      JobRepository
	Scheduler Scheduler
	Catalogue *domain.Catalogue
	Logger    *slog.Logger
	// Outputs reads jobs' output directories; nil makes the output RPCs
	// answer Unavailable.
	Outputs JobOutputs
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NewID makes job ids; nil means UUIDv7.
	NewID func() string
}

// Actor is the authenticated caller of a use case.
type Actor struct {
	UserID string
	Admin  bool
	// IP is the caller's address for the audit trail; may be empty.
	IP string
	// Allocations are those of the token's allocations claim, when
	// AllocationsClaim (an empty claim grants none).
	Allocations      []string
	AllocationsClaim bool
}

// mayCharge reports whether the actor may charge allocation: an admin any;
// a user those of their token's claim, else those the configured map gives
// them; anyone any when neither a claim nor a map exists.
func (a *App) mayCharge(actor Actor, allocation string) bool {
	switch {
	case actor.Admin:
		return true
	case actor.AllocationsClaim:
		return slices.Contains(actor.Allocations, allocation)
	case a.cfg.Allocations != nil:
		return slices.Contains(a.cfg.Allocations[actor.UserID], allocation)
	}
	return true
}

// Role names the actor's role in the audit trail.
func (a Actor) Role() string {
	if a.Admin {
		return "admin"
	}
	return "user"
}

func (a Actor) canSee(j *domain.Job) bool { return a.Admin || j.Owner == a.UserID }

// App runs the use cases.
type App struct {
	cfg      Config
	repo     JobRepository
	sched    Scheduler
	cat      *domain.Catalogue
	log      *slog.Logger
	now      func() time.Time
	newID    func() string
	notifier *notifier
	kick     chan struct{}
	outputs  JobOutputs
}

// New checks cfg and deps and builds the App.
func New(cfg Config, deps Deps) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Repo == nil:
		return nil, errors.New("app: repository is required")
	case deps.Scheduler == nil:
		return nil, errors.New("app: scheduler is required")
	case deps.Catalogue == nil:
		return nil, errors.New("app: catalogue is required")
	case deps.Logger == nil:
		return nil, errors.New("app: logger is required")
	}
	a := &App{
		cfg: cfg, repo: deps.Repo, sched: deps.Scheduler, cat: deps.Catalogue, log: deps.Logger,
		now: deps.Now, newID: deps.NewID, notifier: newNotifier(), kick: make(chan struct{}, 1),
		outputs: deps.Outputs,
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.newID == nil {
		a.newID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}
	return a, nil
}

// Catalogue returns the system catalogue requests are validated against.
func (a *App) Catalogue() *domain.Catalogue { return a.cat }

// LoadCatalogue returns the built-in catalogue, or the one in the JSON file
// at path when path is not empty (same format as the built-in one; see
// domain.DefaultCatalogueJSON).
func LoadCatalogue(path string) (*domain.Catalogue, error) {
	if path == "" {
		return domain.DefaultCatalogue(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load catalogue: %w", err)
	}
	cat, err := domain.ParseCatalogue(b)
	if err != nil {
		return nil, fmt.Errorf("load catalogue %s: %w", path, err)
	}
	return cat, nil
}

// changed tells watchers of this process and the reconciler that job id
// changed.
func (a *App) changed(j *domain.Job) {
	a.notifier.notify(j.ID)
	if j.Status == domain.StatusSubmitted {
		a.Kick()
	}
}

// NotifyWatchers wakes this process's watchers of job id, for a change
// another replica made (see adapters/watchfeed); they re-read the job.
func (a *App) NotifyWatchers(id string) { a.notifier.notify(id) }

// Kick wakes the reconciler for an early pass (e.g. after a submission).
func (a *App) Kick() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *App) correlationID(ctx context.Context, j *domain.Job) string {
	if id := telemetry.CorrelationID(ctx); id != "" {
		return id
	}
	if j != nil {
		return j.CorrelationID
	}
	return ""
}
