package nvmlreceiver

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.uber.org/zap"
)

// migInstance is one MIG device of a GPU in MIG mode.
type migInstance struct {
	ent    *entity
	h      nvml.Device
	gi, ci int
}

// gpuInstance is one MIG GPU instance: GPM measures it, and its memory is
// its own, not its compute instances'. With one compute instance its memory
// and GPM values go on that MIG device; with several, on an entity of its
// own (hw.id "<GPU UUID>/gi<G>"), so they are not repeated per compute
// instance.
type gpuInstance struct {
	gpm *gpmPair
	ent *entity // nil until the instance has several compute instances
}

// migProfile turns a MIG device name ("NVIDIA H100 80GB HBM3 MIG 1g.10gb")
// into its profile ("1g.10gb").
func migProfile(name string) string {
	if i := strings.LastIndex(name, "MIG "); i >= 0 {
		return name[i+len("MIG "):]
	}
	return name
}

// collectMIG reports each MIG GPU instance's memory and, where GPM supports
// MIG (Hopper+), its GPM utilization. Instances are listed every scrape: an
// operator can repartition a GPU at any time.
func (d *device) collectMIG() {
	h := d.handle()
	if !d.can("nvmlDeviceGetMigMode", "") {
		return
	}
	current, _, ret := h.GetMigMode()
	if ret == nvml.SUCCESS {
		if d.migModeSeen && current != d.migMode {
			// What the GPU supports changes with its mode (NVML documents
			// utilization and samples as unsupported on a MIG parent).
			d.calls.refused = map[callKey]time.Time{}
			d.drv.logger.Info("MIG mode changed; every reading is asked again", zap.String("hw.id", d.ent.hwID), zap.Int("mig_mode", current))
		}
		d.migMode, d.migModeSeen = current, true
	}
	if !d.ok("nvmlDeviceGetMigMode", "", ret) || current != nvml.DEVICE_MIG_ENABLE {
		d.dropMIG(nil)
		return
	}
	if !d.can("nvmlDeviceGetMaxMigDeviceCount", "") || !d.can("nvmlDeviceGetMigDeviceHandleByIndex", "") {
		return
	}
	n, ret := h.GetMaxMigDeviceCount()
	if !d.ok("nvmlDeviceGetMaxMigDeviceCount", "", ret) {
		return
	}
	known := make(map[string]*migInstance, len(d.migs))
	for _, m := range d.migs {
		known[m.ent.hwID] = m
	}
	var live []*migInstance
	for i := 0; i < n; i++ {
		mh, ret := h.GetMigDeviceHandleByIndex(i)
		if ret == nvml.ERROR_NOT_FOUND || ret == nvml.ERROR_INVALID_ARGUMENT {
			continue // an empty slot
		}
		if !d.ok("nvmlDeviceGetMigDeviceHandleByIndex", "", ret) {
			continue
		}
		uuid, ret := mh.GetUUID()
		if !d.ok("nvmlDeviceGetUUID", "mig", ret) {
			continue
		}
		if d.onlyMIG != nil && !d.onlyMIG[uuid] {
			continue // not selected
		}
		m, ok := known[uuid]
		if !ok {
			m = d.newMIG(mh, uuid)
		}
		m.h = mh
		live = append(live, m)
	}
	d.dropMIG(live)
	perGI := map[int][]*migInstance{}
	var gis []int
	for _, m := range live {
		if _, ok := perGI[m.gi]; !ok {
			gis = append(gis, m.gi)
		}
		perGI[m.gi] = append(perGI[m.gi], m)
	}
	gpm := d.gpm != nil && d.gpm.supported
	for _, gi := range gis {
		in := perGI[gi]
		g := d.gis[gi]
		if g == nil {
			g = &gpuInstance{}
			d.gis[gi] = g
		}
		ent := in[0].ent
		if len(in) > 1 {
			if g.ent == nil {
				g.ent = &entity{
					hwID:   d.ent.hwID + "/gi" + strconv.Itoa(gi),
					hwName: d.ent.hwName + "/gi" + strconv.Itoa(gi),
					parent: d.ent.hwID,
					mig:    []kv{num("nvidia.mig.gpu_instance_id", int64(gi)), str("nvidia.mig.profile", migProfileOf(in[0]))},
				}
			}
			ent = g.ent
		}
		// Memory belongs to the GPU instance: every compute instance of it
		// answers the instance's memory, so it is read once (through its
		// first MIG device) and reported once, where GPM goes: a sum over
		// the GPU's MIG entities does not count it twice.
		d.collectMemory(in[0].h, ent, "mig:"+in[0].ent.hwID)
		if !gpm {
			continue
		}
		// The refusal is remembered under the instance it was for, so the
		// check must ask for that same key.
		variant := "mig:gi" + strconv.Itoa(gi)
		if !d.can("nvmlGpmMigSampleGet", variant) {
			continue
		}
		if g.gpm == nil {
			g.gpm = d.newGPMPair("mig")
		}
		if g.gpm != nil {
			d.gpmMeasure(g.gpm, ent, variant, func(s nvml.GpmSample) nvml.Return { return d.drv.lib.GpmMigSampleGet(h, gi, s) })
		}
	}
}

func migProfileOf(m *migInstance) string {
	for _, a := range m.ent.mig {
		if a.k == "nvidia.mig.profile" {
			return a.v
		}
	}
	return ""
}

// migAt is the MIG device of a GPU and compute instance (nil: none listed).
func (d *device) migAt(gi, ci uint32) *migInstance {
	for _, m := range d.migs {
		if uint32(m.gi) == gi && uint32(m.ci) == ci {
			return m
		}
	}
	return nil
}

func (d *device) newMIG(mh nvml.Device, uuid string) *migInstance {
	m := &migInstance{h: mh, gi: -1, ci: -1}
	if v, ok := read(d, "nvmlDeviceGetGpuInstanceId", "", mh.GetGpuInstanceId); ok {
		m.gi = v
	}
	if v, ok := read(d, "nvmlDeviceGetComputeInstanceId", "", mh.GetComputeInstanceId); ok {
		m.ci = v
	}
	profile := ""
	// A MIG instance's name is asked, and its refusal remembered, apart
	// from the GPU's own.
	if v, ok := read(d, "nvmlDeviceGetName", "mig", mh.GetName); ok {
		profile = migProfile(v)
	}
	m.ent = &entity{
		hwID:   uuid,
		hwName: d.ent.hwName + "/gi" + strconv.Itoa(m.gi) + "/ci" + strconv.Itoa(m.ci),
		parent: d.ent.hwID,
		mig: []kv{
			num("nvidia.mig.gpu_instance_id", int64(m.gi)),
			num("nvidia.mig.compute_instance_id", int64(m.ci)),
			str("nvidia.mig.profile", profile),
		},
	}
	return m
}

// dropMIG keeps live, frees the GPM samples of GPU instances that went
// away, and forgets what the GPU remembered of their calls (refusals and
// counters are kept per MIG UUID and GPU instance: a repartitioned GPU
// would otherwise grow the memory by every instance it ever had).
func (d *device) dropMIG(live []*migInstance) {
	keep := make(map[int]bool, len(live))
	for _, m := range live {
		keep[m.gi] = true
	}
	for gi, g := range d.gis {
		if !keep[gi] {
			g.gpm.free()
			delete(d.gis, gi)
		}
	}
	if migGone(d.migs, live) {
		d.pruneMIGCalls(live)
	}
	d.migs = live
}

// migGone says whether an instance of old is not in live.
func migGone(old, live []*migInstance) bool {
	for _, o := range old {
		if !slices.ContainsFunc(live, func(m *migInstance) bool { return m.ent.hwID == o.ent.hwID && m.gi == o.gi }) {
			return true
		}
	}
	return false
}

// pruneMIGCalls drops the call memory of MIG instances not in live: keys
// "mig:<MIG UUID>" and "mig:gi<G>".
func (d *device) pruneMIGCalls(live []*migInstance) {
	keep := make(map[string]bool, 2*len(live))
	for _, m := range live {
		keep["mig:"+m.ent.hwID] = true
		keep["mig:gi"+strconv.Itoa(m.gi)] = true
	}
	stale := func(variant string) bool { return strings.HasPrefix(variant, "mig:") && !keep[variant] }
	for k := range d.calls.refused {
		if stale(k.variant) {
			delete(d.calls.refused, k)
		}
	}
	for k := range d.calls.counters {
		if stale(k.variant) {
			delete(d.calls.counters, k)
		}
	}
}
