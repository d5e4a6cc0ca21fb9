package tenantotlphttpexporter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/tenantotlphttpexporter/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
)

// Retryable refusals: the agent's queue keeps the data and sends it again.
var (
	errStopped    = errors.New("tenant_otlp_http: shutting down")
	errMaxTenants = errors.New("tenant_otlp_http: max_tenants reached")
)

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

type tenantExporter struct {
	cfg    *Config
	tmpl   templates
	logger *zap.Logger
	set    component.TelemetrySettings

	client *http.Client
	store  storage.Client

	mu        sync.Mutex
	queues    map[queueKey]*tenantQueue
	stopped   bool
	queued    atomic.Int64 // bytes queued, all tenants
	lastLimit atomic.Int64 // unix nanos of the last max_tenants log

	ready   chan *tenantQueue
	stop    chan struct{}
	senders sync.WaitGroup
	flusher *periodic.Runner

	sent, failed, refused metric.Int64Counter
	queueGauge            metric.Int64ObservableGauge
	reg                   metric.Registration
}

func newTenantExporter(cfg *Config, set component.TelemetrySettings) (*tenantExporter, error) {
	t, errs := cfg.parseTemplates()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	e := &tenantExporter{
		cfg: cfg, tmpl: t, logger: set.Logger, set: set,
		queues: map[queueKey]*tenantQueue{},
		ready:  make(chan *tenantQueue, cfg.MaxTenants*int(numSignals)),
		stop:   make(chan struct{}),
	}
	meter := set.MeterProvider.Meter(metadata.ScopeName)
	var merrs [4]error
	e.sent, merrs[0] = meter.Int64Counter("otelcol_exporter_tenant_sent_items",
		metric.WithDescription("Items (data points, log records, spans) the store accepted, by tenant and signal."), metric.WithUnit("{item}"))
	e.failed, merrs[1] = meter.Int64Counter("otelcol_exporter_tenant_failed_items",
		metric.WithDescription("Items dropped: refused for good by the store, retries exhausted, or untagged, by tenant and signal."), metric.WithUnit("{item}"))
	e.refused, merrs[2] = meter.Int64Counter("otelcol_exporter_tenant_refused_items",
		metric.WithDescription("Items refused at intake with a retryable error, by tenant, signal and reason (rate_limit, tenant_queue_full, budget, max_tenants)."),
		metric.WithUnit("{item}"))
	e.queueGauge, merrs[3] = meter.Int64ObservableGauge("otelcol_exporter_tenant_queue_items",
		metric.WithDescription("Items waiting to be sent, by tenant and signal."), metric.WithUnit("{item}"))
	if err := errors.Join(merrs[:]...); err != nil {
		return nil, err
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		for k, q := range e.queues {
			q.mu.Lock()
			o.ObserveInt64(e.queueGauge, int64(q.items), metric.WithAttributes(attribute.String("tenant", k.tenant), attribute.String("signal", k.sig.String())))
			q.mu.Unlock()
		}
		return nil
	}, e.queueGauge)
	if err != nil {
		return nil, err
	}
	e.reg = reg
	return e, nil
}

func attrs(k queueKey, more ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributes(append([]attribute.KeyValue{attribute.String("tenant", k.tenant), attribute.String("signal", k.sig.String())}, more...)...)
}

// Start opens the HTTP client and the storage, restores queued data, and
// starts the senders and the flusher.
func (e *tenantExporter) Start(ctx context.Context, host component.Host) error {
	client, err := e.cfg.ClientConfig.ToClient(ctx, host.GetExtensions(), e.set)
	if err != nil {
		return fmt.Errorf("tenant_otlp_http: http client: %w", err)
	}
	e.client = client
	if id := e.cfg.Queue.Storage; id != nil {
		ext, ok := host.GetExtensions()[*id]
		if !ok {
			return fmt.Errorf("tenant_otlp_http: queue.storage: no extension %q", id)
		}
		se, ok := ext.(storage.Extension)
		if !ok {
			return fmt.Errorf("tenant_otlp_http: queue.storage: %q is not a storage extension", id)
		}
		if e.store, err = se.GetClient(ctx, component.KindExporter, component.NewID(metadata.Type), "queues"); err != nil {
			return fmt.Errorf("tenant_otlp_http: queue.storage: %w", err)
		}
		if err := e.restore(ctx); err != nil {
			return err
		}
	}
	for i := 0; i < e.cfg.Senders; i++ {
		e.senders.Add(1)
		go e.sendLoop()
	}
	e.flusher = periodic.Start(max(e.cfg.Batch.FlushInterval/2, time.Millisecond), e.flush)
	return nil
}

// Shutdown stops intake, sends what it can within drain_timeout, and leaves
// the rest on disk (with storage) or reports it lost (without).
func (e *tenantExporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil
	}
	e.stopped = true
	e.mu.Unlock()
	if e.reg != nil {
		_ = e.reg.Unregister()
	}
	if e.client == nil { // never started
		return nil
	}
	// Drain while it makes progress: a store that is down would only hold
	// shutdown until drain_timeout for nothing.
	deadline := time.Now().Add(e.cfg.DrainTimeout)
	left, progress := e.queuedItems(), time.Now()
	for left > 0 && time.Now().Before(deadline) && time.Since(progress) < time.Second && ctx.Err() == nil {
		e.flushAll()
		time.Sleep(10 * time.Millisecond)
		if n := e.queuedItems(); n < left {
			left, progress = n, time.Now()
		}
	}
	e.flusher.Stop()
	close(e.stop)
	e.senders.Wait()
	left = e.queuedItems()
	var err error
	if e.store != nil {
		if left > 0 {
			e.logger.Info("tenant_otlp_http: queued data stays on disk for the next start", zap.Int("items", left))
		}
		err = e.store.Close(ctx)
	} else if left > 0 {
		e.logger.Warn("tenant_otlp_http: shutdown with data still queued and no storage: it is lost", zap.Int("items", left))
	}
	return err
}

func (e *tenantExporter) queuedItems() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, q := range e.queues {
		q.mu.Lock()
		n += q.items
		q.mu.Unlock()
	}
	return n
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
		now := time.Now().UnixNano()
		if last := e.lastLimit.Load(); now-last > int64(10*time.Second) && e.lastLimit.CompareAndSwap(last, now) {
			e.logger.Warn("tenant_otlp_http: max_tenants reached; new tenants are refused (retryably) until idle ones are released",
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
	if tmpl.raw == "" {
		return nil, consumererror.NewPermanent(fmt.Errorf("tenant_otlp_http: no %s endpoint configured", k.sig))
	}
	u, err := renderURL(tmpl, k.tenant, vars)
	if err != nil {
		return nil, consumererror.NewPermanent(err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-protobuf")
	for name, t := range e.tmpl.headers {
		v, err := t.render(k.tenant, vars, func(s string) string { return s })
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

func (e *tenantExporter) sendLoop() {
	defer e.senders.Done()
	for {
		select {
		case <-e.stop:
			return
		case q := <-e.ready:
			e.send(q)
		}
	}
}

// send posts the head of a tenant's queue as one request: up to
// batch.max_items and max_bytes of parts, concatenated.
func (e *tenantExporter) send(q *tenantQueue) {
	q.mu.Lock()
	n, items, size := 0, 0, 0
	for n < len(q.records) {
		r := q.records[n]
		if n > 0 && (items+r.items > e.cfg.Batch.MaxItems || size+r.size > e.cfg.Batch.MaxBytes) {
			break
		}
		n++
		items += r.items
		size += r.size
	}
	batch := append([]record(nil), q.records[:n]...)
	q.mu.Unlock()

	body, err := e.body(q.key, batch, size)
	if err == nil {
		err = e.post(q, body)
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	q.busy = false
	switch {
	case err == nil:
		e.sent.Add(context.Background(), int64(items), attrs(q.key))
		q.attempt, q.failingFor, q.retryAt = 0, time.Time{}, time.Time{}
	case consumererror.IsPermanent(err):
		e.failed.Add(context.Background(), int64(items), attrs(q.key))
		e.logger.Warn("tenant_otlp_http: the store refused a request for good; dropped", zap.String("tenant", q.key.tenant),
			zap.String("signal", q.key.sig.String()), zap.Int("items", items), zap.Error(err))
	default:
		if q.attempt == 0 {
			q.failingFor = time.Now()
			e.logger.Warn("tenant_otlp_http: sending failed; retrying with backoff (other tenants are not affected)",
				zap.String("tenant", q.key.tenant), zap.String("signal", q.key.sig.String()), zap.Error(err))
		}
		if mx := e.cfg.RetryOnFailure.MaxElapsedTime; mx > 0 && time.Since(q.failingFor) > mx {
			e.failed.Add(context.Background(), int64(items), attrs(q.key))
			e.logger.Warn("tenant_otlp_http: retries exhausted; dropped", zap.String("tenant", q.key.tenant), zap.Int("items", items))
			q.attempt, q.failingFor = 0, time.Time{}
		} else {
			q.attempt++
			q.retryAt = time.Now().Add(e.backoff(q.attempt, err))
			return
		}
	}
	e.dequeue(q, n, size)
	if q.items >= e.cfg.Batch.MaxItems || q.bytes >= e.cfg.Batch.MaxBytes {
		e.markReady(q)
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
			e.logger.Warn("tenant_otlp_http: queue storage: cannot delete sent data (it may be sent again)", zap.Error(err))
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

func (e *tenantExporter) body(k queueKey, batch []record, size int) ([]byte, error) {
	if len(batch) == 1 && batch[0].data != nil {
		return batch[0].data, nil
	}
	buf := make([]byte, 0, size)
	for _, r := range batch {
		data := r.data
		if data == nil {
			v, err := e.store.Get(context.Background(), recordKey(k, r.seq))
			if err != nil || len(v) < 4 {
				return nil, fmt.Errorf("tenant_otlp_http: queue storage: record %d of %s: %w", r.seq, k, err)
			}
			data = v[4:]
		}
		buf = append(buf, data...)
	}
	return buf, nil
}

// post sends one request. 429, 502, 503, 504 and transport errors are
// retryable (Retry-After honoured); other 4xx are permanent.
func (e *tenantExporter) post(q *tenantQueue, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, q.url, bytes.NewReader(body))
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	req.Header = q.headers.Clone()
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	err = fmt.Errorf("%s answered %s: %s", q.url, resp.Status, strings.TrimSpace(string(msg)))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			return retryAfter{err: err, after: time.Duration(s) * time.Second}
		}
		return err
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return consumererror.NewPermanent(err)
	}
	return err
}

type retryAfter struct {
	err   error
	after time.Duration
}

func (r retryAfter) Error() string { return r.err.Error() }

// backoff is the exponential delay before attempt n, with jitter.
func (e *tenantExporter) backoff(n int, err error) time.Duration {
	var ra retryAfter
	if errors.As(err, &ra) {
		return ra.after
	}
	rc := e.cfg.RetryOnFailure
	d := float64(rc.InitialInterval)
	for i := 1; i < n && d < float64(rc.MaxInterval); i++ {
		d *= rc.Multiplier
	}
	d = min(d, float64(rc.MaxInterval))
	if rc.RandomizationFactor > 0 {
		d *= 1 + rc.RandomizationFactor*(2*rand.Float64()-1)
	}
	return time.Duration(d)
}

// Storage layout: one client for every tenant. "index" lists the queues;
// "m/<signal>/<tenant>" holds a queue's head and next sequence numbers;
// "r/<signal>/<tenant>/<seq>" holds a record: 4 bytes of item count, then
// the protobuf.

func recordKey(k queueKey, seq uint64) string {
	return "r/" + k.String() + "/" + strconv.FormatUint(seq, 10)
}
func metaKey(k queueKey) string { return "m/" + k.String() }

func encodeRecord(items int, data []byte) []byte {
	b := make([]byte, 4, 4+len(data))
	binary.BigEndian.PutUint32(b, uint32(items))
	return append(b, data...)
}

func encodeMeta(head, next uint64) []byte {
	return []byte(strconv.FormatUint(head, 10) + " " + strconv.FormatUint(next, 10))
}

// saveIndex writes the list of queues. Callers hold e.mu.
func (e *tenantExporter) saveIndex() error {
	if e.store == nil {
		return nil
	}
	keys := make([]string, 0, len(e.queues))
	for k := range e.queues {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	return e.store.Set(context.Background(), "index", []byte(strings.Join(keys, "\n")))
}

// restore rebuilds every queue that has data on disk, so a restarted
// gateway sends it even for tenants that send nothing new.
func (e *tenantExporter) restore(ctx context.Context) error {
	idx, err := e.store.Get(ctx, "index")
	if err != nil {
		return fmt.Errorf("tenant_otlp_http: queue storage: %w", err)
	}
	restored := 0
	for _, line := range strings.Split(string(idx), "\n") {
		sigName, tenant, ok := strings.Cut(line, "/")
		if !ok {
			continue
		}
		var k queueKey
		found := false
		for s := signal(0); s < numSignals; s++ {
			if s.String() == sigName {
				k, found = queueKey{sig: s, tenant: tenant}, true
			}
		}
		if !found {
			continue
		}
		meta, err := e.store.Get(ctx, metaKey(k))
		if err != nil {
			return fmt.Errorf("tenant_otlp_http: queue storage: %w", err)
		}
		var head, next uint64
		if _, err := fmt.Sscanf(string(meta), "%d %d", &head, &next); err != nil {
			continue
		}
		q, err := e.newQueue(k)
		if err != nil {
			e.logger.Warn("tenant_otlp_http: cannot restore a queue", zap.String("queue", k.String()), zap.Error(err))
			continue
		}
		q.head, q.next = head, next
		now := time.Now()
		for seq := head; seq < next; seq++ {
			v, err := e.store.Get(ctx, recordKey(k, seq))
			if err != nil {
				return fmt.Errorf("tenant_otlp_http: queue storage: %w", err)
			}
			if len(v) < 4 {
				continue
			}
			r := record{seq: seq, items: int(binary.BigEndian.Uint32(v)), size: len(v) - 4, added: now}
			q.records = append(q.records, r)
			q.items += r.items
			q.bytes += r.size
			e.queued.Add(int64(r.size))
			restored += r.items
		}
		e.queues[k] = q
	}
	if restored > 0 {
		e.logger.Info("tenant_otlp_http: restored queued data from storage", zap.Int("items", restored), zap.Int("queues", len(e.queues)))
	}
	return nil
}
