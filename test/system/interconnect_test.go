//go:build system

package system

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readSimFields reads the simulated library's NVMLSIM_FIELDS file: how
// often each GPU was asked each field.
func readSimFields(t *testing.T, path string) map[[2]int]int {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err, "the simulated library writes its field counts at nvmlShutdown")
	defer func() { _ = f.Close() }()
	out := map[[2]int]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		require.Len(t, parts, 3, sc.Text())
		var n [3]int
		for i, p := range parts {
			n[i], err = strconv.Atoi(p)
			require.NoError(t, err)
		}
		out[[2]int{n[0], n[1]}] = n[2]
	}
	require.NoError(t, sc.Err())
	return out
}

// Interconnect health through the real binary: a Grace Blackwell (NVLink5,
// C2C), an H100 and a V100. Each reports the PCIe, NVLink and C2C health
// its driver answers, in the one field-values request; a field answered
// NOT_SUPPORTED is asked once and not again (refused_retry_interval is
// 30 minutes), and the GPM graphics engine and tensor splits come with the
// other GPM metrics.
func TestInterconnectHealth(t *testing.T) {
	fieldsPath := filepath.Join(t.TempDir(), "fields")
	const batches = 4
	c, counts := runCounted(t, `gpus = 3
gpu.0.model = gb200
gpu.1.model = h100
gpu.2.model = v100
gpu.1.fabric = failed
signal.utilization = const 50
`, batches, collectorOpts{env: []string{"NVMLSIM_FIELDS=" + fieldsPath}})
	all := c.sink.Metrics()
	md := all[len(all)-1]
	exact := func(name string, want float64, at map[string]any) {
		t.Helper()
		pts := find(md, name, at)
		require.Len(t, pts, 1, "%s %v", name, at)
		require.InDelta(t, want, value(pts[0]), want*1e-6, "%s %v", name, at)
	}
	absent := func(name string, at map[string]any) {
		t.Helper()
		require.Empty(t, find(md, name, at), "%s %v must not be reported", name, at)
	}

	// Grace Blackwell: everything.
	exact("nvidia.gpu.pcie.errors", 0, gpu("nvidia0", "error.type", "fatal"))
	require.Len(t, find(md, "nvidia.gpu.pcie.errors", gpu("nvidia0")), 12, "12 PCIe error counters")
	exact("nvidia.gpu.nvlink.errors", 0, gpu("nvidia0", "error.type", "ecc_data"))
	exact("nvidia.gpu.nvlink.errors", 0, gpu("nvidia0", "error.type", "link_recovery_failed"))
	sym := find(md, "nvidia.gpu.nvlink.errors", gpu("nvidia0", "error.type", "symbol"))
	require.Len(t, sym, 1)
	require.Positive(t, value(sym[0]), "FEC-corrected symbol errors, summed over the 18 links")
	require.Len(t, find(md, "nvidia.gpu.nvlink.ber", gpu("nvidia0", "error.type", "effective")), 18, "per link")
	exact("nvidia.gpu.nvlink.ber", 1e-15, gpu("nvidia0", "error.type", "effective", "nvidia.gpu.nvlink.link", int64(3)))
	exact("nvidia.gpu.nvlink.ber", 3e-9, gpu("nvidia0", "error.type", "symbol", "nvidia.gpu.nvlink.link", int64(17)))
	exact("nvidia.gpu.c2c.errors", 0, gpu("nvidia0", "error.type", "crc"))
	exact("nvidia.gpu.c2c.errors", 2, gpu("nvidia0", "error.type", "replay"))
	exact("nvidia.gpu.c2c.errors", 0, gpu("nvidia0", "error.type", "replay_b2b"))
	exact("nvidia.gpu.engine.utilization", 0.5, gpu("nvidia0", "nvidia.gpu.engine", "graphics"))
	exact("nvidia.gpu.pipe.utilization", 0.3, gpu("nvidia0", "nvidia.gpu.pipe", "tensor_hmma"))

	// H100: PCIe errors and NVLink ECC; no NVLink5 counters, BER or C2C.
	require.Len(t, find(md, "nvidia.gpu.pcie.errors", gpu("nvidia1")), 12)
	exact("nvidia.gpu.nvlink.errors", 0, gpu("nvidia1", "error.type", "ecc_data"))
	absent("nvidia.gpu.nvlink.errors", gpu("nvidia1", "error.type", "symbol"))
	absent("nvidia.gpu.nvlink.ber", gpu("nvidia1"))
	absent("nvidia.gpu.c2c.errors", gpu("nvidia1"))
	exact("nvidia.gpu.engine.utilization", 0.5, gpu("nvidia1", "nvidia.gpu.engine", "graphics"))

	// V100: the replay rollover counter only; no NVLink ECC, no GPM.
	pts := find(md, "nvidia.gpu.pcie.errors", gpu("nvidia2"))
	require.Len(t, pts, 1)
	require.Equal(t, "replay_rollover", pts[0].Attributes().AsRaw()["error.type"])
	absent("nvidia.gpu.nvlink.errors", gpu("nvidia2", "error.type", "ecc_data"))
	absent("nvidia.gpu.engine.utilization", gpu("nvidia2"))

	// The NVSwitch fabric: the GB200 registered; the H100's probe failed
	// (a completed registration with an error status); the V100 has none.
	exact("nvidia.gpu.fabric.state", 1, gpu("nvidia0", "nvidia.gpu.fabric.state", "completed"))
	exact("nvidia.gpu.fabric.state", 0, gpu("nvidia0", "nvidia.gpu.fabric.state", "in_progress"))
	failed := find(md, "nvidia.gpu.fabric.state", gpu("nvidia1", "nvidia.gpu.fabric.state", "completed"))
	require.Len(t, failed, 1)
	require.Equal(t, 1.0, value(failed[0]))
	require.Equal(t, "ERROR_UNKNOWN", failed[0].Attributes().AsRaw()["error.type"])
	absent("nvidia.gpu.fabric.state", gpu("nvidia2"))

	// Refused fields are asked once; answered ones every scrape.
	fields := readSimFields(t, fieldsPath)
	scrapes := counts["nvmlDeviceGetMemoryInfo_v2"] / 3
	require.GreaterOrEqual(t, scrapes, batches)
	const c2cCRC, pcieCorrectable, symbolErrors, ber = 231, 173, 221, 220
	require.GreaterOrEqual(t, fields[[2]int{0, c2cCRC}], scrapes, "GB200 answers C2C: asked every scrape")
	require.Equal(t, 1, fields[[2]int{1, c2cCRC}], "H100 refused C2C: asked once")
	require.Equal(t, 1, fields[[2]int{2, pcieCorrectable}], "V100 refused the PCIe error counters: asked once")
	require.GreaterOrEqual(t, fields[[2]int{0, symbolErrors}], 18*scrapes, "per link, every scrape")
	require.Equal(t, 18, fields[[2]int{1, symbolErrors}], "H100: once per link, then not again")
	require.Equal(t, 18, fields[[2]int{1, ber}])

	// Still one field-values request per GPU per scrape (plus the NVLink
	// listing every rediscover_interval) and one GPM request.
	require.LessOrEqual(t, counts["nvmlDeviceGetFieldValues"], 3*scrapes+3*(scrapes/2+2))
	require.LessOrEqual(t, counts["nvmlGpmMetricsGet"], 2*scrapes)
	require.LessOrEqual(t, counts["nvmlDeviceGetGpuFabricInfoV"], 1+2*(scrapes/2+2), "every rediscover_interval (2s here); the V100 once")
}
