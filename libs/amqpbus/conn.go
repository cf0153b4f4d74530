package amqpbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/cosmic-horizons/fleet/libs/retry"
)

// ErrClosed is returned by operations on a Conn after Close.
var ErrClosed = errors.New("amqpbus: connection closed")

// ErrNotConnected is returned by Check while the connection is down.
var ErrNotConnected = errors.New("amqpbus: not connected")

// Conn is one managed connection to RabbitMQ. It watches the connection,
// reconnects with capped exponential backoff and jitter when it closes, and
// declares the topology and every queue declared through it again before
// handing the new connection to publishers and consumers, which open their
// channels again by themselves. It is safe for concurrent use.
type Conn struct {
	cfg     Config
	logger  *slog.Logger
	metrics *connMetrics

	// life is cancelled by Close; it bounds every background operation.
	life     context.Context
	shutdown context.CancelFunc
	wg       sync.WaitGroup

	mu     sync.Mutex
	conn   *amqp.Connection // nil while disconnected
	ready  chan struct{}    // closed while conn is set
	queues []QueueSpec      // declared through DeclareQueue, in order
	closed bool
}

// Dial connects to the broker, declares the topology and starts watching the
// connection. A failed first attempt is returned as an error; after that the
// connection is kept up until Close.
func Dial(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Conn, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	metrics, err := newConnMetrics(reg, cfg.ConnectionName)
	if err != nil {
		return nil, err
	}
	life, shutdown := context.WithCancel(context.Background())
	c := &Conn{
		cfg:      cfg,
		logger:   logger.With("component", "amqpbus", "connection", cfg.ConnectionName),
		metrics:  metrics,
		life:     life,
		shutdown: shutdown,
		ready:    make(chan struct{}),
	}
	conn, closes, err := c.connect(ctx)
	if err != nil {
		shutdown()
		return nil, fmt.Errorf("dial %s: %w", redact(cfg.URL), err)
	}
	if !c.setConnected(conn) {
		shutdown()
		return nil, ErrClosed
	}
	c.logger.Info("amqp connected", "url", redact(cfg.URL))
	c.wg.Add(1)
	go c.supervise(closes)
	return c, nil
}

// Topology returns the topology the connection declares, defaults applied.
func (c *Conn) Topology() Topology { return c.cfg.Topology }

// Connected reports whether the connection is currently open.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil && !c.conn.IsClosed()
}

// LocalAddr returns the client side address of the current connection, or
// nil while disconnected. The broker lists it as the connection's peer.
func (c *Conn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	return c.conn.LocalAddr()
}

// Check is a health check: it fails while the connection is down, and
// otherwise opens and closes a channel to prove the broker answers.
func (c *Conn) Check(ctx context.Context) error {
	c.mu.Lock()
	conn, closed := c.conn, c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case conn == nil || conn.IsClosed():
		return ErrNotConnected
	}
	done := make(chan error, 1)
	go func() {
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("amqp health: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("amqp health: %w", ctx.Err())
	}
}

// Close stops reconnecting and closes the connection. Publishers and
// consumers using it should be closed first.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn := c.conn
	c.mu.Unlock()
	c.shutdown()
	var err error
	if conn != nil && !conn.IsClosed() {
		err = conn.Close()
	}
	c.wg.Wait()
	c.metrics.connected.Set(0)
	if err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("close amqp connection: %w", err)
	}
	return nil
}

// connection returns the open connection, waiting for a reconnect while the
// connection is down.
func (c *Conn) connection(ctx context.Context) (*amqp.Connection, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		conn, ready := c.conn, c.ready
		c.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			return conn, nil
		}
		var wait <-chan time.Time
		if conn != nil {
			// Closed but not yet noticed by the supervisor: look again shortly.
			wait = time.After(10 * time.Millisecond)
		}
		select {
		case <-ready:
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for amqp connection: %w", ctx.Err())
		case <-c.life.Done():
			return nil, ErrClosed
		}
	}
}

// channel opens a channel on the current connection.
func (c *Conn) channel(ctx context.Context) (*amqp.Channel, error) {
	conn, err := c.connection(ctx)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open amqp channel: %w", err)
	}
	return ch, nil
}

// connect dials once and declares the topology and the recorded queues.
func (c *Conn) connect(ctx context.Context) (*amqp.Connection, chan *amqp.Error, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.cfg.ConnectionName)
	timeout := c.cfg.DialTimeout
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		Heartbeat:       c.cfg.Heartbeat,
		TLSClientConfig: c.cfg.TLS,
		Properties:      props,
		Locale:          "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the TLS and AMQP handshakes; cleared once the connection is open.
			if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
				_ = nc.Close()
				return nil, err
			}
			return nc, nil
		},
	})
	if err != nil {
		return nil, nil, err
	}
	closes := conn.NotifyClose(make(chan *amqp.Error, 1))
	if err := c.declareAll(conn); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, closes, nil
}

// declareAll declares the topology and every recorded queue on conn.
func (c *Conn) declareAll(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open amqp channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	if err := declareTopology(ch, c.cfg.Topology); err != nil {
		return err
	}
	c.mu.Lock()
	queues := append([]QueueSpec(nil), c.queues...)
	c.mu.Unlock()
	for _, q := range queues {
		if err := declareQueue(ch, q, c.cfg.Topology.QuorumQueues); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) setConnected(conn *amqp.Connection) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = conn.Close()
		return false
	}
	c.conn = conn
	close(c.ready)
	c.metrics.connected.Set(1)
	return true
}

func (c *Conn) setDisconnected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn = nil
		c.ready = make(chan struct{})
	}
	c.metrics.connected.Set(0)
}

// supervise waits for the connection to close and reconnects until Close.
func (c *Conn) supervise(closes chan *amqp.Error) {
	defer c.wg.Done()
	for {
		select {
		case <-c.life.Done():
			return
		case amqpErr := <-closes:
			c.setDisconnected()
			if c.life.Err() != nil {
				return
			}
			c.logger.Warn("amqp connection lost; reconnecting", "error", errorString(amqpErr))
		}
		var ok bool
		if closes, ok = c.reconnect(); !ok {
			return
		}
	}
}

// reconnect dials with backoff until it succeeds or the Conn is closed.
func (c *Conn) reconnect() (chan *amqp.Error, bool) {
	pace := retry.Policy{InitialBackoff: max(c.cfg.ReconnectInitial, time.Millisecond), MaxBackoff: max(c.cfg.ReconnectMax, c.cfg.ReconnectInitial, time.Millisecond)}.BackOff()
	for attempt := 1; ; attempt++ {
		if retry.Sleep(c.life, pace.NextBackOff()) != nil {
			return nil, false
		}
		conn, closes, err := c.connect(c.life)
		if err != nil {
			c.logger.Warn("amqp reconnect failed", "attempt", attempt, "error", err)
			continue
		}
		if !c.setConnected(conn) {
			return nil, false
		}
		c.metrics.reconnects.Inc()
		c.logger.Info("amqp reconnected", "attempts", attempt)
		return closes, true
	}
}

// redact hides the password of an AMQP URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid url>"
	}
	return u.Redacted()
}

func errorString(err *amqp.Error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}
