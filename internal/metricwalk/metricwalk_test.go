package metricwalk

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

func TestNumberPoints(t *testing.T) {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	g := ms.AppendEmpty()
	g.SetName("g")
	g.SetEmptyGauge().DataPoints().AppendEmpty().SetDoubleValue(1.5)
	s := ms.AppendEmpty()
	s.SetName("s")
	dps := s.SetEmptySum().DataPoints()
	dps.AppendEmpty().SetIntValue(2)
	dps.AppendEmpty().SetIntValue(3)
	h := ms.AppendEmpty()
	h.SetName("h")
	h.SetEmptyHistogram().DataPoints().AppendEmpty()

	var got []string
	var sum float64
	NumberPoints(md, func(m pmetric.Metric, dp pmetric.NumberDataPoint) {
		got = append(got, m.Name())
		sum += Value(dp)
	})
	require.Equal(t, []string{"g", "s", "s"}, got)
	require.InDelta(t, 6.5, sum, 0)
}
