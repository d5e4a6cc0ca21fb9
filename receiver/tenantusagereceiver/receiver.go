package tenantusagereceiver

import (
	"context"
	"fmt"
	"net/http"
	"sort"
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
}

// computer is what computes an hour's records.
type computer interface {
	Compute(ctx context.Context, hour time.Time) ([]usage.Record, error)
}

func newReceiver(cfg *Config, set receiver.Settings, next consumer.Metrics) (*usageReceiver, error) {
	tel, err := newTelemetry(set.TelemetrySettings)
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

// load reads the cursor and the closed hours still to be rechecked; the
// first start begins backfill ago.
func (r *usageReceiver) load(ctx context.Context) error {
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
	span := time.Hour + r.cfg.GracePeriod + r.maxRecheck()
	for h := cursor.Add(-span).Truncate(time.Hour); h.Before(cursor); h = h.Add(time.Hour) {
		hs, err := loadHour(ctx, r.client, h)
		if err != nil {
			return err
		}
		if hs != nil {
			r.pending[h] = hs
		}
	}
	r.logger.Info("usage: resumed", zap.Time("next_hour", r.cursor), zap.Int("hours_to_recheck", len(r.pending)))
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

// cycle closes every hour that can be closed, then does the rechecks that
// are due. A failure stops the cycle (nothing after a failed hour is done
// out of order) and is retried with backoff.
func (r *usageReceiver) cycle(ctx context.Context) {
	now := r.now().UTC()
	r.takeSnapshot(ctx, now)
	if now.Before(r.retryAt) {
		return
	}
	err := r.closeHours(ctx, now)
	if err == nil {
		err = r.recheck(ctx, now)
	}
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

func (r *usageReceiver) closeHours(ctx context.Context, now time.Time) error {
	for !r.cursor.Add(time.Hour + r.cfg.GracePeriod).After(now) {
		hour := r.cursor
		t0 := time.Now()
		recs, err := r.src.Compute(ctx, hour)
		if err != nil {
			return err
		}
		if err := r.emit(ctx, recs); err != nil {
			return err
		}
		ops := append([]*storage.Operation{setCursor(hour.Add(time.Hour))}, r.crosscheck(ctx, hour, recs)...)
		var hs *hourState
		if len(r.cfg.Rechecks) > 0 {
			hs = newHourState(hour, recs)
			op, err := setHour(hs)
			if err != nil {
				return err
			}
			ops = append(ops, op)
		}
		if err := r.client.Batch(ctx, ops...); err != nil {
			return fmt.Errorf("saving the cursor: %w", err)
		}
		r.cursor = hour.Add(time.Hour)
		if hs != nil {
			r.pending[hour] = hs
		}
		r.tel.hours.Add(context.Background(), 1)
		r.tel.duration.Record(context.Background(), time.Since(t0).Seconds())
		log := r.logger.Info
		if len(recs) == 0 {
			log = r.logger.Debug
		}
		log("usage: hour closed", zap.String("hour", hour.Format(usage.HourLayout)),
			zap.Int("records", len(recs)), zap.Int("tenants", tenants(recs)), zap.Duration("took", time.Since(t0)))
	}
	return nil
}

func tenants(recs []usage.Record) int {
	n := 0
	for i, rec := range recs {
		if i == 0 || rec.Tenant != recs[i-1].Tenant || !rec.Hour.Equal(recs[i-1].Hour) {
			n++
		}
	}
	return n
}

// recheck computes the closed hours again when a recheck is due; a meter
// whose value changed gets an adjustment record (the next revision, valued
// at the change).
func (r *usageReceiver) recheck(ctx context.Context, now time.Time) error {
	hours := make([]time.Time, 0, len(r.pending))
	for h := range r.pending {
		hours = append(hours, h)
	}
	sort.Slice(hours, func(i, j int) bool { return hours[i].Before(hours[j]) })
	for _, h := range hours {
		hs := r.pending[h]
		closed := h.Add(time.Hour + r.cfg.GracePeriod)
		due := 0
		for i := hs.Done; i < len(r.cfg.Rechecks) && !closed.Add(r.cfg.Rechecks[i]).After(now); i++ {
			due = i + 1
		}
		if due == 0 {
			continue
		}
		recs, err := r.src.Compute(ctx, h)
		if err != nil {
			return err
		}
		adj := adjustments(hs, recs)
		if err := r.emit(ctx, adj); err != nil {
			return err
		}
		for _, a := range adj {
			hs.Totals[a.Tenant][a.Meter] = a.Total
			hs.setRevision(a.Tenant, a.Meter, a.Revision)
		}
		hs.Done = due
		var op *storage.Operation
		if hs.Done >= len(r.cfg.Rechecks) {
			op = storage.DeleteOperation(hourKey(h))
		} else if op, err = setHour(hs); err != nil {
			return err
		}
		if err := r.client.Batch(ctx, op); err != nil {
			return fmt.Errorf("saving hour %s: %w", h.Format(usage.HourLayout), err)
		}
		if hs.Done >= len(r.cfg.Rechecks) {
			delete(r.pending, h)
		}
		if len(adj) > 0 {
			r.logger.Info("usage: late data in a closed hour; adjustment records sent",
				zap.String("hour", h.Format(usage.HourLayout)), zap.Int("adjustments", len(adj)))
		}
	}
	return nil
}

// adjustments are the records that bring what was billed for an hour to
// what the stores hold now. Totals grow with late data; a total that fell
// (data deleted from the store) is adjusted down the same way.
func adjustments(hs *hourState, recs []usage.Record) []usage.Record {
	now := map[string]map[usage.Meter]float64{}
	for _, rec := range recs {
		if now[rec.Tenant] == nil {
			now[rec.Tenant] = map[usage.Meter]float64{}
		}
		now[rec.Tenant][rec.Meter] = rec.Total
	}
	var out []usage.Record
	add := func(tenant string, m usage.Meter) {
		if hs.Totals[tenant] == nil {
			hs.Totals[tenant] = map[usage.Meter]float64{}
		}
		before, after := hs.Totals[tenant][m], now[tenant][m]
		if before == after {
			return
		}
		rev := hs.revision(tenant, m) + 1
		out = append(out, usage.Record{
			ID: usage.RecordID(tenant, m, hs.Hour, rev), Tenant: tenant, Meter: m, Hour: hs.Hour,
			Revision: rev, Value: after - before, Total: after,
		})
	}
	for tenant, ms := range now {
		for m := range ms {
			add(tenant, m)
		}
	}
	for tenant, ms := range hs.Totals {
		for m := range ms {
			if _, ok := now[tenant][m]; !ok {
				add(tenant, m)
			}
		}
	}
	usage.Sort(out)
	return out
}

// emit hands the records to the pipeline: one resource per tenant (its
// tenant.id), one metric per meter, one data point per record. A refusal is
// an error: the cursor does not move and the same records (same ids) are
// emitted again later.
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
