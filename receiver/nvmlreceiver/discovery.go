package nvmlreceiver

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"
)

// pendingGPU is a GPU NVML counts but that could not be opened (no handle,
// or no UUID): it is reported failed under what is known of it, and opened
// again at every rediscovery.
type pendingGPU struct {
	index  int
	reason string
	since  pcommon.Timestamp
	ent    *entity
}

// discovery is one enumeration's result: the GPUs opened, the ones that
// could not be.
type discovery struct {
	devices []*device
	pending []*pendingGPU
	err     error
}

// enumerate lists the GPUs NVML counts and the config selects, opening the
// ones whose index is not in known, under the initialisation drv. prev
// carries the GPUs that failed before, so one that still fails keeps its
// series' start. It reads only drv and the config, so it may run outside
// the scrape.
func (s *session) enumerate(drv *driver, now pcommon.Timestamp, known map[int]bool, prev map[int]*pendingGPU) discovery {
	if !drv.has("nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetUUID") {
		return discovery{err: fmt.Errorf("the NVML library lacks device enumeration")}
	}
	n, ret := drv.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return discovery{err: fmt.Errorf("nvmlDeviceGetCount: %s", returnName(ret))}
	}
	want := map[string]bool{}
	for _, d := range s.cfg.Devices {
		want[d] = true
	}
	var out discovery
	for i := 0; i < n; i++ {
		if known[i] {
			continue
		}
		idx := strconv.Itoa(i)
		failed := func(reason, busID string) {
			// A GPU selected by UUID cannot be recognised without one: only
			// an index in devices (or no devices) reports it.
			if len(want) > 0 && !want[idx] {
				return
			}
			p := &pendingGPU{index: i, reason: reason, since: now}
			if old, ok := prev[i]; ok {
				p.since = old.since
			}
			id := "index:" + idx
			if busID != "" {
				id = busID
			}
			p.ent = &entity{hwID: id, hwName: "nvidia" + idx}
			out.pending = append(out.pending, p)
		}
		h, ret := drv.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			drv.tel.nvmlError("nvmlDeviceGetHandleByIndex", ret)
			failed("nvmlDeviceGetHandleByIndex: "+returnName(ret), "")
			continue
		}
		uuid, ret := h.GetUUID()
		if ret != nvml.SUCCESS {
			drv.tel.nvmlError("nvmlDeviceGetUUID", ret)
			busID := ""
			if drv.has("nvmlDeviceGetPciInfo") {
				if pci, ret := h.GetPciInfo(); ret == nvml.SUCCESS {
					busID = pciBusID(pci)
				}
			}
			failed("nvmlDeviceGetUUID: "+returnName(ret), busID)
			continue
		}
		var onlyMIG map[string]bool
		if len(want) > 0 && !want[idx] && !want[uuid] {
			// A MIG instance's UUID selects its parent GPU and, of its
			// instances, the ones listed.
			if onlyMIG = drv.selectedMIGs(h, want); len(onlyMIG) == 0 {
				continue
			}
		}
		d := newDevice(drv, i, h, uuid, now)
		d.onlyMIG = onlyMIG
		out.devices = append(out.devices, d)
	}
	if len(want) > 0 && len(known) == 0 && len(out.devices) == 0 && len(out.pending) == 0 {
		drv.logger.Warn("none of the configured devices exist", zap.Strings("devices", s.cfg.Devices), zap.Int("gpus", n))
	}
	return out
}

// selectedMIGs lists the MIG instances of GPU h whose UUIDs devices names.
func (d *driver) selectedMIGs(h nvml.Device, want map[string]bool) map[string]bool {
	if !d.has("nvmlDeviceGetMigMode", "nvmlDeviceGetMaxMigDeviceCount", "nvmlDeviceGetMigDeviceHandleByIndex") {
		return nil
	}
	if mode, _, ret := h.GetMigMode(); ret != nvml.SUCCESS || mode != nvml.DEVICE_MIG_ENABLE {
		return nil
	}
	n, ret := h.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil
	}
	var out map[string]bool
	for k := 0; k < n; k++ {
		mh, ret := h.GetMigDeviceHandleByIndex(k)
		if ret != nvml.SUCCESS {
			continue
		}
		if uuid, ret := mh.GetUUID(); ret == nvml.SUCCESS && want[uuid] {
			if out == nil {
				out = map[string]bool{}
			}
			out[uuid] = true
		}
	}
	return out
}

// setPending replaces the GPUs that could not be opened, logging the ones
// that are new or fail differently.
func (s *session) setPending(pending []*pendingGPU) {
	before := map[int]string{}
	for _, p := range s.pending {
		before[p.index] = p.reason
	}
	for _, p := range pending {
		if before[p.index] != p.reason {
			s.logger.Warn("cannot open GPU; reporting it failed and trying again",
				zap.Int("index", p.index), zap.String("hw.id", p.ent.hwID), zap.String("reason", p.reason),
				zap.Duration("retry_every", s.cfg.RediscoverInterval))
		}
	}
	s.pending = pending
}

// startDiscovery enumerates the GPUs again every rediscover_interval: GPUs
// added to the VM, and the ones that could not be opened. It runs beside
// the scrape (a hung driver must not stop the scrape from reporting), one
// at a time; mergeDiscovery takes its result at a later scrape. Its NVML
// calls count as the initialisation's (NVML is not shut down under them).
func (s *session) startDiscovery(at time.Time, now pcommon.Timestamp) {
	if s.discovering || at.Sub(s.lastDiscovery) < s.cfg.RediscoverInterval {
		return
	}
	s.discovering, s.lastDiscovery = true, at
	known := make(map[int]bool, len(s.devices))
	for _, d := range s.devices {
		known[d.index] = true
	}
	prev := make(map[int]*pendingGPU, len(s.pending))
	for _, p := range s.pending {
		prev[p.index] = p
	}
	results, ref := s.discoveries, s.ref
	ref.goCall(func() { results <- s.enumerate(ref.drv, now, known, prev) })
}

// mergeDiscovery takes a finished enumeration's result, if there is one:
// new GPUs get their worker (and XID watch), failed ones are replaced.
func (s *session) mergeDiscovery() {
	var r discovery
	select {
	case r = <-s.discoveries:
	default:
		return
	}
	s.discovering = false
	if r.err != nil {
		s.logger.Debug("rediscovery failed", zap.Error(r.err))
		return
	}
	for _, d := range r.devices {
		s.devices = append(s.devices, d)
		s.ref.goCall(d.run)
		s.logger.Info("GPU found", zap.Int("index", d.index), zap.String("hw.id", d.ent.hwID), zap.String("hw.name", d.ent.hwName))
	}
	sort.Slice(s.devices, func(i, j int) bool { return s.devices[i].index < s.devices[j].index })
	s.setPending(r.pending)
	if len(r.devices) > 0 {
		if s.watcher == nil {
			s.watcher = startXIDWatcher(s)
		} else {
			s.watcher.watch(r.devices)
		}
	}
}

// unopened reports the GPUs that could not be opened: hw.status failed
// (reason unopened, with its health record), under their index or PCI bus
// id.
func (s *session) unopened() []*device {
	out := make([]*device, 0, len(s.pending))
	for _, p := range s.pending {
		stand := &device{drv: &s.driver, index: p.index, ent: p.ent, discovered: p.since}
		v := verdict{stateFailed, reasonUnopened}
		stand.emitVerdict(v)
		stand.decided, stand.hasVerdict = v, true
		out = append(out, stand)
	}
	return out
}
