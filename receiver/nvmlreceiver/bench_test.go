package nvmlreceiver

import (
	"context"
	"errors"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// leanLib is a hand-written nvml.Interface answering from fixed values, for
// the benchmark: go-nvml's generated mocks lock and record every call. Any
// method it does not define panics (the embedded interfaces are nil), so
// the benchmark also proves which functions a scrape calls.
type leanLib struct {
	nvml.Interface
	devices []nvml.Device
}

type leanExt struct{ nvml.ExtendedInterface }

// LookupSymbol: every function but GetTemperatureV, which go-nvml sends to
// the C library whatever the fake answers (the receiver then uses
// GetTemperature, as on drivers without it).
func (leanExt) LookupSymbol(sym string) error {
	if sym == "nvmlDeviceGetTemperatureV" {
		return errors.New("undefined symbol: " + sym)
	}
	return nil
}

type leanSample struct{ nvml.GpmSample }

func (leanSample) Free() nvml.Return { return nvml.SUCCESS }

type leanEvents struct{ nvml.EventSet }

func (leanEvents) Wait(uint32) (nvml.EventData, nvml.Return) {
	return nvml.EventData{}, nvml.ERROR_TIMEOUT
}
func (leanEvents) Free() nvml.Return { return nvml.SUCCESS }

func (l *leanLib) Extensions() nvml.ExtendedInterface             { return leanExt{} }
func (l *leanLib) Init() nvml.Return                              { return nvml.SUCCESS }
func (l *leanLib) Shutdown() nvml.Return                          { return nvml.SUCCESS }
func (l *leanLib) SystemGetDriverVersion() (string, nvml.Return)  { return "550.54.15", nvml.SUCCESS }
func (l *leanLib) SystemGetCudaDriverVersion() (int, nvml.Return) { return 12040, nvml.SUCCESS }
func (l *leanLib) DeviceGetCount() (int, nvml.Return)             { return len(l.devices), nvml.SUCCESS }
func (l *leanLib) DeviceGetHandleByIndex(i int) (nvml.Device, nvml.Return) {
	return l.devices[i], nvml.SUCCESS
}
func (l *leanLib) EventSetCreate() (nvml.EventSet, nvml.Return) { return leanEvents{}, nvml.SUCCESS }
func (l *leanLib) GpmQueryDeviceSupport(nvml.Device) (nvml.GpmSupport, nvml.Return) {
	return nvml.GpmSupport{IsSupportedDevice: 1}, nvml.SUCCESS
}
func (l *leanLib) GpmSampleAlloc() (nvml.GpmSample, nvml.Return)        { return leanSample{}, nvml.SUCCESS }
func (l *leanLib) GpmSampleGet(nvml.Device, nvml.GpmSample) nvml.Return { return nvml.SUCCESS }
func (l *leanLib) GpmMetricsGet(req *nvml.GpmMetricsGetType) nvml.Return {
	for i := uint32(0); i < req.NumMetrics; i++ {
		req.Metrics[i].Value = 42
	}
	return nvml.SUCCESS
}

type leanDevice struct {
	nvml.Device
	uuid string
}

func (d *leanDevice) GetUUID() (string, nvml.Return)         { return d.uuid, nvml.SUCCESS }
func (d *leanDevice) GetName() (string, nvml.Return)         { return "NVIDIA H100 80GB HBM3", nvml.SUCCESS }
func (d *leanDevice) GetSerial() (string, nvml.Return)       { return "1654321000001", nvml.SUCCESS }
func (d *leanDevice) GetMinorNumber() (int, nvml.Return)     { return 0, nvml.ERROR_NOT_SUPPORTED }
func (d *leanDevice) GetVbiosVersion() (string, nvml.Return) { return "96.00.99.00.01", nvml.SUCCESS }
func (d *leanDevice) GetPciInfo() (nvml.PciInfo, nvml.Return) {
	return nvml.PciInfo{Bus: 0x18}, nvml.SUCCESS
}
func (d *leanDevice) GetVirtualizationMode() (nvml.GpuVirtualizationMode, nvml.Return) {
	return nvml.GPU_VIRTUALIZATION_MODE_PASSTHROUGH, nvml.SUCCESS
}
func (d *leanDevice) GetSupportedEventTypes() (uint64, nvml.Return) {
	return nvml.EventTypeXidCriticalError, nvml.SUCCESS
}
func (d *leanDevice) RegisterEvents(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
func (d *leanDevice) GetSamples(_ nvml.SamplingType, last uint64) (nvml.ValueType, []nvml.Sample, nvml.Return) {
	return nvml.VALUE_TYPE_UNSIGNED_INT, []nvml.Sample{{TimeStamp: last + 1, SampleValue: u32(50)}, {TimeStamp: last + 2, SampleValue: u32(60)}}, nvml.SUCCESS
}
func (d *leanDevice) GetEncoderUtilization() (uint32, uint32, nvml.Return) { return 1, 0, nvml.SUCCESS }
func (d *leanDevice) GetDecoderUtilization() (uint32, uint32, nvml.Return) { return 2, 0, nvml.SUCCESS }
func (d *leanDevice) GetMemoryInfo_v2() (nvml.Memory_v2, nvml.Return) {
	return nvml.Memory_v2{Total: 80 << 30, Used: 10 << 30, Reserved: 512 << 20}, nvml.SUCCESS
}
func (d *leanDevice) GetPowerUsage() (uint32, nvml.Return)         { return 350000, nvml.SUCCESS }
func (d *leanDevice) GetEnforcedPowerLimit() (uint32, nvml.Return) { return 700000, nvml.SUCCESS }
func (d *leanDevice) GetTotalEnergyConsumption() (uint64, nvml.Return) {
	return 123456789, nvml.SUCCESS
}
func (d *leanDevice) GetTemperature(nvml.TemperatureSensors) (uint32, nvml.Return) {
	return 45, nvml.SUCCESS
}
func (d *leanDevice) GetTemperatureThreshold(nvml.TemperatureThresholds) (uint32, nvml.Return) {
	return 90, nvml.SUCCESS
}
func (d *leanDevice) GetMaxClockInfo(nvml.ClockType) (uint32, nvml.Return) { return 1980, nvml.SUCCESS }
func (d *leanDevice) GetMaxPcieLinkGeneration() (int, nvml.Return)         { return 5, nvml.SUCCESS }
func (d *leanDevice) GetMaxPcieLinkWidth() (int, nvml.Return)              { return 16, nvml.SUCCESS }
func (d *leanDevice) GetCurrPcieLinkGeneration() (int, nvml.Return)        { return 5, nvml.SUCCESS }
func (d *leanDevice) GetCurrPcieLinkWidth() (int, nvml.Return)             { return 16, nvml.SUCCESS }
func (d *leanDevice) GetFieldValues(fvs []nvml.FieldValue) nvml.Return {
	for i := range fvs {
		v := uint32(7)
		switch fvs[i].FieldId {
		case nvml.FI_DEV_NVLINK_LINK_COUNT:
			v = 18
		case nvml.FI_DEV_NVLINK_GET_STATE:
			v = nvml.NVLINK_STATE_ACTIVE
		}
		fvs[i].ValueType, fvs[i].Value = uint32(nvml.VALUE_TYPE_UNSIGNED_INT), u32(v)
	}
	return nvml.SUCCESS
}
func (d *leanDevice) GetClockInfo(nvml.ClockType) (uint32, nvml.Return)   { return 1980, nvml.SUCCESS }
func (d *leanDevice) GetCurrentClocksEventReasons() (uint64, nvml.Return) { return 1, nvml.SUCCESS }
func (d *leanDevice) GetViolationStatus(nvml.PerfPolicyType) (nvml.ViolationTime, nvml.Return) {
	return nvml.ViolationTime{ViolationTime: 1e9}, nvml.SUCCESS
}
func (d *leanDevice) GetPcieThroughput(nvml.PcieUtilCounter) (uint32, nvml.Return) {
	return 1000, nvml.SUCCESS
}
func (d *leanDevice) GetPcieReplayCounter() (int, nvml.Return) { return 0, nvml.SUCCESS }
func (d *leanDevice) GetNvLinkState(link int) (nvml.EnableState, nvml.Return) {
	if link >= 18 {
		return 0, nvml.ERROR_INVALID_ARGUMENT
	}
	return nvml.FEATURE_ENABLED, nvml.SUCCESS
}
func (d *leanDevice) GetNvLinkErrorCounter(int, nvml.NvLinkErrorCounter) (uint64, nvml.Return) {
	return 0, nvml.SUCCESS
}
func (d *leanDevice) GetTotalEccErrors(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) {
	return 0, nvml.SUCCESS
}
func (d *leanDevice) GetRemappedRows() (int, int, bool, bool, nvml.Return) {
	return 0, 0, false, false, nvml.SUCCESS
}
func (d *leanDevice) GetRetiredPages(nvml.PageRetirementCause) ([]uint64, nvml.Return) {
	return nil, nvml.SUCCESS
}
func (d *leanDevice) GetPerformanceState() (nvml.Pstates, nvml.Return) { return 0, nvml.SUCCESS }
func (d *leanDevice) GetFanSpeed() (uint32, nvml.Return)               { return 30, nvml.SUCCESS }
func (d *leanDevice) GetNumFans() (int, nvml.Return)                   { return 2, nvml.SUCCESS }
func (d *leanDevice) GetFanSpeed_v2(int) (uint32, nvml.Return)         { return 30, nvml.SUCCESS }
func (d *leanDevice) GetMigMode() (int, int, nvml.Return)              { return 0, 0, nvml.SUCCESS }
func (d *leanDevice) GetComputeRunningProcesses() ([]nvml.ProcessInfo, nvml.Return) {
	return []nvml.ProcessInfo{{Pid: 1, UsedGpuMemory: 1 << 30}}, nvml.SUCCESS
}
func (d *leanDevice) GetGraphicsRunningProcesses() ([]nvml.ProcessInfo, nvml.Return) {
	return nil, nvml.SUCCESS
}
func (d *leanDevice) GetMPSComputeRunningProcesses() ([]nvml.ProcessInfo, nvml.Return) {
	return nil, nvml.SUCCESS
}
func (d *leanDevice) GetProcessUtilization(last uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
	return []nvml.ProcessUtilizationSample{{Pid: 1, TimeStamp: last + 1, SmUtil: 50}}, nvml.SUCCESS
}

func newLeanLib(n int) *leanLib {
	l := &leanLib{}
	for i := 0; i < n; i++ {
		l.devices = append(l.devices, &leanDevice{uuid: fixedUUID(i)})
	}
	return l
}

// BenchmarkScrape8GPUs is one scrape of 8 GPUs with every metric on: the
// receiver's own cost, NVML answering instantly.
func BenchmarkScrape8GPUs(b *testing.B) {
	cfg := allMetricsConfig()
	leanFabric(b)
	s, err := newSession(cfg, newLeanLib(8), componenttest.NewNopTelemetrySettings())
	require.NoError(b, err)
	procRoot = b.TempDir() // no /proc reads of unrelated pids
	require.NoError(b, s.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(b, s.Shutdown(context.Background())) }()
	md, err := s.scrape(context.Background())
	require.NoError(b, err)
	points := md.DataPointCount()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := proc.SelfCPU()
	for b.Loop() {
		if _, err := s.scrape(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	// Workers run in parallel, so wall time (ns/op) understates the CPU a
	// scrape costs: report that too (process CPU, all threads).
	b.ReportMetric(float64((proc.SelfCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/scrape")
	b.ReportMetric(float64(points), "points/scrape")
}

// leanFabric makes every lean GPU one of an NVSwitch fabric, registered.
func leanFabric(tb testing.TB) {
	prev := gpuFabricInfo
	tb.Cleanup(func() { gpuFabricInfo = prev })
	gpuFabricInfo = func(nvml.Device) (uint8, nvml.Return, nvml.Return) {
		return nvml.GPU_FABRIC_STATE_COMPLETED, nvml.SUCCESS, nvml.SUCCESS
	}
}

func TestLeanLibScrapesEverything(t *testing.T) {
	leanFabric(t)
	s, err := newSession(allMetricsConfig(), newLeanLib(2), componenttest.NewNopTelemetrySettings())
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, s.Shutdown(context.Background())) }()
	_, err = s.scrape(context.Background())
	require.NoError(t, err)
	md, err := s.scrape(context.Background())
	require.NoError(t, err)
	for _, def := range metricDefs {
		if def.name == "nvidia.gpu.vgpu.license.state" {
			continue // vGPU guests only; the lean GPUs are passthrough (TestGoldenVGPUGuest has it)
		}
		require.NotEmpty(t, points(md, def.name, nil), "the benchmark must exercise %s", def.name)
	}
}
