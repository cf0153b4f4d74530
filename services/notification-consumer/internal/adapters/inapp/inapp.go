// Package inapp delivers in-app notifications: the notification is already
// stored with its delivery; this channel publishes it to the RabbitMQ
// notifications exchange under the user's routing key.
package inapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

// ContentType of the published message.
const ContentType = "application/json"

// Publisher is the part of amqpbus.Publisher the channel uses.
type Publisher interface {
	Publish(ctx context.Context, exchange, routingKey string, msg *bus.Message) error
}

// Message is the JSON body published for one in-app notification.
type Message struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	JobID     string    `json:"job_id"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	Subject   string    `json:"subject"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// Sender publishes in-app notifications.
type Sender struct {
	pub      Publisher
	exchange string
}

// NewSender publishes through pub to exchange (default amqpbus.ExchangeNotifications).
func NewSender(pub Publisher, exchange string) (*Sender, error) {
	if pub == nil {
		return nil, errors.New("inapp: publisher is required")
	}
	if exchange == "" {
		exchange = amqpbus.ExchangeNotifications
	}
	return &Sender{pub: pub, exchange: exchange}, nil
}

// Send publishes d under amqpbus.UserNotificationKey(d.UserID). Broker
// failures are transient. The AMQP message id is the delivery id, so a
// receiver can drop a republished copy.
func (s *Sender) Send(ctx context.Context, d domain.Delivery) error {
	body, err := json.Marshal(Message{
		ID: d.ID, UserID: d.UserID, JobID: d.JobID, EventID: d.EventID, EventType: d.EventType,
		Subject: d.Subject, Body: d.Body, CreatedAt: d.CreatedAt.UTC(),
	})
	if err != nil {
		return domain.Permanent(fmt.Errorf("inapp: marshal: %w", err))
	}
	msg := &bus.Message{
		Key:   amqpbus.UserNotificationKey(d.UserID),
		Value: body,
		Headers: map[string]string{
			amqpbus.HeaderEventID: d.ID,
			bus.HeaderContentType: ContentType,
			bus.HeaderEventType:   d.EventType,
			"source_event_id":     d.EventID,
		},
	}
	if err := s.pub.Publish(ctx, s.exchange, msg.Key, msg); err != nil {
		return domain.Transient(fmt.Errorf("inapp: publish to %s: %w", s.exchange, err), 0)
	}
	return nil
}
