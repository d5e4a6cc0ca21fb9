package nvmlreceiver

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"
)

// job is one scrape's request to a GPU's worker.
type job struct {
	now  pcommon.Timestamp
	done chan<- *device
}

// callKey names one NVML call on one GPU, for the "not supported" memory:
// the function and, where one function reads several things, which one.
type callKey struct {
	fn, variant string
}

// counterState follows one cumulative driver counter, to give it a start
// time and a new one when the counter goes backwards (driver reload, reset).
type counterState struct {
	last  uint64
	start pcommon.Timestamp
}

// device is one GPU: its identity, its worker, and the state each of its
// subsystems keeps from one scrape to the next, each in the subsystem's
// own type and file.
type device struct {
	drv   *driver
	index int
	ent   *entity

	handleMu sync.Mutex
	h        nvml.Device
	// handleGen counts handle changes (a recovery reopens the GPU), so the
	// XID watcher registers the new handle.
	handleGen atomic.Int64

	jobs      chan job
	busy      atomic.Bool
	hungSince atomic.Int64
	// silentRuns counts the scrapes in a row in which the GPU answered
	// nothing (its worker, on all-error answers; the scrape, on no answer);
	// verdict is the verdict last reported (status.go). Atomic: a hung
	// GPU's worker and the scrape both write them.
	silentRuns atomic.Int32
	verdict    atomic.Pointer[verdict]
	// decided is the verdict of the last collect (hasVerdict: there is
	// one), and changes the verdict changes of this scrape, owned like buf;
	// standFor is the GPU a scrape's stand-in reports for.
	decided    verdict
	hasVerdict bool
	changes    []healthChange
	standFor   *device

	// onlyMIG, when set, are the MIG instances the config selects on this
	// GPU (by UUID); the others are not reported. Read-only.
	onlyMIG map[string]bool

	// Owned by the scrape: the start of this GPU's hw.status series as of
	// its last answer, for the status the scrape reports when it does not
	// answer.
	statusStart pcommon.Timestamp

	// Owned by the worker goroutine.
	discovered  pcommon.Timestamp
	calls       callMemo       // below: unsupported calls, cumulative counters
	health      healthState    // status.go
	util        utilCursors    // collect.go: utilization samples
	nvlink      nvlinkState    // collect.go
	pcie        pcieCounters   // collect.go: PCIe byte counters for a rate
	procs       processCursor  // process.go
	gpm         *gpmState      // gpm.go
	limits      limitState     // limits.go
	migs        []*migInstance // mig.go
	gis         map[int]*gpuInstance
	fans        []*entity // collect.go: one per fan, made when first seen
	vgpu        bool      // a vGPU guest (its licence is reported)
	migMode     int       // mig.go: the mode last read, to see it change
	migModeSeen bool
	xid         xidCounts // xid.go
	buf         [numMetrics][]point
}

// callMemo is what a GPU remembers of its NVML calls: the ones it refused
// (NOT_SUPPORTED, NO_PERMISSION) and when, so they are not asked every
// scrape, and the cumulative counters' starts.
type callMemo struct {
	refused  map[callKey]time.Time
	counters map[callKey]*counterState
}

func newCallMemo() callMemo {
	return callMemo{refused: map[callKey]time.Time{}, counters: map[callKey]*counterState{}}
}

func newDevice(drv *driver, index int, h nvml.Device, uuid string, now pcommon.Timestamp) *device {
	d := &device{
		drv: drv, index: index, h: h,
		jobs:        make(chan job, 1),
		discovered:  now,
		statusStart: now,
		calls:       newCallMemo(),
		util:        newUtilCursors(),
		gis:         map[int]*gpuInstance{},
	}
	d.ent = &entity{hwID: uuid, hwName: "nvidia" + strconv.Itoa(index)}
	d.ent.hwName = d.deviceName(index)
	d.ent.info = d.readIdentity()
	for _, a := range d.ent.info {
		if a.k == "nvidia.gpu.virtualization_mode" {
			d.vgpu = a.v == "vgpu"
		}
	}
	d.xid.start = now
	return d
}

// deviceName is the GPU's hw.name: nvidia<minor>, its device node
// /dev/nvidia<minor>, which is not always its NVML index (NVML orders GPUs
// by PCI bus id, the driver numbers minors in probe order); nvidia<index>
// where the driver has no minor number for it. Read once, at discovery.
func (d *device) deviceName(index int) string {
	if minor, ok := read(d, "nvmlDeviceGetMinorNumber", "", d.h.GetMinorNumber); ok && minor >= 0 {
		return "nvidia" + strconv.Itoa(minor)
	}
	return "nvidia" + strconv.Itoa(index)
}

func (d *device) handle() nvml.Device {
	d.handleMu.Lock()
	defer d.handleMu.Unlock()
	return d.h
}

func (d *device) run() {
	for j := range d.jobs {
		d.collect(j.now)
		d.hungSince.Store(0)
		d.busy.Store(false)
		j.done <- d
	}
}

// can says whether an NVML call is worth making: the GPU is not lost, the
// driver has the function, and it has not refused it within
// refused_retry_interval. A refusal is not forever: permissions change, and
// so does what a GPU supports (MIG mode, a reset, a driver update); the
// memory is also cleared on recovery and on a MIG mode change.
func (d *device) can(fn, variant string) bool {
	if d.health.lost || !d.drv.has(fn) {
		return false
	}
	k := callKey{fn, variant}
	at, refused := d.calls.refused[k]
	if !refused {
		return true
	}
	if time.Since(at) < d.drv.refusedRetry {
		return false
	}
	delete(d.calls.refused, k)
	return true
}

// ok interprets an NVML return: NOT_SUPPORTED and NO_PERMISSION are
// remembered (and logged once at debug), a lost GPU is marked lost, other
// errors are counted.
func (d *device) ok(fn, variant string, ret nvml.Return) bool {
	d.health.countReturn(ret)
	switch ret {
	case nvml.SUCCESS:
		return true
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NO_PERMISSION:
		d.calls.refused[callKey{fn, variant}] = time.Now()
		d.drv.logger.Debug("not available on this GPU; asked again later", zap.String("hw.id", d.ent.hwID),
			zap.String("function", fn), zap.String("variant", variant), zap.String("code", returnName(ret)),
			zap.Duration("retry_after", d.drv.refusedRetry))
	case nvml.ERROR_GPU_IS_LOST, nvml.ERROR_RESET_REQUIRED:
		d.markLost(fn, ret)
	}
	d.drv.tel.nvmlError(fn, ret)
	return false
}

// read makes one NVML call through can and ok: no call (and false) where
// can says it is not worth making, else the call's value and whether ok
// accepted its return.
func read[T any](d *device, fn, variant string, call func() (T, nvml.Return)) (T, bool) {
	if !d.can(fn, variant) {
		var zero T
		return zero, false
	}
	v, ret := call()
	return v, d.ok(fn, variant, ret)
}

func (d *device) markLost(fn string, ret nvml.Return) {
	if d.health.lost {
		return
	}
	d.health.lost = true
	d.health.lostReason = returnName(ret)
	d.drv.logger.Warn("GPU lost; reporting it failed until it comes back", zap.String("hw.id", d.ent.hwID),
		zap.String("hw.name", d.ent.hwName), zap.String("function", fn), zap.String("code", d.health.lostReason))
}

// tryRecover reopens a lost GPU by UUID (after a reset its old handle is
// dead). Its cumulative counters start over.
func (d *device) tryRecover(now pcommon.Timestamp) bool {
	if !d.drv.has("nvmlDeviceGetHandleByUUID") {
		return false
	}
	h, ret := d.drv.lib.DeviceGetHandleByUUID(d.ent.hwID)
	if ret != nvml.SUCCESS {
		return false
	}
	if _, ret := h.GetUUID(); ret != nvml.SUCCESS {
		return false
	}
	d.handleMu.Lock()
	d.h = h
	d.handleMu.Unlock()
	d.handleGen.Add(1)
	// What a reset invalidates: every subsystem starts over, and what
	// the GPU refused before is asked again.
	d.health = healthState{}
	d.silentRuns.Store(0)
	d.calls = newCallMemo()
	d.util = newUtilCursors()
	d.procs = processCursor{}
	d.nvlink = nvlinkState{}
	d.pcie = pcieCounters{}
	d.limits = limitState{}
	if d.gpm != nil && d.gpm.supported {
		d.gpm.pair.free()
	}
	d.gpm = nil
	for _, g := range d.gis {
		g.gpm.free()
	}
	d.gis = map[int]*gpuInstance{}
	d.discovered = now
	d.xid.recovered()
	d.drv.logger.Info("GPU is back", zap.String("hw.id", d.ent.hwID), zap.String("hw.name", d.ent.hwName))
	return true
}

// cumulative turns a driver counter into a value and its start time.
//
// The driver's counters run from a moment the receiver does not know (the
// driver's load, the GPU's last reset), so the first point is a "true reset
// point", the collector's convention for an unknown start (the
// metricstarttime processor's default): its start time is its own time and
// its value the driver's total. A rate over it and the next point is then
// right, where a start at discovery would have claimed the driver's whole
// lifetime total as the first interval's increase.
func (d *device) cumulative(fn, variant string, v uint64, now pcommon.Timestamp) pcommon.Timestamp {
	k := callKey{fn, variant}
	c, ok := d.calls.counters[k]
	if !ok {
		c = &counterState{last: v, start: now}
		d.calls.counters[k] = c
		return c.start
	}
	if v < c.last {
		// The counter went backwards: the driver was reloaded or the GPU
		// reset. Start a new series rather than report a negative rate.
		c.start = now
	}
	c.last = v
	return c.start
}

func (d *device) resetBuffers() {
	for i := range d.buf {
		d.buf[i] = d.buf[i][:0]
	}
}

// collect reads everything enabled from the GPU into d.buf.
func (d *device) collect(now pcommon.Timestamp) {
	d.resetBuffers()
	d.hasVerdict = false
	if d.health.lost && !d.tryRecover(now) {
		d.report(d.decide(xidInterval{}))
		return
	}
	xids := d.xid.take()
	d.emitInfo()
	var links []int
	if d.nvlinkOn() {
		links = d.activeLinks(d.handle())
	}
	f := d.readFields(d.handle(), links)
	d.readRecoveryAction(&f)
	d.collectUtilization()
	d.collectMemory(d.handle(), d.ent, "")
	d.collectPower(now, &f)
	d.collectThermal(&f)
	d.collectClocks(now, &f)
	d.collectPCIe(now, &f)
	d.collectLimits()
	d.collectNVLink(now, links, &f)
	d.collectErrors(now, xids, &f)
	d.collectECC(now, &f)
	d.collectMisc()
	d.collectGPM()
	d.collectMIG()
	d.collectProcesses()
	d.report(d.decide(xids))
}
