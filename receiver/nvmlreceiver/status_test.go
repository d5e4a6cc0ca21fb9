package nvmlreceiver

import (
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
)

// answerOnly makes every function of GPU i's mock answer ret (what a GPU
// looks like after an XID 119, GSP RPC timeout: ERROR_UNKNOWN to
// everything); restore puts the answers back.
func answerOnly(f *fleet, i int, ret nvml.Return) (restore func()) {
	v := reflect.ValueOf(&f.device(i).Device).Elem()
	saved := map[int]reflect.Value{}
	retType := reflect.TypeOf(ret)
	for k := 0; k < v.NumField(); k++ {
		fld := v.Field(k)
		if fld.Kind() != reflect.Func || fld.IsNil() || !strings.HasSuffix(v.Type().Field(k).Name, "Func") {
			continue
		}
		ft := fld.Type()
		if ft.NumOut() == 0 || ft.Out(ft.NumOut()-1) != retType {
			continue
		}
		saved[k] = reflect.ValueOf(fld.Interface())
		fld.Set(reflect.MakeFunc(ft, func([]reflect.Value) []reflect.Value {
			out := make([]reflect.Value, ft.NumOut())
			for o := range out {
				out[o] = reflect.Zero(ft.Out(o))
			}
			out[len(out)-1] = reflect.ValueOf(ret)
			return out
		}))
	}
	// GPM samples are taken through the library, naming the GPU.
	sample := f.GpmSampleGetFunc
	f.GpmSampleGetFunc = func(d nvml.Device, s nvml.GpmSample) nvml.Return {
		if d == f.Devices[i] {
			return ret
		}
		return sample(d, s)
	}
	return func() {
		for k, fn := range saved {
			v.Field(k).Set(fn)
		}
		f.GpmSampleGetFunc = sample
	}
}

// healthRecords are the nvidia.gpu.health log records sent so far.
func healthRecords(sink *consumertest.LogsSink) []plog.LogRecord {
	var out []plog.LogRecord
	for _, ld := range sink.AllLogs() {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			sls := ld.ResourceLogs().At(i).ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				lrs := sls.At(j).LogRecords()
				for k := 0; k < lrs.Len(); k++ {
					if lrs.At(k).EventName() == "nvidia.gpu.health" {
						out = append(out, lrs.At(k))
					}
				}
			}
		}
	}
	return out
}

func attrStr(lr plog.LogRecord, k string) string {
	v, _ := lr.Attributes().Get(k)
	return v.Str()
}

// A GPU that answers only ERROR_UNKNOWN is failed (unknown_errors) from the
// second such scrape, not at the first, with one health event per change.
func TestHealthUnknownErrorsFailAfterTwoScrapes(t *testing.T) {
	f := newH100Fleet()
	h := startHarness(t, f, testConfig())
	sink := new(consumertest.LogsSink)
	h.s.setLogsConsumer(sink)
	md := h.scrape(t)
	st, _ := statusOf(t, md, fixedUUID(2))
	require.Equal(t, "ok", st)

	restore := answerOnly(f, 2, nvml.ERROR_UNKNOWN)
	md = h.scrape(t)
	st, _ = statusOf(t, md, fixedUUID(2))
	require.Equal(t, "ok", st, "one scrape of errors is not yet a failure")
	require.Empty(t, points(md, "hw.power", map[string]any{"hw.id": fixedUUID(2)}))
	for range 3 {
		md = h.scrape(t)
		st, reason := statusOf(t, md, fixedUUID(2))
		require.Equal(t, [2]string{"failed", "unknown_errors"}, [2]string{st, reason})
		st, _ = statusOf(t, md, fixedUUID(1))
		require.Equal(t, "ok", st, "the others are not affected")
	}
	recs := healthRecords(sink)
	require.Len(t, recs, 1, "one event per change")
	require.Equal(t, fixedUUID(2), attrStr(recs[0], "hw.id"))
	require.Equal(t, "failed", attrStr(recs[0], "hw.state"))
	require.Equal(t, "unknown_errors", attrStr(recs[0], "nvidia.gpu.health.reason"))
	require.Equal(t, "ok", attrStr(recs[0], "nvidia.gpu.health.previous_state"))
	require.Contains(t, recs[0].Body().Str(), "reset")
	require.Equal(t, plog.SeverityNumberError, recs[0].SeverityNumber())

	restore()
	md = h.scrape(t)
	st, _ = statusOf(t, md, fixedUUID(2))
	require.Equal(t, "ok", st, "answering again is the GPU's own state saying it is back")
	closed := points(md, "hw.status", map[string]any{"hw.id": fixedUUID(2), "nvidia.gpu.health.reason": "unknown_errors"})
	require.Len(t, closed, 1)
	require.Equal(t, int64(0), closed[0].IntValue(), "the failed series is closed")
	recs = healthRecords(sink)
	require.Len(t, recs, 2)
	require.Equal(t, "ok", attrStr(recs[1], "hw.state"))
}

// ERROR_TIMEOUT answers count like ERROR_UNKNOWN ones.
func TestHealthTimeoutAnswersFailAfterTwoScrapes(t *testing.T) {
	f := newH100Fleet()
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	defer answerOnly(f, 4, nvml.ERROR_TIMEOUT)()
	h.scrape(t)
	st, reason := statusOf(t, h.scrape(t), fixedUUID(4))
	require.Equal(t, [2]string{"failed", "unknown_errors"}, [2]string{st, reason})
}

// withRecoveryAction makes GPU i's field values answer the GPU recovery
// action field (230) with *action.
func withRecoveryAction(f *fleet, i int, action *atomic.Uint64) {
	d := f.device(i)
	fields := d.GetFieldValuesFunc
	d.GetFieldValuesFunc = func(fvs []nvml.FieldValue) nvml.Return {
		ret := fields(fvs)
		for k := range fvs {
			if fvs[k].FieldId == nvml.FI_DEV_GET_GPU_RECOVERY_ACTION {
				fvs[k].NvmlReturn = uint32(nvml.SUCCESS)
				fvs[k].ValueType, fvs[k].Value = uint32(nvml.VALUE_TYPE_UNSIGNED_INT), u32(uint32(action.Load()))
			}
		}
		return ret
	}
}

func xidEvent48(f *fleet, i int, code uint64) nvml.EventData {
	return nvml.EventData{Device: f.Devices[i], EventType: nvml.EventTypeXidCriticalError, EventData: code, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
}

// An XID's verdict holds across intervals until the GPU's state says it
// was cleared: here the recovery action field, which asked for a reset,
// going back to NONE.
func TestHealthXIDHoldsUntilRecoveryActionClears(t *testing.T) {
	f := newH100Fleet()
	var action atomic.Uint64
	withRecoveryAction(f, 3, &action)
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	f.xids <- xidEvent48(f, 3, 48)
	require.Eventually(t, func() bool {
		st, _ := statusOf(t, h.scrape(t), fixedUUID(3))
		return st == "degraded"
	}, 5*time.Second, time.Millisecond)
	for range 3 {
		st, reason := statusOf(t, h.scrape(t), fixedUUID(3))
		require.Equal(t, [2]string{"degraded", "xid_48"}, [2]string{st, reason}, "held, not one interval")
	}
	action.Store(uint64(nvml.GPU_RECOVERY_ACTION_GPU_RESET))
	st, reason := statusOf(t, h.scrape(t), fixedUUID(3))
	require.Equal(t, [2]string{"failed", "recovery_action_reset"}, [2]string{st, reason})
	action.Store(uint64(nvml.GPU_RECOVERY_ACTION_DRAIN_AND_RESET))
	st, reason = statusOf(t, h.scrape(t), fixedUUID(3))
	require.Equal(t, [2]string{"degraded", "recovery_action_drain"}, [2]string{st, reason})
	action.Store(uint64(nvml.GPU_RECOVERY_ACTION_NODE_REBOOT))
	st, reason = statusOf(t, h.scrape(t), fixedUUID(3))
	require.Equal(t, [2]string{"failed", "recovery_action_reboot"}, [2]string{st, reason})
	action.Store(uint64(nvml.GPU_RECOVERY_ACTION_NONE))
	st, _ = statusOf(t, h.scrape(t), fixedUUID(3))
	require.Equal(t, "ok", st, "the driver's action done: the XID's verdict is cleared")
}

// An XID's verdict also clears when the GPU comes back from a reset with a
// new handle; XID 154 follows the recovery action field where the driver
// answers it.
func TestHealthXIDHoldsUntilTheGPUIsReset(t *testing.T) {
	f := newH100Fleet()
	var action atomic.Uint64
	withRecoveryAction(f, 6, &action)
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	f.xids <- xidEvent48(f, 5, 95)
	f.xids <- xidEvent48(f, 6, 154)
	require.Eventually(t, func() bool {
		st, _ := statusOf(t, h.scrape(t), fixedUUID(5))
		return st == "degraded"
	}, 5*time.Second, time.Millisecond)
	h.scrape(t)
	st, _ := statusOf(t, h.scrape(t), fixedUUID(6))
	require.Equal(t, "ok", st, "XID 154 with the field at NONE: nothing to do")
	restore := loseGPU(f, 5)
	st, reason := statusOf(t, h.scrape(t), fixedUUID(5))
	require.Equal(t, [2]string{"failed", "gpu_lost"}, [2]string{st, reason})
	restore()
	st, _ = statusOf(t, h.scrape(t), fixedUUID(5))
	require.Equal(t, "ok", st, "back from the reset: cleared")
}

func TestHealthRemapAndUncorrectedECC(t *testing.T) {
	f := newH100Fleet()
	d := f.device(1)
	var pending atomic.Bool
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 0, 1, pending.Load(), false, nvml.SUCCESS }
	h := startHarness(t, f, testConfig())
	st, _ := statusOf(t, h.scrape(t), fixedUUID(1))
	require.Equal(t, "ok", st)
	pending.Store(true)
	st, reason := statusOf(t, h.scrape(t), fixedUUID(1))
	require.Equal(t, [2]string{"degraded", "remap_pending"}, [2]string{st, reason})
	pending.Store(false)
	st, _ = statusOf(t, h.scrape(t), fixedUUID(1))
	require.Equal(t, "ok", st, "the remap applied (by a reset): live state")
}

// Every verdict reason has an action for the customer.
func TestHealthEveryReasonHasAnAction(t *testing.T) {
	for r := range reasonActions {
		require.NotEmpty(t, verdict{stateFailed, r}.action())
	}
	for code, v := range xidVerdicts {
		require.NotEqual(t, reasonActions[reasonNone], v.action(), "XID %d", code)
	}
	for a := range uint64(8) {
		require.NotEqual(t, reasonActions[reasonNone], actionVerdict(a).action()+map[bool]string{true: "x"}[a == 0], "action %d", a)
	}
}

// An XID storm sends a bounded number of records per interval, in batches,
// and says how many it left out; hw.errors counts every event.
func TestXIDStormIsBounded(t *testing.T) {
	defer func(b, w int) { xidBatchMax, xidRecordsPerWindow = b, w }(xidBatchMax, xidRecordsPerWindow)
	xidRecordsPerWindow = 5
	f := newH100Fleet()
	cfg := testConfig()
	cfg.CollectionInterval = 300 * time.Millisecond
	cfg.CallTimeout = 100 * time.Millisecond
	h := startHarness(t, f, cfg)
	sink := new(consumertest.LogsSink)
	h.s.setLogsConsumer(sink)
	h.scrape(t)
	const storm = 60
	go func() {
		for range storm {
			f.xids <- xidEvent48(f, 1, 13)
		}
	}()
	count := func() float64 {
		var n float64
		for _, p := range points(h.scrape(t), "hw.errors", map[string]any{"hw.id": fixedUUID(1), "nvidia.xid.code": int64(13)}) {
			n += value(p)
		}
		return n
	}
	require.Eventually(t, func() bool { return count() == storm }, 5*time.Second, 10*time.Millisecond, "every event counted")
	var xids, dropped int64
	require.Eventually(t, func() bool {
		xids, dropped = 0, 0
		for _, ld := range sink.AllLogs() {
			lrs := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				switch lrs.At(k).EventName() {
				case "nvidia.gpu.xid":
					xids++
				case "nvidia.gpu.xid.dropped":
					v, _ := lrs.At(k).Attributes().Get("nvidia.xid.dropped")
					dropped += v.Int()
				}
			}
		}
		return xids+dropped == storm
	}, 5*time.Second, 10*time.Millisecond, "records sent plus dropped make the storm")
	require.Less(t, xids, int64(storm), "bounded")
	require.Less(t, sink.LogRecordCount(), storm, "batched and bounded")
	require.Equal(t, dropped, counterValue(t, h.tel, "otelcol_receiver_nvml_xid_records_dropped", nil))
}

// A lost GPU's recovery frees its GPM samples before it allocates new
// ones: every sample allocated is freed or held by a GPU.
func TestGPMSamplesFreedOnRecovery(t *testing.T) {
	f := newH100Fleet()
	var allocs, frees atomic.Int64
	f.GpmSampleAllocFunc = func() (nvml.GpmSample, nvml.Return) {
		allocs.Add(1)
		return &mock.GpmSample{FreeFunc: func() nvml.Return { frees.Add(1); return nvml.SUCCESS }}, nvml.SUCCESS
	}
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	require.Equal(t, int64(16), allocs.Load(), "a pair per GPU")
	for range 5 {
		var restores []func()
		for i := range 8 {
			restores = append(restores, loseGPU(f, i))
		}
		h.scrape(t)
		for k := len(restores) - 1; k >= 0; k-- {
			restores[k]()
		}
		h.scrape(t)
	}
	require.Len(t, h.logs.FilterMessageSnippet("GPU is back").All(), 5*8)
	require.Equal(t, int64(16), allocs.Load()-frees.Load(), "only the live pairs are held")
	require.Equal(t, int64(5*16), frees.Load())
}

// The call memory kept per MIG instance is dropped with the instance.
func TestMIGCallMemoryPrunedWithTheInstance(t *testing.T) {
	f := newH100Fleet()
	f.enableMIG(0)
	d := f.device(0)
	handles := d.GetMigDeviceHandleByIndexFunc
	ns := nvml.ERROR_NOT_SUPPORTED
	for k := range 3 {
		m, _ := handles(k)
		m.(*mock.Device).GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, ns }
		m.(*mock.Device).GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, ns }
	}
	h := startHarness(t, f, testConfig())
	h.scrape(t)
	migKeys := func() (n int) {
		for k := range h.s.devices[0].calls.refused {
			if strings.HasPrefix(k.variant, "mig:MIG-") {
				n++
			}
		}
		return n
	}
	require.Equal(t, 4, migKeys(), "two refusals per GPU instance (its memory is read through its first MIG device)")
	d.GetMigDeviceHandleByIndexFunc = func(k int) (nvml.Device, nvml.Return) {
		if k == 0 {
			return handles(0)
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	h.scrape(t)
	require.Equal(t, 2, migKeys(), "the instances that went away are forgotten")
	d.GetMigModeFunc = func() (int, int, nvml.Return) { return nvml.DEVICE_MIG_DISABLE, nvml.DEVICE_MIG_DISABLE, nvml.SUCCESS }
	h.scrape(t)
	require.Equal(t, 0, migKeys())
}
