package nvmlreceiver

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

const (
	mib = 1 << 20
	kib = 1 << 10
)

var virtualizationModes = map[nvml.GpuVirtualizationMode]string{
	nvml.GPU_VIRTUALIZATION_MODE_NONE:        "none",
	nvml.GPU_VIRTUALIZATION_MODE_PASSTHROUGH: "passthrough",
	nvml.GPU_VIRTUALIZATION_MODE_VGPU:        "vgpu",
	nvml.GPU_VIRTUALIZATION_MODE_HOST_VGPU:   "host_vgpu",
	nvml.GPU_VIRTUALIZATION_MODE_HOST_VSGA:   "host_vsga",
}

// readIdentity reads what never changes about a GPU, once, for nvidia.gpu.info.
func (d *device) readIdentity() []kv {
	info := []kv{str("hw.vendor", "NVIDIA")}
	h := d.h
	if d.can("nvmlDeviceGetName", "") {
		if v, ret := h.GetName(); d.ok("nvmlDeviceGetName", "", ret) {
			info = append(info, str("hw.model", v))
		}
	}
	if d.can("nvmlDeviceGetSerial", "") {
		if v, ret := h.GetSerial(); d.ok("nvmlDeviceGetSerial", "", ret) {
			info = append(info, str("hw.serial_number", v))
		}
	}
	if d.drv.driverVersion != "" {
		info = append(info, str("hw.driver_version", d.drv.driverVersion))
	}
	if d.can("nvmlDeviceGetVbiosVersion", "") {
		if v, ret := h.GetVbiosVersion(); d.ok("nvmlDeviceGetVbiosVersion", "", ret) {
			info = append(info, str("hw.firmware_version", v))
		}
	}
	if d.can("nvmlDeviceGetPciInfo", "") {
		if v, ret := h.GetPciInfo(); d.ok("nvmlDeviceGetPciInfo", "", ret) {
			info = append(info, str("nvidia.gpu.pci_bus_id", pciBusID(v)))
		}
	}
	mode := "unknown"
	if d.can("nvmlDeviceGetVirtualizationMode", "") {
		if v, ret := h.GetVirtualizationMode(); d.ok("nvmlDeviceGetVirtualizationMode", "", ret) {
			if name, known := virtualizationModes[v]; known {
				mode = name
			}
		}
	}
	info = append(info, str("nvidia.gpu.virtualization_mode", mode))
	if d.drv.cudaVersion != "" {
		info = append(info, str("nvidia.cuda.driver_version", d.drv.cudaVersion))
	}
	return info
}

func pciBusID(p nvml.PciInfo) string {
	b := make([]byte, 0, len(p.BusId))
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	if len(b) == 0 {
		return fmt.Sprintf("%08x:%02x:%02x.0", p.Domain, p.Bus, p.Device)
	}
	return string(b)
}

func (d *device) emitInfo() { d.emit(mInfo, d.ent, 1, 0) }

// sampleValue decodes an NVML sample or field value.
func sampleValue(vt nvml.ValueType, b [8]byte) float64 {
	switch vt {
	case nvml.VALUE_TYPE_DOUBLE:
		return math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return float64(binary.LittleEndian.Uint32(b[:]))
	case nvml.VALUE_TYPE_UNSIGNED_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return float64(binary.LittleEndian.Uint64(b[:]))
	case nvml.VALUE_TYPE_SIGNED_LONG_LONG:
		return float64(int64(binary.LittleEndian.Uint64(b[:])))
	case nvml.VALUE_TYPE_SIGNED_INT:
		return float64(int32(binary.LittleEndian.Uint32(b[:])))
	case nvml.VALUE_TYPE_UNSIGNED_SHORT:
		return float64(binary.LittleEndian.Uint16(b[:]))
	default:
		return math.NaN()
	}
}

// averageSamples averages the utilization samples NVML buffered since the
// last scrape. false: none new (the caller falls back to an instant reading).
func (d *device) averageSamples(h nvml.Device, typ nvml.SamplingType) (float64, bool) {
	variant := map[nvml.SamplingType]string{
		nvml.GPU_UTILIZATION_SAMPLES: "gpu", nvml.MEMORY_UTILIZATION_SAMPLES: "memory",
		nvml.ENC_UTILIZATION_SAMPLES: "encoder", nvml.DEC_UTILIZATION_SAMPLES: "decoder",
	}[typ]
	if !d.can("nvmlDeviceGetSamples", variant) {
		return 0, false
	}
	last := d.util.lastSeen[typ]
	vt, samples, ret := h.GetSamples(typ, last)
	if ret == nvml.ERROR_NOT_FOUND {
		return 0, false // no sample newer than the last one seen
	}
	if !d.ok("nvmlDeviceGetSamples", variant, ret) {
		return 0, false
	}
	sum, n, newest := 0.0, 0, last
	for _, smp := range samples {
		if smp.TimeStamp <= last {
			continue
		}
		v := sampleValue(vt, smp.SampleValue)
		if math.IsNaN(v) {
			continue
		}
		sum += v
		n++
		newest = max(newest, smp.TimeStamp)
	}
	if n == 0 {
		return 0, false
	}
	d.util.lastSeen[typ] = newest
	return sum / float64(n), true
}

func (d *device) collectUtilization() {
	on := &d.drv.enabled
	if !on[mUtilization] && !on[mMemBandwidthUtil] {
		return
	}
	h := d.handle()
	var rates nvml.Utilization
	ratesRead, ratesOK := false, false
	instant := func() bool {
		if !ratesRead {
			ratesRead = true
			if d.can("nvmlDeviceGetUtilizationRates", "") {
				var ret nvml.Return
				rates, ret = h.GetUtilizationRates()
				ratesOK = d.ok("nvmlDeviceGetUtilizationRates", "", ret)
			}
		}
		return ratesOK
	}
	if on[mUtilization] {
		if v, ok := d.averageSamples(h, nvml.GPU_UTILIZATION_SAMPLES); ok {
			d.emit(mUtilization, d.ent, v/100, 0, str("hw.gpu.task", "general"))
		} else if instant() {
			d.emit(mUtilization, d.ent, float64(rates.Gpu)/100, 0, str("hw.gpu.task", "general"))
		}
		// Encoder and decoder like the GPU: averaged over the samples since
		// the last scrape, the instant reading where there are none.
		for _, e := range []struct {
			typ  nvml.SamplingType
			task string
			fn   string
			get  func() (uint32, uint32, nvml.Return)
		}{
			{nvml.ENC_UTILIZATION_SAMPLES, "encoder", "nvmlDeviceGetEncoderUtilization", h.GetEncoderUtilization},
			{nvml.DEC_UTILIZATION_SAMPLES, "decoder", "nvmlDeviceGetDecoderUtilization", h.GetDecoderUtilization},
		} {
			if v, ok := d.averageSamples(h, e.typ); ok {
				d.emit(mUtilization, d.ent, v/100, 0, str("hw.gpu.task", e.task))
			} else if d.can(e.fn, "") {
				if v, _, ret := e.get(); d.ok(e.fn, "", ret) {
					d.emit(mUtilization, d.ent, float64(v)/100, 0, str("hw.gpu.task", e.task))
				}
			}
		}
	}
	if on[mMemBandwidthUtil] {
		if v, ok := d.averageSamples(h, nvml.MEMORY_UTILIZATION_SAMPLES); ok {
			d.emit(mMemBandwidthUtil, d.ent, v/100, 0)
		} else if instant() {
			d.emit(mMemBandwidthUtil, d.ent, float64(rates.Memory)/100, 0)
		}
	}
}

// collectMemory reads a GPU's or a MIG instance's memory (variant tells
// them apart in the "not supported" memory).
func (d *device) collectMemory(h nvml.Device, ent *entity, variant string) {
	on := &d.drv.enabled
	if !on[mMemUsage] && !on[mMemLimit] && !on[mMemUtilization] && !on[mMemReserved] {
		return
	}
	var used, total, reserved uint64
	haveReserved, have := false, false
	if d.can("nvmlDeviceGetMemoryInfo_v2", variant) {
		if m, ret := h.GetMemoryInfo_v2(); d.ok("nvmlDeviceGetMemoryInfo_v2", variant, ret) {
			used, total, reserved, have, haveReserved = m.Used, m.Total, m.Reserved, true, true
		}
	}
	if !have && d.can("nvmlDeviceGetMemoryInfo", variant) {
		if m, ret := h.GetMemoryInfo(); d.ok("nvmlDeviceGetMemoryInfo", variant, ret) {
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
		} else if d.can("nvmlDeviceGetPowerUsage", "") {
			if mw, ret := h.GetPowerUsage(); d.ok("nvmlDeviceGetPowerUsage", "", ret) {
				d.emit(mPower, d.ent, float64(mw)/1000, 0, gpu)
			}
		}
	}
	if d.drv.enabled[mPowerLimit] {
		if mw, ok := f.field(nvml.FI_DEV_POWER_CURRENT_LIMIT); ok {
			d.emit(mPowerLimit, d.ent, mw/1000, 0)
		} else if d.can("nvmlDeviceGetEnforcedPowerLimit", "") {
			if mw, ret := h.GetEnforcedPowerLimit(); d.ok("nvmlDeviceGetEnforcedPowerLimit", "", ret) {
				d.emit(mPowerLimit, d.ent, float64(mw)/1000, 0)
			}
		}
	}
	if d.drv.enabled[mEnergy] {
		mj, have := uint64(0), false
		if v, ok := f.field(nvml.FI_DEV_TOTAL_ENERGY_CONSUMPTION); ok {
			mj, have = uint64(v), true
		} else if d.can("nvmlDeviceGetTotalEnergyConsumption", "") {
			var ret nvml.Return
			mj, ret = h.GetTotalEnergyConsumption()
			have = d.ok("nvmlDeviceGetTotalEnergyConsumption", "", ret)
		}
		if have {
			start := d.cumulative("nvmlDeviceGetTotalEnergyConsumption", "", mj, now)
			d.emit(mEnergy, d.ent, float64(mj)/1000, start, gpu)
		}
	}
}

// fieldValue decodes one field of a GetFieldValues answer; a field the GPU
// does not support is remembered like an unsupported function.
func (d *device) fieldValue(variant string, fv nvml.FieldValue) (float64, bool) {
	ret := nvml.Return(fv.NvmlReturn)
	if ret != nvml.SUCCESS {
		d.ok("nvmlDeviceGetFieldValues", variant, ret)
		return 0, false
	}
	v := sampleValue(nvml.ValueType(fv.ValueType), fv.Value)
	return v, !math.IsNaN(v)
}

func (d *device) collectThermal(f *fieldRead) {
	if !d.drv.enabled[mTemperature] {
		return
	}
	h := d.handle()
	// The versioned call first (CUDA 13's nvml.h deprecates the old one and
	// announces its removal), the old one on drivers without it.
	gpuTemp := false
	if d.can("nvmlDeviceGetTemperatureV", "") {
		if t, ret := h.GetTemperatureV().V1(); d.ok("nvmlDeviceGetTemperatureV", "", ret) {
			d.emit(mTemperature, d.ent, float64(t.Temperature), 0, str("hw.sensor_location", "gpu"))
			gpuTemp = true
		}
	}
	if !gpuTemp && d.can("nvmlDeviceGetTemperature", "") {
		if c, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); d.ok("nvmlDeviceGetTemperature", "", ret) {
			d.emit(mTemperature, d.ent, float64(c), 0, str("hw.sensor_location", "gpu"))
		}
	}
	if c, ok := f.field(nvml.FI_DEV_MEMORY_TEMP); ok {
		d.emit(mTemperature, d.ent, c, 0, str("hw.sensor_location", "memory"))
	}
}

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
			if d.can("nvmlDeviceGetClockInfo", c.name) {
				if mhz, ret := h.GetClockInfo(c.typ); d.ok("nvmlDeviceGetClockInfo", c.name, ret) {
					d.emit(mClock, d.ent, float64(mhz)*1e6, 0, str("nvidia.gpu.clock", c.name))
				}
			}
		}
	}
	// Clock event reasons are called throttle reasons before R535.
	reasons, get := "nvmlDeviceGetCurrentClocksEventReasons", h.GetCurrentClocksEventReasons
	if !d.drv.has(reasons) {
		reasons, get = "nvmlDeviceGetCurrentClocksThrottleReasons", h.GetCurrentClocksThrottleReasons
	}
	if d.drv.enabled[mThrottleActive] && d.can(reasons, "") {
		if bits, ret := get(); d.ok(reasons, "", ret) {
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
			} else if c.fallback && d.can("nvmlDeviceGetViolationStatus", c.name) {
				vt, ret := h.GetViolationStatus(c.policy)
				ns, have = vt.ViolationTime, d.ok("nvmlDeviceGetViolationStatus", c.name, ret)
			}
			if have {
				start := d.cumulative("nvmlDeviceGetViolationStatus", c.name, ns, now)
				d.emit(mThrottleDuration, d.ent, float64(ns)/1e9, start, str("nvidia.gpu.violation.policy", c.name))
			}
		}
	}
}

func (d *device) collectPCIe(now pcommon.Timestamp, f *fieldRead) {
	h := d.handle()
	if d.drv.enabled[mPCIeThroughput] {
		d.collectPCIeThroughput(h, f)
	}
	if d.drv.enabled[mPCIeReplays] {
		n, have := uint64(0), false
		if v, ok := f.field(nvml.FI_DEV_PCIE_REPLAY_COUNTER); ok {
			n, have = uint64(v), true
		} else if d.can("nvmlDeviceGetPcieReplayCounter", "") {
			c, ret := h.GetPcieReplayCounter()
			n, have = uint64(c), d.ok("nvmlDeviceGetPcieReplayCounter", "", ret)
		}
		if have {
			start := d.cumulative("nvmlDeviceGetPcieReplayCounter", "", n, now)
			d.emitInt(mPCIeReplays, d.ent, int64(n), start)
		}
	}
	if d.drv.enabled[mPCIeErrors] {
		for _, e := range pcieErrorFields {
			d.emitFieldCounter(mPCIeErrors, now, f, e.id, e.name)
		}
	}
	if d.drv.enabled[mC2CErrors] {
		for _, e := range c2cErrorFields {
			d.emitFieldCounter(mC2CErrors, now, f, e.id, e.name)
		}
	}
}

// emitFieldCounter reports a device-wide error counter that only the
// field-values request has (no per-call fallback), as error.type.
func (d *device) emitFieldCounter(m int, now pcommon.Timestamp, f *fieldRead, id uint32, errType string) {
	v, ok := f.field(id)
	if !ok {
		return
	}
	n := uint64(v)
	start := d.cumulative(fieldsFn, fieldVariant(id), n, now)
	d.emitInt(m, d.ent, int64(n), start, str("error.type", errType))
}

// pcieCounters is the PCIe byte counters at the last scrape, for a rate.
type pcieCounters struct {
	tx, rx uint64
	at     time.Time
	have   bool
}

// counterDelta is how far a PCIe byte counter moved between two reads.
// nvml.h says of PCIE_COUNT_TX/RX_BYTES "Value can be wrapped": drivers keep
// them in 32 bits (a wrap every 4 GiB, seconds at PCIe rates), so a counter
// that goes down while both reads fit in 32 bits wrapped once (one wrap per
// interval is all the two reads can tell; a faster link wraps more often
// and is under-counted, never negative). A counter above 32 bits that goes
// down was reset (a GPU reset, a driver reload): no rate this time.
func counterDelta(prev, cur uint64) (uint64, bool) {
	if cur >= prev {
		return cur - prev, true
	}
	if prev <= math.MaxUint32 {
		return cur + (1 << 32) - prev, true
	}
	return 0, false
}

// collectPCIeThroughput reports PCIe traffic in bytes/s: the rate of the
// PCIe byte counters between two scrapes where the driver has them (no
// cost), else GetPcieThroughput, which samples for about 20 ms a call.
func (d *device) collectPCIeThroughput(h nvml.Device, f *fieldRead) {
	tx, okTx := f.field(nvml.FI_DEV_PCIE_COUNT_TX_BYTES)
	rx, okRx := f.field(nvml.FI_DEV_PCIE_COUNT_RX_BYTES)
	if okTx && okRx {
		// Over the driver's timestamp of the read where it gives one.
		at := f.stamp(nvml.FI_DEV_PCIE_COUNT_TX_BYTES)
		if at.IsZero() {
			at = f.at
		}
		prev := d.pcie
		d.pcie = pcieCounters{tx: uint64(tx), rx: uint64(rx), at: at, have: true}
		dt := at.Sub(prev.at).Seconds()
		// The first read has nothing to compare with; a counter that went
		// back gives no rate this time unless it wrapped (counterDelta).
		if !prev.have || dt <= 0 {
			return
		}
		dTx, okTx := counterDelta(prev.tx, uint64(tx))
		dRx, okRx := counterDelta(prev.rx, uint64(rx))
		if !okTx || !okRx {
			return
		}
		d.emit(mPCIeThroughput, d.ent, float64(dTx)/dt, 0, str("network.io.direction", "transmit"))
		d.emit(mPCIeThroughput, d.ent, float64(dRx)/dt, 0, str("network.io.direction", "receive"))
		return
	}
	d.pcie = pcieCounters{}
	for _, dir := range []struct {
		c    nvml.PcieUtilCounter
		name string
	}{{nvml.PCIE_UTIL_TX_BYTES, "transmit"}, {nvml.PCIE_UTIL_RX_BYTES, "receive"}} {
		if d.can("nvmlDeviceGetPcieThroughput", dir.name) {
			if kbs, ret := h.GetPcieThroughput(dir.c); d.ok("nvmlDeviceGetPcieThroughput", dir.name, ret) {
				d.emit(mPCIeThroughput, d.ent, float64(kbs)*kib, 0, str("network.io.direction", dir.name))
			}
		}
	}
}

// activeLinks finds the NVLinks that are up, listed again every
// rediscover_interval: a link that goes down (or is trained again) is seen
// without a restart. One field-values call reads every link's state (the
// link count and NVLINK_GET_STATE per link); drivers without those fields
// get one state call per link.
func (d *device) activeLinks(h nvml.Device) []int {
	if time.Since(d.nvlink.listedAt) < d.drv.relistEvery {
		return d.nvlink.links
	}
	if d.linksFromFields(h) {
		d.nvlink.listedAt = time.Now()
		return d.nvlink.links
	}
	if !d.can("nvmlDeviceGetNvLinkState", "") {
		return d.nvlink.links
	}
	d.nvlink.listedAt = time.Now()
	d.nvlink.links = d.nvlink.links[:0]
	d.nvlink.all = d.nvlink.all[:0]
	for link := 0; link < nvml.NVLINK_MAX_LINKS; link++ {
		state, ret := h.GetNvLinkState(link)
		if ret == nvml.ERROR_INVALID_ARGUMENT || ret == nvml.ERROR_NOT_SUPPORTED {
			break // past the GPU's last link, or no NVLink at all
		}
		if ret != nvml.SUCCESS {
			d.ok("nvmlDeviceGetNvLinkState", "", ret)
			continue
		}
		d.nvlink.all = append(d.nvlink.all, linkState{link: link, active: state == nvml.FEATURE_ENABLED})
		if state == nvml.FEATURE_ENABLED {
			d.nvlink.links = append(d.nvlink.links, link)
		}
	}
	return d.nvlink.links
}

// linksFromFields lists the links through field values; false when the
// driver cannot (the caller asks link by link).
func (d *device) linksFromFields(h nvml.Device) bool {
	variant := fieldVariant(nvml.FI_DEV_NVLINK_GET_STATE)
	if !d.can(fieldsFn, "") || !d.can(fieldsFn, variant) || !d.can(fieldsFn, fieldVariant(nvml.FI_DEV_NVLINK_LINK_COUNT)) {
		return false
	}
	fvs := make([]nvml.FieldValue, 0, 1+nvml.NVLINK_MAX_LINKS)
	fvs = append(fvs, nvml.FieldValue{FieldId: nvml.FI_DEV_NVLINK_LINK_COUNT})
	for link := 0; link < nvml.NVLINK_MAX_LINKS; link++ {
		fvs = append(fvs, nvml.FieldValue{FieldId: nvml.FI_DEV_NVLINK_GET_STATE, ScopeId: uint32(link)})
	}
	if ret := h.GetFieldValues(fvs); !d.ok(fieldsFn, "", ret) {
		return false
	}
	// A driver without the link count, or a GPU without NVLink, answers
	// it NOT_SUPPORTED (remembered): the per-link call tells them apart.
	count, ok := d.fieldValue(fieldVariant(nvml.FI_DEV_NVLINK_LINK_COUNT), fvs[0])
	if !ok {
		return false
	}
	n := min(int(count), nvml.NVLINK_MAX_LINKS)
	links, all := d.nvlink.links[:0], d.nvlink.all[:0]
	for link := 0; link < n; link++ {
		state, ok := d.fieldValue(variant, fvs[1+link])
		if !ok {
			return false
		}
		active := state == nvml.NVLINK_STATE_ACTIVE
		all = append(all, linkState{link: link, active: active})
		if active {
			links = append(links, link)
		}
	}
	d.nvlink.links, d.nvlink.all = links, all
	return true
}

var nvlinkErrorTypes = []struct {
	c    nvml.NvLinkErrorCounter
	name string
}{
	{nvml.NVLINK_ERROR_DL_CRC_FLIT, "crc_flit"}, {nvml.NVLINK_ERROR_DL_CRC_DATA, "crc_data"},
	{nvml.NVLINK_ERROR_DL_REPLAY, "replay"}, {nvml.NVLINK_ERROR_DL_RECOVERY, "recovery"},
}

func (d *device) nvlinkOn() bool {
	return d.drv.enabled[mNVLinkIO] || d.drv.enabled[mNVLinkErrors] || d.drv.enabled[mNVLinkActive] || d.drv.enabled[mNVLinkBER]
}

func (d *device) collectNVLink(now pcommon.Timestamp, links []int, f *fieldRead) {
	if !d.nvlinkOn() {
		return
	}
	h := d.handle()
	for _, l := range d.nvlink.all {
		d.emit(mNVLinkActive, d.ent, b2f(l.active), 0, num("nvidia.gpu.nvlink.link", int64(l.link)))
	}
	if len(links) == 0 {
		return
	}
	if d.drv.enabled[mNVLinkIO] {
		d.collectNVLinkIO(now, links, f)
	}
	if d.drv.enabled[mNVLinkErrors] {
		for i, t := range nvlinkErrorTypes {
			total, okAll := uint64(0), false
			if v, ok := f.field(nvlinkErrorFields[i]); ok {
				// Every lane of every link, in one field.
				total, okAll = uint64(v), true
			} else if d.can("nvmlDeviceGetNvLinkErrorCounter", t.name) {
				okAll = true
				for _, l := range links {
					n, ret := h.GetNvLinkErrorCounter(l, t.c)
					if !d.ok("nvmlDeviceGetNvLinkErrorCounter", t.name, ret) {
						okAll = false
						break
					}
					total += n
				}
			}
			if okAll {
				start := d.cumulative("nvmlDeviceGetNvLinkErrorCounter", t.name, total, now)
				d.emitInt(mNVLinkErrors, d.ent, int64(total), start, str("error.type", t.name))
			}
		}
		if v, ok := f.field(nvlinkECCField); ok {
			n := uint64(v)
			start := d.cumulative(fieldsFn, fieldVariant(nvlinkECCField), n, now)
			d.emitInt(mNVLinkErrors, d.ent, int64(n), start, str("error.type", "ecc_data"))
		}
		// NVLink5's per-link counters, summed over every link the GPU has
		// (a link that goes down keeps its count, so the sum does not go
		// back); a scrape where a link did not answer reports none.
		for _, e := range nvlink5ErrorFields {
			total, okAll := uint64(0), len(d.nvlink.all) > 0
			for _, l := range d.nvlink.all {
				v, ok := f.scoped(e.id, uint32(l.link))
				if !ok {
					okAll = false
					break
				}
				total += uint64(v)
			}
			if okAll {
				start := d.cumulative(fieldsFn, fieldVariant(e.id), total, now)
				d.emitInt(mNVLinkErrors, d.ent, int64(total), start, str("error.type", e.name))
			}
		}
	}
	if d.drv.enabled[mNVLinkBER] {
		for _, e := range nvlinkBERFields {
			for _, l := range d.nvlink.all {
				if v, ok := f.scoped(e.id, uint32(l.link)); ok {
					d.emit(mNVLinkBER, d.ent, berValue(uint64(v)), 0,
						num("nvidia.gpu.nvlink.link", int64(l.link)), str("error.type", e.name))
				}
			}
		}
	}
}

// collectNVLinkIO reports NVLink data traffic (hw.gpu.io). The driver's
// aggregate over every link (scope UINT_MAX) is one counter: a link that
// goes down or comes back does not move it, and it is reported as any
// driver counter (cumulative). Drivers without it answer per link; the
// receiver then adds up each active link's increase between two scrapes
// where it was active both times: a link that comes back (or is first
// seen) sets its baseline and counts from the next scrape, so its lifetime
// counter is never taken for one interval's traffic, and a link that goes
// down does not make the sum go back.
func (d *device) collectNVLinkIO(now pcommon.Timestamp, links []int, f *fieldRead) {
	dirs := [2]string{"transmit", "receive"}
	tx, ok1 := f.scoped(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, nvlinkAllLinks)
	rx, ok2 := f.scoped(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, nvlinkAllLinks)
	if ok1 && ok2 {
		d.nvlink.aggregate = true
		for i, v := range [2]float64{tx, rx} {
			b := uint64(v) * kib
			start := d.cumulative("nvlink_throughput", dirs[i], b, now)
			d.emitInt(mNVLinkIO, d.ent, int64(b), start, str("network.io.direction", dirs[i]))
		}
		return
	}
	if d.nvlink.aggregate && d.can(fieldsFn, nvlinkAllVariant[0]) && d.can(fieldsFn, nvlinkAllVariant[1]) {
		return // the aggregate failed this once: per-link values were not asked
	}
	d.nvlink.aggregate = false
	t := &d.nvlink.tally
	var seen [nvml.NVLINK_MAX_LINKS]bool
	answered := false
	for _, l := range links {
		if l < 0 || l >= nvml.NVLINK_MAX_LINKS {
			continue
		}
		tx, ok1 := f.scoped(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, uint32(l))
		rx, ok2 := f.scoped(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, uint32(l))
		if !ok1 || !ok2 {
			continue
		}
		answered = true
		cur := [2]uint64{uint64(tx), uint64(rx)}
		switch {
		case !t.have:
			// The first read: the driver's totals, a true reset point
			// like any driver counter's first point.
			t.total[0] += cur[0]
			t.total[1] += cur[1]
		case t.seen[l]:
			for i := range cur {
				if cur[i] >= t.last[l][i] {
					t.total[i] += cur[i] - t.last[l][i]
				} else {
					t.total[i] += cur[i] // the link's counter restarted
				}
			}
		}
		t.last[l], seen[l] = cur, true
	}
	if !answered {
		return
	}
	t.seen = seen
	if !t.have {
		t.have, t.start = true, now
	}
	for i := range dirs {
		d.emitInt(mNVLinkIO, d.ent, int64(t.total[i]*kib), t.start, str("network.io.direction", dirs[i]))
	}
}

func (d *device) collectErrors(now pcommon.Timestamp, xids xidInterval, f *fieldRead) {
	h := d.handle()
	gpu := str("hw.type", "gpu")
	d.health.newUncorrected = false
	// ECC is read for hw.status too: a rise of uncorrected errors degrades
	// the GPU whether or not hw.errors is reported.
	if d.drv.enabled[mErrors] || d.drv.enabled[mStatus] {
		for i, e := range []struct {
			typ  nvml.MemoryErrorType
			name string
		}{{nvml.MEMORY_ERROR_TYPE_CORRECTED, "corrected"}, {nvml.MEMORY_ERROR_TYPE_UNCORRECTED, "uncorrected"}} {
			var n uint64
			if v, ok := f.field(eccFields[i]); ok {
				n = uint64(v)
			} else {
				if !d.can("nvmlDeviceGetTotalEccErrors", e.name) {
					continue
				}
				var ret nvml.Return
				if n, ret = h.GetTotalEccErrors(e.typ, nvml.VOLATILE_ECC); !d.ok("nvmlDeviceGetTotalEccErrors", e.name, ret) {
					continue
				}
			}
			start := d.cumulative("nvmlDeviceGetTotalEccErrors", e.name, n, now)
			d.emitInt(mErrors, d.ent, int64(n), start, gpu, str("error.type", e.name))
			if e.typ == nvml.MEMORY_ERROR_TYPE_UNCORRECTED {
				if d.health.havePrevUnc && n > d.health.prevUncorr {
					d.health.newUncorrected = true
				}
				if d.health.havePrevUnc && n < d.health.prevUncorr {
					d.health.eccWentBack = true
				}
				d.health.prevUncorr, d.health.havePrevUnc = n, true
			}
		}
		for _, c := range xids.counts {
			d.emitInt(mErrors, d.ent, int64(c.count), xids.start, gpu, str("error.type", "xid"), num("nvidia.xid.code", int64(c.code)))
		}
	}
}

// collectECC reports ECC errors per memory location, since the driver
// loaded (volatile) and over the board's life (aggregate), from the scrape's
// field values: an RMA decision reads the aggregate device-memory count.
func (d *device) collectECC(now pcommon.Timestamp, f *fieldRead) {
	if !d.drv.enabled[mECC] {
		return
	}
	for _, l := range eccLocations {
		for _, e := range []struct {
			id   uint32
			name string
		}{{l.sbe, "corrected"}, {l.dbe, "uncorrected"}} {
			v, ok := f.field(e.id)
			if !ok {
				continue
			}
			start := d.cumulative("ecc:"+l.counter+":"+l.location, e.name, uint64(v), now)
			d.emitInt(mECC, d.ent, int64(v), start, str("error.type", e.name),
				str("nvidia.gpu.ecc.location", l.location), str("nvidia.gpu.ecc.counter", l.counter))
		}
	}
}

func (d *device) collectMisc() {
	h := d.handle()
	on := &d.drv.enabled
	d.health.remapPending, d.health.remapFailed = false, false
	if (on[mRemappedRows] || on[mStatus]) && d.can("nvmlDeviceGetRemappedRows", "") {
		if corr, unc, pending, failed, ret := h.GetRemappedRows(); d.ok("nvmlDeviceGetRemappedRows", "", ret) {
			d.health.remapPending, d.health.remapFailed = pending, failed
			d.emitInt(mRemappedRows, d.ent, int64(corr), 0, str("nvidia.gpu.remap.cause", "correctable"))
			d.emitInt(mRemappedRows, d.ent, int64(unc), 0, str("nvidia.gpu.remap.cause", "uncorrectable"))
			d.emitInt(mRemapState, d.ent, int64(b2f(pending)), 0, str("nvidia.gpu.remap.state", "pending"))
			d.emitInt(mRemapState, d.ent, int64(b2f(failed)), 0, str("nvidia.gpu.remap.state", "failed"))
		}
	}
	if on[mRetiredPages] {
		for _, c := range []struct {
			cause nvml.PageRetirementCause
			name  string
		}{{nvml.PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS, "sbe"}, {nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR, "dbe"}} {
			if d.can("nvmlDeviceGetRetiredPages", c.name) {
				if pages, ret := h.GetRetiredPages(c.cause); d.ok("nvmlDeviceGetRetiredPages", c.name, ret) {
					d.emit(mRetiredPages, d.ent, float64(len(pages)), 0, str("nvidia.gpu.retire.cause", c.name))
				}
			}
		}
	}
	if on[mPerfState] && d.can("nvmlDeviceGetPerformanceState", "") {
		if p, ret := h.GetPerformanceState(); d.ok("nvmlDeviceGetPerformanceState", "", ret) && p != nvml.PSTATE_UNKNOWN {
			d.emit(mPerfState, d.ent, float64(p), 0)
		}
	}
	if on[mFanSpeed] {
		d.collectFans(h)
	}
}

// collectFans reports each fan of the board as its own hardware component
// (semconv hw.fan.speed_ratio), its parent the GPU. Passively cooled boards
// (every datacenter SXM board) answer NOT_SUPPORTED, remembered.
func (d *device) collectFans(h nvml.Device) {
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
	if d.can("nvmlDeviceGetFanSpeed", "") {
		if pct, ret := h.GetFanSpeed(); d.ok("nvmlDeviceGetFanSpeed", "", ret) {
			d.emit(mFanSpeed, d.fan(0), float64(pct)/100, 0)
		}
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

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// utilCursors are where utilization sampling left off, per sample type:
// each scrape averages the samples newer than the last one it saw.
type utilCursors struct {
	lastSeen map[nvml.SamplingType]uint64
}

func newUtilCursors() utilCursors {
	return utilCursors{lastSeen: map[nvml.SamplingType]uint64{}}
}

// linkState is one NVLink and whether it is active.
type linkState struct {
	link   int
	active bool
}

// nvlinkState is the GPU's active NVLink links, read once per discovery.
type nvlinkState struct {
	links    []int       // the active ones
	all      []linkState // every link the GPU has
	listedAt time.Time   // zero: not listed yet
	// aggregate: the driver answered the all-links traffic fields.
	aggregate bool
	tally     nvlinkTally // traffic summed per link where it did not
}

// nvlinkTally is hw.gpu.io summed by the receiver from per-link counters.
type nvlinkTally struct {
	last  [nvml.NVLINK_MAX_LINKS][2]uint64 // KiB at the previous scrape, TX and RX
	seen  [nvml.NVLINK_MAX_LINKS]bool      // the link answered at the previous scrape
	total [2]uint64                        // KiB, TX and RX
	start pcommon.Timestamp
	have  bool
}
