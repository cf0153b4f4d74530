package ports

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

//go:embed status.html
var statusPage []byte

// StatusView is the JSON form of a fleet status served on /status.json and
// in each /status/events message. Durations are in milliseconds.
type StatusView struct {
	Overall     string          `json:"overall"`
	Cycle       uint64          `json:"cycle"`
	GeneratedAt *time.Time      `json:"generated_at,omitempty"`
	CycleCPUMS  float64         `json:"cycle_cpu_ms"`
	CycleWallMS float64         `json:"cycle_wall_ms"`
	Components  []ComponentView `json:"components"`
	Lags        []LagView       `json:"consumer_group_lags"`
	Canaries    []CanaryView    `json:"canaries"`
	QueueDepths []QueueView     `json:"queue_depths"`
	OpenAlerts  []AlertView     `json:"open_alerts"`
}

// ComponentView is one component in StatusView.
type ComponentView struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Status    string    `json:"status"`
	Detail    string    `json:"detail"`
	CheckedAt time.Time `json:"checked_at"`
	LatencyMS float64   `json:"latency_ms"`
	// Metrics are the probe's numeric readings, as in system.health_check.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// LagView is one group/topic lag in StatusView.
type LagView struct {
	Group string `json:"group"`
	Topic string `json:"topic"`
	Lag   int64  `json:"lag"`
}

// CanaryView is one canary in StatusView.
type CanaryView struct {
	ID        string  `json:"id"`
	LatencyMS float64 `json:"latency_ms"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	Samples   int     `json:"samples"`
}

// QueueView is one RabbitMQ queue depth in StatusView.
type QueueView struct {
	VHost    string `json:"vhost"`
	Queue    string `json:"queue"`
	Messages int64  `json:"messages_ready"`
}

// AlertView is one open alert in StatusView.
type AlertView struct {
	ID          string    `json:"id"`
	ComponentID string    `json:"component_id"`
	Severity    string    `json:"severity"`
	Message     string    `json:"message"`
	RaisedAt    time.Time `json:"raised_at"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ToView converts a fleet status to its JSON form.
func ToView(s domain.FleetStatus) StatusView {
	v := StatusView{
		Overall: s.Overall.String(), Cycle: s.Cycle, CycleCPUMS: ms(s.CycleCPU), CycleWallMS: ms(s.CycleDuration),
		Components: []ComponentView{}, Lags: []LagView{}, Canaries: []CanaryView{}, QueueDepths: []QueueView{}, OpenAlerts: []AlertView{},
	}
	if !s.Generated.IsZero() {
		g := s.Generated
		v.GeneratedAt = &g
	}
	for _, c := range s.Components {
		v.Components = append(v.Components, ComponentView{ID: c.ID, Type: c.Type.String(), Status: c.Status.String(),
			Detail: c.Detail, CheckedAt: c.Checked, LatencyMS: ms(c.Latency), Metrics: c.Metrics})
	}
	for _, l := range s.Lags {
		v.Lags = append(v.Lags, LagView(l))
	}
	for _, c := range s.Canaries {
		v.Canaries = append(v.Canaries, CanaryView{ID: c.CanaryID, LatencyMS: ms(c.Latency), P50MS: ms(c.P50), P99MS: ms(c.P99), Samples: c.Samples})
	}
	for _, q := range s.QueueDepths {
		v.QueueDepths = append(v.QueueDepths, QueueView(q))
	}
	for _, a := range s.OpenAlerts {
		v.OpenAlerts = append(v.OpenAlerts, AlertView{ID: a.ID, ComponentID: a.ComponentID, Severity: a.Severity.String(),
			Message: a.Message, RaisedAt: a.RaisedAt})
	}
	return v
}

// StatusHandler serves the status page (/status), its data as JSON
// (/status.json) and a stream of server-sent events (/status/events) that
// carries the status at once and each new one after it.
type StatusHandler struct {
	hub       *app.Hub
	logger    *slog.Logger
	keepalive time.Duration
}

// NewStatusHandler returns the handler reading statuses from hub.
func NewStatusHandler(hub *app.Hub, logger *slog.Logger) *StatusHandler {
	return &StatusHandler{hub: hub, logger: logger, keepalive: 15 * time.Second}
}

// Register adds the handler's routes through handle (for example the
// service runtime's HandleHTTP).
func (h *StatusHandler) Register(handle func(pattern string, handler http.Handler)) {
	handle("GET /status", http.HandlerFunc(h.page))
	handle("GET /status.json", http.HandlerFunc(h.json))
	handle("GET /status/events", http.HandlerFunc(h.events))
}

func (h *StatusHandler) page(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(statusPage)
}

func (h *StatusHandler) json(w http.ResponseWriter, _ *http.Request) {
	st, _ := h.hub.Current()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ToView(st))
}

func (h *StatusHandler) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	ctx := r.Context()
	keepalive := time.NewTicker(h.keepalive)
	defer keepalive.Stop()
	for {
		st, changed := h.hub.Current()
		body, err := json.Marshal(ToView(st))
		if err != nil {
			h.logger.ErrorContext(ctx, "encode status", slog.String("error", err.Error()))
			return
		}
		if _, err := fmt.Fprintf(w, "event: status\nid: %d\ndata: %s\n\n", st.Cycle, body); err != nil {
			return
		}
		flusher.Flush()
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				break wait
			case <-keepalive.C:
				if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
					return
				}
				flusher.Flush()
			}
		}
	}
}
