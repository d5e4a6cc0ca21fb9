package tenantusagereceiver

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/metric"

	"github.com/otelcol-gpu/otelcol-gpu/receiver/tenantusagereceiver/internal/metadata"
)

// telemetry is the receiver's own metrics.
type telemetry struct {
	hours    metric.Int64Counter
	records  metric.Int64Counter
	failures metric.Int64Counter
	duration metric.Float64Histogram
	// crossDiff is the last closed hour's difference per tenant.
	crossDiff metric.Int64Gauge
	// deferred is the tenants whose meters wait to be computed, over
	// every hour; held the decreases a recheck found and did not send.
	deferred metric.Int64Gauge
	held     metric.Int64Counter
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	meter := set.MeterProvider.Meter(metadata.ScopeName)
	var t telemetry
	var err error
	if t.hours, err = meter.Int64Counter("otelcol_receiver_usage_hours_closed",
		metric.WithDescription("Hours whose usage records were computed and handed to the pipeline."), metric.WithUnit("{hour}")); err != nil {
		return nil, err
	}
	if t.records, err = meter.Int64Counter("otelcol_receiver_usage_records",
		metric.WithDescription("Usage records (and adjustment records) handed to the pipeline, re-emissions included."), metric.WithUnit("{record}")); err != nil {
		return nil, err
	}
	if t.failures, err = meter.Int64Counter("otelcol_receiver_usage_failures",
		metric.WithDescription("Cycles that failed (a store unreachable, the pipeline refusing) and will be tried again."), metric.WithUnit("{cycle}")); err != nil {
		return nil, err
	}
	if t.duration, err = meter.Float64Histogram("otelcol_receiver_usage_hour_duration",
		metric.WithDescription("Time to compute and emit one hour's records for every tenant."), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.crossDiff, err = meter.Int64Gauge("otelcol_receiver_usage_crosscheck_difference",
		metric.WithDescription("The last closed hour's data points the gateways counted as delivered less those the store holds, by tenant."), metric.WithUnit("{data_point}")); err != nil {
		return nil, err
	}
	if t.deferred, err = meter.Int64Gauge("otelcol_receiver_usage_deferred_tenants",
		metric.WithDescription("Tenant-hours whose meters could not be computed (their own queries fail) and are not billed yet; alert when not 0 for long."), metric.WithUnit("{tenant}")); err != nil {
		return nil, err
	}
	if t.held, err = meter.Int64Counter("otelcol_receiver_usage_decreases_held",
		metric.WithDescription("Meters a recheck found below what was billed, held for review instead of refunded (decreases: hold)."), metric.WithUnit("{record}")); err != nil {
		return nil, err
	}
	return &t, nil
}
