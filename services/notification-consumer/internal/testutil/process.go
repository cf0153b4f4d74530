package testutil

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Proc is a service binary started by a test, which may kill it.
type Proc struct {
	GRPCAddr string
	HTTPAddr string

	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	exited chan struct{}
}

type lockedWriter struct{ p *Proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Output returns what the process wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// StartBinary runs bin with the test's environment plus env on free
// loopback ports and waits until /readyz answers 200.
func StartBinary(t testing.TB, bin string, env map[string]string) *Proc {
	t.Helper()
	p := &Proc{GRPCAddr: freeAddr(t), HTTPAddr: freeAddr(t), exited: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(os.Environ(), "GRPC_ADDR="+p.GRPCAddr, "HTTP_ADDR="+p.HTTPAddr, "SHUTDOWN_DRAIN=100ms", "LOG_LEVEL=info")
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	require.NoError(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("service output:\n%s", p.Output())
		}
	})
	client := &http.Client{Timeout: time.Second}
	require.Eventually(t, func() bool {
		select {
		case <-p.exited:
			return false
		default:
		}
		resp, err := client.Get("http://" + p.HTTPAddr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "service did not become ready; output:\n%s", p.Output())
	return p
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Terminate sends SIGTERM and requires an exit within timeout.
func (p *Proc) Terminate(t testing.TB, timeout time.Duration) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
		require.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "output:\n%s", p.Output())
	case <-time.After(timeout):
		t.Fatalf("service did not exit within %s after SIGTERM", timeout)
	}
}
