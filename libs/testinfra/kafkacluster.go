package testinfra

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// KafkaCluster is a KRaft cluster of combined broker+controller nodes on
// loopback ports of its own, started from the jars of the local stack
// (KAFKA_CLASSPATH), so that a test can SIGKILL and restart a broker
// without touching the shared one.
type KafkaCluster struct {
	t       testing.TB
	java    string
	nodes   []*kafkaNode
	ports   []int
	hosts   []string
	stopped bool
}

type kafkaNode struct {
	path    string
	args    []string
	logPath string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartKafkaCluster formats and starts n brokers (node ids 1..n) with
// replication n for the internal topics and min ISR min(2, n), waits until
// each listens, and stops them when t ends. Without KAFKA_CLASSPATH or java
// the test is skipped, or fails under CI.
func StartKafkaCluster(t testing.TB, n int) *KafkaCluster {
	t.Helper()
	return StartKafkaClusterWith(t, KafkaClusterOptions{Nodes: n})
}

// KafkaClusterOptions shapes the cluster StartKafkaClusterWith starts.
type KafkaClusterOptions struct {
	// Nodes is the broker count (node ids 1..Nodes).
	Nodes int
	// Dir holds each node's configuration, data and logs (kafka-<id>);
	// default t.TempDir().
	Dir string
	// Hosts, when set, is the address each node (by index) listens on and
	// advertises, for instance the addresses of a veth pair; default
	// 127.0.0.1 for every node.
	Hosts []string
	// Netns, when set, names for a node index the network namespace it
	// runs in (`ip netns exec`, root needed); its host must be an address
	// of that namespace.
	Netns map[int]string
}

// StartKafkaClusterWith is StartKafkaCluster with the nodes' directory,
// addresses and network namespaces chosen by opts.
func StartKafkaClusterWith(t testing.TB, opts KafkaClusterOptions) *KafkaCluster {
	t.Helper()
	n := opts.Nodes
	if n < 1 || (opts.Hosts != nil && len(opts.Hosts) != n) {
		t.Fatalf("kafka cluster: %d nodes with %d hosts", n, len(opts.Hosts))
	}
	classpath := os.Getenv("KAFKA_CLASSPATH")
	if classpath == "" {
		Unavailable(t, "KAFKA_CLASSPATH (the Kafka jars, from `tools/stack/stack.sh env`) is not set")
	}
	java, err := exec.LookPath("java")
	if err != nil {
		Unavailable(t, "java is needed for a Kafka cluster of the test's own: %v", err)
	}
	k := &KafkaCluster{t: t, java: java}
	ctrl := make([]int, n)
	var voters []string
	for i := range n {
		p, err := freePort()
		if err != nil {
			t.Fatalf("kafka cluster: %v", err)
		}
		c, err := freePort()
		if err != nil {
			t.Fatalf("kafka cluster: %v", err)
		}
		host := "127.0.0.1"
		if opts.Hosts != nil {
			host = opts.Hosts[i]
		}
		k.ports, k.hosts, ctrl[i] = append(k.ports, p), append(k.hosts, host), c
		voters = append(voters, fmt.Sprintf("%d@%s:%d", i+1, host, c))
	}
	idBytes := make([]byte, 16)
	_, _ = rand.Read(idBytes)
	clusterID := base64.RawURLEncoding.EncodeToString(idBytes)
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	minISR := min(2, n)
	for i := range n {
		node := filepath.Join(dir, fmt.Sprintf("kafka-%d", i+1))
		if err := os.MkdirAll(filepath.Join(node, "data"), 0o755); err != nil {
			t.Fatalf("kafka cluster: %v", err)
		}
		props := filepath.Join(node, "server.properties")
		conf := fmt.Sprintf(`process.roles=broker,controller
node.id=%d
controller.quorum.voters=%s
listeners=PLAINTEXT://%[8]s:%[3]d,CONTROLLER://%[8]s:%[4]d
advertised.listeners=PLAINTEXT://%[8]s:%[3]d
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=%[5]s
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=%[6]d
min.insync.replicas=%[7]d
offsets.topic.replication.factor=%[6]d
transaction.state.log.replication.factor=%[6]d
transaction.state.log.min.isr=%[7]d
share.coordinator.state.topic.replication.factor=%[6]d
share.coordinator.state.topic.min.isr=%[7]d
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
`, i+1, strings.Join(voters, ","), k.ports[i], ctrl[i], filepath.Join(node, "data"), n, minISR, k.hosts[i])
		log4j := filepath.Join(node, "log4j2.properties")
		logConf := fmt.Sprintf(`status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = %s
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%%d] %%p %%m (%%c)%%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
`, filepath.Join(node, "server.log"))
		if err := os.WriteFile(props, []byte(conf), 0o644); err != nil {
			t.Fatalf("kafka cluster: %v", err)
		}
		if err := os.WriteFile(log4j, []byte(logConf), 0o644); err != nil {
			t.Fatalf("kafka cluster: %v", err)
		}
		format := exec.Command(java, "-cp", classpath, "-Dlog4j2.configurationFile="+log4j,
			"kafka.tools.StorageTool", "format", "--cluster-id", clusterID, "--config", props, "--ignore-formatted")
		if out, err := format.CombinedOutput(); err != nil {
			t.Fatalf("kafka cluster: format node %d: %v: %s", i+1, err, out)
		}
		path, args := java, []string{"-Xmx512m", "-Xms128m", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
			"-Dlog4j2.configurationFile=" + log4j, "-cp", classpath, "kafka.Kafka", props}
		if ns := opts.Netns[i]; ns != "" {
			// ip netns exec execs java in the namespace: the pid is java's.
			path, args = "ip", append([]string{"netns", "exec", ns, java}, args...)
		}
		k.nodes = append(k.nodes, &kafkaNode{path: path, args: args, logPath: filepath.Join(node, "stdout.log")})
	}
	t.Cleanup(k.stop)
	for i := range n {
		k.start(i)
	}
	for i := range n {
		k.WaitListening(i, 3*time.Minute)
	}
	return k
}

// Brokers returns every broker's address, broker id i+1 at index i.
func (k *KafkaCluster) Brokers() []string {
	out := make([]string, len(k.ports))
	for i := range k.ports {
		out[i] = k.Addr(i)
	}
	return out
}

// Addr returns the address of the broker at index i (node id i+1).
func (k *KafkaCluster) Addr(i int) string { return fmt.Sprintf("%s:%d", k.hosts[i], k.ports[i]) }

// Bootstrap returns every broker's address, comma-separated.
func (k *KafkaCluster) Bootstrap() string { return strings.Join(k.Brokers(), ",") }

// LogPath returns the file the broker at index i writes its output to.
func (k *KafkaCluster) LogPath(i int) string { return k.nodes[i].logPath }

func (k *KafkaCluster) start(i int) {
	k.t.Helper()
	n := k.nodes[i]
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		k.t.Fatalf("kafka cluster: %v", err)
	}
	cmd := exec.Command(n.path, n.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		k.t.Fatalf("kafka cluster: start node %d: %v", i+1, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(exited)
	}()
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
}

// WaitListening waits until the broker at index i accepts connections; it
// fails the test when the broker exits first or within passes.
func (k *KafkaCluster) WaitListening(i int, within time.Duration) {
	k.t.Helper()
	n := k.nodes[i]
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			k.t.Fatalf("kafka cluster: node %d exited during startup; log %s", i+1, n.logPath)
		default:
		}
		if c, err := net.DialTimeout("tcp", k.Addr(i), 300*time.Millisecond); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	k.t.Fatalf("kafka cluster: node %d not listening after %s; log %s", i+1, within, n.logPath)
}

// Kill sends SIGKILL to the broker at index i and waits for it to exit.
func (k *KafkaCluster) Kill(i int) {
	n := k.nodes[i]
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// Restart starts the broker at index i again, with its data, and waits
// until it listens.
func (k *KafkaCluster) Restart(i int) {
	k.t.Helper()
	k.start(i)
	k.WaitListening(i, 3*time.Minute)
}

// stop ends every broker: SIGTERM, SIGKILL after 30 s.
func (k *KafkaCluster) stop() {
	if k.stopped {
		return
	}
	k.stopped = true
	var wg sync.WaitGroup
	for i, n := range k.nodes {
		n.mu.Lock()
		cmd, exited := n.cmd, n.exited
		n.mu.Unlock()
		if cmd == nil || cmd.Process == nil {
			continue
		}
		wg.Go(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				k.Kill(i)
			}
		})
	}
	wg.Wait()
}
