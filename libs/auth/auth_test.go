package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

const secret = "0123456789abcdef0123456789abcdef-hs256"

var rsaKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func jwksDoc(t *testing.T, kid string, pub *rsa.PublicKey) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
	require.NoError(t, err)
	return b
}

func claims(mut func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": "alice", "iss": "fleet-idp", "aud": "fleet", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	if mut != nil {
		mut(c)
	}
	return c
}

func hs(t *testing.T, key string, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(key))
	require.NoError(t, err)
	return s
}

func rs(t *testing.T, kid string, key *rsa.PrivateKey, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func logger(buf *bytes.Buffer) *slog.Logger { return slog.New(slog.NewJSONHandler(buf, nil)) }

func newVerifier(t *testing.T, mut func(*auth.Config)) *auth.Verifier {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "jwks.json")
	require.NoError(t, os.WriteFile(file, jwksDoc(t, "k1", &rsaKey.PublicKey), 0o600))
	cfg := auth.DefaultConfig()
	cfg.HS256Secret = telemetry.Secret(secret)
	cfg.JWKSFile = file
	cfg.Issuer, cfg.Audience = "fleet-idp", "fleet"
	if mut != nil {
		mut(&cfg)
	}
	v, err := auth.NewVerifier(context.Background(), cfg, nil, logger(&bytes.Buffer{}))
	require.NoError(t, err)
	return v
}

func TestVerify(t *testing.T) {
	t.Parallel()
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))})
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, claims(nil)).SignedString([]byte(secret))
	require.NoError(t, err)

	tests := []struct {
		name      string
		verifier  func(*auth.Config)
		token     func(t *testing.T) string
		wantUser  string
		wantAdmin bool
	}{
		{name: "valid HS256", token: func(t *testing.T) string { return hs(t, secret, claims(nil)) }, wantUser: "alice"},
		{name: "valid RS256 from JWKS file", token: func(t *testing.T) string { return rs(t, "k1", rsaKey, claims(nil)) }, wantUser: "alice"},
		{name: "admin via role", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["role"] = "admin" }))
		}, wantUser: "alice", wantAdmin: true},
		{name: "admin via roles", token: func(t *testing.T) string {
			return rs(t, "k1", rsaKey, claims(func(c jwt.MapClaims) { c["roles"] = []string{"viewer", "admin"} }))
		}, wantUser: "alice", wantAdmin: true},
		{name: "other role is no admin", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["role"] = "viewer" }))
		}, wantUser: "alice"},
		{name: "expired", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))
		}},
		{name: "no exp", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { delete(c, "exp") }))
		}},
		{name: "not yet valid", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }))
		}},
		{name: "wrong issuer", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["iss"] = "evil" }))
		}},
		{name: "wrong audience", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["aud"] = "other" }))
		}},
		{name: "no subject", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { delete(c, "sub") }))
		}},
		{name: "wrong HS256 secret", token: func(t *testing.T) string { return hs(t, "another-secret-another-secret-xx", claims(nil)) }},
		{name: "wrong RSA key", token: func(t *testing.T) string { return rs(t, "k1", otherKey, claims(nil)) }},
		{name: "unknown kid", token: func(t *testing.T) string { return rs(t, "k9", rsaKey, claims(nil)) }},
		{name: "alg none", token: func(*testing.T) string { return noneTok }},
		{name: "alg HS512", token: func(*testing.T) string { return hs512 }},
		{name: "HS/RS confusion: HS256 signed with the RSA public key", token: func(t *testing.T) string {
			return hs(t, string(pubPEM), claims(nil))
		}},
		{name: "HS256 when only RS256 is enabled", verifier: func(c *auth.Config) { c.HS256Secret = "" }, token: func(t *testing.T) string {
			return hs(t, secret, claims(nil))
		}},
		{name: "tampered payload", token: func(t *testing.T) string {
			tok := hs(t, secret, claims(nil))
			other := hs(t, secret, claims(func(c jwt.MapClaims) { c["sub"] = "mallory"; c["role"] = "admin" }))
			return partsJoin(tok, other)
		}},
		{name: "garbage", token: func(*testing.T) string { return "not.a.jwt" }},
		{name: "longest subject", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("u", auth.MaxSubjectLen) }))
		}, wantUser: strings.Repeat("u", auth.MaxSubjectLen)},
		{name: "e-mail subject", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["sub"] = "alice@tacc.utexas.edu" }))
		}, wantUser: "alice@tacc.utexas.edu"},
		{name: "subject one byte too long", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("u", auth.MaxSubjectLen+1) }))
		}},
		{name: "subject of 5000 bytes", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("u", 5000) }))
		}},
		{name: "subject with a space", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["sub"] = "alice smith" }))
		}},
		{name: "subject with a control character", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["sub"] = "alice\nadmin" }))
		}},
		{name: "subject not ASCII", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["sub"] = "al\u00efce" }))
		}},
		{name: "too many roles", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["roles"] = strings.Fields(strings.Repeat("viewer ", auth.MaxClaimValues+1)) }))
		}},
		{name: "allocation too long", token: func(t *testing.T) string {
			return hs(t, secret, claims(func(c jwt.MapClaims) { c["allocations"] = []string{strings.Repeat("A", auth.MaxClaimValueLen+1)} }))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tt.verifier)
			p, err := v.Verify(context.Background(), tt.token(t))
			if tt.wantUser == "" {
				require.ErrorIs(t, err, auth.ErrInvalidToken)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantUser, p.UserID)
			require.Equal(t, tt.wantAdmin, p.Admin)
		})
	}
}

// partsJoin takes the header and signature of a and the payload of b.
func partsJoin(a, b string) string {
	pa := bytes.Split([]byte(a), []byte("."))
	pb := bytes.Split([]byte(b), []byte("."))
	return string(bytes.Join([][]byte{pa[0], pb[1], pa[2]}, []byte(".")))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestVerifyJWKSURLRefreshes(t *testing.T) {
	t.Parallel()
	key2, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	var doc atomic.Value
	doc.Store(jwksDoc(t, "k1", &rsaKey.PublicKey))
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write(doc.Load().([]byte))
	}))
	defer srv.Close()

	cfg := auth.DefaultConfig()
	cfg.JWKSURL = srv.URL
	cfg.JWKSRefresh = 50 * time.Millisecond
	v, err := auth.NewVerifier(context.Background(), cfg, srv.Client(), logger(&bytes.Buffer{}))
	require.NoError(t, err)

	p, err := v.Verify(context.Background(), rs(t, "k1", rsaKey, claims(nil)))
	require.NoError(t, err)
	require.Equal(t, "alice", p.UserID)
	loads := hits.Load()
	_, err = v.Verify(context.Background(), rs(t, "k1", rsaKey, claims(nil)))
	require.NoError(t, err)
	require.Equal(t, loads, hits.Load(), "keys are cached")

	// The key rotates: after the refresh interval the new key is accepted
	// and the old one is not.
	doc.Store(jwksDoc(t, "k2", &key2.PublicKey))
	require.Eventually(t, func() bool {
		_, err := v.Verify(context.Background(), rs(t, "k2", key2, claims(nil)))
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	_, err = v.Verify(context.Background(), rs(t, "k1", rsaKey, claims(nil)))
	require.ErrorIs(t, err, auth.ErrInvalidToken)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  auth.Config
		ok   bool
	}{
		{name: "hs256", cfg: auth.Config{HS256Secret: secret}, ok: true},
		{name: "nothing", cfg: auth.Config{}},
		{name: "short secret", cfg: auth.Config{HS256Secret: "short"}},
		{name: "file and url", cfg: auth.Config{JWKSFile: "a", JWKSURL: "b", JWKSRefresh: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.ok {
				require.NoError(t, tt.cfg.Validate())
			} else {
				require.Error(t, tt.cfg.Validate())
			}
		})
	}
	// A secret never shows in formatted config.
	require.NotContains(t, fmtAll(auth.Config{HS256Secret: secret}), secret)
}

func fmtAll(c auth.Config) string {
	var buf bytes.Buffer
	logger(&buf).Info("config", "cfg", c, "secret", c.HS256Secret)
	return buf.String() + c.HS256Secret.String()
}

func TestInterceptor(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	v := newVerifier(t, nil)
	ic := auth.NewInterceptors(v, logger(&logs))
	good := hs(t, secret, claims(func(c jwt.MapClaims) { c["role"] = "admin" }))
	expired := hs(t, secret, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))

	tests := []struct {
		name     string
		method   string
		md       metadata.MD
		wantCode codes.Code
	}{
		{name: "valid", method: "/fleet.job.v1.JobService/GetJob", md: metadata.Pairs("authorization", "Bearer "+good)},
		{name: "missing token", method: "/fleet.job.v1.JobService/GetJob", wantCode: codes.Unauthenticated},
		{name: "wrong scheme", method: "/fleet.job.v1.JobService/GetJob", md: metadata.Pairs("authorization", "Basic "+good), wantCode: codes.Unauthenticated},
		{name: "expired", method: "/fleet.job.v1.JobService/GetJob", md: metadata.Pairs("authorization", "Bearer "+expired), wantCode: codes.Unauthenticated},
		{name: "health exempt", method: "/grpc.health.v1.Health/Check"},
		{name: "reflection exempt", method: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tt.md)
			}
			var got *auth.Principal
			_, err := ic.Unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, func(ctx context.Context, _ any) (any, error) {
				if p, ok := auth.PrincipalFrom(ctx); ok {
					got = &p
				}
				return "ok", nil
			})
			require.Equal(t, tt.wantCode, status.Code(err))
			if tt.wantCode == codes.OK && tt.md != nil {
				require.NotNil(t, got)
				require.True(t, got.Admin)
			}
		})
	}
	require.Contains(t, logs.String(), "token refused")
	require.NotContains(t, logs.String(), expired, "tokens never appear in logs")
	require.NotContains(t, logs.String(), secret)
}

func TestVerifyAllocationsClaim(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, nil)
	p, err := v.Verify(context.Background(), hs(t, secret, claims(func(c jwt.MapClaims) { c["allocations"] = []string{"AST21001", "TG-AST0001"} })))
	require.NoError(t, err)
	require.True(t, p.AllocationsClaim)
	require.Equal(t, []string{"AST21001", "TG-AST0001"}, p.Allocations)

	p, err = v.Verify(context.Background(), hs(t, secret, claims(func(c jwt.MapClaims) { c["allocations"] = []string{} })))
	require.NoError(t, err)
	require.True(t, p.AllocationsClaim, "an empty claim is a claim that grants nothing")
	require.Empty(t, p.Allocations)

	p, err = v.Verify(context.Background(), hs(t, secret, claims(nil)))
	require.NoError(t, err)
	require.False(t, p.AllocationsClaim)
}

// TestStreamEndsAtTokenExpiry: a stream opened with a token that expires
// soon ends with Unauthenticated at the expiry (plus leeway), however long
// its handler would run; a stream whose token outlives it is untouched.
func TestStreamEndsAtTokenExpiry(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, func(c *auth.Config) { c.Leeway = 0 })
	ic := auth.NewInterceptors(v, logger(&bytes.Buffer{}))
	info := &grpc.StreamServerInfo{FullMethod: "/fleet.job.v1.JobService/WatchJob", IsServerStream: true}
	watch := func(token string) (time.Duration, error) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
		start := time.Now()
		err := ic.Stream(nil, &fakeStream{ctx: ctx}, info, func(_ any, ss grpc.ServerStream) error {
			select { // a watcher that would run for a minute
			case <-ss.Context().Done():
				return status.FromContextError(ss.Context().Err()).Err()
			case <-time.After(time.Minute):
				return nil
			}
		})
		return time.Since(start), err
	}
	// exp has whole-second precision: 2 s from now ends within (1 s, 2 s].
	short := hs(t, secret, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(2 * time.Second).Unix() }))
	took, err := watch(short)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	require.Less(t, took, 5*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+hs(t, secret, claims(nil))))
	cancel()
	err = ic.Stream(nil, &fakeStream{ctx: ctx}, info, func(_ any, ss grpc.ServerStream) error {
		<-ss.Context().Done()
		return status.FromContextError(ss.Context().Err()).Err()
	})
	require.Equal(t, codes.Canceled, status.Code(err), "a client that goes away is not an expiry")
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *fakeStream) Context() context.Context { return s.ctx }
