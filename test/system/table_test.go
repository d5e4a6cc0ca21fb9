//go:build system

package system

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// constFleet is one of each modelled GPU with every signal fixed, so every
// metric has one exact expected value.
const constFleet = `gpus = 4
gpu.0.model = h100
gpu.1.model = h200
gpu.2.model = a100
gpu.3.model = l40s
signal.utilization = const 50
signal.memory_bandwidth = const 30
signal.memory_used = const 10240
signal.power = const 300
signal.temperature = const 60
signal.memory_temperature = const 70
signal.energy = const 123456789
gpu.2.mig = 1g.10gb,3g.40gb
gpu.0.process = 4242 2048
gpu.3.pcie_link = 3 8
gpu.3.fans = 2 35
gpu.1.signal.encoder = const 20
gpu.1.signal.decoder = const 10
`

const mib = 1 << 20

type model struct {
	name, hwName                  string
	memMiB, limitW                float64
	smMHz, memMHz, videoMHz       float64
	nvlink, gpm, hbm              bool
	pcieGen, pcieWidth            float64 // the link's maximum
	curGen, curWidth              float64 // as trained (constFleet degrades the L40S's)
	shutdownC, slowdownC, gpuMaxC float64
}

var fleetModels = []model{
	{"NVIDIA H100 80GB HBM3", "nvidia0", 81559, 700, 1980, 2619, 1755, true, true, true, 5, 16, 5, 16, 92, 89, 87},
	{"NVIDIA H200", "nvidia1", 143771, 700, 1980, 3201, 1755, true, true, true, 5, 16, 5, 16, 92, 89, 87},
	{"NVIDIA A100-SXM4-80GB", "nvidia2", 81920, 400, 1410, 1593, 1275, true, false, true, 4, 16, 4, 16, 92, 89, 85},
	{"NVIDIA L40S", "nvidia3", 46068, 350, 2520, 9001, 1965, false, false, false, 4, 16, 3, 8, 98, 95, 88},
}

func TestEveryMetricThroughTheRealBinary(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), constFleet)
	md := c.waitBatch(t, 30*time.Second, "GPM metrics (second scrape) are present", func(md pmetric.Metrics) bool {
		return has(md, "nvidia.gpu.sm.utilization", gpu("nvidia0"))
	})

	exact := func(name string, want float64, at map[string]any) {
		t.Helper()
		pts := find(md, name, at)
		require.Len(t, pts, 1, "%s %v", name, at)
		require.InDelta(t, want, value(pts[0]), 1e-6, "%s %v", name, at)
	}
	near := func(name string, want float64, at map[string]any) {
		t.Helper()
		pts := find(md, name, at)
		require.Len(t, pts, 1, "%s %v", name, at)
		require.InEpsilon(t, want, value(pts[0]), 1e-5, "%s %v", name, at)
	}
	absent := func(name string, at map[string]any) {
		t.Helper()
		require.Empty(t, find(md, name, at), "%s %v must not be reported", name, at)
	}

	for i, m := range fleetModels {
		g := m.hwName
		if g == "nvidia2" {
			// MIG is on: NVML has no utilization, samples or encoder and
			// decoder readings for the parent; the instances have GPM.
			absent("hw.gpu.utilization", gpu(g))
			absent("nvidia.gpu.memory.bandwidth.utilization", gpu(g))
		} else {
			exact("hw.gpu.utilization", 0.5, gpu(g, "hw.gpu.task", "general"))
			enc, dec := 0.0, 0.0
			if g == "nvidia1" {
				enc, dec = 0.2, 0.1
			}
			exact("hw.gpu.utilization", enc, gpu(g, "hw.gpu.task", "encoder"))
			exact("hw.gpu.utilization", dec, gpu(g, "hw.gpu.task", "decoder"))
			exact("nvidia.gpu.memory.bandwidth.utilization", 0.3, gpu(g))
		}
		exact("hw.gpu.memory.usage", 10240*mib, gpu(g))
		exact("hw.gpu.memory.limit", m.memMiB*mib, gpu(g))
		exact("hw.gpu.memory.utilization", 10240/m.memMiB, gpu(g))
		exact("nvidia.gpu.memory.reserved", 512*mib, gpu(g))
		exact("hw.power", 300, gpu(g, "hw.type", "gpu"))
		exact("nvidia.gpu.power.limit", m.limitW, gpu(g))
		exact("hw.energy", 123456.789, gpu(g, "hw.type", "gpu"))
		exact("hw.temperature", 60, gpu(g, "hw.sensor_location", "gpu"))
		if m.hbm {
			exact("hw.temperature", 70, gpu(g, "hw.sensor_location", "memory"))
		} else {
			absent("hw.temperature", gpu(g, "hw.sensor_location", "memory"))
		}
		exact("nvidia.gpu.clock.frequency", m.smMHz*1e6, gpu(g, "nvidia.gpu.clock", "sm"))
		exact("nvidia.gpu.clock.frequency", m.smMHz*1e6, gpu(g, "nvidia.gpu.clock", "graphics"))
		exact("nvidia.gpu.clock.frequency", m.memMHz*1e6, gpu(g, "nvidia.gpu.clock", "memory"))
		exact("nvidia.gpu.clock.frequency", m.videoMHz*1e6, gpu(g, "nvidia.gpu.clock", "video"))
		exact("nvidia.gpu.clock.frequency.max", m.smMHz*1e6, gpu(g, "nvidia.gpu.clock", "sm"))
		exact("nvidia.gpu.clock.frequency.max", m.memMHz*1e6, gpu(g, "nvidia.gpu.clock", "memory"))
		exact("hw.temperature.limit", m.shutdownC, gpu(g, "hw.limit_type", "high.critical"))
		exact("hw.temperature.limit", m.slowdownC, gpu(g, "hw.limit_type", "throttled"))
		exact("hw.temperature.limit", m.gpuMaxC, gpu(g, "hw.limit_type", "max"))
		exact("nvidia.gpu.pcie.link.generation", m.pcieGen, gpu(g, "nvidia.gpu.pcie.link", "max"))
		exact("nvidia.gpu.pcie.link.width", m.pcieWidth, gpu(g, "nvidia.gpu.pcie.link", "max"))
		exact("nvidia.gpu.pcie.link.generation", m.curGen, gpu(g, "nvidia.gpu.pcie.link", "current"))
		exact("nvidia.gpu.pcie.link.width", m.curWidth, gpu(g, "nvidia.gpu.pcie.link", "current"))
		for _, r := range []string{"gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "sync_boost",
			"sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "display_clock_setting"} {
			exact("nvidia.gpu.clock.throttle.active", 0, gpu(g, "nvidia.gpu.throttle.reason", r))
		}
		for _, p := range []string{"power", "thermal", "sync_boost", "board_limit", "low_utilization", "reliability", "base_clocks",
			"hw_thermal_slowdown", "hw_power_brake_slowdown"} {
			exact("nvidia.gpu.clock.throttle.duration", 0, gpu(g, "nvidia.gpu.violation.policy", p))
		}
		// A rate of the PCIe byte counters between two scrapes, over the
		// driver's timestamps of the two reads. The timestamps are whole
		// microseconds and the simulator advances its counters by its own
		// clock read, so the rate is exact to a few parts in a million
		// (1.005e-6 off in one make test run), not to the byte.
		near("nvidia.gpu.pcie.throughput", 50*2000*1024, gpu(g, "network.io.direction", "transmit"))
		near("nvidia.gpu.pcie.throughput", 50*3000*1024, gpu(g, "network.io.direction", "receive"))
		exact("nvidia.gpu.pcie.replays", 0, gpu(g))
		exact("nvidia.gpu.pcie.errors", 0, gpu(g, "error.type", "fatal"))
		absent("nvidia.gpu.c2c.errors", gpu(g))   // no Grace C2C link in this fleet
		absent("nvidia.gpu.nvlink.ber", gpu(g))   // nor NVLink5
		absent("nvidia.gpu.fabric.state", gpu(g)) // nor an NVSwitch fabric
		if m.nvlink {
			for _, dir := range []string{"transmit", "receive"} {
				pts := find(md, "hw.gpu.io", gpu(g, "network.io.direction", dir))
				require.Len(t, pts, 1)
				require.Greater(t, value(pts[0]), 0.0, "NVLink traffic integrates utilization")
			}
			for _, e := range []string{"crc_flit", "crc_data", "replay", "recovery"} {
				exact("nvidia.gpu.nvlink.errors", 0, gpu(g, "error.type", e))
			}
			if m.gpm { // NVLink data ECC: Hopper and later
				exact("nvidia.gpu.nvlink.errors", 0, gpu(g, "error.type", "ecc_data"))
			} else {
				absent("nvidia.gpu.nvlink.errors", gpu(g, "error.type", "ecc_data"))
			}
		} else {
			absent("hw.gpu.io", gpu(g))
			absent("nvidia.gpu.nvlink.errors", gpu(g))
		}
		exact("hw.errors", 0, gpu(g, "error.type", "corrected", "hw.type", "gpu"))
		exact("hw.errors", 0, gpu(g, "error.type", "uncorrected", "hw.type", "gpu"))
		for _, c := range []string{"correctable", "uncorrectable"} {
			exact("nvidia.gpu.memory.remapped_rows", 0, gpu(g, "nvidia.gpu.remap.cause", c))
		}
		for _, s := range []string{"pending", "failed"} {
			exact("nvidia.gpu.memory.remap.state", 0, gpu(g, "nvidia.gpu.remap.state", s))
		}
		absent("nvidia.gpu.memory.retired_pages", gpu(g)) // Ampere and later remap rows instead
		exact("hw.status", 1, gpu(g, "hw.state", "ok", "hw.type", "gpu"))
		exact("hw.status", 0, gpu(g, "hw.state", "degraded", "hw.type", "gpu"))
		exact("hw.status", 0, gpu(g, "hw.state", "failed", "hw.type", "gpu"))
		exact("nvidia.gpu.performance_state", 0, gpu(g))
		if g == "nvidia3" {
			// The L40S of this fleet has two fans, each its own component.
			for k, pct := range []float64{0.35, 0.36} {
				fan := fmt.Sprintf("nvidia3/fan%d", k)
				pts := find(md, "hw.fan.speed_ratio", map[string]any{"hw.name": fan})
				require.Len(t, pts, 1, fan)
				require.InDelta(t, pct, value(pts[0]), 1e-9, fan)
				require.Equal(t, find(md, "nvidia.gpu.info", gpu(g))[0].Attributes().AsRaw()["hw.id"], pts[0].Attributes().AsRaw()["hw.parent"])
			}
		} else {
			absent("hw.fan.speed_ratio", map[string]any{"hw.parent": find(md, "nvidia.gpu.info", gpu(g))[0].Attributes().AsRaw()["hw.id"]}) // passively cooled
		}
		if m.gpm {
			exact("nvidia.gpu.sm.utilization", 0.45, gpu(g))
			exact("nvidia.gpu.sm.occupancy", 0.30, gpu(g))
			exact("nvidia.gpu.dram.utilization", 0.30, gpu(g))
			for pipe, v := range map[string]float64{"tensor": 0.35, "fp64": 0.05, "fp32": 0.25, "fp16": 0.30, "int": 0.10,
				"tensor_hmma": 0.30, "tensor_dfma": 0.025, "tensor_dmma": 0.015, "tensor_imma": 0.01} {
				exact("nvidia.gpu.pipe.utilization", v, gpu(g, "nvidia.gpu.pipe", pipe))
			}
			// The decoder signal runs on 2 of the 7 NVDECs: their average.
			nvdec := 0.0
			if g == "nvidia1" {
				nvdec = 2 * 0.10 / 7
			}
			exact("nvidia.gpu.engine.utilization", nvdec, gpu(g, "nvidia.gpu.engine", "nvdec"))
			exact("nvidia.gpu.engine.utilization", 0, gpu(g, "nvidia.gpu.engine", "nvjpg"))
			exact("nvidia.gpu.engine.utilization", 0.5, gpu(g, "nvidia.gpu.engine", "graphics"))
			exact("nvidia.gpu.engine.utilization", 0, gpu(g, "nvidia.gpu.engine", "nvofa"))
		} else {
			absent("nvidia.gpu.sm.utilization", gpu(g))
			absent("nvidia.gpu.pipe.utilization", gpu(g))
			absent("nvidia.gpu.engine.utilization", gpu(g))
		}
		info := find(md, "nvidia.gpu.info", gpu(g))
		require.Len(t, info, 1)
		require.InDelta(t, 1, value(info[0]), 0)
		require.Equal(t, map[string]any{
			"hw.id": info[0].Attributes().AsRaw()["hw.id"], "hw.name": g, "hw.model": m.name, "hw.vendor": "NVIDIA",
			"hw.serial_number":  "1650" + []string{"000124000", "000124001", "000124002", "000124003"}[i],
			"hw.driver_version": "550.90.07", "hw.firmware_version": "96.00.89.00.01",
			"nvidia.gpu.pci_bus_id":          []string{"00000000:18:00.0", "00000000:28:00.0", "00000000:38:00.0", "00000000:48:00.0"}[i],
			"nvidia.gpu.virtualization_mode": "passthrough", "nvidia.cuda.driver_version": "12.4",
		}, info[0].Attributes().AsRaw())
		require.True(t, strings.HasPrefix(info[0].Attributes().AsRaw()["hw.id"].(string), "GPU-"))
	}

	// Per-process metrics (on in this config).
	exact("nvidia.gpu.process.memory.usage", 2048*mib, gpu("nvidia0", "process.pid", int64(4242)))
	exact("nvidia.gpu.process.utilization", 0.5, gpu("nvidia0", "process.pid", int64(4242), "hw.gpu.task", "general"))
	absent("nvidia.gpu.process.memory.usage", gpu("nvidia1"))

	// MIG instances of the A100: memory each, the parent keeps its own metrics.
	for profile, used := range map[string]float64{"1g.10gb": 1280, "3g.40gb": 5120} {
		pts := find(md, "hw.gpu.memory.usage", map[string]any{"nvidia.mig.profile": profile})
		require.Len(t, pts, 1, profile)
		require.InDelta(t, used*mib, value(pts[0]), 0)
		attrs := pts[0].Attributes().AsRaw()
		require.Equal(t, find(md, "nvidia.gpu.info", gpu("nvidia2"))[0].Attributes().AsRaw()["hw.id"], attrs["hw.parent"])
		require.Equal(t, int64(0), attrs["nvidia.mig.compute_instance_id"])
		require.True(t, strings.HasPrefix(attrs["hw.id"].(string), "MIG-"))
	}

	// Every metric of the table appears, except those no GPU of this fleet
	// has (retired pages: pre-Ampere, TestPreAmpereRetiredPages; the
	// licence: vGPU guests, TestVGPULicence; NVLink5 BER, C2C errors and
	// the NVSwitch fabric: Grace Blackwell, TestInterconnectHealth).
	for _, name := range allMetrics {
		switch name {
		case "nvidia.gpu.memory.retired_pages", "nvidia.gpu.vgpu.license.state", "nvidia.gpu.nvlink.ber", "nvidia.gpu.c2c.errors", "nvidia.gpu.fabric.state":
			absent(name, nil)
		default:
			require.NotEmpty(t, find(md, name, nil), "%s missing from the batch", name)
		}
	}
	require.NotContains(t, c.proc.Output(), "lacks some NVML functions", "the simulated library has every function the receiver calls")
}

// The wave fleet shipped for the demo: signals move, energy integrates power.
func TestWaveFleetMovesRealistically(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), `gpus = 2
signal.utilization = wave 20 90 4
signal.memory_used = wave 1000 5000 6
`)
	var utils []float64
	var first, last dp
	for i := 0; i < 6; i++ {
		md := c.waitBatch(t, 20*time.Second, "energy present", func(md pmetric.Metrics) bool { return has(md, "hw.energy", gpu("nvidia0")) })
		utils = append(utils, value(find(md, "hw.gpu.utilization", gpu("nvidia0", "hw.gpu.task", "general"))[0]))
		e := find(md, "hw.energy", gpu("nvidia0"))[0]
		if i == 0 {
			first = e
		}
		last = e
		p := value(find(md, "hw.power", gpu("nvidia0"))[0])
		require.Greater(t, p, 70.0, "power follows utilization, above idle")
		require.Less(t, p, 700.0)
		time.Sleep(time.Second)
	}
	minU, maxU := utils[0], utils[0]
	for _, u := range utils {
		minU, maxU = min(minU, u), max(maxU, u)
	}
	require.Greater(t, maxU-minU, 0.1, "utilization moves: %v", utils)
	require.Greater(t, value(last), value(first), "energy is the integral of power and only rises")
	require.Equal(t, first.StartTimestamp(), last.StartTimestamp())
}
