// Package domain holds the health-monitor's model: component health, the
// fleet status assembled from it, alert hysteresis and latency windows.
// It does no I/O.
package domain

import (
	"slices"
	"strings"
	"time"
)

// Status is the health of a component or of the whole fleet.
type Status int

// The health states, in increasing order of badness (see Rank).
const (
	StatusUnknown Status = iota
	StatusHealthy
	StatusDegraded
	StatusUnhealthy
)

// String returns the upper-case name used in events, JSON and the status page.
func (s Status) String() string {
	switch s {
	case StatusHealthy:
		return "HEALTHY"
	case StatusDegraded:
		return "DEGRADED"
	case StatusUnhealthy:
		return "UNHEALTHY"
	default:
		return "UNKNOWN"
	}
}

// Bad reports whether s counts towards raising an alert.
func (s Status) Bad() bool { return s == StatusDegraded || s == StatusUnhealthy }

// rank orders statuses for Worst: healthy < unknown < degraded < unhealthy.
func (s Status) rank() int {
	switch s {
	case StatusHealthy:
		return 0
	case StatusUnknown:
		return 1
	case StatusDegraded:
		return 2
	default:
		return 3
	}
}

// Worst returns the worst of statuses, StatusUnknown when there are none.
func Worst(statuses ...Status) Status {
	if len(statuses) == 0 {
		return StatusUnknown
	}
	w := statuses[0]
	for _, s := range statuses[1:] {
		if s.rank() > w.rank() {
			w = s
		}
	}
	return w
}

// ComponentType is the kind of a monitored component.
type ComponentType int

// The component kinds.
const (
	TypeUnspecified ComponentType = iota
	TypeBroker
	TypeConsumerGroup
	TypeTopic
	TypeService
	TypeDatabase
	TypeCanary
	TypeScheduler
)

// String returns the upper-case name used in JSON and on the status page.
func (t ComponentType) String() string {
	switch t {
	case TypeBroker:
		return "BROKER"
	case TypeConsumerGroup:
		return "CONSUMER_GROUP"
	case TypeTopic:
		return "TOPIC"
	case TypeService:
		return "SERVICE"
	case TypeDatabase:
		return "DATABASE"
	case TypeCanary:
		return "CANARY"
	case TypeScheduler:
		return "SCHEDULER"
	default:
		return "UNSPECIFIED"
	}
}

// Component is the latest probe result of one monitored component.
type Component struct {
	ID      string
	Type    ComponentType
	Status  Status
	Detail  string
	Checked time.Time
	Latency time.Duration
	// DependsOn names the component this one cannot work without (a canary
	// through RabbitMQ depends on the RabbitMQ broker). While the dependency
	// is bad, this component raises no alert of its own.
	DependsOn string
	// Metrics are numbers published with the system.health_check event.
	Metrics map[string]float64
}

// GroupLag is how far a consumer group is behind on one topic.
type GroupLag struct {
	Group string
	Topic string
	Lag   int64
}

// CanaryLatency is the latest round trip of one canary and its percentiles
// over the kept samples.
type CanaryLatency struct {
	CanaryID   string
	Latency    time.Duration
	MeasuredAt time.Time
	P50        time.Duration
	P99        time.Duration
	Samples    int
}

// QueueDepth is the number of messages ready in one RabbitMQ queue.
type QueueDepth struct {
	VHost    string
	Queue    string
	Messages int64
}

// Severity is how urgent an alert is.
type Severity int

// The alert severities.
const (
	SeverityInfo Severity = iota + 1
	SeverityWarning
	SeverityCritical
)

// String returns the upper-case name used in events and JSON.
func (s Severity) String() string {
	switch s {
	case SeverityInfo:
		return "INFO"
	case SeverityWarning:
		return "WARNING"
	case SeverityCritical:
		return "CRITICAL"
	default:
		return "UNSPECIFIED"
	}
}

// SeverityOf is the severity of an alert about a component in status s.
func SeverityOf(s Status) Severity {
	if s == StatusUnhealthy {
		return SeverityCritical
	}
	return SeverityWarning
}

// Alert is a condition raised and not yet resolved.
type Alert struct {
	ID          string
	ComponentID string
	Severity    Severity
	Message     string
	RaisedAt    time.Time
}

// FleetStatus is the health of the whole fleet after one probe cycle.
type FleetStatus struct {
	Overall     Status
	Components  []Component
	Lags        []GroupLag
	Canaries    []CanaryLatency
	QueueDepths []QueueDepth
	OpenAlerts  []Alert
	Generated   time.Time
	// Cycle counts probe cycles since start; 0 before the first one.
	Cycle uint64
	// CycleCPU is the process CPU time (user+system) spent during the
	// probe cycle; CycleDuration its wall time.
	CycleCPU      time.Duration
	CycleDuration time.Duration
}

// Normalize sorts every list into its reported order (components, lags,
// canaries and queues by name, alerts most severe first) and sets Overall
// to the worst component status, or StatusUnknown without components.
func (f *FleetStatus) Normalize() {
	slices.SortFunc(f.Components, func(a, b Component) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(f.Lags, func(a, b GroupLag) int {
		if c := strings.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		return strings.Compare(a.Topic, b.Topic)
	})
	slices.SortFunc(f.Canaries, func(a, b CanaryLatency) int { return strings.Compare(a.CanaryID, b.CanaryID) })
	slices.SortFunc(f.QueueDepths, func(a, b QueueDepth) int {
		if c := strings.Compare(a.VHost, b.VHost); c != 0 {
			return c
		}
		return strings.Compare(a.Queue, b.Queue)
	})
	SortAlerts(f.OpenAlerts)
	statuses := make([]Status, len(f.Components))
	for i, c := range f.Components {
		statuses[i] = c.Status
	}
	f.Overall = Worst(statuses...)
}

// SortAlerts orders alerts most severe first, then oldest first, then by id.
func SortAlerts(alerts []Alert) {
	slices.SortFunc(alerts, func(a, b Alert) int {
		if a.Severity != b.Severity {
			return int(b.Severity) - int(a.Severity)
		}
		if c := a.RaisedAt.Compare(b.RaisedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ComponentID, b.ComponentID)
	})
}
