package deploycheck_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/tools/deploycheck"
)

// A variable named only by an envFile tag (a secret given through a file)
// counts as read.
func TestReadServiceCodeEnvFileTags(t *testing.T) {
	t.Parallel()
	root, tmp := repoRoot(t), t.TempDir()
	for _, f := range []string{"libs/service/config.go", "libs/service/brokers.go", "libs/telemetry/setup.go"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(tmp, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(tmp, f), b, 0o644))
	}
	dir := filepath.Join(tmp, "services", "svc", "internal", "service")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.go"), []byte(`package service

const (
	DefaultGRPCAddr = ":50059"
	DefaultHTTPAddr = ":8089"
)

type Config struct {
	Token string `+"`"+`env:"SVC_TOKEN" envFile:"SVC_TOKEN_FROM_FILE"`+"`"+`
}
`), 0o644))
	code, err := deploycheck.ReadServiceCode(tmp, "svc")
	require.NoError(t, err)
	require.True(t, code.Reads("SVC_TOKEN"))
	require.True(t, code.Reads("SVC_TOKEN_FROM_FILE"))
	require.False(t, code.Reads("SVC_TOKEN_FILE"))
}
