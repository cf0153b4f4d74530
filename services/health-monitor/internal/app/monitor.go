// Package app runs the health-monitor's probe cycles: it runs every probe
// concurrently with a timeout, turns the results into alerts with
// hysteresis, publishes health and alert events and the fleet status.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// Outcome is what one probe found.
type Outcome struct {
	Components  []domain.Component
	Lags        []domain.GroupLag
	Canaries    []domain.CanaryLatency
	QueueDepths []domain.QueueDepth
}

// Probe checks one part of the fleet. Probe must return when ctx is done.
type Probe interface {
	// Name is the id of the component reported as unhealthy when the probe
	// does not finish within its timeout.
	Name() string
	// Type is that component's type.
	Type() domain.ComponentType
	Probe(ctx context.Context) Outcome
}

// EventSink publishes events; the Kafka sink sends them to system-health.
type EventSink interface {
	Publish(ctx context.Context, ev events.Event) error
}

// Config tunes the monitor.
type Config struct {
	// Interval is the time between the starts of two probe cycles.
	Interval time.Duration
	// ProbeTimeout bounds each probe of a cycle; at most Interval.
	ProbeTimeout time.Duration
	Hysteresis   domain.HysteresisConfig
	// PublishEvery: a component's system.health_check event is published
	// when its status changes and otherwise every PublishEvery cycles.
	PublishEvery int
	// Producer names the service in event envelopes.
	Producer string
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval %s: must be positive", c.Interval))
	}
	if c.ProbeTimeout <= 0 || c.ProbeTimeout > c.Interval {
		errs = append(errs, fmt.Errorf("probe timeout %s: must be positive and at most the interval %s", c.ProbeTimeout, c.Interval))
	}
	if c.PublishEvery < 1 {
		errs = append(errs, fmt.Errorf("publish every %d cycles: must be at least 1", c.PublishEvery))
	}
	if c.Producer == "" {
		errs = append(errs, errors.New("producer is empty"))
	}
	if err := c.Hysteresis.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("monitor config: %w", err)
	}
	return nil
}

// Monitor runs probe cycles. RunCycle and Run may not be called concurrently
// with each other; cycles are serialised.
type Monitor struct {
	cfg     Config
	probes  []Probe
	sink    EventSink
	hub     *Hub
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time

	mu            sync.Mutex
	tracker       *domain.AlertTracker
	cycle         uint64
	lastPublished map[string]domain.Status
	lastMeasured  map[string]time.Time
}

// NewMonitor returns a monitor of probes publishing events to sink (nil
// publishes none) and statuses to hub, registering its metrics with reg.
func NewMonitor(cfg Config, probes []Probe, sink EventSink, hub *Hub, logger *slog.Logger, reg prometheus.Registerer) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if hub == nil || logger == nil {
		return nil, errors.New("monitor: hub and logger are required")
	}
	tracker, err := domain.NewAlertTracker(cfg.Hysteresis, func() string { return uuid.NewString() })
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Monitor{
		cfg: cfg, probes: probes, sink: sink, hub: hub, logger: logger, metrics: m, now: time.Now,
		tracker: tracker, lastPublished: make(map[string]domain.Status), lastMeasured: make(map[string]time.Time),
	}, nil
}

// Run runs a cycle at once and then every Interval until ctx is done.
func (m *Monitor) Run(ctx context.Context) error {
	ticker := time.NewTicker(m.cfg.Interval)
	defer ticker.Stop()
	for {
		m.RunCycle(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// RunCycle runs every probe concurrently, each within ProbeTimeout, updates
// the alerts, publishes the events and the new status, and returns it.
func (m *Monitor) RunCycle(ctx context.Context) domain.FleetStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := m.now()
	cpuStart := processCPU()

	outcomes := make([]Outcome, len(m.probes))
	var wg sync.WaitGroup
	for i, p := range m.probes {
		wg.Go(func() { outcomes[i] = m.runProbe(ctx, p) })
	}
	wg.Wait()

	m.cycle++
	status := domain.FleetStatus{Cycle: m.cycle}
	for _, o := range outcomes {
		status.Components = append(status.Components, o.Components...)
		status.Lags = append(status.Lags, o.Lags...)
		status.Canaries = append(status.Canaries, o.Canaries...)
		status.QueueDepths = append(status.QueueDepths, o.QueueDepths...)
	}
	status.Normalize()
	transitions := m.tracker.Observe(m.now(), status.Components)
	status.OpenAlerts = m.tracker.Open()
	m.publishEvents(ctx, status.Components, transitions)

	status.CycleCPU = processCPU() - cpuStart
	status.Generated = m.now()
	status.CycleDuration = status.Generated.Sub(start)
	m.record(status, transitions)
	m.hub.Publish(status)
	return status
}

// runProbe runs p within ProbeTimeout; a probe that overruns or panics
// reports its component unhealthy.
func (m *Monitor) runProbe(ctx context.Context, p Probe) Outcome {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ProbeTimeout)
	defer cancel()
	done := make(chan Outcome, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				m.logger.Error("probe panicked", slog.String("probe", p.Name()), slog.Any("panic", r))
				done <- failed(p, fmt.Sprintf("probe panicked: %v", r), m.now())
			}
		}()
		done <- p.Probe(ctx)
	}()
	select {
	case o := <-done:
		return o
	case <-ctx.Done():
		return failed(p, fmt.Sprintf("probe did not finish within %s", m.cfg.ProbeTimeout), m.now())
	}
}

func failed(p Probe, detail string, now time.Time) Outcome {
	return Outcome{Components: []domain.Component{{
		ID: p.Name(), Type: p.Type(), Status: domain.StatusUnhealthy, Detail: detail, Checked: now,
	}}}
}

// publishEvents publishes alert transitions, then a system.health_check for
// each component whose status changed since its last published event, and
// for every component every PublishEvery cycles. Unknown statuses are not
// published (the event schema has no such status).
func (m *Monitor) publishEvents(ctx context.Context, comps []domain.Component, transitions []domain.Transition) {
	if m.sink == nil {
		return
	}
	meta := events.Meta{Producer: m.cfg.Producer, UserID: m.cfg.Producer, Now: m.now}
	publish := func(p events.Payload) {
		ev, err := events.NewEvent(p, meta)
		if err == nil {
			err = m.sink.Publish(ctx, ev)
		}
		if err != nil {
			m.logger.WarnContext(ctx, "publish health event", slog.String("event_type", p.EventType()), slog.String("error", err.Error()))
		}
	}
	for _, t := range transitions {
		switch t.Kind {
		case domain.AlertRaised:
			publish(events.AlertRaised{AlertID: t.Alert.ID, ComponentID: t.Alert.ComponentID,
				Severity: events.AlertSeverity(t.Alert.Severity.String()), Message: t.Message})
		case domain.AlertResolved:
			publish(events.AlertResolved{AlertID: t.Alert.ID, ComponentID: t.Alert.ComponentID, Message: t.Message})
		}
	}
	periodic := m.cycle%uint64(m.cfg.PublishEvery) == 1 || m.cfg.PublishEvery == 1
	for _, c := range comps {
		if c.Status == domain.StatusUnknown {
			continue
		}
		if last, ok := m.lastPublished[c.ID]; ok && last == c.Status && !periodic {
			continue
		}
		ms := c.Latency.Milliseconds()
		publish(events.SystemHealthCheck{
			ComponentID:   c.ID,
			ComponentType: eventComponentType(c.Type),
			Status:        events.HealthStatus(c.Status.String()),
			Detail:        c.Detail,
			LatencyMS:     &ms,
			Metrics:       maps.Clone(c.Metrics),
		})
		m.lastPublished[c.ID] = c.Status
	}
}

// eventComponentType maps a component type onto the event schema's enum,
// which has no canary: a canary measures a broker round trip.
func eventComponentType(t domain.ComponentType) events.ComponentType {
	switch t {
	case domain.TypeBroker, domain.TypeCanary:
		return events.ComponentBroker
	case domain.TypeConsumerGroup:
		return events.ComponentConsumerGroup
	case domain.TypeTopic:
		return events.ComponentTopic
	case domain.TypeService:
		return events.ComponentService
	case domain.TypeDatabase:
		return events.ComponentDatabase
	case domain.TypeScheduler:
		return events.ComponentScheduler
	default:
		return events.ComponentUnknown
	}
}

func (m *Monitor) record(s domain.FleetStatus, transitions []domain.Transition) {
	m.metrics.cycleCPU.Observe(s.CycleCPU.Seconds())
	m.metrics.cycleDuration.Observe(s.CycleDuration.Seconds())
	m.metrics.lastCycleCPU.Set(s.CycleCPU.Seconds())
	m.metrics.componentStatus.Reset()
	for _, c := range s.Components {
		m.metrics.componentStatus.WithLabelValues(c.ID, c.Type.String()).Set(float64(c.Status))
	}
	m.metrics.lag.Reset()
	for _, l := range s.Lags {
		m.metrics.lag.WithLabelValues(l.Group, l.Topic).Set(float64(l.Lag))
	}
	for _, c := range s.Canaries {
		if c.MeasuredAt.IsZero() || !c.MeasuredAt.After(m.lastMeasured[c.CanaryID]) {
			continue
		}
		m.lastMeasured[c.CanaryID] = c.MeasuredAt
		m.metrics.canary.WithLabelValues(c.CanaryID).Observe(c.Latency.Seconds())
	}
	m.metrics.openAlerts.Set(float64(len(s.OpenAlerts)))
	for _, t := range transitions {
		kind := "raised"
		if t.Kind == domain.AlertResolved {
			kind = "resolved"
		}
		m.metrics.alerts.WithLabelValues(kind).Inc()
		m.logger.Warn("alert "+kind, slog.String("alert_id", t.Alert.ID),
			slog.String("component_id", t.Alert.ComponentID), slog.String("message", t.Message))
	}
}

// processCPU is the user plus system CPU time of the whole process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
