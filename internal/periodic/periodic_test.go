package periodic

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunnerCallsUntilStopped(t *testing.T) {
	var calls atomic.Int64
	r := Start(time.Millisecond, func() { calls.Add(1) })
	require.Eventually(t, func() bool { return calls.Load() >= 3 }, 5*time.Second, time.Millisecond)
	r.Stop()
	r.Stop()

	var none *Runner
	none.Stop()
}

// Stop returns only once the loop has ended: after it, nothing takes a tick.
func TestNoCallAfterStopReturns(t *testing.T) {
	ticks := make(chan time.Time) // unbuffered: a send succeeds only if the loop takes it
	var calls, stopped atomic.Int64
	r := startTicks(ticks, func() { stopped.Add(1) }, func() { calls.Add(1) })
	ticks <- time.Time{}
	ticks <- time.Time{}
	r.Stop()
	require.EqualValues(t, 1, stopped.Load(), "the ticker is released")
	got := calls.Load()
	require.GreaterOrEqual(t, got, int64(1))
	select {
	case ticks <- time.Time{}:
		t.Fatal("a tick was taken after Stop returned")
	default:
	}
	require.Equal(t, got, calls.Load())
}

func TestEveryLetsOneCallerThroughPerInterval(t *testing.T) {
	e := Every{Interval: time.Hour}
	require.True(t, e.Allow())
	require.False(t, e.Allow())
	var through atomic.Int64
	done := make(chan struct{})
	for range 8 {
		go func() {
			if (&e).Allow() {
				through.Add(1)
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		<-done
	}
	require.Zero(t, through.Load())
	zero := Every{}
	require.True(t, zero.Allow())
	require.True(t, zero.Allow(), "no interval: every call")
}

func TestErrorLatch(t *testing.T) {
	var l ErrorLatch
	a, b := errors.New("a"), errors.New("b")
	require.True(t, l.Changed(a))
	require.False(t, l.Changed(a))
	require.False(t, l.Changed(errors.New("a")), "the same text is the same problem")
	require.True(t, l.Changed(b))
	require.False(t, l.Changed(nil))
	require.True(t, l.Changed(b), "after a success the problem is news again")
}
