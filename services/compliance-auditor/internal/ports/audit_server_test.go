package ports_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/auditchain/chainpb"
	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/ports"
)

// adminCtx is the context of a call by a verified admin.
func adminCtx() context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{UserID: "root", Roles: []string{"admin"}, Admin: true})
}

func newServer(t *testing.T) (*ports.AuditServer, *audittest.Fixture) {
	t.Helper()
	f := audittest.New(t, sqlstoretest.OpenURL(t, "sqlite://"+filepath.Join(t.TempDir(), "audit.db")))
	for _, m := range audittest.Messages(t, f.Codec, 5) {
		require.NoError(t, f.Recorder.Handle(context.Background(), m))
	}
	return ports.NewAuditServer(f.Trail, slog.New(slog.DiscardHandler)), f
}

func requireViolation(t *testing.T, err error, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	require.Contains(t, fields, field)
}

func TestInvalidRequestsAreRejectedWithFieldViolations(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t)
	ctx := adminCtx()
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{name: "page size too large", field: "page_size", call: func() error {
			_, err := srv.Query(ctx, &auditpb.QueryRequest{PageSize: 1001})
			return err
		}},
		{name: "bad page token", field: "page_token", call: func() error {
			_, err := srv.Query(ctx, &auditpb.QueryRequest{PageToken: "nope"})
			return err
		}},
		{name: "inverted time range", field: "occurred_before", call: func() error {
			_, err := srv.Query(ctx, &auditpb.QueryRequest{OccurredAfter: timestamppb.New(timestamppb.Now().AsTime()), OccurredBefore: timestamppb.New(timestamppb.Now().AsTime().Add(-1e9))})
			return err
		}},
		{name: "verify range inverted", field: "to_sequence", call: func() error {
			_, err := srv.Verify(ctx, &auditpb.VerifyRequest{FromSequence: 5, ToSequence: 2})
			return err
		}},
		{name: "negative from", field: "from_sequence", call: func() error {
			_, err := srv.Verify(ctx, &auditpb.VerifyRequest{FromSequence: -1})
			return err
		}},
		{name: "negative checkpoint sequence", field: "sequence", call: func() error {
			_, err := srv.GetCheckpoint(ctx, &auditpb.GetCheckpointRequest{Sequence: -1})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireViolation(t, tt.call(), tt.field)
		})
	}
}

func TestPageTokenBelongsToItsFilters(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t)
	ctx := adminCtx()
	page, err := srv.Query(ctx, &auditpb.QueryRequest{PageSize: 2})
	require.NoError(t, err)
	require.Len(t, page.GetRecords(), 2)
	require.NotEmpty(t, page.GetNextPageToken())
	_, err = srv.Query(ctx, &auditpb.QueryRequest{PageSize: 2, Actor: "u-0", PageToken: page.GetNextPageToken()})
	requireViolation(t, err, "page_token")
	next, err := srv.Query(ctx, &auditpb.QueryRequest{PageSize: 2, PageToken: page.GetNextPageToken()})
	require.NoError(t, err)
	require.EqualValues(t, 3, next.GetRecords()[0].GetSequence())
	require.NotNil(t, next.GetRecords()[0].GetRecordedAt())
}

func TestGetCheckpointNotFoundThenFound(t *testing.T) {
	t.Parallel()
	srv, f := newServer(t)
	ctx := adminCtx()
	_, err := srv.GetCheckpoint(ctx, &auditpb.GetCheckpointRequest{})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, _, err = f.Checkpointer.Checkpoint(ctx)
	require.NoError(t, err)
	resp, err := srv.GetCheckpoint(ctx, &auditpb.GetCheckpointRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 5, resp.GetCheckpoint().GetSequence())
	c, err := chainpb.CheckpointFromProto(resp.GetCheckpoint())
	require.NoError(t, err)
	require.NoError(t, c.Verify(f.Signer.PublicKey()))
}

// exportStream collects what Export sends on a call with ctx.
type exportStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent []*auditpb.ExportResponse
}

func (s *exportStream) Context() context.Context { return s.ctx }

func (s *exportStream) Send(r *auditpb.ExportResponse) error {
	s.sent = append(s.sent, r)
	return nil
}

func TestEveryMethodNeedsAnAdmin(t *testing.T) {
	t.Parallel()
	methods := []struct {
		name string
		call func(ctx context.Context, srv *ports.AuditServer) error
	}{
		{name: "Query", call: func(ctx context.Context, srv *ports.AuditServer) error {
			_, err := srv.Query(ctx, &auditpb.QueryRequest{})
			return err
		}},
		{name: "Verify", call: func(ctx context.Context, srv *ports.AuditServer) error {
			_, err := srv.Verify(ctx, &auditpb.VerifyRequest{})
			return err
		}},
		{name: "Export", call: func(ctx context.Context, srv *ports.AuditServer) error {
			st := &exportStream{ctx: ctx}
			if err := srv.Export(&auditpb.ExportRequest{}, st); err != nil {
				return err
			}
			records := 0
			for _, r := range st.sent {
				if r.GetRecord() != nil {
					records++
				}
			}
			if records != 5 {
				return status.Errorf(codes.Internal, "exported %d records, want 5", records)
			}
			return nil
		}},
		{name: "GetCheckpoint", call: func(ctx context.Context, srv *ports.AuditServer) error {
			_, err := srv.GetCheckpoint(ctx, &auditpb.GetCheckpointRequest{})
			return err
		}},
	}
	callers := []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{name: "no principal", ctx: context.Background(), want: codes.Unauthenticated},
		{name: "user", ctx: auth.WithPrincipal(context.Background(), auth.Principal{UserID: "ada", Roles: []string{"user"}}), want: codes.PermissionDenied},
		{name: "admin", ctx: adminCtx(), want: codes.OK},
	}
	for _, m := range methods {
		for _, c := range callers {
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				srv, _ := newServer(t)
				err := m.call(c.ctx, srv)
				want := c.want
				if want == codes.OK && m.name == "GetCheckpoint" {
					want = codes.NotFound // allowed; no checkpoint signed yet
				}
				require.Equal(t, want, status.Code(err), "%v", err)
			})
		}
	}
}
