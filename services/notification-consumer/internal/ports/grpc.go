// Package ports exposes the notification-consumer over gRPC
// (fleet.notification.v1.NotificationService) and maps domain errors to
// gRPC status codes in one table.
package ports

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/grpcerr"
	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

// Authenticator identifies the caller of a request.
type Authenticator interface {
	Principal(ctx context.Context) (app.Principal, error)
}

// JWTAuthenticator returns the caller that the auth interceptors verified
// from the call's bearer JWT: the token's subject is the user, a role claim
// listed in AUTH_ADMIN_ROLES (default admin) makes an admin. A call that
// reached the handler without a verified principal is unauthenticated.
type JWTAuthenticator struct{}

// Principal returns the verified caller of ctx.
func (JWTAuthenticator) Principal(ctx context.Context) (app.Principal, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok || strings.TrimSpace(p.UserID) == "" {
		return app.Principal{}, domain.ErrUnauthenticated
	}
	return app.Principal{UserID: p.UserID, Admin: p.Admin}, nil
}

// Server implements notificationpb.NotificationServiceServer.
type Server struct {
	notificationpb.UnimplementedNotificationServiceServer
	app  *app.Notifications
	auth Authenticator
}

// NewServer returns the gRPC server of the use cases.
func NewServer(a *app.Notifications, auth Authenticator) *Server {
	return &Server{app: a, auth: auth}
}

// CreateSubscription implements the RPC.
func (s *Server) CreateSubscription(ctx context.Context, req *notificationpb.CreateSubscriptionRequest) (*notificationpb.CreateSubscriptionResponse, error) {
	p, err := s.auth.Principal(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	sub, err := s.app.CreateSubscription(ctx, p, domain.Subscription{
		JobID: req.GetJobId(), Channel: channelFromPB(req.GetChannel()), Target: req.GetTarget(),
		EventTypes: req.GetEventTypes(), SecretRef: req.GetWebhookSecretRef(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &notificationpb.CreateSubscriptionResponse{Subscription: subscriptionToPB(sub)}, nil
}

// ListSubscriptions implements the RPC.
func (s *Server) ListSubscriptions(ctx context.Context, req *notificationpb.ListSubscriptionsRequest) (*notificationpb.ListSubscriptionsResponse, error) {
	p, err := s.auth.Principal(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	subs, next, err := s.app.ListSubscriptions(ctx, p, req.GetUserId(), req.GetJobId(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &notificationpb.ListSubscriptionsResponse{NextPageToken: next}
	for _, sub := range subs {
		out.Subscriptions = append(out.Subscriptions, subscriptionToPB(sub))
	}
	return out, nil
}

// DeleteSubscription implements the RPC.
func (s *Server) DeleteSubscription(ctx context.Context, req *notificationpb.DeleteSubscriptionRequest) (*notificationpb.DeleteSubscriptionResponse, error) {
	p, err := s.auth.Principal(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.app.DeleteSubscription(ctx, p, req.GetId()); err != nil {
		return nil, toStatus(err)
	}
	return &notificationpb.DeleteSubscriptionResponse{}, nil
}

// ListNotifications implements the RPC.
func (s *Server) ListNotifications(ctx context.Context, req *notificationpb.ListNotificationsRequest) (*notificationpb.ListNotificationsResponse, error) {
	p, err := s.auth.Principal(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	list, next, unread, err := s.app.ListNotifications(ctx, p, req.GetUserId(), req.GetJobId(), req.GetUnreadOnly(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &notificationpb.ListNotificationsResponse{NextPageToken: next, UnreadCount: unread}
	for _, d := range list {
		out.Notifications = append(out.Notifications, notificationToPB(d))
	}
	return out, nil
}

// MarkRead implements the RPC.
func (s *Server) MarkRead(ctx context.Context, req *notificationpb.MarkReadRequest) (*notificationpb.MarkReadResponse, error) {
	p, err := s.auth.Principal(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	n, err := s.app.MarkRead(ctx, p, req.GetIds(), req.GetAll())
	if err != nil {
		return nil, toStatus(err)
	}
	return &notificationpb.MarkReadResponse{UpdatedCount: n}, nil
}

// errorCodes is the one table from domain errors to gRPC codes; a
// *domain.ValidationError is InvalidArgument with one field violation per
// field (libs/grpcerr). Anything else (a database or driver error) is not
// the client's business: Internal with a generic message, never the
// error's text.
var errorCodes = grpcerr.Table{Rules: append([]grpcerr.Rule{
	{Err: domain.ErrNotFound, Code: codes.NotFound, Message: "not found"},
	{Err: domain.ErrPermissionDenied, Code: codes.PermissionDenied, Message: "only an admin may act for another user"},
	{Err: domain.ErrUnauthenticated, Code: codes.Unauthenticated, Message: "missing or invalid caller identity"},
}, grpcerr.Context...), Fallback: grpcerr.Rule{Code: codes.Internal, Message: "internal error"}}

// toStatus converts a use-case error into a gRPC status error.
func toStatus(err error) error {
	return errorCodes.Status(context.Background(), nil, "", err)
}

func channelFromPB(c notificationpb.Channel) domain.Channel {
	switch c {
	case notificationpb.Channel_CHANNEL_EMAIL:
		return domain.ChannelEmail
	case notificationpb.Channel_CHANNEL_WEBHOOK:
		return domain.ChannelWebhook
	case notificationpb.Channel_CHANNEL_IN_APP:
		return domain.ChannelInApp
	}
	return ""
}

func channelToPB(c domain.Channel) notificationpb.Channel {
	switch c {
	case domain.ChannelEmail:
		return notificationpb.Channel_CHANNEL_EMAIL
	case domain.ChannelWebhook:
		return notificationpb.Channel_CHANNEL_WEBHOOK
	case domain.ChannelInApp:
		return notificationpb.Channel_CHANNEL_IN_APP
	}
	return notificationpb.Channel_CHANNEL_UNSPECIFIED
}

func statusToPB(s domain.Status) notificationpb.NotificationStatus {
	switch s {
	case domain.StatusPending:
		return notificationpb.NotificationStatus_NOTIFICATION_STATUS_PENDING
	case domain.StatusSent:
		return notificationpb.NotificationStatus_NOTIFICATION_STATUS_SENT
	case domain.StatusFailed:
		return notificationpb.NotificationStatus_NOTIFICATION_STATUS_FAILED
	}
	return notificationpb.NotificationStatus_NOTIFICATION_STATUS_UNSPECIFIED
}

func subscriptionToPB(s domain.Subscription) *notificationpb.Subscription {
	return &notificationpb.Subscription{
		Id: s.ID, UserId: s.UserID, JobId: s.JobID, Channel: channelToPB(s.Channel), Target: s.Target,
		EventTypes: s.EventTypes, Enabled: s.Enabled, WebhookSecretRef: s.SecretRef, CreatedAt: timestamppb.New(s.CreatedAt),
	}
}

func notificationToPB(d domain.Delivery) *notificationpb.Notification {
	n := &notificationpb.Notification{
		Id: d.ID, UserId: d.UserID, JobId: d.JobID, Channel: channelToPB(d.Channel), Subject: d.Subject,
		Body: d.Body, Status: statusToPB(d.Status), CreatedAt: timestamppb.New(d.CreatedAt),
	}
	if d.ReadAt != nil {
		n.ReadAt = timestamppb.New(*d.ReadAt)
	}
	return n
}
