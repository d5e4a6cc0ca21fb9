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
}

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
	if !on[mTempLimit] && !on[mClockMax] && !on[mPCIeLinkGen] && !on[mPCIeLinkWidth] && !on[mVGPULicense] {
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
	if on[mPCIeLinkGen] && d.can("nvmlDeviceGetCurrPcieLinkGeneration", "") {
		if v, ret := h.GetCurrPcieLinkGeneration(); d.ok("nvmlDeviceGetCurrPcieLinkGeneration", "", ret) {
			d.emit(mPCIeLinkGen, d.ent, float64(v), 0, str("nvidia.gpu.pcie.link", "current"))
		}
	}
	if on[mPCIeLinkWidth] && d.can("nvmlDeviceGetCurrPcieLinkWidth", "") {
		if v, ret := h.GetCurrPcieLinkWidth(); d.ok("nvmlDeviceGetCurrPcieLinkWidth", "", ret) {
			d.emit(mPCIeLinkWidth, d.ent, float64(v), 0, str("nvidia.gpu.pcie.link", "current"))
		}
	}
}

func (d *device) readLimits(h nvml.Device) {
	on := &d.drv.enabled
	l := limitState{readAt: time.Now()}
	if on[mClockMax] && d.can("nvmlDeviceGetMaxClockInfo", "") {
		for _, c := range clocks {
			if mhz, ret := h.GetMaxClockInfo(c.typ); d.ok("nvmlDeviceGetMaxClockInfo", c.name, ret) {
				l.clocks = append(l.clocks, limitValue{c.name, float64(mhz) * 1e6})
			}
		}
	}
	if on[mTempLimit] {
		for _, t := range tempThresholds {
			if !d.can("nvmlDeviceGetTemperatureThreshold", t.name) {
				continue
			}
			if c, ret := h.GetTemperatureThreshold(t.t); d.ok("nvmlDeviceGetTemperatureThreshold", t.name, ret) {
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
	if on[mVGPULicense] && d.vgpu && d.can("nvmlDeviceGetGridLicensableFeatures", "") {
		if f, ret := h.GetGridLicensableFeatures(); d.ok("nvmlDeviceGetGridLicensableFeatures", "", ret) && f.IsGridLicenseSupported != 0 {
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
