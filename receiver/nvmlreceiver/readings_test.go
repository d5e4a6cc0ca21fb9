package nvmlreceiver

import (
	"math"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"
)

// answerFields makes GPU i's field-values call answer the fields in vals
// (64-bit), NOT_SUPPORTED for the others, and counts the requests.
func answerFields(f *fleet, i int, vals func() map[uint32]uint64) *int {
	calls := new(int)
	f.device(i).GetFieldValuesFunc = func(fvs []nvml.FieldValue) nvml.Return {
		*calls++
		v := vals()
		for k := range fvs {
			fv := &fvs[k]
			if x, ok := v[fv.FieldId]; ok {
				fv.NvmlReturn = uint32(nvml.SUCCESS)
				fv.ValueType, fv.Value = uint32(nvml.VALUE_TYPE_UNSIGNED_LONG_LONG), u64(x)
			} else {
				fv.NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
			}
		}
		return nvml.SUCCESS
	}
	return calls
}

// The thermal policy is field 269 (nvml.h's translation of
// NVML_PERF_POLICY_THERMAL), not 75; HW thermal (270) and power brake (271)
// are read; TOTAL_APP_CLOCKS (80, deprecated) is not reported; all in the
// one field-values request, in nanoseconds.
func TestThrottleDurationsFromClockEventFields(t *testing.T) {
	f := newH100Fleet()
	calls := answerFields(f, 0, func() map[uint32]uint64 {
		return map[uint32]uint64{
			nvml.FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP:            1_000_000_000,
			nvml.FI_DEV_PERF_POLICY_THERMAL:                         7_000_000_000, // the old policy field: not read
			nvml.FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN:       2_000_000_000,
			nvml.FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN:       3_000_000_000,
			nvml.FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN: 4_500_000_000,
			nvml.FI_DEV_PERF_POLICY_TOTAL_APP_CLOCKS:                9_000_000_000,
		}
	})
	var violations int
	f.device(0).GetViolationStatusFunc = func(p nvml.PerfPolicyType) (nvml.ViolationTime, nvml.Return) {
		violations++
		return nvml.ViolationTime{ViolationTime: 11_000_000_000}, nvml.SUCCESS
	}
	h := startHarness(t, f, allMetricsConfig())
	h.scrape(t) // the first also lists the NVLinks through field values
	before := *calls
	violations = 0
	md := h.scrape(t)
	require.Equal(t, 1, *calls-before, "one field-values request per scrape")
	one := func(policy string) float64 {
		dps := points(md, "nvidia.gpu.clock.throttle.duration", map[string]any{"hw.id": fixedUUID(0), "nvidia.gpu.violation.policy": policy})
		require.Len(t, dps, 1, policy)
		return value(dps[0])
	}
	require.InDelta(t, 1.0, one("power"), 1e-9)
	require.InDelta(t, 2.0, one("thermal"), 1e-9, "thermal is field 269, not 75")
	require.InDelta(t, 3.0, one("hw_thermal_slowdown"), 1e-9)
	require.InDelta(t, 4.5, one("hw_power_brake_slowdown"), 1e-9)
	require.InDelta(t, 11.0, one("sync_boost"), 1e-9, "a policy without its field falls back to GetViolationStatus")
	require.Empty(t, points(md, "nvidia.gpu.clock.throttle.duration", map[string]any{"nvidia.gpu.violation.policy": "app_clocks"}),
		"TOTAL_APP_CLOCKS is deprecated: not reported")
	// Fallback (second scrape) for sync_boost, board_limit, low_utilization, reliability, base_clocks only.
	require.Equal(t, 5, violations)
}

// hw.power is the instantaneous draw where the driver answers it.
func TestPowerInstantBeforeAverage(t *testing.T) {
	f := newH100Fleet()
	instant := true
	answerFields(f, 0, func() map[uint32]uint64 {
		m := map[uint32]uint64{nvml.FI_DEV_POWER_AVERAGE: 300_000}
		if instant {
			m[nvml.FI_DEV_POWER_INSTANT] = 512_000
		}
		return m
	})
	h := startHarness(t, f, testConfig())
	power := func() float64 {
		dps := points(h.scrape(t), "hw.power", map[string]any{"hw.id": fixedUUID(0)})
		require.Len(t, dps, 1)
		return value(dps[0])
	}
	require.InDelta(t, 512.0, power(), 1e-9)
	instant = false
	f2 := newH100Fleet()
	answerFields(f2, 0, func() map[uint32]uint64 { return map[uint32]uint64{nvml.FI_DEV_POWER_AVERAGE: 300_000} })
	h2 := startHarness(t, f2, testConfig())
	dps := points(h2.scrape(t), "hw.power", map[string]any{"hw.id": fixedUUID(0)})
	require.Len(t, dps, 1)
	require.InDelta(t, 300.0, value(dps[0]), 1e-9, "the average where the driver has no instant power")
}

// A 32-bit PCIe byte counter that wraps gives the interval's traffic, not a
// skipped interval; a 64-bit one that goes down was reset: skipped.
func TestPCIeByteCounterWrap(t *testing.T) {
	f := newH100Fleet()
	tx, rx := uint64(math.MaxUint32-1000), uint64(math.MaxUint32-500)
	answerFields(f, 0, func() map[uint32]uint64 {
		return map[uint32]uint64{nvml.FI_DEV_PCIE_COUNT_TX_BYTES: tx, nvml.FI_DEV_PCIE_COUNT_RX_BYTES: rx}
	})
	h := startHarness(t, f, testConfig())
	rate := func(dir string) []float64 {
		var out []float64
		for _, dp := range points(h.scrape(t), "nvidia.gpu.pcie.throughput", map[string]any{"hw.id": fixedUUID(0), "network.io.direction": dir}) {
			out = append(out, value(dp))
		}
		return out
	}
	require.Empty(t, rate("transmit"), "the first read has nothing to compare with")
	tx, rx = 3000, 1500 // 4001 and 2001 bytes on, over the 32-bit wrap
	md := h.scrape(t)
	txp := points(md, "nvidia.gpu.pcie.throughput", map[string]any{"hw.id": fixedUUID(0), "network.io.direction": "transmit"})
	rxp := points(md, "nvidia.gpu.pcie.throughput", map[string]any{"hw.id": fixedUUID(0), "network.io.direction": "receive"})
	require.Len(t, txp, 1, "a wrapped 32-bit counter still gives a rate")
	require.Len(t, rxp, 1)
	require.Greater(t, value(txp[0]), 0.0)
	require.InDelta(t, 4001.0/2001.0, value(txp[0])/value(rxp[0]), 1e-9, "each direction's bytes over the wrap")

	// A 64-bit counter going down is a reset, not a wrap.
	tx, rx = 1<<40, 1<<40
	h.scrape(t)
	tx, rx = 100, 100
	require.Empty(t, rate("transmit"), "a counter above 32 bits that goes down was reset")
	require.Equal(t, uint64(4001), must(counterDelta(math.MaxUint32-1000, 3000)))
}

func must(v uint64, ok bool) uint64 {
	if !ok {
		panic("not ok")
	}
	return v
}

// nvlinkGPU is GPU 0 with 4 NVLinks whose per-link traffic counters (KiB)
// the test moves; link 2 can be down. aggregate: the driver answers the
// all-links scope (UINT_MAX).
type nvlinkGPU struct {
	kib       [4]uint64
	down2     bool
	aggregate bool
	perLink   int // per-link traffic fields asked
}

func (g *nvlinkGPU) install(f *fleet) {
	d := f.device(0)
	d.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
		if link >= 4 {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		if link == 2 && g.down2 {
			return nvml.FEATURE_DISABLED, nvml.SUCCESS
		}
		return nvml.FEATURE_ENABLED, nvml.SUCCESS
	}
	d.GetFieldValuesFunc = func(fvs []nvml.FieldValue) nvml.Return {
		for k := range fvs {
			fv := &fvs[k]
			fv.NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
			if fv.FieldId != nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX && fv.FieldId != nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX {
				continue
			}
			var v uint64
			switch {
			case fv.ScopeId == nvlinkAllLinks:
				if !g.aggregate {
					continue
				}
				for _, x := range g.kib {
					v += x
				}
			case fv.ScopeId < 4:
				g.perLink++
				v = g.kib[fv.ScopeId]
			default:
				continue
			}
			fv.NvmlReturn = uint32(nvml.SUCCESS)
			fv.ValueType, fv.Value = uint32(nvml.VALUE_TYPE_UNSIGNED_LONG_LONG), u64(v)
		}
		return nvml.SUCCESS
	}
}

func (g *nvlinkGPU) step(kib uint64, links ...int) {
	for _, l := range links {
		g.kib[l] += kib
	}
}

func nvlinkIO(t *testing.T, h *harness) (float64, uint64) {
	t.Helper()
	time.Sleep(5 * time.Millisecond) // past rediscover_interval: the links are listed again
	dps := points(h.scrape(t), "hw.gpu.io", map[string]any{"hw.id": fixedUUID(0), "network.io.direction": "transmit"})
	require.Len(t, dps, 1)
	return value(dps[0]), uint64(dps[0].StartTimestamp())
}

// Per link (no aggregate): a link that goes down does not make the sum go
// back, and one that comes back with its lifetime counter does not add it
// as one interval's traffic.
func TestNVLinkIOLinkComingBack(t *testing.T) {
	f := newH100Fleet()
	g := &nvlinkGPU{kib: [4]uint64{1000, 1000, 1000, 1000}}
	g.install(f)
	cfg := testConfig()
	cfg.RediscoverInterval = time.Millisecond // the links are listed again every scrape
	h := startHarness(t, f, cfg)
	v, start := nvlinkIO(t, h)
	require.InDelta(t, 4000*1024, v, 0, "the first point: the driver's totals")
	g.down2 = true
	g.step(10, 0, 1, 3)
	v, s := nvlinkIO(t, h)
	require.InDelta(t, 4030*1024, v, 0, "a link going down does not take its bytes back")
	require.Equal(t, start, s, "nor starts a new series")
	g.down2 = false
	g.kib[2] += 500_000 // back, with a counter the receiver never saw grow
	g.step(10, 0, 1, 3)
	v, s = nvlinkIO(t, h)
	require.InDelta(t, 4060*1024, v, 0, "the link that came back sets its baseline: its lifetime is not this interval's traffic")
	require.Equal(t, start, s)
	g.step(10, 0, 1, 2, 3)
	v, _ = nvlinkIO(t, h)
	require.InDelta(t, 4100*1024, v, 0, "and counts from the next scrape")
}

// Where the driver answers the all-links scope, that one counter is
// reported and the per-link fields are no longer asked.
func TestNVLinkIOAggregateScope(t *testing.T) {
	f := newH100Fleet()
	g := &nvlinkGPU{kib: [4]uint64{1000, 1000, 1000, 1000}, aggregate: true}
	g.install(f)
	h := startHarness(t, f, testConfig())
	v, start := nvlinkIO(t, h)
	require.InDelta(t, 4000*1024, v, 0)
	g.perLink = 0
	g.step(10, 0, 1, 2, 3)
	v, s := nvlinkIO(t, h)
	require.InDelta(t, 4040*1024, v, 0)
	require.Equal(t, start, s)
	require.Zero(t, g.perLink, "per-link fields are not asked once the aggregate answers")
}

// hw.name is nvidia<minor> (the GPU's /dev/nvidia<minor>), not its NVML
// index; nvidia<index> where the driver has no minor number.
func TestHWNameIsTheMinorNumber(t *testing.T) {
	f := newH100Fleet()
	f.device(0).Minor, f.device(1).Minor = 5, 0
	md := startHarness(t, f, testConfig()).scrape(t)
	name := func(i int) any {
		dps := points(md, "nvidia.gpu.info", map[string]any{"hw.id": fixedUUID(i)})
		require.Len(t, dps, 1)
		return mustAttr(t, dps[0], "hw.name")
	}
	require.Equal(t, "nvidia5", name(0))
	require.Equal(t, "nvidia0", name(1))
	require.Equal(t, "nvidia2", name(2), "minor = index on the others")

	f = newH100Fleet()
	f.device(0).Minor = 5
	f.lacks("nvmlDeviceGetMinorNumber")
	md = startHarness(t, f, testConfig()).scrape(t)
	require.Len(t, points(md, "nvidia.gpu.info", map[string]any{"hw.id": fixedUUID(0), "hw.name": "nvidia0"}), 1, "the index without the function")
}
