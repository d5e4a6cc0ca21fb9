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
// success the driver and the GPUs.
type initResult struct {
	ret   nvml.Return
	drv   *driver
	found discovery
}

// Start begins initialising NVML and waits for it at most call_timeout: a
// driver whose nvmlInit hangs must not stop the collector from starting.
// Failing or unfinished, the receiver still starts; the scrape loop takes
// the result, or tries again every init_retry_interval. While the release
// file exists NVML is not initialised at all.
func (s *session) Start(context.Context, component.Host) error {
	s.scrapeMu.Lock()
	defer s.scrapeMu.Unlock()
	if s.releaseRequested() {
		return nil
	}
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
	drv := s.driver
	drv.symbols, drv.driverVersion, drv.cudaVersion = nil, "", ""
	go func() { done <- s.initialise(&drv, start) }()
	return false
}

// initialise runs nvmlInit and finds the GPUs. It runs on its own
// goroutine and fills drv, its own until it returns: no worker or watcher
// reads it before.
func (s *session) initialise(drv *driver, now pcommon.Timestamp) initResult {
	if ret := drv.lib.Init(); ret != nvml.SUCCESS {
		return initResult{ret: ret}
	}
	drv.lookupSymbols()
	if v, ret := drv.lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		drv.driverVersion = v
	}
	if drv.has("nvmlSystemGetCudaDriverVersion") {
		if v, ret := drv.lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
			drv.cudaVersion = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
		}
	}
	found := s.enumerate(drv, now, nil, nil)
	if found.err != nil {
		_ = drv.lib.Shutdown()
	}
	return initResult{ret: nvml.SUCCESS, drv: drv, found: found}
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
	s.ref = &nvmlRef{drv: r.drv}
	s.symbols, s.driverVersion, s.cudaVersion = r.drv.symbols, r.drv.driverVersion, r.drv.cudaVersion
	s.devices = r.found.devices
	s.initialized = true
	s.lastDiscovery = now
	s.discovering = false
	s.discoveries = make(chan discovery, 1)
	uuids := make([]string, len(s.devices))
	for i, d := range s.devices {
		uuids[i] = d.ent.hwID
		s.ref.goCall(d.run)
	}
	s.logger.Info("initialised", zap.String("driver_version", s.driverVersion),
		zap.String("cuda_driver_version", s.cudaVersion), zap.Strings("gpus", uuids))
	s.setPending(r.found.pending)
	s.watcher = startXIDWatcher(s)
	return true
}

// Shutdown stops the watcher and the workers and closes NVML, waiting for
// all of it at most call_timeout: a hung event wait, a slow logs pipeline
// or a hung nvmlShutdown delays it, never blocks it. NVML is not closed
// under a call still inside it (closing the library under it could crash):
// it is closed when that call returns (release.go).
func (s *session) Shutdown(context.Context) error {
	s.scrapeMu.Lock()
	defer s.scrapeMu.Unlock()
	s.closed = true
	deadline := time.Now().Add(s.cfg.callTimeout())
	// An initialisation in flight: if it succeeds after all, what it
	// opened is closed.
	s.abandonInit()
	if s.initialized {
		switch out, ret := s.letGo(deadline); out {
		case letGoShutdown:
			if ret != nvml.SUCCESS {
				s.logger.Debug("shutdown", zap.String("code", returnName(ret)))
			}
		case letGoCallsOut:
			s.logger.Warn("leaving NVML open at shutdown: a call on a GPU, or the XID watcher, has not returned; NVML is closed when it does")
		case letGoShutdownHung:
			s.logger.Warn("nvmlShutdown has not returned; shutting down without it", zap.Duration("waited", s.cfg.callTimeout()))
		}
	}
	s.waitClosers(deadline)
	return nil
}
