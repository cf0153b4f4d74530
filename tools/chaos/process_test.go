//go:build chaos

package chaos_test

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// proc is one process of the run (a service or RabbitMQ) that the run can
// SIGKILL and start again with the same command, ports and data.
type proc struct {
	name    string
	path    string
	args    []string
	env     []string
	logPath string
	// ready reports whether the process serves; nil: it serves when started.
	ready func() bool
	// cred, when set, runs the process as that user.
	cred *syscall.Credential

	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	fmt.Fprintf(f, "\n==== start %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	p.cmd = exec.Command(p.path, p.args...)
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	require.NoError(t, p.cmd.Start(), "start %s", p.name)
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}(p.cmd, p.exited)
}

// waitReady waits until p's ready check passes; it fails the test if p
// exits first or within does not suffice.
func (p *proc) waitReady(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		select {
		case <-p.exited:
			require.FailNow(t, p.name+" exited during startup", "log %s", p.logPath)
		default:
		}
		if p.ready == nil || p.ready() {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.FailNow(t, p.name+" not ready", "after %s; log %s", within, p.logPath)
	return 0
}

// kill sends SIGKILL to p's process group and waits for it to exit.
func (p *proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM and falls back to SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.kill()
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func portOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func httpReady(addr string) func() bool {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return func() bool {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// kafkaCluster is the run's KRaft cluster of combined broker+controller
// nodes (testinfra's, on ports of its own, so that it never touches the
// shared broker) and, when it has one, the network namespace of its last
// broker.
type kafkaCluster struct {
	*testinfra.KafkaCluster
	net *partitionNet
}

// partitionNet is a network namespace joined to the host by a veth pair:
// the host side has hostIP, the namespace side nsIP (a /30). Cutting the
// host side's link partitions whatever listens on nsIP from everything
// else.
type partitionNet struct {
	ns, hostIf, nsIf string
	hostIP, nsIP     string
}

// newPartitionNet creates the namespace and the link, or returns nil with
// the reason when this machine cannot (not root, no ip command).
func newPartitionNet(t *testing.T) (*partitionNet, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, "not root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, "no ip command"
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	tag := fmt.Sprintf("%02x%02x", b[0], b[1])
	n := &partitionNet{ns: "fleetchaos-" + tag, hostIf: "fch" + tag, nsIf: "fcn" + tag,
		hostIP: fmt.Sprintf("10.231.%d.1", b[0]), nsIP: fmt.Sprintf("10.231.%d.2", b[0])}
	steps := [][]string{
		{"netns", "add", n.ns},
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf},
		{"link", "set", n.nsIf, "netns", n.ns},
		{"addr", "add", n.hostIP + "/30", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.ns, "addr", "add", n.nsIP + "/30", "dev", n.nsIf},
		{"-n", n.ns, "link", "set", n.nsIf, "up"},
		{"-n", n.ns, "link", "set", "lo", "up"},
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", n.hostIf).Run()
		_ = exec.Command("ip", "netns", "del", n.ns).Run()
	})
	for _, st := range steps {
		if out, err := exec.Command("ip", st...).CombinedOutput(); err != nil {
			return nil, fmt.Sprintf("ip %s: %v: %s", strings.Join(st, " "), err, out)
		}
	}
	return n, ""
}

// cut takes the link down (up=false) or brings it back.
func (n *partitionNet) cut(t *testing.T, down bool) {
	t.Helper()
	state := "up"
	if down {
		state = "down"
	}
	out, err := exec.Command("ip", "link", "set", n.hostIf, state).CombinedOutput()
	require.NoError(t, err, "ip link set %s %s: %s", n.hostIf, state, out)
}

// startKafka starts n brokers from the stack's jars (KAFKA_CLASSPATH) with
// their data in dir.
//
// With pn, the brokers listen on the veth addresses instead of loopback:
// the last one inside the namespace, the others on the host side, so that
// cutting the link partitions the last broker from the rest and from the
// clients.
func startKafka(t *testing.T, dir string, n int, pn *partitionNet) *kafkaCluster {
	t.Helper()
	opts := testinfra.KafkaClusterOptions{Nodes: n, Dir: dir}
	if pn != nil {
		opts.Hosts = make([]string, n)
		for i := range opts.Hosts {
			opts.Hosts[i] = pn.hostIP
		}
		opts.Hosts[n-1] = pn.nsIP
		opts.Netns = map[int]string{n - 1: pn.ns}
	}
	return &kafkaCluster{KafkaCluster: testinfra.StartKafkaClusterWith(t, opts), net: pn}
}
