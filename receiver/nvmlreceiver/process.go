package nvmlreceiver

import (
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// procRoot is where process names are read from. Tests point it elsewhere.
var procRoot = "/proc"

// initialPIDNamespace is the inode of the host's (initial) PID namespace
// (PROC_PID_INIT_INO in the kernel).
const initialPIDNamespace = "pid:[4026531836]"

// hostPIDs says whether this process sees the host's PIDs, the ones NVML
// reports. In a container with its own PID namespace, /proc/<pid> is
// another process or none: naming the driver's PIDs from it would be
// wrong, so no name is given there.
func hostPIDs() bool {
	ns, err := os.Readlink(filepath.Join(procRoot, "self", "ns", "pid"))
	return err == nil && ns == initialPIDNamespace
}

// processName is the semconv process.executable.name: the base name of
// /proc/<pid>/exe, else (that link needs the process's owner or
// CAP_SYS_PTRACE) /proc/<pid>/comm, which the kernel cuts at 15
// characters. false: not known.
func processName(pid uint32) (string, bool) {
	dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10))
	if target, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		return filepath.Base(strings.TrimSuffix(target, " (deleted)")), true
	}
	b, err := os.ReadFile(filepath.Join(dir, "comm"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// collectProcesses reports per-process memory and utilization (both off by
// default). Each NVML process query runs once per GPU per scrape.
func (d *device) collectProcesses() {
	on := &d.drv.enabled
	if !on[mProcMemory] && !on[mProcUtil] {
		return
	}
	h := d.handle()
	host := hostPIDs()
	type known struct {
		name string
		ok   bool
	}
	names := map[uint32]known{}
	// attrs are a process's attributes: its PID (the host's, as NVML gives
	// it) and, where known, its executable's name.
	attrs := func(pid uint32) []kv {
		k, seen := names[pid]
		if !seen {
			if host {
				k.name, k.ok = processName(pid)
			}
			names[pid] = k
		}
		if !k.ok {
			return []kv{num("process.pid", int64(pid))}
		}
		return []kv{num("process.pid", int64(pid)), str("process.executable.name", k.name)}
	}
	if on[mProcMemory] {
		// A process on a MIG instance is reported on that instance (the
		// driver names its GPU and compute instance), others on the GPU.
		type where struct{ pid, gi, ci uint32 }
		mem := map[where]uint64{}
		for _, q := range []struct {
			fn  string
			get func() ([]nvml.ProcessInfo, nvml.Return)
		}{
			{"nvmlDeviceGetComputeRunningProcesses", h.GetComputeRunningProcesses},
			{"nvmlDeviceGetGraphicsRunningProcesses", h.GetGraphicsRunningProcesses},
			{"nvmlDeviceGetMPSComputeRunningProcesses", h.GetMPSComputeRunningProcesses},
		} {
			if !d.can(q.fn, "") {
				continue
			}
			procs, ret := q.get()
			if !d.ok(q.fn, "", ret) {
				continue
			}
			for _, p := range procs {
				// A process that is both a compute and a graphics client is
				// listed twice with the same memory.
				k := where{p.Pid, p.GpuInstanceId, p.ComputeInstanceId}
				mem[k] = max(mem[k], p.UsedGpuMemory)
			}
		}
		keys := make([]where, 0, len(mem))
		for k := range mem {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			a, b := keys[i], keys[j]
			if a.pid != b.pid {
				return a.pid < b.pid
			}
			if a.gi != b.gi {
				return a.gi < b.gi
			}
			return a.ci < b.ci
		})
		for _, k := range keys {
			v := mem[k]
			if v > math.MaxInt64 {
				continue // NVML's "not available" marker
			}
			ent := d.ent
			if m := d.migAt(k.gi, k.ci); m != nil {
				ent = m.ent
			}
			d.emitInt(mProcMemory, ent, int64(v), 0, attrs(k.pid)...)
		}
	}
	if on[mProcUtil] && d.can("nvmlDeviceGetProcessUtilization", "") {
		samples, ret := h.GetProcessUtilization(d.procs.lastSeen)
		if ret == nvml.ERROR_NOT_FOUND || !d.ok("nvmlDeviceGetProcessUtilization", "", ret) {
			return
		}
		type acc struct{ sm, enc, dec, n float64 }
		per := map[uint32]*acc{}
		newest := d.procs.lastSeen
		for _, s := range samples {
			if s.TimeStamp <= d.procs.lastSeen {
				continue
			}
			a := per[s.Pid]
			if a == nil {
				a = &acc{}
				per[s.Pid] = a
			}
			a.sm += float64(s.SmUtil)
			a.enc += float64(s.EncUtil)
			a.dec += float64(s.DecUtil)
			a.n++
			newest = max(newest, s.TimeStamp)
		}
		d.procs.lastSeen = newest
		for _, pid := range sortedPIDs(per) {
			a := per[pid]
			p := num("process.pid", int64(pid))
			d.emit(mProcUtil, d.ent, a.sm/a.n/100, 0, p, str("hw.gpu.task", "general"))
			d.emit(mProcUtil, d.ent, a.enc/a.n/100, 0, p, str("hw.gpu.task", "encoder"))
			d.emit(mProcUtil, d.ent, a.dec/a.n/100, 0, p, str("hw.gpu.task", "decoder"))
		}
	}
}

func sortedPIDs[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for pid := range m {
		out = append(out, pid)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// processCursor is where per-process utilization sampling left off.
type processCursor struct {
	lastSeen uint64 // newest sample timestamp already reported
}
