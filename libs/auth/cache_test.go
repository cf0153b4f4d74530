package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auth"
)

// A token verified once is remembered; these tests check that what a full
// verification would refuse later is still refused.
func TestVerifyRemembersTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a remembered token is refused from its exp plus the leeway on", func(t *testing.T) {
		t.Parallel()
		v := newVerifier(t, func(c *auth.Config) { c.Leeway = 30 * time.Second })
		var now atomic.Pointer[time.Time]
		start := time.Now()
		now.Store(&start)
		auth.SetClock(v, func() time.Time { return *now.Load() })
		exp := start.Add(time.Minute).Truncate(time.Second)
		tok := hs(t, secret, claims(func(c jwt.MapClaims) { c["exp"] = exp.Unix() }))
		for range 2 {
			p, err := v.Verify(ctx, tok)
			require.NoError(t, err)
			require.Equal(t, "alice", p.UserID)
		}
		require.Equal(t, 1, auth.RememberedTokens(v))
		almost := exp.Add(30*time.Second - time.Millisecond)
		now.Store(&almost)
		_, err := v.Verify(ctx, tok)
		require.NoError(t, err, "within the leeway")
		late := exp.Add(30 * time.Second)
		now.Store(&late)
		_, err = v.Verify(ctx, tok)
		require.ErrorIs(t, err, auth.ErrInvalidToken)
		require.ErrorContains(t, err, "expired")
		require.Zero(t, auth.RememberedTokens(v), "an expired token is forgotten")
	})

	t.Run("an RS256 token is refused once its key left the JWKS", func(t *testing.T) {
		t.Parallel()
		key2, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		file := filepath.Join(t.TempDir(), "jwks.json")
		require.NoError(t, os.WriteFile(file, jwksDoc(t, "k1", &rsaKey.PublicKey), 0o600))
		v := newVerifier(t, func(c *auth.Config) { c.JWKSFile, c.JWKSRefresh = file, time.Millisecond })
		tok := rs(t, "k1", rsaKey, claims(nil))
		for range 2 {
			_, err := v.Verify(ctx, tok)
			require.NoError(t, err)
		}
		// The same kid now names another key.
		require.NoError(t, os.WriteFile(file, jwksDoc(t, "k1", &key2.PublicKey), 0o600))
		// Once the key set is stale (1 ms), a look-up re-reads it.
		require.Eventually(t, func() bool {
			_, err := v.Verify(ctx, tok)
			return errors.Is(err, auth.ErrInvalidToken)
		}, 5*time.Second, time.Millisecond)
		_, err = v.Verify(ctx, rs(t, "k1", key2, claims(nil)))
		require.NoError(t, err, "the new key is used")
	})

	t.Run("a refused token is not remembered", func(t *testing.T) {
		t.Parallel()
		v := newVerifier(t, nil)
		bad := hs(t, "another-secret-another-secret-another", claims(nil))
		for range 2 {
			_, err := v.Verify(ctx, bad)
			require.ErrorIs(t, err, auth.ErrInvalidToken)
		}
		require.Zero(t, auth.RememberedTokens(v))
	})

	t.Run("the principal returned is the caller's to change", func(t *testing.T) {
		t.Parallel()
		v := newVerifier(t, nil)
		tok := hs(t, secret, claims(func(c jwt.MapClaims) {
			c["roles"] = []string{"admin", "ops"}
			c["allocations"] = []string{"AST1"}
		}))
		p, err := v.Verify(ctx, tok)
		require.NoError(t, err)
		p.Roles[0], p.Allocations[0] = "changed", "changed"
		p, err = v.Verify(ctx, tok)
		require.NoError(t, err)
		require.Equal(t, []string{"admin", "ops"}, p.Roles)
		require.Equal(t, []string{"AST1"}, p.Allocations)
		require.True(t, p.Admin)
	})

	t.Run("the cache is bounded", func(t *testing.T) {
		t.Parallel()
		v := newVerifier(t, nil)
		for i := range auth.MaxVerifiedTokens + 10 {
			p, err := v.Verify(ctx, hs(t, secret, claims(func(c jwt.MapClaims) { c["sub"] = fmt.Sprintf("user-%d", i) })))
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("user-%d", i), p.UserID)
			require.LessOrEqual(t, auth.RememberedTokens(v), auth.MaxVerifiedTokens)
		}
	})
}

// BenchmarkVerify verifies one token again and again, as the calls of one
// client do: ns/op and allocs/op are the auth interceptor's cost per call.
func BenchmarkVerify(b *testing.B) {
	file := filepath.Join(b.TempDir(), "jwks.json")
	doc := func() []byte {
		t := &testing.T{}
		return jwksDoc(t, "k1", &rsaKey.PublicKey)
	}()
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := auth.DefaultConfig()
	cfg.HS256Secret, cfg.JWKSFile = secret, file
	cfg.Issuer, cfg.Audience = "fleet-idp", "fleet"
	v, err := auth.NewVerifier(context.Background(), cfg, nil, logger(&bytes.Buffer{}))
	if err != nil {
		b.Fatal(err)
	}
	sign := func(m jwt.SigningMethod, key any) string {
		tok := jwt.NewWithClaims(m, claims(nil))
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		alg string
		tok string
	}{
		{"HS256", sign(jwt.SigningMethodHS256, []byte(secret))},
		{"RS256", sign(jwt.SigningMethodRS256, rsaKey)},
	} {
		b.Run(tc.alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tc.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
