package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

func TestBucketQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name   string
		q      float64
		bounds []float64
		cum    []uint64
		count  uint64
		want   float64
	}{
		{name: "median at a bucket's top", q: 0.5, bounds: []float64{1, 2, 4, inf}, cum: []uint64{10, 20, 20, 20}, count: 20, want: 1},
		{name: "P99 interpolated in its bucket", q: 0.99, bounds: []float64{1, 2, 4, inf}, cum: []uint64{10, 20, 20, 20}, count: 20, want: 1.98},
		{name: "beyond the last finite bound", q: 0.99, bounds: []float64{1, 2, 4, inf}, cum: []uint64{0, 0, 0, 5}, count: 5, want: 4},
		{name: "no samples", q: 0.99, bounds: []float64{1, inf}, cum: []uint64{0, 0}, count: 0, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := bucketQuantile(tc.q, tc.bounds, tc.cum, tc.count); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// exposition returns the text exposition of the orchestrator's hold
// metrics with the given observations (seconds), as the orchestrator
// registers them.
func exposition(t *testing.T, creates, transitions, claims, passes []float64) string {
	t.Helper()
	buckets := []float64{.001, .002, .005, .01, .02, .05, .1, .5, 1, 10}
	reg := prometheus.NewRegistry()
	commit := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricCommitSeconds, Buckets: buckets}, []string{"dialect", "writes"})
	writes := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricCommitWrites, Buckets: []float64{1, 8, 128}}, []string{"dialect", "writes"})
	commitMax := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricCommitMaxSeconds}, []string{"dialect", "writes"})
	claim := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricClaimSeconds, Buckets: buckets}, []string{"dialect"})
	claimMax := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricClaimMaxSeconds}, []string{"dialect"})
	pass := prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricPassSeconds, Buckets: buckets})
	passMax := prometheus.NewGauge(prometheus.GaugeOpts{Name: metricPassMaxSeconds})
	reg.MustRegister(commit, writes, commitMax, claim, claimMax, pass, passMax)
	observe := func(kind string, vs []float64, perCommit float64) {
		commitMax.WithLabelValues("sqlite", kind).Set(0)
		commit.WithLabelValues("sqlite", kind) // present with no samples, as the orchestrator exports it
		writes.WithLabelValues("sqlite", kind)
		for _, v := range vs {
			commit.WithLabelValues("sqlite", kind).Observe(v)
			writes.WithLabelValues("sqlite", kind).Observe(perCommit)
			commitMax.WithLabelValues("sqlite", kind).Set(max(v, gaugeValue(t, commitMax.WithLabelValues("sqlite", kind))))
		}
	}
	observe("creates", creates, 50)
	observe("transitions", transitions, 100)
	observe("mixed", nil, 0)
	claimMax.WithLabelValues("sqlite").Set(0)
	claim.WithLabelValues("sqlite")
	for _, v := range claims {
		claim.WithLabelValues("sqlite").Observe(v)
		claimMax.WithLabelValues("sqlite").Set(max(v, gaugeValue(t, claimMax.WithLabelValues("sqlite"))))
	}
	for _, v := range passes {
		pass.Observe(v)
		passMax.Set(max(v, gaugeValue(t, passMax)))
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	m := new(dto.Metric)
	if err := g.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func TestParseHoldsAndVerdict(t *testing.T) {
	creates := []float64{.003, .004, .004, .006}
	transitions := []float64{.008, .012, .030}
	claims := []float64{.002, .015}
	passes := []float64{.2, .4}
	h, err := parseHolds(strings.NewReader(exposition(t, creates, transitions, claims, passes)))
	if err != nil {
		t.Fatal(err)
	}
	if h.commitCreates.count != 4 || h.commitTransitions.count != 3 || h.commitMixed.count != 0 || h.claim.count != 2 || h.pass.count != 2 {
		t.Fatalf("counts %+v", h)
	}
	if h.commitCreates.writes != 200 || h.commitTransitions.writes != 300 {
		t.Fatalf("writes %v %v", h.commitCreates.writes, h.commitTransitions.writes)
	}
	if h.commitTransitions.most != 30*time.Millisecond || h.claim.most != 15*time.Millisecond || h.pass.most != 400*time.Millisecond {
		t.Fatalf("longest %v %v %v", h.commitTransitions.most, h.claim.most, h.pass.most)
	}
	if h.commitTransitions.p99 > h.commitTransitions.most || h.commitTransitions.p99 <= 20*time.Millisecond {
		t.Fatalf("transitions P99 %v: in (20 ms, longest]", h.commitTransitions.p99)
	}
	if got := h.reconcilerLongest(); got != 30*time.Millisecond {
		t.Fatalf("reconciler's longest hold %v, want the longest transitions commit", got)
	}
	for _, tc := range []struct {
		submitP99 time.Duration
		want      string
	}{{25 * time.Millisecond, "P99: **not met**"}, {30 * time.Millisecond, "P99: met"}} {
		var out bytes.Buffer
		h.write(&out, tc.submitP99, "postgres")
		if !strings.Contains(out.String(), "No pass holds the database longer than SubmitJob's "+tc.want) {
			t.Fatalf("SubmitJob P99 %v: want %q in\n%s", tc.submitP99, tc.want, out.String())
		}
		if strings.Contains(out.String(), "target on SQLite") {
			t.Fatalf("the SQLite target printed for PostgreSQL:\n%s", out.String())
		}
	}
	var out bytes.Buffer
	h.write(&out, time.Second, "sqlite")
	if !strings.Contains(out.String(), "Against SubmitJob's P99 target on SQLite (20.00 ms, fleetbench submit) instead: **not met**") {
		t.Fatalf("30 ms against the 20 ms target:\n%s", out.String())
	}

	// A metric missing is an error, not a zero.
	text := exposition(t, creates, transitions, claims, passes)
	var kept []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, metricClaimMaxSeconds) {
			kept = append(kept, line)
		}
	}
	if _, err := parseHolds(strings.NewReader(strings.Join(kept, "\n"))); err == nil || !strings.Contains(err.Error(), metricClaimMaxSeconds) {
		t.Fatalf("without %s: %v", metricClaimMaxSeconds, err)
	}
}
