package amqpbus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Names of the fleet's exchanges and dead-letter queue.
const (
	ExchangeJobEvents     = "job.events"
	ExchangeNotifications = "notifications"
	ExchangeDeadLetter    = "dlx"
	QueueDeadLetter       = "dlq"
)

// Queue defaults.
const (
	DefaultMaxLength      = 100_000
	DefaultMessageTTL     = 24 * time.Hour
	DefaultDeadLetterTTL  = 7 * 24 * time.Hour
	DefaultDeadLetterSize = 100_000
)

// Topology names the exchanges and the dead-letter queue declared on every
// (re)connect.
type Topology struct {
	JobEvents     string // topic exchange of job events; default "job.events"
	Notifications string // topic exchange of notifications; default "notifications"
	DeadLetter    string // topic exchange of dead letters; default "dlx"
	// DeadLetterQueue is bound to DeadLetter with "#"; default "dlq".
	DeadLetterQueue string
	// DeadLetterTTL and DeadLetterMaxLength bound DeadLetterQueue;
	// defaults 7 days and 100,000 messages.
	DeadLetterTTL       time.Duration
	DeadLetterMaxLength int
	// QuorumQueues declares the dead-letter queue and every durable queue of
	// a QueueSpec as a quorum queue (replicated; for clusters). Off by
	// default: classic queues suit a single node. Switching it for an
	// existing queue needs the queue deleted first.
	QuorumQueues bool
}

// DefaultTopology returns the fleet's topology.
func DefaultTopology() Topology {
	return Topology{
		JobEvents:           ExchangeJobEvents,
		Notifications:       ExchangeNotifications,
		DeadLetter:          ExchangeDeadLetter,
		DeadLetterQueue:     QueueDeadLetter,
		DeadLetterTTL:       DefaultDeadLetterTTL,
		DeadLetterMaxLength: DefaultDeadLetterSize,
	}
}

func (t Topology) withDefaults() Topology {
	d := DefaultTopology()
	if t.JobEvents == "" {
		t.JobEvents = d.JobEvents
	}
	if t.Notifications == "" {
		t.Notifications = d.Notifications
	}
	if t.DeadLetter == "" {
		t.DeadLetter = d.DeadLetter
	}
	if t.DeadLetterQueue == "" {
		t.DeadLetterQueue = d.DeadLetterQueue
	}
	if t.DeadLetterTTL == 0 {
		t.DeadLetterTTL = d.DeadLetterTTL
	}
	if t.DeadLetterMaxLength == 0 {
		t.DeadLetterMaxLength = d.DeadLetterMaxLength
	}
	return t
}

// Validate reports a topology that cannot be declared.
func (t Topology) Validate() error {
	var errs []error
	if t.DeadLetterTTL < time.Millisecond {
		errs = append(errs, fmt.Errorf("dead-letter TTL %s is below 1ms", t.DeadLetterTTL))
	}
	if t.DeadLetterMaxLength < 1 {
		errs = append(errs, fmt.Errorf("dead-letter max length %d < 1", t.DeadLetterMaxLength))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	return nil
}

// Config configures a managed connection.
type Config struct {
	// URL is the broker address, amqp://user:pass@host:port/vhost or amqps://.
	URL string
	// ConnectionName is shown by the broker (client property connection_name)
	// and labels the connection metrics; default "fleet".
	ConnectionName string
	// Topology is declared after every (re)connect; zero fields take the
	// defaults of DefaultTopology.
	Topology Topology
	// ReconnectInitial is the wait before the first reconnect attempt; each
	// further wait doubles up to ReconnectMax, with jitter. Defaults 100ms and 10s.
	ReconnectInitial time.Duration
	ReconnectMax     time.Duration
	// DialTimeout bounds one connection attempt (TCP and AMQP handshake); default 10s.
	DialTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval; default 10s.
	Heartbeat time.Duration
	// TLS configures amqps:// connections; nil uses the system roots.
	TLS *tls.Config
}

// DefaultConfig returns the defaults for a connection to url.
func DefaultConfig(url string) Config {
	return Config{
		URL:              url,
		ConnectionName:   "fleet",
		Topology:         DefaultTopology(),
		ReconnectInitial: 100 * time.Millisecond,
		ReconnectMax:     10 * time.Second,
		DialTimeout:      10 * time.Second,
		Heartbeat:        10 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig(c.URL)
	if c.ConnectionName == "" {
		c.ConnectionName = d.ConnectionName
	}
	c.Topology = c.Topology.withDefaults()
	if c.ReconnectInitial == 0 {
		c.ReconnectInitial = d.ReconnectInitial
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(d.ReconnectMax, c.ReconnectInitial)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = d.Heartbeat
	}
	return c
}

// Validate reports a configuration that cannot work. Zero durations are
// replaced by their defaults before validation.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("URL is empty"))
	}
	if c.ReconnectInitial < 0 || c.ReconnectMax < c.ReconnectInitial {
		errs = append(errs, fmt.Errorf("reconnect backoff %s..%s is not a positive range", c.ReconnectInitial, c.ReconnectMax))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("dial timeout %s is negative", c.DialTimeout))
	}
	if c.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("heartbeat %s is negative", c.Heartbeat))
	}
	if err := c.Topology.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("amqp config: %w", err)
	}
	return nil
}
