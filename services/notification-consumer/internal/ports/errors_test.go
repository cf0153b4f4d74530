package ports_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/ports"
)

type fixedCaller app.Principal

func (f fixedCaller) Principal(context.Context) (app.Principal, error) { return app.Principal(f), nil }

// TestErrorsCarryNoStoreText: errors answer with fixed messages: a missing
// subscription does not echo the id the caller sent, another user's list
// does not name the user, and a failing store's text stays in the server.
func TestErrorsCarryNoStoreText(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, sqlstore.Config{URL: "sqlite:" + filepath.Join(t.TempDir(), "n.db")}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, store.Migrate(ctx, db))
	t.Cleanup(func() { _ = db.Close() })
	srv := ports.NewServer(app.NewNotifications(store.New(db), domain.ValidationRules{}), fixedCaller{UserID: "ada"})

	id := "sub-" + strings.Repeat("x", 4000)
	_, err = srv.DeleteSubscription(ctx, &notificationpb.DeleteSubscriptionRequest{Id: id})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.NotContains(t, status.Convert(err).Message(), "xxxx")

	_, err = srv.ListSubscriptions(ctx, &notificationpb.ListSubscriptionsRequest{UserId: "bob-the-other"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.NotContains(t, status.Convert(err).Message(), "bob-the-other")

	require.NoError(t, db.Close())
	_, err = srv.ListSubscriptions(ctx, &notificationpb.ListSubscriptionsRequest{})
	require.Equal(t, codes.Internal, status.Code(err))
	require.NotContains(t, status.Convert(err).Message(), "sql")
}
