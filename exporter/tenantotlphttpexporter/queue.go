package tenantotlphttpexporter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenanttemplate"

	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// The queues: one per tenant and signal, bounded, each with its own rate
// limit and retry state; what is accepted, when it is ready, what is released.

type queueKey struct {
	sig    signal
	tenant string
}

func (k queueKey) String() string { return k.sig.String() + "/" + k.tenant }

// record is one accepted part waiting to be sent. With storage its bytes
// live on disk and data is nil.
type record struct {
	seq   uint64
	items int
	size  int
	data  []byte
	added time.Time
}

// tenantQueue is one tenant's (and signal's) queue, retry state and rate
// limit. At most one sender works on it at a time, so its requests stay in
// order and a slow destination holds one sender, not all.
type tenantQueue struct {
	key     queueKey
	url     string
	headers http.Header
	limiter *rate.Limiter

	mu         sync.Mutex
	records    []record
	items      int
	bytes      int
	head, next uint64 // sequence numbers, for storage keys
	busy       bool   // with a sender, or waiting in the ready channel
	removed    bool   // released as idle: enqueue must look the tenant up again
	retryAt    time.Time
	attempt    int
	failingFor time.Time
	lastActive time.Time
}

// queue finds or creates the queue of a tenant and signal.
func (e *tenantExporter) queue(k queueKey) (*tenantQueue, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil, errStopped
	}
	if q, ok := e.queues[k]; ok {
		return q, nil
	}
	if len(e.queues) >= e.cfg.MaxTenants {
		if e.limitLog.Allow() {
			e.logger.Warn("max_tenants reached; new tenants are refused (retryably) until idle ones are released",
				zap.Int("max_tenants", e.cfg.MaxTenants), zap.String("tenant", k.tenant))
		}
		return nil, errMaxTenants
	}
	q, err := e.newQueue(k)
	if err != nil {
		return nil, err
	}
	e.queues[k] = q
	if err := e.saveIndex(); err != nil {
		delete(e.queues, k)
		return nil, err
	}
	return q, nil
}

func (e *tenantExporter) newQueue(k queueKey) (*tenantQueue, error) {
	vars := e.cfg.Tenants[k.tenant]
	tmpl := e.tmpl.endpoints[k.sig]
	if tmpl.Raw() == "" {
		return nil, consumererror.NewPermanent(fmt.Errorf("tenant_otlp_http: no %s endpoint configured", k.sig))
	}
	u, err := tenanttemplate.RenderURL(tmpl, k.tenant, vars)
	if err != nil {
		return nil, consumererror.NewPermanent(err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-protobuf")
	for name, t := range e.tmpl.headers {
		v, err := t.Render(k.tenant, vars, func(s string) string { return s })
		if err != nil {
			return nil, consumererror.NewPermanent(err)
		}
		h.Set(name, v)
	}
	q := &tenantQueue{key: k, url: u, headers: h, lastActive: time.Now()}
	if e.cfg.RateLimit.ItemsPerSecond > 0 {
		q.limiter = rate.NewLimiter(rate.Limit(e.cfg.RateLimit.ItemsPerSecond), e.cfg.RateLimit.Burst)
	}
	return q, nil
}

// enqueue accepts one tenant's part, or refuses it retryably when its rate
// limit, its queue or the global budget is exhausted. Accepted data is on
// disk (with storage) before enqueue returns.
func (e *tenantExporter) enqueue(ctx context.Context, sig signal, p part) error {
	k := queueKey{sig: sig, tenant: p.tenant}
	var q *tenantQueue
	for {
		var err error
		if q, err = e.queue(k); err != nil {
			if errors.Is(err, errMaxTenants) {
				e.refused.Add(ctx, int64(p.items), attrs(k, attribute.String("reason", "max_tenants")))
			}
			return err
		}
		q.mu.Lock()
		if !q.removed {
			break
		}
		// Released as idle between the lookup and the lock: a new queue
		// takes its place.
		q.mu.Unlock()
	}
	defer q.mu.Unlock()
	now := time.Now()
	q.lastActive = now
	if q.limiter != nil && !q.limiter.AllowN(now, p.items) {
		e.refused.Add(ctx, int64(p.items), attrs(k, attribute.String("reason", "rate_limit")))
		return fmt.Errorf("tenant_otlp_http: tenant %q is over its rate limit (%g items/s)", p.tenant, e.cfg.RateLimit.ItemsPerSecond)
	}
	if q.items+p.items > e.cfg.Queue.MaxItemsPerTenant {
		e.refused.Add(ctx, int64(p.items), attrs(k, attribute.String("reason", "tenant_queue_full")))
		return fmt.Errorf("tenant_otlp_http: tenant %q's queue is full (%d items): its destination is slow or failing", p.tenant, q.items)
	}
	if e.queued.Add(int64(len(p.data))) > e.cfg.Queue.MaxBytes {
		e.queued.Add(-int64(len(p.data)))
		e.refused.Add(ctx, int64(p.items), attrs(k, attribute.String("reason", "budget")))
		return errors.New("tenant_otlp_http: the queue budget (queue.max_bytes) is used up")
	}
	r := record{seq: q.next, items: p.items, size: len(p.data), data: p.data, added: now}
	if e.store != nil {
		if err := e.store.Batch(ctx,
			storage.SetOperation(recordKey(k, r.seq), encodeRecord(r.items, p.data)),
			storage.SetOperation(metaKey(k), encodeMeta(q.head, q.next+1))); err != nil {
			e.queued.Add(-int64(len(p.data)))
			return fmt.Errorf("tenant_otlp_http: queue storage: %w", err)
		}
		r.data = nil
	}
	q.next++
	q.records = append(q.records, r)
	q.items += r.items
	q.bytes += r.size
	if q.items >= e.cfg.Batch.MaxItems || q.bytes >= e.cfg.Batch.MaxBytes {
		e.markReady(q)
	}
	return nil
}

// markReady hands the queue to a sender unless one has it. Callers hold q.mu.
func (e *tenantExporter) markReady(q *tenantQueue) {
	if q.busy || len(q.records) == 0 || time.Now().Before(q.retryAt) {
		return
	}
	q.busy = true
	e.ready <- q
}

// flush hands over queues whose oldest data has waited flush_interval (or
// whose backoff has passed) and releases idle tenants.
func (e *tenantExporter) flush() {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	released := false
	for k, q := range e.queues {
		q.mu.Lock()
		if len(q.records) > 0 && now.Sub(q.records[0].added) >= e.cfg.Batch.FlushInterval {
			e.markReady(q)
		}
		idle := len(q.records) == 0 && !q.busy && now.Sub(q.lastActive) > e.cfg.IdleTimeout
		if idle {
			q.removed = true
		}
		q.mu.Unlock()
		if idle {
			delete(e.queues, k)
			released = true
			if e.store != nil {
				_ = e.store.Delete(context.Background(), metaKey(k))
			}
		}
	}
	if released {
		_ = e.saveIndex()
	}
}

func (e *tenantExporter) flushAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, q := range e.queues {
		q.mu.Lock()
		e.markReady(q)
		q.mu.Unlock()
	}
}

// dequeue drops the first n records. Callers hold q.mu.
func (e *tenantExporter) dequeue(q *tenantQueue, n, size int) {
	if e.store != nil {
		ops := make([]*storage.Operation, 0, n+1)
		for _, r := range q.records[:n] {
			ops = append(ops, storage.DeleteOperation(recordKey(q.key, r.seq)))
		}
		head := q.records[n-1].seq + 1
		ops = append(ops, storage.SetOperation(metaKey(q.key), encodeMeta(head, q.next)))
		if err := e.store.Batch(context.Background(), ops...); err != nil {
			e.logger.Warn("queue storage: cannot delete sent data (it may be sent again)", zap.Error(err))
		}
		q.head = head
	}
	for _, r := range q.records[:n] {
		q.items -= r.items
	}
	q.bytes -= size
	q.records = q.records[n:]
	e.queued.Add(-int64(size))
}
