package store

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// TestActiveListingReadsIndexRanges: on SQLite, the reconciler's poll list
// (ListActiveVersions of QUEUED and RUNNING jobs) reads one range of
// jobs_active_by_status per status from the index alone, rather than every
// job of those statuses, sorted, with a table read each.
func TestActiveListingReadsIndexRanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(t) {
		if d.Name != "sqlite" {
			continue
		}
		db := d.Open(t)
		require.NoError(t, Migrate(ctx, db))
		query, args, err := activeQuery("id, version", 500, []domain.Status{domain.StatusRunning, domain.StatusQueued})
		require.NoError(t, err)
		rows, err := db.Reader().QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
		require.NoError(t, err)
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, detail)
		}
		require.NoError(t, rows.Err())
		text := strings.Join(plan, "\n")
		require.Equal(t, 2, strings.Count(text, "SEARCH jobs USING COVERING INDEX jobs_active_by_status (status=?)"), text)
		require.NotContains(t, text, "SCAN jobs", text)
	}
}
