package nvmlreceiver

import (
	"context"
	"fmt"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.uber.org/zap"
)

// initResult is what one initialisation found: NVML's answer, and on
// success the GPUs.
type initResult struct {
	ret   nvml.Return
	found discovery
}

// Start begins initialising NVML and waits for it at most call_timeout: a
// driver whose nvmlInit hangs must not stop the collector from starting.
// Failing or unfinished, the receiver still starts; the scrape loop takes
// the result, or tries again every init_retry_interval.
func (s *session) Start(context.Context, component.Host) error {
	s.scrapeMu.Lock()
	defer s.scrapeMu.Unlock()
	s.ensureInit(time.Now())
	if s.initDone != nil {
		select {
		case r := <-s.initDone:
			s.applyInit(r, time.Now())
		case <-time.After(s.cfg.callTimeout()):
		}
	}
	return nil
}

// ensureInit says whether NVML is initialised, taking the result of an
// initialisation in flight or starting one, at most once per
// init_retry_interval. It never waits for NVML. Callers hold scrapeMu.
func (s *session) ensureInit(now time.Time) bool {
	if s.initialized || s.closed {
		return s.initialized
	}
	if s.initDone != nil {
		select {
		case r := <-s.initDone:
			return s.applyInit(r, now)
		default:
			if !s.initHung && now.Sub(s.lastInit) > s.cfg.callTimeout() {
				s.initHung = true
				s.logger.Warn("NVML initialisation has not returned; GPU metrics start when it does",
					zap.Duration("waiting", now.Sub(s.lastInit)))
			}
			return false
		}
	}
	if !s.lastInit.IsZero() && now.Sub(s.lastInit) < s.cfg.InitRetryInterval {
		return false
	}
	s.lastInit = now
	s.initHung = false
	done := make(chan initResult, 1)
	s.initDone = done
	start := pcommon.NewTimestampFromTime(now)
	go func() { done <- s.initialise(start) }()
	return false
}

// initialise runs nvmlInit and finds the GPUs. It runs on its own
// goroutine, before any worker or watcher exists, so it may write the
// driver's read-only fields.
func (s *session) initialise(now pcommon.Timestamp) initResult {
	if ret := s.lib.Init(); ret != nvml.SUCCESS {
		return initResult{ret: ret}
	}
	s.lookupSymbols()
	if v, ret := s.lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		s.driverVersion = v
	}
	if s.has("nvmlSystemGetCudaDriverVersion") {
		if v, ret := s.lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
			s.cudaVersion = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
		}
	}
	found := s.enumerate(now, nil, nil)
	if found.err != nil {
		_ = s.lib.Shutdown()
	}
	return initResult{ret: nvml.SUCCESS, found: found}
}

// applyInit takes an initialisation's result: the workers start, or the
// failure is logged (once per distinct error) for a retry.
func (s *session) applyInit(r initResult, now time.Time) bool {
	s.initDone = nil
	if r.ret != nvml.SUCCESS {
		if s.initFailure.Changed(fmt.Errorf("%s", returnName(r.ret))) {
			msg := "nvml: NVML did not initialise; GPU metrics start when it does"
			if r.ret == nvml.ERROR_LIBRARY_NOT_FOUND {
				msg = "nvml: NVML library not found (no NVIDIA driver yet?); GPU metrics start when it appears"
			}
			s.logger.Warn(msg, zap.String("library", s.libraryDescription()), zap.String("code", returnName(r.ret)),
				zap.Duration("retry_every", s.cfg.InitRetryInterval))
		}
		s.tel.nvmlError("nvmlInit_v2", r.ret)
		return false
	}
	s.initFailure.Changed(nil)
	if r.found.err != nil {
		s.logger.Warn("cannot list GPUs; retrying", zap.Error(r.found.err))
		return false
	}
	s.devices = r.found.devices
	s.initialized = true
	s.lastDiscovery = now
	s.discoveries = make(chan discovery, 1)
	uuids := make([]string, len(s.devices))
	for i, d := range s.devices {
		uuids[i] = d.ent.hwID
		go d.run()
	}
	s.logger.Info("initialised", zap.String("driver_version", s.driverVersion),
		zap.String("cuda_driver_version", s.cudaVersion), zap.Strings("gpus", uuids))
	s.setPending(r.found.pending)
	s.watcher = startXIDWatcher(s)
	return true
}

// Shutdown stops the watcher and the workers and closes NVML, waiting for
// each at most call_timeout: a hung event wait, a slow logs pipeline or a
// hung nvmlShutdown delays it, never blocks it. NVML stays open when a
// call is still inside it (closing the library under it could crash).
func (s *session) Shutdown(context.Context) error {
	s.scrapeMu.Lock()
	defer s.scrapeMu.Unlock()
	s.closed = true
	bound := s.cfg.callTimeout()
	if !s.initialized {
		if done := s.initDone; done != nil {
			// An initialisation in flight: if it succeeds after all,
			// close what it opened.
			go func() {
				if r := <-done; r.ret == nvml.SUCCESS && r.found.err == nil {
					_ = s.lib.Shutdown()
				}
			}()
		}
		return nil
	}
	open := !s.watcher.stopWithin(bound)
	for _, d := range s.devices {
		close(d.jobs)
		open = open || d.busy.Load()
	}
	s.initialized = false
	if open {
		s.logger.Warn("leaving NVML open at shutdown: a call on a GPU, or the XID watcher, has not returned")
		return nil
	}
	closed := make(chan nvml.Return, 1)
	go func() { closed <- s.lib.Shutdown() }()
	select {
	case ret := <-closed:
		if ret != nvml.SUCCESS {
			s.logger.Debug("shutdown", zap.String("code", returnName(ret)))
		}
	case <-time.After(bound):
		s.logger.Warn("nvmlShutdown has not returned; shutting down without it", zap.Duration("waited", bound))
	}
	return nil
}
