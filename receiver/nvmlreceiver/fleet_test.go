package nvmlreceiver

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// fleet is a go-nvml fake server (dgxh100, dgxh200) with every function
// the receiver calls answered from fixed values derived from the GPU
// index, plus knobs for the fault tests. The fake servers fill only
// identity, memory, PCI and MIG-partitioning functions.
type fleet struct {
	*server.Server
	mu      sync.Mutex
	missing map[string]bool // symbols the "driver" lacks
	xids    chan nvml.EventData
	initRet nvml.Return
	inits   atomic.Int64
}

func newH100Fleet() *fleet { return stubFleet(dgxh100.New()) }
func newH200Fleet() *fleet { return stubFleet(dgxh200.New()) }

func (f *fleet) device(i int) *server.Device { return f.Devices[i].(*server.Device) }

func (f *fleet) lacks(symbols ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range symbols {
		f.missing[s] = true
	}
}

func u32(v uint32) [8]byte {
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return b
}

func u64(v uint64) [8]byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return b
}

func fixedUUID(i int) string { return fmt.Sprintf("GPU-%08x-1111-4222-8333-%012x", 0xabc00000+i, i) }

func stubFleet(s *server.Server) *fleet {
	// go-nvml's GetTemperatureV calls the C library whatever the mock says:
	// the fake driver lacks it, and the receiver uses GetTemperature (the
	// simulated library, in the system tests, has both).
	f := &fleet{Server: s, missing: map[string]bool{"nvmlDeviceGetTemperatureV": true}, xids: make(chan nvml.EventData, 16), initRet: nvml.SUCCESS}
	s.ExtensionsFunc = func() nvml.ExtendedInterface { return f }
	s.LookupSymbolFunc = func(sym string) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.missing[sym] {
			return fmt.Errorf("undefined symbol: %s", sym)
		}
		return nil
	}
	s.InitFunc = func() nvml.Return {
		f.inits.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.initRet
	}
	s.GpmQueryDeviceSupportFunc = func(nvml.Device) (nvml.GpmSupport, nvml.Return) {
		return nvml.GpmSupport{Version: nvml.GPM_SUPPORT_VERSION, IsSupportedDevice: 1}, nvml.SUCCESS
	}
	s.GpmSampleAllocFunc = func() (nvml.GpmSample, nvml.Return) {
		return &mock.GpmSample{FreeFunc: func() nvml.Return { return nvml.SUCCESS }}, nvml.SUCCESS
	}
	s.GpmSampleGetFunc = func(nvml.Device, nvml.GpmSample) nvml.Return { return nvml.SUCCESS }
	s.GpmMigSampleGetFunc = func(nvml.Device, int, nvml.GpmSample) nvml.Return { return nvml.SUCCESS }
	s.GpmMetricsGetFunc = func(req *nvml.GpmMetricsGetType) nvml.Return {
		for i := uint32(0); i < req.NumMetrics; i++ {
			req.Metrics[i].NvmlReturn = uint32(nvml.SUCCESS)
			req.Metrics[i].Value = 10 * float64(req.Metrics[i].MetricId) // percent
		}
		return nvml.SUCCESS
	}
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
			WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
				select {
				case e := <-f.xids:
					return e, nvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
			},
		}, nvml.SUCCESS
	}
	for i := range s.Devices {
		stubDevice(f.device(i), i)
	}
	return f
}

// stubDevice answers every per-GPU function the receiver uses.
func stubDevice(d *server.Device, i int) {
	fi := float64(i)
	d.UUID = fixedUUID(i)
	total := d.Config.MemoryMB * mib
	used := uint64(i+1) * 1024 * mib
	d.MemoryInfo = nvml.Memory{Total: total, Used: used, Free: total - used}
	d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
		return nvml.Memory_v2{Total: total, Reserved: 512 * mib, Used: used, Free: total - used - 512*mib}, nvml.SUCCESS
	}
	d.GetSerialFunc = func() (string, nvml.Return) { return fmt.Sprintf("165432100%04d", i), nvml.SUCCESS }
	d.GetVbiosVersionFunc = func() (string, nvml.Return) { return "96.00.99.00.01", nvml.SUCCESS }
	d.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
		p := nvml.PciInfo{Domain: 0, Bus: uint32(0x18 + i), PciDeviceId: d.Config.PciDeviceId}
		for j, c := range fmt.Sprintf("00000000:%02X:00.0", 0x18+i) {
			p.BusId[j] = int8(c)
		}
		return p, nvml.SUCCESS
	}
	d.GetVirtualizationModeFunc = func() (nvml.GpuVirtualizationMode, nvml.Return) {
		return nvml.GPU_VIRTUALIZATION_MODE_PASSTHROUGH, nvml.SUCCESS
	}
	var sampleClock atomic.Uint64
	d.GetSamplesFunc = func(typ nvml.SamplingType, last uint64) (nvml.ValueType, []nvml.Sample, nvml.Return) {
		base, step := 40.0+fi, 10.0
		switch typ {
		case nvml.MEMORY_UTILIZATION_SAMPLES:
			base = 20.0 + fi
		case nvml.ENC_UTILIZATION_SAMPLES: // steady: the average is the instant reading
			base, step = fi, 0
		case nvml.DEC_UTILIZATION_SAMPLES:
			base, step = 2*fi, 0
		}
		// Four new samples per call, newer than anything returned before,
		// plus an old one the receiver must ignore.
		t := sampleClock.Add(4) + last
		return nvml.VALUE_TYPE_UNSIGNED_INT, []nvml.Sample{
			{TimeStamp: last, SampleValue: u32(99)},
			{TimeStamp: t - 3, SampleValue: u32(uint32(base))},
			{TimeStamp: t - 2, SampleValue: u32(uint32(base + step))},
			{TimeStamp: t - 1, SampleValue: u32(uint32(base + 2*step))},
			{TimeStamp: t, SampleValue: u32(uint32(base + 3*step))},
		}, nvml.SUCCESS
	}
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{Gpu: uint32(60 + i), Memory: uint32(30 + i)}, nvml.SUCCESS
	}
	d.GetEncoderUtilizationFunc = func() (uint32, uint32, nvml.Return) { return uint32(i), 167000, nvml.SUCCESS }
	d.GetDecoderUtilizationFunc = func() (uint32, uint32, nvml.Return) { return uint32(2 * i), 167000, nvml.SUCCESS }
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return uint32(350000 + 1000*i), nvml.SUCCESS }
	d.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) { return 700000, nvml.SUCCESS }
	d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return uint64(123456789 + i), nvml.SUCCESS }
	d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return uint32(40 + i), nvml.SUCCESS }
	d.GetFieldValuesFunc = func(fvs []nvml.FieldValue) nvml.Return {
		for k := range fvs {
			fv := &fvs[k]
			fv.NvmlReturn = uint32(nvml.SUCCESS)
			switch fv.FieldId {
			case nvml.FI_DEV_MEMORY_TEMP:
				fv.ValueType, fv.Value = uint32(nvml.VALUE_TYPE_UNSIGNED_INT), u32(uint32(50+i))
			case nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX:
				// Per link; the aggregate scope (UINT_MAX) sums the 18 links.
				v := uint64(1000 * (i + 1))
				if fv.FieldId == nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX {
					v *= 2
				}
				if fv.ScopeId == nvlinkAllLinks {
					v *= 18
				}
				fv.ValueType, fv.Value = uint32(nvml.VALUE_TYPE_UNSIGNED_LONG_LONG), u64(v)
			default:
				fv.NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
			}
		}
		return nvml.SUCCESS
	}
	d.GetClockInfoFunc = func(c nvml.ClockType) (uint32, nvml.Return) {
		return map[nvml.ClockType]uint32{nvml.CLOCK_GRAPHICS: 1980, nvml.CLOCK_SM: 1980, nvml.CLOCK_MEM: 2619, nvml.CLOCK_VIDEO: 1545}[c], nvml.SUCCESS
	}
	d.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
		if i == 1 {
			return nvml.ClocksEventReasonSwPowerCap | nvml.ClocksThrottleReasonHwThermalSlowdown, nvml.SUCCESS
		}
		return nvml.ClocksEventReasonGpuIdle, nvml.SUCCESS
	}
	d.GetViolationStatusFunc = func(p nvml.PerfPolicyType) (nvml.ViolationTime, nvml.Return) {
		return nvml.ViolationTime{ReferenceTime: 1, ViolationTime: uint64(p+1) * 1_500_000_000}, nvml.SUCCESS
	}
	d.GetPcieThroughputFunc = func(c nvml.PcieUtilCounter) (uint32, nvml.Return) { return uint32(1000 * (int(c) + 1)), nvml.SUCCESS }
	d.GetPcieReplayCounterFunc = func() (int, nvml.Return) { return i, nvml.SUCCESS }
	d.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
		if link >= 18 {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		return nvml.FEATURE_ENABLED, nvml.SUCCESS
	}
	d.GetNvLinkErrorCounterFunc = func(link int, c nvml.NvLinkErrorCounter) (uint64, nvml.Return) {
		if link == 3 && c == nvml.NVLINK_ERROR_DL_REPLAY {
			return 2, nvml.SUCCESS
		}
		return 0, nvml.SUCCESS
	}
	d.GetTotalEccErrorsFunc = func(t nvml.MemoryErrorType, _ nvml.EccCounterType) (uint64, nvml.Return) {
		if t == nvml.MEMORY_ERROR_TYPE_CORRECTED {
			return uint64(i), nvml.SUCCESS
		}
		return 0, nvml.SUCCESS
	}
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return i, 0, false, false, nvml.SUCCESS }
	d.GetRetiredPagesFunc = func(nvml.PageRetirementCause) ([]uint64, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED }
	d.GetPerformanceStateFunc = func() (nvml.Pstates, nvml.Return) { return nvml.PSTATE_0, nvml.SUCCESS }
	d.GetMaxClockInfoFunc = func(c nvml.ClockType) (uint32, nvml.Return) {
		return map[nvml.ClockType]uint32{nvml.CLOCK_GRAPHICS: 1980, nvml.CLOCK_SM: 1980, nvml.CLOCK_MEM: 2619, nvml.CLOCK_VIDEO: 1755}[c], nvml.SUCCESS
	}
	d.GetTemperatureThresholdFunc = func(t nvml.TemperatureThresholds) (uint32, nvml.Return) {
		switch t {
		case nvml.TEMPERATURE_THRESHOLD_SHUTDOWN:
			return 92, nvml.SUCCESS
		case nvml.TEMPERATURE_THRESHOLD_SLOWDOWN:
			return 89, nvml.SUCCESS
		case nvml.TEMPERATURE_THRESHOLD_GPU_MAX:
			return 87, nvml.SUCCESS
		}
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
	d.GetMaxPcieLinkGenerationFunc = func() (int, nvml.Return) { return 5, nvml.SUCCESS }
	d.GetMaxPcieLinkWidthFunc = func() (int, nvml.Return) { return 16, nvml.SUCCESS }
	d.GetCurrPcieLinkGenerationFunc = func() (int, nvml.Return) { return 5 - i%2, nvml.SUCCESS } // odd GPUs trained at gen 4
	d.GetCurrPcieLinkWidthFunc = func() (int, nvml.Return) { return 16, nvml.SUCCESS }
	// Passively cooled, as SXM boards are; GPU 1 has two fans (a PCIe board).
	d.GetFanSpeedFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	d.GetNumFansFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	d.GetFanSpeed_v2Func = func(int) (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	if i == 1 {
		d.GetNumFansFunc = func() (int, nvml.Return) { return 2, nvml.SUCCESS }
		d.GetFanSpeed_v2Func = func(fan int) (uint32, nvml.Return) { return uint32(40 + fan), nvml.SUCCESS }
	}
	d.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
		return nvml.EventTypeXidCriticalError | nvml.EventTypeSingleBitEccError, nvml.SUCCESS
	}
	d.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	d.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
	d.GetMigDeviceHandleByIndexFunc = func(int) (nvml.Device, nvml.Return) { return nil, nvml.ERROR_NOT_FOUND }
	d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: uint32(1000 + i), UsedGpuMemory: 4096 * mib}}, nvml.SUCCESS
	}
	d.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	d.GetMPSComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	var procClock atomic.Uint64
	d.GetProcessUtilizationFunc = func(last uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		t := procClock.Add(2) + last
		return []nvml.ProcessUtilizationSample{
			{Pid: uint32(1000 + i), TimeStamp: t - 1, SmUtil: 80, MemUtil: 40, EncUtil: 0, DecUtil: 10},
			{Pid: uint32(1000 + i), TimeStamp: t, SmUtil: 90, MemUtil: 50, EncUtil: 0, DecUtil: 30},
		}, nvml.SUCCESS
	}
}

// enableMIG puts GPU i in MIG mode with two GPU instances: 1g.10gb with
// one compute instance, 3g.40gb with two (three MIG devices). As NVML
// documents, the parent then answers NOT_SUPPORTED for utilization, its
// samples, encoder/decoder and process utilization.
func (f *fleet) enableMIG(i int) {
	d := f.device(i)
	d.GetMigModeFunc = func() (int, int, nvml.Return) { return nvml.DEVICE_MIG_ENABLE, nvml.DEVICE_MIG_ENABLE, nvml.SUCCESS }
	ns := nvml.ERROR_NOT_SUPPORTED
	d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, ns }
	d.GetSamplesFunc = func(nvml.SamplingType, uint64) (nvml.ValueType, []nvml.Sample, nvml.Return) { return 0, nil, ns }
	d.GetEncoderUtilizationFunc = func() (uint32, uint32, nvml.Return) { return 0, 0, ns }
	d.GetDecoderUtilizationFunc = func() (uint32, uint32, nvml.Return) { return 0, 0, ns }
	d.GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) { return nil, ns }
	migs := []*mock.Device{}
	for k, spec := range []struct {
		gi, ci  int
		profile string
		memGiB  uint64
	}{{1, 0, "1g.10gb", 10}, {2, 0, "3g.40gb", 40}, {2, 1, "3g.40gb", 40}} {
		uuid := fmt.Sprintf("MIG-%08x-2222-4333-8444-%012x", 0xdef00000+i, k)
		total := spec.memGiB * 1024 * mib
		used := uint64(k+1) * 512 * mib
		name := d.Config.Name + " MIG " + spec.profile
		migs = append(migs, &mock.Device{
			GetUUIDFunc:              func() (string, nvml.Return) { return uuid, nvml.SUCCESS },
			GetNameFunc:              func() (string, nvml.Return) { return name, nvml.SUCCESS },
			GetGpuInstanceIdFunc:     func() (int, nvml.Return) { return spec.gi, nvml.SUCCESS },
			GetComputeInstanceIdFunc: func() (int, nvml.Return) { return spec.ci, nvml.SUCCESS },
			GetMemoryInfo_v2Func: func() (nvml.Memory_v2, nvml.Return) {
				return nvml.Memory_v2{Total: total, Used: used, Free: total - used}, nvml.SUCCESS
			},
		})
	}
	d.GetMigDeviceHandleByIndexFunc = func(k int) (nvml.Device, nvml.Return) {
		if k < len(migs) {
			return migs[k], nvml.SUCCESS
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
}

// vgpuGuest makes GPU i look like a vGPU guest's: no power, energy,
// temperature, clocks events, PCIe or NVLink counters.
func (f *fleet) vgpuGuest(i int) {
	d := f.device(i)
	d.GetVirtualizationModeFunc = func() (nvml.GpuVirtualizationMode, nvml.Return) {
		return nvml.GPU_VIRTUALIZATION_MODE_VGPU, nvml.SUCCESS
	}
	ns := nvml.ERROR_NOT_SUPPORTED
	d.GetGridLicensableFeaturesFunc = func() (nvml.GridLicensableFeatures, nvml.Return) {
		f := nvml.GridLicensableFeatures{IsGridLicenseSupported: 1, LicensableFeaturesCount: 1}
		f.GridLicensableFeatures[0] = nvml.GridLicensableFeature{FeatureCode: uint32(nvml.GRID_LICENSE_FEATURE_CODE_COMPUTE), FeatureState: 1, FeatureEnabled: 1}
		return f, nvml.SUCCESS
	}
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, ns }
	d.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) { return 0, ns }
	d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return 0, ns }
	d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, ns }
	d.GetFieldValuesFunc = func([]nvml.FieldValue) nvml.Return { return ns }
	d.GetViolationStatusFunc = func(nvml.PerfPolicyType) (nvml.ViolationTime, nvml.Return) { return nvml.ViolationTime{}, ns }
	d.GetPcieThroughputFunc = func(nvml.PcieUtilCounter) (uint32, nvml.Return) { return 0, ns }
	d.GetPcieReplayCounterFunc = func() (int, nvml.Return) { return 0, ns }
	d.GetNvLinkStateFunc = func(int) (nvml.EnableState, nvml.Return) { return 0, ns }
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 0, 0, false, false, ns }
	d.GetPerformanceStateFunc = func() (nvml.Pstates, nvml.Return) { return 0, ns }
	f.GpmQueryDeviceSupportFunc = func(nvml.Device) (nvml.GpmSupport, nvml.Return) { return nvml.GpmSupport{}, ns }
}
