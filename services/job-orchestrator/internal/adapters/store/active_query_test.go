package store

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// TestActiveListingReadsIndexRanges: the reconciler's poll list
// (ListActiveVersions of QUEUED and RUNNING jobs) reads one range of
// jobs_active_by_status per status, rather than every job of those
// statuses through another index, sorted. On SQLite the plan is fixed by
// the query; on PostgreSQL it follows the table's statistics, so the
// table first holds many queued jobs and a few running ones, analyzed.
func TestActiveListingReadsIndexRanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	codec, err := events.NewCodec()
	require.NoError(t, err)
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			db := d.Open(t)
			require.NoError(t, Migrate(ctx, db))
			s, err := New(db, codec, Config{})
			require.NoError(t, err)
			if s.pg {
				_, err := db.ExecContext(ctx, `INSERT INTO jobs (id, owner, idempotency_key, status, tacc_system, created_at, updated_at, version, doc)
					SELECT 'job-' || g, 'alice', 'k-' || g, CASE WHEN g <= 3000 THEN 'QUEUED' WHEN g <= 3100 THEN 'RUNNING' ELSE 'COMPLETED' END,
						'frontera', g, g, 1, repeat('x', 1000) FROM generate_series(1, 6000) AS g`)
				require.NoError(t, err)
				_, err = db.ExecContext(ctx, "ANALYZE jobs")
				require.NoError(t, err)
			}
			query, args, err := s.activeQuery("id, version", 500, []domain.Status{domain.StatusRunning, domain.StatusQueued})
			require.NoError(t, err)
			explain := "EXPLAIN QUERY PLAN "
			if s.pg {
				explain = "EXPLAIN "
			}
			rows, err := db.Reader().QueryContext(ctx, explain+s.db.Rebind(query), args...)
			require.NoError(t, err)
			defer rows.Close()
			cols, err := rows.Columns()
			require.NoError(t, err)
			var plan []string
			for rows.Next() {
				// SQLite's EXPLAIN QUERY PLAN rows end with the detail;
				// PostgreSQL's EXPLAIN has one column, the line.
				cells := make([]any, len(cols))
				var detail string
				for i := range cells {
					cells[i] = new(any)
				}
				cells[len(cells)-1] = &detail
				require.NoError(t, rows.Scan(cells...))
				plan = append(plan, detail)
			}
			require.NoError(t, rows.Err())
			text := strings.Join(plan, "\n")
			if s.pg {
				require.Equal(t, 2, strings.Count(text, "Scan using jobs_active_by_status"), text)
				require.NotContains(t, text, "jobs_by_status_created", text)
				return
			}
			require.Equal(t, 2, strings.Count(text, "SEARCH jobs USING COVERING INDEX jobs_active_by_status (status=?)"), text)
			require.NotContains(t, text, "SCAN jobs", text)
		})
	}
}
