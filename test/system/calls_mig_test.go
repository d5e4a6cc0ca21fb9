//go:build system

package system

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// callBudget is the NVML calls per GPU per scrape at the default interval
// (10 s) and rediscover_interval (1 min), counted by the simulated library:
// the calls made every scrape plus the periodic ones amortized over the 6
// scrapes of a rediscover_interval, discovery left out. Scrapes are counted
// by nvmlDeviceGetMigMode, called once per GPU per scrape with MIG on or
// off (memory is called per MIG instance too).
func callBudget(t *testing.T, fleet string, gpus int) (float64, string) {
	t.Helper()
	_, counts := runCounted(t, fleet, 12, collectorOpts{defaultMetrics: true, rediscover: "1m"})
	scrapes := counts["nvmlDeviceGetMigMode"] / gpus
	require.GreaterOrEqual(t, scrapes, 8)
	every, periodic := 0.0, 0.0
	var detail []string
	for fn, n := range counts {
		switch {
		case n >= gpus*scrapes/2 && !migDiscovery[fn]:
			every += float64(n) / float64(gpus*scrapes)
			detail = append(detail, fmt.Sprintf("%s=%.1f", fn, float64(n)/float64(gpus*scrapes)))
		case discovery[fn] || migDiscovery[fn]:
		default:
			periodic += float64(n) / float64(gpus)
			detail = append(detail, fmt.Sprintf("%s=%d/min", fn, n/gpus))
		}
	}
	sort.Strings(detail)
	return every + periodic/6, strings.Join(detail, " ")
}

// migDiscovery is what the receiver asks once per MIG instance in its life
// (its ids and profile): in a 12-scrape run 7 instances make them look like
// calls of every scrape.
var migDiscovery = map[string]bool{"nvmlDeviceGetGpuInstanceId": true, "nvmlDeviceGetComputeInstanceId": true, "nvmlDeviceGetName": true}

// The call budget with and without MIG, the numbers the READMEs quote:
// 8 H100s, default metrics; with MIG each GPU is split into seven 1g.10gb
// instances (the most an H100 has). MIG adds per instance its handle, its
// UUID, its memory and its GPM sample (GPM per GPU instance).
func TestNVMLCallBudgetWithAndWithoutMIG(t *testing.T) {
	const gpus = 8
	plain, d1 := callBudget(t, fmt.Sprintf("gpus = %d\nsignal.utilization = const 60\n", gpus), gpus)
	var mig strings.Builder
	fmt.Fprintf(&mig, "gpus = %d\nsignal.utilization = const 60\n", gpus)
	for i := 0; i < gpus; i++ {
		fmt.Fprintf(&mig, "gpu.%d.mig = 1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb\n", i)
	}
	withMIG, d2 := callBudget(t, mig.String(), gpus)
	noFields, d3 := callBudget(t, fmt.Sprintf("gpus = %d\nsignal.utilization = const 60\nfault = 0 * unsupported nvmlDeviceGetFieldValues\n", gpus), gpus)
	fmt.Printf("nvml call budget per GPU per scrape (8 H100s, default metrics, 10 s interval): %.1f without MIG; %.1f with 7 MIG instances per GPU; %.1f on a driver without field values\n  without: %s\n  with MIG: %s\n  without field values: %s\n",
		plain, withMIG, noFields, d1, d2, d3)
	assert.Less(t, plain, 25.0, "without MIG: %s", d1)
	assert.Less(t, withMIG, 60.0, "with MIG: %s", d2)
}
