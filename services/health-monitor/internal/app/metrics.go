package app

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	cycleCPU        prometheus.Histogram
	cycleDuration   prometheus.Histogram
	lastCycleCPU    prometheus.Gauge
	componentStatus *prometheus.GaugeVec
	lag             *prometheus.GaugeVec
	canary          *prometheus.HistogramVec
	openAlerts      prometheus.Gauge
	alerts          *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	cycleBuckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	m := &metrics{
		cycleCPU: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "health_monitor_probe_cycle_cpu_seconds",
			Help:    "Process CPU time (user+system) spent during one probe cycle.",
			Buckets: cycleBuckets,
		}),
		cycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "health_monitor_probe_cycle_duration_seconds",
			Help:    "Wall time of one probe cycle.",
			Buckets: cycleBuckets,
		}),
		lastCycleCPU: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "health_monitor_last_probe_cycle_cpu_seconds",
			Help: "Process CPU time spent during the latest probe cycle.",
		}),
		componentStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "health_monitor_component_status",
			Help: "Latest status of a component: 0 unknown, 1 healthy, 2 degraded, 3 unhealthy.",
		}, []string{"component", "type"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "health_monitor_consumer_group_lag",
			Help: "Messages a consumer group is behind on a topic.",
		}, []string{"group", "topic"}),
		canary: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "health_monitor_canary_round_trip_seconds",
			Help:    "Round trip of a canary message through a broker.",
			Buckets: cycleBuckets,
		}, []string{"canary"}),
		openAlerts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "health_monitor_open_alerts",
			Help: "Alerts raised and not yet resolved.",
		}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "health_monitor_alert_transitions_total",
			Help: "Alerts raised and resolved.",
		}, []string{"kind"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.cycleCPU, m.cycleDuration, m.lastCycleCPU, m.componentStatus, m.lag, m.canary, m.openAlerts, m.alerts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("monitor metrics: %w", err)
		}
	}
	return m, nil
}
