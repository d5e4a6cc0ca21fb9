package failthrottle

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFailureThrottle(t *testing.T) {
	now := time.Date(2026, 1, 1, 10, 0, 15, 0, time.UTC)
	f := New(3, 1024)
	f.Now = func() time.Time { return now }
	blocked := func(source string) bool { _, b := f.Blocked(source); return b }
	for i := 0; i < 3; i++ {
		require.False(t, blocked("10.0.0.1"))
		f.Fail("10.0.0.1")
	}
	retry, b := f.Blocked("10.0.0.1")
	require.True(t, b, "the fourth failure in the minute is throttled")
	require.Equal(t, 45*time.Second, retry, "until the minute's end")
	require.False(t, blocked("10.0.0.2"), "another source is not")
	now = now.Add(time.Minute)
	require.False(t, blocked("10.0.0.1"), "a new minute, a new budget")

	// Memory is the table, whatever the number of sources.
	for i := 0; i < 100_000; i++ {
		f.Fail(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
	}
	require.Len(t, f.buckets, 1024)

	off := New(0, 10)
	require.Nil(t, off)
	off.Fail("x")
	_, b = off.Blocked("x")
	require.False(t, b)
}
