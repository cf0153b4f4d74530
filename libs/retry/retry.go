// Package retry paces the fleet's retries: one exponential backoff with
// jitter, from github.com/cenkalti/backoff/v5, used by the bus consumers,
// the AMQP reconnect, SQL transaction retries and the services' own loops.
// Every wait ends when its context does.
package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy paces the retries of a failing operation.
type Policy struct {
	// MaxAttempts is the total number of invocations, first one included;
	// 0 means no bound (retry until success or the context ends).
	MaxAttempts int
	// InitialBackoff is the wait before the second attempt; each further wait
	// doubles, up to MaxBackoff. A wait is drawn at random from [d/2, d].
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
}

// Validate reports a policy that cannot work.
func (p Policy) Validate() error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("retry policy: max attempts %d < 0", p.MaxAttempts)
	case p.InitialBackoff <= 0 || p.MaxBackoff < p.InitialBackoff:
		return fmt.Errorf("retry policy: backoff %s..%s is not a positive range", p.InitialBackoff, p.MaxBackoff)
	}
	return nil
}

// BackOff returns a fresh backoff for p. Its n-th wait is a random duration
// in [d/2, d] where d = InitialBackoff·2^(n-1), capped at MaxBackoff; it
// never stops (MaxAttempts is Do's concern).
func (p Policy) BackOff() *backoff.ExponentialBackOff {
	// The library draws from [c·(1-f), c·(1+f)]; c = 3d/4 and f = 1/3 give [d/2, d].
	b := &backoff.ExponentialBackOff{
		InitialInterval:     max(p.InitialBackoff*3/4, 1),
		RandomizationFactor: 1.0 / 3,
		Multiplier:          2,
		MaxInterval:         max(p.MaxBackoff*3/4, 1),
	}
	b.Reset()
	return b
}

// Backoff returns the wait after n failed attempts (n >= 1), as the n-th
// wait of BackOff.
func (p Policy) Backoff(n int) time.Duration {
	b := p.BackOff()
	// After about 64 doublings every interval is capped; skip the rest.
	for range min(n, 64) - 1 {
		b.NextBackOff()
	}
	return b.NextBackOff()
}

// Notify is told of each wait before a retry: the attempt that failed
// (starting at 1), how long the retry waits and the attempt's error.
type Notify func(attempt int, wait time.Duration, err error)

// Do runs op until it returns nil, returns an error wrapped with
// Permanent (Do returns the wrapped error), p.MaxAttempts attempts
// were made (when not 0) or ctx ends, waiting between attempts as BackOff
// says. It returns the last error, joined with ctx's error when ctx ended.
// op receives the attempt number, starting at 1; notify, if not nil, is
// called before each wait.
func Do(ctx context.Context, p Policy, op func(attempt int) error, notify Notify) error {
	attempt := 0
	var last error
	opts := []backoff.RetryOption{
		backoff.WithBackOff(p.BackOff()),
		backoff.WithMaxElapsedTime(0),
		backoff.WithMaxTries(uint(max(p.MaxAttempts, 0))),
	}
	if notify != nil {
		opts = append(opts, backoff.WithNotify(func(err error, wait time.Duration) { notify(attempt, wait, err) }))
	}
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		last = op(attempt)
		return struct{}{}, last
	}, opts...)
	if cerr := context.Cause(ctx); cerr != nil && err == cerr && last != nil && !errors.Is(last, cerr) {
		// The library returns only the context's cause; keep the failure too.
		return errors.Join(last, err)
	}
	return err
}

// Permanent marks err so that Do returns it at once, without retrying.
func Permanent(err error) error { return backoff.Permanent(err) }

// Sleep waits d or until ctx ends, and returns ctx's error in that case.
func Sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
