package domain_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/testgen"
)

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fold applies evs to fresh job records, in the given order.
func fold(evs []events.Event) map[string]*domain.Job {
	jobs := map[string]*domain.Job{}
	for _, ev := range evs {
		id := domain.JobID(ev)
		j := jobs[id]
		if j == nil {
			j = domain.NewJob(id)
			jobs[id] = j
		}
		j.Apply(ev)
	}
	return jobs
}

func TestJobMergeIgnoresOrderAndDuplicates(t *testing.T) {
	t.Parallel()
	plans := testgen.Plans(1, 300, base)
	evs, err := testgen.Stream(plans)
	require.NoError(t, err)
	want := fold(evs)

	tests := []struct {
		name    string
		reorder func(r *rand.Rand, evs []events.Event) []events.Event
	}{
		{name: "reversed", reorder: func(_ *rand.Rand, evs []events.Event) []events.Event {
			out := slices.Clone(evs)
			slices.Reverse(out)
			return out
		}},
		{name: "shuffled", reorder: func(r *rand.Rand, evs []events.Event) []events.Event {
			out := slices.Clone(evs)
			r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
			return out
		}},
		{name: "shuffled with every event twice", reorder: func(r *rand.Rand, evs []events.Event) []events.Event {
			out := append(slices.Clone(evs), evs...)
			r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
			return out
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(7, 11))
			require.Equal(t, want, fold(tt.reorder(r, evs)))
		})
	}
}

func TestJobApplyReportsChange(t *testing.T) {
	t.Parallel()
	evs, err := testgen.Plans(2, 1, base)[0].Events()
	require.NoError(t, err)
	j := domain.NewJob(domain.JobID(evs[0]))
	for _, ev := range evs {
		require.True(t, j.Apply(ev), ev.EventType)
		require.False(t, j.Apply(ev), "a repeated %s changes nothing", ev.EventType)
	}
}

func TestJobLatestStatusAndSampleBySequence(t *testing.T) {
	t.Parallel()
	p := testgen.Plans(3, 50, base)
	var plan testgen.Plan
	for _, x := range p {
		if x.Outcome == testgen.Completed {
			plan = x
			break
		}
	}
	evs, err := plan.Events()
	require.NoError(t, err)
	// Terminal events first, submission last.
	slices.Reverse(evs)
	j := fold(evs)[plan.JobID]
	require.Equal(t, events.JobStatusCompleted, j.Status)
	require.True(t, j.Sample.Final, "the final sample has the highest sequence")
	require.Equal(t, plan.QueueWait.Milliseconds(), j.QueueWaitMS())
	require.Equal(t, plan.RunTime.Milliseconds(), j.RunTimeMS())
	require.InDelta(t, plan.NodeHours(), j.NodeHours(), 1e-9)
	require.InDelta(t, plan.GPUHours(), j.GPUHours(), 1e-9)
}

func TestHistogramQuantileError(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 5))
	tests := []struct {
		name   string
		values func() []int64
	}{
		{name: "uniform ms", values: func() []int64 {
			out := make([]int64, 5000)
			for i := range out {
				out[i] = 1 + r.Int64N(10_000_000)
			}
			return out
		}},
		{name: "single value", values: func() []int64 { return []int64{42_000} }},
		{name: "with zeros", values: func() []int64 { return []int64{0, 0, 0, 1, 5, 5_000} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals := tt.values()
			var h domain.Histogram
			for _, v := range vals {
				h.Add(v)
			}
			slices.Sort(vals)
			for _, q := range []float64{0.5, 0.95, 0.99} {
				got, ok := h.Quantile(q)
				require.True(t, ok)
				want := float64(testgen.NearestRank(vals, q))
				gotMS := float64(got) / float64(time.Millisecond)
				require.InDelta(t, want, gotMS, want*domain.MaxRelativeError+1e-9, "q=%v", q)
			}
		})
	}
}

func TestStatsKnownAnswers(t *testing.T) {
	t.Parallel()
	plans := testgen.Plans(9, 2000, base)
	evs, err := testgen.Stream(plans)
	require.NoError(t, err)
	var s domain.Stats
	for _, j := range fold(evs) {
		s.Add(j)
	}
	want := testgen.Expect(plans, nil)
	require.Equal(t, want.Submitted, s.Submitted)
	require.Equal(t, want.Completed, s.Completed)
	require.Equal(t, want.Failed, s.Failed)
	require.Equal(t, want.Cancelled, s.Cancelled)
	require.Equal(t, want.Active, s.Active)
	require.Equal(t, want.Pending, s.Pending)
	require.InDelta(t, float64(want.Completed)/float64(want.Completed+want.Failed+want.Cancelled), s.SuccessRate(), 1e-12)
	require.InDelta(t, want.NodeHours, s.NodeHours, 1e-6)
	require.InDelta(t, want.GPUHours, s.GPUHours, 1e-6)
	require.Equal(t, int64(len(want.QueueWaitsMS)), s.QueueWait.Count())
	require.Equal(t, int64(len(want.RunTimesMS)), s.RunTime.Count())
	slices.Sort(want.RunTimesMS)
	p, ok := s.RunTime.Percentiles()
	require.True(t, ok)
	p99 := float64(testgen.NearestRank(want.RunTimesMS, 0.99))
	require.InDelta(t, p99, float64(p.P99)/float64(time.Millisecond), p99*domain.MaxRelativeError)

	groups := domain.GroupBy(func() []*domain.Job {
		var out []*domain.Job
		for _, j := range fold(evs) {
			out = append(out, j)
		}
		return out
	}())
	var total int64
	for k, g := range groups {
		total += g.Submitted
		exp := testgen.Expect(plans, func(p testgen.Plan) bool {
			return p.System == k.System && p.UserID == k.UserID && p.Agent == k.Agent && p.Status() == k.Status
		})
		require.Equal(t, exp.Submitted, g.Submitted, "%+v", k)
	}
	require.Equal(t, int64(len(plans)), total)
}

func TestMinuteBuckets(t *testing.T) {
	t.Parallel()
	us := func(d time.Duration) int64 { return base.Add(d).UnixMicro() }
	got := domain.MinuteBuckets([]int64{us(-time.Second), us(0), us(59 * time.Second), us(61 * time.Second), us(10 * time.Minute)}, us(0), 3)
	require.Equal(t, []int64{2, 1, 0}, got)
}
