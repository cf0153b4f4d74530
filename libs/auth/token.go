package auth

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/credentials"
)

// NewHS256Token returns an HS256 JWT for subject sub, valid for ttl from
// now, with role "admin" when admin is set. It is meant for tests and
// development tooling: whoever holds the shared secret can act as any user,
// so production tokens come from an identity provider (RS256 with a JWKS).
func NewHS256Token(secret, sub string, admin bool, ttl time.Duration) (string, error) {
	switch {
	case len(secret) < 32:
		return "", errors.New("auth: the HS256 secret must have at least 32 bytes")
	case strings.TrimSpace(sub) == "":
		return "", errors.New("auth: a token needs a subject")
	case ttl <= 0:
		return "", errors.New("auth: a token's lifetime must be positive")
	}
	now := time.Now()
	claims := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if admin {
		claims["role"] = DefaultAdminRole
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}

// BearerCredentials sends token as "authorization: Bearer <token>" on every
// call of a gRPC client connection (grpc.WithPerRPCCredentials). With
// allowInsecure it also does so over a connection without TLS, which suits
// tests and local development only.
func BearerCredentials(token string, allowInsecure bool) credentials.PerRPCCredentials {
	return bearer{token: token, insecure: allowInsecure}
}

type bearer struct {
	token    string
	insecure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return !b.insecure }
