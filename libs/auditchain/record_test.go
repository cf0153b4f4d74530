package auditchain_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
)

// TestCanonicalDocumentedExample pins the byte format documented on
// Record.AppendCanonical, so an independent implementation can rely on it.
func TestCanonicalDocumentedExample(t *testing.T) {
	t.Parallel()
	r := auditchain.Record{
		Sequence:   1,
		EventID:    "e",
		OccurredAt: time.Unix(1, 0),
		RecordedAt: time.Unix(1, 0).In(time.FixedZone("X", 3600)),
		Actor:      "u",
		Action:     "a",
	}
	want := strings.Join([]string{
		"01", "0000000000000001", "00000001", "65", "0000000000000001", "00000000",
		"0000000000000001", "00000000", "00000001", "75", "00000000", "00000001", "61",
		"00000000", "00000000", "00000000",
	}, "")
	require.Equal(t, want, hex.EncodeToString(r.Canonical()))

	sum := sha256.Sum256(append(make([]byte, 32), r.Canonical()...))
	require.Equal(t, auditchain.Hash(sum), r.ComputeHash())
}

func TestCanonicalIsUnambiguous(t *testing.T) {
	t.Parallel()
	base := newRecord(1)
	tests := []struct {
		name   string
		mutate func(r *auditchain.Record)
	}{
		{name: "move a byte between adjacent fields", mutate: func(r *auditchain.Record) {
			r.Actor, r.ActorRole = r.Actor+"u", strings.TrimPrefix(r.ActorRole, "u")
		}},
		{name: "move a byte from key to value", mutate: func(r *auditchain.Record) {
			delete(r.Details, "outcome")
			r.Details["outcom"] = "eSUCCESS"
		}},
		{name: "same instant one nanosecond later", mutate: func(r *auditchain.Record) { r.OccurredAt = r.OccurredAt.Add(1) }},
		{name: "empty details entry added", mutate: func(r *auditchain.Record) { r.Details["x"] = "" }},
		{name: "sequence", mutate: func(r *auditchain.Record) { r.Sequence++ }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := cloneRecords([]auditchain.Record{base})[0]
			tt.mutate(&r)
			require.NotEqual(t, base.Canonical(), r.Canonical())
			require.NotEqual(t, base.ComputeHash(), r.ComputeHash())
		})
	}
}

func TestCanonicalIgnoresRepresentation(t *testing.T) {
	t.Parallel()
	a := newRecord(8)
	b := cloneRecords([]auditchain.Record{a})[0]
	b.OccurredAt = b.OccurredAt.In(time.FixedZone("CET", 3600))
	// Rebuild the map in another insertion order.
	b.Details = map[string]string{}
	for _, k := range []string{"to_status", "note", "outcome"} {
		b.Details[k] = a.Details[k]
	}
	require.Equal(t, a.Canonical(), b.Canonical())

	var empty, nilMap auditchain.Record
	empty.Details = map[string]string{}
	require.Equal(t, nilMap.Canonical(), empty.Canonical())
}

func TestRecordValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(r *auditchain.Record)
		wantErr string
	}{
		{name: "valid", mutate: func(*auditchain.Record) {}},
		{name: "no event id", mutate: func(r *auditchain.Record) { r.EventID = "" }, wantErr: "event_id is empty"},
		{name: "no actor", mutate: func(r *auditchain.Record) { r.Actor = "" }, wantErr: "actor is empty"},
		{name: "no action", mutate: func(r *auditchain.Record) { r.Action = "" }, wantErr: "action is empty"},
		{name: "zero occurred_at", mutate: func(r *auditchain.Record) { r.OccurredAt = time.Time{} }, wantErr: "occurred_at is zero"},
		{name: "year out of range", mutate: func(r *auditchain.Record) { r.RecordedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, wantErr: "outside 1..9999"},
		{name: "invalid UTF-8", mutate: func(r *auditchain.Record) { r.ResourceID = "\xff" }, wantErr: "resource_id is not valid UTF-8"},
		{name: "field too long", mutate: func(r *auditchain.Record) { r.Actor = strings.Repeat("a", auditchain.MaxFieldBytes+1) }, wantErr: "actor is 4097 bytes"},
		{name: "empty details key", mutate: func(r *auditchain.Record) { r.Details[""] = "x" }, wantErr: "details key is empty"},
		{name: "details value not UTF-8", mutate: func(r *auditchain.Record) { r.Details["note"] = "a\xffb" }, wantErr: "details note is not valid UTF-8"},
		{name: "details value too long", mutate: func(r *auditchain.Record) { r.Details["note"] = strings.Repeat("v", auditchain.MaxFieldBytes+1) }, wantErr: "details note is 4097 bytes"},
		{name: "details too large", mutate: func(r *auditchain.Record) {
			for i := range 20 {
				r.Details[strings.Repeat("k", i+1)] = strings.Repeat("v", 4000)
			}
		}, wantErr: "details hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRecord(1)
			tt.mutate(&r)
			err := r.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			_, err = auditchain.NewChain(auditchain.Head{}).Append(r)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestChainNextCommit(t *testing.T) {
	t.Parallel()
	chain := auditchain.NewChain(auditchain.Head{})
	first, err := chain.Next(newRecord(1))
	require.NoError(t, err)
	require.Equal(t, uint64(1), first.Sequence)
	require.True(t, first.PrevHash.IsZero())
	require.Equal(t, first.ComputeHash(), first.Hash)
	require.Equal(t, auditchain.Head{}, chain.Head(), "Next must not advance the chain")

	require.NoError(t, chain.Commit(first))
	require.Equal(t, auditchain.Head{Sequence: 1, Hash: first.Hash}, chain.Head())
	require.ErrorContains(t, chain.Commit(first), "does not follow head 1")

	// A chain resumed from a stored head continues the same hashes.
	resumed := auditchain.NewChain(chain.Head())
	a, err := chain.Append(newRecord(2))
	require.NoError(t, err)
	b, err := resumed.Append(newRecord(2))
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Equal(t, first.Hash, a.PrevHash)
}

func TestHashText(t *testing.T) {
	t.Parallel()
	r := newRecord(1)
	h := r.ComputeHash()
	text, err := h.MarshalText()
	require.NoError(t, err)
	require.Len(t, text, 64)
	var back auditchain.Hash
	require.NoError(t, back.UnmarshalText(text))
	require.Equal(t, h, back)
	require.Equal(t, string(text), h.String())

	for _, bad := range []string{"", "00", strings.Repeat("g", 64), strings.Repeat("0", 66)} {
		_, err := auditchain.ParseHash(bad)
		require.Error(t, err, bad)
	}
}
