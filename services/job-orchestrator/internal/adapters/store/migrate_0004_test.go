package store_test

import (
	"context"
	"encoding/json"
	"os"
	"path"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// Migration 0004 moves the dispatch claims that documents held into the
// claim columns: a live claim keeps its replica and a full lease from the
// upgrade, an earlier uncertain attempt stays uncertain, and unclaimed jobs
// stay claimable.
func TestMigrationKeepsDispatchClaimsOfDocuments(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir("migrations")
	require.NoError(t, err)
	before := fstest.MapFS{}
	for _, e := range entries {
		if e.Name() < "0004" {
			b, err := os.ReadFile(path.Join("migrations", e.Name()))
			require.NoError(t, err)
			before[path.Join("migrations", e.Name())] = &fstest.MapFile{Data: b}
		}
	}
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := d.Open(t)
			require.NoError(t, sqlstore.Migrate(ctx, db, before, "migrations", sqlstore.WithComponent(store.MigrationComponent)))
			claimedAt := time.Now().UTC().Add(-time.Hour)
			legacy := map[string]domain.DispatchClaim{
				"live":     {Token: "replica-a", At: claimedAt},
				"released": {Uncertain: claimedAt},
				"taken":    {Token: "replica-b", At: claimedAt, Uncertain: claimedAt.Add(-time.Minute)},
				"fresh":    {},
			}
			for id, claim := range legacy {
				j := newJob(id, "alice", "k-"+id, domain.SystemFrontera, t0)
				j.Dispatch = claim
				doc, err := json.Marshal(j)
				require.NoError(t, err)
				_, err = db.ExecContext(ctx, db.Rebind(`INSERT INTO jobs (id, owner, idempotency_key, status, tacc_system, created_at, updated_at, version, doc)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`), id, j.Owner, j.IdempotencyKey, string(j.Status), j.Spec.System,
					t0.UnixNano(), t0.UnixNano(), 1, string(doc))
				require.NoError(t, err)
			}
			upgraded := time.Now()
			s := newStore(t, db, store.Config{})

			get := func(id string) domain.DispatchClaim {
				j, err := s.Get(ctx, id)
				require.NoError(t, err)
				return j.Dispatch
			}
			live := get("live")
			require.Equal(t, "replica-a", live.Token)
			require.WithinDuration(t, upgraded, live.At, 5*time.Second, "a live claim's lease runs from the upgrade")
			require.True(t, live.Uncertain.IsZero())
			require.Equal(t, domain.DispatchClaim{Uncertain: time.Unix(0, 1).UTC()}, get("released"),
				"an uncertain attempt stays uncertain (since 1970)")
			require.Equal(t, "replica-b", get("taken").Token)
			require.Equal(t, time.Unix(0, 1).UTC(), get("taken").Uncertain)
			require.Equal(t, domain.DispatchClaim{}, get("fresh"))

			claimed, err := s.ClaimSubmitted(ctx, "replica-c", time.Now(), 15*time.Second, 10)
			require.NoError(t, err)
			ids := jobIDs(claimed)
			require.ElementsMatch(t, []string{"released", "fresh"}, ids, "live claims are not taken over before their lease ends")
			for _, j := range claimed {
				if strings.HasPrefix(j.ID, "released") {
					require.Equal(t, time.Unix(0, 1).UTC(), j.Dispatch.Uncertain)
				} else {
					require.True(t, j.Dispatch.Uncertain.IsZero())
				}
			}
		})
	}
}
