package store

import (
	"context"
	"database/sql"
	"slices"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// insertTags stores one job_tags row per distinct tag of each job of jobs,
// in tx, with multi-row INSERTs (a batch of jobs costs one statement, not
// one per tag).
func (s *Store) insertTags(ctx context.Context, tx *sql.Tx, jobs ...*domain.Job) error {
	var args []any
	for _, j := range jobs {
		tags := j.Spec.Tags
		if len(tags) > 1 {
			tags = slices.Compact(slices.Sorted(slices.Values(tags)))
		}
		for _, tag := range tags {
			args = append(args, tag, j.ID)
		}
	}
	for lo := 0; lo < len(args); lo += 2 * tagsPerInsert {
		chunk := args[lo:min(lo+2*tagsPerInsert, len(args))]
		q := "INSERT INTO job_tags (tag, job_id) VALUES " + sqlstore.Tuples(2, len(chunk)/2)
		if _, err := tx.ExecContext(ctx, s.db.Rebind(q), chunk...); err != nil {
			return err
		}
	}
	return nil
}

// tagsPerInsert bounds the rows of one job_tags INSERT, within every
// dialect's bound on parameters.
const tagsPerInsert = 500

// tagConditions returns one condition per tag that keeps the jobs carrying
// it (each answered from the job_tags primary key), and their arguments.
func tagConditions(tags []string) ([]string, []any) {
	var (
		where []string
		args  []any
	)
	for _, tag := range tags {
		where = append(where, "id IN (SELECT job_id FROM job_tags WHERE tag = ?)")
		args = append(args, tag)
	}
	return where, args
}

// nullable returns nil for "", so that the column stays NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
