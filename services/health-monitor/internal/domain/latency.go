package domain

import (
	"math"
	"slices"
	"time"
)

// LatencyWindow keeps the latest samples of a latency, up to its size, for
// percentiles. It is not safe for concurrent use.
type LatencyWindow struct {
	samples []time.Duration
	next    int
	full    bool
}

// NewLatencyWindow keeps up to size samples (at least 1).
func NewLatencyWindow(size int) *LatencyWindow {
	return &LatencyWindow{samples: make([]time.Duration, max(size, 1))}
}

// Add records one sample, dropping the oldest when the window is full.
func (w *LatencyWindow) Add(d time.Duration) {
	w.samples[w.next] = d
	w.next++
	if w.next == len(w.samples) {
		w.next, w.full = 0, true
	}
}

// Len is the number of samples kept.
func (w *LatencyWindow) Len() int {
	if w.full {
		return len(w.samples)
	}
	return w.next
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of the
// kept samples, 0 without samples.
func (w *LatencyWindow) Percentile(p float64) time.Duration {
	n := w.Len()
	if n == 0 {
		return 0
	}
	sorted := slices.Clone(w.samples[:n])
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}
