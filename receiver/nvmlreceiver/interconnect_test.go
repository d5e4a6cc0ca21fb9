package nvmlreceiver

import (
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"
)

// answerScopedFields makes GPU i's field-values call answer vals by field
// and scope (NOT_SUPPORTED for the others) and records each request's
// field ids.
func answerScopedFields(f *fleet, i int, vals func(id, scope uint32) (uint64, bool)) *[][]uint32 {
	var asked [][]uint32
	f.device(i).GetFieldValuesFunc = func(fvs []nvml.FieldValue) nvml.Return {
		var ids []uint32
		for k := range fvs {
			fv := &fvs[k]
			ids = append(ids, fv.FieldId)
			if x, ok := vals(fv.FieldId, fv.ScopeId); ok {
				fv.NvmlReturn = uint32(nvml.SUCCESS)
				fv.ValueType, fv.Value = uint32(nvml.VALUE_TYPE_UNSIGNED_LONG_LONG), u64(x)
			} else {
				fv.NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
			}
		}
		asked = append(asked, ids)
		return nvml.SUCCESS
	}
	return &asked
}

// interconnectFields is every field id of the interconnect metrics.
func interconnectFields() map[uint32]bool {
	out := map[uint32]bool{nvlinkECCField: true}
	for _, e := range pcieErrorFields {
		out[e.id] = true
	}
	for _, e := range c2cErrorFields {
		out[e.id] = true
	}
	for _, e := range nvlink5ErrorFields {
		out[e.id] = true
	}
	for _, e := range nvlinkBERFields {
		out[e.id] = true
	}
	return out
}

// PCIe, NVLink (ECC, NVLink5 per-link counters and BER) and C2C health ride
// in the one field-values request: a GPU whose driver answers them reports
// them; one that answers NOT_SUPPORTED reports none and is not asked again
// within refused_retry_interval.
func TestInterconnectHealthFromFields(t *testing.T) {
	f := newH100Fleet()
	// GPU 0 answers everything (an NVLink5 board with a C2C link).
	asked0 := answerScopedFields(f, 0, func(id, scope uint32) (uint64, bool) {
		switch id {
		case nvml.FI_DEV_PCIE_COUNT_CORRECTABLE_ERRORS:
			return 7, true
		case nvml.FI_DEV_PCIE_COUNT_NAKS_SENT:
			return 3, true
		case nvml.FI_DEV_PCIE_REPLAY_ROLLOVER_COUNTER, nvml.FI_DEV_PCIE_L0_TO_RECOVERY_COUNTER,
			nvml.FI_DEV_PCIE_COUNT_FATAL_ERROR:
			return 0, true
		case nvlinkECCField:
			return 5, true
		case nvml.FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS:
			return uint64(scope + 1), true // 1..18 over the 18 links
		case nvml.FI_DEV_NVLINK_COUNT_LINK_RECOVERY_FAILED_EVENTS:
			return 0, true
		case nvml.FI_DEV_NVLINK_COUNT_EFFECTIVE_BER:
			return 1<<8 | 15, true // 1e-15
		case nvml.FI_DEV_NVLINK_COUNT_SYMBOL_BER:
			if scope == 4 {
				return 3<<8 | 6, true // 3e-6 on link 4
			}
			return 3<<8 | 9, true
		case nvml.FI_DEV_C2C_LINK_ERROR_INTR:
			return 1, true
		case nvml.FI_DEV_C2C_LINK_ERROR_REPLAY:
			return 2, true
		}
		return 0, false
	})
	// GPU 1 answers none of them (its power only).
	asked1 := answerScopedFields(f, 1, func(id, _ uint32) (uint64, bool) { return 300_000, id == nvml.FI_DEV_POWER_INSTANT })
	h := startHarness(t, f, allMetricsConfig())
	h.scrape(t)
	md := h.scrape(t)

	one := func(name string, gpu int, attrs map[string]any) float64 {
		t.Helper()
		want := map[string]any{"hw.id": fixedUUID(gpu)}
		for k, v := range attrs {
			want[k] = v
		}
		dps := points(md, name, want)
		require.Len(t, dps, 1, "%s %v", name, attrs)
		return value(dps[0])
	}
	require.Equal(t, 7.0, one("nvidia.gpu.pcie.errors", 0, map[string]any{"error.type": "correctable"}))
	require.Equal(t, 3.0, one("nvidia.gpu.pcie.errors", 0, map[string]any{"error.type": "nak_sent"}))
	require.Equal(t, 0.0, one("nvidia.gpu.pcie.errors", 0, map[string]any{"error.type": "fatal"}))
	require.Equal(t, 0.0, one("nvidia.gpu.pcie.errors", 0, map[string]any{"error.type": "recovery"}))
	require.Empty(t, points(md, "nvidia.gpu.pcie.errors", map[string]any{"hw.id": fixedUUID(0), "error.type": "bad_tlp"}),
		"a field the driver does not answer has no point")
	require.Equal(t, 5.0, one("nvidia.gpu.nvlink.errors", 0, map[string]any{"error.type": "ecc_data"}))
	require.Equal(t, float64(18*19/2), one("nvidia.gpu.nvlink.errors", 0, map[string]any{"error.type": "symbol"}),
		"NVLink5 counters summed over every link")
	require.Equal(t, 0.0, one("nvidia.gpu.nvlink.errors", 0, map[string]any{"error.type": "link_recovery_failed"}))
	require.InDelta(t, 1e-15, one("nvidia.gpu.nvlink.ber", 0, map[string]any{"error.type": "effective", "nvidia.gpu.nvlink.link": int64(0)}), 1e-24)
	require.InDelta(t, 3e-6, one("nvidia.gpu.nvlink.ber", 0, map[string]any{"error.type": "symbol", "nvidia.gpu.nvlink.link": int64(4)}), 1e-15)
	require.Len(t, points(md, "nvidia.gpu.nvlink.ber", map[string]any{"hw.id": fixedUUID(0)}), 2*18, "two rates per link")
	require.Equal(t, 1.0, one("nvidia.gpu.c2c.errors", 0, map[string]any{"error.type": "crc"}))
	require.Equal(t, 2.0, one("nvidia.gpu.c2c.errors", 0, map[string]any{"error.type": "replay"}))
	// The crc_flit..recovery totals still come from GetNvLinkErrorCounter.
	require.Equal(t, 2.0, one("nvidia.gpu.nvlink.errors", 0, map[string]any{"error.type": "replay"}))

	for _, name := range []string{"nvidia.gpu.pcie.errors", "nvidia.gpu.nvlink.ber", "nvidia.gpu.c2c.errors"} {
		require.Empty(t, points(md, name, map[string]any{"hw.id": fixedUUID(1)}), name)
	}
	require.Empty(t, points(md, "nvidia.gpu.nvlink.errors", map[string]any{"hw.id": fixedUUID(1), "error.type": "ecc_data"}))

	// One request per scrape each (after the first scrape's NVLink
	// listing); GPU 1 is not asked the refused fields again, GPU 0 still is.
	require.Len(t, *asked0, 3)
	require.Len(t, *asked1, 3)
	want := interconnectFields()
	count := func(ids []uint32) (n int) {
		for _, id := range ids {
			if want[id] {
				n++
			}
		}
		return n
	}
	require.Positive(t, count((*asked1)[1]), "asked once")
	require.Zero(t, count((*asked1)[2]), "NOT_SUPPORTED remembered")
	require.Positive(t, count((*asked0)[2]))
}

// Off, the interconnect metrics ask nothing.
func TestInterconnectHealthOffAsksNothing(t *testing.T) {
	f := newH100Fleet()
	asked := answerScopedFields(f, 0, func(uint32, uint32) (uint64, bool) { return 0, true })
	cfg := allMetricsConfig()
	for _, m := range []string{"nvidia.gpu.pcie.errors", "nvidia.gpu.nvlink.ber", "nvidia.gpu.c2c.errors", "nvidia.gpu.nvlink.errors"} {
		cfg.Metrics[m] = MetricConfig{Enabled: false}
	}
	h := startHarness(t, f, cfg)
	h.scrape(t)
	for _, ids := range *asked {
		for _, id := range ids {
			require.False(t, interconnectFields()[id], "field %d asked", id)
		}
	}
}

// GPM: the graphics engine (DCGM's GR_ENGINE_ACTIVE) and the tensor pipe
// splits come in the one metrics request per GPU and per MIG GPU instance.
func TestGPMGraphicsAndTensorSplits(t *testing.T) {
	f := newH100Fleet()
	f.enableMIG(0)
	var mu sync.Mutex // the GPUs' workers call it in parallel
	var gets int
	var ids map[uint32]bool
	f.GpmMetricsGetFunc = func(req *nvml.GpmMetricsGetType) nvml.Return {
		mu.Lock()
		defer mu.Unlock()
		gets++
		ids = map[uint32]bool{}
		for i := uint32(0); i < req.NumMetrics; i++ {
			ids[req.Metrics[i].MetricId] = true
			req.Metrics[i].NvmlReturn = uint32(nvml.SUCCESS)
			req.Metrics[i].Value = 10 * float64(req.Metrics[i].MetricId)
			if req.Metrics[i].MetricId == uint32(nvml.GPM_METRIC_IMMA_TENSOR_UTIL) {
				req.Metrics[i].NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
			}
		}
		return nvml.SUCCESS
	}
	h := startHarness(t, f, allMetricsConfig())
	h.scrape(t)
	gets = 0
	md := h.scrape(t)
	for _, id := range []nvml.GpmMetricId{nvml.GPM_METRIC_GRAPHICS_UTIL, nvml.GPM_METRIC_DFMA_TENSOR_UTIL,
		nvml.GPM_METRIC_HMMA_TENSOR_UTIL, nvml.GPM_METRIC_DMMA_TENSOR_UTIL, nvml.GPM_METRIC_IMMA_TENSOR_UTIL} {
		require.True(t, ids[uint32(id)], "metric %d in the request", id)
	}
	gpus := len(f.Devices)
	migGIs := len(points(md, "nvidia.gpu.engine.utilization", map[string]any{"hw.parent": fixedUUID(0), "nvidia.gpu.engine": "graphics"}))
	require.Positive(t, migGIs, "graphics engine per MIG GPU instance")
	require.Equal(t, gpus+migGIs, gets, "one GPM request per GPU and per MIG GPU instance")
	g := points(md, "nvidia.gpu.engine.utilization", map[string]any{"hw.id": fixedUUID(1), "nvidia.gpu.engine": "graphics"})
	require.Len(t, g, 1)
	require.InDelta(t, 0.1, value(g[0]), 1e-9, "GRAPHICS_UTIL (1) = 10%")
	hmma := points(md, "nvidia.gpu.pipe.utilization", map[string]any{"hw.id": fixedUUID(1), "nvidia.gpu.pipe": "tensor_hmma"})
	require.Len(t, hmma, 1)
	require.InDelta(t, 0.7, value(hmma[0]), 1e-9, "HMMA_TENSOR_UTIL (7) = 70%")
	require.Empty(t, points(md, "nvidia.gpu.pipe.utilization", map[string]any{"nvidia.gpu.pipe": "tensor_imma"}), "NOT_SUPPORTED: no point")
}

// The NVSwitch fabric state, read every rediscover_interval: 1 for the
// current state, a failed probe's status as error.type; a GPU outside a
// fabric (NOT_SUPPORTED) has no series and is not asked again.
func TestFabricState(t *testing.T) {
	f := newH100Fleet()
	var mu sync.Mutex
	asked := map[nvml.Device]int{}
	answers := map[nvml.Device]struct {
		state       uint8
		status, ret nvml.Return
	}{
		f.Devices[0]: {nvml.GPU_FABRIC_STATE_COMPLETED, nvml.SUCCESS, nvml.SUCCESS},
		f.Devices[1]: {nvml.GPU_FABRIC_STATE_IN_PROGRESS, nvml.SUCCESS, nvml.SUCCESS},
		f.Devices[2]: {nvml.GPU_FABRIC_STATE_COMPLETED, nvml.ERROR_UNKNOWN, nvml.SUCCESS},
	}
	prev := gpuFabricInfo
	t.Cleanup(func() { gpuFabricInfo = prev })
	gpuFabricInfo = func(h nvml.Device) (uint8, nvml.Return, nvml.Return) {
		mu.Lock()
		defer mu.Unlock()
		asked[h]++
		if a, ok := answers[h]; ok {
			return a.state, a.status, a.ret
		}
		return 0, 0, nvml.ERROR_NOT_SUPPORTED
	}
	cfg := allMetricsConfig()
	cfg.RediscoverInterval = time.Nanosecond // read every scrape: refusals still hold
	h := startHarness(t, f, cfg)
	h.scrape(t)
	md := h.scrape(t)
	state := func(gpu int, s string) []float64 {
		var out []float64
		for _, dp := range points(md, "nvidia.gpu.fabric.state", map[string]any{"hw.id": fixedUUID(gpu), "nvidia.gpu.fabric.state": s}) {
			out = append(out, value(dp))
		}
		return out
	}
	require.Equal(t, []float64{1}, state(0, "completed"))
	require.Equal(t, []float64{0}, state(0, "in_progress"))
	require.Equal(t, []float64{0}, state(0, "not_started"))
	require.Empty(t, state(0, "not_supported"))
	require.Equal(t, []float64{1}, state(1, "in_progress"))
	failed := points(md, "nvidia.gpu.fabric.state", map[string]any{"hw.id": fixedUUID(2), "nvidia.gpu.fabric.state": "completed"})
	require.Len(t, failed, 1)
	require.Equal(t, 1.0, value(failed[0]))
	require.Equal(t, "ERROR_UNKNOWN", failed[0].Attributes().AsRaw()["error.type"])
	require.Empty(t, points(md, "nvidia.gpu.fabric.state", map[string]any{"hw.id": fixedUUID(3)}), "outside a fabric: no series")
	require.Equal(t, 1, asked[f.Devices[3]], "NOT_SUPPORTED remembered")
	require.Equal(t, 2, asked[f.Devices[0]])
}
