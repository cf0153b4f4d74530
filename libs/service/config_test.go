package service_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/service"
)

func envLookup(env map[string]string) service.LookupFunc {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	defaults := service.DefaultConfig("job-orchestrator", ":50051", ":8081")
	tests := []struct {
		name    string
		env     map[string]string
		want    service.Config
		wantErr []string
	}{
		{name: "defaults", env: nil, want: defaults},
		{
			name: "overrides",
			env: map[string]string{
				"SERVICE_NAME": "orch-2", "SERVICE_VERSION": "1.2.3", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": ":9090",
				"LOG_LEVEL": "debug", "SHUTDOWN_DRAIN": "250ms", "SHUTDOWN_TIMEOUT": "3s",
			},
			want: service.Config{
				ServiceName: "orch-2", ServiceVersion: "1.2.3", GRPCAddr: "127.0.0.1:0", HTTPAddr: ":9090",
				LogLevel: slog.LevelDebug, ShutdownDrain: 250 * time.Millisecond, ShutdownTimeout: 3 * time.Second,
			},
		},
		{name: "blank values keep defaults", env: map[string]string{"GRPC_ADDR": " ", "SHUTDOWN_DRAIN": "", "LOG_LEVEL": ""}, want: defaults},
		{name: "zero drain allowed", env: map[string]string{"SHUTDOWN_DRAIN": "0s"}, want: func() service.Config { c := defaults; c.ShutdownDrain = 0; return c }()},
		{name: "bad drain", env: map[string]string{"SHUTDOWN_DRAIN": "soon"}, wantErr: []string{"SHUTDOWN_DRAIN", "soon"}},
		{name: "bad timeout", env: map[string]string{"SHUTDOWN_TIMEOUT": "15"}, wantErr: []string{"SHUTDOWN_TIMEOUT"}},
		{name: "negative timeout", env: map[string]string{"SHUTDOWN_TIMEOUT": "-1s"}, wantErr: []string{"SHUTDOWN_TIMEOUT", "positive"}},
		{name: "negative drain", env: map[string]string{"SHUTDOWN_DRAIN": "-1s"}, wantErr: []string{"SHUTDOWN_DRAIN", "negative"}},
		{name: "drain not shorter than timeout", env: map[string]string{"SHUTDOWN_DRAIN": "20s"}, wantErr: []string{"SHUTDOWN_DRAIN", "SHUTDOWN_TIMEOUT"}},
		{name: "bad log level", env: map[string]string{"LOG_LEVEL": "chatty"}, wantErr: []string{"LOG_LEVEL", "chatty"}},
		{name: "grpc addr without port", env: map[string]string{"GRPC_ADDR": "localhost"}, wantErr: []string{"GRPC_ADDR"}},
		{name: "http port out of range", env: map[string]string{"HTTP_ADDR": ":70000"}, wantErr: []string{"HTTP_ADDR", "70000"}},
		{name: "http port not a number", env: map[string]string{"HTTP_ADDR": ":http"}, wantErr: []string{"HTTP_ADDR"}},
		{
			name:    "every problem is reported",
			env:     map[string]string{"SHUTDOWN_DRAIN": "x", "SHUTDOWN_TIMEOUT": "y", "LOG_LEVEL": "z"},
			wantErr: []string{"SHUTDOWN_DRAIN", "SHUTDOWN_TIMEOUT", "LOG_LEVEL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := service.LoadConfig(defaults, envLookup(tt.env))
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, s := range tt.wantErr {
					require.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	valid := service.DefaultConfig("svc", ":1", ":2")
	tests := []struct {
		name    string
		mutate  func(*service.Config)
		wantErr string
	}{
		{name: "valid", mutate: func(*service.Config) {}},
		{name: "no name", mutate: func(c *service.Config) { c.ServiceName = "" }, wantErr: "SERVICE_NAME"},
		{name: "no grpc addr", mutate: func(c *service.Config) { c.GRPCAddr = "" }, wantErr: "GRPC_ADDR"},
		{name: "no http addr", mutate: func(c *service.Config) { c.HTTPAddr = "" }, wantErr: "HTTP_ADDR"},
		{name: "zero timeout", mutate: func(c *service.Config) { c.ShutdownTimeout = 0 }, wantErr: "SHUTDOWN_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
