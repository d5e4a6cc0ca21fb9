package tenantusagereceiver

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/metric"

	owntel "github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
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
	tenancy  owntel.Tenancy
}

// metrics is the receiver's own metrics (the README's table is rendered
// from it).
func (t *telemetry) metrics() []owntel.Metric {
	return []owntel.Metric{
		{Name: "otelcol_receiver_usage_hours_closed", Unit: "{hour}", Counter: &t.hours,
			Description: "Hours whose usage records were computed and handed to the pipeline."},
		{Name: "otelcol_receiver_usage_records", Unit: "{record}", Counter: &t.records,
			Description: "Usage records (and adjustment records) handed to the pipeline, re-emissions included."},
		{Name: "otelcol_receiver_usage_failures", Unit: "{cycle}", Counter: &t.failures,
			Description: "Cycles that failed (a store unreachable, the pipeline refusing) and will be tried again."},
		{Name: "otelcol_receiver_usage_hour_duration", Unit: "s", Histogram: &t.duration,
			Description: "Time to compute and emit one hour's records for every tenant."},
		{Name: "otelcol_receiver_usage_crosscheck_difference", Unit: "{data_point}", Attrs: []string{owntel.TenantAttr}, Gauge: &t.crossDiff,
			Description: "The last closed hour's data points the gateways counted as delivered less those the store holds: all tenants' sum, or each tenant's with per_tenant."},
		{Name: "otelcol_receiver_usage_deferred_tenants", Unit: "{tenant}", Gauge: &t.deferred,
			Description: "Tenant-hours whose meters could not be computed (their own queries fail) and are not billed yet; alert when not 0 for long."},
		{Name: "otelcol_receiver_usage_decreases_held", Unit: "{record}", Counter: &t.held,
			Description: "Meters a recheck found below what was billed, held for review instead of refunded (decreases: hold)."},
	}
}

// newTelemetry creates the instruments (they live as long as the meter:
// nothing observed to unregister).
func newTelemetry(set component.TelemetrySettings, tenancy owntel.Tenancy) (*telemetry, error) {
	t := &telemetry{tenancy: tenancy}
	if _, err := owntel.Register(set, metadata.ScopeName, t.metrics()); err != nil {
		return nil, err
	}
	return t, nil
}
