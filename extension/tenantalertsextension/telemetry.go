package tenantalertsextension

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantalertsextension/internal/metadata"
)

// telemetry is the extension's own metrics. The tenant attribute is
// bounded by the credentials file's tenants; outcome and engine by the
// constants here.
type telemetry struct {
	deliveries  metric.Int64Counter
	deadLetters metric.Int64Counter
	syncs       metric.Int64Counter
	changes     metric.Int64Counter
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	meter := set.MeterProvider.Meter(metadata.ScopeName)
	var t telemetry
	var err error
	if t.deliveries, err = meter.Int64Counter("otelcol_tenant_alerts_deliveries",
		metric.WithDescription("Notifications the relay handled, by tenant and outcome: sent, retry (Alertmanager tries again), rate_limited (the same), dead_letter, no_receiver."),
		metric.WithUnit("{notification}")); err != nil {
		return nil, err
	}
	if t.deadLetters, err = meter.Int64Counter("otelcol_tenant_alerts_dead_letters",
		metric.WithDescription("Notifications that were never delivered and will not be retried (a forbidden destination, a receiver that refused the body), by tenant: each is a line in the dead-letter file."),
		metric.WithUnit("{notification}")); err != nil {
		return nil, err
	}
	if t.syncs, err = meter.Int64Counter("otelcol_tenant_alerts_engine_syncs",
		metric.WithDescription("Writes of the engines' files followed by a reload, by outcome (ok, failed: retried at the next reload_interval)."),
		metric.WithUnit("{sync}")); err != nil {
		return nil, err
	}
	if t.changes, err = meter.Int64Counter("otelcol_tenant_alerts_changes",
		metric.WithDescription("Changes tenants made through the read path, by tenant, what (rule, receiver, silence) and outcome (ok, refused)."),
		metric.WithUnit("{change}")); err != nil {
		return nil, err
	}
	return &t, nil
}

func (t *telemetry) delivered(ctx context.Context, tenant, outcome string) {
	t.deliveries.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("tenant", tenant), attribute.String("outcome", outcome))))
	if outcome == outcomeDeadLetter {
		t.deadLetters.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attribute.String("tenant", tenant))))
	}
}

func (t *telemetry) synced(ctx context.Context, ok bool) {
	outcome := "ok"
	if !ok {
		outcome = "failed"
	}
	t.syncs.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", outcome))))
}

func (t *telemetry) changed(ctx context.Context, tenant, what string, ok bool) {
	outcome := "ok"
	if !ok {
		outcome = "refused"
	}
	t.changes.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("tenant", tenant), attribute.String("what", what), attribute.String("outcome", outcome))))
}
