// Package servicefuzz fuzzes a service's gRPC API in process, through the runtime's
// real interceptors and handlers: a target per request type checks that no
// input panics, that every error is a gRPC status other than Unknown, and
// that a refused call writes nothing.
package servicefuzz

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/cosmic-horizons/fleet/libs/auth"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// FuzzSecret is the HS256 secret the JWT interceptors of an InProcess server verify with.
const FuzzSecret = "servicetest-in-process-secret-0123456789"

// Callers of an InProcess server, as chosen by the first fuzz input byte.
const (
	CallerNone  = iota // no token
	CallerUser         // the user FuzzUser
	CallerOther        // another user, FuzzOtherUser
	CallerAdmin        // an admin
	callers
)

// The subjects of the callers' tokens.
const (
	FuzzUser      = "fuzz-alice"
	FuzzOtherUser = "fuzz-bob"
	FuzzAdmin     = "fuzz-root"
)

// Server is a service's gRPC API served in process by the runtime's real
// gRPC server: the interceptor chain of libs/service (correlation id,
// logging and metrics, panic recovery) and the JWT interceptors of
// libs/service.AuthOptions, over an in-memory listener.
type Server struct {
	// Conn is a client connection to the server.
	Conn *grpc.ClientConn
	// Logger is the server's logger; pass it to the service's constructors.
	Logger *slog.Logger

	panics *atomic.Int64
	ctxs   [callers]context.Context
}

// panicCounter counts the runtime's "grpc handler panicked" log records.
type panicCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (p panicCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "grpc handler panicked" {
		p.n.Add(1)
	}
	return nil
}

func (p panicCounter) Enabled(context.Context, slog.Level) bool { return true }

func (p panicCounter) WithAttrs([]slog.Attr) slog.Handler { return p }

func (p panicCounter) WithGroup(string) slog.Handler { return p }

// InProcessOption configures InProcess.
type InProcessOption func(*inProcess)

type inProcess struct{ noAuth bool }

// WithoutAuth serves without the JWT interceptors, for a service that has
// none (the health-monitor); the callers' tokens are then ignored.
func WithoutAuth() InProcessOption { return func(o *inProcess) { o.noAuth = true } }

// InProcess builds the runtime of libs/service named name with HS256 JWT
// verification (FuzzSecret), lets register add the service to its gRPC
// server, and serves it in process until t ends.
func InProcess(t testing.TB, name string, register func(s *grpc.Server, logger *slog.Logger), options ...InProcessOption) *Server {
	t.Helper()
	var o inProcess
	for _, opt := range options {
		opt(&o)
	}
	s := &Server{panics: new(atomic.Int64)}
	s.Logger = slog.New(panicCounter{Handler: slog.DiscardHandler, n: s.panics})
	var opts []svcruntime.Option
	if !o.noAuth {
		acfg := auth.DefaultConfig()
		acfg.HS256Secret = telemetry.Secret(FuzzSecret)
		var err error
		opts, err = svcruntime.AuthOptions(context.Background(), acfg, s.Logger)
		require.NoError(t, err)
	}
	rt, err := svcruntime.New(svcruntime.DefaultConfig(name, "127.0.0.1:0", "127.0.0.1:0"), s.Logger, opts...)
	require.NoError(t, err)
	register(rt.GRPCServer(), s.Logger)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = rt.GRPCServer().Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		rt.GRPCServer().Stop()
		_ = rt.Close(context.Background())
	})
	s.Conn = conn
	s.ctxs[CallerNone] = context.Background()
	for i, c := range map[int]struct {
		sub   string
		admin bool
	}{CallerUser: {FuzzUser, false}, CallerOther: {FuzzOtherUser, false}, CallerAdmin: {FuzzAdmin, true}} {
		tok, err := auth.NewHS256Token(FuzzSecret, c.sub, c.admin, 24*time.Hour)
		require.NoError(t, err)
		s.ctxs[i] = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	return s
}

// Caller returns the call context of caller (CallerNone, CallerUser, ...).
func (s *Server) Caller(caller int) context.Context { return s.ctxs[caller%callers] }

// State returns a snapshot of what a service stores (for example its row
// counts per table); a refused call must leave it unchanged.
type State func(t testing.TB) map[string]int64

// Timeouts of one fuzzed call: a server stream that does not end by itself
// (a watch) is cut StreamIdle after its last message, or StreamTimeout after
// the call when it sends none.
var (
	UnaryTimeout  = 10 * time.Second
	StreamTimeout = 300 * time.Millisecond
	StreamIdle    = 20 * time.Millisecond
)

// Fuzz fuzzes one RPC of the server. An input is a caller byte (see
// Caller) and the wire bytes of a request, unmarshalled with proto.Unmarshal
// into the method's request type (inputs that do not parse are skipped); the
// seeds are added for every caller. Each call must not panic in a handler,
// must end in nil or a gRPC status whose code is not Unknown, and when it
// ends in an error, state must be what it was before the call. Server
// streams are read to their end, at most 64 messages, or until StreamTimeout.
func (s *Server) Fuzz(f *testing.F, method protoreflect.MethodDescriptor, state State, seeds ...proto.Message) {
	f.Helper()
	in, err := protoregistry.GlobalTypes.FindMessageByName(method.Input().FullName())
	require.NoError(f, err)
	seeds = append([]proto.Message{in.New().Interface()}, seeds...)
	for _, m := range seeds {
		require.Equal(f, in.Descriptor().FullName(), m.ProtoReflect().Descriptor().FullName(), "seed of another type")
		b, err := proto.Marshal(m)
		require.NoError(f, err)
		for c := range callers {
			f.Add(byte(c), b)
		}
	}
	f.Fuzz(func(t *testing.T, caller byte, data []byte) {
		if !s.Check(t, method, state, caller, data) {
			t.Skip("not a request")
		}
	})
}

// Check makes the call of one fuzz input (see Fuzz) and checks its outcome
// on t. It reports false, calling nothing, when data is not a request.
func (s *Server) Check(t testing.TB, method protoreflect.MethodDescriptor, state State, caller byte, data []byte) bool {
	t.Helper()
	in, err := protoregistry.GlobalTypes.FindMessageByName(method.Input().FullName())
	require.NoError(t, err)
	out, err := protoregistry.GlobalTypes.FindMessageByName(method.Output().FullName())
	require.NoError(t, err)
	req := in.New().Interface()
	if proto.Unmarshal(data, req) != nil {
		return false
	}
	full := "/" + string(method.Parent().FullName()) + "/" + string(method.Name())
	before := state(t)
	panics := s.panics.Load()
	var callErr error
	if method.IsStreamingServer() {
		callErr = s.callStream(s.Caller(int(caller)), full, req, out)
	} else {
		ctx, cancel := context.WithTimeout(s.Caller(int(caller)), UnaryTimeout)
		callErr = s.Conn.Invoke(ctx, full, req, out.New().Interface())
		cancel()
	}
	require.Equal(t, panics, s.panics.Load(), "%s panicked on %v", full, req)
	if callErr == nil {
		return true
	}
	st, ok := status.FromError(callErr)
	require.True(t, ok, "%s returned %v, not a gRPC status", full, callErr)
	require.NotEqual(t, codes.Unknown, st.Code(), "%s: %v", full, callErr)
	require.Equal(t, before, state(t), "%s wrote although it answered %v", full, callErr)
	return true
}

func (s *Server) callStream(parent context.Context, full string, req proto.Message, out protoreflect.MessageType) error {
	ctx, cancel := context.WithTimeout(parent, StreamTimeout)
	defer cancel()
	var idle atomic.Bool
	timer := time.AfterFunc(StreamTimeout, func() {})
	defer timer.Stop()
	cs, err := s.Conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, full)
	if err != nil {
		return err
	}
	if err := cs.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	for range 64 {
		if err := cs.RecvMsg(out.New().Interface()); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if code := status.Code(err); (code == codes.DeadlineExceeded || code == codes.Canceled) && parent.Err() == nil &&
				(ctx.Err() != nil || idle.Load()) {
				// A stream that was still open when the client stopped reading.
				return nil
			}
			return err
		}
		timer.Stop()
		timer = time.AfterFunc(StreamIdle, func() { idle.Store(true); cancel() })
	}
	return nil
}

// Methods returns the methods of the service named fullName from the global registry.
func Methods(t testing.TB, fullName protoreflect.FullName) protoreflect.MethodDescriptors {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(fullName)
	require.NoError(t, err)
	sd, ok := d.(protoreflect.ServiceDescriptor)
	require.True(t, ok, "%s is not a service", fullName)
	return sd.Methods()
}
