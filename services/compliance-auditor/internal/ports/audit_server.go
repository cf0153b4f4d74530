// Package ports exposes the audit trail over gRPC (AuditService) and feeds it
// from Kafka (see the service package for the consumer wiring).
package ports

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auth"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/app"
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

// violations collects field violations of one request.
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	st := status.New(codes.InvalidArgument, "invalid request: "+v[0].Field+": "+v[0].Description)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: v}); err == nil {
		st = d
	}
	return st.Err()
}

func (s *AuditServer) statusOf(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, app.ErrNoCheckpoint):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	s.logger.ErrorContext(ctx, op+" failed", "error", err)
	return status.Error(codes.Internal, op+" failed")
}

func checkRange(v *violations, from, to int64) {
	if from < 0 {
		v.add("from_sequence", "must not be negative")
	}
	if to < 0 {
		v.add("to_sequence", "must not be negative")
	}
	if to != 0 && to < from {
		v.add("to_sequence", "must not be below from_sequence")
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
	var v violations
	for _, f := range []struct{ name, value string }{
		{"resource_type", req.GetResourceType()}, {"resource_id", req.GetResourceId()},
		{"actor", req.GetActor()}, {"action", req.GetAction()},
	} {
		if len(f.value) > auditchain.MaxFieldBytes {
			v.add(f.name, "is longer than %d bytes", auditchain.MaxFieldBytes)
		}
	}
	var f adapters.Filter
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
			v.add(ts.name, "is not a valid timestamp: %v", err)
			continue
		}
		*ts.dst = ts.pb.AsTime()
	}
	if !f.OccurredAfter.IsZero() && !f.OccurredBefore.IsZero() && !f.OccurredBefore.After(f.OccurredAfter) {
		v.add("occurred_before", "must be after occurred_after")
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > MaxPageSize:
		v.add("page_size", "must be between 0 and %d", MaxPageSize)
	case size == 0:
		size = DefaultPageSize
	}
	var after uint64
	if req.GetPageToken() != "" {
		tok, err := decodeToken(req.GetPageToken())
		switch {
		case err != nil:
			v.add("page_token", "%v", err)
		case tok.filter != filterHash(req):
			v.add("page_token", "belongs to a query with other filters")
		default:
			after = tok.after
		}
	}
	if err := v.err(); err != nil {
		return nil, err
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
		if resp.Records[i], err = RecordToProto(&recs[i]); err != nil {
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
	var v violations
	checkRange(&v, req.GetFromSequence(), req.GetToSequence())
	if err := v.err(); err != nil {
		return nil, err
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
	var v violations
	checkRange(&v, req.GetFromSequence(), req.GetToSequence())
	if err := v.err(); err != nil {
		return err
	}
	ctx := stream.Context()
	err := s.trail.Export(ctx, uint64(req.GetFromSequence()), uint64(req.GetToSequence()), func(e auditchain.Entry) error {
		resp := &auditpb.ExportResponse{}
		switch {
		case e.Record != nil:
			r, err := RecordToProto(e.Record)
			if err != nil {
				return err
			}
			resp.Line = &auditpb.ExportResponse_Record{Record: r}
		case e.Checkpoint != nil:
			resp.Line = &auditpb.ExportResponse_Checkpoint{Checkpoint: CheckpointToProto(e.Checkpoint)}
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
	var v violations
	if req.GetSequence() < 0 {
		v.add("sequence", "must not be negative")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	c, err := s.trail.GetCheckpoint(ctx, uint64(req.GetSequence()))
	if err != nil {
		return nil, s.statusOf(ctx, "get checkpoint", err)
	}
	return &auditpb.GetCheckpointResponse{Checkpoint: CheckpointToProto(&c)}, nil
}

// RecordToProto converts a record; details become their canonical JSON.
func RecordToProto(r *auditchain.Record) (*auditpb.AuditRecord, error) {
	details := []byte("{}")
	if len(r.Details) > 0 {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r.Details); err != nil {
			return nil, fmt.Errorf("encode details of record %d: %w", r.Sequence, err)
		}
		details = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	}
	return &auditpb.AuditRecord{
		Sequence: int64(r.Sequence), EventId: r.EventID, OccurredAt: timestamppb.New(r.OccurredAt),
		RecordedAt: timestamppb.New(r.RecordedAt), Actor: r.Actor, ActorRole: r.ActorRole, Action: r.Action,
		ResourceType: r.ResourceType, ResourceId: r.ResourceID, DetailsJson: details,
		PrevHash: r.PrevHash[:], Hash: r.Hash[:],
	}, nil
}

// RecordFromProto converts an exported record back for offline verification.
func RecordFromProto(p *auditpb.AuditRecord) (auditchain.Record, error) {
	r := auditchain.Record{
		Sequence: uint64(p.GetSequence()), EventID: p.GetEventId(), OccurredAt: p.GetOccurredAt().AsTime(),
		RecordedAt: p.GetRecordedAt().AsTime(), Actor: p.GetActor(), ActorRole: p.GetActorRole(), Action: p.GetAction(),
		ResourceType: p.GetResourceType(), ResourceID: p.GetResourceId(),
	}
	if d := p.GetDetailsJson(); len(d) > 0 && string(d) != "{}" {
		if err := json.Unmarshal(d, &r.Details); err != nil {
			return auditchain.Record{}, fmt.Errorf("record %d details_json: %w", r.Sequence, err)
		}
	}
	if len(p.GetPrevHash()) != len(r.PrevHash) || len(p.GetHash()) != len(r.Hash) {
		return auditchain.Record{}, fmt.Errorf("record %d: hashes must be %d bytes", r.Sequence, len(r.Hash))
	}
	copy(r.PrevHash[:], p.GetPrevHash())
	copy(r.Hash[:], p.GetHash())
	return r, nil
}

// CheckpointToProto converts a checkpoint.
func CheckpointToProto(c *auditchain.Checkpoint) *auditpb.Checkpoint {
	return &auditpb.Checkpoint{
		Sequence: int64(c.Sequence), HeadHash: c.HeadHash[:], SignedAt: timestamppb.New(c.SignedAt),
		Signature: c.Signature, KeyId: c.KeyID,
	}
}

// CheckpointFromProto converts an exported checkpoint back.
func CheckpointFromProto(p *auditpb.Checkpoint) (auditchain.Checkpoint, error) {
	c := auditchain.Checkpoint{Sequence: uint64(p.GetSequence()), SignedAt: p.GetSignedAt().AsTime(), KeyID: p.GetKeyId(), Signature: p.GetSignature()}
	if len(p.GetHeadHash()) != len(c.HeadHash) {
		return auditchain.Checkpoint{}, fmt.Errorf("checkpoint %d: head_hash must be %d bytes", c.Sequence, len(c.HeadHash))
	}
	copy(c.HeadHash[:], p.GetHeadHash())
	return c, nil
}
