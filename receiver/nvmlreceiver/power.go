package nvmlreceiver

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

func (d *device) collectPower(now pcommon.Timestamp, f *fieldRead) {
	h := d.handle()
	gpu := str("hw.type", "gpu")
	// Both as fields where the driver has them, else their calls. Power is
	// the instantaneous draw (POWER_INSTANT) where the driver answers it,
	// else the one-second average (POWER_AVERAGE, what GetPowerUsage also
	// gives on Ampere and later).
	if d.drv.enabled[mPower] {
		if mw, ok := f.field(nvml.FI_DEV_POWER_INSTANT); ok {
			d.emit(mPower, d.ent, mw/1000, 0, gpu)
		} else if mw, ok := f.field(nvml.FI_DEV_POWER_AVERAGE); ok {
			d.emit(mPower, d.ent, mw/1000, 0, gpu)
		} else if mw, ok := read(d, "nvmlDeviceGetPowerUsage", "", h.GetPowerUsage); ok {
			d.emit(mPower, d.ent, float64(mw)/1000, 0, gpu)
		}
	}
	if d.drv.enabled[mPowerLimit] {
		if mw, ok := f.field(nvml.FI_DEV_POWER_CURRENT_LIMIT); ok {
			d.emit(mPowerLimit, d.ent, mw/1000, 0)
		} else if mw, ok := read(d, "nvmlDeviceGetEnforcedPowerLimit", "", h.GetEnforcedPowerLimit); ok {
			d.emit(mPowerLimit, d.ent, float64(mw)/1000, 0)
		}
	}
	if d.drv.enabled[mEnergy] {
		mj, have := uint64(0), false
		if v, ok := f.field(nvml.FI_DEV_TOTAL_ENERGY_CONSUMPTION); ok {
			mj, have = uint64(v), true
		} else {
			mj, have = read(d, "nvmlDeviceGetTotalEnergyConsumption", "", h.GetTotalEnergyConsumption)
		}
		if have {
			start := d.cumulative("nvmlDeviceGetTotalEnergyConsumption", "", mj, now)
			d.emit(mEnergy, d.ent, float64(mj)/1000, start, gpu)
		}
	}
}
