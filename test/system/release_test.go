//go:build system

package system

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// readSimCalls reads the call counts the simulated library wrote at its
// last nvmlShutdown.
func readSimCalls(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err, "the simulated library writes its call counts at nvmlShutdown")
	defer func() { _ = f.Close() }()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, n, ok := strings.Cut(sc.Text(), " ")
		require.True(t, ok, sc.Text())
		v, err := strconv.Atoi(n)
		require.NoError(t, err)
		counts[name] = v
	}
	require.NoError(t, sc.Err())
	return counts
}

// A release file that comes while a call on a GPU hangs cannot close NVML
// under the call; NVML is closed when the call returns, so after the agent
// initialised NVML again, a later release lets a GPU reset proceed: every
// nvmlInit has its nvmlShutdown.
func TestReleaseWhileACallHangs(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release-nvml")
	calls := filepath.Join(t.TempDir(), "calls")
	started := time.Now() // the simulator's clock starts a little later
	c := startCollectorWith(t, simLibrary(t, "NVMLSIM_LIB"),
		"gpus = 2\nsignal.utilization = const 60\n"+
			"fault = 2 0 hang nvmlDeviceGetPerformanceState 6\n"+
			"fault = 2 1 lost until_reset\nfault = 17 1 gpu_reset\n",
		collectorOpts{releaseFile: release, env: []string{"NVMLSIM_CALLS=" + calls}})
	require.Eventually(t, func() bool { return strings.Contains(c.proc.Output(), "did not return in time") }, 20*time.Second, 100*time.Millisecond,
		"GPU 0's call hangs")

	// Released while GPU 0's call hangs (until 8 s): NVML stays open.
	require.NoError(t, os.WriteFile(release, nil, 0o600))
	require.Eventually(t, func() bool { return strings.Contains(c.proc.Output(), "NVML stays open") }, 10*time.Second, 100*time.Millisecond)
	require.Less(t, time.Since(started), 8*time.Second, "the release came while the call hung")
	// The call returns (8 s): NVML is closed then.
	for time.Since(started) < 9*time.Second {
		time.Sleep(100 * time.Millisecond)
	}

	// Initialised again, then released cleanly before the reset at 17 s.
	require.NoError(t, os.Remove(release))
	c.next = len(c.sink.Metrics()) // batches from before the release do not count
	c.waitBatch(t, 20*time.Second, "GPU 0 back", func(md pmetric.Metrics) bool {
		return has(md, "hw.gpu.utilization", gpu("nvidia0"))
	})
	require.NoError(t, os.WriteFile(release, nil, 0o600))
	require.Eventually(t, func() bool { return strings.Count(c.proc.Output(), "NVML released for a GPU reset") == 1 }, 10*time.Second, 100*time.Millisecond)
	require.Less(t, time.Since(started), 16*time.Second, "released before the reset")
	counts := readSimCalls(t, calls)
	require.Equal(t, 2, counts["nvmlInit_v2"], counts)
	require.Equal(t, counts["nvmlInit_v2"], counts["nvmlShutdown"], "every nvmlInit has its nvmlShutdown")

	// NVML is closed: the operator's reset proceeds, and GPU 1 is back
	// once the file is removed.
	for time.Since(started) < 19*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, os.Remove(release))
	c.next = len(c.sink.Metrics())
	c.waitBatch(t, 20*time.Second, "GPU 1 back after the reset", func(md pmetric.Metrics) bool {
		return has(md, "hw.gpu.utilization", gpu("nvidia1"))
	})
}
