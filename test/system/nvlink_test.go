//go:build system

package system

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// hw.gpu.io over an NVLink that goes down and comes back, at NVLink4 rates
// (25 GB/s per link and direction, 18 links, here at 60% utilization): the
// series never restarts and no interval gains more than the links carried,
// whether the driver answers the all-links scope (one counter) or only per
// link (the receiver sums each link's increase, a link that came back
// from the scrape after).
func TestNVLinkIOWithALinkComingBack(t *testing.T) {
	for _, tc := range []struct{ name, aggregate string }{{"aggregate scope", "yes"}, {"per link", "no"}} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCollectorWith(t, simLibrary(t, "NVMLSIM_LIB"), `gpus = 1
model = h100
signal.utilization = const 60
gpu.0.nvlink_aggregate = `+tc.aggregate+`
fault = 6 0 nvlink_down 2 4
`, collectorOpts{defaultMetrics: true, rediscover: "1s"})
			const full = 18 * 0.6 * 25e9 // bytes/s transmitted over every link
			var prev dp
			var start uint64
			sawDown, sawBack := false, false
			for i := 0; i < 16 && (!sawDown || !sawBack); i++ {
				md := c.waitBatch(t, 20*time.Second, "NVLink traffic", func(md pmetric.Metrics) bool {
					return has(md, "hw.gpu.io", gpu("nvidia0", "network.io.direction", "transmit"))
				})
				p := find(md, "hw.gpu.io", gpu("nvidia0", "network.io.direction", "transmit"))[0]
				if l := find(md, "nvidia.gpu.nvlink.link.active", gpu("nvidia0", "nvidia.gpu.nvlink.link", int64(2))); len(l) == 1 {
					if value(l[0]) == 0 {
						sawDown = true
					} else if sawDown {
						sawBack = true
					}
				}
				if i == 0 {
					prev, start = p, uint64(p.StartTimestamp())
					continue
				}
				require.Equal(t, start, uint64(p.StartTimestamp()), "batch %d: the series does not restart when a link goes down or comes back", i)
				dt := float64(p.Timestamp()-prev.Timestamp()) / 1e9
				rate := (value(p) - value(prev)) / dt
				require.GreaterOrEqual(t, rate, 0.0, "batch %d", i)
				require.Less(t, rate, 1.15*full, "batch %d: %.3g B/s over %.2fs is more than 18 links carry: a link's lifetime counter taken as one interval's traffic", i, rate, dt)
				prev = p
			}
			require.True(t, sawDown && sawBack, "link 2 went down and came back during the run")
		})
	}
}
