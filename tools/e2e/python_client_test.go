package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// pythonClientDir is the Python client package (tools/python-client).
const pythonClientDir = "../python-client"

// TestPythonClient installs the Python client package with pip from the
// checkout, starts a real job orchestrator (local scheduler, SQLite, the
// stack's Kafka and RabbitMQ) and runs the package's pytest suite against it
// as two users. tools/python-client/setup.sh provides the Python environment
// (FLEET_CLIENT_PYTHON).
func TestPythonClient(t *testing.T) {
	py := pythonClient(t, nil, map[string]string{"FLEET_CLIENT_TEST_PARTITION": "development"})
	pytest := py.pytest
	// The calls of the first JobService version, and the client's own checks
	// (arguments, download verification, TLS settings).
	t.Run("jobs", func(t *testing.T) { pytest(t, "tests/test_unit.py", "tests/test_tls.py", "tests/test_jobs.py") })
	// Output, outputs, history, resubmission and tag filters (issue 17).
	t.Run("outputs history resubmit", func(t *testing.T) { pytest(t, "tests/test_outputs_history.py") })
	// A researcher's journey: sweep, live output, a timeout's reason,
	// resubmission with more walltime, download.
	t.Run("journey", func(t *testing.T) { pytest(t, "tests/test_journey.py") })
	// The README's example, as a researcher would paste it: it follows
	// the job's output live and prints its final status.
	t.Run("readme example", func(t *testing.T) {
		example := readmePythonExample(t)
		cmd := exec.CommandContext(py.ctx, py.python, "-c", example)
		cmd.Dir = py.work
		cmd.Env = py.env
		out, err := cmd.CombinedOutput()
		t.Logf("README example:\n%s\noutput:\n%s", example, out)
		require.NoError(t, err)
		require.Equal(t, "calibrated\nCOMPLETED\n", string(out))
	})
}

// TestSlurmPythonClient runs the client's journey test against an
// orchestrator on the stack's Slurm 24.11 cluster: the long point exceeds
// its one-minute time limit (Slurm's TIMEOUT) and completes when resubmitted
// with three minutes.
func TestSlurmPythonClient(t *testing.T) {
	py := pythonClient(t, slurmOrchestratorEnv(t), map[string]string{
		"FLEET_CLIENT_TEST_PARTITION":     "normal",
		"FLEET_CLIENT_TEST_WALLTIME":      "60",
		"FLEET_CLIENT_TEST_LONG_WORK":     "100",
		"FLEET_CLIENT_TEST_MORE_WALLTIME": "180",
		"FLEET_CLIENT_TEST_JOURNEY_WAIT":  "240",
	})
	py.pytest(t, "tests/test_journey.py")
}

// pyClient is the installed client of a test and the orchestrator it talks to.
type pyClient struct {
	work, python string
	// env is the environment of the client's processes.
	env []string
	// ctx bounds every process of the test.
	ctx context.Context
	// pytest runs test files of the package's suite; they must pass.
	pytest func(t *testing.T, files ...string)
}

// pythonClient installs the client into a directory of the test and starts
// an orchestrator (its environment plus orchEnv) for the suite, whose
// environment gets clientEnv.
func pythonClient(t *testing.T, orchEnv, clientEnv map[string]string) pyClient {
	t.Helper()
	python := os.Getenv("FLEET_CLIENT_PYTHON")
	if python == "" {
		testinfra.Unavailable(t, "the Python environment of tools/python-client (eval \"$(tools/python-client/setup.sh)\"); unset FLEET_CLIENT_PYTHON")
	}
	s := requireStack(t)

	// pip builds in the source tree: build from a copy, so that the
	// checkout stays clean and concurrent runs do not meet.
	src, err := filepath.Abs(pythonClientDir)
	require.NoError(t, err)
	work := t.TempDir()
	pkg := filepath.Join(work, "python-client")
	require.NoError(t, os.CopyFS(pkg, os.DirFS(src)))
	site := filepath.Join(work, "site")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	pip := exec.CommandContext(ctx, python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
		"--no-deps", "--no-build-isolation", "--target", site, pkg)
	out, err := pip.CombinedOutput()
	require.NoError(t, err, "pip install %s:\n%s", pkg, out)

	prefix := kafkabustest.Prefix(t, strings.Split(s.kafka, ","), "py-")
	orch := runOrchestratorWith(t, s, prefix, orchEnv)
	user, other := newUser(t), newUser(t)
	env := append(os.Environ(),
		"PYTHONPATH="+site,
		"PYTHONDONTWRITEBYTECODE=1",
		"FLEET_JOB_ADDR="+orch,
		"FLEET_TOKEN="+user.token,
		"FLEET_CLIENT_TEST_USER="+user.id,
		"FLEET_CLIENT_TEST_OTHER_TOKEN="+other.token,
		"FLEET_CLIENT_TEST_SYSTEM=frontera",
	)
	for k, v := range clientEnv {
		env = append(env, k+"="+v)
	}
	pytest := func(t *testing.T, files ...string) {
		args := append([]string{"-m", "pytest", "-v", "-rA", "-p", "no:cacheprovider"}, files...)
		cmd := exec.CommandContext(ctx, python, args...)
		cmd.Dir = pkg
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		t.Logf("pytest %s:\n%s", strings.Join(files, " "), out)
		require.NoError(t, err, "pytest failed")
	}
	return pyClient{work: work, python: python, env: env, ctx: ctx, pytest: pytest}
}

// readmePythonExample returns the Python code block of the README's
// section on the Python client.
func readmePythonExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(b), "\n### Python\n")
	require.True(t, ok, "README.md has no section \"### Python\"")
	_, code, ok := strings.Cut(section, "```python\n")
	require.True(t, ok, "the README's Python section has no python code block")
	code, _, ok = strings.Cut(code, "```")
	require.True(t, ok, "the README's python code block does not end")
	return code
}

// runOrchestrator starts a job orchestrator with the local scheduler and a
// SQLite database, its topics prefixed with prefix, and returns its gRPC
// address.
func runOrchestrator(t *testing.T, s stackEnv, prefix string) string {
	t.Helper()
	return runOrchestratorWith(t, s, prefix, nil)
}
