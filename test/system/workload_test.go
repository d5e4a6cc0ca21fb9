//go:build system

package system

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/metricwalk"
)

// The real binary names a GPU process's workload from the process's own
// cgroup, as the kubelet and containerd lay it out with the cgroupfs
// driver: a real process is moved into
// kubepods/besteffort/pod<uid>/<container id> and the simulated driver
// reports it on a GPU. Needs a cgroup hierarchy this test may write (root,
// as in the project's CI); skipped where there is none.
func TestGPUProcessCarriesItsPodAndContainer(t *testing.T) {
	const uid = "4f6d2b1a-9c3e-4a7b-8d5f-1e2a3b4c5d6e"
	const container = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
	root := writableCgroupRoot(t)
	dir := filepath.Join(root, "kubepods", "besteffort", "pod"+uid, container)
	require.NoError(t, os.MkdirAll(dir, 0o755))

	sleeper := exec.Command("sleep", "300")
	require.NoError(t, sleeper.Start())
	pid := sleeper.Process.Pid
	t.Cleanup(func() {
		_ = sleeper.Process.Kill()
		_ = sleeper.Wait()
		for d := dir; d != root; d = filepath.Dir(d) {
			_ = os.Remove(d) // empty once its process is gone
		}
	})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644))
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	require.NoError(t, err)
	require.Contains(t, string(cg), "pod"+uid+"/"+container, "the process is in the pod's container cgroup")

	fleet := fmt.Sprintf("gpus = 1\ngpu.0.model = h100\ngpu.0.process = %d 1024\n", pid)
	c := startCollectorWith(t, simLibrary(t, "NVMLSIM_LIB"), fleet, collectorOpts{})
	want := map[string]any{"process.pid": int64(pid)}
	md := c.waitBatch(t, 30*time.Second, "the process's memory", func(md pmetric.Metrics) bool {
		return len(metricwalk.Find(md, "nvidia.gpu.process.memory.usage", want)) > 0
	})
	dp := metricwalk.Find(md, "nvidia.gpu.process.memory.usage", want)[0]
	attrs := dp.Attributes().AsRaw()
	require.Equal(t, container, attrs["container.id"], "%v", attrs)
	require.Equal(t, uid, attrs["k8s.pod.uid"], "%v", attrs)
	require.Equal(t, "sleep", attrs["process.executable.name"])
	require.NotContains(t, attrs, "slurm.job.id")
	require.EqualValues(t, 1024<<20, metricwalk.Value(dp))
}

// writableCgroupRoot is a cgroup hierarchy this process may make groups in:
// the v2 unified one, or v1's memory controller.
func writableCgroupRoot(t *testing.T) string {
	t.Helper()
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/memory"} {
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			continue
		}
		probe := filepath.Join(root, "otelcol-gpu-probe")
		if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			continue
		}
		_ = os.Remove(probe)
		return root
	}
	t.Skip("no cgroup hierarchy this test may write (it needs root and a cgroup mount)")
	return ""
}
