package tenantotlphttpexporter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/tenantotlphttpexporter/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/admission"
	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
	"github.com/otelcol-gpu/otelcol-gpu/internal/spool"
	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
)

// dropLogEvery bounds how often dropped data is logged; every item is counted.
const dropLogEvery = 10 * time.Second

// Retryable refusals: the agent's queue keeps the data and sends it again.
var (
	errStopped    = errors.New("tenant_otlp_http: shutting down")
	errMaxTenants = errors.New("tenant_otlp_http: max_tenants reached")
)

type tenantExporter struct {
	cfg    *Config
	tmpl   templates
	logger *zap.Logger
	set    component.TelemetrySettings

	client *http.Client
	// parts is where the queues' parts live besides memory: the queue log
	// with queue.directory, else nowhere.
	parts partStore
	id    component.ID

	mu      sync.Mutex
	queues  map[queueKey]*tenantQueue
	stopped bool
	queued  atomic.Int64 // bytes queued, all tenants

	ready chan *tenantQueue
	stop  chan struct{}
	// removed is signalled when sent data leaves a queue: what Shutdown's
	// drain waits on.
	removed chan struct{}
	// sendCtx is every request's context; Shutdown cancels it when the
	// drain time is up, so a slow store cannot hold shutdown longer.
	sendCtx    context.Context
	cancelSend context.CancelFunc
	dropLog    periodic.Every // warnings about dropped data
	limitLog   periodic.Every // warnings about max_tenants
	senders    sync.WaitGroup
	flusher    *periodic.Runner
	// unadmit removes the queue from admission's list: while the queues
	// hold fullAt bytes or more, receivers with tenant_auth's middleware
	// refuse new requests before decoding them.
	unadmit func()
	fullAt  int64

	sent, failed, refused metric.Int64Counter
	// The queue log's (with queue.directory): each group write's time
	// and parts, and the log's bytes on disk (log is the open log).
	logWrite, logGroup metric.Float64Histogram
	log                atomic.Pointer[spool.Spool]
	tenancy            telemetry.Tenancy
	unregister         func() error
}

// metrics is the exporter's own metrics (the README's table is rendered
// from it).
func (e *tenantExporter) metrics() []telemetry.Metric {
	return []telemetry.Metric{
		{Name: "otelcol_exporter_tenant_sent_items", Unit: "{item}", Attrs: []string{telemetry.TenantAttr, "signal"}, Counter: &e.sent,
			Description: "Items (data points, log records, spans) the store accepted."},
		{Name: "otelcol_exporter_tenant_failed_items", Unit: "{item}", Attrs: []string{telemetry.TenantAttr, "signal"}, Counter: &e.failed,
			Description: "Items dropped: refused for good by the store, retries exhausted, or untagged."},
		{Name: "otelcol_exporter_tenant_refused_items", Unit: "{item}", Attrs: []string{telemetry.TenantAttr, "signal", "reason"}, Counter: &e.refused,
			Description: "Items refused at intake with a retryable error, by reason (rate_limit, tenant_queue_full, budget, max_tenants)."},
		{Name: "otelcol_exporter_tenant_queue_items", Unit: "{item}", Attrs: []string{telemetry.TenantAttr, "signal"}, Observe: e.observeQueues,
			Description: "Items waiting to be sent."},
		{Name: "otelcol_exporter_tenant_queue_log_write_duration", Unit: "s", Attrs: []string{"outcome"}, Histogram: &e.logWrite, Buckets: writeBuckets,
			Description: "With queue.directory: how long each group write took, with fsync its fdatasync too (outcome: ok, or failed: the disk refused it); every part in the group waited that long before its request was answered."},
		{Name: "otelcol_exporter_tenant_queue_log_group_parts", Unit: "{part}", Histogram: &e.logGroup, Buckets: groupBuckets,
			Description: "With queue.directory: the parts (one tenant's share of a request each) written (and, with fsync, synced) together in one group write: few while few requests are in flight, so each waits for a sync of its own."},
		{Name: "otelcol_exporter_tenant_queue_log_bytes", Unit: "By", Observe: e.observeLog,
			Description: "With queue.directory: the queue log's segment files on disk, bytes."},
	}
}

// A write's buckets span a fast NVMe's sync (~50 µs) to a disk past its
// limit; a group's parts, one request in flight to a thousand.
var (
	writeBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
	groupBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}
)

// written records one group write of the queue log (spool.Options.Written).
func (e *tenantExporter) written(g spool.Group) {
	ctx := context.Background()
	e.logGroup.Record(ctx, float64(g.Parts))
	outcome := outcomeOK
	if g.Err != nil {
		outcome = outcomeFailed
	}
	e.logWrite.Record(ctx, (g.Write + g.Sync).Seconds(), outcome)
}

var (
	outcomeOK     = metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", "ok")))
	outcomeFailed = metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", "failed")))
)

// observeLog reports the queue log's bytes on disk, once it is open.
func (e *tenantExporter) observeLog(observe telemetry.Observer) {
	if l := e.log.Load(); l != nil {
		observe(l.Stats().DiskBytes)
	}
}

// observeQueues reports what waits in the queues, per tenant and signal
// with per_tenant, else per signal.
func (e *tenantExporter) observeQueues(observe telemetry.Observer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tenancy.PerTenant {
		for k, q := range e.queues {
			q.mu.Lock()
			observe(int64(q.items), e.tenancy.With(k.tenant, attribute.String("signal", k.sig.String())))
			q.mu.Unlock()
		}
		return
	}
	var items [numSignals]int64
	for k, q := range e.queues {
		q.mu.Lock()
		items[k.sig] += int64(q.items)
		q.mu.Unlock()
	}
	for sig := signal(0); sig < numSignals; sig++ {
		observe(items[sig], metric.WithAttributeSet(attribute.NewSet(attribute.String("signal", sig.String()))))
	}
}

func newTenantExporter(cfg *Config, set component.TelemetrySettings) (*tenantExporter, error) {
	t, errs := cfg.parseTemplates()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	e := &tenantExporter{
		cfg: cfg, tmpl: t, logger: set.Logger, set: set, parts: memoryParts{logger: set.Logger},
		queues:   map[queueKey]*tenantQueue{},
		ready:    make(chan *tenantQueue, cfg.MaxTenants*int(numSignals)*max(1, cfg.SendersPerTenant)),
		stop:     make(chan struct{}),
		removed:  make(chan struct{}, 1),
		dropLog:  periodic.Every{Interval: dropLogEvery},
		limitLog: periodic.Every{Interval: dropLogEvery},
	}
	e.sendCtx, e.cancelSend = context.WithCancel(context.Background())
	e.tenancy = cfg.Telemetry
	unregister, err := telemetry.Register(set, metadata.ScopeName, e.metrics())
	if err != nil {
		return nil, err
	}
	e.unregister = unregister
	return e, nil
}

// clientConfig is the HTTP client's config, with max_idle_conns_per_host
// unset meaning one idle connection per sender: every tenant goes to the
// same store, and net/http's default (2) would close and dial again
// nearly every connection the senders use at once.
func clientConfig(cfg *Config) *confighttp.ClientConfig {
	cc := cfg.ClientConfig
	//nolint:staticcheck // after Unmarshal the deprecated fields hold the effective settings (confighttp's own ToClient reads them)
	if !cc.Keepalive.HasValue() && !cc.DisableKeepAlives && cc.MaxIdleConnsPerHost == 0 {
		cc.MaxIdleConnsPerHost = cfg.Senders
	}
	return &cc
}

// attrs is a measurement's attributes: the queue's signal (and tenant, with
// per_tenant), then more.
func (e *tenantExporter) attrs(k queueKey, more ...attribute.KeyValue) metric.MeasurementOption {
	return e.tenancy.With(k.tenant, append([]attribute.KeyValue{attribute.String("signal", k.sig.String())}, more...)...)
}

// Start opens the HTTP client and the storage, restores queued data, and
// starts the senders and the flusher.
func (e *tenantExporter) Start(ctx context.Context, host component.Host) error {
	client, err := clientConfig(e.cfg).ToClient(ctx, host.GetExtensions(), e.set)
	if err != nil {
		return fmt.Errorf("tenant_otlp_http: http client: %w", err)
	}
	e.client = client
	if e.cfg.Queue.Directory != "" {
		if err := e.openLog(); err != nil {
			return err
		}
	}
	for i := 0; i < e.cfg.Senders; i++ {
		e.senders.Add(1)
		go e.sendLoop()
	}
	e.flusher = periodic.Start(max(e.cfg.Batch.FlushInterval/2, time.Millisecond), e.flush)
	// The last 1/16 of the budget is for requests already being decoded.
	e.fullAt = e.cfg.Queue.MaxBytes - e.cfg.Queue.MaxBytes/16
	e.unadmit = admission.Register(e.id, func() bool { return e.queued.Load() >= e.fullAt })
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
	if e.unadmit != nil {
		e.unadmit()
	}
	if e.unregister != nil {
		_ = e.unregister()
	}
	if e.client == nil { // never started
		e.cancelSend()
		return nil
	}
	// Drain while it makes progress: a store that is down would only hold
	// shutdown until drain_timeout for nothing.
	deadline := time.Now().Add(e.cfg.DrainTimeout)
	left, progress := e.queuedItems(), time.Now()
	for left > 0 && time.Now().Before(deadline) && time.Since(progress) < time.Second && ctx.Err() == nil {
		e.flushAll()
		wait := time.NewTimer(min(time.Until(deadline), time.Second-time.Since(progress)))
		select {
		case <-e.removed:
		case <-wait.C:
		case <-ctx.Done():
		}
		wait.Stop()
		if n := e.queuedItems(); n < left {
			left, progress = n, time.Now()
		}
	}
	e.flusher.Stop()
	e.cancelSend() // requests still in flight end now; their data stays queued
	close(e.stop)
	e.senders.Wait()
	return e.parts.close(e.queuedItems())
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
