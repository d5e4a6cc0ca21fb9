package nvmlreceiver

import (
	"strconv"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

func (d *device) collectMisc() {
	h := d.handle()
	on := &d.drv.enabled
	d.health.remapPending, d.health.remapFailed = false, false
	if on[mRemappedRows] || on[mStatus] {
		if r, ok := read(d, "nvmlDeviceGetRemappedRows", "", func() (remappedRows, nvml.Return) {
			corr, unc, pending, failed, ret := h.GetRemappedRows()
			return remappedRows{corr, unc, pending, failed}, ret
		}); ok {
			d.health.remapPending, d.health.remapFailed = r.pending, r.failed
			d.emitInt(mRemappedRows, d.ent, int64(r.corr), 0, str("nvidia.gpu.remap.cause", "correctable"))
			d.emitInt(mRemappedRows, d.ent, int64(r.unc), 0, str("nvidia.gpu.remap.cause", "uncorrectable"))
			d.emitInt(mRemapState, d.ent, int64(b2f(r.pending)), 0, str("nvidia.gpu.remap.state", "pending"))
			d.emitInt(mRemapState, d.ent, int64(b2f(r.failed)), 0, str("nvidia.gpu.remap.state", "failed"))
		}
	}
	if on[mRetiredPages] {
		for _, c := range []struct {
			cause nvml.PageRetirementCause
			name  string
		}{{nvml.PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS, "sbe"}, {nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR, "dbe"}} {
			if pages, ok := read(d, "nvmlDeviceGetRetiredPages", c.name, func() ([]uint64, nvml.Return) {
				return h.GetRetiredPages(c.cause)
			}); ok {
				d.emit(mRetiredPages, d.ent, float64(len(pages)), 0, str("nvidia.gpu.retire.cause", c.name))
			}
		}
	}
	if on[mPerfState] {
		if p, ok := read(d, "nvmlDeviceGetPerformanceState", "", h.GetPerformanceState); ok && p != nvml.PSTATE_UNKNOWN {
			d.emit(mPerfState, d.ent, float64(p), 0)
		}
	}
	if on[mFanSpeed] {
		d.collectFans(h)
	}
}

// remappedRows is one GetRemappedRows answer: the rows remapped for
// correctable and uncorrectable errors, and whether a remap awaits a reset
// or has failed.
type remappedRows struct {
	corr, unc       int
	pending, failed bool
}

// collectFans reports each fan of the board as its own hardware component
// (semconv hw.fan.speed_ratio), its parent the GPU. Passively cooled boards
// (every datacenter SXM board) answer NOT_SUPPORTED, remembered.
func (d *device) collectFans(h nvml.Device) {
	// can and ok apart: a fan count not asked (no such function, refused
	// lately) falls back to GetFanSpeed, one asked and failed does not, and
	// the fans stop at the first one refused.
	n := 0
	if d.can("nvmlDeviceGetNumFans", "") {
		var ret nvml.Return
		if n, ret = h.GetNumFans(); !d.ok("nvmlDeviceGetNumFans", "", ret) {
			return
		}
		for fan := 0; fan < n; fan++ {
			if !d.can("nvmlDeviceGetFanSpeed_v2", "") {
				return
			}
			if pct, ret := h.GetFanSpeed_v2(fan); d.ok("nvmlDeviceGetFanSpeed_v2", "", ret) {
				d.emit(mFanSpeed, d.fan(fan), float64(pct)/100, 0)
			}
		}
		return
	}
	if pct, ok := read(d, "nvmlDeviceGetFanSpeed", "", h.GetFanSpeed); ok {
		d.emit(mFanSpeed, d.fan(0), float64(pct)/100, 0)
	}
}

// fan is the entity of fan k of the GPU.
func (d *device) fan(k int) *entity {
	for len(d.fans) <= k {
		i := len(d.fans)
		d.fans = append(d.fans, &entity{
			hwID:   d.ent.hwID + "/fan" + strconv.Itoa(i),
			hwName: d.ent.hwName + "/fan" + strconv.Itoa(i),
			parent: d.ent.hwID,
		})
	}
	return d.fans[k]
}
