package amqpbus_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

const waitLong = 60 * time.Second

// amqpURL returns the address of the real broker: AMQP_URL or a container.
func amqpURL(t testing.TB) string {
	t.Helper()
	return testinfra.AMQPURL(t)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func randomSuffix(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

// uniqueName returns a queue or id name unique to this test run.
func uniqueName(t testing.TB, prefix string) string {
	return "test." + prefix + "." + randomSuffix(t)
}

// dial opens a managed connection closed at the end of the test.
func dial(t testing.TB, mutate func(*amqpbus.Config), reg prometheus.Registerer) *amqpbus.Conn {
	t.Helper()
	cfg := amqpbus.DefaultConfig(amqpURL(t))
	cfg.ConnectionName = "amqpbus-test-" + t.Name()
	cfg.ReconnectInitial = 50 * time.Millisecond
	cfg.ReconnectMax = 500 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	conn, err := amqpbus.Dial(ctx, cfg, testLogger(t), reg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, conn.Close()) })
	return conn
}

// rawChannel opens a plain amqp091 channel for inspecting the broker.
func rawChannel(t testing.TB) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(amqpURL(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return ch
}

// declareQueue declares spec on conn and deletes the queue at the end of the test.
func declareQueue(t testing.TB, conn *amqpbus.Conn, spec amqpbus.QueueSpec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.NoError(t, conn.DeclareQueue(ctx, spec))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		require.NoError(t, conn.DeleteQueue(ctx, spec.Name))
	})
}

// drain consumes every message currently in queue.
func drain(t testing.TB, ch *amqp.Channel, queue string) []amqp.Delivery {
	t.Helper()
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	require.NoError(t, err)
	if q.Messages == 0 {
		return nil
	}
	tag := "drain-" + randomSuffix(t)
	deliveries, err := ch.Consume(queue, tag, true, false, false, false, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, ch.Cancel(tag, false)) }()
	out := make([]amqp.Delivery, 0, q.Messages)
	timeout := time.After(waitLong)
	for len(out) < q.Messages {
		select {
		case d := <-deliveries:
			out = append(out, d)
		case <-timeout:
			t.Fatalf("drained %d of %d messages from %s", len(out), q.Messages, queue)
		}
	}
	return out
}

// runConsumer runs c until the end of the test and checks that Run returned nil.
func runConsumer(t testing.TB, c *amqpbus.Consumer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// rabbitmqctl runs rabbitmqctl on the broker's host. It needs the broker to
// be local (AMQP_URL set) and rabbitmqctl on PATH.
func rabbitmqctl(t testing.TB, args ...string) string {
	t.Helper()
	amqpURL(t)
	path, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		testinfra.Unavailable(t, "rabbitmqctl is not on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	require.NoError(t, cmd.Run(), "rabbitmqctl %s: %s", strings.Join(args, " "), out.String())
	return out.String()
}

// requireRabbitmqctl skips (fails under CI) when rabbitmqctl is missing.
func requireRabbitmqctl(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		testinfra.Unavailable(t, "rabbitmqctl is not on PATH: %v", err)
	}
}

// closeConnection makes the broker close the connection whose client side
// address is local, as an operator's `rabbitmqctl close_connection` would.
func closeConnection(t testing.TB, local net.Addr) {
	t.Helper()
	require.NotNil(t, local)
	_, port, err := net.SplitHostPort(local.String())
	require.NoError(t, err)
	out := rabbitmqctl(t, "list_connections", "pid", "peer_port", "-q", "-s")
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[1] == port {
			rabbitmqctl(t, "close_connection", fields[0], "test")
			return
		}
	}
	t.Fatalf("no broker connection with peer port %s in:\n%s", port, out)
}

// metricValue sums the counters or gauges of reg named name.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
		return sum
	}
	return 0
}

func id(i int) string { return "m-" + strconv.Itoa(i) }
