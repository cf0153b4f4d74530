package service_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/service"
)

func TestLoadConfigAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		env          map[string]string
		wantErr      string
		wantDisabled bool
	}{
		{name: "HS256 secret", env: map[string]string{"AUTH_HS256_SECRET": secret}},
		{name: "no key source refuses to start", env: map[string]string{}, wantErr: "AUTH_DISABLED=true"},
		{name: "explicitly disabled", env: map[string]string{"AUTH_DISABLED": "true"}, wantDisabled: true},
		{name: "short secret", env: map[string]string{"AUTH_HS256_SECRET": "short"}, wantErr: "32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "STATE_DIRECTORY": t.TempDir(), "PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123"}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantDisabled, cfg.Auth.Disabled)
		})
	}
}

func TestLoadConfigAllocations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "allocations.json")
	require.NoError(t, os.WriteFile(good, []byte(`{"alice": ["AST21001", "AST23005"], "bob": []}`), 0o600))
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`["AST21001"]`), 0o600))
	load := func(extra map[string]string) (service.Config, error) {
		env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "STATE_DIRECTORY": t.TempDir(),
			"PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123", "AUTH_HS256_SECRET": secret}
		for k, v := range extra {
			env[k] = v
		}
		return service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	cfg, err := load(nil)
	require.NoError(t, err)
	require.Nil(t, cfg.App.Allocations, "no file: no map")
	cfg, err = load(map[string]string{service.EnvAllocationsFile: good})
	require.NoError(t, err)
	require.Equal(t, map[string][]string{"alice": {"AST21001", "AST23005"}, "bob": {}}, cfg.App.Allocations)
	_, err = load(map[string]string{service.EnvAllocationsFile: bad})
	require.ErrorContains(t, err, service.EnvAllocationsFile)
	_, err = load(map[string]string{service.EnvAllocationsFile: filepath.Join(dir, "missing.json")})
	require.ErrorContains(t, err, service.EnvAllocationsFile)
}
