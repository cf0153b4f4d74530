// Package app holds the notification-consumer's use cases: recording the
// deliveries a lifecycle event asks for (inside the inbox transaction),
// dispatching them with per-target concurrency and retries, relaying outcome
// events, and managing subscriptions and in-app notifications.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/telemetry"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/render"
)

// Recorder turns job lifecycle events into pending deliveries.
type Recorder struct {
	inbox    Inbox
	codec    *events.Codec
	renderer *render.Renderer
	logger   *slog.Logger
	now      func() time.Time
}

// NewRecorder returns a recorder that records through ib.
func NewRecorder(ib Inbox, codec *events.Codec, renderer *render.Renderer, logger *slog.Logger) *Recorder {
	return &Recorder{inbox: ib, codec: codec, renderer: renderer, logger: logger, now: time.Now}
}

// Handle records one message once, through the inbox: the bus handler of
// the job-lifecycle consumer.
func (r *Recorder) Handle(ctx context.Context, msg *bus.Message) error {
	return r.inbox.Apply(ctx, msg, r.Apply)
}

// Apply is the work of one lifecycle event: inside the inbox transaction it
// remembers job names and records one pending delivery per (event, channel,
// target) the user's subscriptions ask for. An event that does not decode
// fails permanently (dead-lettered).
func (r *Recorder) Apply(ctx context.Context, tx RecordTx, msg *bus.Message, eventID string) error {
	// The consumed topic may be a copy of job-lifecycle under another name;
	// its messages use the job-lifecycle schemas.
	decoded := *msg
	if !strings.HasSuffix(decoded.Topic, events.DLQSuffix) {
		decoded.Topic = events.TopicJobLifecycle
	}
	ev, err := r.codec.FromMessage(&decoded)
	if err != nil {
		return err
	}
	data, ok := describe(ev)
	if !ok {
		return nil
	}
	now := r.now()
	if p, isSubmitted := ev.Payload.(events.JobSubmitted); isSubmitted {
		if err := tx.UpsertJob(ctx, p.JobID, p.UserID, p.JobName, now); err != nil {
			return err
		}
	} else {
		name, err := tx.JobName(ctx, data.JobID)
		if err != nil {
			return err
		}
		data.JobName = name
	}
	if data.JobName == "" {
		data.JobName = data.JobID
	}
	subs, err := tx.Subscriptions(ctx, data.UserID, data.JobID)
	if err != nil {
		return err
	}
	selected := SelectSubscriptions(subs, data.JobID, data.EventType)
	if len(selected) == 0 {
		return nil
	}
	subject, body, err := r.renderer.Render(data)
	if err != nil {
		return bus.Permanent(fmt.Errorf("event %s: %w", eventID, err))
	}
	trace := map[string]string{}
	telemetry.Inject(ctx, trace)
	for _, sub := range selected {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("delivery id: %w", err)
		}
		d := domain.Delivery{
			ID: id.String(), EventID: eventID, EventType: data.EventType, CorrelationID: ev.CorrelationID, UserID: data.UserID, JobID: data.JobID,
			SubscriptionID: sub.ID, Channel: sub.Channel, Target: sub.Target, SecretRef: sub.SecretRef,
			Subject: subject, Body: body, Status: domain.StatusPending, NextAttemptAt: now, CreatedAt: now,
			TraceParent: trace[telemetry.HeaderTraceparent],
		}
		if sub.Channel == domain.ChannelInApp {
			d.Target = domain.InAppTarget(data.UserID)
		}
		d.TargetKey = TargetKey(d)
		if sub.Channel == domain.ChannelWebhook {
			if d.Payload, err = render.Webhook(d.ID, subject, data); err != nil {
				return bus.Permanent(err)
			}
		}
		if _, err := tx.InsertDelivery(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// SelectSubscriptions picks the subscriptions that apply to an event of
// jobID: per channel, the job's own subscriptions when it has any (they
// override the defaults), otherwise the user's defaults; then those whose
// event types include eventType.
func SelectSubscriptions(subs []domain.Subscription, jobID, eventType string) []domain.Subscription {
	overridden := map[domain.Channel]bool{}
	for _, s := range subs {
		if s.JobID != "" && s.JobID == jobID {
			overridden[s.Channel] = true
		}
	}
	var out []domain.Subscription
	for _, s := range subs {
		if s.JobID == "" && overridden[s.Channel] {
			continue
		}
		if s.JobID != "" && s.JobID != jobID {
			continue
		}
		if s.Matches(eventType) {
			out = append(out, s)
		}
	}
	return out
}

// TargetKey groups deliveries for per-target concurrency: one webhook host,
// one email address, one user's in-app queue.
func TargetKey(d domain.Delivery) string {
	switch d.Channel {
	case domain.ChannelWebhook:
		if u, err := url.Parse(d.Target); err == nil && u.Host != "" {
			return "webhook:" + strings.ToLower(u.Host)
		}
	case domain.ChannelEmail:
		return "email:" + strings.ToLower(d.Target)
	}
	return strings.ToLower(string(d.Channel)) + ":" + d.Target
}

// describe extracts the template data of a lifecycle event; false for
// events that are not job lifecycle events.
func describe(ev events.Event) (render.Data, bool) {
	d := render.Data{EventID: ev.EventID, EventType: ev.EventType, OccurredAt: ev.OccurredAt}
	switch p := ev.Payload.(type) {
	case events.JobSubmitted:
		d.JobID, d.UserID, d.JobName, d.Status = p.JobID, p.UserID, p.JobName, string(p.ToStatus)
	case events.JobQueued:
		d.JobID, d.UserID, d.Status = p.JobID, p.UserID, string(p.ToStatus)
	case events.JobRunning:
		d.JobID, d.UserID, d.Status = p.JobID, p.UserID, string(p.ToStatus)
	case events.JobCompleted:
		d.JobID, d.UserID, d.Status = p.JobID, p.UserID, string(p.ToStatus)
		d.RunTime = time.Duration(p.RunTimeMS) * time.Millisecond
	case events.JobFailed:
		d.JobID, d.UserID, d.Status = p.JobID, p.UserID, string(p.ToStatus)
		d.RunTime = time.Duration(p.RunTimeMS) * time.Millisecond
		d.ErrorCode, d.ErrorMessage = p.ErrorCode, p.ErrorMessage
	case events.JobCancelled:
		d.JobID, d.UserID, d.Status, d.Reason = p.JobID, p.UserID, string(p.ToStatus), p.Reason
	default:
		return render.Data{}, false
	}
	if d.Status == "" {
		d.Status = strings.ToUpper(strings.TrimPrefix(ev.EventType, "job."))
	}
	return d, true
}
