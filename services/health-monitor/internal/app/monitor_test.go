package app_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// scripted is a probe that reports the next status of its script each cycle.
type scripted struct {
	id     string
	mu     sync.Mutex
	script []domain.Status
}

func (s *scripted) Name() string               { return s.id }
func (s *scripted) Type() domain.ComponentType { return domain.TypeService }
func (s *scripted) Probe(context.Context) app.Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.script[0]
	if len(s.script) > 1 {
		s.script = s.script[1:]
	}
	return app.Outcome{Components: []domain.Component{{ID: s.id, Type: domain.TypeService, Status: st, Detail: st.String()}}}
}

// stuck is a probe that only returns when its context ends.
type stuck struct{}

func (stuck) Name() string               { return "stuck" }
func (stuck) Type() domain.ComponentType { return domain.TypeDatabase }
func (stuck) Probe(ctx context.Context) app.Outcome {
	<-ctx.Done()
	return app.Outcome{}
}

type panicking struct{}

func (panicking) Name() string                      { return "panicking" }
func (panicking) Type() domain.ComponentType        { return domain.TypeBroker }
func (panicking) Probe(context.Context) app.Outcome { panic("boom") }

// recordingSink records published events.
type recordingSink struct {
	mu     sync.Mutex
	events []events.Event
}

func (r *recordingSink) Publish(_ context.Context, ev events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recordingSink) count(eventType, componentID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.EventType != eventType {
			continue
		}
		var id string
		switch p := ev.Payload.(type) {
		case events.SystemHealthCheck:
			id = p.ComponentID
		case events.AlertRaised:
			id = p.ComponentID
		case events.AlertResolved:
			id = p.ComponentID
		}
		if id == componentID {
			n++
		}
	}
	return n
}

func testConfig() app.Config {
	return app.Config{
		Interval: time.Second, ProbeTimeout: 100 * time.Millisecond, PublishEvery: 3, Producer: "health-monitor",
		Hysteresis: domain.DefaultHysteresisConfig(),
	}
}

func newMonitor(t *testing.T, cfg app.Config, sink app.EventSink, reg prometheus.Registerer, probes ...app.Probe) (*app.Monitor, *app.Hub) {
	t.Helper()
	hub := app.NewHub()
	m, err := app.NewMonitor(cfg, probes, sink, hub, slog.New(slog.NewJSONHandler(io.Discard, nil)), reg)
	require.NoError(t, err)
	return m, hub
}

func TestMonitorFlappingComponentRaisesOneAlertAndResolvesOnce(t *testing.T) {
	t.Parallel()
	flappy := &scripted{id: "service:flappy", script: []domain.Status{
		H, U, H, U, H, // flapping: no alert
		U, U, // bad twice: raised at the second
		H, U, H, U, H, U, // flapping while open: nothing
		H, H, // good twice: resolved at the second
		U, H, U, H, // flapping again: nothing
	}}
	sink := &recordingSink{}
	m, _ := newMonitor(t, testConfig(), sink, nil, flappy)
	var open []int
	for range 19 {
		st := m.RunCycle(t.Context())
		open = append(open, len(st.OpenAlerts))
	}
	require.Equal(t, 1, sink.count(events.TypeAlertRaised, "service:flappy"))
	require.Equal(t, 1, sink.count(events.TypeAlertResolved, "service:flappy"))
	require.Equal(t, []int{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, open)
}

func TestMonitorPublishesHealthChecksOnChangeAndEveryKCycles(t *testing.T) {
	t.Parallel()
	steady := &scripted{id: "steady", script: []domain.Status{H}}
	changing := &scripted{id: "changing", script: []domain.Status{H, H, D, D, D, D, D}}
	unknown := &scripted{id: "unknown", script: []domain.Status{K}}
	sink := &recordingSink{}
	m, _ := newMonitor(t, testConfig(), sink, nil, steady, changing, unknown) // PublishEvery 3
	for range 7 {
		m.RunCycle(t.Context())
	}
	// steady: cycles 1, 4, 7. changing: 1, 3 (change), 4, 7. unknown: never.
	require.Equal(t, 3, sink.count(events.TypeSystemHealthCheck, "steady"))
	require.Equal(t, 4, sink.count(events.TypeSystemHealthCheck, "changing"))
	require.Equal(t, 0, sink.count(events.TypeSystemHealthCheck, "unknown"))
	for _, ev := range sink.events {
		require.Equal(t, events.TopicSystemHealth, ev.Topic())
		require.NotEmpty(t, ev.Key(), "system-health events are keyed by component id")
	}
}

func TestMonitorProbeTimeoutAndPanicReportUnhealthy(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, hub := newMonitor(t, testConfig(), nil, reg, stuck{}, panicking{}, &scripted{id: "ok", script: []domain.Status{H}})
	st := m.RunCycle(t.Context())

	byID := map[string]domain.Component{}
	for _, c := range st.Components {
		byID[c.ID] = c
	}
	require.Equal(t, domain.StatusUnhealthy, byID["stuck"].Status)
	require.Equal(t, domain.TypeDatabase, byID["stuck"].Type)
	require.Contains(t, byID["stuck"].Detail, "did not finish within 100ms")
	require.Equal(t, domain.StatusUnhealthy, byID["panicking"].Status)
	require.Contains(t, byID["panicking"].Detail, "boom")
	require.Equal(t, domain.StatusHealthy, byID["ok"].Status)
	require.Equal(t, domain.StatusUnhealthy, st.Overall)
	require.Equal(t, uint64(1), st.Cycle)
	require.Positive(t, st.CycleDuration)

	latest, _ := hub.Current()
	require.Equal(t, st.Cycle, latest.Cycle)
	require.Equal(t, 1, testutil.CollectAndCount(reg, "health_monitor_probe_cycle_cpu_seconds"))
	require.InDelta(t, 3, testutil.ToFloat64(prometheusGauge(t, reg)), 0)
}

// prometheusGauge returns the status gauge of the stuck component.
func prometheusGauge(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "health_monitor_component_status" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "component" && l.GetValue() == "stuck" {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
					g.Set(mt.GetGauge().GetValue())
					return g
				}
			}
		}
	}
	t.Fatal("no status gauge for the stuck component")
	return nil
}

func TestMonitorRunPublishesToHubUntilCancelled(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Interval = 20 * time.Millisecond
	cfg.ProbeTimeout = 10 * time.Millisecond
	m, hub := newMonitor(t, cfg, nil, nil, &scripted{id: "a", script: []domain.Status{H}})
	_, changed := hub.Current()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	for range 3 {
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatal("no new status published")
		}
		_, changed = hub.Current()
	}
	cancel()
	require.NoError(t, <-done)
	st, _ := hub.Current()
	require.GreaterOrEqual(t, st.Cycle, uint64(3))
	require.Equal(t, domain.StatusHealthy, st.Overall)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*app.Config)
		ok     bool
	}{
		{name: "defaults", mutate: func(*app.Config) {}, ok: true},
		{name: "zero interval", mutate: func(c *app.Config) { c.Interval = 0 }},
		{name: "timeout above interval", mutate: func(c *app.Config) { c.ProbeTimeout = 2 * time.Second }},
		{name: "publish every zero", mutate: func(c *app.Config) { c.PublishEvery = 0 }},
		{name: "no producer", mutate: func(c *app.Config) { c.Producer = "" }},
		{name: "bad hysteresis", mutate: func(c *app.Config) { c.Hysteresis.RaiseAfter = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			tt.mutate(&cfg)
			if tt.ok {
				require.NoError(t, cfg.Validate())
			} else {
				require.Error(t, cfg.Validate())
			}
		})
	}
}

const (
	H = domain.StatusHealthy
	D = domain.StatusDegraded
	U = domain.StatusUnhealthy
	K = domain.StatusUnknown
)
