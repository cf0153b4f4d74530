package ports_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// BenchmarkStreamJobOutput reads a 16 MiB stdout file through the gRPC
// stack (in process, over bufconn) from offset 0 to its end; MB/s is the
// throughput of one stream.
func BenchmarkStreamJobOutput(b *testing.B) {
	e := newOutputEnv(b)
	ctx := asUser(b, "alice")
	id, dir := e.job(b)
	const size = 16 << 20
	if err := os.WriteFile(filepath.Join(dir, "stdout.log"), bytes.Repeat([]byte("x"), size), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, err := e.client.StreamJobOutput(ctx, &jobpb.StreamJobOutputRequest{JobId: id})
		if err != nil {
			b.Fatal(err)
		}
		var n int
		for {
			m, err := s.Recv()
			if err != nil {
				break
			}
			n += len(m.GetData())
		}
		if n != size {
			b.Fatalf("read %d bytes, want %d", n, size)
		}
	}
}
