package nvmlreceiver

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func boundedConfig() *Config {
	cfg := testConfig()
	cfg.CallTimeout = 100 * time.Millisecond
	return cfg
}

// startBare starts a session without the harness's cleanup, for tests
// that shut it down themselves.
func startBare(t *testing.T, f *fleet, cfg *Config) (*session, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	set := componenttest.NewNopTelemetrySettings()
	set.Logger = zap.New(core)
	s, err := newSession(cfg, f, set)
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, s.Start(context.Background(), componenttest.NewNopHost()))
	require.Less(t, time.Since(start), 5*time.Second)
	return s, logs
}

// A hung nvmlInit neither stops the collector from starting nor holds up
// a scrape; the GPUs come once it returns.
func TestHungInitIsBounded(t *testing.T) {
	f := newH100Fleet()
	release := make(chan struct{})
	init := f.InitFunc
	f.InitFunc = func() nvml.Return {
		<-release
		return init()
	}
	h := startHarness(t, f, boundedConfig())
	for range 3 {
		require.Zero(t, h.scrape(t).MetricCount(), "nothing to report yet, and no waiting")
	}
	require.Len(t, h.logs.FilterMessageSnippet("initialisation has not returned").All(), 1)
	close(release)
	require.Eventually(t, func() bool {
		return len(points(h.scrape(t), "nvidia.gpu.info", nil)) == 8
	}, 5*time.Second, time.Millisecond)
}

// Shutdown waits at most call_timeout for the XID watcher (hung in the
// driver's event wait) and for nvmlShutdown, and leaves NVML open rather
// than close it under a call.
func TestShutdownIsBoundedWhenTheWatcherHangs(t *testing.T) {
	f := newH100Fleet()
	release := make(chan struct{})
	defer close(release)
	hang, entered := make(chan struct{}), make(chan struct{}, 1)
	f.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
			WaitFunc: func(uint32) (nvml.EventData, nvml.Return) {
				select {
				case <-hang:
					entered <- struct{}{}
					<-release // hung in the driver, whatever the timeout said
				default:
				}
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			},
		}, nvml.SUCCESS
	}
	var shutdowns atomic.Int32
	f.ShutdownFunc = func() nvml.Return { shutdowns.Add(1); return nvml.SUCCESS }
	s, logs := startBare(t, f, boundedConfig())
	_, err := s.scrape(context.Background())
	require.NoError(t, err)
	close(hang)
	<-entered
	start := time.Now()
	require.NoError(t, s.Shutdown(context.Background()))
	require.Less(t, time.Since(start), 2*time.Second, "bounded by call_timeout")
	require.Len(t, logs.FilterMessageSnippet("leaving NVML open").All(), 1)
	require.Zero(t, shutdowns.Load(), "NVML is not closed under the watcher's call")
}

// A slow logs pipeline holding the watcher is bounded the same way.
func TestShutdownIsBoundedWhenTheLogsPipelineIsStuck(t *testing.T) {
	f := newH100Fleet()
	stuck := make(chan struct{})
	defer close(stuck)
	s, _ := startBare(t, f, boundedConfig())
	s.setLogsConsumer(blockingLogs{stuck})
	f.xids <- nvml.EventData{Device: f.Devices[0], EventType: nvml.EventTypeXidCriticalError, EventData: 31, GpuInstanceId: 0xFFFFFFFF, ComputeInstanceId: 0xFFFFFFFF}
	require.Eventually(t, func() bool { return len(f.xids) == 0 }, 5*time.Second, time.Millisecond)
	start := time.Now()
	require.NoError(t, s.Shutdown(context.Background()))
	require.Less(t, time.Since(start), 2*time.Second)
}

// A hung nvmlShutdown is waited for at most call_timeout.
func TestHungNVMLShutdownIsBounded(t *testing.T) {
	f := newH100Fleet()
	release := make(chan struct{})
	defer close(release)
	f.ShutdownFunc = func() nvml.Return { <-release; return nvml.SUCCESS }
	s, logs := startBare(t, f, boundedConfig())
	start := time.Now()
	require.NoError(t, s.Shutdown(context.Background()))
	require.Less(t, time.Since(start), 2*time.Second)
	require.Len(t, logs.FilterMessageSnippet("nvmlShutdown has not returned").All(), 1)
}

type blockingLogs struct{ until chan struct{} }

func (b blockingLogs) ConsumeLogs(context.Context, plog.Logs) error {
	<-b.until
	return nil
}

func (blockingLogs) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

// goroutineIDs lists the goroutines running this package's code, by id.
func goroutineIDs() map[string]string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if id, _, ok := strings.Cut(strings.TrimPrefix(g, "goroutine "), " "); ok && strings.Contains(g, "nvmlreceiver.") {
			out[id] = g
		}
	}
	return out
}

// requireNoneStarted fails on a goroutine of this package that was not
// there before (the test's own excepted). It allows the ones that are done
// the few microseconds they take to exit, not a call's time.
func requireNoneStarted(t *testing.T, before map[string]string) {
	t.Helper()
	var left []string
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; time.Sleep(time.Millisecond) {
		left = left[:0]
		for id, g := range goroutineIDs() {
			if _, old := before[id]; !old && !strings.Contains(g, "testing.tRunner") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("goroutines still running after Shutdown:\n%s", strings.Join(left, "\n\n"))
}

// Shutdown waits, within call_timeout, for the goroutines the session
// started (a worker still in a slow call, an enumeration, the watcher),
// and closes NVML once they have returned.
func TestShutdownWaitsForItsGoroutines(t *testing.T) {
	f := newH100Fleet()
	var slow atomic.Bool
	orig := f.device(0).GetFieldValuesFunc
	f.device(0).GetFieldValuesFunc = func(fvs []nvml.FieldValue) nvml.Return {
		if slow.Load() {
			time.Sleep(300 * time.Millisecond)
		}
		return orig(fvs)
	}
	cfg := testConfig()
	cfg.RediscoverInterval = time.Millisecond
	before := goroutineIDs()
	s, _ := startBare(t, f, cfg)
	require.Eventually(t, func() bool {
		md, err := s.scrape(context.Background())
		require.NoError(t, err)
		return len(points(md, "nvidia.gpu.info", nil)) == 8
	}, 5*time.Second, time.Millisecond)
	slow.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := s.scrape(ctx) // returns while GPU 0's worker is in its call
	require.NoError(t, err)
	require.True(t, s.devices[0].busy.Load())
	require.NoError(t, s.Shutdown(context.Background()))
	require.Len(t, f.ShutdownCalls(), 1, "NVML closed once the worker returned")
	requireNoneStarted(t, before)
}

// Shutdown waits, within call_timeout, for an initialisation in flight,
// and closes what it opened.
func TestShutdownWaitsForAnInitialisationInFlight(t *testing.T) {
	f := newH100Fleet()
	unblock := make(chan struct{})
	init := f.InitFunc
	f.InitFunc = func() nvml.Return {
		<-unblock
		return init()
	}
	cfg := testConfig()
	cfg.CallTimeout = 500 * time.Millisecond
	before := goroutineIDs()
	s, _ := startBare(t, f, cfg) // returns after call_timeout, without NVML
	time.AfterFunc(20*time.Millisecond, func() { close(unblock) })
	require.NoError(t, s.Shutdown(context.Background()))
	require.EqualValues(t, 1, f.inits.Load())
	require.Len(t, f.ShutdownCalls(), 1, "the initialisation that returned during Shutdown is closed")
	requireNoneStarted(t, before)
}
