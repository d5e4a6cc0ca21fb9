// Package admission decides whether the gateway takes a request before it
// is decoded, when taking it would cost memory the gateway does not have:
//
//   - a Limiter bounds the bytes of requests being decoded and processed at
//     once; a request waits for room, first come first served, as long as
//     the bytes already waiting stay under a second bound, and is refused
//     (retryably) past it;
//   - send queues register how full they are under their component's id
//     (Register); while one that a guard names (Queues) is full, new
//     requests are refused before their bodies are decoded, instead of
//     being decoded and then refused by the queue.
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

	"go.opentelemetry.io/collector/component"
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

// queues are the send queues that have registered, by their component's
// id: the tenant_otlp_http exporters. A receiver's guard asks about the
// ones its config names (Queues), never about every queue in the process.
var queues struct {
	mu sync.Mutex
	m  atomic.Pointer[map[component.ID][]*queue]
}

type queue struct{ full func() bool }

// Register adds the send queue of component id, whose full func says when
// it cannot take more; full is called on every request a guard that names
// id checks, so it must be cheap (an atomic load). unregister removes it
// (at the component's shutdown).
func Register(id component.ID, full func() bool) (unregister func()) {
	q := &queue{full: full}
	update := func(change func(map[component.ID][]*queue)) {
		queues.mu.Lock()
		defer queues.mu.Unlock()
		next := map[component.ID][]*queue{}
		if p := queues.m.Load(); p != nil {
			for k, v := range *p {
				next[k] = append([]*queue(nil), v...)
			}
		}
		change(next)
		queues.m.Store(&next)
	}
	update(func(m map[component.ID][]*queue) { m[id] = append(m[id], q) })
	return func() {
		update(func(m map[component.ID][]*queue) {
			rest := m[id][:0]
			for _, x := range m[id] {
				if x != q {
					rest = append(rest, x)
				}
			}
			if len(rest) == 0 {
				delete(m, id)
			} else {
				m[id] = rest
			}
		})
	}
}

// Queues are the send queues one guard refuses requests for while they are
// full, named by their components' ids in its config.
type Queues []component.ID

// Full reports whether any of the named send queues is full. A name that
// has not registered (its exporter not started, or not in this process)
// is not full.
func (ids Queues) Full() bool {
	if len(ids) == 0 {
		return false
	}
	p := queues.m.Load()
	if p == nil {
		return false
	}
	for _, id := range ids {
		for _, q := range (*p)[id] {
			if q.full() {
				return true
			}
		}
	}
	return false
}
