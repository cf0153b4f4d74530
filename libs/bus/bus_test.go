package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

func TestChainOrder(t *testing.T) {
	t.Parallel()
	var order []string
	mw := func(name string) bus.Middleware {
		return func(next bus.Handler) bus.Handler {
			return func(ctx context.Context, m *bus.Message) error {
				order = append(order, name)
				return next(ctx, m)
			}
		}
	}
	h := bus.Chain(func(context.Context, *bus.Message) error { order = append(order, "handler"); return nil }, mw("a"), mw("b"))
	require.NoError(t, h(context.Background(), &bus.Message{}))
	require.Equal(t, []string{"a", "b", "handler"}, order)
}

func TestRetry(t *testing.T) {
	t.Parallel()
	transient := errors.New("broker busy")
	policy := bus.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	tests := []struct {
		name      string
		failures  []error // error returned by attempt i; nil afterwards
		wantCalls int
		wantErr   error
	}{
		{name: "success first time", wantCalls: 1},
		{name: "transient then success", failures: []error{transient, transient}, wantCalls: 3},
		{name: "transient exhausts a bounded policy", failures: []error{transient, transient, transient, transient}, wantCalls: 3, wantErr: transient},
		{name: "permanent is not retried", failures: []error{bus.Permanent(transient)}, wantCalls: 1, wantErr: transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			h := bus.Retry(policy, nil)(func(_ context.Context, m *bus.Message) error {
				calls++
				require.Equal(t, calls, m.Attempt)
				if calls <= len(tt.failures) {
					return tt.failures[calls-1]
				}
				return nil
			})
			err := h(context.Background(), &bus.Message{})
			require.Equal(t, tt.wantCalls, calls)
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
}

func TestRetryStopsOnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	h := bus.Retry(bus.RetryPolicy{InitialBackoff: time.Hour, MaxBackoff: time.Hour}, nil)(
		func(context.Context, *bus.Message) error { calls++; cancel(); return errors.New("down") })
	err := h(ctx, &bus.Message{})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, calls)
}

// The default policy has no bound: a transient failure (a database down for
// a while) is retried until it clears, each wait reported to the observer.
func TestDefaultRetryRetriesTransientFailuresUntilTheyClear(t *testing.T) {
	t.Parallel()
	policy := bus.DefaultRetryPolicy()
	require.Zero(t, policy.MaxAttempts)
	policy.InitialBackoff, policy.MaxBackoff = time.Microsecond, 10*time.Microsecond
	down := errors.New("database is locked")
	calls, observed := 0, 0
	h := bus.Retry(policy, func(_ context.Context, m *bus.Message, attempt int, wait time.Duration, err error) {
		observed++
		require.Equal(t, m.Attempt, attempt)
		require.ErrorIs(t, err, down)
		require.LessOrEqual(t, wait, 10*time.Microsecond)
	})(func(context.Context, *bus.Message) error {
		calls++
		if calls < 50 {
			return down
		}
		return nil
	})
	require.NoError(t, h(context.Background(), &bus.Message{}))
	require.Equal(t, 50, calls)
	require.Equal(t, 49, observed)
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	p := bus.RetryPolicy{MaxAttempts: 10, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	require.NoError(t, p.Validate())
	for n, max := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 5: time.Second, 9: time.Second} {
		for range 50 {
			d := p.Backoff(n)
			require.GreaterOrEqual(t, d, max/2, "attempt %d", n)
			require.LessOrEqual(t, d, max, "attempt %d", n)
		}
	}
	require.Error(t, bus.RetryPolicy{MaxAttempts: -1, InitialBackoff: 1, MaxBackoff: 1}.Validate())
	require.NoError(t, bus.RetryPolicy{MaxAttempts: 0, InitialBackoff: 1, MaxBackoff: 1}.Validate(), "0: no bound")
	require.Error(t, bus.RetryPolicy{MaxAttempts: 1, InitialBackoff: 2, MaxBackoff: 1}.Validate())
}

func TestRecover(t *testing.T) {
	t.Parallel()
	h := bus.Recover()(func(context.Context, *bus.Message) error { panic("boom") })
	err := h(context.Background(), &bus.Message{})
	require.Error(t, err)
	require.True(t, bus.IsPermanent(err))
	require.Contains(t, err.Error(), "boom")
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	h := bus.Timeout(time.Millisecond)(func(ctx context.Context, _ *bus.Message) error {
		<-ctx.Done()
		return ctx.Err()
	})
	require.ErrorIs(t, h(context.Background(), &bus.Message{}), context.DeadlineExceeded)
}

func TestPermanentNil(t *testing.T) {
	t.Parallel()
	require.NoError(t, bus.Permanent(nil))
	require.False(t, bus.IsPermanent(errors.New("x")))
}
