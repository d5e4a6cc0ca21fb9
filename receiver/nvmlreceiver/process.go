package nvmlreceiver

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"path/filepath"
	"regexp"
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

// workload is what runs a process, from its cgroup: the container
// (container.id), the Kubernetes pod (k8s.pod.uid) and the Slurm job
// (slurm.job.id), each "" when the process is not in one.
type workload struct {
	container, pod, slurmJob string
}

var (
	// A container runtime's cgroup ends in the container's 64-hex id:
	// docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope,
	// libpod-<id>.scope (systemd driver), or /docker/<id>, /<pod>/<id>
	// (cgroupfs driver).
	cgroupContainer = regexp.MustCompile(`(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$`)
	// The kubelet names a pod's cgroup pod<uid>; the systemd driver writes
	// the uid's dashes as underscores.
	cgroupPod = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?(?:/|$)`)
	// slurmd puts a job's steps under job_<id> (cgroup v1
	// /slurm/uid_<uid>/job_<id>/..., v2 .../slurmstepd.scope/job_<id>/...).
	cgroupSlurmJob = regexp.MustCompile(`/job_([0-9]+)(?:/|$)`)
)

// processWorkload reads /proc/<pid>/cgroup. Every line's path is looked
// at (cgroup v1 has one per hierarchy, v2 one), the first match of each
// kind wins.
func processWorkload(pid uint32) workload {
	var w workload
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return w
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		_, rest, _ := strings.Cut(sc.Text(), ":")
		_, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if m := cgroupContainer.FindStringSubmatch(path); m != nil && w.container == "" {
			w.container = m[1]
		}
		if m := cgroupPod.FindStringSubmatch(path); m != nil && w.pod == "" {
			w.pod = strings.ReplaceAll(m[1], "_", "-")
		}
		if m := cgroupSlurmJob.FindStringSubmatch(path); m != nil && w.slurmJob == "" && strings.Contains(path, "slurm") {
			w.slurmJob = m[1]
		}
	}
	return w
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
		w    workload
	}
	names := map[uint32]known{}
	// attrs are a process's attributes: its PID (the host's, as NVML gives
	// it) and, where known, its executable's name and the container, pod
	// and Slurm job it runs in.
	attrs := func(pid uint32, more ...kv) []kv {
		k, seen := names[pid]
		if !seen {
			if host {
				k.name, k.ok = processName(pid)
				k.w = processWorkload(pid)
			}
			names[pid] = k
		}
		out := append(make([]kv, 0, 5+len(more)), num("process.pid", int64(pid)))
		if k.ok {
			out = append(out, str("process.executable.name", k.name))
		}
		if k.w.container != "" {
			out = append(out, str("container.id", k.w.container))
		}
		if k.w.pod != "" {
			out = append(out, str("k8s.pod.uid", k.w.pod))
		}
		if k.w.slurmJob != "" {
			out = append(out, str("slurm.job.id", k.w.slurmJob))
		}
		return append(out, more...)
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
			d.emit(mProcUtil, d.ent, a.sm/a.n/100, 0, attrs(pid, str("hw.gpu.task", "general"))...)
			d.emit(mProcUtil, d.ent, a.enc/a.n/100, 0, attrs(pid, str("hw.gpu.task", "encoder"))...)
			d.emit(mProcUtil, d.ent, a.dec/a.n/100, 0, attrs(pid, str("hw.gpu.task", "decoder"))...)
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
