// Package servicetest runs a service's real binary in a test: it builds the
// main package, starts it on free loopback ports, waits until it is ready,
// and checks that SIGTERM shuts it down cleanly.
package servicetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Defaults applied to the environment of the process unless env overrides them.
const (
	DefaultShutdownDrain   = "200ms"
	DefaultShutdownTimeout = "10s"
	// StartTimeout bounds the wait for the process to serve and be ready.
	StartTimeout = 60 * time.Second
)

// Process is a running service binary.
type Process struct {
	// GRPCAddr and HTTPAddr are the addresses the process bound, read from
	// its "serving" log line.
	GRPCAddr string
	HTTPAddr string
	// ShutdownTimeout is the SHUTDOWN_TIMEOUT the process was given.
	ShutdownTimeout time.Duration

	cmd    *exec.Cmd
	out    *logWriter
	exited chan struct{}
	err    error // valid after exited is closed
}

// Build compiles the main package in pkgDir into a temporary directory and
// returns the binary's path.
func Build(t testing.TB, pkgDir string) string {
	t.Helper()
	dir, err := filepath.Abs(pkgDir)
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), filepath.Base(dir))
	cmd := exec.Command(goTool(), "build", "-o", bin, ".")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %s:\n%s", dir, out)
	return bin
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// RunBinary builds the main package in pkgDir, starts it with GRPC_ADDR and
// HTTP_ADDR on free loopback ports, a short SHUTDOWN_DRAIN and LOG_LEVEL
// debug (env entries override these and the inherited environment), and
// waits until /readyz answers 200 and the gRPC health check is SERVING.
// The process is killed at the end of the test if it still runs.
func RunBinary(t testing.TB, pkgDir string, env map[string]string) *Process {
	t.Helper()
	return RunBuilt(t, Build(t, pkgDir), env)
}

// RunBuilt is RunBinary with a binary made by Build, for a test that starts
// the same service more than once.
func RunBuilt(t testing.TB, bin string, env map[string]string) *Process {
	t.Helper()
	vars := map[string]string{
		"GRPC_ADDR":        "127.0.0.1:0",
		"HTTP_ADDR":        "127.0.0.1:0",
		"SHUTDOWN_DRAIN":   DefaultShutdownDrain,
		"SHUTDOWN_TIMEOUT": DefaultShutdownTimeout,
		"LOG_LEVEL":        "debug",
	}
	for k, v := range env {
		vars[k] = v
	}
	timeout, err := time.ParseDuration(vars["SHUTDOWN_TIMEOUT"])
	require.NoError(t, err, "SHUTDOWN_TIMEOUT")

	p := &Process{
		ShutdownTimeout: timeout,
		out:             newLogWriter(),
		exited:          make(chan struct{}),
	}
	p.cmd = exec.Command(bin)
	p.cmd.Env = mergeEnv(os.Environ(), vars)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(bin), p.Output())
		}
	})

	select {
	case addrs := <-p.out.serving:
		p.GRPCAddr, p.HTTPAddr = addrs[0], addrs[1]
	case <-p.exited:
		require.FailNow(t, "process exited before serving", "error: %v\noutput:\n%s", p.err, p.Output())
	case <-time.After(StartTimeout):
		require.FailNow(t, "process did not log its serving addresses", "output:\n%s", p.Output())
	}

	require.Eventually(t, func() bool { return p.ready() }, StartTimeout, 20*time.Millisecond,
		"/readyz did not answer 200")
	require.Eventually(t, func() bool {
		st, err := p.HealthStatus(context.Background(), "")
		return err == nil && st == healthpb.HealthCheckResponse_SERVING
	}, StartTimeout, 20*time.Millisecond, "gRPC health did not report SERVING")
	return p
}

// Output returns everything the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

func (p *Process) ready() bool {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.HTTPAddr + "/readyz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// HealthStatus asks the process's grpc.health.v1 server about svc ("" for
// the whole server).
func (p *Process) HealthStatus(ctx context.Context, svc string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, err
	}
	return resp.GetStatus(), nil
}

// Terminate sends SIGTERM and requires the process to exit with status 0
// within its SHUTDOWN_TIMEOUT.
func (p *Process) Terminate(t testing.TB) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
		require.NoError(t, p.err, "exit status after SIGTERM; output:\n%s", p.Output())
		require.Equal(t, 0, p.cmd.ProcessState.ExitCode())
	case <-time.After(p.ShutdownTimeout):
		require.FailNow(t, "process did not exit within SHUTDOWN_TIMEOUT after SIGTERM", "timeout %s; output:\n%s", p.ShutdownTimeout, p.Output())
	}
}

// RequireLifecycle is the standard check of a service binary: it starts,
// becomes ready and SERVING, and exits 0 on SIGTERM within SHUTDOWN_TIMEOUT
// after logging the shutdown steps.
func RequireLifecycle(t testing.TB, pkgDir string, env map[string]string) *Process {
	t.Helper()
	p := RunBinary(t, pkgDir, env)
	p.Terminate(t)
	for _, msg := range []string{"shutdown requested", "gRPC server stopped", "shutdown complete"} {
		require.Contains(t, p.Output(), fmt.Sprintf("%q", msg), "log step missing")
	}
	return p
}

func mergeEnv(base []string, vars map[string]string) []string {
	out := make([]string, 0, len(base)+len(vars))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := vars[k]; !ok {
			out = append(out, kv)
		}
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// logWriter keeps the process output and reports the addresses in the
// runtime's "serving" log line once.
type logWriter struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	found   bool
	serving chan [2]string
}

func newLogWriter() *logWriter {
	return &logWriter{serving: make(chan [2]string, 1)}
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	if w.found {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := w.partial[:i]
		w.partial = w.partial[i+1:]
		var rec struct {
			Msg      string `json:"msg"`
			GRPCAddr string `json:"grpc_addr"`
			HTTPAddr string `json:"http_addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving" && rec.GRPCAddr != "" && rec.HTTPAddr != "" {
			w.found = true
			w.partial = nil
			w.serving <- [2]string{rec.GRPCAddr, rec.HTTPAddr}
			break
		}
	}
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// StateDir returns a new, not yet created state directory for a service
// whose local scheduler isolates jobs: it lies below a directory that other
// users (the jobs' own uids) can search, which t.TempDir's parent is not.
// It is removed when t ends.
func StateDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(testinfra.DirFor(t, testinfra.Searchable), "state")
}
