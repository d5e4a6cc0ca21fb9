package telemetrytest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

func TestInt64(t *testing.T) {
	tel := componenttest.NewTelemetry()
	defer func() { require.NoError(t, tel.Shutdown(context.Background())) }()
	meter := tel.NewTelemetrySettings().MeterProvider.Meter("x")
	c, err := meter.Int64Counter("c")
	require.NoError(t, err)
	c.Add(context.Background(), 2, metric.WithAttributes(attribute.String("r", "a")))
	c.Add(context.Background(), 3, metric.WithAttributes(attribute.String("r", "b")))
	g, err := meter.Int64Gauge("g")
	require.NoError(t, err)
	g.Record(context.Background(), 7)
	require.Equal(t, int64(5), Int64(tel, "c", nil))
	require.Equal(t, int64(3), Int64(tel, "c", map[string]string{"r": "b"}))
	require.Equal(t, int64(7), Int64(tel, "g", nil))
	require.Zero(t, Int64(tel, "missing", nil))
}
