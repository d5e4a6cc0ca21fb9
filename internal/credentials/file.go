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
// Kubernetes Secret update, which swaps a symlink. A file that stops
// parsing leaves the last good credentials in force.
type File struct {
	path     string
	interval time.Duration
	logger   *zap.Logger
	// loaded is told the outcome of every read that found new content or
	// failed (the owner's reload counter).
	loaded func(ok bool)

	set atomic.Pointer[Set]

	// Owned by the reload loop after Start.
	lastContent [sha256.Size]byte
	failure     periodic.ErrorLatch
	poller      *periodic.Runner
}

// NewFile returns a File that is not loaded yet.
func NewFile(path string, interval time.Duration, logger *zap.Logger, loaded func(ok bool)) *File {
	return &File{path: path, interval: interval, logger: logger, loaded: loaded}
}

// Start loads the file and begins polling it.
func (f *File) Start() error {
	if err := f.reload(); err != nil {
		return err
	}
	f.poller = periodic.Start(f.interval, func() {
		if err := f.reload(); f.failure.Changed(err) {
			f.logger.Warn("keeping the last good credentials", zap.String("file", f.path), zap.Error(err))
		}
	})
	return nil
}

// Stop ends polling; the current credentials stay readable.
func (f *File) Stop() {
	if f.poller != nil {
		f.poller.Stop()
	}
}

// Set is the current snapshot (nil before Start succeeded).
func (f *File) Set() *Set { return f.set.Load() }

func (f *File) reload() error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.loaded(false)
		return fmt.Errorf("read credentials_file: %w", err)
	}
	sum := sha256.Sum256(data)
	if f.set.Load() != nil && sum == f.lastContent {
		return nil
	}
	set, err := Parse(data)
	if err != nil {
		f.loaded(false)
		return fmt.Errorf("%s: %w", f.path, err)
	}
	f.set.Store(set)
	f.lastContent = sum
	f.loaded(true)
	f.logger.Info("credentials loaded", zap.String("file", f.path),
		zap.Int("credentials", set.Len()), zap.Int("tenants", set.Tenants()))
	return nil
}
