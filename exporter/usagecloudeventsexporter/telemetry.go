package usagecloudeventsexporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/usagecloudeventsexporter/internal/metadata"
)

// The exporter's own metrics.
const (
	metricDelivered  = "otelcol_exporter_usage_events_delivered"
	metricDeadLetter = "otelcol_exporter_usage_dead_letter_records"
	metricBisected   = "otelcol_exporter_usage_batches_bisected"
)

// metricDef is one of the exporter's metrics: what the code creates and
// the README's table shows (readme_test.go checks they agree).
type metricDef struct {
	name, unit, description string
	attrs                   []string
}

var metricDefs = []metricDef{
	{metricDelivered, "{event}", "Events the billing system took (a 2xx answer to a request that held them).", nil},
	{metricDeadLetter, "{record}", "Events written to the dead-letter file, never sent again: refused (400, 413, 415 or 422 to the event alone) or conflict (its id is bound to another value).", []string{"reason"}},
	{metricBisected, "{batch}", "Requests refused with 400, 413, 415 or 422 and sent again as two halves.", nil},
}

// telemetry is the exporter's own metrics, through its TelemetrySettings.
type telemetry struct {
	delivered, deadLetter, bisected metric.Int64Counter
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	meter := set.MeterProvider.Meter(metadata.ScopeName)
	counters := make(map[string]metric.Int64Counter, len(metricDefs))
	for _, d := range metricDefs {
		c, err := meter.Int64Counter(d.name, metric.WithDescription(d.description), metric.WithUnit(d.unit))
		if err != nil {
			return nil, err
		}
		counters[d.name] = c
	}
	return &telemetry{delivered: counters[metricDelivered], deadLetter: counters[metricDeadLetter], bisected: counters[metricBisected]}, nil
}

func (t *telemetry) deadLettered(ctx context.Context, reason string) {
	t.deadLetter.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason))))
}
