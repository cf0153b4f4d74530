package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/retry"
)

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	p := retry.Policy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for n, d := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 100: time.Second} {
		for range 100 {
			w := p.Backoff(n)
			require.GreaterOrEqual(t, w, d/2, "attempt %d", n)
			require.LessOrEqual(t, w, d, "attempt %d", n)
		}
	}
	b := p.BackOff()
	for n, d := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second} {
		w := b.NextBackOff()
		require.GreaterOrEqual(t, w, d/2, "wait %d", n+1)
		require.LessOrEqual(t, w, d, "wait %d", n+1)
	}
}

func TestDo(t *testing.T) {
	t.Parallel()
	p := retry.Policy{MaxAttempts: 3, InitialBackoff: time.Microsecond, MaxBackoff: 2 * time.Microsecond}
	down := errors.New("down")
	tests := []struct {
		name      string
		failures  int
		permanent bool
		wantCalls int
		wantErr   error
	}{
		{name: "succeeds at once", failures: 0, wantCalls: 1},
		{name: "succeeds on the third attempt", failures: 2, wantCalls: 3},
		{name: "gives up after max attempts", failures: 5, wantCalls: 3, wantErr: down},
		{name: "permanent error ends at once", failures: 5, permanent: true, wantCalls: 1, wantErr: down},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			calls, notified := 0, 0
			err := retry.Do(context.Background(), p, func(attempt int) error {
				calls++
				require.Equal(t, calls, attempt)
				if calls <= tt.failures {
					if tt.permanent {
						return backoff.Permanent(down)
					}
					return down
				}
				return nil
			}, func(attempt int, wait time.Duration, err error) {
				notified++
				require.Equal(t, calls, attempt)
				require.LessOrEqual(t, wait, 2*time.Microsecond)
				require.ErrorIs(t, err, down)
			})
			require.Equal(t, tt.wantCalls, calls)
			require.Equal(t, calls-1, notified)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			var perm *backoff.PermanentError
			require.False(t, errors.As(err, &perm), "the permanent wrapper is removed")
		})
	}
}

// A wait ends with its context: the last failure and the context's error
// are both returned.
func TestDoStopsWaitingWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	down := errors.New("down")
	start := time.Now()
	calls := 0
	err := retry.Do(ctx, retry.Policy{InitialBackoff: time.Hour, MaxBackoff: time.Hour}, func(int) error {
		calls++
		time.AfterFunc(10*time.Millisecond, cancel)
		return down
	}, nil)
	require.ErrorIs(t, err, down)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, calls)
	require.Less(t, time.Since(start), time.Minute)
}

func TestSleep(t *testing.T) {
	t.Parallel()
	require.NoError(t, retry.Sleep(context.Background(), time.Microsecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, retry.Sleep(ctx, time.Hour), context.Canceled)
}

func TestValidate(t *testing.T) {
	t.Parallel()
	require.Error(t, retry.Policy{MaxAttempts: -1, InitialBackoff: 1, MaxBackoff: 1}.Validate())
	require.NoError(t, retry.Policy{MaxAttempts: 0, InitialBackoff: 1, MaxBackoff: 1}.Validate())
	require.Error(t, retry.Policy{MaxAttempts: 1, InitialBackoff: 2, MaxBackoff: 1}.Validate())
	require.Error(t, retry.Policy{InitialBackoff: 0, MaxBackoff: 1}.Validate())
}
