package service_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/envconf"
	"github.com/cosmic-horizons/fleet/libs/events"
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

func TestLoadConfigLocalIsolation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, cfg service.Config)
	}{
		{name: "defaults: isolated", env: map[string]string{}, check: func(t *testing.T, cfg service.Config) {
			require.False(t, cfg.Local.SingleUser)
			require.Zero(t, cfg.Local.UIDs, "the backend's default range applies")
		}},
		{name: "all set", env: map[string]string{
			"LOCAL_SINGLE_USER": "true", "LOCAL_JOB_UID_RANGE": "70000-70009", "LOCAL_JOB_GID_RANGE": "80000-80009",
			"LOCAL_CGROUP_PARENT": "fleet/jobs", "LOCAL_JOB_DEFAULT_MEMORY_MB": "512", "LOCAL_JOB_MAX_PROCESSES": "64",
			"LOCAL_JOB_MAX_OPEN_FILES": "256", "LOCAL_JOB_MAX_FILE_SIZE_MB": "10",
		}, check: func(t *testing.T, cfg service.Config) {
			l := cfg.Local
			require.True(t, l.SingleUser)
			require.Equal(t, 70000, l.UIDs.First)
			require.Equal(t, 70009, l.UIDs.Last)
			require.Equal(t, 80000, l.GIDs.First)
			require.Equal(t, "fleet/jobs", l.CgroupParent)
			require.Equal(t, int64(512), l.DefaultMemoryMB)
			require.Equal(t, int64(64), l.MaxProcesses)
			require.Equal(t, uint64(256), l.MaxOpenFiles)
			require.Equal(t, int64(10<<20), l.MaxFileSize)
		}},
		{name: "bad single-user flag", env: map[string]string{"LOCAL_SINGLE_USER": "yes please"}, wantErr: "LOCAL_SINGLE_USER"},
		{name: "bad uid range", env: map[string]string{"LOCAL_JOB_UID_RANGE": "61000"}, wantErr: "LOCAL_JOB_UID_RANGE"},
		{name: "reversed uid range", env: map[string]string{"LOCAL_JOB_UID_RANGE": "62000-61000"}, wantErr: "LOCAL_JOB_UID_RANGE"},
		{name: "gid range of another size", env: map[string]string{"LOCAL_JOB_UID_RANGE": "61000-61009", "LOCAL_JOB_GID_RANGE": "61000-61001"}, wantErr: "as many ids"},
		{name: "more concurrent jobs than uids", env: map[string]string{"LOCAL_JOB_UID_RANGE": "61000-61001", "LOCAL_MAX_JOBS": "3"}, wantErr: "exceeds the 2 job uids"},
		{name: "cgroup parent escaping", env: map[string]string{"LOCAL_CGROUP_PARENT": "../x"}, wantErr: "CgroupParent"},
		{name: "relative job supervisor", env: map[string]string{"LOCAL_JOB_SUPERVISOR": "job-supervisor"}, wantErr: "SupervisorPath"},
		{name: "zero processes", env: map[string]string{"LOCAL_JOB_MAX_PROCESSES": "0"}, wantErr: "LOCAL_JOB_MAX_PROCESSES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "STATE_DIRECTORY": t.TempDir(),
				"PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123", "AUTH_HS256_SECRET": secret}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, cfg)
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

// The whole Kafka connection block comes from the lookup the service is
// given, not from the process environment.
func TestLoadConfigKafkaFromLookup(t *testing.T) {
	t.Parallel()
	env := map[string]string{"KAFKA_BROKERS": " k1:9092 , k2:9092", "KAFKA_VERSION": "3.7.0", "KAFKA_TLS_CA_FILE": "/etc/kafka/ca.pem",
		"KAFKA_TLS_SERVER_NAME": "kafka.internal", "STATE_DIRECTORY": t.TempDir(), "PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123",
		"AUTH_DISABLED": "true", "RECONCILE_INTERVAL": "3s", "COST_USD_PER_NODE_HOUR": "0.5", "SLURM_JWT_TOKEN": "jwt",
		"DISPATCH_HOLD": "true"}
	cfg, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	require.Equal(t, []string{"k1:9092", "k2:9092"}, cfg.Kafka.Brokers)
	require.Equal(t, "3.7.0", cfg.Kafka.Version)
	require.Equal(t, "/etc/kafka/ca.pem", cfg.Kafka.TLS.CAFile)
	require.Equal(t, "kafka.internal", cfg.Kafka.TLS.ServerName)
	require.Equal(t, service.Name, cfg.Kafka.ClientID)
	require.Equal(t, 3*time.Second, cfg.Reconciler.Interval)
	require.True(t, cfg.Reconciler.HoldDispatch)
	require.InDelta(t, 0.5, cfg.App.Rates.USDPerNodeHour, 0)
	require.EqualValues(t, "jwt", cfg.Slurm.Token)

	for key, bad := range map[string]string{"RECONCILE_INTERVAL": "often", "COST_USD_PER_GPU_HOUR": "cheap",
		"WATCH_POLL_INTERVAL": "0s", "JOB_METRICS_INTERVAL": "-1s", "ORCHESTRATOR_ENSURE_TOPICS": "sure", "LOCAL_MAX_JOBS": "ten", "DISPATCH_HOLD": "maybe"} {
		env := map[string]string{"KAFKA_BROKERS": "k:9092", "STATE_DIRECTORY": t.TempDir(), "AUTH_DISABLED": "true",
			"PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123", key: bad}
		_, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		require.ErrorContains(t, err, key+"=", "%s=%s", key, bad)
	}
}

// The topic catalogue's cluster settings come from the lookup too.
func TestLoadConfigTopicsFromLookup(t *testing.T) {
	t.Parallel()
	env := map[string]string{"KAFKA_BROKERS": "k:9092", "STATE_DIRECTORY": t.TempDir(), "AUTH_DISABLED": "true",
		"PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123", "KAFKA_REPLICATION_FACTOR": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2"}
	cfg, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	require.Equal(t, events.CatalogueConfig{ReplicationFactor: 3, MinInsyncReplicas: 2, AuditMinInsyncReplicas: 2}, cfg.Topics)
	env["KAFKA_MIN_INSYNC_REPLICAS"] = "0"
	_, err = service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.ErrorContains(t, err, "KAFKA_MIN_INSYNC_REPLICAS=0")
}

// PAGE_TOKEN_KEY is given directly or through PAGE_TOKEN_KEY_FILE (its
// content trimmed), never both; the key is hidden on the startup line.
func TestLoadConfigPageTokenKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "page-key")
	const key = "page-token-key-from-a-file-0123"
	require.NoError(t, os.WriteFile(keyFile, []byte(key+"\n"), 0o600))
	load := func(extra map[string]string) (service.Config, error) {
		env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "STATE_DIRECTORY": t.TempDir(), "AUTH_HS256_SECRET": secret}
		for k, v := range extra {
			env[k] = v
		}
		return service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	cfg, err := load(map[string]string{service.EnvPageTokenKeyFile: keyFile})
	require.NoError(t, err)
	require.EqualValues(t, key, cfg.App.PageTokenKey)
	require.False(t, cfg.PageTokenKeyGenerated)
	line, err := json.Marshal(envconf.Redact(&cfg))
	require.NoError(t, err)
	require.NotContains(t, string(line), key)

	cfg, err = load(nil)
	require.NoError(t, err)
	require.True(t, cfg.PageTokenKeyGenerated, "no key: a random one")

	_, err = load(map[string]string{service.EnvPageTokenKey: key, service.EnvPageTokenKeyFile: keyFile})
	require.ErrorContains(t, err, "set PAGE_TOKEN_KEY or PAGE_TOKEN_KEY_FILE, not both")
	_, err = load(map[string]string{service.EnvPageTokenKeyFile: filepath.Join(dir, "missing")})
	require.ErrorContains(t, err, "PAGE_TOKEN_KEY_FILE: open ")
}

// The local backend's settings are parsed through their env tags: a value
// that does not parse is refused with its variable and value named.
func TestLoadConfigLocalParsedByTags(t *testing.T) {
	t.Parallel()
	for key, bad := range map[string]string{
		"LOCAL_JOB_UID_RANGE": "61000-x", "LOCAL_JOB_GID_RANGE": "0-9", "LOCAL_SINGLE_USER": "maybe",
		"LOCAL_JOB_MAX_OPEN_FILES": "-1", "LOCAL_JOB_MAX_FILE_SIZE_MB": "big", "LOCAL_JOB_DEFAULT_MEMORY_MB": "0",
	} {
		env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "STATE_DIRECTORY": t.TempDir(),
			"PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123", "AUTH_HS256_SECRET": secret, key: bad}
		_, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		require.ErrorContains(t, err, key+`="`+bad+`"`, "%s=%s", key, bad)
	}
	env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "STATE_DIRECTORY": t.TempDir(),
		"PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123", "AUTH_HS256_SECRET": secret,
		"LOCAL_JOB_UID_RANGE": " 70000 - 70009 ", "LOCAL_JOB_GID_RANGE": "  "}
	cfg, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	require.Equal(t, "70000-70009", cfg.Local.UIDs.String())
	require.Zero(t, cfg.Local.GIDs, "blank: the backend's default (the uid range)")
}

// ALLOCATIONS_FILE is read through its env tag: the error names the
// variable and the file, and says what the file must hold.
func TestLoadConfigAllocationsParsedByTag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"alice": "AST21001"}`), 0o600))
	for path, want := range map[string]string{
		bad:                                `ALLOCATIONS_FILE="` + bad + `": want a JSON object of user to list of allocations`,
		filepath.Join(dir, "missing.json"): `ALLOCATIONS_FILE="` + filepath.Join(dir, "missing.json") + `": open `,
	} {
		env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "STATE_DIRECTORY": t.TempDir(),
			"PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123", "AUTH_HS256_SECRET": secret, "ALLOCATIONS_FILE": " " + path + " "}
		_, err := service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		require.ErrorContains(t, err, want)
	}
}

// ORCHESTRATOR_FAULT is read through its env tag: a fault point and an
// event type, each checked.
func TestLoadConfigFault(t *testing.T) {
	t.Parallel()
	load := func(v string) (service.Config, error) {
		env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "STATE_DIRECTORY": t.TempDir(),
			"PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123", "AUTH_HS256_SECRET": secret, "ORCHESTRATOR_FAULT": v}
		return service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	cfg, err := load(" after-commit-before-publish:job.submitted ")
	require.NoError(t, err)
	require.Equal(t, service.FaultAfterCommitBeforePublish, cfg.Fault)
	require.Equal(t, "job.submitted", cfg.FaultEventType)
	cfg, err = load("  ")
	require.NoError(t, err)
	require.Empty(t, cfg.Fault, "blank: no fault")
	_, err = load("before-everything")
	require.ErrorContains(t, err, `ORCHESTRATOR_FAULT="before-everything": the only fault point is`)
	_, err = load("after-commit-before-publish:job.exploded")
	require.ErrorContains(t, err, `ORCHESTRATOR_FAULT: unknown event type "job.exploded"`)
}
