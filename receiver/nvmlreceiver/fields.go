package nvmlreceiver

import (
	"math"
	"strconv"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Field values: one nvmlDeviceGetFieldValues call per GPU per scrape reads
// the counters that would otherwise cost a call each (72 of them NVLink
// error counters on an H100, 9 throttle durations, ECC, PCIe replays,
// energy, and the PCIe byte counters that replace GetPcieThroughput's
// 20 ms sampling). A field the driver does not answer (NOT_SUPPORTED on an
// older driver or a board without it) is remembered like a refused call and
// its metric falls back to its own function; a driver without the function
// at all, a MIG instance, or a failed call falls back for every field.

type fieldKey struct {
	id, scope uint32
}

// fieldRead is one scrape's answers.
type fieldRead struct {
	ok   bool // the call succeeded; vals holds the fields it answered
	vals map[fieldKey]float64
	// stamps are the driver's timestamps of the reads (microseconds), for
	// rates of counters.
	stamps map[fieldKey]int64
	at     time.Time
}

const fieldsFn = "nvmlDeviceGetFieldValues"

// fieldVariant names a field in the call memory. The names of nvml.h's
// field ids (under 512) are made once: the scrape asks for each field's
// name every time.
func fieldVariant(id uint32) string {
	if int(id) < len(fieldVariants) {
		return fieldVariants[id]
	}
	return "field:" + strconv.FormatUint(uint64(id), 10)
}

var fieldVariants = func() (v [512]string) {
	for i := range v {
		v[i] = "field:" + strconv.Itoa(i)
	}
	return v
}()

// nvlinkAllLinks is the scope id that asks NVLINK_THROUGHPUT_DATA_TX/RX
// for the aggregate over every link (nvml.h: "A scopeId of UINT_MAX returns
// aggregate value summed up across all links").
const nvlinkAllLinks = math.MaxUint32

// nvlinkAllVariant names the aggregate TX and RX fields in the call memory,
// apart from the per-link ones: a driver that refuses the aggregate may
// still answer per link.
var nvlinkAllVariant = [2]string{
	fieldVariant(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX) + ":all",
	fieldVariant(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX) + ":all",
}

// scopedVariant is fieldVariant, the NVLink aggregate scope apart.
func scopedVariant(id, scope uint32) string {
	if scope == nvlinkAllLinks {
		switch id {
		case nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX:
			return nvlinkAllVariant[0]
		case nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX:
			return nvlinkAllVariant[1]
		}
	}
	return fieldVariant(id)
}

// NVLink error totals over every lane and link, in nvlinkErrorTypes' order.
var nvlinkErrorFields = []uint32{
	nvml.FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL, nvml.FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
	nvml.FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL, nvml.FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
}

// pcieErrorFields are the PCIe link's error counters a guest sees
// (nvml.h NVML_FI_DEV_PCIE_*; the replay counter itself is
// nvidia.gpu.pcie.replays), in nvidia.gpu.pcie.errors.
var pcieErrorFields = []struct {
	id   uint32
	name string
}{
	{nvml.FI_DEV_PCIE_REPLAY_ROLLOVER_COUNTER, "replay_rollover"},   // 95
	{nvml.FI_DEV_PCIE_L0_TO_RECOVERY_COUNTER, "recovery"},           // 169
	{nvml.FI_DEV_PCIE_COUNT_CORRECTABLE_ERRORS, "correctable"},      // 173
	{nvml.FI_DEV_PCIE_COUNT_NAKS_RECEIVED, "nak_received"},          // 174
	{nvml.FI_DEV_PCIE_COUNT_RECEIVER_ERROR, "receiver_error"},       // 175
	{nvml.FI_DEV_PCIE_COUNT_BAD_TLP, "bad_tlp"},                     // 176
	{nvml.FI_DEV_PCIE_COUNT_NAKS_SENT, "nak_sent"},                  // 177
	{nvml.FI_DEV_PCIE_COUNT_BAD_DLLP, "bad_dllp"},                   // 178
	{nvml.FI_DEV_PCIE_COUNT_NON_FATAL_ERROR, "non_fatal"},           // 179
	{nvml.FI_DEV_PCIE_COUNT_FATAL_ERROR, "fatal"},                   // 180
	{nvml.FI_DEV_PCIE_COUNT_UNSUPPORTED_REQ, "unsupported_request"}, // 181
	{nvml.FI_DEV_PCIE_COUNT_LCRC_ERROR, "lcrc"},                     // 182
}

// c2cErrorFields are the chip-to-chip (Grace-GPU) link's error counters,
// in nvidia.gpu.c2c.errors.
var c2cErrorFields = []struct {
	id   uint32
	name string
}{
	{nvml.FI_DEV_C2C_LINK_ERROR_INTR, "crc"},              // 231
	{nvml.FI_DEV_C2C_LINK_ERROR_REPLAY, "replay"},         // 232
	{nvml.FI_DEV_C2C_LINK_ERROR_REPLAY_B2B, "replay_b2b"}, // 233
}

// nvlinkECCField is the NVLink data ECC errors over every link, a further
// error.type of nvidia.gpu.nvlink.errors with no per-call fallback.
const nvlinkECCField = nvml.FI_DEV_NVLINK_ECC_DATA_ERROR_COUNT_TOTAL // 160

// nvlink5ErrorFields are NVLink5's per-link error counters (nvml.h: "Link
// ID needs to be specified in the scopeId"), summed over every link the GPU
// has into nvidia.gpu.nvlink.errors.
var nvlink5ErrorFields = []struct {
	id   uint32
	name string
}{
	{nvml.FI_DEV_NVLINK_COUNT_MALFORMED_PACKET_ERRORS, "malformed_packet"},         // 206
	{nvml.FI_DEV_NVLINK_COUNT_BUFFER_OVERRUN_ERRORS, "buffer_overrun"},             // 207
	{nvml.FI_DEV_NVLINK_COUNT_RCV_ERRORS, "receive"},                               // 208
	{nvml.FI_DEV_NVLINK_COUNT_RCV_REMOTE_ERRORS, "receive_remote"},                 // 209
	{nvml.FI_DEV_NVLINK_COUNT_RCV_GENERAL_ERRORS, "receive_general"},               // 210
	{nvml.FI_DEV_NVLINK_COUNT_LOCAL_LINK_INTEGRITY_ERRORS, "local_link_integrity"}, // 211
	{nvml.FI_DEV_NVLINK_COUNT_XMIT_DISCARDS, "transmit_discard"},                   // 212
	{nvml.FI_DEV_NVLINK_COUNT_LINK_RECOVERY_FAILED_EVENTS, "link_recovery_failed"}, // 214
	{nvml.FI_DEV_NVLINK_COUNT_EFFECTIVE_ERRORS, "effective"},                       // 219
	{nvml.FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS, "symbol"},                             // 221
}

// nvlinkBERFields are NVLink5's per-link bit error rates, in
// nvidia.gpu.nvlink.ber: bits 0-7 the exponent, 8-11 the mantissa
// (NVML_NVLINK_ERROR_COUNTER_BER_GET), the rate mantissa * 10^-exponent.
var nvlinkBERFields = []struct {
	id   uint32
	name string
}{
	{nvml.FI_DEV_NVLINK_COUNT_EFFECTIVE_BER, "effective"}, // 220
	{nvml.FI_DEV_NVLINK_COUNT_SYMBOL_BER, "symbol"},       // 222
}

// berValue decodes a BER field.
func berValue(raw uint64) float64 {
	exp := raw & 0xff
	mant := (raw >> 8) & 0xf
	return float64(mant) * math.Pow(10, -float64(exp))
}

// eccFields are the volatile totals (hw.errors), corrected then uncorrected.
var eccFields = []uint32{nvml.FI_DEV_ECC_SBE_VOL_TOTAL, nvml.FI_DEV_ECC_DBE_VOL_TOTAL}

// eccLocations are the per-location and lifetime ECC counts of
// nvidia.gpu.ecc.errors.
var eccLocations = []struct {
	sbe, dbe uint32
	location string
	counter  string
}{
	{nvml.FI_DEV_ECC_SBE_VOL_DEV, nvml.FI_DEV_ECC_DBE_VOL_DEV, "device_memory", "volatile"},
	{nvml.FI_DEV_ECC_SBE_VOL_L1, nvml.FI_DEV_ECC_DBE_VOL_L1, "l1_cache", "volatile"},
	{nvml.FI_DEV_ECC_SBE_VOL_L2, nvml.FI_DEV_ECC_DBE_VOL_L2, "l2_cache", "volatile"},
	{nvml.FI_DEV_ECC_SBE_VOL_REG, nvml.FI_DEV_ECC_DBE_VOL_REG, "register_file", "volatile"},
	{nvml.FI_DEV_ECC_SBE_VOL_TEX, nvml.FI_DEV_ECC_DBE_VOL_TEX, "texture_memory", "volatile"},
	{nvml.FI_DEV_ECC_SBE_AGG_TOTAL, nvml.FI_DEV_ECC_DBE_AGG_TOTAL, "total", "aggregate"},
	{nvml.FI_DEV_ECC_SBE_AGG_DEV, nvml.FI_DEV_ECC_DBE_AGG_DEV, "device_memory", "aggregate"},
}

// wantFields lists the fields this scrape needs, leaving out the ones the
// GPU refused within refused_retry_interval.
func (d *device) wantFields(links []int) []nvml.FieldValue {
	on := &d.drv.enabled
	var fvs []nvml.FieldValue
	add := func(id, scope uint32) {
		if d.can(fieldsFn, fieldVariant(id)) {
			fvs = append(fvs, nvml.FieldValue{FieldId: id, ScopeId: scope})
		}
	}
	if on[mPower] {
		add(nvml.FI_DEV_POWER_INSTANT, 0)
		add(nvml.FI_DEV_POWER_AVERAGE, 0)
	}
	if on[mPowerLimit] {
		add(nvml.FI_DEV_POWER_CURRENT_LIMIT, 0)
	}
	if on[mEnergy] {
		add(nvml.FI_DEV_TOTAL_ENERGY_CONSUMPTION, 0)
	}
	if on[mTemperature] {
		add(nvml.FI_DEV_MEMORY_TEMP, 0)
	}
	if on[mThrottleDuration] {
		for _, c := range throttleCauses {
			add(c.field, 0)
		}
	}
	if on[mPCIeReplays] {
		add(nvml.FI_DEV_PCIE_REPLAY_COUNTER, 0)
	}
	if on[mPCIeErrors] {
		for _, e := range pcieErrorFields {
			add(e.id, 0)
		}
	}
	if on[mC2CErrors] {
		for _, e := range c2cErrorFields {
			add(e.id, 0)
		}
	}
	if on[mPCIeThroughput] {
		add(nvml.FI_DEV_PCIE_COUNT_TX_BYTES, 0)
		add(nvml.FI_DEV_PCIE_COUNT_RX_BYTES, 0)
	}
	if on[mStatus] {
		add(nvml.FI_DEV_GET_GPU_RECOVERY_ACTION, 0)
	}
	if on[mErrors] || on[mStatus] {
		for _, id := range eccFields {
			add(id, 0)
		}
	}
	if on[mECC] {
		for _, l := range eccLocations {
			add(l.sbe, 0)
			add(l.dbe, 0)
		}
	}
	if len(links) > 0 {
		if on[mNVLinkErrors] {
			for _, id := range nvlinkErrorFields {
				add(id, 0)
			}
			add(nvlinkECCField, 0)
			for _, e := range nvlink5ErrorFields {
				for _, l := range d.nvlink.all {
					add(e.id, uint32(l.link))
				}
			}
		}
		if on[mNVLinkBER] {
			for _, e := range nvlinkBERFields {
				for _, l := range d.nvlink.all {
					add(e.id, uint32(l.link))
				}
			}
		}
		if on[mNVLinkIO] {
			// The aggregate over every link (scope UINT_MAX) where the
			// driver answers it; per active link until it is known to.
			agg := d.can(fieldsFn, nvlinkAllVariant[0]) && d.can(fieldsFn, nvlinkAllVariant[1])
			if agg {
				fvs = append(fvs,
					nvml.FieldValue{FieldId: nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ScopeId: nvlinkAllLinks},
					nvml.FieldValue{FieldId: nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, ScopeId: nvlinkAllLinks})
			}
			if !agg || !d.nvlink.aggregate {
				for _, l := range links {
					add(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, uint32(l))
					add(nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, uint32(l))
				}
			}
		}
	}
	return fvs
}

// readFields makes the scrape's one field-values call.
func (d *device) readFields(h nvml.Device, links []int) fieldRead {
	r := fieldRead{at: time.Now()}
	if !d.can(fieldsFn, "") {
		return r
	}
	fvs := d.wantFields(links)
	if len(fvs) == 0 {
		return r
	}
	if ret := h.GetFieldValues(fvs); !d.ok(fieldsFn, "", ret) {
		return r
	}
	r.ok = true
	r.vals = make(map[fieldKey]float64, len(fvs))
	r.stamps = make(map[fieldKey]int64, len(fvs))
	for _, fv := range fvs {
		if v, ok := d.fieldValue(scopedVariant(fv.FieldId, fv.ScopeId), fv); ok {
			k := fieldKey{fv.FieldId, fv.ScopeId}
			r.vals[k] = v
			r.stamps[k] = fv.Timestamp
		}
	}
	return r
}

// field is a field's value in this scrape's read.
func (r *fieldRead) field(id uint32) (float64, bool) {
	return r.scoped(id, 0)
}

// stamp is when the driver read a field (zero: unknown).
func (r *fieldRead) stamp(id uint32) time.Time {
	us := r.stamps[fieldKey{id, 0}]
	if us <= 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

func (r *fieldRead) scoped(id, scope uint32) (float64, bool) {
	if !r.ok {
		return 0, false
	}
	v, ok := r.vals[fieldKey{id, scope}]
	return v, ok
}

// readRecoveryAction takes the driver's GPU recovery action
// (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: none, GPU reset, node reboot, drain
// P2P, drain and reset) from the scrape's field values, for the verdict.
func (d *device) readRecoveryAction(f *fieldRead) {
	v, ok := f.field(nvml.FI_DEV_GET_GPU_RECOVERY_ACTION)
	d.health.action, d.health.haveAction = uint64(v), ok
}
