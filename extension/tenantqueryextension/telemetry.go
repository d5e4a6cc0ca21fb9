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
	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
)

// tel is the extension's own metrics: what tenants asked, what was
// refused and what failed (by tenant with telemetry.per_tenant).
type tel struct {
	tenancy  telemetry.Tenancy
	queries  metric.Int64Counter
	refused  metric.Int64Counter
	errors   metric.Int64Counter
	duration metric.Float64Histogram
	reloads  metric.Int64Counter

	usageSent, usageDropped metric.Int64Counter
	// keysUsed is each read key's last use (unix seconds), by tenant and
	// key id: bounded by the keys the credentials file has held.
	keysUsed   sync.Map // keyUse -> *atomic.Int64
	unregister func() error
}

type keyUse struct{ tenant, id string }

// metrics is the extension's own metrics (the README's table is rendered
// from it); the gauges read answers and sessions (nil: none) when
// collected.
func (t *tel) metrics(answers *answerBudget, sessions *sessions) []telemetry.Metric {
	return []telemetry.Metric{
		{Name: "otelcol_tenant_query_queries", Unit: "{query}", Attrs: []string{telemetry.TenantAttr, "endpoint", "status"}, Counter: &t.queries,
			Description: "Queries forwarded to the store, by endpoint and the store's status code."},
		{Name: "otelcol_tenant_query_refused", Unit: "{request}", Attrs: []string{telemetry.TenantAttr, "reason"}, Counter: &t.refused,
			Description: "Requests refused before the store, by reason (the tenant is empty when unauthenticated)."},
		{Name: "otelcol_tenant_query_errors", Unit: "{query}", Attrs: []string{telemetry.TenantAttr, "endpoint"}, Counter: &t.errors,
			Description: "Queries the store failed (unreachable, 5xx, answer too large), by endpoint."},
		{Name: "otelcol_tenant_query_duration", Unit: "s", Attrs: []string{"endpoint"}, Histogram: &t.duration,
			Buckets:     []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
			Description: "Time from a query's arrival to its answer, by endpoint."},
		{Name: "otelcol_tenant_query_reloads", Unit: "{reload}", Attrs: []string{"result"}, Counter: &t.reloads,
			Description: "Credentials file loads by result (ok, failed)."},
		{Name: "otelcol_tenant_query_usage_events_sent", Unit: "{event}", Counter: &t.usageSent,
			Description: "Read events (one per answered query) the event store took, for the read meters."},
		{Name: "otelcol_tenant_query_usage_events_dropped", Unit: "{event}", Attrs: []string{"reason"}, Counter: &t.usageDropped,
			Description: "Read events lost, by reason: full (the usage log, with on_full: drop), write_error (with on_full: drop), torn (cut short by a crash), corrupt (not JSON). Reads that go unbilled."},
		{Name: "otelcol_tenant_query_key_last_used", Unit: "s", Attrs: []string{telemetry.TenantAttr, "key_id"}, Observe: t.observeKeys,
			Description: "When each read key was last used (unix seconds), by key_id: keys no one uses any more are candidates for revocation."},
		{Name: "otelcol_tenant_query_answer_bytes", Unit: "By", Observe: func(observe telemetry.Observer) {
			if answers != nil {
				_, total := answers.inUse("")
				observe(total)
			}
		}, Description: "Bytes of store answers held in memory now, all tenants (limits.max_answer_bytes_total bounds it)."},
		{Name: "otelcol_tenant_query_sessions", Unit: "{session}", Observe: func(observe telemetry.Observer) {
			if sessions != nil {
				observe(int64(sessions.len()))
			}
		}, Description: "Browser sessions held (ui.max_sessions bounds them)."},
	}
}

// observeKeys reports each key's last use: a key id is unique across
// tenants, so it needs the tenant only with per_tenant.
func (t *tel) observeKeys(observe telemetry.Observer) {
	t.keysUsed.Range(func(k, v any) bool {
		ku := k.(keyUse)
		observe(v.(*atomic.Int64).Load(), t.tenancy.With(ku.tenant, attribute.String("key_id", ku.id)))
		return true
	})
}

// keyUsed records a read key's use.
func (t *tel) keyUsed(tenant, id string, at time.Time) {
	k := keyUse{tenant, id}
	v, ok := t.keysUsed.Load(k)
	if !ok {
		v, _ = t.keysUsed.LoadOrStore(k, new(atomic.Int64))
	}
	v.(*atomic.Int64).Store(at.Unix())
}

func newTelemetry(set component.TelemetrySettings, tenancy telemetry.Tenancy, answers *answerBudget, sessions *sessions) (*tel, error) {
	t := &tel{tenancy: tenancy}
	unregister, err := telemetry.Register(set, metadata.ScopeName, t.metrics(answers, sessions))
	if err != nil {
		return nil, err
	}
	t.unregister = unregister
	return t, nil
}

func (t *tel) refuse(ctx context.Context, tenant, reason string) {
	t.refused.Add(ctx, 1, t.tenancy.With(tenant, attribute.String("reason", reason)))
}

func (t *tel) reloaded(ok bool) {
	result := "ok"
	if !ok {
		result = "failed"
	}
	t.reloads.Add(context.Background(), 1, metric.WithAttributeSet(attribute.NewSet(attribute.String("result", result))))
}
