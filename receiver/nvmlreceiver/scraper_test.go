package nvmlreceiver

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/metricwalk"
)

var update = flag.Bool("update", false, "rewrite testdata/expected_*.yaml from the current output")

func TestMain(m *testing.M) {
	xidWaitMillis = 20 // shutdown waits for one event-set wait
	// No fabric unless a test says so (go-nvml's fabric handler is not
	// mockable).
	gpuFabricInfo = func(nvml.Device) (uint8, nvml.Return, nvml.Return) { return 0, 0, nvml.ERROR_NOT_SUPPORTED }
	// Process names come from a fake /proc: the fleets' pids (1000+i) are
	// whatever happens to run on the test machine otherwise.
	dir, err := os.MkdirTemp("", "nvml-proc")
	if err != nil {
		panic(err)
	}
	for pid := 1000; pid < 1008; pid++ {
		if err := os.MkdirAll(filepath.Join(dir, strconv.Itoa(pid)), 0o755); err != nil {
			panic(err)
		}
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(pid), "comm"), []byte("python3\n"), 0o644); err != nil {
			panic(err)
		}
		// Even pids run in a Kubernetes pod's container, odd ones in a
		// Slurm job: the golden files show both workloads.
		cgroup := fmt.Sprintf("0::/system.slice/slurmstepd.scope/job_%d/step_0/user/task_0\n", 4700+pid%1000)
		if pid%2 == 0 {
			cgroup = fmt.Sprintf("0::/kubepods.slice/kubepods-pod7c1b9f2e_5a4d_4e3f_9b8a_0c1d2e3f%04d.slice/cri-containerd-%064d.scope\n", pid, pid)
		}
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(pid), "cgroup"), []byte(cgroup), 0o644); err != nil {
			panic(err)
		}
	}
	// The host's PID namespace, as the agent in a VM sees it.
	if err := os.MkdirAll(filepath.Join(dir, "self", "ns"), 0o755); err != nil {
		panic(err)
	}
	if err := os.Symlink(initialPIDNamespace, filepath.Join(dir, "self", "ns", "pid")); err != nil {
		panic(err)
	}
	procRoot = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// harness is a started session over a fake fleet, with its logs and telemetry.
type harness struct {
	s    *session
	f    *fleet
	logs *observer.ObservedLogs
	tel  *componenttest.Telemetry
}

func testConfig() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.CallTimeout = 2 * time.Second
	cfg.InitRetryInterval = time.Millisecond
	return cfg
}

func allMetricsConfig() *Config {
	cfg := testConfig()
	cfg.Metrics = map[string]MetricConfig{}
	for _, d := range metricDefs {
		cfg.Metrics[d.name] = MetricConfig{Enabled: true}
	}
	return cfg
}

func startHarness(t *testing.T, f *fleet, cfg *Config) *harness {
	t.Helper()
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zap.DebugLevel)
	tel := componenttest.NewTelemetry()
	set := tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	s, err := newSession(cfg, f, set)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() {
		require.NoError(t, s.Shutdown(context.Background()))
		require.NoError(t, tel.Shutdown(context.Background()))
	})
	return &harness{s: s, f: f, logs: logs, tel: tel}
}

func (h *harness) scrape(t *testing.T) pmetric.Metrics {
	t.Helper()
	md, err := h.s.scrape(context.Background())
	require.NoError(t, err)
	return md
}

// points finds the data points of one metric whose attributes include want.
func points(md pmetric.Metrics, name string, want map[string]any) []pmetric.NumberDataPoint {
	return metricwalk.Find(md, name, want)
}

func value(dp pmetric.NumberDataPoint) float64 { return metricwalk.Value(dp) }

// metricNames lists the metrics in a batch.
func metricNames(md pmetric.Metrics) map[string]bool {
	out := map[string]bool{}
	for _, d := range metricDefs {
		if len(points(md, d.name, nil)) > 0 {
			out[d.name] = true
		}
	}
	return out
}

func compareGolden(t *testing.T, name string, got pmetric.Metrics) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, golden.WriteMetrics(t, path, got))
	}
	want, err := golden.ReadMetrics(path)
	require.NoError(t, err)
	require.NoError(t, pmetrictest.CompareMetrics(want, got,
		pmetrictest.IgnoreTimestamp(), pmetrictest.IgnoreStartTimestamp(),
		pmetrictest.IgnoreMetricsOrder(), pmetrictest.IgnoreMetricDataPointsOrder()))
}

func TestGoldenH100FleetAllMetrics(t *testing.T) {
	h := startHarness(t, newH100Fleet(), allMetricsConfig())
	h.scrape(t) // GPM compares two samples: the second scrape has everything
	compareGolden(t, "expected_h100.yaml", h.scrape(t))
}

func TestGoldenH200FleetDefaults(t *testing.T) {
	h := startHarness(t, newH200Fleet(), testConfig())
	h.scrape(t)
	md := h.scrape(t)
	compareGolden(t, "expected_h200.yaml", md)
	require.False(t, metricNames(md)["nvidia.gpu.process.memory.usage"], "process metrics are off by default")
	require.Len(t, points(md, "nvidia.gpu.info", nil), 8)
}

func TestGoldenMIG(t *testing.T) {
	f := newH100Fleet()
	f.enableMIG(0)
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	md := h.scrape(t)
	compareGolden(t, "expected_mig.yaml", md)
	// Memory per GPU instance: the 3g.40gb instance's two compute
	// instances share it, reported once on the instance's entity.
	mig := points(md, "hw.gpu.memory.usage", map[string]any{"hw.id": fixedUUID(0) + "/gi2", "nvidia.mig.profile": "3g.40gb"})
	require.Len(t, mig, 1)
	require.Equal(t, int64(1024*mib), mig[0].IntValue())
	// GPM per GPU instance: the 1g.10gb instance on its one MIG device, the
	// 3g.40gb instance (two compute instances) once, on its own entity.
	sm := points(md, "nvidia.gpu.sm.utilization", map[string]any{"hw.parent": fixedUUID(0)})
	require.Len(t, sm, 2, "GPM per GPU instance, not per compute instance")
	require.Len(t, points(md, "nvidia.gpu.sm.utilization", map[string]any{"hw.id": fixedUUID(0) + "/gi2", "nvidia.mig.gpu_instance_id": int64(2)}), 1)
	require.Len(t, points(md, "hw.gpu.memory.usage", map[string]any{"hw.parent": fixedUUID(0)}), 2, "memory per GPU instance, not per compute instance")
	require.Len(t, points(md, "hw.power", map[string]any{"hw.id": fixedUUID(0)}), 1, "the parent GPU keeps its metrics")
	// What NVML does not give on a MIG parent is absent, without a warning.
	require.Empty(t, points(md, "hw.gpu.utilization", map[string]any{"hw.id": fixedUUID(0)}))
	require.Empty(t, points(md, "nvidia.gpu.memory.bandwidth.utilization", map[string]any{"hw.id": fixedUUID(0)}))
	require.Len(t, points(md, "hw.gpu.utilization", map[string]any{"hw.id": fixedUUID(1), "hw.gpu.task": "general"}), 1, "GPUs without MIG keep theirs")
	require.Empty(t, h.logs.FilterLevelExact(zap.WarnLevel).All())
}

// A process on a MIG instance is reported on that instance.
func TestMIGProcessesOnTheirInstance(t *testing.T) {
	f := newH100Fleet()
	f.enableMIG(0)
	f.device(0).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{
			{Pid: 4242, UsedGpuMemory: 2048 * mib, GpuInstanceId: 2, ComputeInstanceId: 1},
			{Pid: 4343, UsedGpuMemory: 1024 * mib, GpuInstanceId: 1, ComputeInstanceId: 0},
		}, nvml.SUCCESS
	}
	h := startHarness(t, f, allMetricsConfig())
	md := h.scrape(t)
	on := func(pid int64) string {
		p := points(md, "nvidia.gpu.process.memory.usage", map[string]any{"process.pid": pid})
		require.Len(t, p, 1, "pid %d", pid)
		return mustAttr(t, p[0], "hw.name").(string)
	}
	require.Equal(t, "nvidia0/gi2/ci1", on(4242))
	require.Equal(t, "nvidia0/gi1/ci0", on(4343))
}

func TestGoldenVGPUGuest(t *testing.T) {
	f := newH100Fleet()
	f.Devices = f.Devices[:1]
	f.vgpuGuest(0)
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	md := h.scrape(t)
	compareGolden(t, "expected_vgpu.yaml", md)
	for _, missing := range []string{"hw.power", "hw.energy", "hw.temperature", "nvidia.gpu.pcie.throughput", "hw.gpu.io", "nvidia.gpu.sm.utilization"} {
		require.Empty(t, points(md, missing, nil), missing)
	}
	require.Equal(t, "vgpu", mustAttr(t, points(md, "nvidia.gpu.info", nil)[0], "nvidia.gpu.virtualization_mode"))
	lic := points(md, "nvidia.gpu.vgpu.license.state", map[string]any{"nvidia.gpu.vgpu.license.feature": "compute"})
	require.Len(t, lic, 1, "a vGPU guest reports its licence")
	require.Equal(t, int64(1), lic[0].IntValue())
	require.Empty(t, h.logs.FilterLevelExact(zap.WarnLevel).All(), "NOT_SUPPORTED on a vGPU guest is normal, not a warning")
}

func mustAttr(t *testing.T, dp pmetric.NumberDataPoint, key string) any {
	t.Helper()
	v, ok := dp.Attributes().Get(key)
	require.True(t, ok, key)
	return v.AsRaw()
}

func TestValuesAndUnits(t *testing.T) {
	h := startHarness(t, newH100Fleet(), allMetricsConfig())
	md := h.scrape(t)
	gpu3 := map[string]any{"hw.id": fixedUUID(3)}
	one := func(name string, extra map[string]any) float64 {
		want := map[string]any{"hw.id": fixedUUID(3)}
		for k, v := range extra {
			want[k] = v
		}
		dps := points(md, name, want)
		require.Len(t, dps, 1, "%s %v", name, want)
		return value(dps[0])
	}
	// Samples 43, 53, 63, 73 averaged (the stale one at last-seen ignored).
	require.InDelta(t, 0.58, one("hw.gpu.utilization", map[string]any{"hw.gpu.task": "general"}), 1e-9)
	require.InDelta(t, 0.03, one("hw.gpu.utilization", map[string]any{"hw.gpu.task": "encoder"}), 1e-9)
	require.InDelta(t, 0.38, one("nvidia.gpu.memory.bandwidth.utilization", nil), 1e-9)
	require.InDelta(t, 353.0, one("hw.power", map[string]any{"hw.type": "gpu"}), 1e-9)
	require.InDelta(t, 700.0, one("nvidia.gpu.power.limit", nil), 1e-9)
	require.InDelta(t, 123456.792, one("hw.energy", nil), 1e-9)
	require.InDelta(t, 43.0, one("hw.temperature", map[string]any{"hw.sensor_location": "gpu"}), 1e-9)
	require.InDelta(t, 53.0, one("hw.temperature", map[string]any{"hw.sensor_location": "memory"}), 1e-9)
	require.InDelta(t, 2619e6, one("nvidia.gpu.clock.frequency", map[string]any{"nvidia.gpu.clock": "memory"}), 1e-3)
	require.InDelta(t, 4*1024*mib, one("hw.gpu.memory.usage", nil), 0)
	require.InDelta(t, 4.5, one("nvidia.gpu.clock.throttle.duration", map[string]any{"nvidia.gpu.violation.policy": "sync_boost"}), 1e-9)
	require.InDelta(t, 2048000, one("nvidia.gpu.pcie.throughput", map[string]any{"network.io.direction": "receive"}), 0)
	require.InDelta(t, 18*4000*1024, one("hw.gpu.io", map[string]any{"network.io.direction": "transmit"}), 0, "summed over 18 links")
	require.InDelta(t, 2, one("nvidia.gpu.nvlink.errors", map[string]any{"error.type": "replay"}), 0, "link 3's replays")
	require.InDelta(t, 3, one("hw.errors", map[string]any{"error.type": "corrected"}), 0)
	require.InDelta(t, 1, one("hw.status", map[string]any{"hw.state": "ok"}), 0)
	require.InDelta(t, 0, one("hw.status", map[string]any{"hw.state": "failed"}), 0)
	require.InDelta(t, 0.85, one("nvidia.gpu.process.utilization", map[string]any{"hw.gpu.task": "general", "process.pid": int64(1003)}), 1e-9)
	require.InDelta(t, 4096*mib, one("nvidia.gpu.process.memory.usage", map[string]any{"process.pid": int64(1003)}), 0)
	require.Equal(t, "nvidia3", mustAttr(t, points(md, "hw.power", gpu3)[0], "hw.name"))

	// GPU 1 has its power cap and thermal slowdown bits set.
	gpu1 := func(reason string) float64 {
		return value(points(md, "nvidia.gpu.clock.throttle.active", map[string]any{"hw.id": fixedUUID(1), "nvidia.gpu.throttle.reason": reason})[0])
	}
	require.InDelta(t, 1, gpu1("sw_power_cap"), 0)
	require.InDelta(t, 1, gpu1("hw_thermal_slowdown"), 0)
	require.InDelta(t, 0, gpu1("gpu_idle"), 0)

	// Units and types come from the table.
	for _, def := range metricDefs {
		rms := md.ResourceMetrics()
		ms := rms.At(0).ScopeMetrics().At(0).Metrics()
		for k := 0; k < ms.Len(); k++ {
			m := ms.At(k)
			if m.Name() != def.name {
				continue
			}
			require.Equal(t, def.unit, m.Unit(), def.name)
			switch def.kind {
			case kindGauge:
				require.Equal(t, pmetric.MetricTypeGauge, m.Type(), def.name)
			default:
				require.Equal(t, pmetric.MetricTypeSum, m.Type(), def.name)
				require.Equal(t, def.kind == kindSum, m.Sum().IsMonotonic(), def.name)
				require.Equal(t, pmetric.AggregationTemporalityCumulative, m.Sum().AggregationTemporality(), def.name)
			}
		}
	}
}

func TestOnlyHwIDAndNameOnEveryPoint(t *testing.T) {
	h := startHarness(t, newH100Fleet(), allMetricsConfig())
	h.scrape(t)
	md := h.scrape(t)
	for _, def := range metricDefs {
		allowed := map[string]bool{"hw.id": true, "hw.name": true}
		if def.name == "hw.fan.speed_ratio" {
			allowed["hw.parent"] = true // a fan is its own component, its parent the GPU
		}
		for _, a := range def.attrs {
			allowed[a] = true
		}
		for _, dp := range points(md, def.name, nil) {
			dp.Attributes().Range(func(k string, _ pcommon.Value) bool {
				require.True(t, allowed[k], "%s carries %s, which its table row does not list", def.name, k)
				return true
			})
		}
	}
}

func TestDisabledMetricsAreNotEmittedNorAsked(t *testing.T) {
	cfg := testConfig()
	cfg.Metrics = map[string]MetricConfig{"hw.power": {Enabled: false}, "hw.fan.speed_ratio": {Enabled: false}}
	f := newH100Fleet()
	h := startHarness(t, f, cfg)
	md := h.scrape(t)
	require.Empty(t, points(md, "hw.power", nil))
	require.NotEmpty(t, points(md, "hw.energy", nil))
	require.Empty(t, f.device(0).GetPowerUsageCalls(), "a disabled metric's NVML function is not called")
}

func TestUtilizationFallsBackToInstantReading(t *testing.T) {
	f := newH100Fleet()
	for i := range f.Devices {
		f.device(i).GetSamplesFunc = func(nvml.SamplingType, uint64) (nvml.ValueType, []nvml.Sample, nvml.Return) {
			return 0, nil, nvml.ERROR_NOT_FOUND
		}
	}
	h := startHarness(t, f, testConfig())
	md := h.scrape(t)
	dps := points(md, "hw.gpu.utilization", map[string]any{"hw.id": fixedUUID(2), "hw.gpu.task": "general"})
	require.Len(t, dps, 1)
	require.InDelta(t, 0.62, value(dps[0]), 1e-9)
	require.InDelta(t, 0.32, value(points(md, "nvidia.gpu.memory.bandwidth.utilization", map[string]any{"hw.id": fixedUUID(2)})[0]), 1e-9)
	require.Zero(t, counterValue(t, h.tel, "otelcol_receiver_nvml_errors", map[string]string{"function": "nvmlDeviceGetSamples"}), "no new sample is not an error")
	require.Len(t, f.device(2).GetUtilizationRatesCalls(), 1, "one instant reading serves both metrics")
}

// Each fan is its own component (semconv hw.fan.speed_ratio), its parent
// the GPU; boards without fans report none.
func TestFansPerFan(t *testing.T) {
	h := startHarness(t, newH100Fleet(), allMetricsConfig())
	md := h.scrape(t)
	for k, want := range []float64{0.40, 0.41} {
		p := points(md, "hw.fan.speed_ratio", map[string]any{"hw.id": fixedUUID(1) + "/fan" + strconv.Itoa(k)})
		require.Len(t, p, 1, "fan %d", k)
		require.InDelta(t, want, p[0].DoubleValue(), 1e-9)
		require.Equal(t, fixedUUID(1), mustAttr(t, p[0], "hw.parent"))
		require.Equal(t, "nvidia1/fan"+strconv.Itoa(k), mustAttr(t, p[0], "hw.name"))
	}
	require.Len(t, points(md, "hw.fan.speed_ratio", nil), 2, "the other GPUs are passively cooled")
}
