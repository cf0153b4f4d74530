package ports_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/auth"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/ports"
)

const secret = "notification-ports-test-secret-0123456789"

// TestJWTAuthenticatorBehindTheInterceptors checks the caller a handler sees
// for real HS256 tokens verified by the auth interceptors.
func TestJWTAuthenticatorBehindTheInterceptors(t *testing.T) {
	t.Parallel()
	cfg := auth.DefaultConfig()
	cfg.HS256Secret = secret
	ic, err := auth.NewServerInterceptors(context.Background(), cfg, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	mint := func(key, sub string, admin bool) string {
		tok, err := auth.NewHS256Token(key, sub, admin, time.Hour)
		require.NoError(t, err)
		return tok
	}
	tests := []struct {
		name     string
		token    string
		want     app.Principal
		wantCode codes.Code
	}{
		{name: "user", token: mint(secret, "ada", false), want: app.Principal{UserID: "ada"}},
		{name: "admin", token: mint(secret, "root", true), want: app.Principal{UserID: "root", Admin: true}},
		{name: "other secret", token: mint("another-secret-another-secret-0123456789", "ada", true), wantCode: codes.Unauthenticated},
		{name: "no token", wantCode: codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tt.token != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tt.token))
			}
			var got app.Principal
			_, err := ic.Unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/fleet.notification.v1.NotificationService/ListSubscriptions"},
				func(ctx context.Context, _ any) (any, error) {
					p, err := ports.JWTAuthenticator{}.Principal(ctx)
					got = p
					return nil, err
				})
			require.Equal(t, tt.wantCode, status.Code(err))
			if tt.wantCode == codes.OK {
				require.Equal(t, tt.want, got)
			}
		})
	}
}

func TestJWTAuthenticatorWithoutVerifiedCaller(t *testing.T) {
	t.Parallel()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-user-id", "mallory"))
	_, err := ports.JWTAuthenticator{}.Principal(ctx)
	require.ErrorIs(t, err, domain.ErrUnauthenticated, "a user header without a verified token is no identity")
}
