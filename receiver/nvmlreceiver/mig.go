package nvmlreceiver

import (
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.uber.org/zap"
)

// migInstance is one MIG device of a GPU in MIG mode.
type migInstance struct {
	ent *entity
	h   nvml.Device
	gi  int
	gpm *gpmPair
}

// migProfile turns a MIG device name ("NVIDIA H100 80GB HBM3 MIG 1g.10gb")
// into its profile ("1g.10gb").
func migProfile(name string) string {
	if i := strings.LastIndex(name, "MIG "); i >= 0 {
		return name[i+len("MIG "):]
	}
	return name
}

// collectMIG reports each MIG instance's memory and, where GPM supports MIG
// (Hopper+), its GPM utilization. Instances are listed every scrape: an
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
	for _, m := range live {
		d.collectMemory(m.h, m.ent, "mig:"+m.ent.hwID)
		// The refusal is remembered under the instance it was for, so the
		// check must ask for that same key.
		if d.gpm != nil && d.gpm.supported && d.can("nvmlGpmMigSampleGet", "mig:"+m.ent.hwID) {
			if m.gpm == nil {
				m.gpm = d.newGPMPair("mig")
			}
			if m.gpm != nil {
				gi := m.gi
				d.gpmMeasure(m.gpm, m.ent, "mig:"+m.ent.hwID, func(s nvml.GpmSample) nvml.Return { return d.drv.lib.GpmMigSampleGet(h, gi, s) })
			}
		}
	}
}

func (d *device) newMIG(mh nvml.Device, uuid string) *migInstance {
	m := &migInstance{h: mh, gi: -1}
	ci := -1
	if d.can("nvmlDeviceGetGpuInstanceId", "") {
		if v, ret := mh.GetGpuInstanceId(); d.ok("nvmlDeviceGetGpuInstanceId", "", ret) {
			m.gi = v
		}
	}
	if d.can("nvmlDeviceGetComputeInstanceId", "") {
		if v, ret := mh.GetComputeInstanceId(); d.ok("nvmlDeviceGetComputeInstanceId", "", ret) {
			ci = v
		}
	}
	profile := ""
	if d.can("nvmlDeviceGetName", "") {
		if v, ret := mh.GetName(); d.ok("nvmlDeviceGetName", "mig", ret) {
			profile = migProfile(v)
		}
	}
	m.ent = &entity{
		hwID:   uuid,
		hwName: d.ent.hwName + "/gi" + strconv.Itoa(m.gi) + "/ci" + strconv.Itoa(ci),
		parent: d.ent.hwID,
		mig: []kv{
			num("nvidia.mig.gpu_instance_id", int64(m.gi)),
			num("nvidia.mig.compute_instance_id", int64(ci)),
			str("nvidia.mig.profile", profile),
		},
	}
	return m
}

// dropMIG keeps live and frees the GPM samples of instances that went away.
func (d *device) dropMIG(live []*migInstance) {
	keep := make(map[*migInstance]bool, len(live))
	for _, m := range live {
		keep[m] = true
	}
	for _, m := range d.migs {
		if !keep[m] {
			m.gpm.free()
		}
	}
	d.migs = live
}
