package domain

import (
	"errors"
	"fmt"
	"time"
)

// TransitionKind tells whether an alert was raised or resolved.
type TransitionKind int

// The alert transitions.
const (
	AlertRaised TransitionKind = iota + 1
	AlertResolved
)

// Transition is an alert raised or resolved by one observation.
type Transition struct {
	Kind  TransitionKind
	Alert Alert
	// Message explains the transition (the component's detail).
	Message string
}

// HysteresisConfig sets how many consecutive cycles a component must be bad
// before an alert is raised, and good before it is resolved.
type HysteresisConfig struct {
	RaiseAfter   int
	ResolveAfter int
}

// DefaultHysteresisConfig raises after 2 bad cycles and resolves after 2 good ones.
func DefaultHysteresisConfig() HysteresisConfig {
	return HysteresisConfig{RaiseAfter: 2, ResolveAfter: 2}
}

// Validate reports counts below 1.
func (c HysteresisConfig) Validate() error {
	var errs []error
	if c.RaiseAfter < 1 {
		errs = append(errs, fmt.Errorf("raise after %d cycles: must be at least 1", c.RaiseAfter))
	}
	if c.ResolveAfter < 1 {
		errs = append(errs, fmt.Errorf("resolve after %d cycles: must be at least 1", c.ResolveAfter))
	}
	return errors.Join(errs...)
}

type track struct {
	bad, good int
	firstBad  time.Time
	open      *Alert
}

// AlertTracker turns a sequence of component observations into alerts with
// hysteresis: one alert per incident, raised after RaiseAfter consecutive bad
// (degraded or unhealthy) observations and resolved after ResolveAfter
// consecutive healthy ones. An unknown status, or a component missing from
// an observation, leaves its counters as they are. A component whose
// DependsOn component is bad raises nothing itself (the root cause alerts),
// but an alert it already has still resolves normally. It is not safe for
// concurrent use.
type AlertTracker struct {
	cfg    HysteresisConfig
	newID  func() string
	tracks map[string]*track
}

// NewAlertTracker returns a tracker; newID makes alert ids.
func NewAlertTracker(cfg HysteresisConfig, newID func() string) (*AlertTracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert tracker: %w", err)
	}
	if newID == nil {
		return nil, errors.New("alert tracker: newID is nil")
	}
	return &AlertTracker{cfg: cfg, newID: newID, tracks: make(map[string]*track)}, nil
}

// Observe records one cycle's components, observed at now, and returns the
// alerts raised and resolved by it, in component order.
func (t *AlertTracker) Observe(now time.Time, comps []Component) []Transition {
	statusOf := make(map[string]Status, len(comps))
	for _, c := range comps {
		statusOf[c.ID] = c.Status
	}
	var out []Transition
	for _, c := range comps {
		tr := t.tracks[c.ID]
		if tr == nil {
			tr = &track{}
			t.tracks[c.ID] = tr
		}
		status := c.Status
		if status.Bad() && c.DependsOn != "" && tr.open == nil && t.dependencyBad(c.DependsOn, statusOf) {
			// The dependency is the root cause; do not count towards an alert.
			tr.bad, tr.good = 0, 0
			continue
		}
		switch {
		case status.Bad():
			if tr.bad == 0 {
				tr.firstBad = now
			}
			tr.bad++
			tr.good = 0
			if tr.open == nil && tr.bad >= t.cfg.RaiseAfter {
				a := Alert{
					ID:          t.newID(),
					ComponentID: c.ID,
					Severity:    SeverityOf(status),
					Message:     alertMessage(c),
					RaisedAt:    tr.firstBad,
				}
				tr.open = &a
				out = append(out, Transition{Kind: AlertRaised, Alert: a, Message: a.Message})
			} else if tr.open != nil && SeverityOf(status) > tr.open.Severity {
				// Same incident, worse now: keep the alert, raise its severity.
				tr.open.Severity = SeverityOf(status)
				tr.open.Message = alertMessage(c)
			}
		case status == StatusHealthy:
			tr.good++
			tr.bad = 0
			if tr.open != nil && tr.good >= t.cfg.ResolveAfter {
				out = append(out, Transition{Kind: AlertResolved, Alert: *tr.open,
					Message: fmt.Sprintf("%s is healthy again", c.ID)})
				tr.open = nil
			}
		}
	}
	return out
}

// dependencyBad reports whether the component id is bad in this observation
// or has an open alert.
func (t *AlertTracker) dependencyBad(id string, statusOf map[string]Status) bool {
	if s, ok := statusOf[id]; ok && s.Bad() {
		return true
	}
	tr := t.tracks[id]
	return tr != nil && tr.open != nil
}

// Open returns the open alerts, most severe first.
func (t *AlertTracker) Open() []Alert {
	var out []Alert
	for _, tr := range t.tracks {
		if tr.open != nil {
			out = append(out, *tr.open)
		}
	}
	SortAlerts(out)
	return out
}

func alertMessage(c Component) string {
	if c.Detail == "" {
		return fmt.Sprintf("%s is %s", c.ID, c.Status)
	}
	return fmt.Sprintf("%s is %s: %s", c.ID, c.Status, c.Detail)
}
