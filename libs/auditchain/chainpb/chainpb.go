// Package chainpb converts between the audit chain (libs/auditchain) and its
// fleet.audit.v1 protobuf messages, and turns an AuditService Export stream
// into the NDJSON export file that auditchain.Verify checks offline.
package chainpb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
)

// RecordToProto converts a record; its details become their canonical JSON.
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

// RecordFromProto converts a record received from the service back.
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

// CheckpointFromProto converts a checkpoint received from the service back.
func CheckpointFromProto(p *auditpb.Checkpoint) (auditchain.Checkpoint, error) {
	c := auditchain.Checkpoint{Sequence: uint64(p.GetSequence()), SignedAt: p.GetSignedAt().AsTime(), KeyID: p.GetKeyId(), Signature: p.GetSignature()}
	if len(p.GetHeadHash()) != len(c.HeadHash) {
		return auditchain.Checkpoint{}, fmt.Errorf("checkpoint %d: head_hash must be %d bytes", c.Sequence, len(c.HeadHash))
	}
	copy(c.HeadHash[:], p.GetHeadHash())
	return c, nil
}

// EntryToProto converts one export entry to its stream message.
func EntryToProto(e auditchain.Entry) (*auditpb.ExportResponse, error) {
	switch {
	case e.Record != nil:
		r, err := RecordToProto(e.Record)
		if err != nil {
			return nil, err
		}
		return &auditpb.ExportResponse{Line: &auditpb.ExportResponse_Record{Record: r}}, nil
	case e.Checkpoint != nil:
		return &auditpb.ExportResponse{Line: &auditpb.ExportResponse_Checkpoint{Checkpoint: CheckpointToProto(e.Checkpoint)}}, nil
	default:
		return nil, errors.New("export entry holds neither a record nor a checkpoint")
	}
}

// EntryFromProto converts one stream message back to an export entry.
func EntryFromProto(p *auditpb.ExportResponse) (auditchain.Entry, error) {
	switch {
	case p.GetRecord() != nil:
		r, err := RecordFromProto(p.GetRecord())
		if err != nil {
			return auditchain.Entry{}, err
		}
		return auditchain.Entry{Record: &r}, nil
	case p.GetCheckpoint() != nil:
		c, err := CheckpointFromProto(p.GetCheckpoint())
		if err != nil {
			return auditchain.Entry{}, err
		}
		return auditchain.Entry{Checkpoint: &c}, nil
	default:
		return auditchain.Entry{}, errors.New("export message holds neither a record nor a checkpoint")
	}
}

// ExportReceiver is the receiving side of an AuditService Export stream.
type ExportReceiver interface {
	Recv() (*auditpb.ExportResponse, error)
}

// Progress counts what WriteExport has written so far.
type Progress struct {
	Records     int64
	Checkpoints int64
	// LastSequence is the sequence of the last record written; 0 before the first.
	LastSequence uint64
}

// WriteExport writes every message of stream to w, in order, until the
// stream ends, and flushes w. onEntry, when set, is called after each entry
// is written (for progress). It returns what was written; on an error the
// output is incomplete and must not be used as an export.
func WriteExport(stream ExportReceiver, w *auditchain.Writer, onEntry func(Progress)) (Progress, error) {
	var p Progress
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return p, fmt.Errorf("receive export after %d records: %w", p.Records, err)
		}
		e, err := EntryFromProto(msg)
		if err != nil {
			return p, err
		}
		if err := w.Write(e); err != nil {
			return p, err
		}
		if e.Record != nil {
			p.Records++
			p.LastSequence = e.Record.Sequence
		} else {
			p.Checkpoints++
		}
		if onEntry != nil {
			onEntry(p)
		}
	}
	if err := w.Flush(); err != nil {
		return p, err
	}
	return p, nil
}
