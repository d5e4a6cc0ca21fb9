// Package periodic runs a component's background refresh (credentials file
// reloads, tenant source re-reads) on a ticker until the component shuts
// down, and keeps the "log a failure once until it changes" rule in one place.
package periodic

import (
	"sync"
	"sync/atomic"
	"time"
)

// Runner calls a function every interval on its own goroutine.
type Runner struct {
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// Start calls fn every interval until Stop.
func Start(interval time.Duration, fn func()) *Runner {
	t := time.NewTicker(interval)
	return startTicks(t.C, t.Stop, fn)
}

// startTicks calls fn on every tick until Stop, then calls done.
func startTicks(ticks <-chan time.Time, done, fn func()) *Runner {
	r := &Runner{stop: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer done()
		for {
			select {
			case <-r.stop:
				return
			case <-ticks:
				fn()
			}
		}
	}()
	return r
}

// Stop ends the loop and waits for a call in progress. It is safe on a nil
// Runner (a component shut down without having started) and when repeated.
func (r *Runner) Stop() {
	if r == nil {
		return
	}
	r.stopOnce.Do(func() { close(r.stop) })
	r.wg.Wait()
}

// ErrorLatch reports a failure once until it changes or a success clears
// it, so a broken file polled every few seconds logs one line, not one per poll.
// It is meant for one goroutine (the Runner's).
type ErrorLatch struct{ last string }

// Changed records err and reports whether it differs from the last one
// recorded; nil clears the latch and reports false.
func (l *ErrorLatch) Changed(err error) bool {
	if err == nil {
		l.last = ""
		return false
	}
	if err.Error() == l.last {
		return false
	}
	l.last = err.Error()
	return true
}

// Every lets one caller through per interval, whichever goroutine asks: the
// "log this at most every 10 s, count every one" rule for warnings about
// data that a hostile or broken peer can trigger on every request.
type Every struct {
	Interval time.Duration
	last     atomic.Int64 // unix nanos of the last call let through
}

// Allow reports whether the caller may act now.
func (e *Every) Allow() bool {
	now := time.Now().UnixNano()
	last := e.last.Load()
	return now-last >= int64(e.Interval) && e.last.CompareAndSwap(last, now)
}
