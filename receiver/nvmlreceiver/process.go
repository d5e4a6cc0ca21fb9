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

// procRoot is where process names are read from (/proc/<pid>/comm).
var procRoot = "/proc"

func processName(pid uint32) string {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// collectProcesses reports per-process memory and utilization (both off by
// default). Each NVML process query runs once per GPU per scrape.
func (d *device) collectProcesses() {
	on := &d.drv.enabled
	if !on[mProcMemory] && !on[mProcUtil] {
		return
	}
	h := d.handle()
	names := map[uint32]string{}
	name := func(pid uint32) string {
		n, ok := names[pid]
		if !ok {
			n = processName(pid)
			names[pid] = n
		}
		return n
	}
	if on[mProcMemory] {
		mem := map[uint32]uint64{}
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
				mem[p.Pid] = max(mem[p.Pid], p.UsedGpuMemory)
			}
		}
		for _, pid := range sortedPIDs(mem) {
			v := mem[pid]
			if v > math.MaxInt64 {
				continue // NVML's "not available" marker
			}
			d.emitInt(mProcMemory, d.ent, int64(v), 0, num("process.pid", int64(pid)), str("process.executable.name", name(pid)))
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
