// Package telemetrytest reads a component's own metrics back in tests.
package telemetrytest

import (
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Int64 sums the points of an int64 counter or gauge whose attributes
// include every key and value of want; 0 if nothing was recorded.
func Int64(tel *componenttest.Telemetry, name string, want map[string]string) int64 {
	m, err := tel.GetMetric(name)
	if err != nil {
		return 0
	}
	var points []metricdata.DataPoint[int64]
	switch data := m.Data.(type) {
	case metricdata.Sum[int64]:
		points = data.DataPoints
	case metricdata.Gauge[int64]:
		points = data.DataPoints
	}
	var total int64
	for _, dp := range points {
		if matches(dp.Attributes, want) {
			total += dp.Value
		}
	}
	return total
}

func matches(set attribute.Set, want map[string]string) bool {
	for k, v := range want {
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.AsString() != v {
			return false
		}
	}
	return true
}
