package service

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// Names of the gRPC request metrics the runtime exports.
const (
	MetricGRPCHandled  = "grpc_server_handled_total"
	MetricGRPCDuration = "grpc_server_handling_seconds"
)

// grpcMetrics counts and times every gRPC call by full method and code.
type grpcMetrics struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newGRPCMetrics(reg prometheus.Registerer) (*grpcMetrics, error) {
	m := &grpcMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricGRPCHandled,
			Help: "gRPC calls completed by the server, by full method and status code.",
		}, []string{"grpc_method", "grpc_code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricGRPCDuration,
			Help:    "Time the server took to handle a gRPC call, by full method and status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"grpc_method", "grpc_code"}),
	}
	for _, c := range []prometheus.Collector{m.handled, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *grpcMetrics) observe(method string, code codes.Code, d time.Duration) {
	m.handled.WithLabelValues(method, code.String()).Inc()
	m.duration.WithLabelValues(method, code.String()).Observe(d.Seconds())
}
