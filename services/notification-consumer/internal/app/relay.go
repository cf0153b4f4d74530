package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

// AsyncPublisher is the part of kafkabus.Producer the relay uses.
type AsyncPublisher interface {
	PublishAsync(ctx context.Context, msg *bus.Message, callback func(error)) error
}

// Relay publishes the outbox's outcome events to Kafka and deletes them once
// acknowledged: at least once, in the order they were recorded per batch.
type Relay struct {
	store    OutboxStore
	pub      AsyncPublisher
	logger   *slog.Logger
	interval time.Duration
	batch    int
	wake     chan struct{}
}

// NewRelay returns a relay that looks at the outbox at least every interval.
func NewRelay(st OutboxStore, pub AsyncPublisher, interval time.Duration, logger *slog.Logger) *Relay {
	if interval <= 0 {
		interval = time.Second
	}
	return &Relay{store: st, pub: pub, logger: logger, interval: interval, batch: 500, wake: make(chan struct{}, 1)}
}

// Wake makes the relay look at the outbox now.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends, then makes one last pass.
func (r *Relay) Run(ctx context.Context) error {
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = r.Flush(final)
			cancel()
			return nil
		case <-r.wake:
		case <-ticker.C:
		}
		for {
			n, err := r.Flush(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.logger.Warn("relay outbox", slog.String("error", err.Error()))
				}
				break
			}
			if n < r.batch {
				break
			}
		}
	}
}

// Flush publishes one batch and returns how many messages it relayed.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	pending, err := r.store.PendingOutbox(ctx, r.batch)
	if err != nil || len(pending) == 0 {
		return 0, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var done []string
	var errs []error
	for _, p := range pending {
		wg.Add(1)
		err := r.pub.PublishAsync(ctx, p.Msg, func(err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			done = append(done, p.ID)
		})
		if err != nil {
			wg.Done()
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			break
		}
	}
	wg.Wait()
	if err := r.store.DeleteOutbox(ctx, done); err != nil {
		return 0, err
	}
	return len(done), errors.Join(errs...)
}
