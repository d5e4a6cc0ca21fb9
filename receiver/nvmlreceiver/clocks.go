package nvmlreceiver

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

var clocks = []struct {
	typ  nvml.ClockType
	name string
}{
	{nvml.CLOCK_GRAPHICS, "graphics"}, {nvml.CLOCK_SM, "sm"}, {nvml.CLOCK_MEM, "memory"}, {nvml.CLOCK_VIDEO, "video"},
}

var throttleReasons = []struct {
	bit  uint64
	name string
}{
	{nvml.ClocksEventReasonGpuIdle, "gpu_idle"},
	{nvml.ClocksEventReasonApplicationsClocksSetting, "applications_clocks_setting"},
	{nvml.ClocksEventReasonSwPowerCap, "sw_power_cap"},
	{nvml.ClocksThrottleReasonHwSlowdown, "hw_slowdown"},
	{nvml.ClocksEventReasonSyncBoost, "sync_boost"},
	{nvml.ClocksEventReasonSwThermalSlowdown, "sw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwThermalSlowdown, "hw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"},
	{nvml.ClocksEventReasonDisplayClockSetting, "display_clock_setting"},
}

// throttleCauses are the clock-event (throttle) duration counters, all in
// nanoseconds, read as fields in the scrape's one field-values request (ids
// checked against nvml.h's "Field values for Clock Throttle Reason
// Counters" and nvmlDeviceGetViolationStatus's translation table). name is
// the nvidia.gpu.violation.policy attribute value. The policies
// GetViolationStatus has (deprecated in CUDA 13, to be removed in 14) fall
// back to it on drivers without the field; the HW thermal and power brake
// slowdowns have no such call. NVML_PERF_POLICY_TOTAL_APP_CLOCKS is
// "DEPRECATED, Do not use" and is not reported; the thermal policy is
// NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN (269), not
// NVML_FI_DEV_PERF_POLICY_THERMAL (75).
var throttleCauses = []struct {
	field    uint32
	name     string
	policy   nvml.PerfPolicyType
	fallback bool // GetViolationStatus(policy) where the field is not answered
}{
	{nvml.FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP, "power", nvml.PERF_POLICY_POWER, true},                // 74
	{nvml.FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN, "thermal", nvml.PERF_POLICY_THERMAL, true},       // 269
	{nvml.FI_DEV_CLOCKS_EVENT_REASON_SYNC_BOOST, "sync_boost", nvml.PERF_POLICY_SYNC_BOOST, true},        // 76
	{nvml.FI_DEV_PERF_POLICY_BOARD_LIMIT, "board_limit", nvml.PERF_POLICY_BOARD_LIMIT, true},             // 77
	{nvml.FI_DEV_PERF_POLICY_LOW_UTILIZATION, "low_utilization", nvml.PERF_POLICY_LOW_UTILIZATION, true}, // 78
	{nvml.FI_DEV_PERF_POLICY_RELIABILITY, "reliability", nvml.PERF_POLICY_RELIABILITY, true},             // 79
	{nvml.FI_DEV_PERF_POLICY_TOTAL_BASE_CLOCKS, "base_clocks", nvml.PERF_POLICY_TOTAL_BASE_CLOCKS, true}, // 81
	{nvml.FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN, "hw_thermal_slowdown", 0, false},                 // 270
	{nvml.FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake_slowdown", 0, false},       // 271
}

func (d *device) collectClocks(now pcommon.Timestamp, f *fieldRead) {
	h := d.handle()
	if d.drv.enabled[mClock] {
		for _, c := range clocks {
			if mhz, ok := read(d, "nvmlDeviceGetClockInfo", c.name, func() (uint32, nvml.Return) {
				return h.GetClockInfo(c.typ)
			}); ok {
				d.emit(mClock, d.ent, float64(mhz)*1e6, 0, str("nvidia.gpu.clock", c.name))
			}
		}
	}
	// Clock event reasons are called throttle reasons before R535.
	reasons, get := "nvmlDeviceGetCurrentClocksEventReasons", h.GetCurrentClocksEventReasons
	if !d.drv.has(reasons) {
		reasons, get = "nvmlDeviceGetCurrentClocksThrottleReasons", h.GetCurrentClocksThrottleReasons
	}
	if d.drv.enabled[mThrottleActive] {
		if bits, ok := read(d, reasons, "", get); ok {
			for _, r := range throttleReasons {
				active := 0.0
				if bits&r.bit != 0 {
					active = 1
				}
				d.emit(mThrottleActive, d.ent, active, 0, str("nvidia.gpu.throttle.reason", r.name))
			}
		}
	}
	if d.drv.enabled[mThrottleDuration] {
		// The policy counters as fields first (GetViolationStatus is
		// deprecated in CUDA 13's nvml.h), one call each on drivers
		// without them. Both count nanoseconds.
		for _, c := range throttleCauses {
			ns, have := uint64(0), false
			if v, ok := f.field(c.field); ok {
				ns, have = uint64(v), true
			} else if c.fallback {
				vt, ok := read(d, "nvmlDeviceGetViolationStatus", c.name, func() (nvml.ViolationTime, nvml.Return) {
					return h.GetViolationStatus(c.policy)
				})
				ns, have = vt.ViolationTime, ok
			}
			if have {
				start := d.cumulative("nvmlDeviceGetViolationStatus", c.name, ns, now)
				d.emit(mThrottleDuration, d.ent, float64(ns)/1e9, start, str("nvidia.gpu.violation.policy", c.name))
			}
		}
	}
}
