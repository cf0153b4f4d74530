package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// ClaimSubmitted implements app.JobRepository with one UPDATE ... RETURNING:
// it picks up to limit SUBMITTED jobs that are unclaimed or whose claim
// started at least lease before now, oldest UpdatedAt first, and writes the
// claim into their dispatch columns with their version advanced. A claim
// taken over keeps, as uncertain, the start of the first attempt whose
// outcome is unknown (the taken-over claim's, unless an earlier one was
// already uncertain). On PostgreSQL the candidates are locked FOR UPDATE
// SKIP LOCKED, so replicas claiming at once get disjoint jobs without
// waiting for each other (and skip a job a Transition holds); SQLite's
// single writer runs the statement alone. The statement keeps the job's doc
// and updated_at: the claim lives in its columns.
func (s *Store) ClaimSubmitted(ctx context.Context, token string, now time.Time, lease time.Duration, limit int) ([]*domain.Job, error) {
	switch {
	case token == "":
		return nil, errors.New("claim submitted jobs: empty claim token")
	case limit <= 0:
		return nil, errors.New("claim submitted jobs: limit must be positive")
	case lease <= 0:
		return nil, errors.New("claim submitted jobs: lease must be positive")
	}
	lock := ""
	if s.pg {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	expired := nanos(now.Add(-lease))
	// The candidates are a range of the partial index jobs_active_by_status
	// (see activeStatusIs), picked once, in a materialized CTE: PostgreSQL
	// may rescan a LIMIT subquery of the WHERE clause, which with SKIP
	// LOCKED returns further rows each time.
	query := `WITH picked AS MATERIALIZED (SELECT id FROM jobs
			WHERE ` + s.activeStatusIs() + ` AND (dispatch_token IS NULL OR dispatch_at <= ?)
			ORDER BY updated_at, id LIMIT ?` + lock + `)
		UPDATE jobs SET
			dispatch_uncertain = CASE WHEN dispatch_token IS NULL THEN dispatch_uncertain
				ELSE COALESCE(dispatch_uncertain, dispatch_at) END,
			dispatch_token = ?, dispatch_at = ?, version = version + 1
		WHERE id IN (SELECT id FROM picked)
			AND status = 'SUBMITTED' AND (dispatch_token IS NULL OR dispatch_at <= ?)
		RETURNING ` + jobColumns
	// The statement runs on a connection already held, so that its time,
	// recorded as the claim's, is the time it held the database (on
	// SQLite, the write lock), not the wait for the write connection.
	conn, err := s.db.Writer().Conn(ctx)
	if err != nil {
		return nil, dbErr("claim submitted jobs", err)
	}
	defer conn.Close()
	begun := time.Now()
	jobs, err := s.queryJobsOn(ctx, conn, "claim submitted jobs", query,
		string(domain.StatusSubmitted), expired, limit, token, nanos(now), expired)
	s.metrics.claim(time.Since(begun))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(jobs, func(a, b *domain.Job) int {
		return cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), cmp.Compare(a.ID, b.ID))
	})
	return jobs, nil
}
