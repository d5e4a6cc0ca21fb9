package tenantqueryextension

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// tenantLimits holds each tenant's share of the store: a token bucket of
// queries per second and a number of queries at the store at once. Tenants
// appear here only once authenticated, so the table is bounded by the
// credentials file.
type tenantLimits struct {
	cfg LimitsConfig

	mu sync.Mutex
	m  map[string]*tenantLimit
}

type tenantLimit struct {
	bucket  *rate.Limiter // nil: no rate limit
	slots   chan struct{}
	waiting atomic.Int32
	time    *timeBucket // nil: store time is not limited
}

// timeBucket is a tenant's store time: seconds it may still spend, earned
// back at rate up to burst, spent by each query as it runs. The queries
// running count with the time they have run so far, so a tenant whose
// long queries are still running is refused before they end.
type timeBucket struct {
	rate  float64 // seconds per second
	burst float64 // seconds
	now   func() time.Time

	mu       sync.Mutex
	tokens   float64 // seconds left, as of last; below 0 after a costly query
	last     time.Time
	running  int   // queries at the store now
	startSum int64 // the sum of their starts (unix nanoseconds)
}

func newTimeBucket(perSecond float64, burst time.Duration) *timeBucket {
	if perSecond <= 0 {
		return nil
	}
	return &timeBucket{rate: perSecond, burst: burst.Seconds(), tokens: burst.Seconds(), now: time.Now, last: time.Now()}
}

// refill earns time up to now. Called with mu held.
func (b *timeBucket) refill(now time.Time) {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
}

// start admits a query when the tenant has time left (the running
// queries' time so far counted), and returns its end; else how long until
// it has.
func (b *timeBucket) start() (end func(), wait time.Duration) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	left := b.tokens - time.Duration(int64(b.running)*now.UnixNano()-b.startSum).Seconds()
	if left <= 0 {
		return nil, time.Duration((-left/b.rate + 1) * float64(time.Second))
	}
	started := now.UnixNano()
	b.running++
	b.startSum += started
	return func() {
		end := b.now()
		b.mu.Lock()
		defer b.mu.Unlock()
		b.refill(end)
		b.running--
		b.startSum -= started
		b.tokens -= time.Duration(end.UnixNano() - started).Seconds()
	}, 0
}

// newTenantLimits holds each tenant to this replica's share of its limits:
// max_concurrent, burst and store_time_burst divided by limits.replicas,
// rounded down (but at least one query), and the rates divided, so that a
// tenant spreading its queries over every replica of the tier gets no more
// than its limits (unless they are below one query a replica).
func newTenantLimits(cfg LimitsConfig) *tenantLimits {
	n := max(cfg.Replicas, 1)
	share := cfg
	share.MaxConcurrent = max(cfg.MaxConcurrent/n, 1)
	share.QueriesPerSecond = cfg.QueriesPerSecond / float64(n)
	share.Burst = max(cfg.Burst/n, 1)
	share.StoreTimePerSecond = cfg.StoreTimePerSecond / float64(n)
	share.StoreTimeBurst = cfg.StoreTimeBurst / time.Duration(n)
	return &tenantLimits{cfg: share, m: map[string]*tenantLimit{}}
}

func (l *tenantLimits) of(tenant string) *tenantLimit {
	l.mu.Lock()
	defer l.mu.Unlock()
	tl, ok := l.m[tenant]
	if !ok {
		tl = &tenantLimit{slots: make(chan struct{}, l.cfg.MaxConcurrent)}
		if l.cfg.QueriesPerSecond > 0 {
			tl.bucket = rate.NewLimiter(rate.Limit(l.cfg.QueriesPerSecond), l.cfg.Burst)
		}
		tl.time = newTimeBucket(l.cfg.StoreTimePerSecond, l.cfg.StoreTimeBurst)
		l.m[tenant] = tl
	}
	return tl
}

// refusal says why admit refused and when to come back.
type refusal struct {
	reason     string // rate_limited, store_time or concurrency
	retryAfter time.Duration
}

// admit takes a query slot for tenant: at once if the tenant is under its
// rate and has store time left, waiting up to queue_wait for one of its
// concurrent slots behind at most max_queued others. The store time runs
// from the slot on (the query's body and the store's work) until stopClock
// (once the store has answered: writing the answer to a slow client is not
// store time); release gives the slot back, stopping the clock if it runs.
func (l *tenantLimits) admit(ctx context.Context, tenant string) (release, stopClock func(), refused *refusal) {
	tl := l.of(tenant)
	if tl.bucket != nil {
		r := tl.bucket.Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			return nil, nil, &refusal{reason: "rate_limited", retryAfter: d}
		}
	}
	slot, refused := tl.takeSlot(ctx, l.cfg)
	if refused != nil {
		return nil, nil, refused
	}
	if tl.time == nil {
		return slot, func() {}, nil
	}
	end, wait := tl.time.start()
	if end == nil {
		slot()
		return nil, nil, &refusal{reason: "store_time", retryAfter: wait}
	}
	stop := sync.OnceFunc(end)
	return func() { stop(); slot() }, stop, nil
}

// takeSlot takes one of the tenant's concurrent slots, waiting as admit
// says.
func (tl *tenantLimit) takeSlot(ctx context.Context, cfg LimitsConfig) (release func(), refused *refusal) {
	select {
	case tl.slots <- struct{}{}:
		return func() { <-tl.slots }, nil
	default:
	}
	if int(tl.waiting.Add(1)) > cfg.MaxQueued {
		tl.waiting.Add(-1)
		return nil, &refusal{reason: "concurrency", retryAfter: time.Second}
	}
	defer tl.waiting.Add(-1)
	wait := time.NewTimer(cfg.QueueWait)
	defer wait.Stop()
	select {
	case tl.slots <- struct{}{}:
		return func() { <-tl.slots }, nil
	case <-wait.C:
		return nil, &refusal{reason: "concurrency", retryAfter: time.Second}
	case <-ctx.Done():
		return nil, &refusal{reason: "concurrency", retryAfter: time.Second}
	}
}

// inFlight is how many of tenant's queries are at the store now.
func (l *tenantLimits) inFlight(tenant string) int {
	return len(l.of(tenant).slots)
}
