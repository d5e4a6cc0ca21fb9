//go:build system

package system

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// hw.name follows the GPU's minor number (/dev/nvidia<minor>), which the
// driver need not give in NVML index order: here GPU 0 is /dev/nvidia1
// and GPU 1 is /dev/nvidia0.
func TestHWNameFollowsTheMinorNumber(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 2\nsignal.utilization = const 10\ngpu.0.minor = 1\ngpu.1.minor = 0\n")
	md := c.waitBatch(t, 30*time.Second, "both GPUs", func(md pmetric.Metrics) bool {
		return has(md, "nvidia.gpu.info", gpu("nvidia0")) && has(md, "nvidia.gpu.info", gpu("nvidia1"))
	})
	// The simulator's UUIDs end in 0x51a000 + the NVML index.
	require.Equal(t, "GPU-5e1f0000-0000-4000-8000-00000051a000", find(md, "nvidia.gpu.info", gpu("nvidia1"))[0].Attributes().AsRaw()["hw.id"])
	require.Equal(t, "GPU-5e1f0000-0001-4000-8000-00000051a001", find(md, "nvidia.gpu.info", gpu("nvidia0"))[0].Attributes().AsRaw()["hw.id"])
}
