//go:build linux

package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Every way a syncer syncs answers each caller with its own file's result:
// with more callers at once than there are fsync threads, a file whose
// fdatasync fails (a pipe: EINVAL) fails only its own caller.
func TestSyncersAnswerTheirOwnCaller(t *testing.T) {
	for _, threads := range []bool{true, false} {
		t.Run(fmt.Sprintf("threads=%v", threads), func(t *testing.T) {
			dir := t.TempDir()
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for i := 0; i < 2*fsyncWorkersOr(4); i++ {
				wg.Add(2)
				go func() { // a file: every sync succeeds
					defer wg.Done()
					s := newSyncerWith(threads)
					defer s.close()
					f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%d", i)))
					if err != nil {
						errs <- err
						return
					}
					defer func() { _ = f.Close() }()
					for j := 0; j < 20; j++ {
						if _, err := f.Write(make([]byte, 4096)); err != nil {
							errs <- err
							return
						}
						if err := s.sync(f); err != nil {
							errs <- fmt.Errorf("file %d, sync %d: %w", i, j, err)
							return
						}
					}
				}()
				go func() { // a pipe: every sync fails with EINVAL, named
					defer wg.Done()
					s := newSyncerWith(threads)
					defer s.close()
					r, w, err := os.Pipe()
					if err != nil {
						errs <- err
						return
					}
					defer func() { _ = r.Close() }()
					defer func() { _ = w.Close() }()
					for j := 0; j < 20; j++ {
						err := s.sync(w)
						var pe *os.PathError
						switch {
						case !errors.Is(err, syscall.EINVAL):
							errs <- fmt.Errorf("pipe %d, sync %d: %w, want EINVAL", i, j, err)
							return
						case errors.As(err, &pe) && pe.Path != w.Name():
							errs <- fmt.Errorf("pipe %d: the error names %q, not the pipe", i, pe.Path)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// waitBlocking, what is left when the poller cannot wait for a thread's
// answer, holds on until the answer comes and returns it.
func TestWaitBlockingWaitsForTheAnswer(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	require.NoError(t, err)
	defer func() { _ = unix.Close(efd) }()
	go func() {
		time.Sleep(20 * time.Millisecond)
		var b [8]byte
		binary.NativeEndian.PutUint64(b[:], 1+uint64(syscall.EIO))
		_, _ = unix.Write(efd, b[:])
	}()
	res, err := waitBlocking(efd)
	require.NoError(t, err)
	require.Equal(t, 1+uint64(syscall.EIO), res)
}

// Without the fsync threads (a build without cgo) the syncer uses Linux
// AIO, still leaving the scheduler free.
func TestSyncerWithoutThreadsUsesAIO(t *testing.T) {
	s := newSyncerWith(false)
	defer s.close()
	require.Equal(t, syncAIO, s.how(), "AIO fsync (Linux 4.18+) is available here")
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	_, err = f.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, s.sync(f))
	require.Equal(t, syncAIO, s.how(), "and stayed in use")
	require.Zero(t, s.blocking())
}

// A sync of a 116 KiB group (the gateway's at 8 requests in flight) as the
// waiting goroutine sees it, with GOMAXPROCS=1 and two goroutines always
// ready to run (a busy gateway): the fsync threads' answer is looked for on
// a timer, AIO's only through the runtime's poller. make bench runs it;
// pin it to one core (taskset -c 0) to put AIO's kernel worker on the
// busy core as in the gateway.
func BenchmarkSyncWhileBusy(b *testing.B) {
	for _, threads := range []bool{true, false} {
		b.Run(map[bool]string{true: "thread", false: "aio"}[threads], func(b *testing.B) {
			s := newSyncerWith(threads)
			defer s.close()
			f, err := os.Create(filepath.Join(b.TempDir(), "seg"))
			require.NoError(b, err)
			defer func() { _ = f.Close() }()
			group := make([]byte, 116<<10)
			for i := 0; i < 16; i++ {
				_, err := f.WriteAt(group, int64(i*len(group)))
				require.NoError(b, err)
			}
			require.NoError(b, f.Sync())
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			defer keepBusy(2, 100*time.Microsecond)() // as a request's decode between switches
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := f.WriteAt(group, int64(i%16*len(group))); err != nil {
					b.Fatal(err)
				}
				if err := s.sync(f); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
		})
	}
}

// keepBusy starts n goroutines that are always ready to run, each spinning
// for slice between yields, until the returned stop is called.
func keepBusy(n int, slice time.Duration) (stop func()) {
	done := make(chan struct{})
	var busy sync.WaitGroup
	for range n {
		busy.Add(1)
		go func() {
			defer busy.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for end := time.Now().Add(slice); time.Now().Before(end); {
				}
				runtime.Gosched()
			}
		}()
	}
	return func() { close(done); busy.Wait() }
}
