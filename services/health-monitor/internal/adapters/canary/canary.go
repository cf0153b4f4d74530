// Package canary sends synthetic events through Kafka and RabbitMQ and
// measures their round trip: published by the monitor, consumed back by it.
package canary

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// DefaultWindow is the number of round trips kept for percentiles.
const DefaultWindow = 1024

// roundTrip matches consumed canary messages with the probes waiting for
// them, by event id, and keeps the latency window of one canary.
type roundTrip struct {
	canaryID, componentID, dependsOn, producer string
	timeout                                    time.Duration
	codec                                      *events.Codec

	mu      sync.Mutex
	pending map[string]chan time.Time
	window  *domain.LatencyWindow
	last    domain.CanaryLatency
}

func newRoundTrip(canaryID, dependsOn, producer string, timeout time.Duration, codec *events.Codec) *roundTrip {
	return &roundTrip{
		canaryID: canaryID, componentID: "canary:" + canaryID, dependsOn: dependsOn, producer: producer,
		timeout: timeout, codec: codec,
		pending: make(map[string]chan time.Time), window: domain.NewLatencyWindow(DefaultWindow),
		last: domain.CanaryLatency{CanaryID: canaryID},
	}
}

// handle is the consumers' handler: it reports the arrival of a canary
// message; unknown ids (late or foreign messages) are ignored.
func (r *roundTrip) handle(_ context.Context, msg *bus.Message) error {
	at := time.Now()
	id := msg.Header(events.HeaderEventID)
	r.mu.Lock()
	ch := r.pending[id]
	delete(r.pending, id)
	r.mu.Unlock()
	if ch != nil {
		ch <- at
	}
	return nil
}

// message builds a canary event: a system.health_check of the canary's
// component, encoded with the events codec.
func (r *roundTrip) message() (*bus.Message, string, error) {
	ev, err := events.NewEvent(events.SystemHealthCheck{
		ComponentID: r.componentID, ComponentType: events.ComponentBroker,
		Status: events.HealthHealthy, Detail: "canary",
	}, events.Meta{Producer: r.producer, UserID: r.producer})
	if err != nil {
		return nil, "", err
	}
	msg, err := r.codec.Message(ev)
	if err != nil {
		return nil, "", err
	}
	return msg, ev.EventID, nil
}

// measure publishes one canary message with send and waits for it to come
// back within the timeout.
func (r *roundTrip) measure(ctx context.Context, send func(context.Context, *bus.Message) error) app.Outcome {
	start := time.Now()
	msg, id, err := r.message()
	if err != nil {
		return r.outcome(domain.StatusUnhealthy, fmt.Sprintf("build canary message: %v", err), start)
	}
	arrived := make(chan time.Time, 1)
	r.mu.Lock()
	r.pending[id] = arrived
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}()

	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	sent := time.Now()
	if err := send(ctx, msg); err != nil {
		return r.outcome(domain.StatusUnhealthy, fmt.Sprintf("publish: %v", err), start)
	}
	select {
	case at := <-arrived:
		lat := at.Sub(sent)
		r.mu.Lock()
		r.window.Add(lat)
		r.last = domain.CanaryLatency{
			CanaryID: r.canaryID, Latency: lat, MeasuredAt: at,
			P50: r.window.Percentile(50), P99: r.window.Percentile(99), Samples: r.window.Len(),
		}
		r.mu.Unlock()
		return r.outcome(domain.StatusHealthy, fmt.Sprintf("round trip %s", lat.Round(time.Microsecond)), start)
	case <-ctx.Done():
		return r.outcome(domain.StatusUnhealthy, fmt.Sprintf("canary did not return within %s", r.timeout), start)
	}
}

// outcome reports the canary component and the latest latencies.
func (r *roundTrip) outcome(s domain.Status, detail string, start time.Time) app.Outcome {
	r.mu.Lock()
	last := r.last
	r.mu.Unlock()
	c := domain.Component{
		ID: r.componentID, Type: domain.TypeCanary, Status: s, Detail: detail,
		Checked: time.Now(), Latency: time.Since(start), DependsOn: r.dependsOn,
	}
	if last.Samples > 0 {
		c.Metrics = map[string]float64{
			"round_trip_ms": float64(last.Latency.Microseconds()) / 1000,
			"p50_ms":        float64(last.P50.Microseconds()) / 1000,
			"p99_ms":        float64(last.P99.Microseconds()) / 1000,
		}
	}
	return app.Outcome{Components: []domain.Component{c}, Canaries: []domain.CanaryLatency{last}}
}

// Latencies returns the kept round-trip samples' P50 and P99 and their count.
func (r *roundTrip) Latencies() (p50, p99 time.Duration, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.window.Percentile(50), r.window.Percentile(99), r.window.Len()
}
