// Package service is the composition root of the job-orchestrator: it builds every
// part of the service explicitly and runs it in the shared service runtime.
//
// Build order: configuration and the JWT interceptors (before the gRPC
// server exists) → database → migrations → store (repository and outbox) →
// topic catalogue (when ORCHESTRATOR_ENSURE_TOPICS) → Kafka producer →
// RabbitMQ connection and publisher → scheduler backend and job outputs
// reader → use cases → reconciler and outbox relay (background) → gRPC
// JobService behind the JWT interceptors → readiness checks. Shutdown runs the other way round: the
// reconciler and relay stop (the relay finishes and marks its pass), the
// scheduler closes, the producer flushes, RabbitMQ closes, the database
// closes.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/outputdir"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/watchfeed"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/ports"
)

// Name and default listen addresses of the job-orchestrator.
const (
	Name            = "job-orchestrator"
	DefaultGRPCAddr = ":50051"
	DefaultHTTPAddr = ":8081"
)

// Run loads the configuration through lookup, writes JSON logs to logOut and
// serves until ctx is done, then shuts down gracefully.
func Run(ctx context.Context, lookup svcruntime.LookupFunc, logOut io.Writer) error {
	defaults := svcruntime.DefaultConfig(Name, DefaultGRPCAddr, DefaultHTTPAddr)
	var o orchestrator
	return svcruntime.Main(ctx, defaults, lookup, logOut, o.wire, svcruntime.WithPrepare(o.prepare))
}

// orchestrator carries the configuration from prepare to wire within one
// Run.
type orchestrator struct {
	cfg Config
}

// prepare loads the configuration and installs the JWT interceptors on the
// gRPC server, after the runtime's own (correlation, logging, metrics,
// recovery). Health checks and reflection stay reachable without a token
// (auth.Exempt). With AUTH_DISABLED=true (development only) every call acts
// as auth.DevPrincipal.
func (o *orchestrator) prepare(ctx context.Context, deps svcruntime.Deps) ([]svcruntime.Option, error) {
	cfg, err := LoadConfig(deps.Lookup)
	if err != nil {
		return nil, err
	}
	o.cfg = cfg
	svcruntime.LogConfig(ctx, deps.Logger, deps.Config, cfg)
	return svcruntime.AuthOptions(ctx, cfg.Auth, deps.Logger)
}

func (o *orchestrator) wire(ctx context.Context, deps svcruntime.Deps) error {
	cfg := o.cfg
	log, rt := deps.Logger, deps.Runtime
	if cfg.PageTokenKeyGenerated {
		log.WarnContext(ctx, "no "+EnvPageTokenKey+" set: page tokens are signed with a random key and do not survive a restart or work across replicas")
	}
	if cfg.App.Allocations == nil {
		log.WarnContext(ctx, "no "+EnvAllocationsFile+" set: a user whose token has no allocations claim may charge any allocation")
	}
	if cfg.Fault != "" {
		log.WarnContext(ctx, "fault point armed (test hook)", "fault", cfg.Fault, "event_type", cfg.FaultEventType)
	}

	// Database, migrations, store.
	if err := secureStateDir(cfg); err != nil {
		return err
	}
	db, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	rt.OnShutdown("database", func(context.Context) error { return db.Close() })
	if err := store.Migrate(ctx, db); err != nil {
		return err
	}
	codec, schemas, err := kafkabus.NewCodec(cfg.Kafka, log)
	if err != nil {
		return fmt.Errorf("events codec: %w", err)
	}
	rt.OnShutdown("schema registry", func(context.Context) error { return schemas.Close() })
	wake := make(chan struct{}, 1)
	st, err := store.New(db, codec, store.Config{AfterCommit: afterCommit(cfg, log, wake), Registerer: rt.Registry()})
	if err != nil {
		return err
	}

	// Brokers.
	if cfg.EnsureTopics {
		if err := ensureTopics(ctx, cfg, log); err != nil {
			return err
		}
	}
	pcfg := kafkabus.DefaultProducerConfig(cfg.Kafka)
	pcfg.Schemas = codec
	producer, err := kafkabus.NewProducer(pcfg, log, rt.Registry())
	if err != nil {
		return err
	}
	rt.OnShutdown("kafka producer", func(context.Context) error { return producer.Close() })
	var publisher outbox.AMQPPublisher
	var amqpConn *amqpbus.Conn
	if cfg.AMQPURL != "" {
		acfg := amqpbus.DefaultConfig(cfg.AMQPURL)
		acfg.ConnectionName = Name
		conn, err := amqpbus.Dial(ctx, acfg, log, rt.Registry())
		if err != nil {
			return fmt.Errorf("connect to RabbitMQ: %w", err)
		}
		rt.OnShutdown("rabbitmq connection", func(context.Context) error { return conn.Close() })
		pub, err := amqpbus.NewPublisher(conn, amqpbus.DefaultPublisherConfig(), log, rt.Registry())
		if err != nil {
			return err
		}
		rt.OnShutdown("rabbitmq publisher", func(context.Context) error { return pub.Close() })
		rt.AddReadinessCheck("rabbitmq", conn.Check)
		publisher = pub
		amqpConn = conn
	}

	// Scheduler and use cases.
	cat, err := app.LoadCatalogue(cfg.Catalogue)
	if err != nil {
		return err
	}
	sched, err := newScheduler(cfg, cat, deps.Lookup, log)
	if err != nil {
		return err
	}
	rt.OnShutdown("scheduler", sched.close)
	outputs, err := newOutputs(cfg)
	if err != nil {
		return err
	}
	a, err := app.New(cfg.App, app.Deps{Repo: st, Scheduler: sched, Catalogue: cat, Logger: log, Outputs: outputs})
	if err != nil {
		return err
	}
	observePasses, err := passObserver(rt.Registry())
	if err != nil {
		return err
	}
	rec, err := app.NewReconciler(a, cfg.Reconciler, log, observePasses)
	if err != nil {
		return err
	}
	if err := registerPassCount(rt.Registry(), rec); err != nil {
		return err
	}
	rcfg := outbox.DefaultRelayConfig()
	rcfg.Exchange, rcfg.TopicPrefix, rcfg.Wake = amqpbus.ExchangeJobEvents, cfg.TopicPrefix, wake
	rl, err := outbox.NewRelay(rcfg, st, producer, publisher, log, rt.Registry())
	if err != nil {
		return err
	}

	// Background work; stopped first on shutdown (closers run in reverse).
	rt.Go("reconciler", rec.Run)
	rt.Go("outbox relay", rl.Run)
	if amqpConn != nil {
		feed, err := watchfeed.Start(ctx, amqpConn, watchfeed.QueueName(), codec, a, log, rt.Registry())
		if err != nil {
			return err
		}
		rt.Go("watch feed", feed.Run)
	}

	// gRPC JobService, behind the JWT interceptors installed by prepare.
	jobpb.RegisterJobServiceServer(rt.GRPCServer(), ports.NewJobServer(a, log))

	rt.AddReadinessCheck("database", st.Check)
	rt.AddReadinessCheck("outbox relay", rl.Check)
	log.InfoContext(ctx, "job-orchestrator wired", "scheduler", sched.Name(), "database", string(db.Dialect()),
		"relay_id", rl.ID(), "rabbitmq", publisher != nil, "topic_prefix", cfg.TopicPrefix)
	return nil
}

// afterCommit wakes the relay after each commit that wrote outbox rows and,
// when the fault point is armed, kills the process first.
func afterCommit(cfg Config, log *slog.Logger, wake chan<- struct{}) func([]string) {
	return func(types []string) {
		if cfg.Fault == FaultAfterCommitBeforePublish && (cfg.FaultEventType == "" || containsString(types, cfg.FaultEventType)) {
			log.Error("fault point reached: killing the process after commit, before publish", "event_types", types)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // SIGKILL cannot be caught; never return to publish
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func ensureTopics(ctx context.Context, cfg Config, log *slog.Logger) error {
	specs, err := events.Catalogue(cfg.Topics)
	if err != nil {
		return err
	}
	for i := range specs {
		if specs[i].Name != events.TopicSchemas { // one registry per cluster
			specs[i].Name = cfg.TopicPrefix + specs[i].Name
		}
	}
	report, err := kafkabus.EnsureTopics(ctx, cfg.Kafka.Brokers, specs, log,
		kafkabus.EnsureOptions{TLS: cfg.Kafka.TLS, ClientID: cfg.Kafka.ClientID, Version: cfg.Kafka.Version})
	if err != nil {
		return fmt.Errorf("apply topic catalogue: %w", err)
	}
	log.InfoContext(ctx, "topic catalogue applied", "report", report.String())
	return nil
}

// slurmClusters is the Slurm configuration of every system of the
// catalogue when at least one system names its own slurmrestd (the others
// use SLURMRESTD_URL, when set); nil when none does. A system's token_env
// names a variable read through lookup.
func slurmClusters(cfg Config, cat *domain.Catalogue, lookup svcruntime.LookupFunc) map[string]slurm.Config {
	own := false
	for _, sys := range cat.Systems() {
		own = own || sys.Slurm.URL != ""
	}
	if !own {
		return nil
	}
	out := map[string]slurm.Config{}
	for _, sys := range cat.Systems() {
		ep := sys.Slurm
		if ep.URL == "" {
			if cfg.Slurm.BaseURL != "" {
				out[sys.Name] = cfg.Slurm
			}
			continue
		}
		sc := slurm.Config{BaseURL: ep.URL, UserName: ep.User, TokenFile: ep.TokenFile,
			APIVersion: ep.APIVersion, HTTPTimeout: cfg.Slurm.HTTPTimeout, Path: cfg.Slurm.Path}
		if ep.TokenEnv != "" {
			token, _ := lookup(ep.TokenEnv)
			sc.Token = telemetry.Secret(strings.TrimSpace(token))
		}
		out[sys.Name] = sc
	}
	return out
}

// scheduler is the chosen backend with its way of closing.
type scheduler struct {
	app.Scheduler
	close func(context.Context) error
}

func newScheduler(cfg Config, cat *domain.Catalogue, lookup svcruntime.LookupFunc, log *slog.Logger) (scheduler, error) {
	switch cfg.Scheduler {
	case "slurm":
		if clusters := slurmClusters(cfg, cat, lookup); clusters != nil {
			c, err := slurm.NewClusters(clusters, log)
			if err != nil {
				return scheduler{}, err
			}
			vctx, cancel := context.WithTimeout(context.Background(), cfg.Slurm.WithDefaults().HTTPTimeout)
			if err := c.APIVersions(vctx); err != nil {
				log.Warn("slurmrestd API version not chosen yet", "error", err)
			}
			cancel()
			return scheduler{Scheduler: c, close: func(context.Context) error { c.Close(); return nil }}, nil
		}
		sc := cfg.Slurm
		sc.Logger = log
		s, err := slurm.New(sc)
		if err != nil {
			return scheduler{}, err
		}
		// The API version is chosen (and logged) now when slurmrestd answers,
		// else at the first request that reaches it.
		vctx, cancel := context.WithTimeout(context.Background(), sc.WithDefaults().HTTPTimeout)
		if _, err := s.APIVersion(vctx); err != nil {
			log.Warn("slurmrestd API version not chosen yet", "error", err)
		}
		cancel()
		return scheduler{Scheduler: s, close: func(context.Context) error { s.Close(); return nil }}, nil
	default:
		lc := cfg.Local
		lc.WorkRoot, lc.Logger, lc.MaxConcurrent = filepath.Clean(cfg.WorkDir), log, cfg.LocalMax
		s, err := local.New(lc)
		if errors.Is(err, local.ErrNotIsolated) {
			return scheduler{}, fmt.Errorf("%w (%s=true accepts unisolated jobs)", err, EnvLocalSingleUser)
		}
		if err != nil {
			return scheduler{}, err
		}
		return scheduler{Scheduler: s, close: s.Close}, nil
	}
}

// newOutputs reads jobs' output directories, <JOB_WORK_DIR>/<job id>, with
// the chosen backend's names of the stdout and stderr files. For Slurm the
// directory is the jobs' working directory on the cluster's file system,
// which this host must mount at the same path.
func newOutputs(cfg Config) (*outputdir.Dir, error) {
	names := local.StreamFile
	if cfg.Scheduler == "slurm" {
		names = slurm.StreamFile
	}
	return outputdir.New(filepath.Clean(cfg.WorkDir), names)
}

// secureStateDir makes the orchestrator's files private: everything it
// creates from now on is readable by its own user only (umask 077), the
// state directory can be neither listed nor read by anyone else, and an
// SQLite database made by an earlier version with a wider mode is narrowed.
// The state directory keeps search permission for others (0711) only when
// the isolated local backend's job directories are below it, so that the
// jobs' users can reach their own directories.
func secureStateDir(cfg Config) error {
	syscall.Umask(0o077)
	mode := os.FileMode(0o700)
	if cfg.Scheduler == "local" && !cfg.Local.SingleUser && within(cfg.WorkDir, cfg.StateDir) {
		mode = 0o711
	}
	if err := os.MkdirAll(cfg.StateDir, mode); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Chmod(cfg.StateDir, mode); err != nil {
		return fmt.Errorf("chmod state directory: %w", err)
	}
	if path, ok := strings.CutPrefix(cfg.DatabaseURL, "sqlite:"); ok {
		path = strings.TrimPrefix(path, "//")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			fi, err := os.Stat(path + suffix)
			if err != nil || fi.Mode().Perm()&0o077 == 0 {
				continue
			}
			if err := os.Chmod(path+suffix, fi.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("chmod database file: %w", err)
			}
		}
	}
	return nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
