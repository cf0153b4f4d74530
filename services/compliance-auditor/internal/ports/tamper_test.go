package ports_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auditchain/chainpb"
	"github.com/cosmic-horizons/fleet/libs/service/servicefuzz"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/ports"
)

// TestAuditServiceCatchesRemovedRecords calls AuditService.Verify and Export
// over gRPC (the runtime's interceptors, an admin token) on a trail from
// which someone with database access removed records together with their
// checkpoints: the newest ones (head rewritten), or the oldest ones (the
// rest disguised as a trail shortened by retention).
func TestAuditServiceCatchesRemovedRecords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cps    []int
		stmts  []string
		bad    int64
		reason string
		// exportCode is the code of a whole Export; offline is the reason
		// the export fails offline when the export is served.
		exportCode codes.Code
		offline    auditchain.Reason
	}{
		{name: "newest records and their checkpoint, head rewritten", cps: []int{8, 12},
			stmts: []string{"DELETE FROM audit_records WHERE sequence > 9", "DELETE FROM audit_checkpoints WHERE sequence > 8",
				"UPDATE audit_head SET sequence = 9, hash = (SELECT hash FROM audit_records WHERE sequence = 9)"},
			bad: 12, reason: "truncated", exportCode: codes.DataLoss},
		{name: "oldest records with their checkpoints", cps: []int{4, 8, 12},
			stmts: []string{"DELETE FROM audit_records WHERE sequence <= 8", "DELETE FROM audit_checkpoints WHERE sequence < 8"},
			bad:   8, reason: "retention anchor younger than the retention period", exportCode: codes.OK, offline: auditchain.ReasonAnchorTooRecent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, d := range sqlstoretest.Databases(t) {
				t.Run(d.Name, func(t *testing.T) {
					ctx := context.Background()
					f := audittest.New(t, d.Open(t))
					msgs := audittest.Messages(t, f.Codec, tt.cps[len(tt.cps)-1])
					done := 0
					for _, n := range tt.cps {
						for _, m := range msgs[done:n] {
							require.NoError(t, f.Recorder.Handle(ctx, m))
						}
						done = n
						_, _, err := f.Checkpointer.Checkpoint(ctx)
						require.NoError(t, err)
					}
					srv := servicefuzz.InProcess(t, "compliance-auditor", func(s *grpc.Server, logger *slog.Logger) {
						auditpb.RegisterAuditServiceServer(s, ports.NewAuditServer(f.Trail, logger))
					})
					client := auditpb.NewAuditServiceClient(srv.Conn)
					admin := srv.Caller(servicefuzz.CallerAdmin)
					res, err := client.Verify(admin, &auditpb.VerifyRequest{})
					require.NoError(t, err)
					require.True(t, res.GetOk(), res.GetReason())

					audittest.DropGuards(t, f.DB)
					for _, s := range tt.stmts {
						sqlstoretest.MustExec(t, f.DB, s)
					}
					res, err = client.Verify(admin, &auditpb.VerifyRequest{})
					require.NoError(t, err)
					require.False(t, res.GetOk(), "the trail verified after records were removed")
					require.Equal(t, tt.bad, res.GetFirstBadSequence(), res.GetReason())
					require.Contains(t, res.GetReason(), tt.reason)

					stream, err := client.Export(admin, &auditpb.ExportRequest{})
					require.NoError(t, err)
					var buf bytes.Buffer
					w, err := auditchain.NewWriter(&buf, f.Signer.KeyID())
					require.NoError(t, err)
					_, err = chainpb.WriteExport(stream, w, nil)
					require.Equal(t, tt.exportCode, status.Code(err), "%v", err)
					if tt.exportCode != codes.OK {
						return
					}
					_, off, err := auditchain.VerifyExport(bytes.NewReader(buf.Bytes()), auditchain.ExportVerifyOptions{
						Keys: f.Keys, Retention: audittest.Retention, Now: f.Now})
					require.NoError(t, err)
					require.False(t, off.OK, "the export verified offline: %s", off)
					require.Equal(t, tt.offline, off.Reason, off.String())
				})
			}
		})
	}
}
