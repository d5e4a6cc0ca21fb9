//go:build system

package system

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// PCIe byte counters "can be wrapped" (nvml.h): a driver that keeps them in
// 32 bits wraps every 4 GiB. The simulated GPU's counters start 600 MB
// short of 2^32 and run at 102.4 MB/s (transmit) and 153.6 MB/s (receive):
// both wrap within the first seconds. Every scrape after the first still
// gives a rate near the real one: the wrap is not taken for a reset (no
// interval skipped) nor for a jump.
func TestPCIeCountersWrapAt32Bits(t *testing.T) {
	c := startCollectorWith(t, simLibrary(t, "NVMLSIM_LIB"), `gpus = 1
signal.utilization = const 50
gpu.0.pcie_counter_bits = 32
gpu.0.pcie_counter_start = 3694967296
`, collectorOpts{defaultMetrics: true})
	// The first batch with PCIe rates, then 9 more (about 9 s at 1 s).
	c.waitBatch(t, 30*time.Second, "a first PCIe rate", func(md pmetric.Metrics) bool {
		return has(md, "nvidia.gpu.pcie.throughput", nil)
	})
	for i := 0; i < 9; i++ {
		md := c.waitBatch(t, 10*time.Second, "the next scrape", func(md pmetric.Metrics) bool {
			return has(md, "nvidia.gpu.info", nil)
		})
		for _, d := range []struct {
			dir  string
			want float64
		}{{"transmit", 50 * 2000 * 1024}, {"receive", 50 * 3000 * 1024}} {
			p := find(md, "nvidia.gpu.pcie.throughput", gpu("nvidia0", "network.io.direction", d.dir))
			require.Len(t, p, 1, "scrape %d: a %s rate every interval, over the wrap too", i, d.dir)
			require.InEpsilon(t, d.want, value(p[0]), 0.01, "scrape %d %s", i, d.dir)
		}
	}
}
