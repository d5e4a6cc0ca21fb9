//go:build system

package system

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// logRecords are the log records of one event name the collector sent so far.
func logRecords(c *collector, event string) []plog.LogRecord {
	var out []plog.LogRecord
	for _, ld := range c.sink.Logs() {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			sls := ld.ResourceLogs().At(i).ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				lrs := sls.At(j).LogRecords()
				for k := 0; k < lrs.Len(); k++ {
					if lrs.At(k).EventName() == event {
						out = append(out, lrs.At(k))
					}
				}
			}
		}
	}
	return out
}

func attr(lr plog.LogRecord, k string) string {
	v, _ := lr.Attributes().Get(k)
	return v.AsString()
}

// verdictOf is a GPU's hw.status verdict in a batch: the state whose point
// is 1 and its reason ("" without a point, "none" without a reason).
func verdictOf(md pmetric.Metrics, name string) (state, reason string) {
	for _, p := range find(md, "hw.status", gpu(name)) {
		if value(p) != 1 {
			continue
		}
		st, _ := p.Attributes().Get("hw.state")
		state, reason = st.Str(), "none"
		if r, ok := p.Attributes().Get("nvidia.gpu.health.reason"); ok {
			reason = r.Str()
		}
	}
	return state, reason
}

// releaseAndReset is the operator's procedure for a GPU reset: the release
// file, the reset (a gpu_reset fault in the fleet, which proceeds once NVML
// is let go), the file removed.
func releaseAndReset(t *testing.T, c *collector, release string) {
	t.Helper()
	require.NoError(t, os.WriteFile(release, nil, 0o600))
	require.Eventually(t, func() bool { return strings.Contains(c.proc.Output(), "NVML released for a GPU reset") }, 10*time.Second, 100*time.Millisecond)
	require.NoError(t, os.Remove(release))
}

// A GPU that turns ERROR_UNKNOWN for every call mid-run (a GSP RPC
// timeout) is failed, reason unknown_errors, from its second such scrape,
// with a health event, and stays failed until it is reset.
func TestUnknownErrorsFailedUntilReset(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release-nvml")
	c := startCollectorWith(t, simLibrary(t, "NVMLSIM_LIB"),
		"gpus = 2\nsignal.utilization = const 60\nfault = 3 1 unknown until_reset\nfault = 3 1 xid 119\nfault = 4 1 gpu_reset\n",
		collectorOpts{releaseFile: release})
	silent := c.waitBatch(t, 20*time.Second, "GPU 1 answers nothing", func(md pmetric.Metrics) bool {
		return has(md, "hw.gpu.utilization", gpu("nvidia0")) && !has(md, "hw.gpu.utilization", gpu("nvidia1"))
	})
	st, _ := verdictOf(silent, "nvidia1")
	require.NotEqual(t, "failed", st, "one scrape of errors is not yet a failure")
	var failedAt time.Time
	c.waitBatch(t, 5*time.Second, "GPU 1 failed (unknown_errors)", func(md pmetric.Metrics) bool {
		st, reason := verdictOf(md, "nvidia1")
		failedAt = time.Now()
		return st == "failed" && reason == "unknown_errors"
	})
	for range 3 {
		held := c.waitBatch(t, 5*time.Second, "a later batch", func(pmetric.Metrics) bool { return true })
		st, reason := verdictOf(held, "nvidia1")
		require.Equal(t, [2]string{"failed", "unknown_errors"}, [2]string{st, reason}, "until the reset")
		st, _ = verdictOf(held, "nvidia0")
		require.Equal(t, "ok", st)
	}
	require.Eventually(t, func() bool {
		for _, lr := range logRecords(c, "nvidia.gpu.health") {
			if attr(lr, "hw.name") == "nvidia1" && attr(lr, "hw.state") == "failed" && attr(lr, "nvidia.gpu.health.reason") == "unknown_errors" &&
				strings.Contains(lr.Body().Str(), "reset") {
				return true
			}
		}
		return false
	}, 5*time.Second, 100*time.Millisecond, "a health event for the change")
	require.Less(t, time.Since(failedAt), time.Minute)

	releaseAndReset(t, c, release)
	back := c.waitBatch(t, 20*time.Second, "GPU 1 back after the reset", func(md pmetric.Metrics) bool {
		return has(md, "hw.gpu.utilization", gpu("nvidia1"))
	})
	st, _ = verdictOf(back, "nvidia1")
	require.Equal(t, "ok", st)
	closed := find(back, "hw.status", gpu("nvidia1", "hw.state", "failed", "nvidia.gpu.health.reason", "unknown_errors"))
	require.Len(t, closed, 1, "the verdict from before the release is closed")
	require.EqualValues(t, 0, value(closed[0]))
	require.Eventually(t, func() bool {
		for _, lr := range logRecords(c, "nvidia.gpu.health") {
			if attr(lr, "hw.name") == "nvidia1" && attr(lr, "hw.state") == "ok" && attr(lr, "nvidia.gpu.health.previous_reason") == "unknown_errors" {
				return true
			}
		}
		return false
	}, 5*time.Second, 100*time.Millisecond, "a health event for the recovery")
}

// A degrading XID, and the driver's recovery action, hold across
// intervals until the GPU is reset, not one interval.
func TestXIDAndRecoveryActionHoldUntilReset(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release-nvml")
	c := startCollectorWith(t, simLibrary(t, "NVMLSIM_LIB"),
		"gpus = 3\nsignal.utilization = const 60\n"+
			"fault = 2 1 xid 95\nfault = 2 2 recovery_action 1\nfault = 2 2 xid 154\n"+
			"fault = 4 1 gpu_reset\nfault = 4 2 gpu_reset\n",
		collectorOpts{releaseFile: release})
	c.waitBatch(t, 20*time.Second, "both verdicts", func(md pmetric.Metrics) bool {
		s1, _ := verdictOf(md, "nvidia1")
		s2, _ := verdictOf(md, "nvidia2")
		return s1 == "degraded" && s2 == "failed"
	})
	for range 4 {
		md := c.waitBatch(t, 5*time.Second, "a later batch", func(pmetric.Metrics) bool { return true })
		st, reason := verdictOf(md, "nvidia1")
		require.Equal(t, [2]string{"degraded", "xid_95"}, [2]string{st, reason}, "XID 95 holds")
		st, reason = verdictOf(md, "nvidia2")
		require.Equal(t, [2]string{"failed", "recovery_action_reset"}, [2]string{st, reason}, "the driver asks for a reset")
		st, _ = verdictOf(md, "nvidia0")
		require.Equal(t, "ok", st)
	}
	events := map[string]bool{}
	require.Eventually(t, func() bool {
		for _, lr := range logRecords(c, "nvidia.gpu.health") {
			events[attr(lr, "hw.name")+" "+attr(lr, "hw.state")+" "+attr(lr, "nvidia.gpu.health.reason")] = true
		}
		return events["nvidia1 degraded xid_95"] && events["nvidia2 failed recovery_action_reset"]
	}, 5*time.Second, 100*time.Millisecond, "health events: %v", events)

	releaseAndReset(t, c, release)
	c.waitBatch(t, 20*time.Second, "both ok after the reset", func(md pmetric.Metrics) bool {
		s1, _ := verdictOf(md, "nvidia1")
		s2, _ := verdictOf(md, "nvidia2")
		return s1 == "ok" && s2 == "ok" && has(md, "hw.gpu.utilization", gpu("nvidia2"))
	})
}

// An XID storm (5000 events at once) is counted in full, and sent as a
// bounded number of records per interval plus the count left out.
func TestXIDStormIsBounded(t *testing.T) {
	const storm = 5000
	c := startCollector(t, simLibrary(t, "NVMLSIM_LIB"), "gpus = 2\nsignal.utilization = const 60\nfault = 2 1 xid_storm 13 5000\n")
	c.waitBatch(t, 20*time.Second, "every event counted", func(md pmetric.Metrics) bool {
		p := find(md, "hw.errors", gpu("nvidia1", "error.type", "xid", "nvidia.xid.code", int64(13)))
		return len(p) == 1 && value(p[0]) == storm
	})
	var sent, dropped int64
	require.Eventually(t, func() bool {
		sent, dropped = int64(len(logRecords(c, "nvidia.gpu.xid"))), 0
		for _, lr := range logRecords(c, "nvidia.gpu.xid.dropped") {
			v, _ := lr.Attributes().Get("nvidia.xid.dropped")
			dropped += v.Int()
		}
		return sent+dropped == storm
	}, 10*time.Second, 100*time.Millisecond, "records sent plus left out make the storm")
	require.LessOrEqual(t, sent, int64(100), "at most 100 records per interval")
	require.Less(t, len(c.sink.Logs()), 50, "sent in batches, not one request per event")
	require.True(t, has(c.waitBatch(t, 5*time.Second, "a later batch", func(pmetric.Metrics) bool { return true }), "hw.gpu.utilization", gpu("nvidia1")),
		"the GPU goes on reporting")
}
