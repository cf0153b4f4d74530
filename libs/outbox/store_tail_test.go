package outbox_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// TestStoreHolderClaimsItsKeysTail: the relay holding a key gets the rows
// appended to it since its claim, those alone, with its lease renewed;
// no other relay gets them, and after a failure is recorded (the key
// released) the key goes by its head again.
func TestStoreHolderClaimsItsKeysTail(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newFixture(t, db, both)
		f.append(t, "a", row("a", "1", "rk"))
		a := f.claim(t, outbox.LegKafka, "relay-a", 10)
		require.Equal(t, []string{"a/1"}, eventIDs(a))
		f.append(t, "a", row("a", "2", ""), row("a", "3", "rk"))
		f.append(t, "b", row("b", "1", ""))

		require.Equal(t, []string{"b/1"}, eventIDs(f.claim(t, outbox.LegKafka, "relay-b", 10)), "a is relay-a's, its new rows included")
		f.clk.Add(40 * time.Second)
		tail := f.claim(t, outbox.LegKafka, "relay-a", 10)
		require.Equal(t, []string{"a/2", "a/3"}, eventIDs(tail), "the holder gets the key's new rows, not the one it holds")
		require.Empty(t, f.claim(t, outbox.LegKafka, "relay-a", 10), "nothing new")
		require.Equal(t, []string{"a/1", "a/3"}, eventIDs(f.claim(t, outbox.LegAMQP, "relay-b", 10)), "the other leg is not held")

		// 70 s after the first claim, 30 s after the tail's: the tail's
		// claim renewed the lease of a/1 too.
		f.clk.Add(30 * time.Second)
		require.Equal(t, []string{"b/1"}, eventIDs(f.claim(t, outbox.LegKafka, "relay-c", 10)),
			"relay-b's lease ran out; the renewed one of relay-a still holds a")

		// a/1 fails: the key is released, and goes again from its head.
		require.Zero(t, f.complete(t, outbox.LegKafka, "relay-a", outbox.Result{ID: a[0].ID, JobID: "a", Err: errors.New("broker down")}))
		f.append(t, "a", row("a", "4", ""))
		require.Equal(t, []string{"a/1", "a/2", "a/3", "a/4"}, eventIDs(f.claim(t, outbox.LegKafka, "relay-c", 10)))
	})
}
