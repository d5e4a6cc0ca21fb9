package proc

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReservedPortsAreDistinctAndOutsideTheEphemeralRange(t *testing.T) {
	lo, hi := reservableRange()
	seen := map[int]bool{}
	for range 200 {
		p := Port(t)
		require.False(t, seen[p], "port %d handed out twice", p)
		seen[p] = true
		require.True(t, p >= lo && p <= hi, "port %d outside %d-%d", p, lo, hi)
	}
}

// A reservation excludes every other holder: another open of the lock
// file (what a second process does) cannot take it until it is released.
func TestAReservedPortIsNotReservedAgainUntilReleased(t *testing.T) {
	r, err := Reserve()
	require.NoError(t, err)
	again, err := tryReserve(r.Port)
	require.NoError(t, err)
	require.Nil(t, again, "port %d reserved twice", r.Port)

	r.Release()
	again, err = tryReserve(r.Port)
	require.NoError(t, err)
	require.NotNil(t, again, "a released port can be reserved again")
	again.Release()
}

func TestAPortSomethingListensOnIsNotReserved(t *testing.T) {
	r, err := Reserve()
	require.NoError(t, err)
	r.Release()
	l, err := net.Listen("tcp", Addr(r.Port))
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	got, err := tryReserve(r.Port)
	require.NoError(t, err)
	require.Nil(t, got, "port %d has a listener", r.Port)
}

// The child can bind what it was given: the reservation holds no socket.
func TestAReservedPortCanBeBound(t *testing.T) {
	l, err := net.Listen("tcp", Addr(Port(t)))
	require.NoError(t, err)
	require.NoError(t, l.Close())
}

func TestRetryBindRetriesOnlyABindFailure(t *testing.T) {
	var logged []string
	logf := func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }
	script := func(s string) func() (*Proc, error) {
		return func() (*Proc, error) {
			p, err := StartWriter("child", "sh", []string{"-c", s}, nil, nil)
			require.NoError(t, err)
			return p, p.Wait(10 * time.Second)
		}
	}

	// Taken on the first two tries, bound on the third.
	calls := 0
	p, err := RetryBind(3, logf, func() (*Proc, error) {
		calls++
		if calls < 3 {
			return script("echo 'listen tcp 127.0.0.1:1: bind: address already in use'; exit 1")()
		}
		return script("exit 0")()
	})
	require.NoError(t, err)
	require.NotNil(t, p)
	require.Equal(t, 3, calls)
	require.Len(t, logged, 2)
	require.Contains(t, logged[0], "a port was taken (attempt 1 of 3)")

	// Any other failure is returned at once.
	logged, calls = nil, 0
	_, err = RetryBind(3, logf, func() (*Proc, error) { calls++; return script("echo 'config error'; exit 1")() })
	require.Error(t, err)
	require.Equal(t, 1, calls)
	require.Empty(t, logged)

	// Bounded: the last attempt's failure is returned.
	calls = 0
	_, err = RetryBind(2, logf, func() (*Proc, error) {
		calls++
		return script("echo 'bind: address already in use'; exit 1")()
	})
	require.Error(t, err)
	require.Equal(t, 2, calls)
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := &tailBuffer{max: 10}
	for i := range 100 {
		_, _ = fmt.Fprintf(b, "%d,", i)
	}
	require.Len(t, b.String(), 10)
	require.True(t, strings.HasSuffix(b.String(), "98,99,"))
}
