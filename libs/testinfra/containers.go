package testinfra

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Images started when no broker address is given and Docker is available.
const (
	KafkaImage    = "apache/kafka:4.1.0"
	RabbitMQImage = "rabbitmq:3.13-management"
)

// KafkaBrokers returns the bootstrap addresses of a real Kafka: KAFKA_BROKERS,
// else a container started once per test binary, else the test is skipped
// (failed under CI).
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	if v := os.Getenv("KAFKA_BROKERS"); v != "" {
		return strings.Split(v, ",")
	}
	addr, err := kafkaContainer.get(startKafka)
	if err != nil {
		Unavailable(t, "KAFKA_BROKERS is unset and no Kafka container could be started: %v", err)
	}
	return []string{addr}
}

// AMQPURL returns the URL of a real RabbitMQ: AMQP_URL, else a container
// started once per test binary, else the test is skipped (failed under CI).
func AMQPURL(t testing.TB) string {
	t.Helper()
	if v := os.Getenv("AMQP_URL"); v != "" {
		return v
	}
	url, err := rabbitContainer.get(startRabbitMQ)
	if err != nil {
		Unavailable(t, "AMQP_URL is unset and no RabbitMQ container could be started: %v", err)
	}
	return url
}

// lazyContainer starts one container the first time an address is asked for.
// The container outlives the test binary's tests and is removed by
// testcontainers' reaper when the binary exits.
type lazyContainer struct {
	once sync.Once
	addr string
	err  error
}

func (l *lazyContainer) get(start func(context.Context) (string, error)) (string, error) {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		l.addr, l.err = start(ctx)
	})
	return l.addr, l.err
}

var kafkaContainer, rabbitContainer lazyContainer

func dockerAvailable(ctx context.Context) error {
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return fmt.Errorf("docker provider: %w", err)
	}
	defer provider.Close()
	if err := provider.Health(ctx); err != nil {
		return fmt.Errorf("docker engine: %w", err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startKafka runs a single KRaft broker whose advertised listener is the
// fixed host port it is published on, so clients outside Docker reach it.
func startKafka(ctx context.Context) (string, error) {
	if err := dockerAvailable(ctx); err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	hostPort := strconv.Itoa(port)
	_, err = testcontainers.Run(ctx, KafkaImage,
		testcontainers.WithExposedPorts("9092/tcp"),
		testcontainers.WithEnv(map[string]string{
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://:9092,CONTROLLER://:9093",
			"KAFKA_ADVERTISED_LISTENERS":                     "PLAINTEXT://127.0.0.1:" + hostPort,
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9093",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
		}),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{
				network.MustParsePort("9092/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort}},
			}
		}),
		testcontainers.WithWaitStrategy(wait.ForListeningPort("9092/tcp").WithStartupTimeout(2*time.Minute)),
	)
	if err != nil {
		return "", fmt.Errorf("start %s: %w", KafkaImage, err)
	}
	return "127.0.0.1:" + hostPort, nil
}

func startRabbitMQ(ctx context.Context) (string, error) {
	if err := dockerAvailable(ctx); err != nil {
		return "", err
	}
	c, err := testcontainers.Run(ctx, RabbitMQImage,
		testcontainers.WithExposedPorts("5672/tcp", "15672/tcp"),
		testcontainers.WithWaitStrategy(wait.ForLog("Server startup complete").WithStartupTimeout(2*time.Minute)),
	)
	if err != nil {
		return "", fmt.Errorf("start %s: %w", RabbitMQImage, err)
	}
	endpoint, err := c.PortEndpoint(ctx, "5672/tcp", "")
	if err != nil {
		return "", err
	}
	return "amqp://guest:guest@" + endpoint + "/", nil
}
