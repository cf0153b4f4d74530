package amqpbus_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
)

func TestRoutingKeys(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a.", 127) + "b" // the longest JWT subject, escaped to 3x its length
	sum := sha256.Sum256([]byte(long))
	longHash := hex.EncodeToString(sum[:])
	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "job key drops the job prefix", got: amqpbus.JobRoutingKey("alice", "j-1", "job.running"), want: "job.alice.j-1.running"},
		{name: "job key keeps other event types", got: amqpbus.JobRoutingKey("alice", "j-1", "metrics_recorded"), want: "job.alice.j-1.metrics_recorded"},
		{name: "dots and wildcards are escaped", got: amqpbus.JobRoutingKey("a.b", "j*#", "job.queued"), want: "job.a%2Eb.j%2A%23.queued"},
		{name: "percent is escaped first", got: amqpbus.UserPattern("100%.x"), want: "job.100%25%2Ex.#"},
		{name: "one job", got: amqpbus.JobPattern("j-1"), want: "job.*.j-1.#"},
		{name: "one user", got: amqpbus.UserPattern("alice"), want: "job.alice.#"},
		{name: "one event type", got: amqpbus.EventTypePattern("job.failed"), want: "job.*.*.failed"},
		{name: "every job event", got: amqpbus.AllJobsPattern, want: "job.#"},
		{name: "user notifications", got: amqpbus.UserNotificationKey("bob.b"), want: "user.bob%2Eb"},
		{name: "tilde is escaped", got: amqpbus.UserNotificationKey("~bob"), want: "user.%7Ebob"},
		{name: "long user id is hashed", got: amqpbus.UserPattern(long), want: "job.~" + longHash + ".#"},
		{name: "long user id hashes the same in keys", got: amqpbus.JobRoutingKey(long, "j-1", "job.cancelled"), want: "job.~" + longHash + ".j-1.cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.got)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{name: "defaults are valid", err: amqpbus.DefaultConfig("amqp://localhost").Validate()},
		{name: "zero fields take defaults", err: amqpbus.Config{URL: "amqp://localhost"}.Validate()},
		{name: "missing URL", err: amqpbus.Config{}.Validate(), wantErr: "URL is empty"},
		{
			name:    "inverted backoff",
			err:     amqpbus.Config{URL: "amqp://x", ReconnectInitial: time.Second, ReconnectMax: time.Millisecond}.Validate(),
			wantErr: "reconnect backoff",
		},
		{name: "queue without name", err: amqpbus.QueueSpec{}.Validate(), wantErr: "name is empty"},
		{name: "unknown overflow", err: amqpbus.QueueSpec{Name: "q", Overflow: "reject-publish-dlx"}.Validate(), wantErr: "overflow"},
		{
			name:    "binding without exchange",
			err:     amqpbus.QueueSpec{Name: "q", Bindings: []amqpbus.Binding{{Pattern: "#"}}}.Validate(),
			wantErr: "has no exchange",
		},
		{name: "consumer defaults are valid", err: amqpbus.DefaultConsumerConfig("q").Validate()},
		{
			name:    "consumer without queue",
			err:     amqpbus.ConsumerConfig{Prefetch: 1, Workers: 1, HandlerTimeout: time.Second, Retry: bus.DefaultRetryPolicy()}.Validate(),
			wantErr: "queue is empty",
		},
		{
			name:    "consumer with bad retry",
			err:     amqpbus.ConsumerConfig{Queue: "q", Prefetch: 1, Workers: 1, HandlerTimeout: time.Second}.Validate(),
			wantErr: "not a positive range",
		},
		{name: "publisher timeout negative", err: amqpbus.PublisherConfig{PublishTimeout: -1}.Validate(), wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.wantErr == "" {
				require.NoError(t, tt.err)
				return
			}
			require.ErrorContains(t, tt.err, tt.wantErr)
		})
	}
}

// TestRoutingKeysFitAMQP: whatever user id the gRPC edge admits (up to 255
// bytes), a job key fits the AMQP limit of 255 bytes.
func TestRoutingKeysFitAMQP(t *testing.T) {
	t.Parallel()
	for _, user := range []string{strings.Repeat("u", 255), strings.Repeat(".", 255), strings.Repeat("%*#~", 63)} {
		key := amqpbus.JobRoutingKey(user, "0190c5e4-7b1a-7c3e-9a4b-2f1d3c4e5a6b", "job.metrics_recorded")
		require.LessOrEqual(t, len(key), 255, key)
		require.LessOrEqual(t, len(amqpbus.UserNotificationKey(user)), 255)
	}
}
