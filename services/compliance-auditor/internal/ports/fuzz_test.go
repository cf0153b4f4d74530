package ports_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/service/servicefuzz"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/ports"
)

// fuzzAudit fuzzes one AuditService method through the runtime's real
// interceptors and the JWT interceptors, over a SQLite trail of 12 records
// whose head is checkpointed (so a whole Verify or Export signs nothing new).
func fuzzAudit(f *testing.F, method string, seeds ...proto.Message) {
	fx := audittest.New(f, sqlstoretest.OpenURL(f, "sqlite://"+filepath.Join(f.TempDir(), "audit.db")))
	for _, m := range audittest.Messages(f, fx.Codec, 12) {
		require.NoError(f, fx.Recorder.Handle(context.Background(), m))
	}
	_, _, err := fx.Checkpointer.Checkpoint(context.Background())
	require.NoError(f, err)
	srv := servicefuzz.InProcess(f, "compliance-auditor", func(s *grpc.Server, logger *slog.Logger) {
		auditpb.RegisterAuditServiceServer(s, ports.NewAuditServer(fx.Trail, logger))
	})
	md := servicefuzz.Methods(f, auditpb.File_fleet_audit_v1_audit_proto.Services().Get(0).FullName()).ByName(protoreflect.Name(method))
	require.NotNil(f, md, method)
	srv.Fuzz(f, md, func(t testing.TB) map[string]int64 {
		counts := sqlstoretest.RowCounts(t, fx.DB)
		head, err := fx.Repo.Head(context.Background())
		require.NoError(t, err)
		counts["head"] = int64(head.Sequence)
		return counts
	}, seeds...)
}

func FuzzAuditQuery(f *testing.F) {
	fuzzAudit(f, "Query",
		&auditpb.QueryRequest{Actor: "u-1", PageSize: 3},
		&auditpb.QueryRequest{ResourceType: "job", ResourceId: "job-4", OccurredAfter: timestamppb.New(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)), OccurredBefore: &timestamppb.Timestamp{Seconds: -1 << 40}},
		&auditpb.QueryRequest{PageToken: "AQAAAAAAAAADAAAAAAAAAAA", PageSize: -1},
	)
}

func FuzzAuditVerify(f *testing.F) {
	fuzzAudit(f, "Verify",
		&auditpb.VerifyRequest{FromSequence: 3, ToSequence: 9},
		&auditpb.VerifyRequest{FromSequence: 1 << 62},
		&auditpb.VerifyRequest{FromSequence: -1, ToSequence: -5},
	)
}

func FuzzAuditExport(f *testing.F) {
	fuzzAudit(f, "Export",
		&auditpb.ExportRequest{FromSequence: 5, ToSequence: 7},
		&auditpb.ExportRequest{FromSequence: 1 << 62, ToSequence: 1<<63 - 1},
		&auditpb.ExportRequest{ToSequence: -1},
	)
}

func FuzzAuditGetCheckpoint(f *testing.F) {
	fuzzAudit(f, "GetCheckpoint",
		&auditpb.GetCheckpointRequest{Sequence: 12},
		&auditpb.GetCheckpointRequest{Sequence: -3},
		&auditpb.GetCheckpointRequest{Sequence: 1<<63 - 1},
	)
}

// TestEveryAuditMethodIsFuzzed fails when AuditService gains a method
// without a fuzz target above.
func TestEveryAuditMethodIsFuzzed(t *testing.T) {
	fuzzed := map[protoreflect.Name]bool{"Query": true, "Verify": true, "Export": true, "GetCheckpoint": true}
	ms := servicefuzz.Methods(t, auditpb.File_fleet_audit_v1_audit_proto.Services().Get(0).FullName())
	for i := range ms.Len() {
		require.True(t, fuzzed[ms.Get(i).Name()], "no fuzz target for %s", ms.Get(i).FullName())
	}
}
