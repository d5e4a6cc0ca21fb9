//go:build system

package system

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// A MIG GPU instance with two compute instances: both MIG devices answer
// the instance's memory. It is reported once per GPU instance, so the sum
// over the GPU's MIG entities is what the instances have (50 GB of an
// 80 GB H100), not 90 GB.
func TestMIGMemoryOncePerGPUInstance(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 1\nsignal.utilization = const 60\nsignal.memory_used = const 20480\ngpu.0.mig = 1g.10gb,3g.40gb*2\n")
	md := c.waitBatch(t, 30*time.Second, "MIG memory", func(md pmetric.Metrics) bool {
		return has(md, "hw.gpu.memory.limit", map[string]any{"nvidia.mig.gpu_instance_id": int64(2)})
	})
	parent := find(md, "nvidia.gpu.info", gpu("nvidia0"))[0].Attributes().AsRaw()["hw.id"]
	limit := find(md, "hw.gpu.memory.limit", gpu("nvidia0"))
	require.Len(t, limit, 1)
	sum, used := 0.0, 0.0
	for _, p := range find(md, "hw.gpu.memory.limit", map[string]any{"hw.parent": parent}) {
		sum += value(p)
	}
	for _, p := range find(md, "hw.gpu.memory.usage", map[string]any{"hw.parent": parent}) {
		used += value(p)
	}
	require.LessOrEqual(t, sum, value(limit[0]), "the MIG instances' memory adds up to no more than the GPU's")
	require.LessOrEqual(t, used, value(find(md, "hw.gpu.memory.usage", gpu("nvidia0"))[0]), "nor their use")
	require.Len(t, find(md, "hw.gpu.memory.limit", map[string]any{"hw.parent": parent, "nvidia.mig.gpu_instance_id": int64(2)}), 1,
		"the 3g.40gb instance once, though it has two compute instances")
}
