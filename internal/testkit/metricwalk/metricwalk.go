// Package metricwalk visits every number data point of a pdata batch,
// gauges and sums alike, with the metric it belongs to: what the GPU check
// program and the receiver's tests read back.
package metricwalk

import "go.opentelemetry.io/collector/pdata/pmetric"

// NumberPoints calls fn for every gauge and sum data point in md.
func NumberPoints(md pmetric.Metrics, fn func(m pmetric.Metric, dp pmetric.NumberDataPoint)) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				var dps pmetric.NumberDataPointSlice
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					dps = m.Gauge().DataPoints()
				case pmetric.MetricTypeSum:
					dps = m.Sum().DataPoints()
				default:
					continue
				}
				for p := 0; p < dps.Len(); p++ {
					fn(m, dps.At(p))
				}
			}
		}
	}
}

// Value is a number data point's value as a float64.
func Value(dp pmetric.NumberDataPoint) float64 {
	if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
		return float64(dp.IntValue())
	}
	return dp.DoubleValue()
}

// Find returns the data points of the metric called name whose attributes
// include every key and value of want (values compared as AsRaw gives them).
func Find(md pmetric.Metrics, name string, want map[string]any) []pmetric.NumberDataPoint {
	var out []pmetric.NumberDataPoint
	NumberPoints(md, func(m pmetric.Metric, dp pmetric.NumberDataPoint) {
		if m.Name() != name {
			return
		}
		for k, v := range want {
			got, ok := dp.Attributes().Get(k)
			if !ok || got.AsRaw() != v {
				return
			}
		}
		out = append(out, dp)
	})
	return out
}
