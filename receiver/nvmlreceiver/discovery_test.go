package nvmlreceiver

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// failOpening makes GPU i fail to open by index (no handle) until the
// returned flag is cleared. Set before the harness starts: the fleet's
// functions are read by the discovery goroutine.
func failOpening(f *fleet, i int, ret nvml.Return) *atomic.Bool {
	var failing atomic.Bool
	failing.Store(true)
	orig := f.DeviceGetHandleByIndexFunc
	f.DeviceGetHandleByIndexFunc = func(n int) (nvml.Device, nvml.Return) {
		if n == i && failing.Load() {
			return nil, ret
		}
		return orig(n)
	}
	return &failing
}

func rediscoveringConfig() *Config {
	cfg := testConfig()
	cfg.RediscoverInterval = time.Millisecond
	return cfg
}

// A GPU that cannot be opened at discovery is reported failed, under its
// index, on every scrape, and joins as itself once it opens.
func TestGPUThatCannotBeOpenedIsReportedAndRetried(t *testing.T) {
	f := newH100Fleet()
	failing := failOpening(f, 2, nvml.ERROR_UNKNOWN)
	h := startHarness(t, f, rediscoveringConfig())
	for range 3 {
		md := h.scrape(t)
		require.Len(t, points(md, "nvidia.gpu.info", nil), 7, "the seven that opened report")
		requireFailedStatus(t, md, "index:2")
		require.Len(t, points(md, "hw.status", map[string]any{"hw.id": "index:2", "hw.name": "nvidia2"}), 3)
		require.Len(t, points(md, "hw.status", map[string]any{"hw.id": "index:2", "hw.state": "failed", "nvidia.gpu.health.reason": "unopened"}), 1, "failed, and why")
		require.Empty(t, points(md, "hw.status", map[string]any{"hw.id": fixedUUID(2)}))
	}
	require.Len(t, h.logs.FilterMessageSnippet("cannot open GPU").All(), 1, "one warning while it keeps failing the same way")

	failing.Store(false)
	var md pmetric.Metrics
	require.Eventually(t, func() bool {
		md = h.scrape(t)
		return len(points(md, "nvidia.gpu.info", nil)) == 8
	}, 5*time.Second, time.Millisecond, "GPU 2 joins once it opens")
	require.Empty(t, points(md, "hw.status", map[string]any{"hw.id": "index:2"}), "its stand-in is gone")
	ok := points(md, "hw.status", map[string]any{"hw.id": fixedUUID(2), "hw.state": "ok"})
	require.Len(t, ok, 1)
	require.Equal(t, int64(1), ok[0].IntValue())
	require.Len(t, h.logs.FilterMessageSnippet("GPU found").All(), 1)

	// Its XID events are watched too, once the watcher has registered it
	// (between two of its waits).
	require.Eventually(t, func() bool { return h.s.watcher.watching.Load() == 8 }, 5*time.Second, time.Millisecond)
	f.xids <- nvml.EventData{Device: f.Devices[2], EventType: nvml.EventTypeXidCriticalError, EventData: 31, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	require.Eventually(t, func() bool {
		md = h.scrape(t)
		return len(points(md, "hw.errors", map[string]any{"hw.id": fixedUUID(2), "nvidia.xid.code": int64(31)})) == 1
	}, 5*time.Second, time.Millisecond, "an XID on the GPU found late is counted")
}

// A GPU with a handle but no UUID is reported under its PCI bus id.
func TestGPUWithoutUUIDIsReportedUnderItsBusID(t *testing.T) {
	f := newH100Fleet()
	f.device(5).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_UNKNOWN }
	h := startHarness(t, f, testConfig())
	md := h.scrape(t)
	requireFailedStatus(t, md, "00000000:1D:00.0")
	require.Len(t, points(md, "hw.status", map[string]any{"hw.id": "00000000:1D:00.0", "hw.name": "nvidia5"}), 3)
}

// A GPU added to the VM (or back from a reset that removed it) is found at
// the next rediscovery.
func TestHotAddedGPUIsFound(t *testing.T) {
	f := newH100Fleet()
	var count atomic.Int32
	count.Store(7)
	f.DeviceGetCountFunc = func() (int, nvml.Return) { return int(count.Load()), nvml.SUCCESS }
	h := startHarness(t, f, rediscoveringConfig())
	require.Len(t, points(h.scrape(t), "nvidia.gpu.info", nil), 7)
	count.Store(8)
	require.Eventually(t, func() bool {
		return len(points(h.scrape(t), "nvidia.gpu.info", nil)) == 8
	}, 5*time.Second, time.Millisecond)
}

// An enumeration that hangs in the driver does not hold up the scrape.
func TestHungRediscoveryDoesNotBlockTheScrape(t *testing.T) {
	f := newH100Fleet()
	var hang atomic.Bool
	release := make(chan struct{})
	count := f.DeviceGetCountFunc
	f.DeviceGetCountFunc = func() (int, nvml.Return) {
		if hang.Load() {
			<-release
		}
		return count()
	}
	h := startHarness(t, f, rediscoveringConfig())
	defer close(release)
	hang.Store(true)
	for range 5 {
		start := time.Now()
		md := h.scrape(t)
		require.Less(t, time.Since(start), time.Second)
		require.Len(t, points(md, "nvidia.gpu.info", nil), 8)
	}
}

// A MIG instance's UUID in devices selects its parent GPU, and of its MIG
// instances only that one.
func TestDevicesSelectsAMIGInstanceByUUID(t *testing.T) {
	f := newH100Fleet()
	f.enableMIG(0)
	mig := "MIG-def00000-2222-4333-8444-000000000001" // the 3g.40gb instance of GPU 0
	cfg := testConfig()
	cfg.Devices = []string{mig}
	require.NoError(t, cfg.Validate())
	h := startHarness(t, f, cfg)
	h.scrape(t)
	md := h.scrape(t)
	require.Len(t, points(md, "nvidia.gpu.info", nil), 1, "the parent GPU only")
	require.Len(t, points(md, "nvidia.gpu.info", map[string]any{"hw.id": fixedUUID(0)}), 1)
	migs := points(md, "hw.gpu.memory.usage", map[string]any{"hw.parent": fixedUUID(0)})
	require.Len(t, migs, 1, "only the selected instance")
	id, _ := migs[0].Attributes().Get("hw.id")
	require.Equal(t, mig, id.Str())
}
