// Package admission decides whether the gateway takes a request before it
// is decoded, when taking it would cost memory the gateway does not have:
//
//   - a Limiter bounds the bytes of requests being decoded and processed at
//     once; a request waits for room, first come first served, as long as
//     the bytes already waiting stay under a second bound, and is refused
//     (retryably) past it;
//   - send queues register how full they are (Register); while any is full,
//     QueuesFull says so and new requests are refused before their bodies
//     are decoded, instead of being decoded and then refused by the queue.
//
// A refused request costs a header read, not a decode: that is what keeps
// the gateway's memory bounded and its CPU on the data it accepted when the
// load is more than it can carry.
package admission

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// ErrBusy refuses a request when the bytes waiting for room are at their
// bound; ErrQueuesFull when a send queue is full. Both are retryable.
var (
	ErrBusy       = errors.New("the gateway is at its in-flight limit; retry later")
	ErrQueuesFull = errors.New("the gateway's send queues are full; retry later")
)

// Limiter bounds the bytes in flight. The zero of either bound turns that
// bound off; a nil *Limiter admits everything.
type Limiter struct {
	limit     int64 // bytes decoded or being processed at once
	waitLimit int64 // bytes waiting for room
	sem       *semaphore.Weighted
	waiting   atomic.Int64
	inFlight  atomic.Int64
}

// NewLimiter returns a limiter of limit bytes in flight, with at most
// waitLimit bytes waiting for room. limit <= 0 returns nil (no limit).
func NewLimiter(limit, waitLimit int64) *Limiter {
	if limit <= 0 {
		return nil
	}
	return &Limiter{limit: limit, waitLimit: max(0, waitLimit), sem: semaphore.NewWeighted(limit)}
}

// Acquire takes room for a request of n bytes, waiting (until ctx ends) when
// there is none, or returns ErrBusy at once when the bytes already waiting
// would pass the wait limit. A request larger than the whole limit takes all
// of it. The returned release must be called once the request is done (it
// may be called more than once).
func (l *Limiter) Acquire(ctx context.Context, n int64) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	n = min(max(n, 1), l.limit)
	if !l.sem.TryAcquire(n) {
		if w := l.waiting.Add(n); w > l.waitLimit {
			l.waiting.Add(-n)
			return nil, ErrBusy
		}
		err := l.sem.Acquire(ctx, n)
		l.waiting.Add(-n)
		if err != nil {
			return nil, ErrBusy
		}
	}
	l.inFlight.Add(n)
	var once sync.Once
	return func() {
		once.Do(func() {
			l.inFlight.Add(-n)
			l.sem.Release(n)
		})
	}, nil
}

// Saturated reports whether the bytes waiting for room are at their bound:
// a request arriving now would be refused, and can be before it is read.
func (l *Limiter) Saturated() bool {
	return l != nil && l.waiting.Load() >= l.waitLimit
}

// InFlight and Waiting are the bytes admitted and waiting now.
func (l *Limiter) InFlight() int64 {
	if l == nil {
		return 0
	}
	return l.inFlight.Load()
}

func (l *Limiter) Waiting() int64 {
	if l == nil {
		return 0
	}
	return l.waiting.Load()
}

// ---- send queues ----

type queue struct{ full func() bool }

var queues struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*queue]
}

// Register adds a send queue whose full func says when it cannot take
// more; full is called on every request, so it must be cheap (an atomic
// load). unregister removes it (at the component's shutdown).
func Register(full func() bool) (unregister func()) {
	q := &queue{full: full}
	queues.mu.Lock()
	defer queues.mu.Unlock()
	var list []*queue
	if p := queues.list.Load(); p != nil {
		list = append(list, *p...)
	}
	list = append(list, q)
	queues.list.Store(&list)
	return func() {
		queues.mu.Lock()
		defer queues.mu.Unlock()
		var rest []*queue
		for _, x := range *queues.list.Load() {
			if x != q {
				rest = append(rest, x)
			}
		}
		queues.list.Store(&rest)
	}
}

// QueuesFull reports whether any registered send queue is full.
func QueuesFull() bool {
	p := queues.list.Load()
	if p == nil {
		return false
	}
	for _, q := range *p {
		if q.full() {
			return true
		}
	}
	return false
}
