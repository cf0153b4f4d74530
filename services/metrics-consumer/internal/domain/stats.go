package domain

import (
	"math"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events"
)

// Histogram buckets durations in milliseconds on a log scale with
// SubBuckets buckets per doubling: bucket 0 holds 0 ms, bucket i ≥ 1 holds
// [2^((i-1)/SubBuckets), 2^(i/SubBuckets)) ms. A percentile is reported as
// the geometric middle of its bucket, so its relative error is at most
// 2^(1/(2·SubBuckets)) − 1 ≈ 4.4 %. Histograms merge by adding counts, so a
// percentile does not depend on the order samples were added in.
type Histogram struct {
	counts [histBuckets]int64
	n      int64
}

// SubBuckets is the number of histogram buckets per doubling.
const SubBuckets = 8

// MaxRelativeError bounds the relative error of Histogram.Quantile.
var MaxRelativeError = math.Exp2(1.0/(2*SubBuckets)) - 1

// histBuckets covers up to 2^40 ms (about 35 years).
const histBuckets = 40*SubBuckets + 1

func bucketOf(ms int64) int {
	if ms <= 0 {
		return 0
	}
	i := int(math.Floor(math.Log2(float64(ms))*SubBuckets)) + 1
	return min(i, histBuckets-1)
}

// Add records a duration of ms milliseconds; negative values are ignored.
func (h *Histogram) Add(ms int64) {
	if ms < 0 {
		return
	}
	h.counts[bucketOf(ms)]++
	h.n++
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// Count is the number of samples.
func (h *Histogram) Count() int64 { return h.n }

// Quantile returns the nearest-rank q-quantile (0 < q ≤ 1) estimate, and
// false when the histogram is empty.
func (h *Histogram) Quantile(q float64) (time.Duration, bool) {
	if h.n == 0 {
		return 0, false
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == 0 {
				return 0, true
			}
			ms := math.Exp2((float64(i) - 0.5) / SubBuckets)
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	return 0, false
}

// Stats aggregates a set of jobs.
type Stats struct {
	Submitted, Completed, Failed, Cancelled int64
	Active, Pending                         int64
	QueueWait, RunTime                      Histogram
	NodeHours, GPUHours                     float64
}

// Add folds job j into s.
func (s *Stats) Add(j *Job) {
	s.AddFacts(FactsOf(j))
}

// Facts are the per-job values aggregates are made of; the store keeps them
// next to each job so queries need not rebuild Job records.
type Facts struct {
	Status      events.JobStatus
	QueueWaitMS int64
	RunTimeMS   int64
	NodeHours   float64
	GPUHours    float64
}

// FactsOf derives the aggregated values of j.
func FactsOf(j *Job) Facts {
	return Facts{
		Status: j.Status, QueueWaitMS: j.QueueWaitMS(), RunTimeMS: j.RunTimeMS(),
		NodeHours: j.NodeHours(), GPUHours: j.GPUHours(),
	}
}

// AddFacts folds one job's facts into s.
func (s *Stats) AddFacts(f Facts) {
	s.Submitted++
	switch f.Status {
	case events.JobStatusCompleted:
		s.Completed++
	case events.JobStatusFailed:
		s.Failed++
	case events.JobStatusCancelled:
		s.Cancelled++
	case events.JobStatusRunning:
		s.Active++
	case events.JobStatusSubmitted, events.JobStatusQueued:
		s.Pending++
	}
	s.QueueWait.Add(f.QueueWaitMS)
	s.RunTime.Add(f.RunTimeMS)
	s.NodeHours += f.NodeHours
	s.GPUHours += f.GPUHours
}

// Merge adds o into s.
func (s *Stats) Merge(o *Stats) {
	s.Submitted += o.Submitted
	s.Completed += o.Completed
	s.Failed += o.Failed
	s.Cancelled += o.Cancelled
	s.Active += o.Active
	s.Pending += o.Pending
	s.QueueWait.Merge(&o.QueueWait)
	s.RunTime.Merge(&o.RunTime)
	s.NodeHours += o.NodeHours
	s.GPUHours += o.GPUHours
}

// SuccessRate is completed / terminal, 0 when no job is terminal.
func (s *Stats) SuccessRate() float64 {
	terminal := s.Completed + s.Failed + s.Cancelled
	if terminal == 0 {
		return 0
	}
	return float64(s.Completed) / float64(terminal)
}

// Percentiles are P50, P95 and P99 of a histogram.
type Percentiles struct {
	P50, P95, P99 time.Duration
}

// Percentiles returns the P50/P95/P99 of h, false when h is empty.
func (h *Histogram) Percentiles() (Percentiles, bool) {
	if h.n == 0 {
		return Percentiles{}, false
	}
	p50, _ := h.Quantile(0.50)
	p95, _ := h.Quantile(0.95)
	p99, _ := h.Quantile(0.99)
	return Percentiles{P50: p50, P95: p95, P99: p99}, true
}

// Key groups jobs for aggregation.
type Key struct {
	System, UserID, Agent string
	Status                events.JobStatus
}

// GroupBy folds jobs into Stats per (system, user, agent, status).
func GroupBy(jobs []*Job) map[Key]*Stats {
	out := make(map[Key]*Stats)
	for _, j := range jobs {
		k := Key{System: j.System, UserID: j.UserID, Agent: j.Agent, Status: j.Status}
		s := out[k]
		if s == nil {
			s = &Stats{}
			out[k] = s
		}
		s.Add(j)
	}
	return out
}

// MinuteBuckets counts terminal times (Unix microseconds) per minute
// starting at fromUS (rounded down to a minute), over n minutes: recent
// throughput in completions per minute.
func MinuteBuckets(endedAtUS []int64, fromUS int64, n int) []int64 {
	const minuteUS = int64(time.Minute / time.Microsecond)
	start := fromUS - fromUS%minuteUS
	out := make([]int64, n)
	for _, at := range endedAtUS {
		if at < start {
			continue
		}
		if i := (at - start) / minuteUS; i < int64(n) {
			out[i]++
		}
	}
	return out
}
