//go:build chaos

package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/events"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	metricspb "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
)

// faultRow is one line of the table: what happened from the fault's start
// to the next fault's.
type faultRow struct {
	name        string
	jobs        int
	events      int // first copies that arrived in the window
	duplicated  int // later copies that arrived in the window
	worstDelay  time.Duration
	recovery    time.Duration
	stallLed    time.Duration // broker faults: longest gap on a partition the broker led
	stallOthers time.Duration // broker faults: longest gap on the other partitions
	lost, wrong int           // of the jobs submitted in the window
	health      string        // broker faults: the monitor's worst kafka:cluster status
	// named: broker faults: the monitor named the broker as not serving
	// while the others served (DEGRADED, not UNHEALTHY).
	named bool
}

type result struct {
	rows                          []faultRow
	submitted, acked, lost, wrong int
	lostEnd                       int // ended jobs without their terminal event on the stream
	wrongDetail                   []string
	lostDetail                    []string
	streamEvents, distinctEvents  int
	auditStream                   int
	reordered                     int
	decodeErrors                  int
	deadLettered                  int64
	emailsExpected, emailsFound   int
	emailsTwice                   int
	metricsSubmitted, streamJobs  int64
	metricsCompleted, streamDone  int64
	metricsFailed, streamFailed   int64
	streamEnded                   int64 // jobs with a terminal event
	auditChecked                  int64
	auditOK                       bool
	auditReason                   string
	groupWorst                    string
	stallPerPartition             map[string]map[int32]time.Duration
}

func collect(t *testing.T, ctx context.Context, f *fleet, l *load, tl *tail, faults []*fault,
	health *healthLog, runStart, loadEnd time.Time, mailDomain string) *result {
	t.Helper()
	r := &result{stallPerPartition: map[string]map[int32]time.Duration{}}
	admin := withToken(ctx, token(t, "chaos-operator", true))

	// Every acknowledged job reaches a terminal status.
	final := map[string]*jobpb.Job{}
	deadline := time.Now().Add(4 * time.Minute)
	for _, s := range l.subs {
		r.submitted++
		if !s.acked {
			continue
		}
		r.acked++
		for {
			resp, err := f.jobs.GetJob(withToken(ctx, l.tokens[s.user]), &jobpb.GetJobRequest{JobId: s.jobID})
			if err == nil {
				final[s.jobID] = resp.GetJob()
				st := resp.GetJob().GetStatus()
				if st == jobpb.JobStatus_JOB_STATUS_COMPLETED || st == jobpb.JobStatus_JOB_STATUS_FAILED ||
					st == jobpb.JobStatus_JOB_STATUS_CANCELLED {
					break
				}
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("jobs settled %s after the load stopped", time.Since(loadEnd).Round(time.Second))

	// The reader and the consumers catch up with the stream.
	window := &metricspb.TimeWindow{Start: timestamppb.New(runStart.Add(-time.Minute)), End: timestamppb.New(time.Now().Add(time.Hour))}
	// The orchestrator records a job's end before its relay publishes the
	// event: the stream is complete once every ended job's terminal event
	// is on it.
	ended := 0
	for _, j := range final {
		switch j.GetStatus() {
		case jobpb.JobStatus_JOB_STATUS_COMPLETED, jobpb.JobStatus_JOB_STATUS_FAILED, jobpb.JobStatus_JOB_STATUS_CANCELLED:
			ended++
		}
	}
	var stats *metricspb.JobStats
	var verify *auditpb.VerifyResponse
	caughtUp := time.Now().Add(3 * time.Minute)
	for {
		r.analyseStream(tl.records(events.TopicJobLifecycle), tl.records(events.TopicAuditTrail))
		if resp, err := f.stats.GetJobMetrics(admin, &metricspb.GetJobMetricsRequest{Window: window}); err == nil {
			stats = resp.GetStats()
		}
		if v, err := f.trail.Verify(admin, &auditpb.VerifyRequest{}); err == nil {
			verify = v
		}
		equal := tl.caughtUp() && stats != nil && verify != nil && int(r.streamEnded) >= ended &&
			stats.GetSubmittedCount() == r.streamJobs && stats.GetCompletedCount() == r.streamDone &&
			stats.GetFailedCount() == r.streamFailed && verify.GetCheckedCount() == int64(r.auditStream)
		if equal || time.Now().After(caughtUp) {
			break
		}
		time.Sleep(time.Second)
	}
	r.metricsSubmitted, r.metricsCompleted, r.metricsFailed = stats.GetSubmittedCount(), stats.GetCompletedCount(), stats.GetFailedCount()
	r.auditChecked, r.auditOK, r.auditReason = verify.GetCheckedCount(), verify.GetOk(), verify.GetReason()

	// Lost and wrong: acknowledged jobs missing from the orchestrator or the
	// stream, or not COMPLETED (every job runs `sleep 1`).
	submittedOnStream, endedOnStream := map[string]bool{}, map[string]bool{}
	for _, rec := range tl.records(events.TopicJobLifecycle) {
		switch rec.ev.EventType {
		case "job.submitted":
			submittedOnStream[rec.key] = true
		case "job.completed", "job.failed", "job.cancelled":
			endedOnStream[rec.key] = true
		}
	}
	for _, s := range l.subs {
		if !s.acked {
			continue
		}
		j, ok := final[s.jobID]
		if !ok || !submittedOnStream[s.jobID] {
			r.lost++
			r.lostDetail = append(r.lostDetail, fmt.Sprintf("%s (in orchestrator %t, on stream %t)", s.jobID, ok, submittedOnStream[s.jobID]))
			continue
		}
		if !endedOnStream[s.jobID] {
			r.lostEnd++
			r.lostDetail = append(r.lostDetail, fmt.Sprintf("%s ended %s but its terminal event is not on the stream", s.jobID, j.GetStatus()))
		}
		if j.GetStatus() != jobpb.JobStatus_JOB_STATUS_COMPLETED {
			r.wrong++
			r.wrongDetail = append(r.wrongDetail, fmt.Sprintf("%s %s %s %s", s.jobID, j.GetStatus(), j.GetErrorCode(), j.GetErrorMessage()))
		}
	}

	// Dead-lettered records on the run's DLQ topics.
	for _, name := range []string{events.TopicJobLifecycle, events.TopicJobMetrics, events.TopicAuditTrail,
		events.TopicNotifications, events.TopicSystemHealth} {
		n, err := recordCount(tl.client, f.prefix+events.DLQTopic(name))
		if err == nil {
			r.deadLettered += n
		}
	}

	// E-mails: one per completed job of a subscribed user, each Message-ID once.
	completedBy := map[string]int{}
	for _, s := range l.subs {
		if j := final[s.jobID]; s.acked && j.GetStatus() == jobpb.JobStatus_JOB_STATUS_COMPLETED {
			completedBy[s.user]++
			r.emailsExpected++
		}
	}
	mailDeadline := time.Now().Add(2 * time.Minute)
	for {
		found, twice := 0, 0
		for _, u := range l.users {
			ids, err := mailIDs(ctx, os.Getenv("MAILPIT_URL"), u+"@"+mailDomain)
			require.NoError(t, err)
			seen := map[string]int{}
			for _, id := range ids {
				seen[id]++
			}
			found += len(seen)
			for _, n := range seen {
				twice += n - 1
			}
		}
		r.emailsFound, r.emailsTwice = found, twice
		if found >= r.emailsExpected || time.Now().After(mailDeadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}

	// Per fault: jobs, events, duplicates, delays, stalls.
	recs := tl.records(events.TopicJobLifecycle)
	seen := map[string]bool{}
	type arrival struct {
		at  time.Time
		dup bool
		rec record
	}
	var arrivals []arrival
	for _, rec := range recs {
		if rec.decodeErr != nil {
			continue
		}
		arrivals = append(arrivals, arrival{at: rec.arrived, dup: seen[rec.ev.EventID], rec: rec})
		seen[rec.ev.EventID] = true
	}
	sort.Slice(arrivals, func(i, j int) bool { return arrivals[i].at.Before(arrivals[j].at) })
	partitions := map[int32]bool{}
	for _, rec := range recs {
		partitions[rec.partition] = true
	}
	// stall records gap on partition p during broker fault fl.
	stall := func(fl *fault, row *faultRow, p int32, gap time.Duration) {
		if r.stallPerPartition[fl.name] == nil {
			r.stallPerPartition[fl.name] = map[int32]time.Duration{}
		}
		if gap > r.stallPerPartition[fl.name][p] {
			r.stallPerPartition[fl.name][p] = gap
		}
		if fl.led[p] && gap > row.stallLed {
			row.stallLed = gap
		} else if !fl.led[p] && gap > row.stallOthers {
			row.stallOthers = gap
		}
	}
	for i, fl := range faults {
		// The last window runs to now: copies published after the load
		// stopped count too.
		end := time.Now()
		if i+1 < len(faults) {
			end = faults[i+1].start
		}
		row := faultRow{name: fl.name, recovery: fl.recovery}
		for _, s := range l.subs {
			if !s.at.Before(fl.start) && s.at.Before(end) {
				row.jobs++
				if s.acked {
					if j, ok := final[s.jobID]; !ok || !submittedOnStream[s.jobID] {
						row.lost++
					} else if j.GetStatus() != jobpb.JobStatus_JOB_STATUS_COMPLETED {
						row.wrong++
					}
				}
			}
		}
		last := map[int32]time.Time{}
		for _, a := range arrivals {
			if a.at.Before(fl.start) || !a.at.Before(end) {
				continue
			}
			if a.dup {
				row.duplicated++
			} else {
				row.events++
				if d := a.at.Sub(a.rec.ev.OccurredAt); d > row.worstDelay {
					row.worstDelay = d
				}
			}
			if fl.led != nil {
				p := a.rec.partition
				prev, ok := last[p]
				if !ok {
					prev = fl.start
				}
				stall(fl, &row, p, a.at.Sub(prev))
				last[p] = a.at
			}
		}
		if fl.led != nil {
			// Under a steady load every partition receives events: the gap
			// from a partition's last event (or the fault) to the window's
			// end counts as well, so a partition that got nothing stalled
			// for the whole window.
			for p := range partitions {
				prev, ok := last[p]
				if !ok {
					prev = fl.start
				}
				stall(fl, &row, p, end.Sub(prev))
			}
		}
		if fl.led != nil {
			row.health = "kafka:cluster stayed HEALTHY"
			for id, s := range health.worst(fl.start, end) {
				if strings.HasPrefix(id, "kafka:cluster") {
					row.health = fmt.Sprintf("worst %s: %s", strings.TrimPrefix(s.status.String(), "HEALTH_STATUS_"), s.detail)
				}
			}
			if s, ok := health.first(fl.start, end, "kafka:cluster", fmt.Sprintf("broker %d (", fl.broker)); ok {
				row.named = s.status == healthpb.HealthStatus_HEALTH_STATUS_DEGRADED
				row.health += fmt.Sprintf("; after %s: %s: %s", s.at.Sub(fl.start).Round(100*time.Millisecond),
					strings.TrimPrefix(s.status.String(), "HEALTH_STATUS_"), s.detail)
			}
		}
		r.rows = append(r.rows, row)
	}
	for id, s := range health.worst(runStart, time.Now()) {
		if strings.HasPrefix(id, "group:") {
			r.groupWorst += fmt.Sprintf("\n    %s %s: %s", id, strings.TrimPrefix(s.status.String(), "HEALTH_STATUS_"), s.detail)
		}
	}
	return r
}

// analyseStream counts the stream's jobs, events, duplicates and
// reorderings: per job, the first copies of its events must carry the
// sequence numbers 1, 2, 3... in offset order.
func (r *result) analyseStream(lifecycle, audit []record) {
	r.streamEvents, r.distinctEvents, r.reordered, r.decodeErrors = len(lifecycle), 0, 0, 0
	r.streamJobs, r.streamDone, r.streamFailed, r.streamEnded = 0, 0, 0, 0
	sorted := append([]record(nil), lifecycle...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].partition != sorted[j].partition {
			return sorted[i].partition < sorted[j].partition
		}
		return sorted[i].offset < sorted[j].offset
	})
	seen := map[string]bool{}
	nextSeq := map[string]int64{}
	badJob := map[string]bool{}
	for _, rec := range sorted {
		if rec.decodeErr != nil {
			r.decodeErrors++
			continue
		}
		if seen[rec.ev.EventID] {
			continue
		}
		seen[rec.ev.EventID] = true
		r.distinctEvents++
		want := nextSeq[rec.key] + 1
		if rec.ev.Sequence != want && !badJob[rec.key] {
			badJob[rec.key] = true
			r.reordered++
		}
		nextSeq[rec.key] = rec.ev.Sequence
		switch rec.ev.EventType {
		case "job.submitted":
			r.streamJobs++
		case "job.completed":
			r.streamDone++
			r.streamEnded++
		case "job.failed":
			r.streamFailed++
			r.streamEnded++
		case "job.cancelled":
			r.streamEnded++
		}
	}
	for _, rec := range audit {
		if rec.decodeErr == nil && !seen[rec.ev.EventID] {
			seen[rec.ev.EventID] = true
		}
	}
	r.auditStream = len(seen)
}

func mailIDs(ctx context.Context, base, addr string) ([]string, error) {
	var ids []string
	for start := 0; ; start += 500 {
		u := fmt.Sprintf("%s/api/v1/search?limit=500&start=%d&query=%s", strings.TrimRight(base, "/"), start, url.QueryEscape("to:"+addr))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("mailpit %s: %s", resp.Status, body)
		}
		var page struct {
			Messages []struct {
				MessageID string `json:"MessageID"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, err
		}
		for _, m := range page.Messages {
			ids = append(ids, m.MessageID)
		}
		if len(page.Messages) < 500 {
			return ids, nil
		}
	}
}

func (r *result) print(w io.Writer) {
	fmt.Fprintln(w, "\n== chaos run: 3 brokers, replication 3, min.insync.replicas 2, local scheduler, SQLite")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\tjobs\tlost\twrong state\tevents\tduplicated\tworst event delay\tstall led partitions\tstall other partitions\trecovery\t")
	for _, row := range r.rows {
		stallLed, stallOthers := "-", "-"
		if row.stallLed > 0 || row.stallOthers > 0 {
			stallLed, stallOthers = row.stallLed.Round(10*time.Millisecond).String(), row.stallOthers.Round(10*time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", row.name, row.jobs, row.lost, row.wrong, row.events, row.duplicated,
			row.worstDelay.Round(time.Millisecond), stallLed, stallOthers, row.recovery.Round(10*time.Millisecond))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\njobs: submitted %d, acknowledged %d, lost %d, ended without a terminal event on the stream %d, wrong final state %d\n",
		r.submitted, r.acked, r.lost, r.lostEnd, r.wrong)
	for _, d := range r.lostDetail {
		fmt.Fprintf(w, "    lost: %s\n", d)
	}
	for _, d := range r.wrongDetail {
		fmt.Fprintf(w, "    wrong: %s\n", d)
	}
	fmt.Fprintf(w, "lifecycle topic: %d records, %d distinct events, %d duplicates, %d jobs reordered, %d undecodable\n",
		r.streamEvents, r.distinctEvents, r.streamEvents-r.distinctEvents-r.decodeErrors, r.reordered, r.decodeErrors)
	fmt.Fprintf(w, "dead-lettered: %d\n", r.deadLettered)
	fmt.Fprintf(w, "metrics-consumer vs stream: submitted %d/%d, completed %d/%d, failed %d/%d\n",
		r.metricsSubmitted, r.streamJobs, r.metricsCompleted, r.streamDone, r.metricsFailed, r.streamFailed)
	fmt.Fprintf(w, "compliance-auditor vs stream: chain records %d, distinct events on job-lifecycle+audit-trail %d, Verify ok=%t %s\n",
		r.auditChecked, r.auditStream, r.auditOK, r.auditReason)
	fmt.Fprintf(w, "e-mails: expected %d, distinct found %d, sent twice %d\n", r.emailsExpected, r.emailsFound, r.emailsTwice)
	for _, row := range r.rows {
		stalls := r.stallPerPartition[row.name]
		if row.health == "" {
			continue
		}
		var parts []int32
		for p := range stalls {
			parts = append(parts, p)
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
		fmt.Fprintf(w, "%s:\n    longest gap between events per lifecycle partition from the fault to the next one:", row.name)
		for _, p := range parts {
			fmt.Fprintf(w, " p%d=%s", p, stalls[p].Round(10*time.Millisecond))
		}
		fmt.Fprintf(w, "\n    health-monitor meanwhile: %s\n", row.health)
	}
	fmt.Fprintf(w, "health-monitor consumer groups not healthy during the run:%s\n", r.groupWorst)
}

func (r *result) assert(t *testing.T) {
	t.Helper()
	assert.Positive(t, r.acked, "no job was acknowledged")
	assert.Zero(t, r.lost, "acknowledged jobs lost")
	assert.Zero(t, r.lostEnd, "ended jobs whose terminal event is not on the stream")
	assert.Zero(t, r.wrong, "jobs in a wrong final state")
	assert.Zero(t, r.reordered, "jobs whose events are out of sequence on the topic")
	assert.Zero(t, r.deadLettered, "dead-lettered records")
	assert.Zero(t, r.decodeErrors, "undecodable lifecycle records")
	assert.Equal(t, r.streamJobs, r.metricsSubmitted, "metrics-consumer submitted vs stream")
	assert.Equal(t, r.streamDone, r.metricsCompleted, "metrics-consumer completed vs stream")
	assert.Equal(t, r.streamFailed, r.metricsFailed, "metrics-consumer failed vs stream")
	assert.True(t, r.auditOK, "audit chain: %s", r.auditReason)
	assert.Equal(t, int64(r.auditStream), r.auditChecked, "audit chain records vs distinct events")
	assert.GreaterOrEqual(t, r.emailsFound, r.emailsExpected, "e-mails missing")
	for _, row := range r.rows {
		if row.health != "" {
			assert.True(t, row.named, "%s: the health-monitor did not report the cluster DEGRADED naming the broker: %s", row.name, row.health)
		}
	}
}
