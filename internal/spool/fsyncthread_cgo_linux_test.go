//go:build linux && cgo

package spool

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func fsyncWorkersOr(int) int { return fsyncWorkers }

// Built with cgo (as the distribution is), fsyncs run on the process's
// fsync threads, not through AIO, whose kernel worker waits for a busy
// core's next tick.
func TestSyncerUsesTheFsyncThreads(t *testing.T) {
	s := newSyncer()
	defer s.close()
	require.Equal(t, syncThread, s.how())
	f := syncedFile(t)
	require.NoError(t, s.sync(f))
	require.Equal(t, syncThread, s.how(), "and stayed in use")
	require.Zero(t, s.blocking())
	s2 := newSyncer()
	defer s2.close()
	require.Equal(t, s.req, s2.req, "one set of threads per process")
}

// With GOMAXPROCS=1 and goroutines always ready to run, the runtime's
// poller is asked only by its monitor, every 10 ms: the fsync threads'
// answers are found by the waiting goroutine's own look on its timer.
func TestABusySchedulerStillHearsTheSync(t *testing.T) {
	s := newSyncer()
	defer s.close()
	f := syncedFile(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	stop := keepBusy(2, 50*time.Microsecond)
	for i := 0; i < 20; i++ {
		_, err := f.Write(make([]byte, 4096))
		require.NoError(t, err)
		require.NoError(t, s.sync(f))
	}
	stop()
	require.Positive(t, s.looked.Load(), "no answer was found by the timer's look")
}

func syncedFile(t *testing.T) *os.File {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	_, err = f.Write([]byte("x"))
	require.NoError(t, err)
	return f
}
