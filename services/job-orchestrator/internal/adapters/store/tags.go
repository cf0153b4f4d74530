package store

import (
	"context"
	"database/sql"
	"slices"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// insertTags stores one job_tags row per distinct tag of j, in tx.
func (s *Store) insertTags(ctx context.Context, tx *sql.Tx, j *domain.Job) error {
	tags := slices.Clone(j.Spec.Tags)
	slices.Sort(tags)
	for _, tag := range slices.Compact(tags) {
		if _, err := tx.ExecContext(ctx, s.db.Rebind("INSERT INTO job_tags (tag, job_id) VALUES (?, ?)"), tag, j.ID); err != nil {
			return err
		}
	}
	return nil
}

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
