package auditchain_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
)

func TestVerifyThousandRecords(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1000, 100)
	res := verify(t, entries(f.records, f.checkpoints), f.opts())
	require.True(t, res.OK, res.String())
	require.Equal(t, int64(1000), res.Records)
	require.Equal(t, int64(10), res.Checkpoints)
	require.Equal(t, uint64(1), res.First)
	require.Equal(t, uint64(1000), res.LastCheckpoint)
	require.Equal(t, auditchain.Head{Sequence: 1000, Hash: f.records[999].Hash}, res.Head)
	require.NoError(t, res.Err())
	require.Equal(t, "ok: 1000 records, 10 checkpoints, head "+f.records[999].Hash.String(), res.String())
}

func TestVerifyEmptyChain(t *testing.T) {
	t.Parallel()
	res := verify(t, nil, auditchain.VerifyOptions{})
	require.True(t, res.OK)
	require.Zero(t, res.Records)
}

type mutation struct {
	name   string
	reason auditchain.Reason
	// seqReason, when set, accepts either gap or out of order (a changed sequence).
	seqReason bool
	apply     func(r *auditchain.Record)
}

func flipString(s string, i int) string {
	b := []byte(s)
	b[i] ^= 0x01
	return string(b)
}

// byteFlips returns one mutation per byte of every field of a record, with the
// reason Verify must give for it.
func byteFlips(r auditchain.Record) []mutation {
	var ms []mutation
	for i := range 8 {
		ms = append(ms, mutation{name: fmt.Sprintf("sequence byte %d", i), seqReason: true,
			apply: func(r *auditchain.Record) { r.Sequence ^= 1 << (8 * i) }})
	}
	strs := []struct {
		name string
		get  func(r *auditchain.Record) *string
	}{
		{"event_id", func(r *auditchain.Record) *string { return &r.EventID }},
		{"actor", func(r *auditchain.Record) *string { return &r.Actor }},
		{"actor_role", func(r *auditchain.Record) *string { return &r.ActorRole }},
		{"action", func(r *auditchain.Record) *string { return &r.Action }},
		{"resource_type", func(r *auditchain.Record) *string { return &r.ResourceType }},
		{"resource_id", func(r *auditchain.Record) *string { return &r.ResourceID }},
	}
	for _, s := range strs {
		for i := range len(*s.get(&r)) {
			ms = append(ms, mutation{name: fmt.Sprintf("%s byte %d", s.name, i), reason: auditchain.ReasonHashMismatch,
				apply: func(r *auditchain.Record) { p := s.get(r); *p = flipString(*p, i) }})
		}
	}
	times := []struct {
		name string
		get  func(r *auditchain.Record) *time.Time
	}{
		{"occurred_at", func(r *auditchain.Record) *time.Time { return &r.OccurredAt }},
		{"recorded_at", func(r *auditchain.Record) *time.Time { return &r.RecordedAt }},
	}
	for _, tf := range times {
		for i := range 8 {
			ms = append(ms, mutation{name: fmt.Sprintf("%s seconds byte %d", tf.name, i), reason: auditchain.ReasonHashMismatch,
				apply: func(r *auditchain.Record) {
					p := tf.get(r)
					*p = time.Unix(p.Unix()^(1<<(8*i)), int64(p.Nanosecond())).UTC()
				}})
		}
		for i := range 4 {
			ms = append(ms, mutation{name: fmt.Sprintf("%s nanos byte %d", tf.name, i), reason: auditchain.ReasonHashMismatch,
				apply: func(r *auditchain.Record) {
					p := tf.get(r)
					*p = time.Unix(p.Unix(), int64(p.Nanosecond()^(1<<(8*i)))).UTC()
				}})
		}
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range r.Details {
			if !yield(k) {
				return
			}
		}
	}) {
		for i := range len(k) {
			ms = append(ms, mutation{name: fmt.Sprintf("details key %q byte %d", k, i), reason: auditchain.ReasonHashMismatch,
				apply: func(r *auditchain.Record) { v := r.Details[k]; delete(r.Details, k); r.Details[flipString(k, i)] = v }})
		}
		for i := range len(r.Details[k]) {
			ms = append(ms, mutation{name: fmt.Sprintf("details value %q byte %d", k, i), reason: auditchain.ReasonHashMismatch,
				apply: func(r *auditchain.Record) { r.Details[k] = flipString(r.Details[k], i) }})
		}
		ms = append(ms, mutation{name: fmt.Sprintf("details %q removed", k), reason: auditchain.ReasonHashMismatch,
			apply: func(r *auditchain.Record) { delete(r.Details, k) }})
	}
	ms = append(ms, mutation{name: "details entry added", reason: auditchain.ReasonHashMismatch,
		apply: func(r *auditchain.Record) { r.Details["extra"] = "" }})
	for i := range 32 {
		ms = append(ms, mutation{name: fmt.Sprintf("prev_hash byte %d", i), reason: auditchain.ReasonBrokenLink,
			apply: func(r *auditchain.Record) { r.PrevHash[i] ^= 0x01 }})
		ms = append(ms, mutation{name: fmt.Sprintf("hash byte %d", i), reason: auditchain.ReasonHashMismatch,
			apply: func(r *auditchain.Record) { r.Hash[i] ^= 0x01 }})
	}
	return ms
}

// TestVerifyNamesEveryTamperedByte flips, one at a time, each byte of each field
// of record k and requires Verify to name sequence k.
func TestVerifyNamesEveryTamperedByte(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 24, 6)
	for _, k := range []int{1, 2, 12, 23, 24} {
		muts := byteFlips(f.records[k-1])
		require.Greater(t, len(muts), 150)
		for _, m := range muts {
			t.Run(fmt.Sprintf("record %d %s", k, m.name), func(t *testing.T) {
				// Tamper with the record in place, as in a file or a table row:
				// the stream keeps its order.
				records := cloneRecords(f.records)
				es := entries(records, f.checkpoints)
				m.apply(&records[k-1])
				res := verify(t, es, f.opts())
				require.False(t, res.OK)
				require.Equal(t, uint64(k), res.BadSequence, res.String())
				if m.seqReason {
					require.Contains(t, []auditchain.Reason{auditchain.ReasonGap, auditchain.ReasonOutOfOrder}, res.Reason, res.String())
				} else {
					require.Equal(t, m.reason, res.Reason, res.String())
				}
			})
		}
	}
}

func TestVerifyStructuralTampering(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1000, 100)
	other := testSigner(t, "forger")
	tests := []struct {
		name       string
		records    func(rs []auditchain.Record) []auditchain.Record
		cps        func(cs []auditchain.Checkpoint) []auditchain.Checkpoint
		wantSeq    uint64
		wantReason auditchain.Reason
	}{
		{
			name:    "middle record deleted",
			records: func(rs []auditchain.Record) []auditchain.Record { return slices.Delete(rs, 499, 500) },
			wantSeq: 500, wantReason: auditchain.ReasonGap,
		},
		{
			name:    "first record deleted",
			records: func(rs []auditchain.Record) []auditchain.Record { return rs[1:] },
			wantSeq: 1, wantReason: auditchain.ReasonGap,
		},
		{
			name: "adjacent records swapped",
			records: func(rs []auditchain.Record) []auditchain.Record {
				rs[299], rs[300] = rs[300], rs[299]
				return rs
			},
			wantSeq: 300, wantReason: auditchain.ReasonGap,
		},
		{
			name: "distant records swapped",
			records: func(rs []auditchain.Record) []auditchain.Record {
				rs[299], rs[699] = rs[699], rs[299]
				return rs
			},
			wantSeq: 300, wantReason: auditchain.ReasonGap,
		},
		{
			name: "swapped and renumbered",
			records: func(rs []auditchain.Record) []auditchain.Record {
				rs[299], rs[300] = rs[300], rs[299]
				rs[299].Sequence, rs[300].Sequence = 300, 301
				return rs
			},
			wantSeq: 300, wantReason: auditchain.ReasonBrokenLink,
		},
		{
			name: "record replayed",
			records: func(rs []auditchain.Record) []auditchain.Record {
				return slices.Insert(rs, 300, rs[299])
			},
			wantSeq: 301, wantReason: auditchain.ReasonOutOfOrder,
		},
		{
			name: "record rewritten with a recomputed hash",
			records: func(rs []auditchain.Record) []auditchain.Record {
				rs[400].Actor = "mallory"
				rs[400].Hash = rs[400].ComputeHash()
				return rs
			},
			wantSeq: 402, wantReason: auditchain.ReasonBrokenLink,
		},
		{
			name: "rewritten chain from 951 on, re-linked",
			records: func(rs []auditchain.Record) []auditchain.Record {
				chain := auditchain.NewChain(auditchain.Head{Sequence: 950, Hash: rs[949].Hash})
				out := rs[:950]
				for i := 951; i <= 1000; i++ {
					r := newRecord(i)
					r.Actor = "mallory"
					next, err := chain.Append(r)
					require.NoError(t, err)
					out = append(out, next)
				}
				return out
			},
			wantSeq: 1000, wantReason: auditchain.ReasonCheckpointHead,
		},
		{
			name:    "newest records deleted after a checkpoint",
			records: func(rs []auditchain.Record) []auditchain.Record { return rs[:950] },
			wantSeq: 951, wantReason: auditchain.ReasonTruncated,
		},
		{
			name:    "newest record deleted",
			records: func(rs []auditchain.Record) []auditchain.Record { return rs[:999] },
			wantSeq: 1000, wantReason: auditchain.ReasonTruncated,
		},
		{
			name: "checkpoint signed by another key",
			cps: func(cs []auditchain.Checkpoint) []auditchain.Checkpoint {
				cs[4] = other.Sign(auditchain.Head{Sequence: cs[4].Sequence, Hash: cs[4].HeadHash}, cs[4].SignedAt)
				return cs
			},
			wantSeq: 500, wantReason: auditchain.ReasonCheckpointSignature,
		},
		{
			name: "checkpoint forged under the right key id",
			cps: func(cs []auditchain.Checkpoint) []auditchain.Checkpoint {
				forged := other.Sign(auditchain.Head{Sequence: cs[4].Sequence, Hash: cs[4].HeadHash}, cs[4].SignedAt)
				forged.KeyID = cs[4].KeyID
				cs[4] = forged
				return cs
			},
			wantSeq: 500, wantReason: auditchain.ReasonCheckpointSignature,
		},
		{
			name: "checkpoint head hash altered",
			cps: func(cs []auditchain.Checkpoint) []auditchain.Checkpoint {
				cs[4].HeadHash[0] ^= 1
				return cs
			},
			wantSeq: 500, wantReason: auditchain.ReasonCheckpointSignature,
		},
		{
			name: "checkpoint signed_at altered",
			cps: func(cs []auditchain.Checkpoint) []auditchain.Checkpoint {
				cs[4].SignedAt = cs[4].SignedAt.Add(time.Microsecond)
				return cs
			},
			wantSeq: 500, wantReason: auditchain.ReasonCheckpointSignature,
		},
		{
			name: "checkpoint signature truncated",
			cps: func(cs []auditchain.Checkpoint) []auditchain.Checkpoint {
				cs[4].Signature = cs[4].Signature[:63]
				return cs
			},
			wantSeq: 500, wantReason: auditchain.ReasonCheckpointSignature,
		},
		{
			name: "validly signed checkpoint over a wrong head",
			cps: func(cs []auditchain.Checkpoint) []auditchain.Checkpoint {
				cs[4] = f.signer.Sign(auditchain.Head{Sequence: 500, Hash: f.records[498].Hash}, cs[4].SignedAt)
				return cs
			},
			wantSeq: 500, wantReason: auditchain.ReasonCheckpointHead,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			records := cloneRecords(f.records)
			cps := slices.Clone(f.checkpoints)
			for i := range cps {
				cps[i].Signature = slices.Clone(cps[i].Signature)
			}
			if tt.records != nil {
				records = tt.records(records)
			}
			if tt.cps != nil {
				cps = tt.cps(cps)
			}
			res := verify(t, entries(records, cps), f.opts())
			requireFail(t, res, tt.wantSeq, tt.wantReason)
			require.ErrorIs(t, res.Err(), auditchain.ErrNotVerified)
			require.Contains(t, res.String(), fmt.Sprintf("FAIL at sequence %d: %s", tt.wantSeq, tt.wantReason))
		})
	}
}

func TestVerifyCheckpointPlacement(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, 5)
	cp5, cp10 := f.checkpoints[0], f.checkpoints[1]
	r := func(i int) auditchain.Entry { return auditchain.Entry{Record: &f.records[i-1]} }
	c := func(cp auditchain.Checkpoint) auditchain.Entry { return auditchain.Entry{Checkpoint: &cp} }
	var all []auditchain.Entry
	for i := 1; i <= 10; i++ {
		all = append(all, r(i))
	}

	t.Run("checkpoint ahead of its record", func(t *testing.T) {
		t.Parallel()
		es := slices.Concat(all[:2], []auditchain.Entry{c(cp5)}, all[2:], []auditchain.Entry{c(cp10)})
		res := verify(t, es, f.opts())
		require.True(t, res.OK, res.String())
		require.Equal(t, int64(2), res.Checkpoints)
	})
	t.Run("checkpoint after later records", func(t *testing.T) {
		t.Parallel()
		es := slices.Concat(all[:7], []auditchain.Entry{c(cp5)}, all[7:])
		requireFail(t, verify(t, es, f.opts()), 5, auditchain.ReasonCheckpointOrder)
	})
	t.Run("no public key", func(t *testing.T) {
		t.Parallel()
		es := slices.Concat(all, []auditchain.Entry{c(cp10)})
		requireFail(t, verify(t, es, auditchain.VerifyOptions{}), 10, auditchain.ReasonCheckpointSignature)
	})
	t.Run("records without checkpoints verify without a key", func(t *testing.T) {
		t.Parallel()
		res := verify(t, all, auditchain.VerifyOptions{})
		require.True(t, res.OK, res.String())
		require.Zero(t, res.LastCheckpoint)
	})
}

func TestVerifyRetentionAnchor(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1000, 100)
	kept := f.records[500:] // records 1..500 dropped behind the checkpoint at 500
	tests := []struct {
		name       string
		entries    []auditchain.Entry
		opts       func(o auditchain.VerifyOptions) auditchain.VerifyOptions
		wantOK     bool
		wantSeq    uint64
		wantReason auditchain.Reason
		wantFirst  uint64
	}{
		{
			name:    "anchor checkpoint vouches for the first record",
			entries: entries(kept, f.checkpoints[4:]),
			wantOK:  true, wantFirst: 501,
		},
		{
			name:    "store keeps older checkpoints too",
			entries: entries(kept, f.checkpoints),
			wantOK:  true, wantFirst: 501,
		},
		{
			name:    "anchor missing",
			entries: entries(kept, f.checkpoints[5:]),
			wantSeq: 1, wantReason: auditchain.ReasonGap,
		},
		{
			name:    "anchor too old: records between anchor and first record missing",
			entries: entries(kept, slices.Concat(f.checkpoints[3:4], f.checkpoints[5:])),
			wantSeq: 401, wantReason: auditchain.ReasonGap,
		},
		{
			name: "anchor forged",
			entries: func() []auditchain.Entry {
				cps := slices.Clone(f.checkpoints[4:])
				cps[0] = testSigner(t, "forger").Sign(auditchain.Head{Sequence: 500, Hash: kept[0].PrevHash}, baseTime)
				return entries(kept, cps)
			}(),
			wantSeq: 500, wantReason: auditchain.ReasonCheckpointSignature,
		},
		{
			name: "anchor of another chain",
			entries: func() []auditchain.Entry {
				cps := slices.Clone(f.checkpoints[4:])
				cps[0] = f.signer.Sign(auditchain.Head{Sequence: 500, Hash: f.records[10].Hash}, baseTime)
				return entries(kept, cps)
			}(),
			wantSeq: 501, wantReason: auditchain.ReasonBrokenLink,
		},
		{
			name:    "range from the retention point",
			entries: entries(kept, f.checkpoints[4:]),
			opts: func(o auditchain.VerifyOptions) auditchain.VerifyOptions {
				o.From, o.To = 501, 600
				return o
			},
			wantOK: true, wantFirst: 501,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := f.opts()
			if tt.opts != nil {
				opts = tt.opts(opts)
			}
			res := verify(t, tt.entries, opts)
			if !tt.wantOK {
				requireFail(t, res, tt.wantSeq, tt.wantReason)
				return
			}
			require.True(t, res.OK, res.String())
			require.Equal(t, tt.wantFirst, res.First)
		})
	}
}

func TestVerifyRange(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1000, 100)
	tampered := cloneRecords(f.records)
	tampered[349].ResourceID = "job-x"
	tests := []struct {
		name        string
		records     []auditchain.Record
		opts        auditchain.VerifyOptions
		wantOK      bool
		wantRecords int64
		wantHead    uint64
		wantSeq     uint64
		wantReason  auditchain.Reason
	}{
		{name: "range inside", records: f.records, opts: auditchain.VerifyOptions{From: 200, To: 300},
			wantOK: true, wantRecords: 101, wantHead: 300},
		{name: "tampering outside the range is not looked at", records: tampered, opts: auditchain.VerifyOptions{From: 200, To: 300},
			wantOK: true, wantRecords: 101, wantHead: 300},
		{name: "tampering inside the range", records: tampered, opts: auditchain.VerifyOptions{From: 300, To: 400},
			wantSeq: 350, wantReason: auditchain.ReasonHashMismatch},
		{name: "open end", records: f.records, opts: auditchain.VerifyOptions{From: 901},
			wantOK: true, wantRecords: 100, wantHead: 1000},
		{name: "open start", records: f.records, opts: auditchain.VerifyOptions{To: 10},
			wantOK: true, wantRecords: 10, wantHead: 10},
		{name: "trusted base", records: f.records[199:], opts: auditchain.VerifyOptions{Base: &auditchain.Head{Sequence: 199, Hash: f.records[198].Hash}, To: 250},
			wantOK: true, wantRecords: 51, wantHead: 250},
		{name: "wrong trusted base", records: f.records[199:], opts: auditchain.VerifyOptions{Base: &auditchain.Head{Sequence: 199, Hash: f.records[0].Hash}},
			wantSeq: 200, wantReason: auditchain.ReasonBrokenLink},
		{name: "range without what precedes it", records: f.records[199:], opts: auditchain.VerifyOptions{From: 200},
			wantSeq: 200, wantReason: auditchain.ReasonUnanchored},
		{name: "records of the range missing", records: slices.Concat(f.records[:209], f.records[260:]), opts: auditchain.VerifyOptions{From: 210, To: 250},
			wantSeq: 210, wantReason: auditchain.ReasonGap},
		{name: "tail of the range missing", records: slices.Concat(f.records[:239], f.records[260:]), opts: auditchain.VerifyOptions{From: 200, To: 250},
			wantSeq: 240, wantReason: auditchain.ReasonGap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			opts.PublicKey = f.signer.PublicKey()
			res := verify(t, entries(tt.records, f.checkpoints), opts)
			if !tt.wantOK {
				requireFail(t, res, tt.wantSeq, tt.wantReason)
				return
			}
			require.True(t, res.OK, res.String())
			require.Equal(t, tt.wantRecords, res.Records)
			require.Equal(t, tt.wantHead, res.Head.Sequence)
		})
	}
}

func TestVerifyOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    auditchain.VerifyOptions
		wantErr string
	}{
		{name: "to below from", opts: auditchain.VerifyOptions{From: 5, To: 4}, wantErr: "below from"},
		{name: "base not before from", opts: auditchain.VerifyOptions{From: 5, Base: &auditchain.Head{Sequence: 5}}, wantErr: "does not precede"},
		{name: "short key", opts: auditchain.VerifyOptions{PublicKey: make([]byte, 31)}, wantErr: "public key is 31 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := auditchain.NewVerifier(tt.opts)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestVerifyReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	seq := func(yield func(auditchain.Entry, error) bool) { yield(auditchain.Entry{}, boom) }
	_, err := auditchain.Verify(seq, auditchain.VerifyOptions{})
	require.ErrorIs(t, err, boom)
}

func TestReasonString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "truncated after checkpoint", auditchain.ReasonTruncated.String())
	require.Equal(t, "reason(99)", auditchain.Reason(99).String())
}
