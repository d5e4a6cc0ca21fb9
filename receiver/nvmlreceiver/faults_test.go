package nvmlreceiver

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/telemetrytest"
)

func counterValue(t *testing.T, tel *componenttest.Telemetry, name string, want map[string]string) int64 {
	t.Helper()
	return telemetrytest.Int64(tel, name, want)
}

func TestFaultNoLibraryThenDriverInstalled(t *testing.T) {
	f := newH100Fleet()
	f.initRet = nvml.ERROR_LIBRARY_NOT_FOUND
	cfg := testConfig()
	cfg.LibraryPath = "/opt/nvidia/libnvidia-ml.so.1"
	h := startHarness(t, f, cfg)
	require.Eventually(t, func() bool {
		md := h.scrape(t)
		require.Zero(t, md.DataPointCount(), "no GPU data without NVML, and no error either")
		return f.inits.Load() >= 3
	}, 5*time.Second, time.Millisecond, "init is retried at the interval")
	warn := h.logs.FilterMessageSnippet("NVML library not found").All()
	require.Len(t, warn, 1, "one clear warning, not one per retry")
	require.Equal(t, "/opt/nvidia/libnvidia-ml.so.1", warn[0].ContextMap()["library"], "the warning names where it looked")
	require.GreaterOrEqual(t, f.inits.Load(), int64(3), "init is retried")

	// The driver gets installed: the next retry picks the GPUs up.
	f.mu.Lock()
	f.initRet = nvml.SUCCESS
	f.mu.Unlock()
	require.Eventually(t, func() bool { return len(points(h.scrape(t), "nvidia.gpu.info", nil)) == 8 },
		5*time.Second, time.Millisecond, "the eight GPUs once init succeeds")
}

func TestFaultInitErrorIsRetriedAtTheInterval(t *testing.T) {
	f := newH100Fleet()
	f.initRet = nvml.ERROR_DRIVER_NOT_LOADED
	cfg := testConfig()
	cfg.InitRetryInterval = time.Hour
	h := startHarness(t, f, cfg)
	for i := 0; i < 5; i++ {
		require.Zero(t, h.scrape(t).DataPointCount())
	}
	require.Equal(t, int64(1), f.inits.Load(), "no retry before init_retry_interval")
	require.Len(t, h.logs.FilterMessageSnippet("NVML did not initialise").All(), 1)
	require.Equal(t, "ERROR_DRIVER_NOT_LOADED", h.logs.FilterMessageSnippet("NVML did not initialise").All()[0].ContextMap()["code"])
}

func TestFaultMissingSymbolIsNeverCalled(t *testing.T) {
	f := newH100Fleet()
	f.lacks("nvmlDeviceGetPowerUsage", "nvmlDeviceGetMemoryInfo_v2")
	// Calling a symbol the driver lacks would kill the process; the fake
	// fails the test instead.
	for i := range f.Devices {
		f.device(i).GetPowerUsageFunc = func() (uint32, nvml.Return) { panic("called nvmlDeviceGetPowerUsage, which the driver lacks") }
		f.device(i).GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { panic("called nvmlDeviceGetMemoryInfo_v2") }
	}
	h := startHarness(t, f, testConfig())
	md := h.scrape(t)
	require.Empty(t, points(md, "hw.power", nil))
	require.Empty(t, points(md, "nvidia.gpu.memory.reserved", nil), "only v2 has reserved memory")
	require.Len(t, points(md, "hw.gpu.memory.usage", nil), 8, "memory falls back to GetMemoryInfo (v1)")
	require.Len(t, points(md, "hw.energy", nil), 8, "other metrics go on")
	missing := h.logs.FilterMessageSnippet("lacks some NVML functions").All()
	require.Len(t, missing, 1)
	require.ElementsMatch(t, []any{"nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperatureV"}, missing[0].ContextMap()["missing"])
}

func TestFaultNotSupportedIsRememberedPerDeviceAndMetric(t *testing.T) {
	ns := nvml.ERROR_NOT_SUPPORTED
	cases := []struct {
		metric string
		fn     string
		break_ func(d *server.Device)
		calls  func(d *server.Device) int
	}{
		{"hw.power", "nvmlDeviceGetPowerUsage", func(d *server.Device) { d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, ns } },
			func(d *server.Device) int { return len(d.GetPowerUsageCalls()) }},
		{"hw.energy", "nvmlDeviceGetTotalEnergyConsumption", func(d *server.Device) {
			d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return 0, nvml.ERROR_NO_PERMISSION }
		},
			func(d *server.Device) int { return len(d.GetTotalEnergyConsumptionCalls()) }},
		{"nvidia.gpu.pcie.replays", "nvmlDeviceGetPcieReplayCounter", func(d *server.Device) { d.GetPcieReplayCounterFunc = func() (int, nvml.Return) { return 0, ns } },
			func(d *server.Device) int { return len(d.GetPcieReplayCounterCalls()) }},
		{"nvidia.gpu.memory.remapped_rows", "nvmlDeviceGetRemappedRows", func(d *server.Device) {
			d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 0, 0, false, false, ns }
		}, func(d *server.Device) int { return len(d.GetRemappedRowsCalls()) }},
		{"nvidia.gpu.performance_state", "nvmlDeviceGetPerformanceState", func(d *server.Device) {
			d.GetPerformanceStateFunc = func() (nvml.Pstates, nvml.Return) { return 0, ns }
		},
			func(d *server.Device) int { return len(d.GetPerformanceStateCalls()) }},
		{"nvidia.gpu.power.limit", "nvmlDeviceGetEnforcedPowerLimit", func(d *server.Device) { d.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) { return 0, ns } },
			func(d *server.Device) int { return len(d.GetEnforcedPowerLimitCalls()) }},
	}
	for _, tc := range cases {
		t.Run(tc.metric, func(t *testing.T) {
			f := newH100Fleet()
			tc.break_(f.device(0))
			h := startHarness(t, f, testConfig())
			var md = h.scrape(t)
			for i := 0; i < 3; i++ {
				md = h.scrape(t)
			}
			require.Empty(t, points(md, tc.metric, map[string]any{"hw.id": fixedUUID(0)}), "GPU 0 lacks it")
			require.NotEmpty(t, points(md, tc.metric, map[string]any{"hw.id": fixedUUID(1)}), "GPU 1 still reports it")
			require.Len(t, points(md, "hw.gpu.utilization", map[string]any{"hw.id": fixedUUID(0), "hw.gpu.task": "general"}), 1, "GPU 0 reports the rest")
			require.Equal(t, 1, tc.calls(f.device(0)), "asked once, then remembered")
			require.Equal(t, 4, tc.calls(f.device(1)))
			require.Empty(t, h.logs.FilterLevelExact(zap.WarnLevel).All(), "not a warning")
			require.Len(t, h.logs.FilterMessageSnippet("not available on this GPU").FilterField(zap.String("function", tc.fn)).All(), 1, "one debug line")
		})
	}
}

// loseGPU makes every call on GPU i answer GPU_IS_LOST until restore is called.
func loseGPU(f *fleet, i int) (restore func()) {
	d := f.device(i)
	power, samples, rates, uuid := d.GetPowerUsageFunc, d.GetSamplesFunc, d.GetUtilizationRatesFunc, d.GetUUIDFunc
	lost := nvml.ERROR_GPU_IS_LOST
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, lost }
	d.GetSamplesFunc = func(nvml.SamplingType, uint64) (nvml.ValueType, []nvml.Sample, nvml.Return) { return 0, nil, lost }
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, lost }
	d.GetUUIDFunc = func() (string, nvml.Return) { return "", lost }
	getByUUID := f.DeviceGetHandleByUUIDFunc
	f.DeviceGetHandleByUUIDFunc = func(uuid string) (nvml.Device, nvml.Return) {
		if uuid == fixedUUID(i) {
			return nil, lost
		}
		return getByUUID(uuid)
	}
	return func() {
		d.GetPowerUsageFunc, d.GetSamplesFunc, d.GetUtilizationRatesFunc, d.GetUUIDFunc = power, samples, rates, uuid
		f.DeviceGetHandleByUUIDFunc = getByUUID
	}
}

func TestFaultGPULostThenBack(t *testing.T) {
	f := newH100Fleet()
	h := startHarness(t, f, testConfig())
	before := h.scrape(t)
	energyStart := points(before, "hw.energy", map[string]any{"hw.id": fixedUUID(2)})[0].StartTimestamp()

	restore := loseGPU(f, 2)
	h.scrape(t) // the scrape that notices
	md := h.scrape(t)
	lost := map[string]any{"hw.id": fixedUUID(2)}
	require.InDelta(t, 1, value(points(md, "hw.status", map[string]any{"hw.id": fixedUUID(2), "hw.state": "failed"})[0]), 0)
	require.InDelta(t, 0, value(points(md, "hw.status", map[string]any{"hw.id": fixedUUID(2), "hw.state": "ok"})[0]), 0)
	require.Empty(t, points(md, "hw.energy", lost), "a lost GPU reports only its status")
	for _, i := range []int{0, 1, 3, 7} {
		require.Len(t, points(md, "hw.energy", map[string]any{"hw.id": fixedUUID(i)}), 1, "GPU %d keeps reporting", i)
	}
	require.Len(t, h.logs.FilterMessageSnippet("GPU lost").All(), 1)
	require.Equal(t, int64(1), counterValue(t, h.tel, "otelcol_receiver_nvml_devices", map[string]string{"state": "lost"}))

	restore()
	require.Eventually(t, func() bool {
		md = h.scrape(t)
		ok := points(md, "hw.status", map[string]any{"hw.id": fixedUUID(2), "hw.state": "ok"})
		return len(ok) == 1 && value(ok[0]) == 1
	}, 5*time.Second, time.Millisecond, "the GPU reports ok again after its reset")
	back := points(md, "hw.energy", lost)
	require.Len(t, back, 1)
	require.Greater(t, back[0].StartTimestamp(), energyStart, "cumulative series start over after a reset")
	require.Len(t, h.logs.FilterMessageSnippet("GPU is back").All(), 1)
}

func TestFaultHungCallIsBoundedAndDoesNotPileUp(t *testing.T) {
	f := newH100Fleet()
	release := make(chan struct{})
	entered := make(chan struct{}, 100)
	f.device(1).GetPowerUsageFunc = func() (uint32, nvml.Return) {
		entered <- struct{}{}
		<-release
		return 1, nvml.SUCCESS
	}
	cfg := testConfig()
	cfg.CallTimeout = 100 * time.Millisecond
	h := startHarness(t, f, cfg)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	start := time.Now()
	md := h.scrape(t)
	require.Less(t, time.Since(start), time.Second, "a scrape is bounded by call_timeout")
	require.Empty(t, points(md, "nvidia.gpu.info", map[string]any{"hw.id": fixedUUID(1)}), "the hung GPU is left out")
	require.Len(t, points(md, "nvidia.gpu.info", nil), 7, "the others report")
	state, _ := statusOf(t, md, fixedUUID(1))
	require.Equal(t, "ok", state, "one scrape over call_timeout is not a failure")

	goroutines := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		md = h.scrape(t)
		require.Len(t, points(md, "nvidia.gpu.info", nil), 7)
		requireFailedStatus(t, md, fixedUUID(1)) // from the second scrape, on every scrape while its call hangs
		_, reason := statusOf(t, md, fixedUUID(1))
		require.Equal(t, "unanswered", reason)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), goroutines+1, "no goroutine per scrape piles up behind the hung call")
	require.Len(t, entered, 1, "the hung GPU is not asked again while its call is in flight")
	require.Len(t, h.logs.FilterMessageSnippet("did not return in time").All(), 1)
	require.Equal(t, int64(1), counterValue(t, h.tel, "otelcol_receiver_nvml_devices", map[string]string{"state": "hung"}))

	close(release)
	require.Eventually(t, func() bool { return !h.s.devices[1].busy.Load() }, 5*time.Second, time.Millisecond)
	md = h.scrape(t)
	require.Len(t, points(md, "nvidia.gpu.info", nil), 8, "back once the call returns")
	ok := points(md, "hw.status", map[string]any{"hw.id": fixedUUID(1), "hw.state": "ok"})
	require.Len(t, ok, 1)
	require.Equal(t, int64(1), ok[0].IntValue())
	closed := points(md, "hw.status", map[string]any{"hw.id": fixedUUID(1), "hw.state": "failed", "nvidia.gpu.health.reason": "unanswered"})
	require.Len(t, closed, 1, "the failed verdict's series is closed with a 0")
	require.Equal(t, int64(0), closed[0].IntValue())
}

// statusOf is a GPU's hw.status verdict: the state whose point is 1, and
// its reason ("none" without one).
func statusOf(t *testing.T, md pmetric.Metrics, uuid string) (state, reason string) {
	t.Helper()
	for _, p := range points(md, "hw.status", map[string]any{"hw.id": uuid}) {
		if p.IntValue() != 1 {
			continue
		}
		require.Empty(t, state, "one current state")
		st, _ := p.Attributes().Get("hw.state")
		state, reason = st.Str(), "none"
		if r, ok := p.Attributes().Get("nvidia.gpu.health.reason"); ok {
			reason = r.Str()
		}
	}
	require.NotEmpty(t, state, "hw.status of %s", uuid)
	return state, reason
}

// requireFailedStatus checks a GPU's hw.status says failed, and only that.
func requireFailedStatus(t *testing.T, md pmetric.Metrics, uuid string) {
	t.Helper()
	for _, st := range []string{"ok", "degraded", "failed"} {
		p := points(md, "hw.status", map[string]any{"hw.id": uuid, "hw.state": st})
		require.Len(t, p, 1, "hw.status %s of %s", st, uuid)
		want := int64(0)
		if st == "failed" {
			want = 1
		}
		require.Equal(t, want, p[0].IntValue(), "hw.status %s of %s", st, uuid)
	}
}

// A hang of the whole driver (a lock held through a GSP timeout) silences
// every worker at once: each GPU is still reported on every scrape, under
// its own identity, failed from the second silent scrape.
func TestFaultWholeDriverHangStillReportsEveryGPU(t *testing.T) {
	f := newH100Fleet()
	release := make(chan struct{})
	for i := range 8 {
		f.device(i).GetPowerUsageFunc = func() (uint32, nvml.Return) {
			<-release
			return 1, nvml.SUCCESS
		}
	}
	cfg := testConfig()
	cfg.CallTimeout = 50 * time.Millisecond
	h := startHarness(t, f, cfg)
	defer close(release)
	for n := range 3 {
		md := h.scrape(t)
		require.Len(t, points(md, "hw.status", nil), 8*3, "every GPU's status, and nothing else")
		require.Equal(t, 1, md.MetricCount())
		for i := range 8 {
			if n == 0 {
				state, _ := statusOf(t, md, fixedUUID(i))
				require.Equal(t, "ok", state, "not failed after one silent scrape")
				continue
			}
			requireFailedStatus(t, md, fixedUUID(i))
			require.Len(t, points(md, "hw.status", map[string]any{"hw.id": fixedUUID(i), "hw.name": fmt.Sprintf("nvidia%d", i), "hw.state": "failed"}), 1)
		}
	}
	require.Equal(t, int64(8), counterValue(t, h.tel, "otelcol_receiver_nvml_devices", map[string]string{"state": "hung"}))
}

func TestFaultCounterResetStartsANewSeries(t *testing.T) {
	f := newH100Fleet()
	energy := uint64(5_000_000)
	f.device(0).GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return energy, nvml.SUCCESS }
	h := startHarness(t, f, testConfig())
	first := points(h.scrape(t), "hw.energy", map[string]any{"hw.id": fixedUUID(0)})[0]
	energy = 6_000_000
	second := points(h.scrape(t), "hw.energy", map[string]any{"hw.id": fixedUUID(0)})[0]
	require.Equal(t, first.StartTimestamp(), second.StartTimestamp(), "a rising counter keeps its start")
	require.InDelta(t, 6000, second.DoubleValue(), 1e-9)
	// The new series must start after the old one's last point.
	require.Eventually(t, func() bool { return pcommon.NewTimestampFromTime(time.Now()) > second.Timestamp() }, time.Second, 100*time.Microsecond)
	energy = 1_000 // driver reload
	third := points(h.scrape(t), "hw.energy", map[string]any{"hw.id": fixedUUID(0)})[0]
	require.Greater(t, third.StartTimestamp(), second.StartTimestamp(), "a counter that went backwards starts a new series")
	require.InDelta(t, 1, third.DoubleValue(), 1e-9)
	other := points(h.scrape(t), "hw.energy", map[string]any{"hw.id": fixedUUID(1)})[0]
	require.Equal(t, first.StartTimestamp(), other.StartTimestamp(), "other GPUs are unaffected")
}

func TestFaultXIDCountsAndStatus(t *testing.T) {
	f := newH100Fleet()
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	f.xids <- nvml.EventData{Device: f.Devices[3], EventType: nvml.EventTypeXidCriticalError, EventData: 48, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	f.xids <- nvml.EventData{Device: f.Devices[3], EventType: nvml.EventTypeXidCriticalError, EventData: 48, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	f.xids <- nvml.EventData{Device: f.Devices[5], EventType: nvml.EventTypeXidCriticalError, EventData: 79, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	var md pmetric.Metrics
	xid := func(gpu int, code int64) []float64 {
		var out []float64
		for _, dp := range points(md, "hw.errors", map[string]any{"hw.id": fixedUUID(gpu), "error.type": "xid", "nvidia.xid.code": code}) {
			out = append(out, value(dp))
		}
		return out
	}
	state := func(gpu int, s string) float64 {
		return value(points(md, "hw.status", map[string]any{"hw.id": fixedUUID(gpu), "hw.state": s})[0])
	}
	sum := func(v []float64) float64 {
		t := 0.0
		for _, x := range v {
			t += x
		}
		return t
	}
	// The watcher may hand the three events to two scrapes: whichever
	// scrape an XID is counted in must show its GPU's state.
	var prev3, prev5 float64
	degraded, failed := false, false
	require.Eventually(t, func() bool {
		md = h.scrape(t)
		c3, c5 := sum(xid(3, 48)), sum(xid(5, 79))
		if c3 > prev3 {
			degraded = state(3, "degraded") == 1
		}
		if c5 > prev5 {
			failed = state(5, "failed") == 1
		}
		prev3, prev5 = c3, c5
		return c3 == 2 && c5 == 1
	}, 5*time.Second, time.Millisecond, "the three XIDs counted")
	require.Empty(t, xid(0, 48))
	require.True(t, degraded, "XID 48 degrades the GPU in the interval it is counted in")
	require.True(t, failed, "XID 79 fails the GPU in the interval it is counted in")
	require.InDelta(t, 1, state(0, "ok"), 0)
	// The interval has passed: the verdicts hold (nothing reset the GPUs),
	// the counts stay.
	for range 3 {
		md = h.scrape(t)
		st, reason := statusOf(t, md, fixedUUID(3))
		require.Equal(t, [2]string{"degraded", "xid_48"}, [2]string{st, reason})
		st, reason = statusOf(t, md, fixedUUID(5))
		require.Equal(t, [2]string{"failed", "xid_79"}, [2]string{st, reason})
		require.Len(t, points(md, "hw.errors", map[string]any{"hw.id": fixedUUID(3), "nvidia.xid.code": int64(48)}), 1)
	}
}

func TestFaultEveryCaseKeepsTheSessionUsable(t *testing.T) {
	// After all of the above on one session, a scrape still works and
	// shutdown is clean (goleak checks the workers and the watcher).
	f := newH100Fleet()
	restore := loseGPU(f, 0)
	f.lacks("nvmlDeviceGetFanSpeed")
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	restore()
	_, err := h.s.scrape(context.Background())
	require.NoError(t, err)
}

// go-nvml calls whichever version of these functions the driver exports; a
// driver with only the _v3 symbol still has them.
func TestVersionedSymbolsCountAsPresent(t *testing.T) {
	f := newH100Fleet()
	f.lacks("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2")
	cfg := testConfig()
	cfg.Metrics = map[string]MetricConfig{"nvidia.gpu.process.memory.usage": {Enabled: true}}
	h := startHarness(t, f, cfg)
	require.Len(t, points(h.scrape(t), "nvidia.gpu.process.memory.usage", nil), 8, "_v3 is there")

	g := newH100Fleet()
	g.lacks("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetComputeRunningProcesses_v3")
	for i := range g.Devices {
		g.device(i).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { panic("no version of it exists") }
	}
	h = startHarness(t, g, cfg)
	require.Empty(t, points(h.scrape(t), "nvidia.gpu.process.memory.usage", nil))
}

// A refusal is not forever: asked again after refused_retry_interval, and
// the reading comes back once the GPU answers it.
func TestFaultRefusedReadingIsAskedAgain(t *testing.T) {
	f := newH100Fleet()
	var refuse atomic.Bool
	refuse.Store(true)
	d := f.device(0)
	orig := d.GetPowerUsageFunc
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		if refuse.Load() {
			return 0, nvml.ERROR_NO_PERMISSION
		}
		return orig()
	}
	cfg := testConfig()
	// Long enough that two scrapes in a row fall within it on a loaded
	// machine under -race.
	cfg.RefusedRetryInterval = 2 * time.Second
	h := startHarness(t, f, cfg)
	h.scrape(t)
	h.scrape(t)
	require.Len(t, d.GetPowerUsageCalls(), 1, "not asked again within the interval")
	refuse.Store(false) // a permission granted
	require.Eventually(t, func() bool {
		return len(points(h.scrape(t), "hw.power", map[string]any{"hw.id": fixedUUID(0)})) == 1
	}, 15*time.Second, 50*time.Millisecond, "asked again after the interval, and reported")
}

// A MIG mode change, and a recovery, ask every refused reading again at once.
func TestFaultMIGModeChangeAndRecoveryAskAgain(t *testing.T) {
	f := newH100Fleet()
	d := f.device(0)
	var mode atomic.Int32
	d.GetMigModeFunc = func() (int, int, nvml.Return) { return int(mode.Load()), int(mode.Load()), nvml.SUCCESS }
	d.GetPerformanceStateFunc = func() (nvml.Pstates, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	h := startHarness(t, f, testConfig()) // refused readings wait 30 minutes
	h.scrape(t)
	h.scrape(t)
	require.Len(t, d.GetPerformanceStateCalls(), 1)

	mode.Store(nvml.DEVICE_MIG_ENABLE)
	h.scrape(t) // sees the change: everything refused is asked again
	h.scrape(t)
	require.Len(t, d.GetPerformanceStateCalls(), 2, "asked again after the MIG mode changed")
	require.Len(t, h.logs.FilterMessageSnippet("MIG mode changed").All(), 1)

	restore := loseGPU(f, 0)
	h.scrape(t)
	restore()
	require.Eventually(t, func() bool {
		return len(points(h.scrape(t), "nvidia.gpu.info", map[string]any{"hw.id": fixedUUID(0)})) == 1
	}, 5*time.Second, time.Millisecond)
	require.Len(t, d.GetPerformanceStateCalls(), 3, "asked again after the GPU came back")
}

// A registration for XID events that fails (it races with the driver's own
// setup on a fresh node) is tried again, and the GPU's XIDs then counted.
func TestFaultXIDRegistrationIsRetried(t *testing.T) {
	defer func(old time.Duration) { xidRetryEvery = old }(xidRetryEvery)
	xidRetryEvery = 10 * time.Millisecond
	f := newH100Fleet()
	var failures atomic.Int32
	failures.Store(3)
	f.device(1).RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return {
		if failures.Add(-1) >= 0 {
			return nvml.ERROR_UNKNOWN
		}
		return nvml.SUCCESS
	}
	h := startHarness(t, f, testConfig())
	require.Eventually(t, func() bool { return h.s.watcher.watching.Load() == 8 }, 5*time.Second, time.Millisecond)
	require.Len(t, h.logs.FilterMessageSnippet("cannot watch XID events yet").All(), 1, "one warning, not one per try")
	f.xids <- nvml.EventData{Device: f.Devices[1], EventType: nvml.EventTypeXidCriticalError, EventData: 13, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	require.Eventually(t, func() bool {
		return len(points(h.scrape(t), "hw.errors", map[string]any{"hw.id": fixedUUID(1), "nvidia.xid.code": int64(13)})) == 1
	}, 5*time.Second, time.Millisecond)
}

// XIDs that arrive while a GPU is lost are kept, the GPU is not reported
// failed for an extra interval once back, and its new handle is registered
// for XID events again.
func TestFaultXIDAcrossALostGPU(t *testing.T) {
	f := newH100Fleet()
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	registrations := len(f.device(2).RegisterEventsCalls())
	restore := loseGPU(f, 2)
	md := h.scrape(t)
	requireFailedStatus(t, md, fixedUUID(2))
	f.xids <- nvml.EventData{Device: f.Devices[2], EventType: nvml.EventTypeXidCriticalError, EventData: 79, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	require.Eventually(t, func() bool { return len(f.xids) == 0 }, 5*time.Second, time.Millisecond)
	h.scrape(t)
	restore()
	require.Eventually(t, func() bool {
		md = h.scrape(t)
		return len(points(md, "nvidia.gpu.info", map[string]any{"hw.id": fixedUUID(2)})) == 1
	}, 5*time.Second, time.Millisecond)
	xid := points(md, "hw.errors", map[string]any{"hw.id": fixedUUID(2), "nvidia.xid.code": int64(79)})
	require.Len(t, xid, 1, "the XID seen while lost is kept")
	require.Equal(t, int64(1), xid[0].IntValue())
	ok := points(md, "hw.status", map[string]any{"hw.id": fixedUUID(2), "hw.state": "ok"})
	require.Equal(t, int64(1), ok[0].IntValue(), "back: ok at once, not failed for another interval")
	require.Eventually(t, func() bool { return len(f.device(2).RegisterEventsCalls()) > registrations }, 5*time.Second, time.Millisecond,
		"the new handle is registered for XID events")
}

// A driver counter's first point is a true reset point: start time = its
// own time, so nothing claims the driver's lifetime total as the first
// interval's increase; later points keep that start.
func TestCumulativeFirstPointIsATrueResetPoint(t *testing.T) {
	f := newH100Fleet()
	h := startHarness(t, f, testConfig())
	first := points(h.scrape(t), "hw.energy", map[string]any{"hw.id": fixedUUID(0)})
	require.Len(t, first, 1)
	require.Equal(t, first[0].Timestamp(), first[0].StartTimestamp(), "start = time on the first point")
	second := points(h.scrape(t), "hw.energy", map[string]any{"hw.id": fixedUUID(0)})
	require.Equal(t, first[0].StartTimestamp(), second[0].StartTimestamp())
	require.Greater(t, second[0].Timestamp(), second[0].StartTimestamp())
}

// hw.status sees a rise of uncorrected ECC errors with hw.errors off.
func TestFaultECCDegradesWithHWErrorsOff(t *testing.T) {
	f := newH100Fleet()
	var unc atomic.Uint64
	f.device(4).GetTotalEccErrorsFunc = func(typ nvml.MemoryErrorType, _ nvml.EccCounterType) (uint64, nvml.Return) {
		if typ == nvml.MEMORY_ERROR_TYPE_UNCORRECTED {
			return unc.Load(), nvml.SUCCESS
		}
		return 0, nvml.SUCCESS
	}
	cfg := testConfig()
	cfg.Metrics = map[string]MetricConfig{"hw.errors": {Enabled: false}}
	h := startHarness(t, f, cfg)
	h.scrape(t)
	unc.Store(3)
	md := h.scrape(t)
	require.Empty(t, points(md, "hw.errors", nil), "hw.errors is off")
	deg := points(md, "hw.status", map[string]any{"hw.id": fixedUUID(4), "hw.state": "degraded"})
	require.Len(t, deg, 1)
	require.Equal(t, int64(1), deg[0].IntValue())
}

// Active NVLinks are listed again every rediscover_interval, not once.
func TestNVLinksAreListedAgain(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		again    bool
	}{{time.Hour, false}, {time.Millisecond, true}} {
		f := newH100Fleet()
		cfg := testConfig()
		cfg.RediscoverInterval = tc.interval
		h := startHarness(t, f, cfg)
		h.scrape(t)
		first := len(f.device(0).GetNvLinkStateCalls())
		require.Positive(t, first)
		if tc.again {
			require.Eventually(t, func() bool {
				h.scrape(t)
				return len(f.device(0).GetNvLinkStateCalls()) > first
			}, 5*time.Second, time.Millisecond, "listed again once the interval passed")
			continue
		}
		for range 3 {
			h.scrape(t)
		}
		require.Equal(t, first, len(f.device(0).GetNvLinkStateCalls()), "not listed again within the interval")
	}
}

// A driver before R535 names clock event reasons throttle reasons.
func TestFaultThrottleReasonsBeforeR535(t *testing.T) {
	f := newH100Fleet()
	f.lacks("nvmlDeviceGetCurrentClocksEventReasons")
	for i := range f.Devices {
		f.device(i).GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) { panic("called a function the driver lacks") }
		f.device(i).GetCurrentClocksThrottleReasonsFunc = func() (uint64, nvml.Return) { return nvml.ClocksThrottleReasonSwPowerCap, nvml.SUCCESS }
	}
	h := startHarness(t, f, testConfig())
	md := h.scrape(t)
	p := points(md, "nvidia.gpu.clock.throttle.active", map[string]any{"hw.id": fixedUUID(0), "nvidia.gpu.throttle.reason": "sw_power_cap"})
	require.Len(t, p, 1)
	require.Equal(t, int64(1), p[0].IntValue())
}

// Encoder and decoder utilization are averaged over the samples since the
// last scrape, like the GPU's; the instant reading where there are none.
func TestEncoderDecoderAveragedFromSamples(t *testing.T) {
	f := newH100Fleet()
	d := f.device(3)
	var clock atomic.Uint64
	d.GetSamplesFunc = func(typ nvml.SamplingType, last uint64) (nvml.ValueType, []nvml.Sample, nvml.Return) {
		if typ == nvml.DEC_UTILIZATION_SAMPLES {
			return 0, nil, nvml.ERROR_NOT_SUPPORTED
		}
		t := clock.Add(4) + last
		return nvml.VALUE_TYPE_UNSIGNED_INT, []nvml.Sample{
			{TimeStamp: t - 3, SampleValue: u32(10)}, {TimeStamp: t - 2, SampleValue: u32(20)},
			{TimeStamp: t - 1, SampleValue: u32(30)}, {TimeStamp: t, SampleValue: u32(40)},
		}, nvml.SUCCESS
	}
	d.GetDecoderUtilizationFunc = func() (uint32, uint32, nvml.Return) { return 7, 167000, nvml.SUCCESS }
	h := startHarness(t, f, testConfig())
	md := h.scrape(t)
	enc := points(md, "hw.gpu.utilization", map[string]any{"hw.id": fixedUUID(3), "hw.gpu.task": "encoder"})
	require.Len(t, enc, 1)
	require.InDelta(t, 0.25, enc[0].DoubleValue(), 1e-9, "the average of 10, 20, 30, 40 percent")
	dec := points(md, "hw.gpu.utilization", map[string]any{"hw.id": fixedUUID(3), "hw.gpu.task": "decoder"})
	require.Len(t, dec, 1)
	require.InDelta(t, 0.07, dec[0].DoubleValue(), 1e-9, "no decoder samples: the instant reading")
}

// A MIG instance whose GPM sample the driver refuses is not asked (and
// logged) again every scrape.
func TestFaultGPMMIGRefusalIsRemembered(t *testing.T) {
	f := newH100Fleet()
	f.enableMIG(0)
	var calls atomic.Int32
	f.GpmMigSampleGetFunc = func(nvml.Device, int, nvml.GpmSample) nvml.Return {
		calls.Add(1)
		return nvml.ERROR_NOT_SUPPORTED
	}
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	first := calls.Load()
	require.Positive(t, first)
	for range 3 {
		h.scrape(t)
	}
	require.Equal(t, first, calls.Load(), "asked once per instance, then remembered")
	require.Len(t, h.logs.FilterMessageSnippet("not available on this GPU").FilterField(zap.String("function", "nvmlGpmMigSampleGet")).All(), int(first))
}

// A GPU that answers some maximum clocks and refuses one: the refused
// clock is not asked again (until refused_retry_interval), the others are
// read at every limits read.
func TestFaultRefusedMaxClockIsRememberedPerClock(t *testing.T) {
	f := newH100Fleet()
	d := f.device(0)
	var video, graphics atomic.Int32
	d.GetMaxClockInfoFunc = func(c nvml.ClockType) (uint32, nvml.Return) {
		switch c {
		case nvml.CLOCK_VIDEO:
			video.Add(1)
			return 0, nvml.ERROR_NOT_SUPPORTED
		case nvml.CLOCK_GRAPHICS:
			graphics.Add(1)
		}
		return 1980, nvml.SUCCESS
	}
	cfg := testConfig()
	cfg.RediscoverInterval = time.Millisecond // limits read at every scrape
	h := startHarness(t, f, cfg)
	var md pmetric.Metrics
	for range 4 {
		time.Sleep(2 * time.Millisecond)
		md = h.scrape(t)
	}
	require.Equal(t, int32(1), video.Load(), "the refused clock is asked once")
	require.GreaterOrEqual(t, graphics.Load(), int32(3), "the others at every limits read")
	got := map[any]bool{}
	for _, p := range points(md, "nvidia.gpu.clock.frequency.max", map[string]any{"hw.id": fixedUUID(0)}) {
		c, _ := p.Attributes().Get("nvidia.gpu.clock")
		got[c.Str()] = true
	}
	require.False(t, got["video"])
	require.True(t, got["graphics"] && got["sm"] && got["memory"], "%v", got)
}
