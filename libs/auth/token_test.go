package auth_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auth"
)

func TestNewHS256Token(t *testing.T) {
	t.Parallel()
	cfg := auth.DefaultConfig()
	cfg.HS256Secret = secret
	v, err := auth.NewVerifier(context.Background(), cfg, nil, logger(&bytes.Buffer{}))
	require.NoError(t, err)
	tests := []struct {
		name      string
		secret    string
		sub       string
		admin     bool
		ttl       time.Duration
		wantErr   bool
		wantValid bool
	}{
		{name: "user", secret: secret, sub: "ada", ttl: time.Hour, wantValid: true},
		{name: "admin", secret: secret, sub: "root", admin: true, ttl: time.Hour, wantValid: true},
		{name: "other secret is refused by the verifier", secret: "another-secret-another-secret-xx", sub: "ada", ttl: time.Hour},
		{name: "short secret", secret: "short", sub: "ada", ttl: time.Hour, wantErr: true},
		{name: "no subject", secret: secret, ttl: time.Hour, wantErr: true},
		{name: "no lifetime", secret: secret, sub: "ada", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := auth.NewHS256Token(tt.secret, tt.sub, tt.admin, tt.ttl)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			p, err := v.Verify(context.Background(), tok)
			if !tt.wantValid {
				require.ErrorIs(t, err, auth.ErrInvalidToken)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.sub, p.UserID)
			require.Equal(t, tt.admin, p.Admin)
		})
	}
}

func TestBearerCredentials(t *testing.T) {
	t.Parallel()
	md, err := auth.BearerCredentials("tok", true).GetRequestMetadata(context.Background())
	require.NoError(t, err)
	require.Equal(t, map[string]string{"authorization": "Bearer tok"}, md)
	require.False(t, auth.BearerCredentials("tok", true).RequireTransportSecurity())
	require.True(t, auth.BearerCredentials("tok", false).RequireTransportSecurity())
}
