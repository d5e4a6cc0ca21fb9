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

func TestFind(t *testing.T) {
	md := pmetric.NewMetrics()
	g := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	g.SetName("hw.power")
	dps := g.SetEmptyGauge().DataPoints()
	a := dps.AppendEmpty()
	a.Attributes().PutStr("hw.name", "nvidia0")
	a.Attributes().PutInt("n", 1)
	b := dps.AppendEmpty()
	b.Attributes().PutStr("hw.name", "nvidia1")
	require.Len(t, Find(md, "hw.power", nil), 2)
	require.Len(t, Find(md, "hw.power", map[string]any{"hw.name": "nvidia0", "n": int64(1)}), 1)
	require.Empty(t, Find(md, "hw.power", map[string]any{"hw.name": "nvidia0", "n": int64(2)}))
	require.Empty(t, Find(md, "hw.energy", nil))
}
