// Package ports exposes the audit trail over gRPC (AuditService) and feeds it
// from Kafka (see the service package for the consumer wiring).
package ports

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auditchain/chainpb"
	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/grpcerr"
	"github.com/cosmic-horizons/fleet/libs/validation"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/app"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/domain"
)

// Page sizes of Query.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// AuditServer implements auditpb.AuditServiceServer over the trail. Every
// method needs an admin caller (see auth.RequireAdmin): a call without a
// verified principal gets Unauthenticated, any other caller PermissionDenied.
type AuditServer struct {
	auditpb.UnimplementedAuditServiceServer
	trail  *app.Trail
	logger *slog.Logger
}

// NewAuditServer returns the gRPC AuditService over trail.
func NewAuditServer(trail *app.Trail, logger *slog.Logger) *AuditServer {
	return &AuditServer{trail: trail, logger: logger}
}

// errorCodes is the one table from the trail's errors to gRPC codes; a
// *validation.Error is InvalidArgument with one field violation per field
// (libs/grpcerr).
var errorCodes = grpcerr.Table{Rules: append([]grpcerr.Rule{
	{Err: app.ErrNoCheckpoint, Code: codes.NotFound},
	// The stored trail does not verify: nothing is exported under a new
	// checkpoint. The reason names sequences and hashes, not database text.
	{Match: func(err error) bool { return errors.As(err, new(*app.UnverifiedError)) }, Code: codes.DataLoss,
		Message: "{op}: the audit trail does not verify; run Verify for the first bad sequence",
		Log:     grpcerr.LogError, LogMessage: "{op} refused: the audit trail does not verify"},
}, grpcerr.Context...), Fallback: grpcerr.Rule{Code: codes.Internal, Message: "{op} failed", Log: grpcerr.LogError, LogMessage: "{op} failed"}}

func (s *AuditServer) statusOf(ctx context.Context, op string, err error) error {
	return errorCodes.Status(ctx, s.logger, op, err)
}

func checkRange(v *validation.Error, from, to int64) {
	if from < 0 {
		v.Add("from_sequence", "must not be negative")
	}
	if to < 0 {
		v.Add("to_sequence", "must not be negative")
	}
	if to != 0 && to < from {
		v.Add("to_sequence", "must not be below from_sequence")
	}
}

// pageToken is the content of an opaque page token: the last sequence
// returned and a hash of the filters it belongs to.
type pageToken struct {
	after  uint64
	filter uint64
}

func filterHash(req *auditpb.QueryRequest) uint64 {
	h := fnv.New64a()
	for _, s := range []string{req.GetResourceType(), req.GetResourceId(), req.GetActor(), req.GetAction(),
		req.GetOccurredAfter().AsTime().String(), req.GetOccurredBefore().AsTime().String(),
		fmt.Sprint(req.GetOccurredAfter() != nil, req.GetOccurredBefore() != nil)} {
		_, _ = h.Write([]byte(s))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}

func encodeToken(t pageToken) string {
	b := make([]byte, 0, 17)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, t.after)
	b = binary.BigEndian.AppendUint64(b, t.filter)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (pageToken, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 17 || b[0] != 1 {
		return pageToken{}, errors.New("is not a token returned by Query")
	}
	return pageToken{after: binary.BigEndian.Uint64(b[1:9]), filter: binary.BigEndian.Uint64(b[9:])}, nil
}

// Query returns one page of matching records.
func (s *AuditServer) Query(ctx context.Context, req *auditpb.QueryRequest) (*auditpb.QueryResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	var v validation.Error
	for _, f := range []struct{ name, value string }{
		{"resource_type", req.GetResourceType()}, {"resource_id", req.GetResourceId()},
		{"actor", req.GetActor()}, {"action", req.GetAction()},
	} {
		if len(f.value) > auditchain.MaxFieldBytes {
			v.Add(f.name, "is longer than %d bytes", auditchain.MaxFieldBytes)
		}
	}
	var f domain.Filter
	f.ResourceType, f.ResourceID, f.Actor, f.Action = req.GetResourceType(), req.GetResourceId(), req.GetActor(), req.GetAction()
	for _, ts := range []struct {
		name string
		pb   *timestamppb.Timestamp
		dst  *time.Time
	}{{"occurred_after", req.GetOccurredAfter(), &f.OccurredAfter}, {"occurred_before", req.GetOccurredBefore(), &f.OccurredBefore}} {
		if ts.pb == nil {
			continue
		}
		if err := ts.pb.CheckValid(); err != nil {
			v.Add(ts.name, "is not a valid timestamp: %v", err)
			continue
		}
		*ts.dst = ts.pb.AsTime()
	}
	if !f.OccurredAfter.IsZero() && !f.OccurredBefore.IsZero() && !f.OccurredBefore.After(f.OccurredAfter) {
		v.Add("occurred_before", "must be after occurred_after")
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > MaxPageSize:
		v.Add("page_size", "must be between 0 and %d", MaxPageSize)
	case size == 0:
		size = DefaultPageSize
	}
	var after uint64
	if req.GetPageToken() != "" {
		tok, err := decodeToken(req.GetPageToken())
		switch {
		case err != nil:
			v.Add("page_token", "%v", err)
		case tok.filter != filterHash(req):
			v.Add("page_token", "belongs to a query with other filters")
		default:
			after = tok.after
		}
	}
	if err := v.Err(); err != nil {
		return nil, s.statusOf(ctx, "query", err)
	}
	recs, err := s.trail.Query(ctx, f, after, size+1)
	if err != nil {
		return nil, s.statusOf(ctx, "query", err)
	}
	resp := &auditpb.QueryResponse{}
	if len(recs) > size {
		recs = recs[:size]
		resp.NextPageToken = encodeToken(pageToken{after: recs[size-1].Sequence, filter: filterHash(req)})
	}
	resp.Records = make([]*auditpb.AuditRecord, len(recs))
	for i := range recs {
		if resp.Records[i], err = chainpb.RecordToProto(&recs[i]); err != nil {
			return nil, s.statusOf(ctx, "query", err)
		}
	}
	return resp, nil
}

// Verify recomputes the chain over the requested range.
func (s *AuditServer) Verify(ctx context.Context, req *auditpb.VerifyRequest) (*auditpb.VerifyResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	var v validation.Error
	checkRange(&v, req.GetFromSequence(), req.GetToSequence())
	if err := v.Err(); err != nil {
		return nil, s.statusOf(ctx, "verify", err)
	}
	res, err := s.trail.Verify(ctx, uint64(req.GetFromSequence()), uint64(req.GetToSequence()))
	if err != nil {
		return nil, s.statusOf(ctx, "verify", err)
	}
	return &auditpb.VerifyResponse{Ok: res.OK, CheckedCount: res.Checked, FirstBadSequence: int64(res.BadSequence), Reason: res.Reason}, nil
}

// Export streams the records and checkpoints of the requested range.
func (s *AuditServer) Export(req *auditpb.ExportRequest, stream auditpb.AuditService_ExportServer) error {
	if _, err := auth.RequireAdmin(stream.Context()); err != nil {
		return err
	}
	var v validation.Error
	checkRange(&v, req.GetFromSequence(), req.GetToSequence())
	if err := v.Err(); err != nil {
		return s.statusOf(stream.Context(), "export", err)
	}
	ctx := stream.Context()
	err := s.trail.Export(ctx, uint64(req.GetFromSequence()), uint64(req.GetToSequence()), func(e auditchain.Entry) error {
		resp, err := chainpb.EntryToProto(e)
		if err != nil {
			return err
		}
		return stream.Send(resp)
	})
	if err != nil {
		return s.statusOf(ctx, "export", err)
	}
	return nil
}

// GetCheckpoint returns the newest checkpoint at or below the requested sequence.
func (s *AuditServer) GetCheckpoint(ctx context.Context, req *auditpb.GetCheckpointRequest) (*auditpb.GetCheckpointResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	var v validation.Error
	if req.GetSequence() < 0 {
		v.Add("sequence", "must not be negative")
	}
	if err := v.Err(); err != nil {
		return nil, s.statusOf(ctx, "get checkpoint", err)
	}
	c, err := s.trail.GetCheckpoint(ctx, uint64(req.GetSequence()))
	if err != nil {
		return nil, s.statusOf(ctx, "get checkpoint", err)
	}
	return &auditpb.GetCheckpointResponse{Checkpoint: chainpb.CheckpointToProto(&c)}, nil
}
