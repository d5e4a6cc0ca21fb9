package tenantauthextension

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFailureThrottle(t *testing.T) {
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	f := newFailureThrottle(3, 1024)
	f.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		require.False(t, f.blocked("10.0.0.1"))
		f.fail("10.0.0.1")
	}
	require.True(t, f.blocked("10.0.0.1"), "the fourth try in the minute is refused outright")
	require.False(t, f.blocked("10.0.0.2"), "another source is not")
	now = now.Add(time.Minute)
	require.False(t, f.blocked("10.0.0.1"), "a new minute, a new budget")

	// Memory is the table, whatever the number of sources.
	for i := 0; i < 100_000; i++ {
		f.fail(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
	}
	require.Len(t, f.buckets, 1024)

	off := newFailureThrottle(0, 10)
	require.Nil(t, off)
	off.fail("x")
	require.False(t, off.blocked("x"))
}
