package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// AMQPConn dials the stack's RabbitMQ, or marks the test unavailable.
func AMQPConn(t testing.TB) *amqpbus.Conn {
	t.Helper()
	url := os.Getenv("AMQP_URL")
	if url == "" {
		testinfra.Unavailable(t, "AMQP_URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := amqpbus.Dial(ctx, amqpbus.DefaultConfig(url), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// UserQueue binds a fresh queue to the notifications exchange under the
// user's routing key and returns the messages it receives.
func UserQueue(t testing.TB, conn *amqpbus.Conn, userID string) <-chan *bus.Message {
	t.Helper()
	name := fmt.Sprintf("test.notifications.%d", time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, conn.DeclareQueue(ctx, amqpbus.QueueSpec{
		Name:       name,
		Bindings:   []amqpbus.Binding{{Exchange: amqpbus.ExchangeNotifications, Pattern: amqpbus.UserNotificationKey(userID)}},
		AutoDelete: true, NoDeadLetter: true,
	}))
	out := make(chan *bus.Message, 64)
	c, err := amqpbus.NewConsumer(conn, amqpbus.DefaultConsumerConfig(name), func(_ context.Context, m *bus.Message) error {
		out <- m
		return nil
	}, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return out
}
