package tenantusagereceiver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// The cross-check: the gateways' own counters of what they delivered to the
// store (otelcol_exporter_tenant_sent_items), read at each hour boundary,
// against the data points the store holds for the hour. The store after
// deduplication is what is billed; the counters are the check. They differ
// by what the counters cannot see (a batch re-sent after a crash is counted
// twice by them and stored once; data timestamped outside the hour it was
// delivered in) and by a gateway restart (its counters start again). A
// difference beyond the tolerance is logged with what explains it, never
// hidden, and every tenant's difference is a metric.

// gatewayCounts is one gateway's counters, per tenant (metrics signal).
type gatewayCounts map[string]tenantCounts

type tenantCounts struct {
	Sent   float64 `json:"sent"`
	Failed float64 `json:"failed"`
	Queued float64 `json:"queued"`
}

// snapshot is every gateway's counters at an hour boundary.
type snapshot struct {
	Taken    time.Time                `json:"taken"`
	Gateways map[string]gatewayCounts `json:"gateways"`
	Missing  []string                 `json:"missing,omitempty"`
}

func snapshotKey(h time.Time) string { return "x/" + h.UTC().Format(usage.HourLayout) }

var counterNames = map[string]string{
	"otelcol_exporter_tenant_sent_items":   "sent",
	"otelcol_exporter_tenant_failed_items": "failed",
	"otelcol_exporter_tenant_queue_items":  "queued",
}

// parseGatewayMetrics reads the tenant exporter's counters from a
// gateway's Prometheus text exposition.
func parseGatewayMetrics(r io.Reader) (gatewayCounts, error) {
	out := gatewayCounts{}
	untenanted := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		open := strings.IndexByte(line, '{')
		closeIdx := strings.LastIndexByte(line, '}')
		if open < 0 || closeIdx < open {
			continue
		}
		name := strings.TrimSuffix(line[:open], "_total")
		kind, ok := counterNames[name]
		if !ok {
			continue
		}
		labels := parseLabels(line[open+1 : closeIdx])
		if _, ok := labels["tenant"]; !ok {
			untenanted = name
		}
		if labels["signal"] != "metrics" || labels["tenant"] == "" {
			continue
		}
		fields := strings.Fields(line[closeIdx+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %q: %w", name, fields[0], err)
		}
		c := out[labels["tenant"]]
		switch kind {
		case "sent":
			c.Sent += v
		case "failed":
			c.Failed += v
		case "queued":
			c.Queued += v
		}
		out[labels["tenant"]] = c
	}
	if untenanted != "" && len(out) == 0 {
		return nil, fmt.Errorf("%s carries no tenant: the gateway's tenant_otlp_http needs telemetry.per_tenant: true for the cross-check", untenanted)
	}
	return out, sc.Err()
}

func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return out
		}
		name := strings.TrimSpace(s[:eq])
		rest := s[eq+2:]
		var val strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
			}
			val.WriteByte(rest[i])
		}
		out[name] = val.String()
		if i+1 >= len(rest) {
			return out
		}
		s = strings.TrimPrefix(rest[i+1:], ",")
	}
	return out
}

// takeSnapshot reads every gateway once the hour began (the first cycle
// after the boundary) and keeps it until the hour before it is closed.
func (r *usageReceiver) takeSnapshot(ctx context.Context, now time.Time) {
	if len(r.cfg.Crosscheck.Gateways) == 0 {
		return
	}
	h := now.Truncate(time.Hour)
	if !r.lastSnapshot.Before(h) {
		return
	}
	if b, err := r.client.Get(ctx, snapshotKey(h)); err == nil && b != nil {
		r.lastSnapshot = h
		return
	}
	snap := snapshot{Taken: now, Gateways: map[string]gatewayCounts{}}
	for _, u := range r.cfg.Crosscheck.Gateways {
		c, err := r.scrape(ctx, u)
		if err != nil {
			snap.Missing = append(snap.Missing, u)
			r.logger.Warn("usage cross-check: a gateway's counters could not be read; the hour is checked without it", zap.String("gateway", u), zap.Error(err))
			continue
		}
		snap.Gateways[u] = c
	}
	b, err := json.Marshal(snap)
	if err == nil {
		err = r.client.Set(ctx, snapshotKey(h), b)
	}
	if err != nil {
		r.logger.Warn("usage cross-check: saving the gateways' counters failed", zap.Error(err))
		return
	}
	r.lastSnapshot = h
}

func (r *usageReceiver) scrape(ctx context.Context, u string) (gatewayCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, http.NoBody)
	if err != nil {
		return nil, err
	}
	resp, err := r.crossClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %s", resp.Status)
	}
	return parseGatewayMetrics(io.LimitReader(resp.Body, 64<<20))
}

// crossDiff is one tenant's result.
type crossDiff struct {
	Tenant                    string
	Delivered, Stored, Queued float64
	Failed                    float64
	Difference                float64
	Restarted                 bool
	Unexplained               bool
}

// compare is the cross-check of a closed hour: what the gateways delivered
// between the snapshots at its start and its end, per tenant, against what
// the store holds of it.
func compare(start, end snapshot, recs []usage.Record, tolerance float64) []crossDiff {
	stored := map[string]float64{}
	for _, rec := range recs {
		if rec.Meter == usage.DataPoints {
			stored[rec.Tenant] = float64(rec.Total)
		}
	}
	delivered := map[string]*crossDiff{}
	get := func(t string) *crossDiff {
		if delivered[t] == nil {
			delivered[t] = &crossDiff{Tenant: t}
		}
		return delivered[t]
	}
	for gw, after := range end.Gateways {
		before, known := start.Gateways[gw]
		for tenant, a := range after {
			d := get(tenant)
			b := before[tenant]
			if a.Sent >= b.Sent && a.Failed >= b.Failed {
				d.Delivered += a.Sent - b.Sent
				d.Failed += a.Failed - b.Failed
			} else {
				// The gateway restarted (its counters began again): what it
				// delivered before the restart is not in them.
				d.Delivered += a.Sent
				d.Failed += a.Failed
				d.Restarted = true
			}
			if !known {
				d.Restarted = true
			}
			d.Queued += a.Queued
		}
	}
	for t := range stored {
		get(t)
	}
	out := make([]crossDiff, 0, len(delivered))
	for t, d := range delivered {
		d.Stored = stored[t]
		d.Difference = d.Delivered - d.Stored
		d.Unexplained = math.Abs(d.Difference) > tolerance*math.Max(d.Stored, 1) && !d.Restarted
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out
}

// crosscheck compares a just-closed hour with the gateways' counters, when
// snapshots at both of its ends exist, and reports.
func (r *usageReceiver) crosscheck(ctx context.Context, hour time.Time, recs []usage.Record) []*storage.Operation {
	if len(r.cfg.Crosscheck.Gateways) == 0 {
		return nil
	}
	var snaps [2]snapshot
	for i, h := range []time.Time{hour, hour.Add(time.Hour)} {
		b, err := r.client.Get(ctx, snapshotKey(h))
		if err != nil || b == nil || json.Unmarshal(b, &snaps[i]) != nil {
			r.logger.Debug("usage cross-check: no gateway counters for the hour's boundaries (the job was not running then)", zap.String("hour", hour.Format(usage.HourLayout)))
			return []*storage.Operation{storage.DeleteOperation(snapshotKey(hour))}
		}
	}
	diffs := compare(snaps[0], snaps[1], recs, r.cfg.Crosscheck.Tolerance)
	total := 0.0
	for _, d := range diffs {
		if r.tel.tenancy.PerTenant {
			r.tel.crossDiff.Record(ctx, int64(d.Difference), r.tel.tenancy.With(d.Tenant))
		}
		total += d.Difference
	}
	if !r.tel.tenancy.PerTenant {
		r.tel.crossDiff.Record(ctx, int64(total))
	}
	for _, d := range diffs {
		if d.Unexplained {
			r.logger.Warn("usage cross-check: the gateways' counters and the store differ beyond the tolerance",
				zap.String("hour", hour.Format(usage.HourLayout)), zap.String("tenant", d.Tenant),
				zap.Float64("delivered", d.Delivered), zap.Float64("stored", d.Stored), zap.Float64("difference", d.Difference),
				zap.Float64("queued_at_end", d.Queued), zap.Float64("dropped", d.Failed),
				zap.Strings("gateways_unread", append(snaps[0].Missing, snaps[1].Missing...)),
				zap.String("explains", "re-sent batches (counted by the gateway, stored once), data timestamped outside the hour it was delivered in, data still queued"))
		}
	}
	return []*storage.Operation{storage.DeleteOperation(snapshotKey(hour))}
}
