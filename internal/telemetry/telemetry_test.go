package telemetry

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/telemetrytest"
)

func TestRegisterCreatesEveryKindAndUnregisterStopsObserving(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { require.NoError(t, tel.Shutdown(context.Background())) }()
	var (
		c metric.Int64Counter
		g metric.Int64Gauge
		h metric.Float64Histogram
	)
	observed := int64(7)
	unregister, err := Register(tel.NewTelemetrySettings(), "test", []Metric{
		{Name: "c", Unit: "{x}", Counter: &c},
		{Name: "g", Unit: "{x}", Gauge: &g},
		{Name: "h", Unit: "s", Histogram: &h, Buckets: []float64{1, 2}},
		{Name: "o", Unit: "{x}", Observe: func(observe Observer) { observe(observed) }},
	})
	require.NoError(t, err)
	c.Add(context.Background(), 2)
	g.Record(context.Background(), 3)
	h.Record(context.Background(), 1.5)
	require.Equal(t, int64(2), telemetrytest.Int64(tel, "c", nil))
	require.Equal(t, int64(3), telemetrytest.Int64(tel, "g", nil))
	require.Equal(t, int64(7), telemetrytest.Int64(tel, "o", nil))
	m, err := tel.GetMetric("h")
	require.NoError(t, err)
	require.Equal(t, []float64{1, 2}, m.Data.(metricdata.Histogram[float64]).DataPoints[0].Bounds)

	require.NoError(t, unregister())
	observed = 9
	require.NotEqual(t, int64(9), telemetrytest.Int64(tel, "o", nil), "not observed after unregister")
}

func TestRegisterNamesAMetricWithoutAnInstrument(t *testing.T) {
	_, err := Register(componenttest.NewNopTelemetrySettings(), "test", []Metric{{Name: "otelcol_nothing"}})
	require.ErrorContains(t, err, "otelcol_nothing")
}

func TestTenancyAddsTheTenantOnlyWhenPerTenant(t *testing.T) {
	off := Tenancy{}.Set("acme", attribute.String("signal", "metrics"))
	_, ok := off.Value(TenantAttr)
	require.False(t, ok)
	require.Equal(t, 1, off.Len())
	on := Tenancy{PerTenant: true}.Set("acme", attribute.String("signal", "metrics"))
	v, ok := on.Value(TenantAttr)
	require.True(t, ok)
	require.Equal(t, "acme", v.AsString())
	require.Equal(t, 2, on.Len())
}

func TestTableMarksTheTenantAsPerTenant(t *testing.T) {
	var c metric.Int64Counter
	got := Table([]Metric{{Name: "otelcol_x", Unit: "{item}", Attrs: []string{TenantAttr, "signal"}, Counter: &c, Description: "Items."}})
	require.Contains(t, got, "| `otelcol_x` | counter | {item} | `tenant` (per_tenant), `signal` | Items. |")
}
