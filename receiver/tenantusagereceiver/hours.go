package tenantusagereceiver

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// closeHours computes every hour that can be closed, writes its records to
// the ledger with the cursor past it (one transaction), and hands them
// over. Tenants whose meters could not be computed are deferred; the
// others are billed on time.
func (r *usageReceiver) closeHours(ctx context.Context, now time.Time) error {
	for !r.cursor.Add(time.Hour + r.cfg.GracePeriod).After(now) {
		hour := r.cursor
		t0 := time.Now()
		hr, err := r.src.Compute(ctx, hour)
		if err != nil {
			return err
		}
		hs := &hourState{Hour: hour}
		hs.bill(hr.Records)
		hs.defer_(hr.Deferred)
		ops, out, err := r.out.push(hr.Records)
		if err != nil {
			return err
		}
		ops = append(ops, setCursor(hour.Add(time.Hour)))
		ops = append(ops, r.crosscheck(ctx, hour, hr.Records)...)
		keep := len(r.cfg.Rechecks) > 0 || len(hs.Deferred) > 0
		if keep {
			op, err := setHour(hs)
			if err != nil {
				return err
			}
			ops = append(ops, op)
		}
		if err := r.client.Batch(ctx, ops...); err != nil {
			return fmt.Errorf("saving the ledger: %w", err)
		}
		r.out = out
		r.cursor = hour.Add(time.Hour)
		if keep {
			r.pending[hour] = hs
		}
		r.step("hour-written")
		r.logDeferred(hour, hr.Deferred)
		if err := r.handOver(ctx); err != nil {
			return err
		}
		r.tel.hours.Add(context.Background(), 1)
		r.tel.duration.Record(context.Background(), time.Since(t0).Seconds())
		log := r.logger.Info
		if len(hr.Records) == 0 {
			log = r.logger.Debug
		}
		log("usage: hour closed", zap.String("hour", hour.Format(usage.HourLayout)),
			zap.Int("records", len(hr.Records)), zap.Int("tenants", tenants(hr.Records)),
			zap.Int("tenants_deferred", len(hr.Deferred)), zap.Duration("took", time.Since(t0)))
	}
	return nil
}

func (r *usageReceiver) logDeferred(hour time.Time, deferred map[string]error) {
	for t, err := range deferred {
		r.logger.Warn("usage: a tenant's meters could not be computed; it is billed once they can be, the others are billed now",
			zap.String("hour", hour.Format(usage.HourLayout)), zap.String("tenant", t), zap.Error(err))
	}
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

func (r *usageReceiver) pendingHours() []time.Time {
	hours := make([]time.Time, 0, len(r.pending))
	for h := range r.pending {
		hours = append(hours, h)
	}
	sort.Slice(hours, func(i, j int) bool { return hours[i].Before(hours[j]) })
	return hours
}

// retryDeferred computes each deferred tenant again, one query per meter
// for it alone; one that can be computed now gets its revision-0 records.
func (r *usageReceiver) retryDeferred(ctx context.Context) error {
	for _, h := range r.pendingHours() {
		hs := r.pending[h]
		if len(hs.Deferred) == 0 {
			continue
		}
		names := make([]string, 0, len(hs.Deferred))
		for t := range hs.Deferred {
			names = append(names, t)
		}
		sort.Strings(names)
		hr, err := r.src.ComputeTenants(ctx, h, names)
		if err != nil {
			return err
		}
		if len(hr.Deferred) == len(names) {
			continue
		}
		hs.bill(hr.Records)
		for _, t := range names {
			if hr.Deferred[t] == nil {
				delete(hs.Deferred, t)
			}
		}
		if err := r.saveHour(ctx, hs, hr.Records); err != nil {
			return err
		}
		r.logger.Info("usage: deferred tenants billed", zap.String("hour", h.Format(usage.HourLayout)),
			zap.Int("tenants", len(names)-len(hr.Deferred)), zap.Int("still_deferred", len(hr.Deferred)))
	}
	return r.handOver(ctx)
}

// saveHour writes recs to the ledger with the hour's new state (or its end,
// once it has no recheck or deferred tenant left), in one transaction.
func (r *usageReceiver) saveHour(ctx context.Context, hs *hourState, recs []usage.Record) error {
	ops, out, err := r.out.push(recs)
	if err != nil {
		return err
	}
	done := hs.Done >= len(r.cfg.Rechecks) && len(hs.Deferred) == 0
	if done {
		ops = append(ops, storage.DeleteOperation(hourKey(hs.Hour)))
	} else {
		op, err := setHour(hs)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	if err := r.client.Batch(ctx, ops...); err != nil {
		return fmt.Errorf("saving hour %s: %w", hs.Hour.Format(usage.HourLayout), err)
	}
	r.out = out
	if done {
		delete(r.pending, hs.Hour)
	}
	r.step("hour-written")
	return nil
}

// recheck computes the closed hours again when a recheck is due (in full
// only for the tenants whose data points changed); a meter
// whose value grew gets an adjustment record (the next revision, valued at
// the change). A deferred tenant is left to retryDeferred; a tenant that
// fails in a recheck keeps its totals until the next one.
func (r *usageReceiver) recheck(ctx context.Context, now time.Time) error {
	for _, h := range r.pendingHours() {
		hs := r.pending[h]
		closed := h.Add(time.Hour + r.cfg.GracePeriod)
		due := 0
		for i := hs.Done; i < len(r.cfg.Rechecks) && !closed.Add(r.cfg.Rechecks[i]).After(now); i++ {
			due = i + 1
		}
		if due == 0 {
			continue
		}
		hr, err := r.src.Recheck(ctx, h, hs.Totals)
		if err != nil {
			return err
		}
		skip := map[string]bool{}
		for t := range hs.Deferred {
			skip[t] = true
		}
		for t := range hr.Deferred {
			skip[t] = true
		}
		adj, held := adjustments(hs, hr.Records, skip, r.cfg.Decreases == DecreasesCredit)
		for _, a := range adj {
			if hs.Totals[a.Tenant] == nil {
				hs.Totals[a.Tenant] = map[usage.Meter]int64{}
			}
			hs.Totals[a.Tenant][a.Meter] = a.Total
			hs.setRevision(a.Tenant, a.Meter, a.Revision)
		}
		for _, d := range held {
			r.tel.held.Add(context.Background(), 1)
			r.logger.Warn("usage: a recheck found less than was billed; the decrease is held for review, not refunded (decreases: hold)",
				zap.String("hour", h.Format(usage.HourLayout)), zap.String("tenant", d.tenant), zap.String("meter", string(d.meter)),
				zap.Int64("billed", d.billed), zap.Int64("now", d.now))
		}
		hs.Done = due
		if err := r.saveHour(ctx, hs, adj); err != nil {
			return err
		}
		if len(adj) > 0 {
			r.logger.Info("usage: late data in a closed hour; adjustment records sent",
				zap.String("hour", h.Format(usage.HourLayout)), zap.Int("adjustments", len(adj)))
		}
	}
	return r.handOver(ctx)
}

// decrease is a recheck's value below what was billed.
type decrease struct {
	tenant      string
	meter       usage.Meter
	billed, now int64
}

// adjustments are the records that bring what was billed for an hour to
// what the stores hold now, for the tenants not skipped. A total that fell
// (data the store no longer holds) is adjusted down only with credit;
// otherwise it is held (returned, and kept in the hour's state) and the
// billed total stands.
func adjustments(hs *hourState, recs []usage.Record, skip map[string]bool, credit bool) ([]usage.Record, []decrease) {
	now := map[string]map[usage.Meter]int64{}
	for _, rec := range recs {
		if now[rec.Tenant] == nil {
			now[rec.Tenant] = map[usage.Meter]int64{}
		}
		now[rec.Tenant][rec.Meter] = rec.Total
	}
	var out []usage.Record
	var held []decrease
	add := func(tenant string, m usage.Meter) {
		if skip[tenant] {
			return
		}
		before, after := hs.Totals[tenant][m], now[tenant][m]
		if after < before && !credit {
			hs.setHeld(tenant, m, after, true)
			held = append(held, decrease{tenant, m, before, after})
			return
		}
		hs.setHeld(tenant, m, 0, false)
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
	sort.Slice(held, func(i, j int) bool {
		if held[i].tenant != held[j].tenant {
			return held[i].tenant < held[j].tenant
		}
		return held[i].meter < held[j].meter
	})
	return out, held
}
