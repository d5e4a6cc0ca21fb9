package tenantotlphttpexporter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/spool"
	"github.com/otelcol-gpu/otelcol-gpu/internal/tenanttemplate"

	"go.opentelemetry.io/collector/consumer/consumererror"
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

// record is one accepted part waiting to be sent. In the queue log, its
// bytes may be on disk only (data nil).
type record struct {
	seq      uint64
	items    int
	size     int
	data     []byte
	added    time.Time
	hot      bool      // its data kept in memory counts against the part store's bound
	inflight bool      // taken by a sender
	loc      spool.Loc // in the queue log: where it was written (zero until then)
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
	head, next uint64 // sequence numbers, the parts' keys in the queue log
	slots      int    // senders working on it, or its turns waiting in the ready channel
	takenItems int    // items of records in flight (taken by a sender)
	takenBytes int
	removed    bool // released as idle: enqueue must look the tenant up again
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
	q.head = e.parts.head(k.String())
	q.next = q.head
	if e.cfg.RateLimit.ItemsPerSecond > 0 {
		q.limiter = rate.NewLimiter(rate.Limit(e.cfg.RateLimit.ItemsPerSecond), e.cfg.RateLimit.Burst)
	}
	return q, nil
}

// testHookEnqueue, when set, is called as each part is enqueued (the test
// that a request's data is let go before its parts wait for the log).
var testHookEnqueue func()

// enqueue accepts one tenant's part, or refuses it retryably when its rate
// limit, its queue or the global budget is exhausted. Accepted data is
// in the queue log (with queue.directory) before enqueue returns.
func (e *tenantExporter) enqueue(ctx context.Context, sig signal, p part) error {
	if testHookEnqueue != nil {
		testHookEnqueue()
	}
	k := queueKey{sig: sig, tenant: p.tenant}
	var q *tenantQueue
	for {
		var err error
		if q, err = e.queue(k); err != nil {
			if errors.Is(err, errMaxTenants) {
				e.refused.Add(ctx, int64(p.items), e.attrs(k, attribute.String("reason", "max_tenants")))
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
	now := time.Now()
	q.lastActive = now
	if q.limiter != nil && !q.limiter.AllowN(now, p.items) {
		q.mu.Unlock()
		e.refused.Add(ctx, int64(p.items), e.attrs(k, attribute.String("reason", "rate_limit")))
		return fmt.Errorf("tenant_otlp_http: tenant %q is over its rate limit (%g items/s)", p.tenant, e.cfg.RateLimit.ItemsPerSecond)
	}
	if q.items+p.items > e.cfg.Queue.MaxItemsPerTenant {
		q.mu.Unlock()
		e.refused.Add(ctx, int64(p.items), e.attrs(k, attribute.String("reason", "tenant_queue_full")))
		return fmt.Errorf("tenant_otlp_http: tenant %q's queue is full (%d items): its destination is slow or failing", p.tenant, q.items)
	}
	if e.queued.Add(int64(len(p.data))) > e.cfg.Queue.MaxBytes {
		q.mu.Unlock()
		e.queued.Add(-int64(len(p.data)))
		e.refused.Add(ctx, int64(p.items), e.attrs(k, attribute.String("reason", "budget")))
		return errors.New("tenant_otlp_http: the queue budget (queue.max_bytes) is used up")
	}
	r := record{seq: q.next, items: p.items, size: len(p.data), data: p.data, added: now}
	// Submitted under q.mu, so a tenant's parts are written in order;
	// written with whatever other tenants submit meanwhile.
	written := e.parts.write(spool.Part{Queue: k.String(), Seq: r.seq, Items: r.items, Data: p.data})
	q.next++
	q.records = append(q.records, r)
	q.items += r.items
	q.bytes += r.size
	q.mu.Unlock()
	// Acknowledged only once kept. A failed write refuses the request (the
	// client sends it again); its part stays queued in memory and is sent
	// too, so it may arrive twice, never not at all.
	res := <-written
	q.mu.Lock()
	defer q.mu.Unlock()
	i := q.find(r.seq)
	if res.Err != nil {
		return fmt.Errorf("tenant_otlp_http: queue log: %w", res.Err)
	}
	if i < 0 { // sent before it was written
		e.parts.release(k.String(), []spool.Loc{res.Loc}, q.head)
	} else {
		q.records[i].loc = res.Loc
		e.keepHot(q, i)
	}
	if q.items >= e.cfg.Batch.MaxItems || q.bytes >= e.cfg.Batch.MaxBytes {
		e.markReady(q)
	}
	return nil
}

// keepHot keeps a written part's data in memory too where the part store
// says so. Callers hold q.mu.
func (e *tenantExporter) keepHot(q *tenantQueue, i int) {
	r := &q.records[i]
	keep, counted := e.parts.keep(r.size)
	r.hot = counted
	if !keep {
		r.data = nil
	}
}

// find is the index of the record with seq, or -1 (sent meanwhile).
// Callers hold q.mu.
func (q *tenantQueue) find(seq uint64) int {
	for i := len(q.records) - 1; i >= 0; i-- {
		switch r := q.records[i].seq; {
		case r == seq:
			return i
		case r < seq:
			return -1
		}
	}
	return -1
}

// markReady hands the queue to a sender: to one when none has it, and to
// more (up to senders_per_tenant) while a full batch more is waiting, so a
// tenant with a backlog is sent it by several requests at once. Callers
// hold q.mu.
func (e *tenantExporter) markReady(q *tenantQueue) {
	if len(q.records) == 0 || q.slots >= e.cfg.SendersPerTenant || time.Now().Before(q.retryAt) {
		return
	}
	items, bytes := q.items-q.takenItems, q.bytes-q.takenBytes
	if items == 0 || (q.slots > 0 && items < e.cfg.Batch.MaxItems && bytes < e.cfg.Batch.MaxBytes) {
		return
	}
	q.slots++
	e.ready <- q
}

// flush hands over queues whose oldest data has waited flush_interval (or
// whose backoff has passed) and releases idle tenants.
func (e *tenantExporter) flush() {
	e.parts.maintain(e)
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, q := range e.queues {
		q.mu.Lock()
		if len(q.records) > 0 && now.Sub(q.records[0].added) >= e.cfg.Batch.FlushInterval {
			e.markReady(q)
		}
		idle := len(q.records) == 0 && q.slots == 0 && now.Sub(q.lastActive) > e.cfg.IdleTimeout
		if idle {
			q.removed = true
		}
		q.mu.Unlock()
		if idle {
			delete(e.queues, k)
		}
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

// remove drops the n records from index i (sent, or dropped for good).
// Callers hold q.mu. The part store is told unwaited: lost in a crash, it
// only means the data is sent again. So is the queue's head, what was sent
// before its first record left.
func (e *tenantExporter) remove(q *tenantQueue, i, n, size int) {
	gone := q.records[i : i+n]
	locs := make([]spool.Loc, 0, n)
	for _, r := range gone {
		q.items -= r.items
		if r.hot {
			e.parts.forget(r.size)
		}
		locs = append(locs, r.loc)
	}
	q.bytes -= size
	e.queued.Add(-int64(size))
	select {
	case e.removed <- struct{}{}:
	default:
	}
	q.records = append(q.records[:i], q.records[i+n:]...)
	head := q.next
	if len(q.records) > 0 {
		head = q.records[0].seq
	}
	e.parts.release(q.key.String(), locs, head)
	q.head = head
}
