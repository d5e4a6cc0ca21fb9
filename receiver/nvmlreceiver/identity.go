package nvmlreceiver

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
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
	if v, ok := read(d, "nvmlDeviceGetName", "", h.GetName); ok {
		info = append(info, str("hw.model", v))
	}
	if v, ok := read(d, "nvmlDeviceGetSerial", "", h.GetSerial); ok {
		info = append(info, str("hw.serial_number", v))
	}
	if d.drv.driverVersion != "" {
		info = append(info, str("hw.driver_version", d.drv.driverVersion))
	}
	if v, ok := read(d, "nvmlDeviceGetVbiosVersion", "", h.GetVbiosVersion); ok {
		info = append(info, str("hw.firmware_version", v))
	}
	if v, ok := read(d, "nvmlDeviceGetPciInfo", "", h.GetPciInfo); ok {
		info = append(info, str("nvidia.gpu.pci_bus_id", pciBusID(v)))
	}
	mode := "unknown"
	if v, ok := read(d, "nvmlDeviceGetVirtualizationMode", "", h.GetVirtualizationMode); ok {
		if name, known := virtualizationModes[v]; known {
			mode = name
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
