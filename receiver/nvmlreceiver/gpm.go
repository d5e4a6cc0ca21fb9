package nvmlreceiver

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// GPM (GPU Performance Monitoring, Hopper and later) derives SM, DRAM and
// pipe utilization from two samples: each scrape takes one and compares it
// with the previous scrape's.
var gpmMetrics = []struct {
	id   nvml.GpmMetricId
	m    int
	pipe string
}{
	{nvml.GPM_METRIC_SM_UTIL, mSMUtil, ""},
	{nvml.GPM_METRIC_SM_OCCUPANCY, mSMOccupancy, ""},
	{nvml.GPM_METRIC_DRAM_BW_UTIL, mDRAMUtil, ""},
	{nvml.GPM_METRIC_ANY_TENSOR_UTIL, mPipeUtil, "tensor"},
	{nvml.GPM_METRIC_FP64_UTIL, mPipeUtil, "fp64"},
	{nvml.GPM_METRIC_FP32_UTIL, mPipeUtil, "fp32"},
	{nvml.GPM_METRIC_FP16_UTIL, mPipeUtil, "fp16"},
	{nvml.GPM_METRIC_INTEGER_UTIL, mPipeUtil, "int"},
	// The tensor splits (nvml.h 6-9): double-precision FMA, half, double and
	// integer matrix multiply-accumulate.
	{nvml.GPM_METRIC_DFMA_TENSOR_UTIL, mPipeUtil, "tensor_dfma"},
	{nvml.GPM_METRIC_HMMA_TENSOR_UTIL, mPipeUtil, "tensor_hmma"},
	{nvml.GPM_METRIC_DMMA_TENSOR_UTIL, mPipeUtil, "tensor_dmma"},
	{nvml.GPM_METRIC_IMMA_TENSOR_UTIL, mPipeUtil, "tensor_imma"},
}

// gpmEngine is one video engine instance's GPM metric.
type gpmEngine struct {
	id     nvml.GpmMetricId
	engine string
}

// gpmEngines are the video engines: each kind's instances are averaged
// into one series (an H100 has 7 NVDEC, 7 NVJPG and 1 NVOFA; a board
// without an instance answers it NOT_SUPPORTED).
//
// The graphics engine (GRAPHICS_UTIL, nvml.h 1: time any compute or
// graphics context was active; DCGM's GR_ENGINE_ACTIVE, the usual MIG
// utilization) comes first, one instance.
var gpmEngines = func() []gpmEngine {
	out := []gpmEngine{{nvml.GPM_METRIC_GRAPHICS_UTIL, "graphics"}}
	for k := nvml.GpmMetricId(0); k < 8; k++ {
		out = append(out, gpmEngine{nvml.GPM_METRIC_NVDEC_0_UTIL + k, "nvdec"}, gpmEngine{nvml.GPM_METRIC_NVJPG_0_UTIL + k, "nvjpg"})
	}
	return append(out, gpmEngine{nvml.GPM_METRIC_NVOFA_0_UTIL, "nvofa"})
}()

// gpmPair is the previous and the current sample of one GPU or MIG instance.
type gpmPair struct {
	prev, cur nvml.GpmSample
	havePrev  bool
}

// gpmState is a GPU's GPM support and samples. The metrics request is large
// (hundreds of slots), so it is allocated once per GPU.
type gpmState struct {
	supported bool
	pair      gpmPair
	req       nvml.GpmMetricsGetType
}

func (d *device) gpmWanted() bool {
	on := &d.drv.enabled
	return on[mSMUtil] || on[mSMOccupancy] || on[mDRAMUtil] || on[mPipeUtil] || on[mEngineUtil]
}

func (d *device) newGPMPair(variant string) *gpmPair {
	if !d.can("nvmlGpmSampleAlloc", variant) {
		return nil
	}
	a, ret := d.drv.lib.GpmSampleAlloc()
	if !d.ok("nvmlGpmSampleAlloc", variant, ret) {
		return nil
	}
	b, ret := d.drv.lib.GpmSampleAlloc()
	if !d.ok("nvmlGpmSampleAlloc", variant, ret) {
		_ = a.Free()
		return nil
	}
	return &gpmPair{prev: a, cur: b}
}

func (p *gpmPair) free() {
	if p != nil {
		_ = p.prev.Free()
		_ = p.cur.Free()
	}
}

func (d *device) collectGPM() {
	if !d.gpmWanted() {
		return
	}
	h := d.handle()
	if d.gpm == nil {
		d.gpm = &gpmState{}
		if d.can("nvmlGpmQueryDeviceSupport", "") {
			sup, ret := d.drv.lib.GpmQueryDeviceSupport(h)
			if d.ok("nvmlGpmQueryDeviceSupport", "", ret) && sup.IsSupportedDevice != 0 {
				if p := d.newGPMPair(""); p != nil {
					d.gpm.supported = true
					d.gpm.pair = *p
				}
			}
		}
	}
	if !d.gpm.supported || !d.can("nvmlGpmSampleGet", "") {
		return
	}
	d.gpmMeasure(&d.gpm.pair, d.ent, "", func(s nvml.GpmSample) nvml.Return { return d.drv.lib.GpmSampleGet(h, s) })
}

// gpmMeasure takes a sample and, with the previous one, emits the GPM
// metrics for ent.
func (d *device) gpmMeasure(p *gpmPair, ent *entity, variant string, sample func(nvml.GpmSample) nvml.Return) {
	fn := "nvmlGpmSampleGet"
	if variant != "" {
		fn = "nvmlGpmMigSampleGet"
	}
	if !d.ok(fn, variant, sample(p.cur)) {
		p.havePrev = false
		return
	}
	if p.havePrev && d.can("nvmlGpmMetricsGet", variant) {
		req := &d.gpm.req
		req.Version = nvml.GPM_METRICS_GET_VERSION
		n := len(gpmMetrics)
		engines := d.drv.enabled[mEngineUtil]
		if engines {
			n += len(gpmEngines)
		}
		req.NumMetrics = uint32(n)
		req.Sample1, req.Sample2 = p.prev, p.cur
		for i, g := range gpmMetrics {
			req.Metrics[i] = nvml.GpmMetric{MetricId: uint32(g.id)}
		}
		if engines {
			for i, e := range gpmEngines {
				req.Metrics[len(gpmMetrics)+i] = nvml.GpmMetric{MetricId: uint32(e.id)}
			}
		}
		if d.ok("nvmlGpmMetricsGet", variant, d.drv.lib.GpmMetricsGet(req)) {
			if engines {
				sum, count := map[string]float64{}, map[string]int{}
				var order []string
				for i, e := range gpmEngines {
					r := req.Metrics[len(gpmMetrics)+i]
					if nvml.Return(r.NvmlReturn) != nvml.SUCCESS {
						continue
					}
					if count[e.engine] == 0 {
						order = append(order, e.engine)
					}
					sum[e.engine] += r.Value
					count[e.engine]++
				}
				for _, e := range order {
					d.emit(mEngineUtil, ent, sum[e]/float64(count[e])/100, 0, str("nvidia.gpu.engine", e))
				}
			}
			for i, g := range gpmMetrics {
				r := req.Metrics[i]
				if nvml.Return(r.NvmlReturn) != nvml.SUCCESS {
					continue
				}
				if g.pipe != "" {
					d.emit(g.m, ent, r.Value/100, 0, str("nvidia.gpu.pipe", g.pipe))
				} else {
					d.emit(g.m, ent, r.Value/100, 0)
				}
			}
		}
	}
	p.prev, p.cur = p.cur, p.prev
	p.havePrev = true
}
