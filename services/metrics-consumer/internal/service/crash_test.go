package service_test

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/testgen"
)

// TestKillMidStreamAndRestart SIGKILLs the real binary while it consumes
// and restarts it: the store ends identical to the state computed from the
// stream, and no event is applied twice.
func TestKillMidStreamAndRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	plans := testgen.Plans(7, 4000, base)
	evs, err := testgen.Stream(plans)
	require.NoError(t, err)
	f.publishEvents(t, evs)
	total := f.uniqueEvents()

	bin := servicetest.Build(t, pkgDir)
	start := func(batch string) *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), f.envList()...)
		cmd.Env = append(cmd.Env, "GRPC_ADDR=127.0.0.1:0", "HTTP_ADDR=127.0.0.1:0", "SHUTDOWN_DRAIN=100ms", "METRICS_BATCH_SIZE="+batch)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	db := f.openDB(t)

	// Small batches make the consumer slow enough to be caught mid-stream.
	first := start("50")
	require.Eventually(t, func() bool {
		var n int64
		return db.Writer().QueryRow("SELECT count(*) FROM inbox_processed").Scan(&n) == nil && n > total/5
	}, waitLong, 5*time.Millisecond)
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	killedAt := processed(t, db)
	require.Less(t, killedAt, total, "killed before the end of the stream")
	t.Logf("killed after %d of %d events", killedAt, total)

	second := start("1000")
	waitProcessed(t, db, total)
	require.NoError(t, second.Process.Signal(syscall.SIGTERM))
	require.NoError(t, second.Wait())

	want := fold(evs)
	got := dump(t, db)
	require.Len(t, got, len(plans))
	for _, j := range got {
		require.Equal(t, want[j.ID], j)
	}
}
