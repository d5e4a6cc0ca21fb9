package nvmlreceiver

import (
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// limitState holds what a GPU can do at best (its maximum clocks and PCIe
// link, its temperature thresholds): fixed by the board, so read every
// rediscover_interval, not every scrape, and reported every scrape from
// here.
type limitState struct {
	readAt      time.Time    // zero: not read yet
	licences    []limitValue // vGPU guests: licensable feature -> 1 licensed, 0 not
	clocks      []limitValue
	temps       []limitValue
	pcieGen     uint32
	pcieWidth   uint32
	havePCIeMax bool
	// The NVSwitch fabric registration: state (NVML_GPU_FABRIC_STATE_*)
	// and, once completed, the probe's status.
	fabricState  uint8
	fabricStatus nvml.Return
	haveFabric   bool
}

// gpuFabricInfo reads the fabric state and probe status: v3
// (nvmlGpuFabricInfoV_t), v2 where the driver answers v3
// ARGUMENT_VERSION_MISMATCH. go-nvml's versioned handler calls the C
// library directly (its mocks cannot answer it), so unit tests replace this.
var gpuFabricInfo = func(h nvml.Device) (state uint8, status, ret nvml.Return) {
	fi := h.GetGpuFabricInfoV()
	info, ret := fi.V3()
	if ret == nvml.ERROR_ARGUMENT_VERSION_MISMATCH {
		i2, r2 := fi.V2()
		return i2.State, nvml.Return(i2.Status), r2
	}
	return info.State, nvml.Return(info.Status), ret
}

// fabricStates names NVML_GPU_FABRIC_STATE_* (nvml.h 0-3).
var fabricStates = []string{"not_supported", "not_started", "in_progress", "completed"}

type limitValue struct {
	name  string
	value float64
}

var tempThresholds = []struct {
	t    nvml.TemperatureThresholds
	name string // hw.limit_type
}{
	{nvml.TEMPERATURE_THRESHOLD_SHUTDOWN, "high.critical"},
	{nvml.TEMPERATURE_THRESHOLD_SLOWDOWN, "throttled"},
	{nvml.TEMPERATURE_THRESHOLD_GPU_MAX, "max"},
}

// collectLimits reports the GPU's limits, and its PCIe link as trained now
// next to its maximum: a link below its maximum (a riser, a VM's slot)
// halves the bandwidth quietly.
func (d *device) collectLimits() {
	on := &d.drv.enabled
	if !on[mTempLimit] && !on[mClockMax] && !on[mPCIeLinkGen] && !on[mPCIeLinkWidth] && !on[mVGPULicense] && !on[mFabricState] {
		return
	}
	h := d.handle()
	if time.Since(d.limits.readAt) >= d.drv.relistEvery {
		d.readLimits(h)
	}
	for _, l := range d.limits.licences {
		d.emitInt(mVGPULicense, d.ent, int64(l.value), 0, str("nvidia.gpu.vgpu.license.feature", l.name))
	}
	for _, c := range d.limits.clocks {
		d.emit(mClockMax, d.ent, c.value, 0, str("nvidia.gpu.clock", c.name))
	}
	for _, t := range d.limits.temps {
		d.emit(mTempLimit, d.ent, t.value, 0, str("hw.sensor_location", "gpu"), str("hw.limit_type", t.name))
	}
	if d.limits.havePCIeMax {
		d.emit(mPCIeLinkGen, d.ent, float64(d.limits.pcieGen), 0, str("nvidia.gpu.pcie.link", "max"))
		d.emit(mPCIeLinkWidth, d.ent, float64(d.limits.pcieWidth), 0, str("nvidia.gpu.pcie.link", "max"))
	}
	if d.limits.haveFabric {
		for i, name := range fabricStates {
			if i == nvml.GPU_FABRIC_STATE_NOT_SUPPORTED {
				continue
			}
			cur := uint8(i) == d.limits.fabricState
			if cur && d.limits.fabricState == nvml.GPU_FABRIC_STATE_COMPLETED && d.limits.fabricStatus != nvml.SUCCESS {
				d.emitInt(mFabricState, d.ent, 1, 0, str("nvidia.gpu.fabric.state", name), str("error.type", returnName(d.limits.fabricStatus)))
				continue
			}
			d.emitInt(mFabricState, d.ent, int64(b2f(cur)), 0, str("nvidia.gpu.fabric.state", name))
		}
	}
	if on[mPCIeLinkGen] {
		if v, ok := read(d, "nvmlDeviceGetCurrPcieLinkGeneration", "", h.GetCurrPcieLinkGeneration); ok {
			d.emit(mPCIeLinkGen, d.ent, float64(v), 0, str("nvidia.gpu.pcie.link", "current"))
		}
	}
	if on[mPCIeLinkWidth] {
		if v, ok := read(d, "nvmlDeviceGetCurrPcieLinkWidth", "", h.GetCurrPcieLinkWidth); ok {
			d.emit(mPCIeLinkWidth, d.ent, float64(v), 0, str("nvidia.gpu.pcie.link", "current"))
		}
	}
}

func (d *device) readLimits(h nvml.Device) {
	on := &d.drv.enabled
	l := limitState{readAt: time.Now()}
	if on[mClockMax] {
		for _, c := range clocks {
			// Each clock's refusal is remembered under its name, and asked
			// under it: a GPU may answer for some clocks only.
			if mhz, ok := read(d, "nvmlDeviceGetMaxClockInfo", c.name, func() (uint32, nvml.Return) { return h.GetMaxClockInfo(c.typ) }); ok {
				l.clocks = append(l.clocks, limitValue{c.name, float64(mhz) * 1e6})
			}
		}
	}
	if on[mTempLimit] {
		for _, t := range tempThresholds {
			if c, ok := read(d, "nvmlDeviceGetTemperatureThreshold", t.name, func() (uint32, nvml.Return) {
				return h.GetTemperatureThreshold(t.t)
			}); ok {
				l.temps = append(l.temps, limitValue{t.name, float64(c)})
			}
		}
	}
	if (on[mPCIeLinkGen] || on[mPCIeLinkWidth]) && d.can("nvmlDeviceGetMaxPcieLinkGeneration", "") && d.can("nvmlDeviceGetMaxPcieLinkWidth", "") {
		gen, ret := h.GetMaxPcieLinkGeneration()
		if d.ok("nvmlDeviceGetMaxPcieLinkGeneration", "", ret) {
			width, ret := h.GetMaxPcieLinkWidth()
			if d.ok("nvmlDeviceGetMaxPcieLinkWidth", "", ret) {
				l.pcieGen, l.pcieWidth, l.havePCIeMax = uint32(gen), uint32(width), true
			}
		}
	}
	if on[mFabricState] && d.can("nvmlDeviceGetGpuFabricInfoV", "") {
		state, status, ret := gpuFabricInfo(h)
		// A GPU outside an NVSwitch fabric answers NOT_SUPPORTED (remembered
		// as refused) or the state NOT_SUPPORTED: no series.
		if d.ok("nvmlDeviceGetGpuFabricInfoV", "", ret) && state != nvml.GPU_FABRIC_STATE_NOT_SUPPORTED && int(state) < len(fabricStates) {
			l.fabricState, l.fabricStatus, l.haveFabric = state, status, true
		}
	}
	if on[mVGPULicense] && d.vgpu {
		if f, ok := read(d, "nvmlDeviceGetGridLicensableFeatures", "", h.GetGridLicensableFeatures); ok && f.IsGridLicenseSupported != 0 {
			for i := 0; i < int(min(f.LicensableFeaturesCount, uint32(len(f.GridLicensableFeatures)))); i++ {
				feat := f.GridLicensableFeatures[i]
				if name, ok := licenceFeatures[feat.FeatureCode]; ok {
					l.licences = append(l.licences, limitValue{name, b2f(feat.FeatureState != 0)})
				}
			}
		}
	}
	d.limits = l
}

var licenceFeatures = map[uint32]string{
	uint32(nvml.GRID_LICENSE_FEATURE_CODE_VGPU): "vgpu", uint32(nvml.GRID_LICENSE_FEATURE_CODE_NVIDIA_RTX): "nvidia_rtx",
	uint32(nvml.GRID_LICENSE_FEATURE_CODE_GAMING): "gaming", uint32(nvml.GRID_LICENSE_FEATURE_CODE_COMPUTE): "compute",
	uint32(nvml.GRID_LICENSE_FEATURE_CODE_VGAMEDEV): "vgamedev",
}
