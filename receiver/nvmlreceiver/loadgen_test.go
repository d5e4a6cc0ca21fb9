package nvmlreceiver

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"
)

// The load generator's agent requests (benchmarks, end-to-end tests) carry
// exactly this receiver's metric table, so they stay shaped like a real agent.
func TestLoadgenCarriesTheMetricTable(t *testing.T) {
	var names []string
	for i := range metricDefs {
		names = append(names, metricDefs[i].name)
	}
	require.ElementsMatch(t, names, loadgen.GPUMetrics)
}
