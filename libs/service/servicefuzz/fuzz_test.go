package servicefuzz_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/service/servicefuzz"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
)

// faulty is an AuditService whose Query misbehaves on request: it panics,
// returns a plain error (Unknown to the client), or writes and then refuses.
type faulty struct {
	auditpb.UnimplementedAuditServiceServer
	rows *atomic.Int64
}

func (f faulty) Query(ctx context.Context, req *auditpb.QueryRequest) (*auditpb.QueryResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	switch req.GetActor() {
	case "panic":
		panic("boom")
	case "plain error":
		return nil, errors.New("not a status")
	case "write then refuse":
		f.rows.Add(1)
		return nil, status.Error(codes.InvalidArgument, "refused")
	case "write and succeed":
		f.rows.Add(1)
	}
	return &auditpb.QueryResponse{}, nil
}

// recorder is a testing.TB that records a failure instead of failing.
type recorder struct {
	testing.TB
	failed string
}

type failNow struct{}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) { r.failed += fmt.Sprintf(format, args...) }

func (r *recorder) FailNow() { panic(failNow{}) }

func (r *recorder) check(s *servicefuzz.Server, state servicefuzz.State, caller int, req proto.Message) (failure string) {
	defer func() {
		if p := recover(); p != nil && p != (failNow{}) {
			panic(p)
		}
		failure = r.failed
	}()
	data, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	md := servicefuzz.Methods(r.TB, auditpb.File_fleet_audit_v1_audit_proto.Services().Get(0).FullName()).ByName("Query")
	s.Check(r, md, state, byte(caller), data)
	return r.failed
}

// TestCheckCatchesEachFault shows that the fuzz check fails on a handler
// panic, on an error that is not a gRPC status, and on a write before a
// refusal, and passes a refusal by the interceptors and a successful write.
func TestCheckCatchesEachFault(t *testing.T) {
	var rows atomic.Int64
	s := servicefuzz.InProcess(t, "faulty", func(g *grpc.Server, _ *slog.Logger) {
		auditpb.RegisterAuditServiceServer(g, faulty{rows: &rows})
	})
	state := func(testing.TB) map[string]int64 { return map[string]int64{"rows": rows.Load()} }
	tests := []struct {
		name   string
		caller int
		actor  string
		want   string
	}{
		{name: "handler panics", caller: servicefuzz.CallerAdmin, actor: "panic", want: "panicked"},
		{name: "plain error", caller: servicefuzz.CallerAdmin, actor: "plain error", want: "Unknown"},
		{name: "write then refuse", caller: servicefuzz.CallerAdmin, actor: "write then refuse", want: "wrote although it answered"},
		{name: "refused by the interceptors", caller: servicefuzz.CallerNone, actor: "panic"},
		{name: "refused by the handler", caller: servicefuzz.CallerUser, actor: "write then refuse"},
		{name: "write and succeed", caller: servicefuzz.CallerAdmin, actor: "write and succeed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			got := r.check(s, state, tt.caller, &auditpb.QueryRequest{Actor: tt.actor})
			if tt.want == "" {
				require.Empty(t, got)
				return
			}
			require.Contains(t, got, tt.want)
		})
	}
}
