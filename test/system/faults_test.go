//go:build system

package system

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// faultFleet gives each of 8 GPUs its own fault, so one run of the real
// binary shows every per-GPU fault kind next to GPUs that keep reporting.
// Times are seconds since the library was loaded.
const faultFleet = `gpus = 8
model = h100
signal.utilization = const 60
signal.memory_used = const 4096
fault = 0 0 slow nvmlDeviceGetFieldValues 100
fault = 3 1 lost 4
fault = 0 2 unsupported nvmlDeviceGetPowerUsage
fault = 0 2 field_unsupported 185
fault = 0 2 field_unsupported 186
fault = 0 3 nopermission nvmlDeviceGetTotalEnergyConsumption
fault = 0 3 field_unsupported 83
fault = 3 4 hang nvmlDeviceGetTemperatureV 4
fault = 3 5 xid 48 4242
fault = 3 6 ecc 5 uncorrected
fault = 4 7 reset_counters
`

func TestEveryFaultKindThroughTheRealBinary(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), faultFleet)
	everyoneElse := func(md pmetric.Metrics, except ...string) {
		t.Helper()
		skip := map[string]bool{}
		for _, e := range except {
			skip[e] = true
		}
		for _, g := range []string{"nvidia0", "nvidia1", "nvidia2", "nvidia3", "nvidia4", "nvidia5", "nvidia6", "nvidia7"} {
			if !skip[g] {
				require.True(t, has(md, "hw.gpu.utilization", gpu(g)), "%s stopped reporting", g)
			}
		}
	}
	first := c.waitBatch(t, 20*time.Second, "all 8 GPUs report", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.info", nil)) == 8
	})
	energy7 := find(first, "hw.energy", gpu("nvidia7"))[0]
	energy1 := find(first, "hw.energy", gpu("nvidia1"))[0]

	t.Run("unsupported and no permission are per GPU and per function", func(t *testing.T) {
		require.False(t, has(first, "hw.power", gpu("nvidia2")), "GPU 2 answers NOT_SUPPORTED for power")
		require.True(t, has(first, "hw.energy", gpu("nvidia2")))
		require.False(t, has(first, "hw.energy", gpu("nvidia3")), "GPU 3 answers NO_PERMISSION for energy")
		require.True(t, has(first, "hw.power", gpu("nvidia3")))
		require.True(t, has(first, "hw.power", gpu("nvidia0")), "a slow call within call_timeout still reports")
	})

	lost := c.waitBatch(t, 20*time.Second, "GPU 1 is reported failed", func(md pmetric.Metrics) bool {
		p := find(md, "hw.status", gpu("nvidia1", "hw.state", "failed"))
		return len(p) == 1 && value(p[0]) == 1
	})
	t.Run("GPU lost: failed, the others go on", func(t *testing.T) {
		require.False(t, has(lost, "hw.energy", gpu("nvidia1")), "a lost GPU reports only its status")
		everyoneElse(lost, "nvidia1", "nvidia4")
	})

	firstHung := c.firstBatch(t, 20*time.Second, "GPU 4 is left out while its call hangs", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.info", nil)) >= 6 && !has(md, "nvidia.gpu.info", gpu("nvidia4"))
	})
	hung := c.waitBatch(t, 20*time.Second, "GPU 4 failed while its call hangs", func(md pmetric.Metrics) bool {
		p := find(md, "hw.status", gpu("nvidia4", "hw.state", "failed", "nvidia.gpu.health.reason", "unanswered"))
		return !has(md, "nvidia.gpu.info", gpu("nvidia4")) && len(p) == 1 && value(p[0]) == 1
	})
	t.Run("hung call: bounded scrape, the others go on, the hung GPU reported failed from its second silent scrape", func(t *testing.T) {
		require.EqualValues(t, 1, value(find(firstHung, "hw.status", gpu("nvidia4", "hw.state", "ok"))[0]),
			"one scrape over call_timeout is not a failure")
		everyoneElse(hung, "nvidia1", "nvidia4")
		require.EqualValues(t, 0, value(find(hung, "hw.status", gpu("nvidia4", "hw.state", "ok"))[0]))
	})

	xid := c.firstBatch(t, 20*time.Second, "XID 48 counted on GPU 5", func(md pmetric.Metrics) bool {
		return has(md, "hw.errors", gpu("nvidia5", "error.type", "xid", "nvidia.xid.code", int64(48)))
	})
	t.Run("XID: counted, degraded, and a log record", func(t *testing.T) {
		require.InDelta(t, 1, value(find(xid, "hw.errors", gpu("nvidia5", "error.type", "xid"))[0]), 0)
		require.InDelta(t, 1, value(find(xid, "hw.status", gpu("nvidia5", "hw.state", "degraded", "nvidia.gpu.health.reason", "xid_48"))[0]), 0,
			"XID 48 degrades the GPU from the interval it arrived in")
		require.Eventually(t, func() bool {
			for _, lr := range logRecords(c, "nvidia.gpu.xid") {
				code, _ := lr.Attributes().Get("nvidia.xid.code")
				name, _ := lr.Attributes().Get("hw.name")
				if code.Int() == 48 && name.Str() == "nvidia5" && strings.Contains(lr.Body().Str(), "double bit ECC") {
					return true
				}
			}
			return false
		}, 10*time.Second, 100*time.Millisecond, "no XID log record reached the logs pipeline")
	})

	ecc := c.firstBatch(t, 20*time.Second, "5 uncorrected ECC errors on GPU 6", func(md pmetric.Metrics) bool {
		p := find(md, "hw.errors", gpu("nvidia6", "error.type", "uncorrected"))
		return len(p) == 1 && value(p[0]) == 5
	})
	t.Run("ECC burst: counted, remap pending, degraded", func(t *testing.T) {
		require.InDelta(t, 1, value(find(ecc, "nvidia.gpu.memory.remap.state", gpu("nvidia6", "nvidia.gpu.remap.state", "pending"))[0]), 0)
		require.InDelta(t, 1, value(find(ecc, "hw.status", gpu("nvidia6", "hw.state", "degraded"))[0]), 0)
	})

	reset := c.waitBatch(t, 20*time.Second, "GPU 7's energy counter restarted", func(md pmetric.Metrics) bool {
		p := find(md, "hw.energy", gpu("nvidia7"))
		return len(p) == 1 && p[0].StartTimestamp() != energy7.StartTimestamp()
	})
	t.Run("counter reset: a new series", func(t *testing.T) {
		p := find(reset, "hw.energy", gpu("nvidia7"))[0]
		require.Greater(t, p.StartTimestamp(), energy7.StartTimestamp())
		// GPU 0 draws the same power and was never reset: GPU 7's counter is
		// short of it by the ~4 s before the reset (~400 W each).
		same := value(find(reset, "hw.energy", gpu("nvidia0"))[0])
		require.Less(t, value(p), same-1000, "the driver's counter started over")
	})

	back := c.waitBatch(t, 20*time.Second, "GPUs 1 and 4 are back", func(md pmetric.Metrics) bool {
		ok := find(md, "hw.status", gpu("nvidia1", "hw.state", "ok"))
		return len(ok) == 1 && value(ok[0]) == 1 && has(md, "nvidia.gpu.info", gpu("nvidia4"))
	})
	t.Run("GPU back after reset, hung call returned", func(t *testing.T) {
		p := find(back, "hw.energy", gpu("nvidia1"))
		require.Len(t, p, 1)
		require.Greater(t, p[0].StartTimestamp(), energy1.StartTimestamp(), "cumulative series start over after a reset")
		everyoneElse(back)
	})

	t.Run("one clear log line per condition", func(t *testing.T) {
		out := c.proc.Output()
		require.Equal(t, 1, strings.Count(out, "GPU lost; reporting it failed"), out)
		require.Equal(t, 1, strings.Count(out, "GPU is back"), out)
		require.Equal(t, 1, strings.Count(out, "did not return in time"), out)
		require.NotContains(t, out, "panic")
	})
}

// A GPU that cannot be opened when the receiver starts (here: lost until
// 6 s in) is reported failed under its index from the first scrape, and
// joins under its own UUID at a rediscovery once it opens.
func TestGPUThatCannotBeOpenedAtStart(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 4\nsignal.utilization = const 60\nfault = 0 2 lost 6\n")
	early := c.waitBatch(t, 20*time.Second, "three GPUs report, the fourth is reported failed", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.info", nil)) == 3 && len(find(md, "hw.status", map[string]any{"hw.id": "index:2", "hw.state": "failed"})) == 1
	})
	require.EqualValues(t, 1, value(find(early, "hw.status", map[string]any{"hw.id": "index:2", "hw.name": "nvidia2", "hw.state": "failed"})[0]))
	late := c.waitBatch(t, 20*time.Second, "GPU 2 joins under its UUID", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.info", nil)) == 4
	})
	require.Empty(t, find(late, "hw.status", map[string]any{"hw.id": "index:2"}))
	require.True(t, has(late, "hw.gpu.utilization", gpu("nvidia2")))
	out := c.proc.Output()
	require.Equal(t, 1, strings.Count(out, "cannot open GPU"), out)
	require.Equal(t, 1, strings.Count(out, "GPU found"), out)
}

// The whole driver stuck for 5 s (every call, the event wait): each GPU is
// still reported on every scrape, failed, and all come back after.
func TestWholeDriverHang(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 4\nsignal.utilization = const 60\nfault = 4 * driver_hang 5\n")
	c.waitBatch(t, 20*time.Second, "the 4 GPUs report", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.info", nil)) == 4
	})
	hung := c.waitBatch(t, 20*time.Second, "every GPU reported failed while the driver hangs", func(md pmetric.Metrics) bool {
		n := 0
		for _, p := range find(md, "hw.status", map[string]any{"hw.state": "failed"}) {
			n += int(value(p))
		}
		return n == 4 && !has(md, "hw.gpu.utilization", nil)
	})
	for _, g := range []string{"nvidia0", "nvidia1", "nvidia2", "nvidia3"} {
		require.EqualValues(t, 1, value(find(hung, "hw.status", gpu(g, "hw.state", "failed"))[0]), g)
	}
	c.waitBatch(t, 20*time.Second, "all back after the hang", func(md pmetric.Metrics) bool {
		return len(find(md, "hw.status", map[string]any{"hw.state": "ok"})) == 4 && len(find(md, "hw.gpu.utilization", nil)) >= 4
	})
	require.NotContains(t, c.proc.Output(), "panic")
}

// nvmlInit stuck for 4 s: the collector starts anyway (Start waits at
// most call_timeout) and the GPUs come when init returns.
func TestHungInitDoesNotStopTheCollector(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 2\nsignal.utilization = const 60\nfault = 0 * driver_hang 4\n")
	c.waitBatch(t, 20*time.Second, "the GPUs once init returns", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.info", nil)) == 2
	})
	out := c.proc.Output()
	ready, initialised := strings.Index(out, "Everything is ready"), strings.Index(out, "\tinitialised\t")
	require.True(t, ready >= 0 && initialised > ready, "the collector was ready before nvmlInit returned:\n%s", out)
	require.Equal(t, 1, strings.Count(c.proc.Output(), "NVML initialisation has not returned"), c.proc.Output())
}

// An NVLink that is down is reported as such, per link; the others active.
func TestNVLinkDownIsReportedPerLink(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 1\nsignal.utilization = const 60\nfault = 0 0 nvlink_down 2 600\n")
	md := c.waitBatch(t, 20*time.Second, "the H100's 18 links", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.nvlink.link.active", nil)) == 18
	})
	for link := int64(0); link < 18; link++ {
		want := 1.0
		if link == 2 {
			want = 0
		}
		require.EqualValues(t, want, value(find(md, "nvidia.gpu.nvlink.link.active", gpu("nvidia0", "nvidia.gpu.nvlink.link", link))[0]), "link %d", link)
	}
}

func TestInitFailureIsRetried(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 2\nfault = 0 * init_fail 3\n")
	c.waitBatch(t, 30*time.Second, "the GPUs appear once the driver loads", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.info", nil)) == 2
	})
	out := c.proc.Output()
	require.Equal(t, 1, strings.Count(out, "NVML did not initialise"), out)
	require.Contains(t, out, "ERROR_DRIVER_NOT_LOADED")
	require.Contains(t, out, "\tinitialised\t", "the console log line of a successful init")
}

func TestOlderDriverWithoutSomeFunctions(t *testing.T) {
	// An older driver has neither the functions nor the newer fields
	// (POWER_AVERAGE, 185; POWER_INSTANT, 186) that stand for them.
	c := startCollector(t, simLibrary(t, "NVMLSIM_OLD_LIB"), "gpus = 2\nsignal.utilization = const 40\nfault = 0 * field_unsupported 185\nfault = 0 * field_unsupported 186\n")
	md := c.waitBatch(t, 30*time.Second, "a second scrape (GPM would be there)", func(md pmetric.Metrics) bool {
		return has(md, "hw.energy", gpu("nvidia1")) && has(md, "nvidia.gpu.info", gpu("nvidia1")) &&
			len(c.sink.Metrics()) >= 3
	})
	// The Makefile builds this variant without NVMLSIM_OMIT (default:
	// nvmlDeviceGetPowerUsage nvmlGpmMetricsGet, and the newer calls that
	// have an older fallback: nvmlDeviceGetTemperatureV,
	// nvmlDeviceGetCurrentClocksEventReasons; and, as a driver after CUDA
	// 13's announced removal would, nvmlDeviceGetViolationStatus, whose
	// field values stand for it).
	require.False(t, has(md, "hw.power", nil), "power needs nvmlDeviceGetPowerUsage")
	for _, gpm := range []string{"nvidia.gpu.sm.utilization", "nvidia.gpu.sm.occupancy", "nvidia.gpu.dram.utilization", "nvidia.gpu.pipe.utilization"} {
		require.False(t, has(md, gpm, nil), "%s needs nvmlGpmMetricsGet", gpm)
	}
	for _, still := range []string{"hw.energy", "nvidia.gpu.power.limit", "hw.temperature", "hw.gpu.utilization", "hw.gpu.memory.usage", "hw.status",
		"nvidia.gpu.clock.throttle.active", "nvidia.gpu.clock.throttle.duration"} {
		require.True(t, has(md, still, gpu("nvidia0")), "%s does not need the missing functions", still)
	}
	out := c.proc.Output()
	require.Equal(t, 1, strings.Count(out, "lacks some NVML functions"), out)
	require.Contains(t, out, "nvmlDeviceGetPowerUsage")
	require.Contains(t, out, "nvmlGpmMetricsGet")
	require.Contains(t, out, "nvmlDeviceGetTemperatureV", "temperature fell back to nvmlDeviceGetTemperature")
	require.Contains(t, out, "nvmlDeviceGetCurrentClocksEventReasons", "event reasons fell back to throttle reasons")
	require.Contains(t, out, "nvmlDeviceGetViolationStatus", "violation times come from field values")
}

// A GPU that falls off the bus stays failed until an operator resets it
// (not back on a timer), and the reset proceeds only once the agent lets
// NVML go (release_file), as nvidia-smi -r waits for every NVML client:
// every scrape reports it failed meanwhile, and after the reset and the
// release it is back with its counters started over.
func TestLostUntilResetWithRelease(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release-nvml")
	started := time.Now() // the simulator's clock starts a little later
	c := startCollectorWith(t, simLibrary(t, "NVMLSIM_LIB"),
		"gpus = 2\nsignal.utilization = const 60\nfault = 2 1 lost until_reset\nfault = 2 1 xid 79\nfault = 5 1 gpu_reset\n",
		collectorOpts{releaseFile: release})
	c.waitBatch(t, 20*time.Second, "GPU 1 failed", func(md pmetric.Metrics) bool {
		return has(md, "hw.status", gpu("nvidia1", "hw.state", "failed")) && value(find(md, "hw.status", gpu("nvidia1", "hw.state", "failed"))[0]) == 1
	})
	// The operator's reset at 5 s waits: the agent holds NVML. A scrape
	// well after it still finds the GPU lost.
	still := c.waitBatch(t, 20*time.Second, "a scrape 7 s after the start", func(pmetric.Metrics) bool {
		return time.Since(started) > 7*time.Second
	})
	require.EqualValues(t, 1, value(find(still, "hw.status", gpu("nvidia1", "hw.state", "failed"))[0]), "lost until the reset")
	require.True(t, has(still, "hw.gpu.utilization", gpu("nvidia0")), "GPU 0 goes on")
	// The operator's procedure: create the release file, reset, remove it.
	require.NoError(t, os.WriteFile(release, nil, 0o600))
	require.Eventually(t, func() bool { return strings.Contains(c.proc.Output(), "NVML released for a GPU reset") }, 10*time.Second, 100*time.Millisecond)
	require.NoError(t, os.Remove(release))
	back := c.waitBatch(t, 20*time.Second, "GPU 1 back after the reset", func(md pmetric.Metrics) bool {
		return has(md, "hw.gpu.utilization", gpu("nvidia1"))
	})
	require.EqualValues(t, 1, value(find(back, "hw.status", gpu("nvidia1", "hw.state", "ok"))[0]))
}

// ECC counts per location: the volatile ones restart with the driver, the
// aggregate ones (the board's life, what an RMA decision reads) stay.
func TestECCVolatileAndAggregate(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 1\nsignal.utilization = const 60\nfault = 1 0 ecc 5 uncorrected\nfault = 5 0 reset_counters\n")
	ecc := func(md pmetric.Metrics, counter string) (float64, bool) {
		p := find(md, "nvidia.gpu.ecc.errors", gpu("nvidia0", "error.type", "uncorrected", "nvidia.gpu.ecc.location", "device_memory", "nvidia.gpu.ecc.counter", counter))
		if len(p) != 1 {
			return 0, false
		}
		return value(p[0]), true
	}
	c.waitBatch(t, 20*time.Second, "5 uncorrected errors, volatile and aggregate", func(md pmetric.Metrics) bool {
		v, ok1 := ecc(md, "volatile")
		a, ok2 := ecc(md, "aggregate")
		return ok1 && ok2 && v == 5 && a == 5
	})
	after := c.waitBatch(t, 20*time.Second, "the driver reloaded: volatile back to 0", func(md pmetric.Metrics) bool {
		v, ok := ecc(md, "volatile")
		return ok && v == 0
	})
	a, ok := ecc(after, "aggregate")
	require.True(t, ok)
	require.EqualValues(t, 5, a, "the aggregate count is the board's")
	for _, loc := range []string{"l1_cache", "l2_cache", "register_file", "texture_memory"} {
		require.True(t, has(after, "nvidia.gpu.ecc.errors", gpu("nvidia0", "nvidia.gpu.ecc.location", loc, "nvidia.gpu.ecc.counter", "volatile")), loc)
	}
}

// MIG as the driver does it: the parent answers NOT_SUPPORTED for
// utilization (no warning), a GPU instance with two compute instances is
// measured by GPM once, and a process is reported on its instance.
func TestMIGThroughTheRealBinary(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 1\nsignal.utilization = const 60\ngpu.0.mig = 1g.10gb,3g.40gb*2\ngpu.0.process = 4242 2048 2 1\n")
	md := c.waitBatch(t, 20*time.Second, "GPM of the instances (second scrape)", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.sm.utilization", map[string]any{"nvidia.mig.gpu_instance_id": int64(2)})) > 0
	})
	require.Len(t, find(md, "hw.gpu.memory.usage", map[string]any{"hw.parent": find(md, "nvidia.gpu.info", gpu("nvidia0"))[0].Attributes().AsRaw()["hw.id"]}), 2, "memory once per GPU instance (two), not per MIG device (three)")
	require.Len(t, find(md, "nvidia.gpu.sm.utilization", map[string]any{"nvidia.mig.gpu_instance_id": int64(2)}), 1, "one GPU instance, once")
	require.Len(t, find(md, "nvidia.gpu.sm.utilization", gpu("nvidia0/gi2")), 1, "on the GPU instance's own entity")
	require.Len(t, find(md, "nvidia.gpu.sm.utilization", gpu("nvidia0/gi1/ci0")), 1, "a single compute instance carries its GPU instance's")
	require.False(t, has(md, "hw.gpu.utilization", gpu("nvidia0")), "no utilization on a MIG parent")
	require.True(t, has(md, "hw.power", gpu("nvidia0")), "the parent keeps the rest")
	require.Len(t, find(md, "nvidia.gpu.process.memory.usage", gpu("nvidia0/gi2/ci1", "process.pid", int64(4242))), 1, "the process on its instance")
	require.NotContains(t, c.proc.Output(), "\twarn\t")
}

// A pre-Ampere GPU retires pages instead of remapping rows: the pages by
// cause, from its ECC errors; no remapped rows.
func TestPreAmpereRetiredPages(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 1\nmodel = v100\nsignal.utilization = const 60\nfault = 1 0 ecc 3 uncorrected\nfault = 1 0 ecc 250 corrected\n")
	md := c.waitBatch(t, 20*time.Second, "pages retired by the ECC errors", func(md pmetric.Metrics) bool {
		p := find(md, "nvidia.gpu.memory.retired_pages", gpu("nvidia0", "nvidia.gpu.retire.cause", "dbe"))
		return len(p) == 1 && value(p[0]) == 3
	})
	require.EqualValues(t, 2, value(find(md, "nvidia.gpu.memory.retired_pages", gpu("nvidia0", "nvidia.gpu.retire.cause", "sbe"))[0]))
	require.False(t, has(md, "nvidia.gpu.memory.remapped_rows", nil), "no row remapping before Ampere")
	require.False(t, has(md, "nvidia.gpu.sm.utilization", nil), "no GPM before Hopper")
	require.Equal(t, "Tesla V100-SXM2-32GB", find(md, "nvidia.gpu.info", gpu("nvidia0"))[0].Attributes().AsRaw()["hw.model"])
}

// A vGPU guest reports its licence: an unlicensed vGPU runs degraded, and
// the customer and the operator see why. Other GPUs have no licence series.
func TestVGPULicence(t *testing.T) {
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 2\nvirtualization = vgpu\nsignal.utilization = const 60\ngpu.1.vgpu_license = unlicensed\n")
	md := c.waitBatch(t, 20*time.Second, "both guests' licences", func(md pmetric.Metrics) bool {
		return len(find(md, "nvidia.gpu.vgpu.license.state", nil)) == 2
	})
	require.EqualValues(t, 1, value(find(md, "nvidia.gpu.vgpu.license.state", gpu("nvidia0", "nvidia.gpu.vgpu.license.feature", "compute"))[0]))
	require.EqualValues(t, 0, value(find(md, "nvidia.gpu.vgpu.license.state", gpu("nvidia1", "nvidia.gpu.vgpu.license.feature", "compute"))[0]))
	pass := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 1\nsignal.utilization = const 60\n")
	md = pass.waitBatch(t, 20*time.Second, "a passthrough GPU", func(md pmetric.Metrics) bool { return has(md, "nvidia.gpu.info", nil) })
	require.False(t, has(md, "nvidia.gpu.vgpu.license.state", nil))
}
