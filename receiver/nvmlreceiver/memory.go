package nvmlreceiver

import "github.com/NVIDIA/go-nvml/pkg/nvml"

// collectMemory reads a GPU's or a MIG instance's memory (variant tells
// them apart in the "not supported" memory).
func (d *device) collectMemory(h nvml.Device, ent *entity, variant string) {
	on := &d.drv.enabled
	if !on[mMemUsage] && !on[mMemLimit] && !on[mMemUtilization] && !on[mMemReserved] {
		return
	}
	var used, total, reserved uint64
	haveReserved, have := false, false
	if m, ok := read(d, "nvmlDeviceGetMemoryInfo_v2", variant, h.GetMemoryInfo_v2); ok {
		used, total, reserved, have, haveReserved = m.Used, m.Total, m.Reserved, true, true
	}
	if !have {
		if m, ok := read(d, "nvmlDeviceGetMemoryInfo", variant, h.GetMemoryInfo); ok {
			used, total, have = m.Used, m.Total, true
		}
	}
	if !have {
		return
	}
	d.emitInt(mMemUsage, ent, int64(used), 0)
	d.emitInt(mMemLimit, ent, int64(total), 0)
	if total > 0 {
		d.emit(mMemUtilization, ent, float64(used)/float64(total), 0)
	}
	if haveReserved {
		d.emitInt(mMemReserved, ent, int64(reserved), 0)
	}
}
