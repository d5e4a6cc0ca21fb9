package nvmlreceiver

import (
	"os"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"go.uber.org/zap"
)

// releaseRequested checks release_file and, when it appears, lets NVML go;
// while it exists the scrape reports nothing from NVML. When it is gone
// the scrape initialises NVML again (the usual init path, right away).
// Callers hold scrapeMu.
func (s *session) releaseRequested() bool {
	if s.cfg.ReleaseFile == "" {
		return false
	}
	_, err := os.Stat(s.cfg.ReleaseFile)
	want := err == nil
	switch {
	case want && !s.released:
		s.released = true
		s.release()
	case !want && s.released:
		s.released = false
		s.lastInit = time.Time{} // initialise again now, not after init_retry_interval
		s.logger.Info("release file removed; initialising NVML again", zap.String("release_file", s.cfg.ReleaseFile))
	}
	return s.released
}

// release stops the XID watcher and the workers, frees the event set and
// the GPM samples, and calls nvmlShutdown, each bounded by call_timeout
// like Shutdown. A call still inside NVML (a hung GPU) keeps it open: the
// reset would not proceed anyway, and closing under a call could crash.
func (s *session) release() {
	bound := s.cfg.callTimeout()
	if !s.initialized {
		s.logger.Info("release file present; NVML is not initialised until it is removed", zap.String("release_file", s.cfg.ReleaseFile))
		return
	}
	open := !s.watcher.stopWithin(bound)
	s.watcher = nil
	for _, d := range s.devices {
		close(d.jobs)
		open = open || d.busy.Load()
	}
	if !open {
		// The workers have returned: their GPM samples are free to free.
		for _, d := range s.devices {
			d.freeSamples()
		}
	}
	gpus := len(s.devices)
	s.devices = nil
	s.pending = nil
	s.initialized = false
	if open {
		s.logger.Warn("release file present, but a call on a GPU or the XID watcher has not returned: NVML stays open",
			zap.String("release_file", s.cfg.ReleaseFile))
		return
	}
	closed := make(chan nvml.Return, 1)
	go func() { closed <- s.lib.Shutdown() }()
	select {
	case ret := <-closed:
		s.logger.Info("NVML released for a GPU reset; GPU metrics resume when the release file is removed",
			zap.String("release_file", s.cfg.ReleaseFile), zap.Int("gpus", gpus), zap.String("nvmlShutdown", returnName(ret)))
	case <-time.After(bound):
		s.logger.Warn("nvmlShutdown has not returned; NVML may still be held", zap.Duration("waited", bound))
	}
}

// freeSamples frees the GPU's GPM samples (its own and its GPU instances').
// Only once its worker has stopped.
func (d *device) freeSamples() {
	if d.gpm != nil && d.gpm.supported {
		d.gpm.pair.free()
	}
	d.gpm = nil
	for gi, g := range d.gis {
		g.gpm.free()
		delete(d.gis, gi)
	}
}
