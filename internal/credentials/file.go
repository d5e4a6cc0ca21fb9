package credentials

import (
	"crypto/sha256"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
)

// File is a credentials file kept current: loaded once at Start (a
// component that cannot read it must not start), then polled by content
// every interval. Polling the content, not watching the file, also sees a
// Kubernetes Secret update, which swaps a symlink.
//
// A file that stops loading (unreadable, or not parsing) leaves the last
// good credentials in force, but no longer than the max-stale bound
// (WithMaxStale): a key removed by the edit that broke the file must not
// live on until someone notices. Past the bound Set finds no credential and
// says why (Set.Unavailable), until the file loads again. A failure is
// logged at Error level when it starts, then once a minute while it lasts,
// and at Info level when it ends; Err and FailingFor report it meanwhile.
type File struct {
	path     string
	interval time.Duration
	logger   *zap.Logger
	// loaded is told the outcome of every read that found new content or
	// failed (the owner's reload counter).
	loaded func(ok bool)
	// health is told when reads start failing (the error) and when the file
	// loads again (nil): the owner's component status.
	health func(err error)
	// maxStale bounds how long the last good set outlives a failing file;
	// 0 keeps it until the file loads again.
	maxStale time.Duration
	// now is the clock of the max-stale bound and of the sets' expiries.
	now func() time.Time

	set     atomic.Pointer[Set]
	failing atomic.Pointer[failure] // nil while the last read succeeded

	// Owned by the reload loop after Start.
	lastContent [sha256.Size]byte
	good        *Set      // the last set read from the file
	lastLogged  time.Time // the last Error line of the current failure
	poller      *periodic.Runner
}

// failure is a file that fails to load: since the first failed read after
// the last good one, with the latest read's error.
type failure struct {
	since time.Time
	err   error
}

// failureLogEvery is how often a file that keeps failing is logged again.
const failureLogEvery = time.Minute

// NewFile returns a File that is not loaded yet. It keeps the last good
// credentials while the file fails, however long, unless WithMaxStale
// bounds that.
func NewFile(path string, interval time.Duration, logger *zap.Logger, loaded func(ok bool)) *File {
	return &File{path: path, interval: interval, logger: logger, loaded: loaded, health: func(error) {}, now: time.Now}
}

// WithMaxStale bounds how long the last good credentials stay in force
// while the file fails to load, counted from the first failed read after
// the last good one. Past it (as seen by the next poll: within d plus the
// interval) Set finds no credential and Set.Unavailable says why, until the
// file loads again. 0 keeps them until then. Call it before Start.
func (f *File) WithMaxStale(d time.Duration) *File {
	f.maxStale = d
	return f
}

// WithHealth has health told, from the reload loop, when the file starts
// failing to load (with the error) and when it loads again (nil), once
// each: a component reports its status with it. Call it before Start.
func (f *File) WithHealth(health func(err error)) *File {
	f.health = health
	return f
}

// Start loads the file and begins polling it.
func (f *File) Start() error {
	if err := f.reload(); err != nil {
		return err
	}
	f.poller = periodic.Start(f.interval, f.poll)
	return nil
}

// Stop ends polling; the current credentials stay readable.
func (f *File) Stop() {
	if f.poller != nil {
		f.poller.Stop()
	}
}

// Set is the current snapshot (nil before Start succeeded): the file's, or
// once a failing file has passed the max-stale bound, one that finds no
// credential and says why (Set.Unavailable).
func (f *File) Set() *Set { return f.set.Load() }

// Err is the error of the last read, nil when it succeeded.
func (f *File) Err() error {
	if fl := f.failing.Load(); fl != nil {
		return fl.err
	}
	return nil
}

// FailingFor is how long the file has failed to load, since the first
// failed read after the last good one; 0 while it loads.
func (f *File) FailingFor() time.Duration {
	fl := f.failing.Load()
	if fl == nil {
		return 0
	}
	return f.now().Sub(fl.since)
}

// poll is one round of the reload loop: a read, and what its outcome
// changes (the failure's record, the max-stale bound, logs, health).
func (f *File) poll() {
	err := f.reload()
	now := f.now()
	prev := f.failing.Load()
	if err == nil {
		if prev != nil {
			f.failing.Store(nil)
			f.logger.Info("the credentials file loads again", zap.String("file", f.path),
				zap.Duration("failed_for", now.Sub(prev.since)))
			f.health(nil)
		}
		return
	}

	since := now
	if prev != nil {
		since = prev.since
	}
	f.failing.Store(&failure{since: since, err: err})
	failingFor := now.Sub(since)
	wasStale := f.set.Load().Unavailable() != nil
	stale := f.maxStale > 0 && failingFor > f.maxStale
	if stale {
		f.set.Store(&Set{now: f.now, unavailable: fmt.Errorf(
			"credentials unavailable: %s has failed to load for %s, longer than the %s allowed (max stale): %w",
			f.path, failingFor.Round(time.Second), f.maxStale, err)})
	}
	if prev == nil || stale != wasStale || now.Sub(f.lastLogged) >= failureLogEvery {
		f.lastLogged = now
		msg := "cannot load the credentials file; keeping the last good credentials"
		if stale {
			msg = "cannot load the credentials file; refusing every credential until it loads"
		}
		f.logger.Error(msg, zap.String("file", f.path), zap.Error(err),
			zap.Duration("failing_for", failingFor), zap.Duration("max_stale", f.maxStale))
	}
	if prev == nil {
		f.health(err)
	}
}

// reload reads the file and, where its content changed since the last good
// read, parses it. On success the file's set is current, the new one or,
// after the max-stale bound passed, the last good one again.
func (f *File) reload() error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.loaded(false)
		return fmt.Errorf("read credentials_file: %w", err)
	}
	sum := sha256.Sum256(data)
	if f.good != nil && sum == f.lastContent {
		if f.set.Load() != f.good {
			f.set.Store(f.good)
		}
		return nil
	}
	set, err := Parse(data)
	if err != nil {
		f.loaded(false)
		return fmt.Errorf("%s: %w", f.path, err)
	}
	set.now = f.now
	f.good = set
	f.set.Store(set)
	f.lastContent = sum
	f.loaded(true)
	f.logger.Info("credentials loaded", zap.String("file", f.path),
		zap.Int("credentials", set.Len()), zap.Int("tenants", set.Tenants()))
	return nil
}
