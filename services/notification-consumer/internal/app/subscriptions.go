package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

// Paging limits of the list calls.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
	MaxMarkReadIDs  = 500
)

// Principal is the authenticated caller.
type Principal struct {
	UserID string
	Admin  bool
}

// Notifications holds the use cases of the NotificationService API.
type Notifications struct {
	store SubscriptionStore
	rules domain.ValidationRules
	now   func() time.Time
}

// NewNotifications returns the API use cases with the deployment's validation rules.
func NewNotifications(st SubscriptionStore, rules domain.ValidationRules) *Notifications {
	return &Notifications{store: st, rules: rules, now: time.Now}
}

// CreateSubscription validates and stores a subscription of the caller.
func (n *Notifications) CreateSubscription(ctx context.Context, p Principal, in domain.Subscription) (domain.Subscription, error) {
	in.UserID = p.UserID
	sub, err := domain.NormalizeSubscription(in, n.rules)
	if err != nil {
		return domain.Subscription{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return domain.Subscription{}, fmt.Errorf("subscription id: %w", err)
	}
	sub.ID, sub.Enabled, sub.CreatedAt = id.String(), true, n.now().UTC().Truncate(time.Microsecond)
	if err := n.store.CreateSubscription(ctx, sub); err != nil {
		return domain.Subscription{}, err
	}
	return sub, nil
}

// ListSubscriptions lists a user's subscriptions; userID "" is the caller.
func (n *Notifications) ListSubscriptions(ctx context.Context, p Principal, userID, jobID string, pageSize int, token string) ([]domain.Subscription, string, error) {
	owner, size, err := n.scope(p, userID, pageSize)
	if err != nil {
		return nil, "", err
	}
	subs, next, err := n.store.ListSubscriptions(ctx, owner, jobID, size, token)
	return subs, next, pageTokenError(err)
}

// DeleteSubscription deletes one of the caller's subscriptions.
func (n *Notifications) DeleteSubscription(ctx context.Context, p Principal, id string) error {
	if id == "" {
		v := domain.ValidationError{}
		v.Add("id", "required")
		return &v
	}
	return n.store.DeleteSubscription(ctx, p.UserID, id)
}

// ListNotifications lists a user's in-app notifications, newest first.
func (n *Notifications) ListNotifications(ctx context.Context, p Principal, userID, jobID string, unreadOnly bool, pageSize int, token string) ([]domain.Delivery, string, int64, error) {
	owner, size, err := n.scope(p, userID, pageSize)
	if err != nil {
		return nil, "", 0, err
	}
	list, next, unread, err := n.store.ListNotifications(ctx, owner, jobID, unreadOnly, size, token)
	return list, next, unread, pageTokenError(err)
}

// MarkRead marks the caller's notifications read: ids, or all of them.
func (n *Notifications) MarkRead(ctx context.Context, p Principal, ids []string, all bool) (int64, error) {
	var v domain.ValidationError
	switch {
	case all && len(ids) > 0:
		v.Add("ids", "give either ids or all, not both")
	case !all && len(ids) == 0:
		v.Add("ids", "give ids or set all")
	case len(ids) > MaxMarkReadIDs:
		v.Add("ids", "at most %d ids", MaxMarkReadIDs)
	}
	if err := v.Err(); err != nil {
		return 0, err
	}
	return n.store.MarkRead(ctx, p.UserID, ids, all, n.now())
}

func (n *Notifications) scope(p Principal, userID string, pageSize int) (string, int, error) {
	var v domain.ValidationError
	if pageSize < 0 || pageSize > MaxPageSize {
		v.Add("page_size", "must be between 0 and %d", MaxPageSize)
	}
	if err := v.Err(); err != nil {
		return "", 0, err
	}
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	if userID == "" || userID == p.UserID {
		return p.UserID, pageSize, nil
	}
	if !p.Admin {
		return "", 0, fmt.Errorf("list user %s: %w", userID, domain.ErrPermissionDenied)
	}
	return userID, pageSize, nil
}

func pageTokenError(err error) error {
	if errors.Is(err, domain.ErrBadPageToken) {
		v := domain.ValidationError{}
		v.Add("page_token", "malformed page token")
		return &v
	}
	return err
}
