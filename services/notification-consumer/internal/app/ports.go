package app

import (
	"context"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

// The interfaces below are what the use cases need from the outside world;
// the adapters implement them and internal/service wires them.

// RecordTx is the store seen from inside one inbox transaction: what
// recording a lifecycle event reads and writes, committed with its dedup
// mark or not at all. A retried transaction comes with a new RecordTx.
type RecordTx interface {
	// Subscriptions returns userID's enabled subscriptions that apply to
	// jobID: its defaults plus its overrides for jobID.
	Subscriptions(ctx context.Context, userID, jobID string) ([]domain.Subscription, error)
	// UpsertJob remembers a job's owner and name.
	UpsertJob(ctx context.Context, jobID, userID, name string, now time.Time) error
	// JobName returns the job's name, "" when unknown.
	JobName(ctx context.Context, jobID string) (string, error)
	// InsertDelivery records a pending delivery unless one with the same
	// (event_id, channel, target) exists; it reports whether it inserted.
	InsertDelivery(ctx context.Context, d domain.Delivery) (bool, error)
}

// RecordWork is the effect of one event inside the inbox transaction.
type RecordWork = func(ctx context.Context, tx RecordTx, msg *bus.Message, eventID string) error

// Inbox is the transactional inbox as a unit of work: it applies each event
// at most once, in one transaction with its dedup mark and offset
// (inbox.UnitOfWork satisfies it).
type Inbox interface {
	Apply(ctx context.Context, msg *bus.Message, work RecordWork) error
}

// DeliveryStore is what the dispatcher reads and writes.
type DeliveryStore interface {
	// Due returns up to limit pending deliveries due at now and not leased,
	// earliest first, leaving out those whose target key is in skipKeys.
	Due(ctx context.Context, now time.Time, limit int, skipKeys []string) ([]domain.Delivery, error)
	// ClaimBatch leases the deliveries ids until leaseUntil and returns the
	// attempt number of each one it claimed.
	ClaimBatch(ctx context.Context, ids []string, now, leaseUntil time.Time) (map[string]int, error)
	// Renew extends the lease of attempt of delivery id.
	Renew(ctx context.Context, id string, attempt int, leaseUntil time.Time) error
	// Record stores the outcome of an attempt and, in the same transaction,
	// the outbox messages announcing it; false when the attempt was superseded.
	Record(ctx context.Context, o domain.Outcome, msgs []*bus.Message) (bool, error)
}

// Waker is woken after each recorded outcome: the outbox relay, which then
// publishes the outcome's events at once.
type Waker interface {
	Wake()
}

// SubscriptionStore keeps subscriptions and the in-app notifications.
type SubscriptionStore interface {
	CreateSubscription(ctx context.Context, sub domain.Subscription) error
	ListSubscriptions(ctx context.Context, userID, jobID string, pageSize int, token string) ([]domain.Subscription, string, error)
	DeleteSubscription(ctx context.Context, userID, id string) error
	ListNotifications(ctx context.Context, userID, jobID string, unreadOnly bool, pageSize int, token string) ([]domain.Delivery, string, int64, error)
	MarkRead(ctx context.Context, userID string, ids []string, all bool, now time.Time) (int64, error)
}
