package testinfra_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// TestKafkaClusterOptions starts one broker in a directory of the test's
// choosing on a loopback address other than 127.0.0.1, and kills and
// restarts it.
func TestKafkaClusterOptions(t *testing.T) {
	dir := t.TempDir()
	k := testinfra.StartKafkaClusterWith(t, testinfra.KafkaClusterOptions{Nodes: 1, Dir: dir, Hosts: []string{"127.0.0.2"}})
	addr := k.Addr(0)
	if !strings.HasPrefix(addr, "127.0.0.2:") || k.Bootstrap() != addr {
		t.Fatalf("address %q, bootstrap %q: want the broker on 127.0.0.2", addr, k.Bootstrap())
	}
	props, err := os.ReadFile(filepath.Join(dir, "kafka-1", "server.properties"))
	if err != nil {
		t.Fatalf("the node's configuration is not in the chosen directory: %v", err)
	}
	if !strings.Contains(string(props), "advertised.listeners=PLAINTEXT://"+addr+"\n") {
		t.Fatalf("the broker does not advertise %s:\n%s", addr, props)
	}
	if !listening(addr) {
		t.Fatalf("nothing listens on %s", addr)
	}
	if _, port, _ := net.SplitHostPort(addr); listening("127.0.0.1:" + port) {
		t.Fatalf("the broker listens on 127.0.0.1:%s too, not only on its host", port)
	}
	k.Kill(0)
	if listening(addr) {
		t.Fatalf("%s still listens after the kill", addr)
	}
	k.Restart(0)
	if !listening(addr) {
		t.Fatalf("%s does not listen after the restart", addr)
	}
	if _, err := os.Stat(k.LogPath(0)); err != nil {
		t.Fatalf("log: %v", err)
	}
}
