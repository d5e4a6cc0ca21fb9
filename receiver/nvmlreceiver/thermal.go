package nvmlreceiver

import "github.com/NVIDIA/go-nvml/pkg/nvml"

func (d *device) collectThermal(f *fieldRead) {
	if !d.drv.enabled[mTemperature] {
		return
	}
	h := d.handle()
	// The versioned call first (CUDA 13's nvml.h deprecates the old one and
	// announces its removal), the old one on drivers without it.
	if t, ok := read(d, "nvmlDeviceGetTemperatureV", "", func() (nvml.Temperature, nvml.Return) {
		return h.GetTemperatureV().V1()
	}); ok {
		d.emit(mTemperature, d.ent, float64(t.Temperature), 0, str("hw.sensor_location", "gpu"))
	} else if c, ok := read(d, "nvmlDeviceGetTemperature", "", func() (uint32, nvml.Return) {
		return h.GetTemperature(nvml.TEMPERATURE_GPU)
	}); ok {
		d.emit(mTemperature, d.ent, float64(c), 0, str("hw.sensor_location", "gpu"))
	}
	if c, ok := f.field(nvml.FI_DEV_MEMORY_TEMP); ok {
		d.emit(mTemperature, d.ent, c, 0, str("hw.sensor_location", "memory"))
	}
}
