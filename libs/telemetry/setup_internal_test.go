package telemetry

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The decision to create an exporter is tested directly: with no exporter
// requested nothing is dialled, which a black-box test cannot observe.
func TestExportRequested(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{name: "nothing set", env: nil, want: false},
		{name: "only protocol", env: map[string]string{EnvOTLPProtocol: "grpc"}, want: false},
		{name: "only service name", env: map[string]string{EnvServiceName: "x"}, want: false},
		{name: "blank endpoint", env: map[string]string{EnvOTLPEndpoint: "  "}, want: false},
		{name: "endpoint", env: map[string]string{EnvOTLPEndpoint: "http://127.0.0.1:4318"}, want: true},
		{name: "traces endpoint", env: map[string]string{EnvOTLPTracesEndpoint: "http://127.0.0.1:4318/v1/traces"}, want: true},
		{name: "explicit otlp", env: map[string]string{EnvTracesExporter: "otlp"}, want: true},
		{name: "explicit console", env: map[string]string{EnvTracesExporter: "console"}, want: true},
		{name: "explicit none goes to autoexport which picks its no-op", env: map[string]string{EnvTracesExporter: "none"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := exportRequested(func(k string) string { return tt.env[k] })
			require.Equal(t, tt.want, got)
		})
	}
}
