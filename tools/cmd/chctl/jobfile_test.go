package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
	return p
}

func TestSweepExpansion(t *testing.T) {
	t.Parallel()
	f, err := loadJobFile("../../../docs/examples/sweep.yaml")
	require.NoError(t, err)
	jobs, err := f.plan("unused")
	require.NoError(t, err)
	require.Len(t, jobs, 6, "lr x seed")

	var points, names []string
	keys := map[string]bool{}
	for _, j := range jobs {
		points = append(points, j.point)
		names = append(names, j.spec.GetName())
		keys[j.key] = true
		require.Regexp(t, `^sweep:lr-seed:[0-9a-f]{24}$`, j.key)
		require.Equal(t, []string{"training", "sweep:lr-seed"}, j.spec.GetTags())
		lr, seed, _ := strings.Cut(strings.TrimPrefix(j.point, "lr="), " seed=")
		require.Equal(t, map[string]string{"LEARNING_RATE": lr, "SEED": seed}, j.spec.GetEnvironment())
		require.Contains(t, j.spec.GetScript(), "echo \"training with learning rate "+lr+" and seed "+seed+"\"")
		require.Equal(t, jobpb.Agent_AGENT_CUSTOM, j.spec.GetAgent())
		require.Equal(t, 10*time.Minute, j.spec.GetResources().GetWalltime().AsDuration())
	}
	require.Equal(t, []string{"lr=0.1 seed=1", "lr=0.1 seed=2", "lr=0.1 seed=3", "lr=0.01 seed=1", "lr=0.01 seed=2", "lr=0.01 seed=3"}, points)
	require.Equal(t, "train-lr0.1-seed1", names[0])
	require.Len(t, keys, 6, "one key per point")

	again, err := f.plan("other")
	require.NoError(t, err)
	for i := range jobs {
		require.Equal(t, jobs[i].key, again[i].key, "keys are stable across runs")
	}
	renamed := *f
	renamed.Sweep = &jobFileSweep{Name: "lr-seed-2", Parameters: f.Sweep.Parameters}
	other, err := renamed.plan("")
	require.NoError(t, err)
	require.NotEqual(t, jobs[0].key, other[0].key, "another sweep name, other keys")
	require.Equal(t, "sweep:lr-seed-2", other[0].spec.GetTags()[1])
}

func TestSingleJobFile(t *testing.T) {
	t.Parallel()
	f, err := loadJobFile("../../../docs/examples/job.yaml")
	require.NoError(t, err)
	jobs, err := f.plan("default-key")
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	require.Equal(t, "calibrate-vlass-2026-12-07", jobs[0].key, "the file's key")
	require.Equal(t, "calibrate-vlass", jobs[0].spec.GetName())
	require.Equal(t, jobpb.TaccSystem_TACC_SYSTEM_FRONTERA, jobs[0].spec.GetTaccSystem())

	// JSON is YAML; a script_file is read relative to the job file.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho {{.x}}\n"), 0o600))
	p := filepath.Join(dir, "job.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"name": "j", "agent": "custom", "system": "vista", "partition": "gg",
		"script_file": "run.sh", "resources": {"walltime": "5m"}}`), 0o600))
	f, err = loadJobFile(p)
	require.NoError(t, err)
	jobs, err = f.plan("default-key")
	require.NoError(t, err)
	require.Equal(t, "default-key", jobs[0].key)
	require.Equal(t, "#!/bin/sh\necho {{.x}}\n", jobs[0].spec.GetScript(), "no substitution outside a sweep")
	require.Equal(t, int32(1), jobs[0].spec.GetResources().GetCoresPerNode())
}

// Values are used as the file writes them: "n", "yes" and "0.10" are not
// turned into booleans or numbers.
func TestJobFileKeepsScalarsAsWritten(t *testing.T) {
	t.Parallel()
	f, err := loadJobFile(writeFile(t, "job.yaml", "name: n\nagent: custom\nsystem: frontera\npartition: development\n"+
		"command: run {{.flag}} {{.lr}}\nenvironment: {A: 010}\nsweep: {name: s, parameters: {flag: [yes, off], lr: [0.10]}}\n"))
	require.NoError(t, err)
	jobs, err := f.plan("k")
	require.NoError(t, err)
	require.Len(t, jobs, 2)
	require.Equal(t, "n", jobs[0].spec.GetName())
	require.Equal(t, "run yes 0.10", jobs[0].spec.GetCommand())
	require.Equal(t, "run off 0.10", jobs[1].spec.GetCommand())
	require.Equal(t, "010", jobs[0].spec.GetEnvironment()["A"])
}

func TestJobFileErrors(t *testing.T) {
	t.Parallel()
	const base = "name: n\nagent: custom\nsystem: frontera\npartition: development\ncommand: echo {{.a}}\n"
	tests := []struct {
		name, text, wantErr string
	}{
		{name: "unknown field", text: base + "walltime: 1h\n", wantErr: "field walltime not found"},
		{name: "duplicate key", text: base + "name: m\n", wantErr: "duplicate"},
		{name: "not yaml", text: "name: [\n", wantErr: "yaml"},
		{name: "bad walltime", text: base + "resources: {walltime: soon}\n", wantErr: "resources.walltime"},
		{name: "unknown agent", text: strings.Replace(base, "custom", "wizard", 1), wantErr: `unknown agent "wizard"`},
		{name: "sweep without name", text: base + "sweep: {parameters: {a: [1]}}\n", wantErr: "sweep.name"},
		{name: "sweep name with a space", text: base + "sweep: {name: 'a b', parameters: {a: [1]}}\n", wantErr: "sweep.name"},
		{name: "sweep without parameters", text: base + "sweep: {name: s}\n", wantErr: "sweep.parameters"},
		{name: "empty value list", text: base + "sweep: {name: s, parameters: {a: []}}\n", wantErr: "at least one value"},
		{name: "value not a scalar", text: base + "sweep: {name: s, parameters: {a: [[1, 2]]}}\n", wantErr: "sweep.parameters.a[0]"},
		{name: "duplicate value", text: base + "sweep: {name: s, parameters: {a: [1, 1]}}\n", wantErr: "duplicate value"},
		{name: "parameter name", text: base + "sweep: {name: s, parameters: {a-b: [1]}}\n", wantErr: "sweep.parameters.a-b"},
		{name: "unknown parameter in the template", text: strings.Replace(base, "{{.a}}", "{{.b}}", 1) + "sweep: {name: s, parameters: {a: [1]}}\n", wantErr: "command"},
		{name: "idempotency key on a sweep", text: base + "idempotency_key: k\nsweep: {name: s, parameters: {a: [1]}}\n", wantErr: "idempotency_key"},
		{name: "too many points", text: base + "sweep: {name: s, parameters: {a: [" + seq(40) + "], b: [" + seq(40) + "]}}\n", wantErr: "more than 1000 jobs"},
		{name: "script and command", text: base + "script: \"#!/bin/sh\\n\"\n", wantErr: "one of script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := loadJobFile(writeFile(t, "job.yaml", tt.text))
			if err == nil {
				_, err = f.plan("k")
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// seq is "1, 2, ..., n".
func seq(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, strconv.Itoa(i+1))
	}
	return strings.Join(parts, ", ")
}

func TestSubmitFileUsageErrors(t *testing.T) {
	t.Parallel()
	sweep := "../../../docs/examples/sweep.yaml"
	_, err := chctl(t, "jobs", "submit", "-f", sweep, "-name", "x", "-token", "t")
	require.ErrorContains(t, err, "-name and -f")
	var usage usageError
	require.ErrorAs(t, err, &usage)
	_, err = chctl(t, "jobs", "submit", "-f", "/no/such/file.yaml", "-token", "t")
	require.ErrorContains(t, err, "no such file")

	out, err := chctl(t, "jobs", "submit", "-f", sweep, "-dry-run", "-token", "t")
	require.NoError(t, err, out)
	require.Len(t, regexp.MustCompile(`(?m)^would submit train-lr`).FindAllString(out, -1), 6)
	require.Contains(t, out, "lr=0.01 seed=3")
	_, err = chctl(t, "jobs", "history", "-token", "t")
	require.ErrorContains(t, err, "exactly one job id")
	_, err = chctl(t, "jobs", "resubmit", "-walltime", "2h", "-token", "t")
	require.ErrorContains(t, err, "exactly one job id")
}
