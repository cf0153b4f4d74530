package chainpb_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auditchain/chainpb"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
)

// sliceStream replays messages as an Export stream would, then ends with err (io.EOF when nil).
type sliceStream struct {
	msgs []*auditpb.ExportResponse
	err  error
}

func (s *sliceStream) Recv() (*auditpb.ExportResponse, error) {
	if len(s.msgs) == 0 {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

// chain returns n chained records with a checkpoint after every third and at the head,
// as the service's stream messages, and the public key of the checkpoints.
func chain(t *testing.T, n int) ([]*auditpb.ExportResponse, *auditchain.Signer) {
	t.Helper()
	seed := sha256.Sum256([]byte("chainpb test key"))
	signer, err := auditchain.NewSigner(ed25519.NewKeyFromSeed(seed[:]))
	require.NoError(t, err)
	c := auditchain.NewChain(auditchain.Head{})
	base := time.Date(2026, 11, 2, 10, 0, 0, 123456789, time.UTC)
	var msgs []*auditpb.ExportResponse
	for i := 1; i <= n; i++ {
		r, err := c.Append(auditchain.Record{
			EventID: fmt.Sprintf("ev-%d", i), OccurredAt: base.Add(time.Duration(i) * time.Second),
			RecordedAt: base.Add(time.Duration(i)*time.Second + time.Millisecond), Actor: "alice", ActorRole: "user",
			Action: "job.submitted", ResourceType: "job", ResourceID: fmt.Sprintf("job-%d", i/2),
			Details: map[string]string{"to_status": "SUBMITTED", "note": "ü <&>"},
		})
		require.NoError(t, err)
		m, err := chainpb.EntryToProto(auditchain.Entry{Record: &r})
		require.NoError(t, err)
		msgs = append(msgs, m)
		if i%3 == 0 || i == n {
			cp := signer.Sign(c.Head(), base.Add(time.Duration(i)*time.Second))
			m, err := chainpb.EntryToProto(auditchain.Entry{Checkpoint: &cp})
			require.NoError(t, err)
			msgs = append(msgs, m)
		}
	}
	return msgs, signer
}

func TestWriteExportVerifiesOffline(t *testing.T) {
	msgs, signer := chain(t, 10)
	var buf bytes.Buffer
	w, err := auditchain.NewWriter(&buf, signer.KeyID())
	require.NoError(t, err)
	var seen []chainpb.Progress
	p, err := chainpb.WriteExport(&sliceStream{msgs: msgs}, w, func(p chainpb.Progress) { seen = append(seen, p) })
	require.NoError(t, err)
	require.Equal(t, chainpb.Progress{Records: 10, Checkpoints: 4, LastSequence: 10}, p)
	require.Len(t, seen, 14)

	res, err := auditchain.Verify(auditchain.NewReader(bytes.NewReader(buf.Bytes()), auditchain.ReaderOptions{}).Entries(),
		auditchain.VerifyOptions{PublicKey: signer.PublicKey()})
	require.NoError(t, err)
	require.True(t, res.OK, "%+v", res)
	require.EqualValues(t, 10, res.Records)
	require.EqualValues(t, 4, res.Checkpoints)
}

func TestRoundTripKeepsEveryField(t *testing.T) {
	msgs, _ := chain(t, 4)
	for _, m := range msgs {
		e, err := chainpb.EntryFromProto(m)
		require.NoError(t, err)
		back, err := chainpb.EntryToProto(e)
		require.NoError(t, err)
		require.Equal(t, m.String(), back.String())
		if e.Record != nil {
			require.Equal(t, e.Record.Hash, e.Record.ComputeHash(), "conversion must keep what the hash covers")
		}
	}
}

func TestBadMessagesAreRefused(t *testing.T) {
	msgs, signer := chain(t, 2)
	short := &auditpb.ExportResponse{Line: &auditpb.ExportResponse_Record{Record: &auditpb.AuditRecord{Sequence: 3, Hash: []byte{1}}}}
	badJSON := &auditpb.ExportResponse{Line: &auditpb.ExportResponse_Record{Record: &auditpb.AuditRecord{
		Sequence: 3, DetailsJson: []byte("{"), Hash: make([]byte, 32), PrevHash: make([]byte, 32)}}}
	badHead := &auditpb.ExportResponse{Line: &auditpb.ExportResponse_Checkpoint{Checkpoint: &auditpb.Checkpoint{Sequence: 2, HeadHash: []byte{1, 2}}}}
	for name, tc := range map[string]struct {
		msg  *auditpb.ExportResponse
		want string
	}{
		"short hash":    {short, "record 3: hashes must be 32 bytes"},
		"bad details":   {badJSON, "record 3 details_json"},
		"bad head hash": {badHead, "checkpoint 2: head_hash must be 32 bytes"},
		"empty message": {&auditpb.ExportResponse{}, "neither a record nor a checkpoint"},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := auditchain.NewWriter(&buf, signer.KeyID())
			require.NoError(t, err)
			stream := &sliceStream{msgs: append(append([]*auditpb.ExportResponse{}, msgs...), tc.msg)}
			p, err := chainpb.WriteExport(stream, w, nil)
			require.ErrorContains(t, err, tc.want)
			require.EqualValues(t, 2, p.Records, "the entries before the bad one were written")
		})
	}
}

func TestStreamErrorIsReported(t *testing.T) {
	msgs, signer := chain(t, 3)
	var buf bytes.Buffer
	w, err := auditchain.NewWriter(&buf, signer.KeyID())
	require.NoError(t, err)
	_, err = chainpb.WriteExport(&sliceStream{msgs: msgs[:2], err: io.ErrUnexpectedEOF}, w, nil)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.ErrorContains(t, err, "after 2 records")
}
