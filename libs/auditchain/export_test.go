package auditchain_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
)

func writeExport(t testing.TB, keyID string, es []auditchain.Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := auditchain.NewWriter(&buf, keyID)
	require.NoError(t, err)
	for _, e := range es {
		require.NoError(t, w.Write(e))
	}
	require.NoError(t, w.Flush())
	return buf.Bytes()
}

func readAll(r *auditchain.Reader) ([]auditchain.Entry, error) {
	var out []auditchain.Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func TestExportRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 300, 50)
	es := entries(f.records, f.checkpoints)
	data := writeExport(t, f.signer.KeyID(), es)
	require.Equal(t, len(es)+1, bytes.Count(data, []byte("\n")))

	r := auditchain.NewReader(bytes.NewReader(data), auditchain.ReaderOptions{})
	h, err := r.Header()
	require.NoError(t, err)
	require.Equal(t, auditchain.Header{Format: auditchain.ExportFormat, Version: auditchain.ExportVersion, KeyID: f.signer.KeyID()}, h)
	got, err := readAll(r)
	require.NoError(t, err)
	require.Equal(t, es, got)

	res, err := auditchain.Verify(auditchain.NewReader(bytes.NewReader(data), auditchain.ReaderOptions{}).Entries(), f.opts())
	require.NoError(t, err)
	require.True(t, res.OK, res.String())
	require.Equal(t, int64(300), res.Records)
	require.Equal(t, int64(6), res.Checkpoints)
}

func TestExportLineFormat(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, 1)
	lines := strings.Split(strings.TrimSuffix(string(writeExport(t, f.signer.KeyID(), entries(f.records, f.checkpoints))), "\n"), "\n")
	require.Len(t, lines, 3)
	require.Equal(t, `{"type":"header","format":"fleet-audit-export","version":1,"key_id":"`+f.signer.KeyID()+`"}`, lines[0])
	require.True(t, strings.HasPrefix(lines[1], `{"type":"record","sequence":1,"event_id":"`), lines[1])
	require.Contains(t, lines[1], `"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000"`)
	require.Contains(t, lines[1], `"hash":"`+f.records[0].Hash.String()+`"`)
	require.Contains(t, lines[1], `"occurred_at":"2026-03-14T09:26:54.589793Z"`)
	require.True(t, strings.HasPrefix(lines[2], `{"type":"checkpoint","sequence":1,"head_hash":"`+f.records[0].Hash.String()+`"`), lines[2])
}

func TestReadExportErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2, 2)
	good := strings.Split(strings.TrimSuffix(string(writeExport(t, f.signer.KeyID(), entries(f.records, f.checkpoints))), "\n"), "\n")
	header, rec1, rec2 := good[0], good[1], good[2]
	tests := []struct {
		name     string
		input    string
		maxLine  int
		wantLine int
		wantErr  string
	}{
		{name: "empty input", input: "", wantLine: 1, wantErr: "no header line"},
		{name: "no header", input: rec1 + "\n", wantLine: 1, wantErr: `first line is of type "record"`},
		{name: "wrong format", input: `{"type":"header","format":"csv","version":1}` + "\n", wantLine: 1, wantErr: `format "csv"`},
		{name: "future version", input: `{"type":"header","format":"fleet-audit-export","version":2,"new":1}` + "\n", wantLine: 1, wantErr: "version 2 is not supported"},
		{name: "not JSON", input: header + "\n" + rec1 + "\n{oops\n", wantLine: 3, wantErr: "invalid character"},
		{name: "truncated JSON", input: header + "\n" + rec1[:40] + "\n", wantLine: 2, wantErr: "unexpected end of JSON"},
		{name: "JSON array", input: header + "\n[1,2]\n", wantLine: 2, wantErr: "cannot unmarshal array"},
		{name: "unknown type", input: header + "\n" + `{"type":"note"}` + "\n", wantLine: 2, wantErr: `unknown line type "note"`},
		{name: "second header", input: header + "\n" + header + "\n", wantLine: 2, wantErr: "second header"},
		{name: "unknown field", input: header + "\n" + strings.Replace(rec1, `"type":"record"`, `"type":"record","extra":true`, 1) + "\n", wantLine: 2, wantErr: `unknown field "extra"`},
		{name: "short hash", input: header + "\n" + rec1 + "\n" + strings.Replace(rec2, `"hash":"`+f.records[1].Hash.String(), `"hash":"abcd`, 1) + "\n", wantLine: 3, wantErr: "want 64 hex digits"},
		{name: "bad time", input: header + "\n" + strings.Replace(rec1, `"occurred_at":"2026`, `"occurred_at":"yesterday`, 1) + "\n", wantLine: 2, wantErr: "cannot parse"},
		{name: "wrong field type", input: header + "\n" + strings.Replace(rec1, `"sequence":1`, `"sequence":"1"`, 1) + "\n", wantLine: 2, wantErr: "cannot unmarshal string"},
		{name: "negative sequence", input: header + "\n" + strings.Replace(rec1, `"sequence":1`, `"sequence":-1`, 1) + "\n", wantLine: 2, wantErr: "cannot unmarshal number -1"},
		{name: "trailing data", input: header + "\n" + rec1 + ` {}` + "\n", wantLine: 2, wantErr: "after top-level value"},
		{name: "blank line", input: header + "\n\n" + rec1 + "\n", wantLine: 2, wantErr: "empty line"},
		{name: "line too long", input: header + "\n" + rec1 + "\n" + rec2 + "\n", maxLine: len(header) + 1, wantLine: 2, wantErr: "line longer than"},
		{name: "bad signature hex", input: header + "\n" + `{"type":"checkpoint","sequence":1,"signature":"zz"}` + "\n", wantLine: 2, wantErr: "hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := auditchain.NewReader(strings.NewReader(tt.input), auditchain.ReaderOptions{MaxLineBytes: tt.maxLine})
			_, err := readAll(r)
			require.ErrorContains(t, err, tt.wantErr)
			var lineErr *auditchain.LineError
			require.ErrorAs(t, err, &lineErr)
			require.Equal(t, tt.wantLine, lineErr.Line, err.Error())
			require.True(t, strings.HasPrefix(err.Error(), "line "), err.Error())

			// Errors are sticky, and Verify reports them as read errors.
			_, again := r.Next()
			require.Equal(t, err, again)
			_, verr := auditchain.Verify(auditchain.NewReader(strings.NewReader(tt.input), auditchain.ReaderOptions{MaxLineBytes: tt.maxLine}).Entries(), f.opts())
			require.True(t, errors.As(verr, &lineErr), "%v", verr)
		})
	}
}

func TestReadExportAcceptsCRLF(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 5, 5)
	data := writeExport(t, f.signer.KeyID(), entries(f.records, f.checkpoints))
	data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
	res, err := auditchain.Verify(auditchain.NewReader(bytes.NewReader(data), auditchain.ReaderOptions{}).Entries(), f.opts())
	require.NoError(t, err)
	require.True(t, res.OK, res.String())
}

// FuzzReadExport feeds arbitrary bytes to the reader and the verifier: neither may
// panic, and every record read must survive a write and a second read unchanged.
func FuzzReadExport(f *testing.F) {
	fx := newFixture(f, 3, 2)
	f.Add(writeExport(f, fx.signer.KeyID(), entries(fx.records, fx.checkpoints)))
	f.Add([]byte(`{"type":"header","format":"fleet-audit-export","version":1}` + "\n" + `{"type":"checkpoint","sequence":0}` + "\n"))
	f.Add([]byte("{}\n"))
	pub := fx.signer.PublicKey()
	f.Fuzz(func(t *testing.T, data []byte) {
		r := auditchain.NewReader(bytes.NewReader(data), auditchain.ReaderOptions{MaxLineBytes: 4096})
		es, err := readAll(r)
		if err != nil {
			var lineErr *auditchain.LineError
			require.ErrorAs(t, err, &lineErr)
			require.Positive(t, lineErr.Line)
		}
		res, err := auditchain.Verify(entrySeq(es), auditchain.VerifyOptions{PublicKey: pub})
		require.NoError(t, err)
		if !res.OK {
			require.NotEqual(t, auditchain.ReasonNone, res.Reason)
		}
		for _, e := range es {
			var buf bytes.Buffer
			w, err := auditchain.NewWriter(&buf, "")
			require.NoError(t, err)
			if w.Write(e) != nil {
				continue // a time the RFC 3339 writer cannot hold
			}
			require.NoError(t, w.Flush())
			back, err := readAll(auditchain.NewReader(&buf, auditchain.ReaderOptions{}))
			require.NoError(t, err)
			require.Len(t, back, 1)
			if e.Record != nil {
				require.Equal(t, e.Record.Canonical(), back[0].Record.Canonical())
				require.Equal(t, e.Record.Hash, back[0].Record.Hash)
			} else {
				require.Equal(t, e.Checkpoint.SignedMessage(), back[0].Checkpoint.SignedMessage())
			}
		}
	})
}

// TestVerifyExportEndAndAnchor: a whole export must end on a checkpoint and
// start at an anchor older than the retention period; a range export need not.
func TestVerifyExportEndAndAnchor(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 30, 10) // checkpoints at 10, 20, 30, signed baseTime+10s, +20s, +30s
	keys, err := auditchain.NewKeySet(f.signer.PublicKey())
	require.NoError(t, err)
	write := func(h auditchain.Header, es []auditchain.Entry) []byte {
		var buf bytes.Buffer
		h.KeyID = f.signer.KeyID()
		w, err := auditchain.NewWriterHeader(&buf, h)
		require.NoError(t, err)
		for _, e := range es {
			require.NoError(t, w.Write(e))
		}
		require.NoError(t, w.Flush())
		return buf.Bytes()
	}
	all := entries(f.records, f.checkpoints)
	cut := entries(f.records[:25], f.checkpoints[:2])      // records 1..25, checkpoints 10 and 20
	retained := entries(f.records[20:], f.checkpoints[1:]) // anchor 20, records 21..30
	now := baseTime.Add(24 * time.Hour)
	tests := []struct {
		name      string
		data      []byte
		retention time.Duration
		reason    auditchain.Reason
		bad       uint64
	}{
		{name: "whole", data: write(auditchain.Header{}, all)},
		{name: "whole, newest records cut with their checkpoint", data: write(auditchain.Header{}, cut), reason: auditchain.ReasonUnsealed, bad: 25},
		{name: "range ending between checkpoints", data: write(auditchain.Header{From: 5, To: 25}, cut)},
		{name: "retained, anchor older than the retention period", data: write(auditchain.Header{}, retained), retention: time.Hour},
		{name: "retained, anchor younger than the retention period", data: write(auditchain.Header{}, retained), retention: 48 * time.Hour,
			reason: auditchain.ReasonAnchorTooRecent, bad: 20},
		{name: "range from an anchor", data: write(auditchain.Header{From: 21}, retained), retention: 48 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, res, err := auditchain.VerifyExport(bytes.NewReader(tt.data), auditchain.ExportVerifyOptions{Keys: keys, Retention: tt.retention, Now: now})
			require.NoError(t, err)
			if tt.reason == auditchain.ReasonNone {
				require.True(t, res.OK, res.String())
				return
			}
			requireFail(t, res, tt.bad, tt.reason)
		})
	}
	var other auditchain.KeySet
	require.NoError(t, other.Add(testSigner(t, "other").PublicKey()))
	_, _, err = auditchain.VerifyExport(bytes.NewReader(write(auditchain.Header{}, all)), auditchain.ExportVerifyOptions{Keys: other})
	require.ErrorIs(t, err, auditchain.ErrUnknownKey)
}
