package tenantalertsextension

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantalertsextension/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
)

// tel is the extension's own metrics: outcome, what and engine take
// values from the constants here; the tenant is there only with
// telemetry.per_tenant.
type tel struct {
	tenancy     telemetry.Tenancy
	deliveries  metric.Int64Counter
	deadLetters metric.Int64Counter
	syncs       metric.Int64Counter
	changes     metric.Int64Counter
}

// metrics is the extension's own metrics (the README's table is rendered
// from it).
func (t *tel) metrics() []telemetry.Metric {
	return []telemetry.Metric{
		{Name: "otelcol_tenant_alerts_deliveries", Unit: "{notification}", Attrs: []string{telemetry.TenantAttr, "outcome"}, Counter: &t.deliveries,
			Description: "Notifications the relay handled, by outcome: sent, retry (Alertmanager tries again), rate_limited (the same), dead_letter, no_receiver."},
		{Name: "otelcol_tenant_alerts_dead_letters", Unit: "{notification}", Attrs: []string{telemetry.TenantAttr}, Counter: &t.deadLetters,
			Description: "Notifications that were never delivered and will not be retried (a forbidden destination, a receiver that refused the body): each is a line in the dead-letter file, which names the tenant."},
		{Name: "otelcol_tenant_alerts_engine_syncs", Unit: "{sync}", Attrs: []string{"outcome"}, Counter: &t.syncs,
			Description: "Writes of the engines' files followed by a reload, by outcome (ok, failed: retried at the next reload_interval)."},
		{Name: "otelcol_tenant_alerts_changes", Unit: "{change}", Attrs: []string{telemetry.TenantAttr, "what", "outcome"}, Counter: &t.changes,
			Description: "Changes tenants made through the read path, by what (rule, receiver, silence) and outcome (ok, refused)."},
	}
}

// newTelemetry creates the counters (they live as long as the meter:
// nothing observed to unregister).
func newTelemetry(set component.TelemetrySettings, tenancy telemetry.Tenancy) (*tel, error) {
	t := &tel{tenancy: tenancy}
	if _, err := telemetry.Register(set, metadata.ScopeName, t.metrics()); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tel) delivered(ctx context.Context, tenant, outcome string) {
	t.deliveries.Add(ctx, 1, t.tenancy.With(tenant, attribute.String("outcome", outcome)))
	if outcome == outcomeDeadLetter {
		t.deadLetters.Add(ctx, 1, t.tenancy.With(tenant))
	}
}

func (t *tel) synced(ctx context.Context, ok bool) {
	outcome := "ok"
	if !ok {
		outcome = "failed"
	}
	t.syncs.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", outcome))))
}

func (t *tel) changed(ctx context.Context, tenant, what string, ok bool) {
	outcome := "ok"
	if !ok {
		outcome = "refused"
	}
	t.changes.Add(ctx, 1, t.tenancy.With(tenant, attribute.String("what", what), attribute.String("outcome", outcome)))
}
