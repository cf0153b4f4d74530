package auditchain_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
)

// benchRecords returns a pool of distinct record contents to cycle through.
func benchRecords(n int) []auditchain.Record {
	out := make([]auditchain.Record, n)
	for i := range out {
		out[i] = newRecord(i + 1)
	}
	return out
}

// BenchmarkAppendHash measures sequencing and hashing one record (the
// CPU part of an append; the store adds its own I/O).
func BenchmarkAppendHash(b *testing.B) {
	pool := benchRecords(1024)
	chain := auditchain.NewChain(auditchain.Head{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := chain.Append(pool[i%len(pool)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkVerify verifies a chain of b.N records with a checkpoint every 1000
// records. ns/record × 1e6 is the time to verify a million records, also
// reported as s/1M-records.
func BenchmarkVerify(b *testing.B) {
	const every = 1000
	pool := benchRecords(1024)
	signer := testSigner(b, "bench")
	// Keep only the hashes: record i is pool[i%len(pool)] with its sequence and
	// links, rebuilt on the fly, so memory stays at 32 bytes a record.
	hashes := make([]auditchain.Hash, b.N+1)
	chain := auditchain.NewChain(auditchain.Head{})
	for i := range b.N {
		r, err := chain.Append(pool[i%len(pool)])
		if err != nil {
			b.Fatal(err)
		}
		hashes[i+1] = r.Hash
	}
	checkpoints := make(map[int]auditchain.Checkpoint)
	for s := every; s <= b.N; s += every {
		checkpoints[s] = signer.Sign(auditchain.Head{Sequence: uint64(s), Hash: hashes[s]}, time.Now())
	}
	stream := func(yield func(auditchain.Entry, error) bool) {
		for i := 1; i <= b.N; i++ {
			r := pool[(i-1)%len(pool)]
			r.Sequence, r.PrevHash, r.Hash = uint64(i), hashes[i-1], hashes[i]
			if !yield(auditchain.Entry{Record: &r}, nil) {
				return
			}
			if c, ok := checkpoints[i]; ok && !yield(auditchain.Entry{Checkpoint: &c}, nil) {
				return
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	res, err := auditchain.Verify(stream, auditchain.VerifyOptions{PublicKey: signer.PublicKey()})
	b.StopTimer()
	if err != nil || !res.OK || res.Records != int64(b.N) {
		b.Fatal(fmt.Sprint(err, res))
	}
	nsPerRecord := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(nsPerRecord, "ns/record")
	b.ReportMetric(nsPerRecord*1e6/1e9, "s/1M-records")
}
