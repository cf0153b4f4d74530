package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
)

// ReadinessCheckTimeout bounds one readiness check during a /readyz request.
const ReadinessCheckTimeout = 2 * time.Second

// CheckFunc reports an error when a dependency is not ready, or a closer
// fails.
type CheckFunc func(ctx context.Context) error

type namedFunc struct {
	name string
	fn   CheckFunc
}

// Option adjusts a Runtime built by New.
type Option func(*options)

type options struct {
	tracerProvider trace.TracerProvider
	grpcOptions    []grpc.ServerOption
}

// WithTracerProvider makes the gRPC server create its spans with tp instead
// of the global provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithGRPCServerOptions adds options to the gRPC server, after the runtime's.
func WithGRPCServerOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.grpcOptions = append(o.grpcOptions, opts...) }
}

// Runtime owns a service's gRPC and HTTP servers, its metrics registry, its
// readiness checks and its shutdown sequence.
type Runtime struct {
	cfg      Config
	logger   *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	registry *prometheus.Registry
	mux      *http.ServeMux
	http     *http.Server
	grpcLis  net.Listener
	httpLis  net.Listener

	mu       sync.Mutex
	checks   []namedFunc
	closers  []namedFunc
	started  atomic.Bool
	stopping atomic.Bool
}

// New validates cfg, builds the servers and opens both listeners, so the
// bound addresses (GRPCAddr, HTTPAddr) are known before Run. Either Run or
// Close must be called to release them.
func New(cfg Config, logger *slog.Logger, opts ...Option) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		return nil, errors.New("service: logger is required")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}

	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("service: register go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("service: register process collector: %w", err)
	}
	metrics, err := newGRPCMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("service: register grpc metrics: %w", err)
	}

	otelOpts := []otelgrpc.Option{otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
		return !quietMethod(info.FullMethodName)
	})}
	if o.tracerProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithTracerProvider(o.tracerProvider))
	}
	obs := &observer{logger: logger, metrics: metrics}
	rec := &recoverer{logger: logger}
	serverOpts := append([]grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
		grpc.ChainUnaryInterceptor(correlationUnary, obs.unary, rec.unary),
		grpc.ChainStreamInterceptor(correlationStream, obs.stream, rec.stream),
	}, o.grpcOptions...)

	r := &Runtime{
		cfg:      cfg,
		logger:   logger,
		grpc:     grpc.NewServer(serverOpts...),
		health:   health.NewServer(),
		registry: reg,
		mux:      http.NewServeMux(),
	}
	healthpb.RegisterHealthServer(r.grpc, r.health)
	reflection.Register(r.grpc)

	r.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	r.mux.HandleFunc("GET /healthz", r.serveHealthz)
	r.mux.HandleFunc("GET /readyz", r.serveReadyz)
	if cfg.Pprof {
		r.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		r.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		r.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		r.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		r.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	r.http = &http.Server{
		Handler:           r.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	if r.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("service: listen %s=%s: %w", EnvGRPCAddr, cfg.GRPCAddr, err)
	}
	if r.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		_ = r.grpcLis.Close()
		return nil, fmt.Errorf("service: listen %s=%s: %w", EnvHTTPAddr, cfg.HTTPAddr, err)
	}
	return r, nil
}

// GRPCServer returns the gRPC server, for registering services before Run.
func (r *Runtime) GRPCServer() *grpc.Server { return r.grpc }

// Registry returns the Prometheus registry served on /metrics.
func (r *Runtime) Registry() *prometheus.Registry { return r.registry }

// Logger returns the runtime's logger.
func (r *Runtime) Logger() *slog.Logger { return r.logger }

// Config returns the runtime's configuration.
func (r *Runtime) Config() Config { return r.cfg }

// GRPCAddr returns the address the gRPC server listens on.
func (r *Runtime) GRPCAddr() string { return r.grpcLis.Addr().String() }

// HTTPAddr returns the address the HTTP server listens on.
func (r *Runtime) HTTPAddr() string { return r.httpLis.Addr().String() }

// HandleHTTP adds a handler to the HTTP server next to /metrics, /healthz
// and /readyz. Patterns follow http.ServeMux.
func (r *Runtime) HandleHTTP(pattern string, h http.Handler) { r.mux.Handle(pattern, h) }

// AddReadinessCheck adds a check that must pass for /readyz to answer 200.
func (r *Runtime) AddReadinessCheck(name string, fn CheckFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, namedFunc{name: name, fn: fn})
}

// OnShutdown adds a closer run after the servers have stopped. Closers run
// in reverse order of registration, so register in the order things are
// built (telemetry, database, producers, consumers) and they are released
// in the opposite order.
func (r *Runtime) OnShutdown(name string, fn CheckFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closers = append(r.closers, namedFunc{name: name, fn: fn})
}

// Go runs fn in the background for the life of the service: a consumer, a
// relay, a periodic task. fn's context is cancelled at shutdown, in the
// closers' reverse order like any OnShutdown closer, and shutdown waits for
// fn to return until the shutdown deadline. An error from fn other than its
// cancellation is logged.
func (r *Runtime) Go(name string, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
			r.logger.Error("background task stopped", slog.String("task", name), slog.String("error", err.Error()))
		}
	}()
	r.OnShutdown(name, func(closeCtx context.Context) error {
		cancel()
		select {
		case <-done:
			return nil
		case <-closeCtx.Done():
			return fmt.Errorf("%s did not stop: %w", name, closeCtx.Err())
		}
	})
}

// Run serves gRPC and HTTP until ctx is done or a server fails, then runs
// the shutdown sequence and returns. It returns nil after a clean shutdown
// requested through ctx. Run may be called once.
func (r *Runtime) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("service: Run or Close already called")
	}
	for name := range r.grpc.GetServiceInfo() {
		r.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	r.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	var wg sync.WaitGroup
	serveErr := make(chan error, 2)
	wg.Go(func() {
		if err := r.grpc.Serve(r.grpcLis); err != nil {
			serveErr <- fmt.Errorf("grpc server: %w", err)
		}
	})
	wg.Go(func() {
		if err := r.http.Serve(r.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("http server: %w", err)
		}
	})
	r.logger.InfoContext(ctx, "serving",
		slog.String("grpc_addr", r.GRPCAddr()),
		slog.String("http_addr", r.HTTPAddr()),
	)

	var runErr error
	select {
	case <-ctx.Done():
		r.logger.Info("shutdown requested", slog.String("cause", context.Cause(ctx).Error()))
	case runErr = <-serveErr:
		r.logger.Error("server failed, shutting down", slog.String("error", runErr.Error()))
	}
	err := r.shutdown(&wg)
	return errors.Join(runErr, err)
}

// Close releases the listeners and runs the closers of a Runtime whose Run
// will not be called, e.g. when wiring the service failed.
func (r *Runtime) Close(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("service: Run or Close already called")
	}
	r.stopping.Store(true)
	r.health.Shutdown()
	r.grpc.Stop()
	errs := []error{ignoreClosed(r.grpcLis.Close()), ignoreClosed(r.httpLis.Close())}
	errs = append(errs, r.runClosers(ctx))
	return errors.Join(errs...)
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// shutdown runs the shutdown sequence within ShutdownTimeout.
func (r *Runtime) shutdown(serving *sync.WaitGroup) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	log := r.logger.With(slog.String("phase", "shutdown"))

	r.stopping.Store(true)
	r.health.Shutdown()
	log.Info("health NOT_SERVING, readiness false; draining", slog.String("drain", r.cfg.ShutdownDrain.String()))
	drain := time.NewTimer(r.cfg.ShutdownDrain)
	select {
	case <-drain.C:
	case <-ctx.Done():
		drain.Stop()
	}

	log.Info("stopping gRPC server gracefully")
	stopped := make(chan struct{})
	go func() {
		r.grpc.GracefulStop()
		close(stopped)
	}()
	var errs []error
	select {
	case <-stopped:
		log.Info("gRPC server stopped")
	case <-ctx.Done():
		log.Warn("shutdown timeout reached; stopping gRPC server hard", slog.String("timeout", r.cfg.ShutdownTimeout.String()))
		r.grpc.Stop()
		<-stopped
		errs = append(errs, errors.New("grpc server: graceful stop did not finish within "+EnvShutdownTimeout))
	}

	log.Info("shutting down HTTP server")
	if err := r.http.Shutdown(ctx); err != nil {
		_ = r.http.Close()
		errs = append(errs, fmt.Errorf("http server shutdown: %w", err))
	}
	serving.Wait()

	errs = append(errs, r.runClosers(ctx))
	err := errors.Join(errs...)
	if err != nil {
		log.Error("shutdown finished with errors", slog.String("took", time.Since(start).String()), slog.String("error", err.Error()))
	} else {
		log.Info("shutdown complete", slog.String("took", time.Since(start).String()))
	}
	return err
}

// runClosers runs the closers in reverse order of registration.
func (r *Runtime) runClosers(ctx context.Context) error {
	r.mu.Lock()
	closers := append([]namedFunc(nil), r.closers...)
	r.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		c := closers[i]
		start := time.Now()
		if err := c.fn(ctx); err != nil {
			r.logger.Error("closer failed", slog.String("closer", c.name), slog.String("error", err.Error()))
			errs = append(errs, fmt.Errorf("close %s: %w", c.name, err))
			continue
		}
		r.logger.Info("closed", slog.String("closer", c.name), slog.String("took", time.Since(start).String()))
	}
	return errors.Join(errs...)
}

func (r *Runtime) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// CheckResult is one readiness check in the /readyz body.
type CheckResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Readiness is the /readyz body.
type Readiness struct {
	Ready        bool          `json:"ready"`
	ShuttingDown bool          `json:"shutting_down"`
	Checks       []CheckResult `json:"checks"`
}

func (r *Runtime) serveReadyz(w http.ResponseWriter, req *http.Request) {
	res := r.readiness(req.Context())
	code := http.StatusOK
	if !res.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, res)
}

// readiness runs every check concurrently, each within ReadinessCheckTimeout.
func (r *Runtime) readiness(ctx context.Context) Readiness {
	r.mu.Lock()
	checks := append([]namedFunc(nil), r.checks...)
	r.mu.Unlock()

	results := make([]CheckResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, ReadinessCheckTimeout)
			defer cancel()
			results[i] = CheckResult{Name: c.name, OK: true}
			if err := c.fn(cctx); err != nil {
				results[i] = CheckResult{Name: c.name, Error: err.Error()}
			}
		})
	}
	wg.Wait()

	stopping := r.stopping.Load()
	ready := !stopping
	for _, res := range results {
		ready = ready && res.OK
	}
	return Readiness{Ready: ready, ShuttingDown: stopping, Checks: results}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
