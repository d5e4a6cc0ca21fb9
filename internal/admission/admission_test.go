package admission

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
)

func TestLimiterWaitsForRoomThenRefuses(t *testing.T) {
	l := NewLimiter(100, 50)
	r1, err := l.Acquire(context.Background(), 80)
	require.NoError(t, err)
	require.EqualValues(t, 80, l.InFlight())

	// 40 more do not fit: the request waits for room.
	got := make(chan error, 1)
	go func() {
		r, err := l.Acquire(context.Background(), 40)
		if err == nil {
			defer r()
		}
		got <- err
	}()
	require.Eventually(t, func() bool { return l.Waiting() == 40 }, 5*time.Second, time.Millisecond)
	require.False(t, l.Saturated())

	// Another 20 would pass the wait limit (40+20 > 50): refused at once.
	_, err = l.Acquire(context.Background(), 20)
	require.ErrorIs(t, err, ErrBusy)

	r1()
	r1() // a second release gives nothing back twice
	require.NoError(t, <-got)
	require.EqualValues(t, 0, l.Waiting())
	require.Eventually(t, func() bool { return l.InFlight() == 0 }, 5*time.Second, time.Millisecond)
}

func TestLimiterGivesUpWhenTheContextEnds(t *testing.T) {
	l := NewLimiter(10, 100)
	r, err := l.Acquire(context.Background(), 10)
	require.NoError(t, err)
	defer r()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = l.Acquire(ctx, 5)
	require.ErrorIs(t, err, ErrBusy)
	require.EqualValues(t, 0, l.Waiting(), "the waiter's bytes are no longer counted")
}

func TestLimiterSaturatedAndOversized(t *testing.T) {
	l := NewLimiter(10, 5)
	r, err := l.Acquire(context.Background(), 1000) // larger than the limit: takes all of it
	require.NoError(t, err)
	require.EqualValues(t, 10, l.InFlight())
	go func() { _, _ = l.Acquire(context.Background(), 5) }()
	require.Eventually(t, l.Saturated, 5*time.Second, time.Millisecond)
	r()
	require.Eventually(t, func() bool { return !l.Saturated() }, 5*time.Second, time.Millisecond)

	var none *Limiter // limit 0: no limiter, everything admitted
	require.Nil(t, NewLimiter(0, 10))
	r, err = none.Acquire(context.Background(), 1<<40)
	require.NoError(t, err)
	r()
	require.False(t, none.Saturated())
}

func TestQueuesFull(t *testing.T) {
	var a, b atomic.Bool
	idA := component.MustNewIDWithName("tenant_otlp_http", "a")
	idB := component.MustNewIDWithName("tenant_otlp_http", "b")
	both, onlyA := Queues{idA, idB}, Queues{idA}
	require.False(t, both.Full())
	unA := Register(idA, a.Load)
	unB := Register(idB, b.Load)
	require.False(t, both.Full())
	b.Store(true)
	require.True(t, both.Full(), "one full queue is enough")
	require.False(t, onlyA.Full(), "a queue the guard does not name never refuses its requests")
	require.False(t, Queues(nil).Full())
	unB()
	require.False(t, both.Full(), "an unregistered queue no longer counts")
	a.Store(true)
	require.True(t, onlyA.Full())
	unA()
	require.False(t, both.Full())
}
