package tenantusagereceiver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
	"github.com/otelcol-gpu/otelcol-gpu/receiver/tenantusagereceiver/internal/metadata"
)

type usageReceiver struct {
	cfg    *Config
	set    receiver.Settings
	logger *zap.Logger
	next   consumer.Metrics
	tel    *telemetry
	now    func() time.Time

	// src computes an hour's records (a *usage.Source; tests give a fake).
	src    computer
	client storage.Client
	// out is the ledger's outbox (state.go); only the loop touches it.
	out outbox

	cancel context.CancelFunc
	done   chan struct{}

	// cursor is the next hour to close; pending the closed hours still to
	// be rechecked, by hour. Only the loop goroutine touches them.
	cursor  time.Time
	pending map[time.Time]*hourState
	// retryAt holds back the next attempt after a failure.
	retryAt time.Time
	backoff time.Duration

	// crossClient reads the gateways' counters; lastSnapshot is the hour
	// whose start they were last read at.
	crossClient  *http.Client
	lastSnapshot time.Time

	// manual: no loop; tests call cycle themselves.
	manual bool
	// crash, when set (tests), is called after each step that writes to
	// the ledger or hands records over; a panic there is a kill -9 at
	// that point.
	crash func(step string)
}

// computer is what computes an hour's records.
type computer interface {
	Compute(ctx context.Context, hour time.Time) (*usage.Hour, error)
	ComputeTenants(ctx context.Context, hour time.Time, tenants []string) (*usage.Hour, error)
	Recheck(ctx context.Context, hour time.Time, billed map[string]map[usage.Meter]int64) (*usage.Hour, error)
}

func newReceiver(cfg *Config, set receiver.Settings, next consumer.Metrics) (*usageReceiver, error) {
	tel, err := newTelemetry(set.TelemetrySettings, cfg.Telemetry)
	if err != nil {
		return nil, err
	}
	return &usageReceiver{cfg: cfg, set: set, logger: set.Logger, next: next, tel: tel, now: time.Now, pending: map[time.Time]*hourState{}}, nil
}

func (r *usageReceiver) Start(ctx context.Context, host component.Host) error {
	storeClient, err := r.cfg.Store.ClientConfig.ToClient(ctx, host.GetExtensions(), r.set.TelemetrySettings)
	if err != nil {
		return fmt.Errorf("tenant_usage: store client: %w", err)
	}
	src := &usage.Source{
		StoreURL:    strings.TrimRight(r.cfg.Store.ClientConfig.Endpoint, "/"),
		TenantLabel: r.cfg.Store.TenantLabel,
		VMLabel:     r.cfg.Store.VMLabel,
		Client:      storeClient,
		Concurrency: r.cfg.Concurrency,
	}
	if r.cfg.Events.Endpoint != "" {
		eventsClient, err := r.cfg.Events.ToClient(ctx, host.GetExtensions(), r.set.TelemetrySettings)
		if err != nil {
			return fmt.Errorf("tenant_usage: events client: %w", err)
		}
		src.EventsURL = strings.TrimRight(r.cfg.Events.Endpoint, "/")
		src.EventsClient = eventsClient
	}
	if r.src == nil {
		if r.cfg.Store.Verify {
			if err := src.Verify(ctx, r.horizon(), r.now); err != nil {
				return fmt.Errorf("tenant_usage: the store cannot be billed from (set store.verify: false only where another layer guarantees it): %w", err)
			}
		}
		r.src = src
	}
	r.crossClient = &http.Client{Timeout: 10 * time.Second}
	ext, ok := host.GetExtensions()[*r.cfg.Storage]
	if !ok {
		return fmt.Errorf("tenant_usage: storage %q is not an extension of this collector (add it to service.extensions)", r.cfg.Storage)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return fmt.Errorf("tenant_usage: extension %q is not a storage extension", r.cfg.Storage)
	}
	if r.client, err = se.GetClient(ctx, component.KindReceiver, r.set.ID, "usage"); err != nil {
		return fmt.Errorf("tenant_usage: storage: %w", err)
	}
	if err := r.load(ctx); err != nil {
		return fmt.Errorf("tenant_usage: %w", err)
	}
	if r.manual {
		return nil
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan struct{})
	go r.loop(loopCtx)
	return nil
}

// horizon is how far back an hour may still be computed: the backfill of
// a first start, or the last recheck after an hour's close.
func (r *usageReceiver) horizon() time.Duration {
	return max(r.cfg.Backfill, time.Hour+r.cfg.GracePeriod+r.maxRecheck()) + time.Hour
}

// load reads the cursor, the ledger's outbox and the closed hours still to
// be rechecked; the first start begins backfill ago.
func (r *usageReceiver) load(ctx context.Context) error {
	out, err := loadOutbox(ctx, r.client)
	if err != nil {
		return err
	}
	r.out = out
	cursor, ok, err := loadCursor(ctx, r.client)
	if err != nil {
		return err
	}
	if !ok {
		r.cursor = r.now().UTC().Add(-r.cfg.Backfill).Truncate(time.Hour)
		r.logger.Info("usage: no cursor yet, starting from the backfill", zap.Time("first_hour", r.cursor))
		return nil
	}
	r.cursor = cursor
	for h := cursor.Add(-r.horizon()).Truncate(time.Hour); h.Before(cursor); h = h.Add(time.Hour) {
		hs, err := loadHour(ctx, r.client, h)
		if err != nil {
			return err
		}
		if hs != nil {
			r.pending[h] = hs
		}
	}
	r.logger.Info("usage: resumed", zap.Time("next_hour", r.cursor), zap.Int("hours_to_recheck", len(r.pending)),
		zap.Uint64("ledger_entries_to_hand_over", r.out.Tail-r.out.Head))
	return nil
}

func (r *usageReceiver) maxRecheck() time.Duration {
	if len(r.cfg.Rechecks) == 0 {
		return 0
	}
	return r.cfg.Rechecks[len(r.cfg.Rechecks)-1]
}

func (r *usageReceiver) Shutdown(ctx context.Context) error {
	if r.cancel != nil {
		r.cancel()
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.client != nil {
		return r.client.Close(ctx)
	}
	return nil
}

func (r *usageReceiver) loop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		r.cycle(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cycle hands over what the ledger holds, closes every hour that can be
// closed, computes deferred tenants again, then does the rechecks that
// are due. A failure stops the cycle (nothing after a failed step is done
// out of order) and is retried with backoff.
func (r *usageReceiver) cycle(ctx context.Context) {
	now := r.now().UTC()
	r.takeSnapshot(ctx, now)
	if now.Before(r.retryAt) {
		return
	}
	err := r.handOver(ctx)
	if err == nil {
		err = r.closeHours(ctx, now)
	}
	if err == nil {
		err = r.retryDeferred(ctx)
	}
	if err == nil {
		err = r.recheck(ctx, now)
	}
	r.tel.deferred.Record(context.Background(), int64(r.deferredCount()))
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.backoff = min(max(2*r.backoff, r.cfg.Interval), 30*time.Minute)
		r.retryAt = now.Add(r.backoff)
		r.tel.failures.Add(context.Background(), 1)
		r.logger.Warn("usage: computing failed; trying again later", zap.Error(err), zap.Duration("retry_in", r.backoff))
		return
	}
	r.backoff = 0
}

func (r *usageReceiver) step(name string) {
	if r.crash != nil {
		r.crash(name)
	}
}

func (r *usageReceiver) deferredCount() int {
	n := 0
	for _, hs := range r.pending {
		n += len(hs.Deferred)
	}
	return n
}

// handOver hands the ledger's outbox to the pipeline, oldest first; an
// entry leaves the ledger once the pipeline took it. A refusal (a full
// queue) leaves it for the next cycle: the same records, the same values.
func (r *usageReceiver) handOver(ctx context.Context) error {
	for r.out.Head < r.out.Tail {
		b, err := r.client.Get(ctx, entryKey(r.out.Head))
		if err != nil {
			return fmt.Errorf("reading the ledger: %w", err)
		}
		var recs []usage.Record
		if b != nil {
			if err := json.Unmarshal(b, &recs); err != nil {
				return fmt.Errorf("ledger entry %d: %w", r.out.Head, err)
			}
		}
		if err := r.emit(ctx, recs); err != nil {
			return err
		}
		r.step("handed-over")
		next := outbox{Head: r.out.Head + 1, Tail: r.out.Tail}
		if err := r.client.Batch(ctx, storage.DeleteOperation(entryKey(r.out.Head)), next.op()); err != nil {
			return fmt.Errorf("saving the ledger: %w", err)
		}
		r.out = next
		r.step("entry-done")
	}
	return nil
}

// emit hands the records to the pipeline: one resource per tenant (its
// tenant.id), one metric per meter, one data point per record.
func (r *usageReceiver) emit(ctx context.Context, recs []usage.Record) error {
	if len(recs) == 0 {
		return nil
	}
	md := usage.Metrics(recs, metadata.ScopeName)
	if err := r.next.ConsumeMetrics(ctx, md); err != nil {
		return fmt.Errorf("the pipeline refused %d usage records: %w", len(recs), err)
	}
	r.tel.records.Add(context.Background(), int64(len(recs)))
	return nil
}
