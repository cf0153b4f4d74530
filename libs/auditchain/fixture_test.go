package auditchain_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
)

var baseTime = time.Date(2026, 3, 14, 9, 26, 53, 589793000, time.UTC)

// testSigner returns a deterministic signer derived from name.
func testSigner(t testing.TB, name string) *auditchain.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte("auditchain test key " + name))
	s, err := auditchain.NewSigner(ed25519.NewKeyFromSeed(seed[:]))
	require.NoError(t, err)
	return s
}

// newRecord returns the unchained content of the i-th test record.
func newRecord(i int) auditchain.Record {
	r := auditchain.Record{
		EventID:      fmt.Sprintf("0190d2c4-7e1a-7b3c-9d4e-%012d", i),
		OccurredAt:   baseTime.Add(time.Duration(i) * time.Second),
		RecordedAt:   baseTime.Add(time.Duration(i)*time.Second + 1500*time.Microsecond),
		Actor:        fmt.Sprintf("user-%d", i%7),
		ActorRole:    "user",
		Action:       "job.submitted",
		ResourceType: "job",
		ResourceID:   fmt.Sprintf("job-%d", i/3),
		Details:      map[string]string{"outcome": "SUCCESS", "to_status": "SUBMITTED"},
	}
	if i%4 == 0 {
		r.Details["note"] = fmt.Sprintf("ü ✓ %d", i)
	}
	return r
}

type fixture struct {
	signer      *auditchain.Signer
	records     []auditchain.Record
	checkpoints []auditchain.Checkpoint
}

// newFixture builds a chain of n records with a checkpoint after every every-th
// record and one at the head.
func newFixture(t testing.TB, n, every int) fixture {
	t.Helper()
	f := fixture{signer: testSigner(t, "primary")}
	chain := auditchain.NewChain(auditchain.Head{})
	for i := 1; i <= n; i++ {
		r, err := chain.Append(newRecord(i))
		require.NoError(t, err)
		f.records = append(f.records, r)
		if i%every == 0 || i == n {
			f.checkpoints = append(f.checkpoints, f.signer.Sign(chain.Head(), baseTime.Add(time.Duration(i)*time.Second)))
		}
	}
	return f
}

func (f fixture) opts() auditchain.VerifyOptions {
	return auditchain.VerifyOptions{PublicKey: f.signer.PublicKey()}
}

// entries interleaves records and checkpoints the way an export orders them.
func entries(records []auditchain.Record, checkpoints []auditchain.Checkpoint) []auditchain.Entry {
	var out []auditchain.Entry
	for e, err := range auditchain.Interleave(recordSeq(records), checkpoints) {
		if err != nil {
			panic(err)
		}
		out = append(out, e)
	}
	return out
}

func recordSeq(records []auditchain.Record) func(func(*auditchain.Record, error) bool) {
	return func(yield func(*auditchain.Record, error) bool) {
		for i := range records {
			if !yield(&records[i], nil) {
				return
			}
		}
	}
}

func entrySeq(es []auditchain.Entry) func(func(auditchain.Entry, error) bool) {
	return func(yield func(auditchain.Entry, error) bool) {
		for _, e := range es {
			if !yield(e, nil) {
				return
			}
		}
	}
}

func verify(t testing.TB, es []auditchain.Entry, opts auditchain.VerifyOptions) auditchain.Result {
	t.Helper()
	res, err := auditchain.Verify(entrySeq(es), opts)
	require.NoError(t, err)
	return res
}

// cloneRecords deep-copies records so a test can tamper with them.
func cloneRecords(rs []auditchain.Record) []auditchain.Record {
	out := slices.Clone(rs)
	for i := range out {
		out[i].Details = maps.Clone(out[i].Details)
	}
	return out
}

func requireFail(t testing.TB, res auditchain.Result, seq uint64, reason auditchain.Reason) {
	t.Helper()
	require.False(t, res.OK, "verified but should fail at %d: %s", seq, res)
	require.Equal(t, seq, res.BadSequence, res.String())
	require.Equal(t, reason, res.Reason, res.String())
}
