package ports_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/service/servicefuzz"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/ports"
)

// fuzzNotifications fuzzes one NotificationService method through the
// runtime's real interceptors and the JWT interceptors, over a SQLite store
// holding a subscription and three in-app notifications for each of
// servicefuzz.FuzzUser and servicefuzz.FuzzOtherUser. Besides the row counts,
// the state counts read notifications, so a refused MarkRead that marked
// something is caught.
func fuzzNotifications(f *testing.F, method string) (*servicefuzz.Server, protoreflect.MethodDescriptor, servicefuzz.State) {
	ctx := context.Background()
	db := sqlstoretest.OpenURL(f, "sqlite://"+filepath.Join(f.TempDir(), "notifications.db"))
	require.NoError(f, inbox.Migrate(ctx, db))
	require.NoError(f, store.Migrate(ctx, db))
	st := store.New(db)
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, user := range []string{servicefuzz.FuzzUser, servicefuzz.FuzzOtherUser} {
		require.NoError(f, st.CreateSubscription(ctx, domain.Subscription{
			ID: "sub-" + user, UserID: user, JobID: "job-" + user, Channel: domain.ChannelInApp, Target: user,
			EventTypes: []string{"job.completed"}, Enabled: true, CreatedAt: now,
		}))
		for i := range 3 {
			require.NoError(f, db.InTx(ctx, func(tx *sql.Tx) error {
				_, err := st.InsertDeliveryTx(ctx, tx, domain.Delivery{
					ID: fmt.Sprintf("n-%s-%d", user, i), EventID: fmt.Sprintf("ev-%s-%d", user, i), EventType: "job.completed",
					UserID: user, JobID: "job-" + user, SubscriptionID: "sub-" + user, Channel: domain.ChannelInApp,
					Target: user, TargetKey: "inapp:" + user, Subject: "done", Body: "done", NextAttemptAt: now, CreatedAt: now,
				})
				return err
			}))
		}
	}
	rules := domain.ValidationRules{SecretUsable: func(ref, _ string) bool { return ref == "team-hook" }}
	srv := servicefuzz.InProcess(f, "notification-consumer", func(s *grpc.Server, _ *slog.Logger) {
		notificationpb.RegisterNotificationServiceServer(s, ports.NewServer(app.NewNotifications(st, rules), ports.JWTAuthenticator{}))
	})
	md := servicefuzz.Methods(f, notificationpb.File_fleet_notification_v1_notification_proto.Services().Get(0).FullName()).ByName(protoreflect.Name(method))
	require.NotNil(f, md, method)
	return srv, md, func(t testing.TB) map[string]int64 { return notificationState(t, db) }
}

func notificationState(t testing.TB, db *sqlstore.DB) map[string]int64 {
	counts := sqlstoretest.RowCounts(t, db)
	var read int64
	require.NoError(t, db.Writer().QueryRow(`SELECT count(*) FROM deliveries WHERE read_at IS NOT NULL`).Scan(&read))
	counts["deliveries read"] = read
	return counts
}

func FuzzNotificationCreateSubscription(f *testing.F) {
	srv, md, state := fuzzNotifications(f, "CreateSubscription")
	srv.Fuzz(f, md, state,
		&notificationpb.CreateSubscriptionRequest{JobId: "job-1", Channel: notificationpb.Channel_CHANNEL_IN_APP, EventTypes: []string{"job.failed"}},
		&notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_WEBHOOK, Target: "https://hooks.example.org/x", WebhookSecretRef: "team-hook"},
		&notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_WEBHOOK, Target: "http://100.64.0.1/x", WebhookSecretRef: "other"},
		&notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_EMAIL, Target: "a@example.org\r\nBcc: x@example.org"},
	)
}

func FuzzNotificationListSubscriptions(f *testing.F) {
	srv, md, state := fuzzNotifications(f, "ListSubscriptions")
	srv.Fuzz(f, md, state,
		&notificationpb.ListSubscriptionsRequest{PageSize: 1},
		&notificationpb.ListSubscriptionsRequest{UserId: servicefuzz.FuzzOtherUser, JobId: "job-" + servicefuzz.FuzzOtherUser},
		&notificationpb.ListSubscriptionsRequest{PageToken: "bm90LWEtdG9rZW4", PageSize: -5},
	)
}

func FuzzNotificationDeleteSubscription(f *testing.F) {
	srv, md, state := fuzzNotifications(f, "DeleteSubscription")
	srv.Fuzz(f, md, state,
		&notificationpb.DeleteSubscriptionRequest{Id: "sub-" + servicefuzz.FuzzOtherUser},
		&notificationpb.DeleteSubscriptionRequest{Id: "sub-" + servicefuzz.FuzzUser},
		&notificationpb.DeleteSubscriptionRequest{Id: "missing"},
	)
}

func FuzzNotificationListNotifications(f *testing.F) {
	srv, md, state := fuzzNotifications(f, "ListNotifications")
	srv.Fuzz(f, md, state,
		&notificationpb.ListNotificationsRequest{UnreadOnly: true, PageSize: 2},
		&notificationpb.ListNotificationsRequest{UserId: servicefuzz.FuzzOtherUser},
		&notificationpb.ListNotificationsRequest{JobId: "job-" + servicefuzz.FuzzUser, PageToken: "eA", PageSize: 1 << 30},
	)
}

func FuzzNotificationMarkRead(f *testing.F) {
	srv, md, state := fuzzNotifications(f, "MarkRead")
	srv.Fuzz(f, md, state,
		&notificationpb.MarkReadRequest{Ids: []string{"n-" + servicefuzz.FuzzUser + "-0"}},
		&notificationpb.MarkReadRequest{Ids: []string{"n-" + servicefuzz.FuzzOtherUser + "-1"}},
		&notificationpb.MarkReadRequest{All: true},
		&notificationpb.MarkReadRequest{Ids: make([]string, 5000)},
	)
}

// TestEveryNotificationMethodIsFuzzed fails when NotificationService gains a
// method without a fuzz target above.
func TestEveryNotificationMethodIsFuzzed(t *testing.T) {
	fuzzed := map[protoreflect.Name]bool{"CreateSubscription": true, "ListSubscriptions": true, "DeleteSubscription": true,
		"ListNotifications": true, "MarkRead": true}
	ms := servicefuzz.Methods(t, notificationpb.File_fleet_notification_v1_notification_proto.Services().Get(0).FullName())
	for i := range ms.Len() {
		require.True(t, fuzzed[ms.Get(i).Name()], "no fuzz target for %s", ms.Get(i).FullName())
	}
}
