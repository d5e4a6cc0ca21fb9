package tenantqueryextension

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantqueryextension/internal/metadata"
)

// telemetry is the extension's own metrics: per tenant, what it asked, what
// was refused and what failed.
type telemetry struct {
	queries  metric.Int64Counter
	refused  metric.Int64Counter
	errors   metric.Int64Counter
	duration metric.Float64Histogram
	reloads  metric.Int64Counter

	usageSent, usageDropped metric.Int64Counter

	// keysUsed is each read key's last use (unix seconds), by tenant and
	// key id: bounded by the keys the credentials file has held.
	keysUsed sync.Map // keyUse -> *atomic.Int64
}

type keyUse struct{ tenant, id string }

// gauges registers the observed instruments: each key's last use, the
// answer memory held, and the browser sessions.
func (t *telemetry) gauges(set component.TelemetrySettings, answers *answerBudget, sessions *sessions) error {
	meter := set.MeterProvider.Meter(metadata.ScopeName)
	lastUsed, err := meter.Int64ObservableGauge("otelcol_tenant_query_key_last_used",
		metric.WithDescription("When each read key was last used (unix seconds), by tenant and key_id: keys no one uses any more are candidates for revocation."), metric.WithUnit("s"))
	if err != nil {
		return err
	}
	held, err := meter.Int64ObservableGauge("otelcol_tenant_query_answer_bytes",
		metric.WithDescription("Bytes of store answers held in memory now, all tenants (limits.max_answer_bytes_total bounds it)."), metric.WithUnit("By"))
	if err != nil {
		return err
	}
	live, err := meter.Int64ObservableGauge("otelcol_tenant_query_sessions",
		metric.WithDescription("Browser sessions held (ui.max_sessions bounds them)."), metric.WithUnit("{session}"))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.keysUsed.Range(func(k, v any) bool {
			ku := k.(keyUse)
			o.ObserveInt64(lastUsed, v.(*atomic.Int64).Load(), metric.WithAttributeSet(attribute.NewSet(
				attribute.String("tenant", ku.tenant), attribute.String("key_id", ku.id))))
			return true
		})
		_, total := answers.inUse("")
		o.ObserveInt64(held, total)
		if sessions != nil {
			o.ObserveInt64(live, int64(sessions.len()))
		}
		return nil
	}, lastUsed, held, live)
	return err
}

// keyUsed records a read key's use.
func (t *telemetry) keyUsed(tenant, id string, at time.Time) {
	k := keyUse{tenant, id}
	v, ok := t.keysUsed.Load(k)
	if !ok {
		v, _ = t.keysUsed.LoadOrStore(k, new(atomic.Int64))
	}
	v.(*atomic.Int64).Store(at.Unix())
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	meter := set.MeterProvider.Meter(metadata.ScopeName)
	var t telemetry
	var err error
	if t.queries, err = meter.Int64Counter("otelcol_tenant_query_queries",
		metric.WithDescription("Queries forwarded to the store, by tenant, endpoint and the store's status code."), metric.WithUnit("{query}")); err != nil {
		return nil, err
	}
	if t.refused, err = meter.Int64Counter("otelcol_tenant_query_refused",
		metric.WithDescription("Requests refused before the store, by tenant (empty when unauthenticated) and reason."), metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if t.errors, err = meter.Int64Counter("otelcol_tenant_query_errors",
		metric.WithDescription("Queries the store failed (unreachable, 5xx, answer too large), by tenant and endpoint."), metric.WithUnit("{query}")); err != nil {
		return nil, err
	}
	if t.usageSent, err = meter.Int64Counter("otelcol_tenant_query_usage_events_sent",
		metric.WithDescription("Read events (one per answered query) the event store took, for the read meters."), metric.WithUnit("{event}")); err != nil {
		return nil, err
	}
	if t.usageDropped, err = meter.Int64Counter("otelcol_tenant_query_usage_events_dropped",
		metric.WithDescription("Read events lost, by reason: full (the usage log, with on_full: drop), write_error (with on_full: drop), torn (cut short by a crash), corrupt (not JSON). Reads that go unbilled."), metric.WithUnit("{event}")); err != nil {
		return nil, err
	}
	if t.duration, err = meter.Float64Histogram("otelcol_tenant_query_duration",
		metric.WithDescription("Time from a query's arrival to its answer, by endpoint."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	if t.reloads, err = meter.Int64Counter("otelcol_tenant_query_reloads",
		metric.WithDescription("Credentials file loads by result (ok, failed)."), metric.WithUnit("{reload}")); err != nil {
		return nil, err
	}
	return &t, nil
}

func (t *telemetry) refuse(ctx context.Context, tenant, reason string) {
	t.refused.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("tenant", tenant), attribute.String("reason", reason))))
}

func (t *telemetry) reloaded(ok bool) {
	result := "ok"
	if !ok {
		result = "failed"
	}
	t.reloads.Add(context.Background(), 1, metric.WithAttributeSet(attribute.NewSet(attribute.String("result", result))))
}
