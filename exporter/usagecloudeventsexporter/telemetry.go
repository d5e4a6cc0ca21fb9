package usagecloudeventsexporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/usagecloudeventsexporter/internal/metadata"
	owntel "github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
)

// telemetry is the exporter's own metrics, through its TelemetrySettings.
type telemetry struct {
	delivered, deadLetter, bisected metric.Int64Counter
}

// metrics is the exporter's own metrics (the README's table is rendered
// from it).
func (t *telemetry) metrics() []owntel.Metric {
	return []owntel.Metric{
		{Name: "otelcol_exporter_usage_events_delivered", Unit: "{event}", Counter: &t.delivered,
			Description: "Events the billing system took (a 2xx answer to a request that held them)."},
		{Name: "otelcol_exporter_usage_dead_letter_records", Unit: "{record}", Attrs: []string{"reason"}, Counter: &t.deadLetter,
			Description: "Events written to the dead-letter file, never sent again: refused (400, 413, 415 or 422 to the event alone) or conflict (its id is bound to another value)."},
		{Name: "otelcol_exporter_usage_batches_bisected", Unit: "{batch}", Counter: &t.bisected,
			Description: "Requests refused with 400, 413, 415 or 422 and sent again as two halves."},
	}
}

// newTelemetry creates the counters (they live as long as the meter).
func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	t := &telemetry{}
	if _, err := owntel.Register(set, metadata.ScopeName, t.metrics()); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *telemetry) deadLettered(ctx context.Context, reason string) {
	t.deadLetter.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason))))
}
