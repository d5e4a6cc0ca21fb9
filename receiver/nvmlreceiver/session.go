package nvmlreceiver

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
	"github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver/internal/metadata"
)

// session is one NVML session: initialisation (retried while the library or
// driver is missing), the GPUs found, one worker goroutine per GPU, and the
// XID event watcher. The metrics and logs pipelines of one receiver id share it.
type session struct {
	cfg *Config
	driver

	scrapeMu    sync.Mutex // one scrape (or init) at a time
	closed      bool       // shut down: a late scrape must not reopen NVML
	initialized bool
	lastInit    time.Time
	initFailure periodic.ErrorLatch
	initDone    chan initResult // an initialisation in flight (init.go); nil when none
	initHung    bool            // its warning was logged
	ref         *nvmlRef        // the current initialisation's; nil when not initialised
	devices     []*device

	// Rediscovery (discovery.go), owned by the scrape.
	pending       []*pendingGPU
	lastDiscovery time.Time
	discovering   bool
	discoveries   chan discovery

	logs    atomic.Pointer[consumer.Logs]
	watcher *xidWatcher

	released bool // release_file exists: NVML let go (release.go)

	// reported is the verdict last delivered per GPU UUID (status.go),
	// owned by the scrape; it outlives the devices, which a release or
	// reinitialisation makes anew.
	reported map[string]verdict
	// closers are the goroutines that give an initialisation's reference
	// back once its calls have returned (release.go); Shutdown waits for
	// them, bounded.
	closers sync.WaitGroup
}

// nvmlRef is one successful nvmlInit: the driver it found, and the
// goroutines started under it that call into NVML (the GPUs' workers, an
// enumeration), counted so that its nvmlShutdown comes only once they have
// all returned.
type nvmlRef struct {
	drv   *driver
	calls sync.WaitGroup
}

// goCall runs f on a goroutine counted in the reference's calls.
func (r *nvmlRef) goCall(f func()) {
	r.calls.Add(1)
	go func() {
		defer r.calls.Done()
		f()
	}()
}

func newSession(cfg *Config, lib nvml.Interface, set component.TelemetrySettings) (*session, error) {
	tel, err := newReceiverTelemetry(set)
	if err != nil {
		return nil, err
	}
	return &session{cfg: cfg, driver: driver{
		lib: lib, logger: set.Logger, tel: tel, enabled: cfg.enabledMetrics(), refusedRetry: cfg.RefusedRetryInterval,
		relistEvery: cfg.RediscoverInterval,
	}}, nil
}

func (s *session) setLogsConsumer(next consumer.Logs) { s.logs.Store(&next) }

// libraryDescription says where NVML was looked for, for the one warning a
// VM without a driver gets.
func (s *session) libraryDescription() string {
	if s.cfg.LibraryPath != "" {
		return s.cfg.LibraryPath
	}
	return "libnvidia-ml.so.1 via the dynamic linker (LD_LIBRARY_PATH, /etc/ld.so.cache, /lib, /usr/lib)"
}

// allSymbols is every NVML function the receiver may call. Each is looked up
// once per initialisation: calling a function the loaded driver lacks would
// kill the process (go-nvml binds symbols lazily).
var allSymbols = func() []string {
	set := map[string]bool{}
	for _, d := range metricDefs {
		for _, sym := range d.symbols {
			set[sym] = true
		}
	}
	for _, sym := range []string{
		"nvmlSystemGetCudaDriverVersion", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetHandleByUUID",
		"nvmlDeviceGetUUID", "nvmlDeviceGetSerial", "nvmlDeviceGetVbiosVersion", "nvmlDeviceGetPciInfo",
		"nvmlDeviceGetVirtualizationMode", "nvmlDeviceGetMigMode", "nvmlDeviceGetMaxMigDeviceCount",
		"nvmlDeviceGetMigDeviceHandleByIndex", "nvmlDeviceGetGpuInstanceId", "nvmlDeviceGetComputeInstanceId",
		"nvmlGpmMigSampleGet", "nvmlEventSetCreate", "nvmlDeviceGetSupportedEventTypes", "nvmlDeviceRegisterEvents",
		"nvmlEventSetWait", "nvmlEventSetWait_v2", "nvmlEventSetFree", "nvmlDeviceGetMinorNumber",
	} {
		set[sym] = true
	}
	out := make([]string, 0, len(set))
	for sym := range set {
		out = append(out, sym)
	}
	sort.Strings(out)
	return out
}()

// goNVMLVersioned are the functions go-nvml calls in whichever version the
// driver exports (it probes _v2, _v3 at load): any one of them will do.
var goNVMLVersioned = map[string]bool{
	"nvmlDeviceGetCount": true, "nvmlDeviceGetHandleByIndex": true, "nvmlDeviceGetPciInfo": true, "nvmlEventSetWait": true,
	"nvmlDeviceGetComputeRunningProcesses": true, "nvmlDeviceGetGraphicsRunningProcesses": true,
	"nvmlDeviceGetMPSComputeRunningProcesses": true, "nvmlDeviceGetGridLicensableFeatures": true,
}

// lookupSymbols fills the driver's symbol table, before it is shared.
func (d *driver) lookupSymbols() {
	ext := d.lib.Extensions()
	symbols := make(map[string]bool, len(allSymbols))
	var missing []string
	for _, sym := range allSymbols {
		ok := ext.LookupSymbol(sym) == nil
		if goNVMLVersioned[sym] {
			ok = ok || ext.LookupSymbol(sym+"_v2") == nil || ext.LookupSymbol(sym+"_v3") == nil
		}
		symbols[sym] = ok
		if !ok {
			missing = append(missing, sym)
		}
	}
	d.symbols = symbols
	if len(missing) > 0 {
		d.logger.Info("the installed driver lacks some NVML functions; the metrics that need only those are not collected",
			zap.Strings("missing", missing))
	}
}

// scrape collects every GPU in parallel, each on its own worker, and waits
// at most call_timeout for them. A GPU whose previous calls have not
// returned is skipped: at most one goroutine per GPU is ever inside NVML.
func (s *session) scrape(ctx context.Context) (pmetric.Metrics, error) {
	s.scrapeMu.Lock()
	defer s.scrapeMu.Unlock()
	start := time.Now()
	md := pmetric.NewMetrics()
	if s.releaseRequested() {
		return md, nil
	}
	if !s.ensureInit(start) {
		s.recordDevices(0, 0, 0)
		return md, nil
	}
	now := pcommon.NewTimestampFromTime(start)
	s.mergeDiscovery()
	s.startDiscovery(start, now)
	done := make(chan *device, len(s.devices))
	dispatched := 0
	hung := 0
	for _, d := range s.devices {
		if !d.busy.CompareAndSwap(false, true) {
			hung++
			continue
		}
		d.jobs <- job{now: now, done: done}
		dispatched++
	}
	ready := make([]*device, 0, dispatched)
	timer := time.NewTimer(s.cfg.callTimeout())
	defer timer.Stop()
wait:
	for len(ready) < dispatched {
		select {
		case d := <-done:
			ready = append(ready, d)
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	for _, d := range s.devices {
		if d.busy.Load() && d.hungSince.CompareAndSwap(0, start.UnixNano()) {
			s.logger.Warn("NVML calls on a GPU did not return in time; it is left out until they do",
				zap.String("hw.id", d.ent.hwID), zap.Duration("call_timeout", s.cfg.callTimeout()))
		}
	}
	hung += dispatched - len(ready)
	lost := 0
	for _, d := range ready {
		if d.health.lost {
			lost++
		}
	}
	ready = append(ready, s.unanswered(ready)...)
	ready = append(ready, s.unopened()...)
	sort.Slice(ready, func(i, j int) bool { return ready[i].index < ready[j].index })
	s.assemble(md, ready, now)
	s.recordDevices(len(ready)-lost, lost, hung)
	s.tel.scrapeDuration.Record(ctx, time.Since(start).Seconds())
	return md, nil
}

// unanswered reports, from the scrape itself, every GPU whose worker did
// not answer this time (a call hung since an earlier scrape, or one that
// did not return within call_timeout; a hang of the whole driver silences
// them all): its verdict, failed from the second silent scrape in a row
// (status.go), with the identity discovery read. The workers own their
// GPUs' state, so each silent GPU gets a stand-in that holds only that.
func (s *session) unanswered(ready []*device) []*device {
	answered := make(map[*device]bool, len(ready))
	for _, d := range ready {
		answered[d] = true
		d.statusStart = d.discovered // the worker is done with this scrape
	}
	var out []*device
	for _, d := range s.devices {
		if answered[d] {
			continue
		}
		stand := &device{drv: d.drv, index: d.index, ent: d.ent, discovered: d.statusStart}
		d.reportUnanswered(stand)
		out = append(out, stand)
	}
	return out
}

func (s *session) recordDevices(reporting, lost, hung int) {
	ctx := context.Background()
	s.tel.devices.Record(ctx, int64(reporting), metric.WithAttributes(attribute.String("state", "reporting")))
	s.tel.devices.Record(ctx, int64(lost), metric.WithAttributes(attribute.String("state", "lost")))
	s.tel.devices.Record(ctx, int64(hung), metric.WithAttributes(attribute.String("state", "hung")))
}

// newLogBatch is an empty batch of the receiver's log records (XID events,
// health changes) under its scope.
func newLogBatch() (plog.Logs, plog.LogRecordSlice) {
	ld := plog.NewLogs()
	sl := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	return ld, sl.LogRecords()
}

// sendLogs hands a batch to the logs pipeline, within timeout (0: as long
// as the pipeline takes), and logs a refusal of what it held.
func (s *session) sendLogs(next consumer.Logs, ld plog.Logs, timeout time.Duration, what string) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := next.ConsumeLogs(ctx, ld); err != nil {
		s.logger.Warn("the logs pipeline refused "+what, zap.Int("records", ld.LogRecordCount()), zap.Error(err))
	}
}
