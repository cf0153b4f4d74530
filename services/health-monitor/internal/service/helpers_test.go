package service_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/service"
)

func suffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// testConfig is a fast configuration whose canary names, group prefix and
// queue are unique to the test, with no broker, service or database yet.
func testConfig(t *testing.T) service.Config {
	t.Helper()
	id := suffix(t)
	cfg := service.DefaultConfig()
	cfg.Interval = time.Second
	cfg.ProbeTimeout = 900 * time.Millisecond
	cfg.CanaryTimeout = 700 * time.Millisecond
	cfg.GroupPrefix = "hm-test-none-" + id
	cfg.CanaryTopic = "health-monitor-canary-test"
	cfg.CanaryGroup = "hm-test-canary-" + id
	cfg.CanaryQueue = "hm-test-canary-" + id
	cfg.CanaryRoutingKey = "health.canary.test-" + id
	cfg.PublishEvery = 1
	cfg.JobsEnabled = false // TestJobFlow* turn it on with a topic of their own
	cfg.JobsGroup = "hm-test-jobs-" + id
	return cfg
}

func kafkaBrokers(t *testing.T) []string {
	t.Helper()
	return testinfra.KafkaBrokers(t)
}

func amqpURL(t *testing.T) string {
	t.Helper()
	return testinfra.AMQPURL(t)
}

func postgresURL(t *testing.T) string {
	t.Helper()
	v := os.Getenv("DATABASE_URL_POSTGRES")
	if v == "" {
		testinfra.Unavailable(t, "DATABASE_URL_POSTGRES is unset")
	}
	return v
}

func logger(t *testing.T) *slog.Logger {
	t.Helper()
	if testing.Verbose() && os.Getenv("HEALTH_TEST_LOGS") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}

// recorder wraps the real event sink and counts what passes through it.
type recorder struct {
	next app.EventSink
	mu   sync.Mutex
	evs  []events.Event
}

func (r *recorder) Publish(ctx context.Context, ev events.Event) error {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	if r.next == nil {
		return nil
	}
	return r.next.Publish(ctx, ev)
}

// alerts returns the component ids of the alert.raised and alert.resolved events so far.
func (r *recorder) alerts() (raised, resolved []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.evs {
		switch p := ev.Payload.(type) {
		case events.AlertRaised:
			raised = append(raised, p.ComponentID)
		case events.AlertResolved:
			resolved = append(resolved, p.ComponentID)
		}
	}
	return raised, resolved
}

func newHealthMonitor(t *testing.T, cfg service.Config) (*service.HealthMonitor, *recorder) {
	t.Helper()
	rec := &recorder{}
	hm, err := service.NewHealthMonitor(cfg, logger(t), prometheus.NewRegistry(),
		service.WithSinkWrapper(func(next app.EventSink) app.EventSink { rec.next = next; return rec }))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, hm.Close()) })
	if hm.JobFlow != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- hm.JobFlow.Run(ctx) }()
		t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	}
	return hm, rec
}

// healthServer is a real gRPC server with grpc.health.v1 on a loopback port.
type healthServer struct {
	Addr string
	srv  *grpc.Server
}

func startHealthServer(t *testing.T) *healthServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer()) // SERVING for ""
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return &healthServer{Addr: lis.Addr().String(), srv: srv}
}

// Kill stops the server at once, closing every connection.
func (h *healthServer) Kill() { h.srv.Stop() }

func component(s domain.FleetStatus, id string) (domain.Component, bool) {
	for _, c := range s.Components {
		if c.ID == id {
			return c, true
		}
	}
	return domain.Component{}, false
}

func unhealthyOnes(s domain.FleetStatus) []string {
	var out []string
	for _, c := range s.Components {
		if c.Status != domain.StatusHealthy {
			out = append(out, c.ID+" "+c.Status.String()+": "+c.Detail)
		}
	}
	return out
}

func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", args...).CombinedOutput()
	require.NoError(t, err, "rabbitmqctl %s: %s", strings.Join(args, " "), out)
}
