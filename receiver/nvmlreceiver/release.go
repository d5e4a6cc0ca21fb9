package nvmlreceiver

import (
	"os"
	"sync/atomic"
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

// release lets NVML go for a GPU reset: an initialisation in flight is
// abandoned (closed if it succeeds), and the current one stopped and shut
// down (letGo), bounded by call_timeout like Shutdown.
func (s *session) release() {
	s.abandonInit()
	if !s.initialized {
		s.logger.Info("release file present; NVML is not initialised until it is removed", zap.String("release_file", s.cfg.ReleaseFile))
		return
	}
	gpus := len(s.devices)
	switch out, ret := s.letGo(time.Now().Add(s.cfg.callTimeout())); out {
	case letGoShutdown:
		s.logger.Info("NVML released for a GPU reset; GPU metrics resume when the release file is removed",
			zap.String("release_file", s.cfg.ReleaseFile), zap.Int("gpus", gpus), zap.String("nvmlShutdown", returnName(ret)))
	case letGoCallsOut:
		s.logger.Warn("release file present, but a call on a GPU or the XID watcher has not returned: NVML stays open until it does",
			zap.String("release_file", s.cfg.ReleaseFile))
	case letGoShutdownHung:
		s.logger.Warn("nvmlShutdown has not returned; NVML may still be held", zap.Duration("waited", s.cfg.callTimeout()))
	}
}

// letGoOutcome is how far letGo got by its deadline.
type letGoOutcome int

const (
	letGoShutdown     letGoOutcome = iota // nvmlShutdown returned
	letGoCallsOut                         // a call is still inside NVML: shut down when it returns
	letGoShutdownHung                     // nvmlShutdown has not returned
)

// letGo stops what the current initialisation started (the XID watcher,
// the workers, an enumeration in flight) and gives its NVML reference back:
// once they have all returned, the event set and the GPM samples are freed
// and nvmlShutdown called. It waits for that until deadline, or not at all
// when a GPU's call is known to be out (a hung GPU, which the scrape
// already waited for); what it does not wait for is done by a closer
// goroutine when the calls return. So every nvmlInit has its nvmlShutdown,
// whatever comes meanwhile: NVML counts them, and an initialisation in
// between keeps it open only until its own shutdown. Closing NVML under a
// call could crash. Callers hold scrapeMu.
func (s *session) letGo(deadline time.Time) (letGoOutcome, nvml.Return) {
	ref, w, devices := s.ref, s.watcher, s.devices
	s.ref, s.watcher, s.devices, s.pending = nil, nil, nil, nil
	s.initialized, s.discovering = false, false
	watcherStopped := w.stopWithin(time.Until(deadline)) // frees the event set when it stopped
	out := !watcherStopped
	for _, d := range devices {
		close(d.jobs)
		out = out || d.busy.Load()
	}
	// late: letGo does not wait for the shutdown, the closer logs it.
	var late atomic.Bool
	late.Store(out)
	returned := make(chan struct{})
	shut := make(chan nvml.Return, 1)
	s.closers.Add(1)
	go func() {
		defer s.closers.Done()
		ref.calls.Wait()
		if !watcherStopped {
			w.wg.Wait()
			_ = w.set.Free()
		}
		// The workers have returned: their GPM samples are free to free.
		for _, d := range devices {
			d.freeSamples()
		}
		close(returned)
		ret := s.lib.Shutdown()
		shut <- ret
		if late.Load() {
			s.logger.Info("the NVML calls left out when NVML was let go have returned; NVML closed",
				zap.String("nvmlShutdown", returnName(ret)))
		}
	}()
	if out {
		return letGoCallsOut, 0
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-returned:
	case <-timer.C:
		late.Store(true)
		return letGoCallsOut, 0
	}
	select {
	case ret := <-shut:
		return letGoShutdown, ret
	case <-timer.C:
		return letGoShutdownHung, 0
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

// abandonInit hands an initialisation still in flight to a closer
// goroutine: if it succeeds after all, what it opened is closed (its GPUs
// have no worker yet). Callers hold scrapeMu.
func (s *session) abandonInit() {
	done := s.initDone
	if done == nil {
		return
	}
	s.initDone = nil
	s.closers.Add(1)
	go func() {
		defer s.closers.Done()
		if r := <-done; r.ret == nvml.SUCCESS && r.found.err == nil {
			_ = s.lib.Shutdown()
		}
	}()
}

// waitClosers waits for the closer goroutines until deadline: the ones
// still waiting then are waiting for a call hung in NVML.
func (s *session) waitClosers(deadline time.Time) {
	done := make(chan struct{})
	go func() {
		s.closers.Wait()
		close(done)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
	}
}
