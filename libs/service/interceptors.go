package service

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// MetadataCorrelationID is the gRPC metadata key that carries the
// correlation id of a call, in both directions.
const MetadataCorrelationID = telemetry.HeaderCorrelationID

// serverStream overrides the context of a grpc.ServerStream.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }

// MaxCorrelationIDLen bounds a caller's correlation id. Every event the
// call causes carries it, and every consumer must accept those events, so
// the id is bounded here, at the edge.
const MaxCorrelationIDLen = 128

// ValidCorrelationID reports whether a caller's correlation id is kept: 1
// to MaxCorrelationIDLen ASCII letters, digits and '.', '_', ':', '/', '+',
// '=', '@', '-', starting with a letter or digit (a UUID, a W3C trace id
// or a ULID fits).
func ValidCorrelationID(id string) bool {
	if id == "" || len(id) > MaxCorrelationIDLen || !isAlnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if !isAlnum(c) && !strings.ContainsRune("._:/+=@-", rune(c)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// withCorrelationID puts the caller's correlation id, or a new one, into ctx
// and returns it to the caller in the response header. An id that is not
// ValidCorrelationID (too long, a character outside the set, several
// values) is replaced by a new one, so it reaches no log line and no event.
func withCorrelationID(ctx context.Context) context.Context {
	var id string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(MetadataCorrelationID); len(v) == 1 {
			id = strings.TrimSpace(v[0])
		}
	}
	if !ValidCorrelationID(id) {
		id = uuid.NewString()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(MetadataCorrelationID, id))
	return telemetry.WithCorrelationID(ctx, id)
}

func correlationUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(withCorrelationID(ctx), req)
}

func correlationStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &serverStream{ServerStream: ss, ctx: withCorrelationID(ss.Context())})
}

// observer logs and measures every call.
type observer struct {
	logger  *slog.Logger
	metrics *grpcMetrics
}

// quietMethod reports whether calls to method are logged at debug level
// only: health probes and reflection would otherwise flood the logs.
func quietMethod(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.")
}

func (o *observer) done(ctx context.Context, method string, start time.Time, err error) {
	d := time.Since(start)
	code := status.Code(err)
	o.metrics.observe(method, code, d)

	level := slog.LevelInfo
	switch code {
	case codes.OK:
		if quietMethod(method) {
			level = slog.LevelDebug
		}
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unavailable:
		level = slog.LevelError
	default:
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("grpc_method", method),
		slog.String("grpc_code", code.String()),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	o.logger.LogAttrs(ctx, level, "grpc call", attrs...)
}

func (o *observer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	o.done(ctx, info.FullMethod, start, err)
	return resp, err
}

func (o *observer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	o.done(ss.Context(), info.FullMethod, start, err)
	return err
}

// recoverer turns a panic in a handler into codes.Internal and logs its stack.
type recoverer struct {
	logger *slog.Logger
}

func (r *recoverer) recovered(ctx context.Context, method string, p any) error {
	r.logger.ErrorContext(ctx, "grpc handler panicked",
		slog.String("grpc_method", method),
		slog.String("panic", fmt.Sprint(p)),
		slog.String("stack", string(debug.Stack())),
	)
	return status.Error(codes.Internal, "internal error")
}

func (r *recoverer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, r.recovered(ctx, info.FullMethod, p)
		}
	}()
	return handler(ctx, req)
}

func (r *recoverer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = r.recovered(ss.Context(), info.FullMethod, p)
		}
	}()
	return handler(srv, ss)
}
