package main

import (
	"fmt"
	"slices"
	"time"
)

// latencies collects samples and reports percentiles.
type latencies []time.Duration

func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(p/100*float64(len(s)) + 0.5)
	i = min(max(i-1, 0), len(s)-1)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// verdict compares a measured value with its target.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// pacer releases ticks at a fixed rate without drifting: tick i is due at
// start + i/rate, so a slow iteration is followed by faster ones.
type pacer struct {
	start    time.Time
	interval time.Duration
	n        int
}

func newPacer(perSecond int) *pacer {
	return &pacer{start: time.Now(), interval: time.Second / time.Duration(perSecond)}
}

// wait sleeps until the next tick is due.
func (p *pacer) wait() {
	due := p.start.Add(time.Duration(p.n) * p.interval)
	p.n++
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}
