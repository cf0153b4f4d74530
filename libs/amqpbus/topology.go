package amqpbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Overflow is what a queue does when it holds MaxLength messages.
type Overflow string

const (
	// OverflowDropHead drops (and dead-letters, when the queue has a
	// dead-letter exchange) the oldest message to make room. The publisher
	// never notices: right for live watchers, where the newest event matters
	// most and one slow watcher must not hold up the publisher.
	OverflowDropHead Overflow = "drop-head"
	// OverflowRejectPublish refuses new messages: the broker nacks them and
	// Publish returns ErrNacked. Right for queues where losing an old
	// message is worse than pushing back on the publisher.
	OverflowRejectPublish Overflow = "reject-publish"
)

// Binding binds a queue to an exchange with a routing pattern.
type Binding struct {
	Exchange string
	Pattern  string
}

// QueueSpec describes a consumer queue. Zero fields take the defaults.
type QueueSpec struct {
	// Name of the queue; required (server-named queues are not supported, as
	// the name must survive a reconnect).
	Name     string
	Bindings []Binding
	// Durable queues survive a broker restart; their persistent messages too.
	Durable bool
	// AutoDelete deletes the queue when its last consumer goes away;
	// Exclusive ties it to this connection (deleted when the connection
	// closes, and declared again after a reconnect). Both suit live watchers.
	AutoDelete bool
	Exclusive  bool
	// MaxLength bounds the queue; default 100,000, negative for no bound.
	MaxLength int
	// MessageTTL drops messages older than this; default 24h, negative for none.
	MessageTTL time.Duration
	// Overflow applies at MaxLength; default OverflowDropHead.
	Overflow Overflow
	// DeadLetterExchange receives rejected, expired and dropped messages;
	// default the topology's dead-letter exchange. NoDeadLetter turns it off.
	DeadLetterExchange string
	NoDeadLetter       bool
}

func (s QueueSpec) withDefaults(t Topology) QueueSpec {
	if s.MaxLength == 0 {
		s.MaxLength = DefaultMaxLength
	}
	if s.MessageTTL == 0 {
		s.MessageTTL = DefaultMessageTTL
	}
	if s.Overflow == "" {
		s.Overflow = OverflowDropHead
	}
	if s.DeadLetterExchange == "" && !s.NoDeadLetter {
		s.DeadLetterExchange = t.DeadLetter
	}
	if s.NoDeadLetter {
		s.DeadLetterExchange = ""
	}
	s.Bindings = append([]Binding(nil), s.Bindings...)
	return s
}

// Validate reports a spec that cannot be declared.
func (s QueueSpec) Validate() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if len(s.Name) > maxShortString {
		errs = append(errs, fmt.Errorf("name is %d bytes, longer than %d", len(s.Name), maxShortString))
	}
	switch s.Overflow {
	case "", OverflowDropHead, OverflowRejectPublish:
	default:
		errs = append(errs, fmt.Errorf("overflow %q is not drop-head or reject-publish", s.Overflow))
	}
	if s.MessageTTL > 0 && s.MessageTTL < time.Millisecond {
		errs = append(errs, fmt.Errorf("message TTL %s is below 1ms", s.MessageTTL))
	}
	for _, b := range s.Bindings {
		if b.Exchange == "" {
			errs = append(errs, fmt.Errorf("binding %q has no exchange", b.Pattern))
		}
		if len(b.Pattern) > maxShortString {
			errs = append(errs, fmt.Errorf("binding pattern is %d bytes, longer than %d", len(b.Pattern), maxShortString))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("queue spec %q: %w", s.Name, err)
	}
	return nil
}

// DeclareQueue declares the queue of spec and its bindings, idempotently, and
// remembers it so that it is declared again after a reconnect. Declaring an
// existing queue with different arguments fails (PRECONDITION_FAILED).
func (c *Conn) DeclareQueue(ctx context.Context, spec QueueSpec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	spec = spec.withDefaults(c.cfg.Topology)
	for {
		conn, err := c.connection(ctx)
		if err != nil {
			return err
		}
		if err := declareOn(conn, spec, c.cfg.Topology.QuorumQueues); err != nil {
			if conn.IsClosed() && ctx.Err() == nil {
				continue // lost the connection meanwhile: declare on the next one
			}
			return err
		}
		c.mu.Lock()
		c.forget(spec.Name)
		c.queues = append(c.queues, spec)
		current := c.conn
		c.mu.Unlock()
		if current == nil || current == conn {
			// Either still on the same connection, or the next one will
			// declare it from the record.
			return nil
		}
		// Reconnected between declaring and recording: declare on the new one.
	}
}

// DeleteQueue deletes the queue and forgets its spec. Deleting a missing queue is not an error.
func (c *Conn) DeleteQueue(ctx context.Context, name string) error {
	c.mu.Lock()
	c.forget(name)
	c.mu.Unlock()
	ch, err := c.channel(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = ch.Close() }()
	if _, err := ch.QueueDelete(name, false, false, false); err != nil {
		return fmt.Errorf("delete queue %s: %w", name, err)
	}
	return nil
}

// forget drops the recorded spec of queue name; c.mu must be held.
func (c *Conn) forget(name string) {
	for i, q := range c.queues {
		if q.Name == name {
			c.queues = append(c.queues[:i], c.queues[i+1:]...)
			return
		}
	}
}

func declareOn(conn *amqp.Connection, spec QueueSpec, quorum bool) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open amqp channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	return declareQueue(ch, spec, quorum)
}

// declareTopology declares the exchanges and the dead-letter queue of t.
func declareTopology(ch *amqp.Channel, t Topology) error {
	for _, name := range []string{t.JobEvents, t.Notifications, t.DeadLetter} {
		if err := ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %s: %w", name, err)
		}
	}
	dlq := QueueSpec{
		Name:         t.DeadLetterQueue,
		Bindings:     []Binding{{Exchange: t.DeadLetter, Pattern: "#"}},
		Durable:      true,
		MaxLength:    t.DeadLetterMaxLength,
		MessageTTL:   t.DeadLetterTTL,
		Overflow:     OverflowDropHead,
		NoDeadLetter: true,
	}
	return declareQueue(ch, dlq, t.QuorumQueues)
}

// declareQueue declares spec (defaults applied) and binds it.
func declareQueue(ch *amqp.Channel, spec QueueSpec, quorum bool) error {
	args := amqp.Table{}
	if spec.MaxLength > 0 {
		args["x-max-length"] = int64(spec.MaxLength)
	}
	if spec.MessageTTL > 0 {
		args["x-message-ttl"] = spec.MessageTTL.Milliseconds()
	}
	if spec.Overflow != "" {
		args["x-overflow"] = string(spec.Overflow)
	}
	if spec.DeadLetterExchange != "" {
		args["x-dead-letter-exchange"] = spec.DeadLetterExchange
	}
	if quorum && spec.Durable && !spec.AutoDelete && !spec.Exclusive {
		args["x-queue-type"] = "quorum"
	}
	if _, err := ch.QueueDeclare(spec.Name, spec.Durable, spec.AutoDelete, spec.Exclusive, false, args); err != nil {
		return fmt.Errorf("declare queue %s: %w", spec.Name, err)
	}
	for _, b := range spec.Bindings {
		if err := ch.QueueBind(spec.Name, b.Pattern, b.Exchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %s to %s with %q: %w", spec.Name, b.Exchange, b.Pattern, err)
		}
	}
	return nil
}
