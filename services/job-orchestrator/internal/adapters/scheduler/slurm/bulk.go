package slurm

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

var _ app.BulkStatuser = (*Scheduler)(nil)

// jobTable is the backend's copy of slurmctld's job list as the last
// GET /jobs returned it, with slurmctld's last_update of that list.
//
// slurmctld answers GET /jobs?update_time=T with every job when its job
// table changed after T, and with no job (a warning "No job changes since
// update_time") when it did not; the copy is then still current.
type jobTable struct {
	mu         sync.Mutex
	lastUpdate int64
	jobs       map[int64]jobInfo
}

// StatusMany implements app.BulkStatuser with one GET /jobs per call: with
// update_time set to the last_update of the previous answer, so a pass in
// which nothing changed costs slurmctld one tiny answer. A ref whose job is
// not in the table, or is there under another submit time (a reused id),
// is left out of the result; the reconciler then reads it by id once.
func (s *Scheduler) StatusMany(ctx context.Context, refs []app.SchedulerRef) (map[string]app.SchedulerStatus, error) {
	t := &s.table
	t.mu.Lock()
	defer t.mu.Unlock()
	path := "/jobs"
	if t.lastUpdate > 0 && t.jobs != nil {
		path += "?update_time=" + strconv.FormatInt(t.lastUpdate, 10)
	}
	resp, err := s.client.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, fmt.Errorf("status of %d slurm jobs: %w", len(refs), err)
	}
	lastUpdate, _, _ := parseNumber(resp.LastUpdate)
	if len(resp.Jobs) > 0 || lastUpdate > 0 || t.jobs == nil {
		// A new table: slurmctld's job list changed since the last call.
		jobs := make(map[int64]jobInfo, len(resp.Jobs))
		for _, j := range resp.Jobs {
			jobs[j.JobID] = j
		}
		t.jobs, t.lastUpdate = jobs, lastUpdate
	}
	out := make(map[string]app.SchedulerStatus, len(refs))
	for _, ref := range refs {
		id, err := strconv.ParseInt(ref.ID, 10, 64)
		if err != nil || !numericID.MatchString(ref.ID) {
			continue
		}
		j, ok := t.jobs[id]
		if !ok {
			continue
		}
		if !ref.SubmittedAt.IsZero() {
			submitted, err := parseUnixTime(j.SubmitTime)
			if err != nil || submitted.Unix() != ref.SubmittedAt.Unix() {
				continue
			}
		}
		st, err := toStatus(j)
		if err != nil {
			continue // Status reports the error for this one job
		}
		out[ref.ID] = s.withUsage(ctx, ref, st)
	}
	return out, nil
}
