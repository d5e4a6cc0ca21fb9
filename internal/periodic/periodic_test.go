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
	after := calls.Load()
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, after, calls.Load(), "no call after Stop returned")

	var none *Runner
	none.Stop()
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
