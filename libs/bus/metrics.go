package bus

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// LatencyBuckets are the histogram buckets of the fleet's messaging
// latencies: from a sub-millisecond local acknowledgement to a stalled broker.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// RegisterMetric registers c with reg, or returns the collector already
// registered under the same description, so that several producers,
// consumers or connections of one process share their metrics. A nil reg
// leaves c unregistered.
func RegisterMetric[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register metric: %w", err)
	}
	return c, nil
}
