package nvmlreceiver

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
	"github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver/internal/metadata"
)

// xidWaitMillis bounds one wait on the event set, and so how long shutdown
// waits for the watcher. Tests shorten it.
var xidWaitMillis uint32 = 500

// waitMillis is one event wait: xidWaitMillis, or less than half of
// call_timeout, so that shutdown, which waits for the watcher at most
// call_timeout, finds it out of NVML and can close the library.
func (w *xidWatcher) waitMillis() uint32 {
	half := w.s.cfg.callTimeout().Milliseconds() / 2
	return uint32(max(1, min(int64(xidWaitMillis), half-1)))
}

// xidRetryEvery is how often a GPU whose registration for XID events failed
// (it races with the driver's own setup on a fresh node) is tried again.
// Tests shorten it.
var xidRetryEvery = 30 * time.Second

// xidCounts is one GPU's XID tally, written by the watcher and read by the
// GPU's worker.
type xidCounts struct {
	mu       sync.Mutex
	start    pcommon.Timestamp
	counts   map[uint64]uint64
	failed   bool // an XID that fails the GPU arrived since the last status
	degraded bool
}

type xidCount struct{ code, count uint64 }

func (x *xidCounts) record(code uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.counts == nil {
		x.counts = map[uint64]uint64{}
	}
	x.counts[code]++
	x.failed = x.failed || xidFailed[code]
	x.degraded = x.degraded || xidDegraded[code]
}

// xidInterval is what one scrape learns from the XID tally.
type xidInterval struct {
	start            pcommon.Timestamp
	counts           []xidCount
	failed, degraded bool // an XID of that class arrived since the last scrape
}

// take snapshots the counts and clears the interval's flags in one step, so
// a count and the status it implies always land in the same scrape.
func (x *xidCounts) take() xidInterval {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := xidInterval{start: x.start, counts: make([]xidCount, 0, len(x.counts)), failed: x.failed, degraded: x.degraded}
	for code, n := range x.counts {
		out.counts = append(out.counts, xidCount{code, n})
	}
	sort.Slice(out.counts, func(i, j int) bool { return out.counts[i].code < out.counts[j].code })
	x.failed, x.degraded = false, false
	return out
}

// recovered is the tally when the GPU comes back from a reset. The counts
// are the receiver's own, not a driver counter that a reset clears, so
// they go on, XIDs seen while the GPU was lost included; the interval's
// failed and degraded flags are dropped, since the lost GPU was reported
// failed meanwhile and must not be reported failed again for an interval
// after it is back.
func (x *xidCounts) recovered() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.failed, x.degraded = false, false
}

// xidDescriptions are the XIDs an operator meets most, from NVIDIA's XID catalogue.
var xidDescriptions = map[uint64]string{
	13: "graphics engine exception", 31: "GPU memory page fault", 43: "GPU stopped processing",
	45: "preemptive cleanup, due to previous errors", 48: "double bit ECC error", 61: "internal micro-controller breakpoint/warning",
	62: "internal micro-controller halt", 63: "ECC page retirement or row remapping recording event",
	64: "ECC page retirement or row remapper recording failure", 69: "graphics engine class error",
	74: "NVLink error", 79: "GPU has fallen off the bus", 92: "high single-bit ECC error rate",
	94: "contained ECC error", 95: "uncontained ECC error", 119: "GSP RPC timeout", 120: "GSP error",
}

func xidDescription(code uint64) string {
	if d, ok := xidDescriptions[code]; ok {
		return d
	}
	return "see NVIDIA's XID catalogue"
}

// xidWatcher is the one goroutine per receiver that waits on the NVML event
// set for XID critical errors.
type xidWatcher struct {
	s    *session
	set  nvml.EventSet
	done chan struct{}
	wg   sync.WaitGroup

	// devices are the GPUs registered with set, and the handle generation
	// each was registered with; owned by the watcher's goroutine once it
	// runs. watching is how many, for anyone.
	devices  []*device
	gens     map[*device]int64
	watching atomic.Int32
	// failed are GPUs whose registration failed, tried again every
	// xidRetryEvery; owned like devices.
	failed    []*device
	lastRetry time.Time
	// queued are GPUs found after the watcher started, registered by its
	// goroutine between two waits.
	mu     sync.Mutex
	queued []*device
}

func startXIDWatcher(s *session) *xidWatcher {
	wait := "nvmlEventSetWait"
	if !s.has(wait) {
		wait = "nvmlEventSetWait_v2"
	}
	if !s.has("nvmlEventSetCreate", "nvmlDeviceRegisterEvents", "nvmlDeviceGetSupportedEventTypes", "nvmlEventSetFree", wait) {
		s.logger.Info("the driver lacks NVML event functions; XID errors are not reported")
		return nil
	}
	set, ret := s.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		s.tel.nvmlError("nvmlEventSetCreate", ret)
		s.logger.Warn("cannot create an NVML event set; XID errors are not reported", zap.String("code", returnName(ret)))
		return nil
	}
	w := &xidWatcher{s: s, set: set, done: make(chan struct{}), gens: map[*device]int64{}, lastRetry: time.Now()}
	w.register(s.devices)
	if len(w.devices) == 0 && len(w.failed) == 0 {
		_ = set.Free()
		return nil
	}
	w.wg.Add(1)
	go w.run()
	return w
}

// register adds GPUs to the event set (again, for one whose handle changed
// with a reset). A GPU that does not report XIDs is left out; one whose
// registration fails is tried again every xidRetryEvery. Called before the
// watcher runs, then only from its goroutine.
func (w *xidWatcher) register(devices []*device) {
	s := w.s
	for _, d := range devices {
		gen := d.handleGen.Load()
		h := d.handle()
		types, ret := h.GetSupportedEventTypes()
		if ret == nvml.SUCCESS && types&nvml.EventTypeXidCriticalError == 0 {
			s.logger.Debug("GPU does not report XID events", zap.String("hw.id", d.ent.hwID))
			continue
		}
		if ret == nvml.SUCCESS {
			ret = h.RegisterEvents(nvml.EventTypeXidCriticalError, w.set)
		}
		if ret != nvml.SUCCESS {
			s.tel.nvmlError("nvmlDeviceRegisterEvents", ret)
			if !slices.Contains(w.failed, d) {
				s.logger.Warn("cannot watch XID events yet; trying again", zap.String("hw.id", d.ent.hwID),
					zap.String("code", returnName(ret)), zap.Duration("retry_every", xidRetryEvery))
				w.failed = append(w.failed, d)
			}
			continue
		}
		w.failed = slices.DeleteFunc(w.failed, func(f *device) bool { return f == d })
		if _, known := w.gens[d]; !known {
			w.devices = append(w.devices, d)
		}
		w.gens[d] = gen
		w.watching.Store(int32(len(w.devices)))
	}
}

// maintain registers what needs it before a wait: GPUs found late, GPUs
// back from a reset with a new handle, and failed registrations when due.
func (w *xidWatcher) maintain() {
	w.registerQueued()
	var again []*device
	for _, d := range w.devices {
		if d.handleGen.Load() != w.gens[d] {
			again = append(again, d)
		}
	}
	if len(w.failed) > 0 && time.Since(w.lastRetry) >= xidRetryEvery {
		w.lastRetry = time.Now()
		again = append(again, w.failed...)
	}
	if len(again) > 0 {
		w.register(again)
	}
}

// watch hands GPUs found after start to the watcher's goroutine, which
// registers them before its next wait (NVML calls stay on one goroutine,
// and a driver hung in a wait never blocks the scrape that found them).
func (w *xidWatcher) watch(devices []*device) {
	w.mu.Lock()
	w.queued = append(w.queued, devices...)
	w.mu.Unlock()
}

func (w *xidWatcher) registerQueued() {
	w.mu.Lock()
	q := w.queued
	w.queued = nil
	w.mu.Unlock()
	if len(q) > 0 {
		w.register(q)
	}
}

// stopWithin stops the watcher, waiting for it at most bound; false when
// it is still inside NVML or the logs pipeline (its event set is then
// left alone).
func (w *xidWatcher) stopWithin(bound time.Duration) bool {
	if w == nil {
		return true
	}
	close(w.done)
	stopped := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
		_ = w.set.Free()
		return true
	case <-time.After(bound):
		return false
	}
}

func (w *xidWatcher) run() {
	defer w.wg.Done()
	var failure periodic.ErrorLatch
	for {
		select {
		case <-w.done:
			return
		default:
		}
		w.maintain()
		data, ret := w.set.Wait(w.waitMillis())
		switch ret {
		case nvml.SUCCESS:
			failure.Changed(nil)
		case nvml.ERROR_TIMEOUT:
			continue
		default:
			w.s.tel.nvmlError("nvmlEventSetWait", ret)
			if failure.Changed(fmt.Errorf("%s", returnName(ret))) {
				w.s.logger.Warn("waiting for XID events failed; retrying", zap.String("code", returnName(ret)))
			}
			select {
			case <-w.done:
				return
			case <-time.After(time.Duration(xidWaitMillis) * time.Millisecond):
			}
			continue
		}
		if data.EventType&nvml.EventTypeXidCriticalError == 0 {
			continue
		}
		d := w.deviceByHandle(data.Device)
		if d == nil {
			continue
		}
		d.xid.record(data.EventData)
		w.emitLog(d, data)
	}
}

// emitLog sends an XID event to the logs pipeline, when there is one.
func (w *xidWatcher) emitLog(d *device, data nvml.EventData) {
	next := w.s.logs.Load()
	if next == nil {
		return
	}
	code := data.EventData
	ld := plog.NewLogs()
	sl := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	lr := sl.LogRecords().AppendEmpty()
	now := pcommon.NewTimestampFromTime(time.Now())
	lr.SetTimestamp(now)
	lr.SetObservedTimestamp(now)
	lr.SetEventName("nvidia.gpu.xid")
	lr.SetSeverityNumber(plog.SeverityNumberError)
	lr.SetSeverityText("ERROR")
	if xidFailed[code] {
		lr.SetSeverityNumber(plog.SeverityNumberFatal)
		lr.SetSeverityText("FATAL")
	}
	lr.Body().SetStr(fmt.Sprintf("XID %d on %s (%s): %s", code, d.ent.hwName, d.ent.hwID, xidDescription(code)))
	attrs := lr.Attributes()
	attrs.PutStr("hw.id", d.ent.hwID)
	attrs.PutStr("hw.name", d.ent.hwName)
	attrs.PutInt("nvidia.xid.code", int64(code))
	attrs.PutStr("nvidia.xid.description", xidDescription(code))
	if data.GpuInstanceId != 0xFFFFFFFF {
		attrs.PutInt("nvidia.mig.gpu_instance_id", int64(data.GpuInstanceId))
	}
	if data.ComputeInstanceId != 0xFFFFFFFF {
		attrs.PutInt("nvidia.mig.compute_instance_id", int64(data.ComputeInstanceId))
	}
	if err := (*next).ConsumeLogs(context.Background(), ld); err != nil {
		w.s.logger.Warn("the logs pipeline refused an XID record", zap.Uint64("xid", code), zap.Error(err))
	}
}

// deviceByHandle maps an event's device handle to the GPU it belongs to.
func (w *xidWatcher) deviceByHandle(h nvml.Device) *device {
	for _, d := range w.devices {
		if d.handle() == h {
			return d
		}
	}
	if uuid, ret := h.GetUUID(); ret == nvml.SUCCESS {
		for _, d := range w.devices {
			if strings.EqualFold(d.ent.hwID, uuid) {
				return d
			}
		}
	}
	return nil
}
