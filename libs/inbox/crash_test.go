package inbox_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// envCrashURL turns the test binary into the crash-test child: it applies
// events to the database at this URL until it is killed.
const envCrashURL = "INBOX_CRASH_TEST_URL"

const crashConsumer = "crash"

func crashEventID(i int) string { return fmt.Sprintf("evt-%07d", i) }

// runCrashChild is the crash-test child, started by TestMain when
// INBOX_CRASH_TEST_URL is set. It alternates single deliveries and batches
// of 50, reports each committed event count on stdout, and runs until killed.
func runCrashChild(url string) {
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, sqlstore.Config{URL: url}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	ib := inbox.New(db, crashConsumer, nil, nil)
	apply := recordEffect(db)
	h := ib.Handler(apply)
	out := bufio.NewWriter(os.Stdout)
	for next := 0; ; {
		if next%100 < 50 {
			if err := h(ctx, message(crashEventID(next), 0, int64(next))); err != nil {
				fmt.Fprintln(os.Stderr, "handle:", err)
				os.Exit(2)
			}
			next++
		} else {
			batch := make([]*bus.Message, 0, 50)
			for i := next; i < next+50; i++ {
				batch = append(batch, message(crashEventID(i), 0, int64(i)))
			}
			if err := ib.ApplyBatch(ctx, batch, apply); err != nil {
				fmt.Fprintln(os.Stderr, "batch:", err)
				os.Exit(2)
			}
			next += 50
		}
		fmt.Fprintf(out, "committed %d\n", next)
		out.Flush()
	}
}

// TestKillKeepsEffectsAndMarksInStep kills a process that applies events in a
// tight loop with SIGKILL, then checks that every processed mark has exactly
// its effect and every effect its mark, and that redelivering everything
// afterwards applies each event exactly once.
func TestKillKeepsEffectsAndMarksInStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			url := d.URL(t)
			db := sqlstoretest.OpenURL(t, url)
			migrateAll(t, db)

			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), envCrashURL+"="+url)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())

			// Let it commit a while, then kill it mid-flight.
			const target = 3000
			committed := 0
			lines := bufio.NewScanner(stdout)
			deadline := time.Now().Add(2 * time.Minute)
			for committed < target && time.Now().Before(deadline) && lines.Scan() {
				n, err := strconv.Atoi(strings.TrimPrefix(lines.Text(), "committed "))
				require.NoError(t, err, "child output %q", lines.Text())
				committed = n
			}
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			waitErr := cmd.Wait()
			require.GreaterOrEqual(t, committed, target, "child stopped early: %v\n%s", waitErr, stderr.String())
			var exitErr *exec.ExitError
			require.ErrorAs(t, waitErr, &exitErr)
			require.Equal(t, "signal: killed", exitErr.Error())

			effects := applied(t, db)
			marks := processedIDs(t, db, crashConsumer)
			require.GreaterOrEqual(t, len(marks), committed, "every reported commit is durable")
			for id, n := range effects {
				require.Equal(t, 1, n, "event %s applied %d times", id, n)
				require.True(t, marks[id], "effect of %s has no mark", id)
			}
			for id := range marks {
				require.Contains(t, effects, id, "mark of %s has no effect", id)
			}
			require.Len(t, effects, len(marks))
			require.EqualValues(t, len(marks), sqlstoretest.Count(t, db, "SELECT n FROM totals"))
			// The child applies in order, so what survived is a prefix.
			for i := range len(marks) {
				require.True(t, marks[crashEventID(i)], "gap at %d", i)
			}
			offsets, err := inbox.New(db, crashConsumer, nil, nil).Offsets(ctx, "job-lifecycle")
			require.NoError(t, err)
			require.Equal(t, map[int32]int64{0: int64(len(marks) - 1)}, offsets)

			// A restarted consumer gets everything again, and more.
			ib := inbox.New(db, crashConsumer, nil, nil)
			all := len(marks) + 120
			batch := make([]*bus.Message, 0, all)
			for i := range all {
				batch = append(batch, message(crashEventID(i), 0, int64(i)))
			}
			require.NoError(t, ib.ApplyBatch(ctx, batch, recordEffect(db)))
			effects = applied(t, db)
			require.Len(t, effects, all)
			for id, n := range effects {
				require.Equal(t, 1, n, "event %s applied %d times", id, n)
			}
		})
	}
}
