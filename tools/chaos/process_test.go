//go:build chaos

package chaos_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// proc is one process of the run (a broker or a service) that the run can
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

// kafkaCluster is a KRaft cluster of three combined broker+controller
// nodes on ports of its own, so that it never touches the shared broker.
type kafkaCluster struct {
	brokers []*proc
	ports   []int
	hosts   []string // each broker's address
	// net, when set, puts the last broker in a network namespace of its own.
	net *partitionNet
}

func (k *kafkaCluster) addr(i int) string { return fmt.Sprintf("%s:%d", k.hosts[i], k.ports[i]) }

func (k *kafkaCluster) bootstrap() string {
	var addrs []string
	for i := range k.ports {
		addrs = append(addrs, k.addr(i))
	}
	return strings.Join(addrs, ",")
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

// startKafka formats and starts n brokers from the jars on classpath (the
// stack's KAFKA_CLASSPATH) in dir.
//
// With pn, the brokers listen on the veth addresses instead of loopback:
// the last one inside the namespace, the others on the host side, so that
// cutting the link partitions the last broker from the rest and from the
// clients.
func startKafka(t *testing.T, ctx context.Context, classpath, dir string, n int, pn *partitionNet) *kafkaCluster {
	t.Helper()
	java, err := exec.LookPath("java")
	require.NoError(t, err, "java is needed for the chaos Kafka cluster")
	k := &kafkaCluster{net: pn}
	ctrl := make([]int, n)
	var voters []string
	for i := 0; i < n; i++ {
		k.ports = append(k.ports, freePort(t))
		ctrl[i] = freePort(t)
		host := "127.0.0.1"
		if pn != nil {
			host = pn.hostIP
			if i == n-1 {
				host = pn.nsIP
			}
		}
		k.hosts = append(k.hosts, host)
		voters = append(voters, fmt.Sprintf("%d@%s:%d", i+1, host, ctrl[i]))
	}
	idBytes := make([]byte, 16)
	_, _ = rand.Read(idBytes)
	clusterID := base64.RawURLEncoding.EncodeToString(idBytes)
	for i := 0; i < n; i++ {
		node := filepath.Join(dir, fmt.Sprintf("kafka-%d", i))
		require.NoError(t, os.MkdirAll(filepath.Join(node, "data"), 0o755))
		props := filepath.Join(node, "server.properties")
		require.NoError(t, os.WriteFile(props, []byte(fmt.Sprintf(`process.roles=broker,controller
node.id=%d
controller.quorum.voters=%s
listeners=PLAINTEXT://%[7]s:%[3]d,CONTROLLER://%[7]s:%[4]d
advertised.listeners=PLAINTEXT://%[7]s:%[5]d
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=%s
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
`, i+1, strings.Join(voters, ","), k.ports[i], ctrl[i], k.ports[i], filepath.Join(node, "data"), k.hosts[i])), 0o644))
		log4j := filepath.Join(node, "log4j2.properties")
		require.NoError(t, os.WriteFile(log4j, []byte(fmt.Sprintf(`status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = %s
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%%d] %%p %%m (%%c)%%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
`, filepath.Join(node, "server.log"))), 0o644))
		format := exec.CommandContext(ctx, java, "-cp", classpath, "-Dlog4j2.configurationFile="+log4j,
			"kafka.tools.StorageTool", "format", "--cluster-id", clusterID, "--config", props, "--ignore-formatted")
		out, err := format.CombinedOutput()
		require.NoError(t, err, "format broker %d: %s", i, out)
		addr := k.addr(i)
		path, args := java, []string{"-Xmx512m", "-Xms128m", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
			"-Dlog4j2.configurationFile=" + log4j, "-cp", classpath, "kafka.Kafka", props}
		if pn != nil && i == n-1 {
			// ip netns exec execs java in the namespace: the pid is java's.
			path, args = "ip", append([]string{"netns", "exec", pn.ns, java}, args...)
		}
		k.brokers = append(k.brokers, &proc{
			name: fmt.Sprintf("kafka-%d", i), path: path, args: args,
			env:     os.Environ(),
			logPath: filepath.Join(node, "stdout.log"),
			ready:   func() bool { return portOpen(addr) },
		})
	}
	for _, b := range k.brokers {
		b.start(t)
	}
	t.Cleanup(func() {
		for _, b := range k.brokers {
			b.stop(30 * time.Second)
		}
	})
	for _, b := range k.brokers {
		b.waitReady(t, 3*time.Minute)
	}
	return k
}
