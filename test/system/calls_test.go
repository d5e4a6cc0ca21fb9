//go:build system

package system

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// runCounted scrapes the fleet until the sink has batches batches, stops
// the collector (nvmlShutdown writes the simulated library's call counts)
// and returns the counts per function.
func runCounted(t *testing.T, fleet string, batches int, o collectorOpts) (*collector, map[string]int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "calls")
	o.env = append(o.env, "NVMLSIM_CALLS="+path)
	c := startCollectorWith(t, simLibrary(t, "NVMLSIM_LIB"), fleet, o)
	c.waitBatch(t, time.Duration(batches+20)*time.Second, fmt.Sprintf("%d scrapes", batches), func(pmetric.Metrics) bool {
		return len(c.sink.Metrics()) >= batches
	})
	require.NoError(t, c.proc.Stop(10*time.Second))
	return c, readSimCalls(t, path)
}

// discovery is what the receiver asks once per GPU in its life: identity
// (nvidia.gpu.info), event registration, GPM support, and a refused fan
// speed (asked again after refused_retry_interval, 30 min).
var discovery = map[string]bool{
	"nvmlInit_v2": true, "nvmlShutdown": true, "nvmlDeviceGetCount_v2": true, "nvmlDeviceGetHandleByIndex_v2": true,
	"nvmlDeviceGetUUID": true, "nvmlDeviceGetName": true, "nvmlDeviceGetSerial": true, "nvmlDeviceGetVbiosVersion": true,
	"nvmlDeviceGetPciInfo_v3": true, "nvmlDeviceGetVirtualizationMode": true, "nvmlDeviceGetSupportedEventTypes": true,
	"nvmlDeviceRegisterEvents": true, "nvmlGpmQueryDeviceSupport": true, "nvmlDeviceGetFanSpeed": true, "nvmlDeviceGetMinorNumber": true,
	"nvmlDeviceGetGpuFabricInfoV": true, // refused outside an NVSwitch fabric: asked again in 30 min
}

// perScrape splits the calls per GPU: every scrape (the functions called
// on most scrapes), once in the receiver's life (discovery), and the rest,
// read once a rediscover_interval (limits, the NVLink list) or refused and
// asked again later, which a run shorter than rediscover_interval makes
// once.
func perScrape(counts map[string]int, gpus int) (every, periodic float64, scrapes int, detail []string) {
	scrapes = counts["nvmlDeviceGetMemoryInfo_v2"] / gpus
	for fn, n := range counts {
		per := float64(n) / float64(gpus*scrapes)
		switch {
		case n >= gpus*scrapes/2:
			every += per
			detail = append(detail, fmt.Sprintf("%s=%.1f", fn, per))
		case !discovery[fn]:
			periodic += float64(n) / float64(gpus)
			detail = append(detail, fmt.Sprintf("%s=%d/min", fn, n/gpus))
		}
	}
	sort.Strings(detail)
	return every, periodic, scrapes, detail
}

// An H100 with the default metrics, answered through field values, costs
// under 25 NVML calls per GPU per scrape at the default interval (10 s)
// and rediscover_interval (1 min); the budget itself (24.1, 46.3 with MIG,
// 111.8 without field values: 72 NVLink error counters, 7 violation
// policies, 2 PCIe throughput samples of 20 ms) is measured in
// calls_mig_test.go.
func TestNVMLCallsPerGPUPerScrape(t *testing.T) {
	const gpus = 8
	_, counts := runCounted(t, fmt.Sprintf("gpus = %d\nsignal.utilization = const 60\n", gpus), 12,
		collectorOpts{defaultMetrics: true, rediscover: "1m"})
	every, periodic, scrapes, detail := perScrape(counts, gpus)
	require.GreaterOrEqual(t, scrapes, 8)
	// At the defaults a rediscover_interval is 6 scrapes.
	steady := every + periodic/6
	fmt.Printf("nvml calls per GPU per scrape (8 H100s, default metrics): %.1f every scrape + %.0f a minute = %.1f at 10 s: %s\n",
		every, periodic, steady, strings.Join(detail, " "))
	assert.Less(t, steady, 25.0, "calls per GPU per scrape: %s", strings.Join(detail, " "))
	for _, fn := range []string{"nvmlDeviceGetNvLinkErrorCounter", "nvmlDeviceGetViolationStatus", "nvmlDeviceGetPcieThroughput",
		"nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetPcieReplayCounter", "nvmlDeviceGetTotalEnergyConsumption",
		"nvmlDeviceGetNvLinkState", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit"} {
		assert.Zero(t, counts[fn], "%s is read through field values", fn)
	}
}

// A driver that answers some fields NOT_SUPPORTED, or has no field values
// at all, still gives every metric, through the functions of before.
func TestFieldValuesFallBack(t *testing.T) {
	const gpus = 2
	for _, tc := range []struct {
		name, faults string
		called       []string
	}{
		{"one field missing", "fault = 0 * field_unsupported 38\nfault = 0 * field_unsupported 197\n",
			[]string{"nvmlDeviceGetNvLinkErrorCounter", "nvmlDeviceGetPcieThroughput"}},
		{"no field values", "fault = 0 * unsupported nvmlDeviceGetFieldValues\n",
			[]string{"nvmlDeviceGetNvLinkErrorCounter", "nvmlDeviceGetViolationStatus", "nvmlDeviceGetPcieThroughput",
				"nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetPcieReplayCounter", "nvmlDeviceGetTotalEnergyConsumption"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, counts := runCounted(t, fmt.Sprintf("gpus = %d\nsignal.utilization = const 60\n%s", gpus, tc.faults), 4, collectorOpts{})
			for _, fn := range tc.called {
				assert.Positive(t, counts[fn], "%s replaces the field", fn)
			}
			last := c.sink.Metrics()[len(c.sink.Metrics())-1]
			for _, m := range []struct {
				name  string
				attrs map[string]any
			}{
				{"nvidia.gpu.nvlink.errors", gpu("nvidia0", "error.type", "crc_flit")},
				{"nvidia.gpu.pcie.throughput", gpu("nvidia0", "network.io.direction", "transmit")},
				{"hw.energy", gpu("nvidia0")},
				{"nvidia.gpu.clock.throttle.duration", gpu("nvidia0", "nvidia.gpu.violation.policy", "power")},
				{"hw.errors", gpu("nvidia0", "error.type", "uncorrected")},
				{"nvidia.gpu.pcie.replays", gpu("nvidia0")},
			} {
				assert.True(t, has(last, m.name, m.attrs), "%s %v still reported", m.name, m.attrs)
			}
		})
	}
}
