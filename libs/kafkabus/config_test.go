package kafkabus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

var testConn = kafkabus.Connection{Brokers: []string{"127.0.0.1:9092"}}

func TestConnectionValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		conn    kafkabus.Connection
		wantErr string
	}{
		{name: "ok", conn: testConn},
		{name: "no brokers", conn: kafkabus.Connection{}, wantErr: "no brokers"},
		{name: "empty broker", conn: kafkabus.Connection{Brokers: []string{""}}, wantErr: "empty broker"},
		{name: "bad version", conn: kafkabus.Connection{Brokers: testConn.Brokers, Version: "x.y"}, wantErr: "version"},
		{
			name:    "cert without key",
			conn:    kafkabus.Connection{Brokers: testConn.Brokers, TLS: kafkabus.TLSConfig{CertFile: "c.pem"}},
			wantErr: "cert file and key file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.conn.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestClientConfig(t *testing.T) {
	t.Parallel()
	cfg, err := kafkabus.ClientConfig(testConn)
	require.NoError(t, err)
	require.Equal(t, "fleet", cfg.ClientID)
	require.Equal(t, kafkabus.DefaultKafkaVersion, cfg.Version.String())
	require.False(t, cfg.Net.TLS.Enable)

	_, err = kafkabus.ClientConfig(kafkabus.Connection{
		Brokers: testConn.Brokers,
		TLS:     kafkabus.TLSConfig{CAFile: "/nonexistent/ca.pem"},
	})
	require.ErrorContains(t, err, "read ca file")
}

func TestProducerConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*kafkabus.ProducerConfig)
		wantErr string
	}{
		{name: "defaults", mutate: func(*kafkabus.ProducerConfig) {}},
		{name: "lz4", mutate: func(c *kafkabus.ProducerConfig) { c.Compression = "lz4" }},
		{name: "unknown compression", mutate: func(c *kafkabus.ProducerConfig) { c.Compression = "brotli" }, wantErr: "unknown compression"},
		{name: "no retries", mutate: func(c *kafkabus.ProducerConfig) { c.MaxRetries = 0 }, wantErr: "max retries"},
		{name: "linger", mutate: func(c *kafkabus.ProducerConfig) { c.Linger = 5 * time.Millisecond }},
		{name: "negative linger", mutate: func(c *kafkabus.ProducerConfig) { c.Linger = -time.Millisecond }, wantErr: "linger"},
		{name: "no brokers", mutate: func(c *kafkabus.ProducerConfig) { c.Brokers = nil }, wantErr: "no brokers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := kafkabus.DefaultProducerConfig(testConn)
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestConsumerConfigValidate(t *testing.T) {
	t.Parallel()
	// A Producer value is enough for validation; it is never used.
	dlq := &kafkabus.Producer{}
	tests := []struct {
		name    string
		mutate  func(*kafkabus.ConsumerConfig)
		wantErr string
	}{
		{name: "defaults", mutate: func(*kafkabus.ConsumerConfig) {}},
		{name: "newest", mutate: func(c *kafkabus.ConsumerConfig) { c.InitialOffset = kafkabus.OffsetNewest }},
		{name: "no group", mutate: func(c *kafkabus.ConsumerConfig) { c.Group = "" }, wantErr: "group is empty"},
		{name: "no topics", mutate: func(c *kafkabus.ConsumerConfig) { c.Topics = nil }, wantErr: "no topics"},
		{name: "empty topic", mutate: func(c *kafkabus.ConsumerConfig) { c.Topics = []string{""} }, wantErr: "empty topic"},
		{name: "no dlq", mutate: func(c *kafkabus.ConsumerConfig) { c.DLQ = nil }, wantErr: "dead-letter producer is required"},
		{name: "bad offset", mutate: func(c *kafkabus.ConsumerConfig) { c.InitialOffset = "latest" }, wantErr: "initial offset"},
		{
			name:    "heartbeat not below session timeout",
			mutate:  func(c *kafkabus.ConsumerConfig) { c.HeartbeatInterval = c.SessionTimeout },
			wantErr: "heartbeat interval",
		},
		{name: "bad retry", mutate: func(c *kafkabus.ConsumerConfig) { c.Retry.MaxAttempts = -1 }, wantErr: "max attempts"},
		{name: "no handler timeout", mutate: func(c *kafkabus.ConsumerConfig) { c.HandlerTimeout = 0 }, wantErr: "handler timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := kafkabus.DefaultConsumerConfig(testConn, "group", "topic")
			cfg.DLQ = dlq
			cfg.HeartbeatInterval = cfg.SessionTimeout / 3
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestNewConsumerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	handler := func(_ context.Context, _ *bus.Message) error { return nil }
	_, err := kafkabus.NewConsumer(kafkabus.DefaultConsumerConfig(testConn, "group", "topic"), handler, logger, nil)
	require.ErrorContains(t, err, "dead-letter producer is required")
}

func TestDeadLetter(t *testing.T) {
	t.Parallel()
	failedAt := time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("CET", 3600))
	tests := []struct {
		name         string
		msg          bus.Message
		cause        error
		wantAttempts string
		wantError    string
	}{
		{
			name: "permanent after one attempt",
			msg: bus.Message{
				Topic: "job-lifecycle", Key: "job-1", Value: []byte("payload"),
				Headers:   map[string]string{bus.HeaderEventType: "JobSubmitted", "traceparent": "00-abc-def-01"},
				Partition: 3, Offset: 42, Attempt: 1,
			},
			cause:        bus.Permanent(errors.New("decode: bad magic byte")),
			wantAttempts: "1",
			wantError:    "decode: bad magic byte",
		},
		{
			name:         "no headers, retries exhausted",
			msg:          bus.Message{Topic: "audit-trail", Partition: 0, Offset: 7, Attempt: 5},
			cause:        errors.New("database unavailable"),
			wantAttempts: "5",
			wantError:    "database unavailable",
		},
		{
			name:         "attempt never counted",
			msg:          bus.Message{Topic: "notifications"},
			cause:        nil,
			wantAttempts: "1",
			wantError:    "unknown error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			orig := tt.msg
			dl := kafkabus.DeadLetter(&orig, "grp", tt.cause, failedAt)
			require.Equal(t, tt.msg.Topic+".dlq", dl.Topic)
			require.Equal(t, tt.msg.Key, dl.Key)
			require.Equal(t, tt.msg.Value, dl.Value)
			for k, v := range tt.msg.Headers {
				require.Equal(t, v, dl.Headers[k], "original header %s", k)
			}
			require.Equal(t, tt.wantError, dl.Headers[bus.HeaderDLQError])
			require.Equal(t, tt.msg.Topic, dl.Headers[bus.HeaderDLQTopic])
			require.Equal(t, strconv.Itoa(int(tt.msg.Partition)), dl.Headers[bus.HeaderDLQPartition])
			require.Equal(t, strconv.FormatInt(tt.msg.Offset, 10), dl.Headers[bus.HeaderDLQOffset])
			require.Equal(t, tt.wantAttempts, dl.Headers[bus.HeaderDLQAttempts])
			require.Equal(t, "grp", dl.Headers[bus.HeaderDLQGroup])
			require.Equal(t, "2026-03-04T04:06:07.000000008Z", dl.Headers[bus.HeaderDLQFailedAt])
			require.Equal(t, tt.msg.Headers, orig.Headers, "the original message is not modified")
		})
	}
}

func TestReportString(t *testing.T) {
	t.Parallel()
	r := kafkabus.Report{
		Created: []string{"a", "b"},
		OK:      []string{"c"},
		Mismatched: []kafkabus.TopicMismatch{
			{Topic: "d", Problems: []string{"partitions: have 3, want 10", `retention.ms: have "1", want "2"`}},
		},
	}
	require.Equal(t, "created: a, b\nok: c\nmismatch d: partitions: have 3, want 10; retention.ms: have \"1\", want \"2\"", r.String())
}

func TestConnectionFromLookup(t *testing.T) {
	t.Parallel()
	env := map[string]string{"KAFKA_BROKERS": " k1:9092, ,k2:9092 ", "KAFKA_CLIENT_ID": "svc", "KAFKA_VERSION": "3.7.0",
		"KAFKA_TLS_CA_FILE": "/ca.pem", "KAFKA_TLS_CERT_FILE": "/c.pem", "KAFKA_TLS_KEY_FILE": "/k.pem", "KAFKA_TLS_SERVER_NAME": "kafka"}
	c := kafkabus.ConnectionFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.Equal(t, kafkabus.Connection{Brokers: []string{"k1:9092", "k2:9092"}, ClientID: "svc", Version: "3.7.0",
		TLS: kafkabus.TLSConfig{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "kafka"}}, c)
	require.Equal(t, kafkabus.Connection{}, kafkabus.ConnectionFromLookup(func(string) (string, bool) { return "", false }))
}
