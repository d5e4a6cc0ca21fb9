package nvmlreceiver

import (
	"math"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

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
			rates, ratesOK = read(d, "nvmlDeviceGetUtilizationRates", "", h.GetUtilizationRates)
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
			} else if v, ok := read(d, e.fn, "", func() (uint32, nvml.Return) {
				v, _, ret := e.get()
				return v, ret
			}); ok {
				d.emit(mUtilization, d.ent, float64(v)/100, 0, str("hw.gpu.task", e.task))
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

// utilCursors are where utilization sampling left off, per sample type:
// each scrape averages the samples newer than the last one it saw.
type utilCursors struct {
	lastSeen map[nvml.SamplingType]uint64
}

func newUtilCursors() utilCursors {
	return utilCursors{lastSeen: map[nvml.SamplingType]uint64{}}
}
