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
}

// newTenantLimits holds each tenant to this replica's share of its limits:
// max_concurrent, queries_per_second and burst divided by limits.replicas,
// rounded up (at least one query at once and one in the burst), so that a
// tenant spreading its queries over every replica of the tier gets at most
// its limits plus the rounding.
func newTenantLimits(cfg LimitsConfig) *tenantLimits {
	n := max(cfg.Replicas, 1)
	share := cfg
	share.MaxConcurrent = ceilDiv(cfg.MaxConcurrent, n)
	share.QueriesPerSecond = cfg.QueriesPerSecond / float64(n)
	share.Burst = ceilDiv(cfg.Burst, n)
	return &tenantLimits{cfg: share, m: map[string]*tenantLimit{}}
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return a
	}
	return (a + b - 1) / b
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
		l.m[tenant] = tl
	}
	return tl
}

// refusal says why admit refused and when to come back.
type refusal struct {
	reason     string // rate_limited or concurrency
	retryAfter time.Duration
}

// admit takes a query slot for tenant: at once if the tenant is under its
// rate, waiting up to queue_wait for one of its concurrent slots behind at
// most max_queued others. release
// gives the slot back.
func (l *tenantLimits) admit(ctx context.Context, tenant string) (release func(), refused *refusal) {
	tl := l.of(tenant)
	if tl.bucket != nil {
		r := tl.bucket.Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			return nil, &refusal{reason: "rate_limited", retryAfter: d}
		}
	}
	select {
	case tl.slots <- struct{}{}:
		return func() { <-tl.slots }, nil
	default:
	}
	if int(tl.waiting.Add(1)) > l.cfg.MaxQueued {
		tl.waiting.Add(-1)
		return nil, &refusal{reason: "concurrency", retryAfter: time.Second}
	}
	defer tl.waiting.Add(-1)
	wait := time.NewTimer(l.cfg.QueueWait)
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
