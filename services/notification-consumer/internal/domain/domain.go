// Package domain holds the notification-consumer's types and rules: channels,
// subscriptions, deliveries, event-type filters and the classification of
// delivery failures. It does no I/O.
package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/validation"
)

// Channel is how a notification is delivered. The values match
// events.NotificationChannel so they travel unchanged into notification events.
type Channel string

// The delivery channels.
const (
	ChannelEmail   Channel = Channel(events.ChannelEmail)
	ChannelWebhook Channel = Channel(events.ChannelWebhook)
	ChannelInApp   Channel = Channel(events.ChannelInApp)
)

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool {
	return c == ChannelEmail || c == ChannelWebhook || c == ChannelInApp
}

// Status is the delivery state of a notification.
type Status string

// The delivery states.
const (
	StatusPending Status = "PENDING"
	StatusSent    Status = "SENT"
	StatusFailed  Status = "FAILED"
)

// Job lifecycle event types a subscription may name, plus the shorthand
// EventTypeTerminal, which stands for the three terminal ones.
var (
	LifecycleEventTypes = []string{
		events.TypeJobSubmitted, events.TypeJobQueued, events.TypeJobRunning,
		events.TypeJobCompleted, events.TypeJobFailed, events.TypeJobCancelled,
	}
	TerminalEventTypes = []string{events.TypeJobCompleted, events.TypeJobFailed, events.TypeJobCancelled}
)

// EventTypeTerminal is shorthand for job.completed, job.failed and job.cancelled.
const EventTypeTerminal = "job.terminal"

// Subscription asks for notifications about job lifecycle events.
type Subscription struct {
	ID     string
	UserID string
	// JobID limits the subscription to one job; empty makes it a default
	// for all of the user's jobs. For a channel, per-job subscriptions of a
	// job replace the user's defaults of that channel for that job.
	JobID      string
	Channel    Channel
	Target     string
	EventTypes []string
	Enabled    bool
	SecretRef  string
	CreatedAt  time.Time
}

// Matches reports whether the subscription asks for eventType.
func (s Subscription) Matches(eventType string) bool {
	return s.Enabled && slices.Contains(s.EventTypes, eventType)
}

// Delivery is one notification to one target, from one event: the unit that
// is sent, retried and recorded. (EventID, Channel, Target) is unique.
type Delivery struct {
	ID        string
	EventID   string
	EventType string
	// CorrelationID is the source event's; outcome events carry it on.
	CorrelationID string
	// TraceParent is the W3C traceparent of the source event's processing;
	// the delivery and its outcome event continue that trace.
	TraceParent    string
	UserID         string
	JobID          string
	SubscriptionID string
	Channel        Channel
	Target         string
	// TargetKey groups deliveries that share a destination (a webhook host,
	// an email address, a user's in-app queue) for per-target concurrency.
	TargetKey     string
	SecretRef     string
	Subject       string
	Body          string
	Payload       []byte // webhook JSON body
	Status        Status
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	CreatedAt     time.Time
	SentAt        *time.Time
	ReadAt        *time.Time
}

// InAppTarget is the target of an in-app delivery: the user it goes to.
func InAppTarget(userID string) string { return "user:" + userID }

// MessageID is the stable RFC 5322 Message-ID of the email for (eventID,
// channel, target): a resend after a crash carries the same id.
func MessageID(eventID string, channel Channel, target, domain string) string {
	sum := sha256.Sum256([]byte(eventID + "\x00" + string(channel) + "\x00" + strings.ToLower(target)))
	return "<" + hex.EncodeToString(sum[:16]) + "@" + domain + ">"
}

// SendError classifies a failed delivery attempt.
type SendError struct {
	Err error
	// Permanent failures are not retried.
	Permanent bool
	// RetryAfter is the earliest retry the receiver asked for; 0 for none.
	RetryAfter time.Duration
}

func (e *SendError) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("%s: %v", kind, e.Err)
}

func (e *SendError) Unwrap() error { return e.Err }

// Transient wraps err as a failure worth retrying, not before retryAfter.
func Transient(err error, retryAfter time.Duration) error {
	return &SendError{Err: err, RetryAfter: retryAfter}
}

// Permanent wraps err as a failure that retrying cannot fix.
func Permanent(err error) error { return &SendError{Err: err, Permanent: true} }

// Classify reports whether err is permanent and the retry delay it asks
// for. Errors not classified by a channel are transient.
func Classify(err error) (permanent bool, retryAfter time.Duration) {
	var se *SendError
	if errors.As(err, &se) {
		return se.Permanent, se.RetryAfter
	}
	return false, 0
}

// Errors of the use cases, mapped to gRPC codes in ports.
var (
	ErrNotFound         = errors.New("not found")
	ErrPermissionDenied = errors.New("permission denied")
	ErrUnauthenticated  = errors.New("unauthenticated")
)

// FieldViolation is one invalid input field.
type FieldViolation = validation.FieldViolation

// ValidationError lists every invalid field of a request (the fleet's one
// validation error, libs/validation).
type ValidationError = validation.Error
