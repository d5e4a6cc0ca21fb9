// Package telemetry is how this project's components declare their own
// metrics: each lists them as data (name, unit, description, attributes,
// the field the instrument goes to), Register creates them through the
// component's TelemetrySettings, and Table renders the list as the
// component README's table (its readme test keeps the two equal).
//
// Cardinality is bounded by what the list says: an attribute takes values
// from a fixed set (a reason, an outcome, a signal) or, for "tenant", is
// there only when the component's telemetry.per_tenant is on (Tenancy):
// off by default, so a gateway with 10,000 tenants does not multiply its
// own series by them.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric is one of a component's own metrics. Exactly one destination is
// set: the field Register stores the instrument in.
type Metric struct {
	Name, Unit, Description string
	// Attrs are the attribute keys it carries; TenantAttr among them only
	// with telemetry.per_tenant on.
	Attrs []string

	Counter   *metric.Int64Counter
	Gauge     *metric.Int64Gauge
	Histogram *metric.Float64Histogram
	Buckets   []float64 // Histogram's bucket boundaries (nil: the SDK's)
	// Observe is an asynchronous gauge, read at each collection until
	// Register's unregister is called.
	Observe func(observe Observer)
}

// Observer records one value of an asynchronous gauge.
type Observer func(v int64, opts ...metric.ObserveOption)

// kind names the instrument for the README's table.
func (m Metric) kind() string {
	switch {
	case m.Counter != nil:
		return "counter"
	case m.Gauge != nil, m.Observe != nil:
		return "gauge"
	case m.Histogram != nil:
		return "histogram"
	}
	return ""
}

// Register creates every metric of ms under the component's meter (scope:
// its metadata.ScopeName). An error names the metric. unregister stops the
// Observe callbacks (the component's Shutdown calls it, so a stopped
// component is not read, nor kept in memory, by the meter).
func Register(set component.TelemetrySettings, scope string, ms []Metric) (unregister func() error, err error) {
	meter := set.MeterProvider.Meter(scope)
	var errs []error
	var regs []metric.Registration
	for _, m := range ms {
		var err error
		desc, unit := metric.WithDescription(m.Description), metric.WithUnit(m.Unit)
		switch {
		case m.Counter != nil:
			*m.Counter, err = meter.Int64Counter(m.Name, desc, unit)
		case m.Gauge != nil:
			*m.Gauge, err = meter.Int64Gauge(m.Name, desc, unit)
		case m.Histogram != nil:
			opts := []metric.Float64HistogramOption{desc, unit}
			if m.Buckets != nil {
				opts = append(opts, metric.WithExplicitBucketBoundaries(m.Buckets...))
			}
			*m.Histogram, err = meter.Float64Histogram(m.Name, opts...)
		case m.Observe != nil:
			var g metric.Int64ObservableGauge
			if g, err = meter.Int64ObservableGauge(m.Name, desc, unit); err == nil {
				observe := m.Observe
				var reg metric.Registration
				reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
					observe(func(v int64, opts ...metric.ObserveOption) { o.ObserveInt64(g, v, opts...) })
					return nil
				}, g)
				if err == nil {
					regs = append(regs, reg)
				}
			}
		default:
			err = errors.New("no instrument to create")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("telemetry %s: %w", m.Name, err))
		}
	}
	unregister = func() error {
		var errs []error
		for _, r := range regs {
			errs = append(errs, r.Unregister())
		}
		regs = nil
		return errors.Join(errs...)
	}
	if err := errors.Join(errs...); err != nil {
		_ = unregister()
		return nil, err
	}
	return unregister, nil
}

// TenantAttr is the attribute key of a tenant on the components' own
// metrics.
const TenantAttr = "tenant"

// Table renders ms as a component README's table of its own metrics.
func Table(ms []Metric) string {
	var b strings.Builder
	b.WriteString("| metric | type | unit | attributes | |\n|---|---|---|---|---|\n")
	for _, m := range ms {
		attrs := "-"
		if len(m.Attrs) > 0 {
			names := make([]string, len(m.Attrs))
			for i, a := range m.Attrs {
				names[i] = "`" + a + "`"
				if a == TenantAttr {
					names[i] += " (per_tenant)"
				}
			}
			attrs = strings.Join(names, ", ")
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", m.Name, m.kind(), m.Unit, attrs, m.Description)
	}
	return b.String()
}

// Tenancy is the telemetry block of a component whose own metrics can be
// broken down by tenant.
type Tenancy struct {
	// PerTenant adds the tenant to the metrics that list it: one series
	// per tenant (times the other attributes' values) instead of one.
	PerTenant bool `mapstructure:"per_tenant"`
}

// With is attrs, with the tenant in front when per_tenant is on, as one
// measurement (or observation) option.
func (t Tenancy) With(tenant string, attrs ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(t.Set(tenant, attrs...))
}

// Set is With's attribute set.
func (t Tenancy) Set(tenant string, attrs ...attribute.KeyValue) attribute.Set {
	if t.PerTenant {
		attrs = append([]attribute.KeyValue{attribute.String(TenantAttr, tenant)}, attrs...)
	}
	return attribute.NewSet(attrs...)
}
