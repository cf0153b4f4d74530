package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Exempt reports whether method may be called without a token: health
// checks and server reflection.
func Exempt(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.")
}

// DevPrincipal is the caller of every call when authentication is disabled
// (AUTH_DISABLED=true, development only): an admin named "dev".
func DevPrincipal() Principal {
	return Principal{UserID: "dev", Roles: []string{DefaultAdminRole}, Admin: true}
}

// Interceptors authenticate gRPC calls with a Verifier.
type Interceptors struct {
	v   *Verifier
	log *slog.Logger
	// disabled admits every call as DevPrincipal.
	disabled bool
}

// NewServerInterceptors returns the interceptors for cfg: a Verifier's
// (see NewVerifier), or, when cfg.Disabled, interceptors that admit every
// call as DevPrincipal after a loud warning. client fetches a JWKS URL; nil
// uses a default client.
func NewServerInterceptors(ctx context.Context, cfg Config, client *http.Client, logger *slog.Logger) (*Interceptors, error) {
	if logger == nil {
		return nil, errors.New("auth: logger is required")
	}
	if cfg.Disabled {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		logger.WarnContext(ctx, "AUTHENTICATION IS DISABLED ("+EnvDisabled+"=true): every gRPC call is accepted without a token "+
			"and acts as an admin; never run like this outside development", "principal", DevPrincipal().UserID)
		return &Interceptors{log: logger, disabled: true}, nil
	}
	v, err := NewVerifier(ctx, cfg, client, logger)
	if err != nil {
		return nil, err
	}
	return NewInterceptors(v, logger), nil
}

// NewInterceptors returns the unary and stream interceptors that refuse a
// call without a valid bearer token with codes.Unauthenticated and put the
// caller's Principal into its context. The token never reaches a log.
func NewInterceptors(v *Verifier, logger *slog.Logger) *Interceptors {
	return &Interceptors{v: v, log: logger}
}

// ServerOptions returns the interceptors as gRPC server options.
func (i *Interceptors) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(i.Unary), grpc.ChainStreamInterceptor(i.Stream)}
}

func (i *Interceptors) authenticate(ctx context.Context, method string) (context.Context, error) {
	if Exempt(method) {
		return ctx, nil
	}
	if i.disabled {
		return WithPrincipal(ctx, DevPrincipal()), nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return nil, status.Error(codes.Unauthenticated, "a bearer token is required")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return nil, status.Error(codes.Unauthenticated, "the authorization header must be 'Bearer <token>'")
	}
	p, err := i.v.Verify(ctx, strings.TrimSpace(token))
	if err != nil {
		// The error names the failed check (expired, bad signature, ...)
		// and never contains the token.
		i.log.InfoContext(ctx, "auth: token refused", "grpc_method", method, "reason", err.Error())
		return nil, status.Error(codes.Unauthenticated, "invalid or expired token")
	}
	return WithPrincipal(ctx, p), nil
}

// Unary authenticates unary calls.
func (i *Interceptors) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := i.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// errTokenExpired is the cause of a stream's context ending at its token's
// expiry.
var errTokenExpired = errors.New("the token of the stream expired")

// Stream authenticates streaming calls. A stream lives no longer than the
// token that opened it: at the token's exp (plus the leeway) its context
// ends and the call ends with codes.Unauthenticated, so that a watcher
// whose token expired or was not renewed stops receiving.
func (i *Interceptors) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := i.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	p, ok := PrincipalFrom(ctx)
	if !ok || p.ExpiresAt.IsZero() || i.v == nil {
		return handler(srv, &stream{ServerStream: ss, ctx: ctx})
	}
	ctx, cancel := context.WithDeadlineCause(ctx, p.ExpiresAt.Add(i.v.cfg.Leeway), errTokenExpired)
	defer cancel()
	err = handler(srv, &stream{ServerStream: ss, ctx: ctx})
	if errors.Is(context.Cause(ctx), errTokenExpired) && ss.Context().Err() == nil {
		i.log.InfoContext(ctx, "auth: stream ended at token expiry", "grpc_method", info.FullMethod)
		return status.Error(codes.Unauthenticated, "the token expired; reconnect with a new token")
	}
	return err
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// Caller returns the principal of an authenticated call, or a status error
// with codes.Unauthenticated when there is none.
func Caller(ctx context.Context) (Principal, error) {
	p, ok := PrincipalFrom(ctx)
	if !ok || p.UserID == "" {
		return Principal{}, status.Error(codes.Unauthenticated, "a bearer token is required")
	}
	return p, nil
}

// RequireAdmin returns the principal of an authenticated admin call; a call
// without a principal gets codes.Unauthenticated, any other caller
// codes.PermissionDenied.
func RequireAdmin(ctx context.Context) (Principal, error) {
	p, err := Caller(ctx)
	if err != nil {
		return Principal{}, err
	}
	if !p.Admin {
		return Principal{}, status.Error(codes.PermissionDenied, "the admin role is required")
	}
	return p, nil
}
