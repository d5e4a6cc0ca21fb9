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
	mu     sync.Mutex
	start  pcommon.Timestamp
	counts map[uint64]uint64
	// code is the XID with the worst verdict that arrived since the last
	// status (0: none).
	code uint64
}

type xidCount struct{ code, count uint64 }

func (x *xidCounts) record(code uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.counts == nil {
		x.counts = map[uint64]uint64{}
	}
	x.counts[code]++
	if v, ok := xidVerdicts[code]; ok && (x.code == 0 || v.rank() > xidVerdicts[x.code].rank()) {
		x.code = code
	}
}

// xidInterval is what one scrape learns from the XID tally.
type xidInterval struct {
	start  pcommon.Timestamp
	counts []xidCount
	code   uint64 // the XID with the worst verdict since the last scrape (0: none)
}

// take snapshots the counts and clears the interval's XID in one step, so
// a count and the verdict it implies always land in the same scrape.
func (x *xidCounts) take() xidInterval {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := xidInterval{start: x.start, counts: make([]xidCount, 0, len(x.counts)), code: x.code}
	for code, n := range x.counts {
		out.counts = append(out.counts, xidCount{code, n})
	}
	sort.Slice(out.counts, func(i, j int) bool { return out.counts[i].code < out.counts[j].code })
	x.code = 0
	return out
}

// recovered is the tally when the GPU comes back from a reset. The counts
// are the receiver's own, not a driver counter that a reset clears, so
// they go on, XIDs seen while the GPU was lost included; the interval's
// XID is dropped, since the lost GPU was reported failed meanwhile and the
// reset that brought it back cleared what the XID asked for.
func (x *xidCounts) recovered() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.code = 0
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
	// The XID record budget (emitLogs), owned like devices.
	batch        []xidEvent
	windowStart  time.Time
	sentInWindow int
	dropped      map[*device]int
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
	w := &xidWatcher{s: s, set: set, done: make(chan struct{}), gens: map[*device]int64{}, lastRetry: time.Now(), windowStart: time.Now()}
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
			w.emitLogs(nil) // a window that ended sends its dropped count
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
		// The events already queued are taken with this one (waits of 0
		// ms, at most xidBatchMax) and sent as one batch.
		batch := w.batch[:0]
		for {
			if data.EventType&nvml.EventTypeXidCriticalError != 0 {
				if d := w.deviceByHandle(data.Device); d != nil {
					d.xid.record(data.EventData)
					batch = append(batch, xidEvent{d, data})
				}
			}
			if len(batch) >= xidBatchMax {
				break
			}
			if data, ret = w.set.Wait(0); ret != nvml.SUCCESS {
				break
			}
		}
		w.batch = batch
		w.emitLogs(batch)
	}
}

// xidBatchMax bounds the events taken from the event set in one go;
// xidRecordsPerWindow bounds the XID records sent per collection interval
// (an XID storm, a GPU repeating an error thousands of times a second,
// must not flood the logs pipeline): past it the events are still counted
// in hw.errors, and one record per GPU says how many were not sent. Tests
// change them.
var (
	xidBatchMax         = 256
	xidRecordsPerWindow = 100
)

type xidEvent struct {
	d    *device
	data nvml.EventData
}

// window is the span xidRecordsPerWindow applies to: the collection
// interval.
func (w *xidWatcher) window() time.Duration {
	if iv := w.s.cfg.CollectionInterval; iv > 0 {
		return iv
	}
	return 10 * time.Second
}

// emitLogs sends a batch of XID events to the logs pipeline, when there is
// one, as one call, within the window's budget, and the count of the
// records left out of the previous window.
func (w *xidWatcher) emitLogs(batch []xidEvent) {
	now := time.Now()
	if now.Sub(w.windowStart) >= w.window() {
		w.flushDropped()
		w.windowStart, w.sentInWindow = now, 0
	}
	next := w.s.logs.Load()
	if next == nil || len(batch) == 0 {
		return
	}
	ld, records := newLogBatch()
	for _, e := range batch {
		if w.sentInWindow >= xidRecordsPerWindow {
			if w.dropped == nil {
				w.dropped = map[*device]int{}
			}
			w.dropped[e.d]++
			w.s.tel.xidDropped.Add(context.Background(), 1)
			continue
		}
		w.sentInWindow++
		appendXIDRecord(records, e.d, e.data)
	}
	if records.Len() == 0 {
		return
	}
	w.s.sendLogs(*next, ld, 0, "XID records")
}

// flushDropped sends, per GPU, how many XID records the last window left
// out: event nvidia.gpu.xid.dropped, severity WARN, attribute
// nvidia.xid.dropped.
func (w *xidWatcher) flushDropped() {
	next := w.s.logs.Load()
	if next == nil || len(w.dropped) == 0 {
		w.dropped = nil
		return
	}
	ld, records := newLogBatch()
	now := pcommon.NewTimestampFromTime(time.Now())
	for _, d := range w.devices {
		n := w.dropped[d]
		if n == 0 {
			continue
		}
		lr := records.AppendEmpty()
		lr.SetTimestamp(now)
		lr.SetObservedTimestamp(now)
		lr.SetEventName("nvidia.gpu.xid.dropped")
		lr.SetSeverityNumber(plog.SeverityNumberWarn)
		lr.SetSeverityText("WARN")
		lr.Body().SetStr(fmt.Sprintf("XID storm on %s (%s): %d more XID events in %s were not sent as records; hw.errors counts every one",
			d.ent.hwName, d.ent.hwID, n, w.window()))
		lr.Attributes().PutStr("hw.id", d.ent.hwID)
		lr.Attributes().PutStr("hw.name", d.ent.hwName)
		lr.Attributes().PutInt("nvidia.xid.dropped", int64(n))
	}
	w.dropped = nil
	w.s.sendLogs(*next, ld, 0, "XID storm records")
}

// appendXIDRecord adds one XID event's record to records.
func appendXIDRecord(records plog.LogRecordSlice, d *device, data nvml.EventData) {
	code := data.EventData
	lr := records.AppendEmpty()
	now := pcommon.NewTimestampFromTime(time.Now())
	lr.SetTimestamp(now)
	lr.SetObservedTimestamp(now)
	lr.SetEventName("nvidia.gpu.xid")
	lr.SetSeverityNumber(plog.SeverityNumberError)
	lr.SetSeverityText("ERROR")
	if xidVerdicts[code].state == stateFailed {
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
