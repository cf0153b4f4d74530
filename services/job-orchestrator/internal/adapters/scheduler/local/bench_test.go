package local_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// BenchmarkTrivialJob measures a job's whole life (submit, uid lease,
// cgroup, supervisor, traced start, exit, kill of the cgroup, record) for a
// script that exits at once, isolated and in single-user mode, under the
// dedicated supervisor (cmd/job-supervisor) and under the program's own
// executable started again (here the test binary; the orchestrator's is
// larger still).
func BenchmarkTrivialJob(b *testing.B) {
	for _, mode := range []struct {
		name       string
		singleUser bool
		supervisor string
	}{
		{"isolated/job-supervisor", false, supervisorBin},
		{"isolated/self", false, ""},
		{"single-user/job-supervisor", true, supervisorBin},
		{"single-user/self", true, ""},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s, err := local.New(local.Config{WorkRoot: workRoot(b), SingleUser: mode.singleUser,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxConcurrent: 1, SupervisorPath: mode.supervisor})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close(context.Background()) })
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ref, err := s.Submit(context.Background(), app.SubmitRequest{JobID: "b" + strconv.Itoa(i), Script: "#!/bin/sh\nexit 0\n"})
				if err != nil {
					b.Fatal(err)
				}
				for {
					st, err := s.Status(context.Background(), ref)
					if err != nil {
						b.Fatal(err)
					}
					if st.Phase.Terminal() {
						if st.Phase != app.PhaseCompleted {
							b.Fatalf("job %s: %s %s", ref.ID, st.State, st.Reason)
						}
						break
					}
					time.Sleep(100 * time.Microsecond)
				}
			}
		})
	}
}
