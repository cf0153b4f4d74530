package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The orchestrator's metrics of how long its writes hold the database
// (services/job-orchestrator/internal/adapters/store/metrics.go) and of its
// reconciler's passes (internal/service/metrics.go).
const (
	metricCommitSeconds    = "fleet_orchestrator_store_commit_seconds"
	metricCommitWrites     = "fleet_orchestrator_store_commit_writes"
	metricCommitMaxSeconds = "fleet_orchestrator_store_commit_max_seconds"
	metricClaimSeconds     = "fleet_orchestrator_reconciler_claim_seconds"
	metricClaimMaxSeconds  = "fleet_orchestrator_reconciler_claim_max_seconds"
	metricPassSeconds      = "fleet_orchestrator_reconciler_pass_seconds"
	metricPassMaxSeconds   = "fleet_orchestrator_reconciler_pass_max_seconds"
)

// holdStats summarises one histogram of durations: how many, P50 and P99
// estimated from its buckets as Prometheus' histogram_quantile does (then
// capped at the longest), and the longest, from its max gauge.
type holdStats struct {
	count          uint64
	sum            time.Duration
	p50, p99, most time.Duration
	// writes is the number of writes the commits carried (commits only).
	writes float64
}

// dbHolds is what the orchestrator's /metrics said about its database
// holds at the end of a sweep.
type dbHolds struct {
	commitCreates, commitTransitions, commitMixed, claim, pass holdStats
}

// reconcilerLongest is the longest time the reconciler's work held the
// database: its claims and the commits that carried transitions.
func (h *dbHolds) reconcilerLongest() time.Duration {
	return max(h.claim.most, h.commitTransitions.most, h.commitMixed.most)
}

// scrapeHolds reads the orchestrator's /metrics at httpAddr.
func scrapeHolds(ctx context.Context, httpAddr string) (*dbHolds, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	// Ask for the text format, which TextParser reads.
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape orchestrator metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape orchestrator metrics: %s", resp.Status)
	}
	return parseHolds(resp.Body)
}

// parseHolds reads the database hold metrics from a Prometheus text
// exposition; each must be present.
func parseHolds(r io.Reader) (*dbHolds, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse orchestrator metrics: %w", err)
	}
	for _, name := range []string{metricCommitSeconds, metricCommitWrites, metricCommitMaxSeconds,
		metricClaimSeconds, metricClaimMaxSeconds, metricPassSeconds, metricPassMaxSeconds} {
		if families[name] == nil {
			return nil, fmt.Errorf("orchestrator metrics lack %s", name)
		}
	}
	commit := func(writes string) (holdStats, error) {
		match := map[string]string{"writes": writes}
		h, err := histogramStats(families[metricCommitSeconds], families[metricCommitMaxSeconds], match)
		if err != nil {
			return h, err
		}
		w, err := addHistograms(families[metricCommitWrites], match)
		h.writes = w.sum
		return h, err
	}
	var h dbHolds
	if h.commitCreates, err = commit("creates"); err != nil {
		return nil, err
	}
	if h.commitTransitions, err = commit("transitions"); err != nil {
		return nil, err
	}
	if h.commitMixed, err = commit("mixed"); err != nil {
		return nil, err
	}
	if h.claim, err = histogramStats(families[metricClaimSeconds], families[metricClaimMaxSeconds], nil); err != nil {
		return nil, err
	}
	if h.pass, err = histogramStats(families[metricPassSeconds], families[metricPassMaxSeconds], nil); err != nil {
		return nil, err
	}
	return &h, nil
}

// histogram is the series of a histogram family added up.
type histogram struct {
	count  uint64
	sum    float64
	bounds []float64 // upper bounds, +Inf included or not
	cum    []uint64  // cumulative counts of bounds
}

// addHistograms adds up the series of histogram family f whose labels
// include match (all of them, for nil); there must be one.
func addHistograms(f *dto.MetricFamily, match map[string]string) (histogram, error) {
	var (
		h     histogram
		found bool
	)
	for _, m := range f.GetMetric() {
		if !labelsMatch(m, match) {
			continue
		}
		mh := m.GetHistogram()
		if mh == nil {
			return h, fmt.Errorf("%s is not a histogram", f.GetName())
		}
		found = true
		h.count += mh.GetSampleCount()
		h.sum += mh.GetSampleSum()
		for i, b := range mh.GetBucket() {
			if len(h.bounds) <= i {
				h.bounds = append(h.bounds, b.GetUpperBound())
				h.cum = append(h.cum, 0)
			}
			if h.bounds[i] != b.GetUpperBound() {
				return h, fmt.Errorf("%s: series with different buckets", f.GetName())
			}
			h.cum[i] += b.GetCumulativeCount()
		}
	}
	if !found {
		return h, fmt.Errorf("orchestrator metrics lack %s%v", f.GetName(), match)
	}
	return h, nil
}

// histogramStats summarises the series of the histogram of seconds hist
// whose labels include match, with the largest value of the matching
// series of the gauge family most as the longest.
func histogramStats(hist, most *dto.MetricFamily, match map[string]string) (holdStats, error) {
	h, err := addHistograms(hist, match)
	if err != nil {
		return holdStats{}, err
	}
	seconds := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	s := holdStats{count: h.count, sum: seconds(h.sum)}
	var longest float64
	for _, m := range most.GetMetric() {
		if labelsMatch(m, match) {
			longest = max(longest, m.GetGauge().GetValue())
		}
	}
	s.most = seconds(longest)
	quantile := func(q float64) time.Duration {
		v := seconds(bucketQuantile(q, h.bounds, h.cum, h.count))
		if s.count > 0 {
			return min(v, s.most)
		}
		return v
	}
	s.p50, s.p99 = quantile(0.5), quantile(0.99)
	return s, nil
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	for k, v := range match {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
			return false
		}
	}
	return true
}

// bucketQuantile estimates quantile q of count samples from cumulative
// bucket counts cum with upper bounds bounds (the +Inf bucket implied by
// count), by linear interpolation within the bucket holding the rank, as
// histogram_quantile does; a rank beyond the last finite bound yields that
// bound. 0 when there are no samples.
func bucketQuantile(q float64, bounds []float64, cum []uint64, count uint64) float64 {
	if count == 0 || len(bounds) == 0 {
		return 0
	}
	rank := q * float64(count)
	var lower, below float64
	for i, upper := range bounds {
		if math.IsInf(upper, 1) {
			break
		}
		c := float64(cum[i])
		if c >= rank {
			if c == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(c-below)
		}
		lower, below = upper, c
	}
	return lower
}

// write prints the database holds next to SubmitJob's P99 of the same
// sweep, with the verdict on the sweep's clause: no reconciler pass holds
// the database long enough to delay a SubmitJob past its P99. On SQLite
// it also compares them with SubmitJob's P99 target (fleetbench submit),
// which the measured P99, itself lengthened by these holds, may exceed.
func (h *dbHolds) write(w io.Writer, submitP99 time.Duration, database string) {
	fmt.Fprintf(w, "## Database holds (the orchestrator's /metrics at the end of the sweep)\n\n")
	fmt.Fprintf(w, "| what held the database | count | writes per commit | P50 | P99 | longest | total |\n|---|---:|---:|---:|---:|---:|---:|\n")
	row := func(name string, s holdStats, commits bool) {
		perCommit := "–"
		if commits && s.count > 0 {
			perCommit = fmt.Sprintf("%.1f", s.writes/float64(s.count))
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", name, s.count, perCommit,
			ms(s.p50), ms(s.p99), ms(s.most), s.sum.Round(time.Millisecond))
	}
	row("group commit of new jobs only (SubmitJob)", h.commitCreates, true)
	row("group commit of transitions only (reconciler)", h.commitTransitions, true)
	row("group commit of new jobs and transitions together", h.commitMixed, true)
	row("dispatch claim (ClaimSubmitted, one UPDATE … RETURNING)", h.claim, false)
	fmt.Fprintf(w, "| reconciler pass, whole (claim, reads, scheduler calls, writes: not one hold) | %d | – | %s | %s | %s | %s |\n\n",
		h.pass.count, ms(h.pass.p50), ms(h.pass.p99), ms(h.pass.most), h.pass.sum.Round(time.Millisecond))
	longest := h.reconcilerLongest()
	fmt.Fprintf(w, "Longest database hold of a reconciler pass (a claim, or a commit carrying transitions): %s; SubmitJob P99 in this sweep: %s. "+
		"No pass holds the database longer than SubmitJob's P99: %s. "+
		"Holds are from BEGIN (or the claim statement) on a held connection to COMMIT returned; P50 and P99 are estimated from the histogram buckets, the longest is exact.\n\n",
		ms(longest), ms(submitP99), verdict(longest <= submitP99))
	switch database {
	case "sqlite":
		fmt.Fprintf(w, "Against SubmitJob's P99 target on SQLite (%s, fleetbench submit) instead: %s.\n\n",
			ms(targetSubmitP99), verdict(longest <= targetSubmitP99))
	case "postgres":
		fmt.Fprintf(w, "On PostgreSQL a transaction locks its jobs' rows, not the database, and new jobs commit in a queue of their own: "+
			"a long commit of transitions makes a SubmitJob wait only for a pool connection or a shared WAL flush, so the comparison above bounds the delay from above.\n\n")
	}
}
