package events

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/cosmic-horizons/fleet/schemas"
)

// Payload is one of the payload structs of this package (JobSubmitted,
// JobQueued, ..., AlertResolved). The interface is sealed.
type Payload interface {
	// EventType is the payload's event type name (a Type* constant).
	EventType() string
	// Topic is the Kafka topic the payload is published on.
	Topic() string
	// key is the message key of the payload's topic ("" for unkeyed topics).
	key() string
}

func (JobSubmitted) EventType() string        { return TypeJobSubmitted }
func (JobQueued) EventType() string           { return TypeJobQueued }
func (JobRunning) EventType() string          { return TypeJobRunning }
func (JobCompleted) EventType() string        { return TypeJobCompleted }
func (JobFailed) EventType() string           { return TypeJobFailed }
func (JobCancelled) EventType() string        { return TypeJobCancelled }
func (JobMetricsRecorded) EventType() string  { return TypeJobMetricsRecorded }
func (NotificationSent) EventType() string    { return TypeNotificationSent }
func (NotificationFailed) EventType() string  { return TypeNotificationFailed }
func (AuditActionRecorded) EventType() string { return TypeAuditActionRecorded }
func (SystemHealthCheck) EventType() string   { return TypeSystemHealthCheck }
func (AlertRaised) EventType() string         { return TypeAlertRaised }
func (AlertResolved) EventType() string       { return TypeAlertResolved }

func (JobSubmitted) Topic() string        { return TopicJobLifecycle }
func (JobQueued) Topic() string           { return TopicJobLifecycle }
func (JobRunning) Topic() string          { return TopicJobLifecycle }
func (JobCompleted) Topic() string        { return TopicJobLifecycle }
func (JobFailed) Topic() string           { return TopicJobLifecycle }
func (JobCancelled) Topic() string        { return TopicJobLifecycle }
func (JobMetricsRecorded) Topic() string  { return TopicJobMetrics }
func (NotificationSent) Topic() string    { return TopicNotifications }
func (NotificationFailed) Topic() string  { return TopicNotifications }
func (AuditActionRecorded) Topic() string { return TopicAuditTrail }
func (SystemHealthCheck) Topic() string   { return TopicSystemHealth }
func (AlertRaised) Topic() string         { return TopicSystemHealth }
func (AlertResolved) Topic() string       { return TopicSystemHealth }

func (p JobSubmitted) key() string        { return p.JobID }
func (p JobQueued) key() string           { return p.JobID }
func (p JobRunning) key() string          { return p.JobID }
func (p JobCompleted) key() string        { return p.JobID }
func (p JobFailed) key() string           { return p.JobID }
func (p JobCancelled) key() string        { return p.JobID }
func (p JobMetricsRecorded) key() string  { return p.JobID }
func (NotificationSent) key() string      { return "" }
func (NotificationFailed) key() string    { return "" }
func (p AuditActionRecorded) key() string { return p.ResourceID }
func (p SystemHealthCheck) key() string   { return p.ComponentID }
func (p AlertRaised) key() string         { return p.ComponentID }
func (p AlertResolved) key() string       { return p.ComponentID }

// PayloadTypes returns a zero value of every payload type, in schema order.
func PayloadTypes() []Payload {
	return []Payload{
		JobSubmitted{}, JobQueued{}, JobRunning{}, JobCompleted{}, JobFailed{}, JobCancelled{},
		JobMetricsRecorded{}, NotificationSent{}, NotificationFailed{}, AuditActionRecorded{},
		SystemHealthCheck{}, AlertRaised{}, AlertResolved{},
	}
}

// Event is an envelope with its typed payload.
type Event struct {
	Envelope
	Payload Payload `avro:"payload"`
}

// Topic returns the Kafka topic of the event, "" without a payload.
func (e Event) Topic() string {
	if e.Payload == nil {
		return ""
	}
	return e.Payload.Topic()
}

// Key returns the Kafka message key of the event: the job id on job topics,
// the resource id on audit-trail, the component id on system-health and ""
// (unkeyed) on notifications. The topic catalogue names the same fields.
func (e Event) Key() string {
	if e.Payload == nil {
		return ""
	}
	return e.Payload.key()
}

// Meta is what a producer tells NewEvent beyond the payload.
type Meta struct {
	// Producer is the publishing service's name. Required.
	Producer string
	// UserID is the actor: the user or service principal. Required.
	UserID string
	// CorrelationID ties the event to its originating request; empty makes
	// the event a root whose correlation id is its own event id.
	CorrelationID string
	// CausationID is the event or command that caused this one; empty for none.
	CausationID string
	// Sequence is the per-job sequence number on job topics; 0 elsewhere.
	Sequence int64
	Tags     map[string]string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewEvent builds an event around payload: a fresh UUIDv7 event id, the
// current time truncated to microseconds, the event type of the payload and
// the latest schema version of its topic.
func NewEvent(payload Payload, meta Meta) (Event, error) {
	if payload == nil {
		return Event{}, errors.New("new event: nil payload")
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("new event: event id: %w", err)
	}
	version, err := schemas.LatestVersion(payload.Topic())
	if err != nil {
		return Event{}, fmt.Errorf("new event: %w", err)
	}
	now := time.Now
	if meta.Now != nil {
		now = meta.Now
	}
	ev := Event{
		Envelope: Envelope{
			EventID:       id.String(),
			EventType:     payload.EventType(),
			OccurredAt:    now().UTC().Truncate(time.Microsecond),
			CorrelationID: meta.CorrelationID,
			UserID:        meta.UserID,
			Producer:      meta.Producer,
			SchemaVersion: int32(version),
			Sequence:      meta.Sequence,
			Tags:          meta.Tags,
		},
		Payload: payload,
	}
	if ev.CorrelationID == "" {
		ev.CorrelationID = ev.EventID
	}
	if meta.CausationID != "" {
		c := meta.CausationID
		ev.CausationID = &c
	}
	if err := ev.Validate(); err != nil {
		return Event{}, fmt.Errorf("new event: %w", err)
	}
	return ev, nil
}

// Validate reports the first thing wrong with the event's envelope or its
// agreement with the payload.
func (e Event) Validate() error {
	switch {
	case e.Payload == nil:
		return errors.New("event has no payload")
	case e.EventType != e.Payload.EventType():
		return fmt.Errorf("event_type %q does not match payload %T (%s)", e.EventType, e.Payload, e.Payload.EventType())
	case e.OccurredAt.IsZero():
		return errors.New("occurred_at is zero")
	case e.CorrelationID == "":
		return errors.New("correlation_id is empty")
	case e.Producer == "":
		return errors.New("producer is empty")
	case e.UserID == "":
		return errors.New("user_id is empty")
	case e.Sequence < 0:
		return fmt.Errorf("sequence %d is negative", e.Sequence)
	}
	if _, err := uuid.Parse(e.EventID); err != nil {
		return fmt.Errorf("event_id %q: %w", e.EventID, err)
	}
	if spec := topicKeys[e.Topic()]; spec != KeyNone && e.Key() == "" {
		return fmt.Errorf("%s: %s is empty but keys topic %s", e.EventType, spec, e.Topic())
	}
	return nil
}

// topicKeys mirrors the Key of each topic in the catalogue.
var topicKeys = map[string]KeyField{
	TopicJobLifecycle:  KeyJobID,
	TopicJobMetrics:    KeyJobID,
	TopicNotifications: KeyNone,
	TopicAuditTrail:    KeyResourceID,
	TopicSystemHealth:  KeyComponentID,
}
