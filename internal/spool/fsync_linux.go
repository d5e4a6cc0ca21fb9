//go:build linux

package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// syncer makes a file's writes durable (fdatasync) without holding the Go
// scheduler's P while the disk works, so the gateway's other goroutines
// keep running during it. A plain fsync blocks its thread, and with
// GOMAXPROCS=1 (a gateway with one CPU) nothing else runs until the runtime
// notices: the parts that should have joined the next group never arrive,
// and every group is one part (measured: 1.07 parts a write, half the CPU
// idle). In order of preference:
//
//   - a thread of the process outside the Go runtime runs the fdatasync
//     (fsyncThreadsFD; built with cgo, as the distribution is) and answers
//     on an eventfd that the runtime's poller waits on, and the waiting
//     goroutine looks at on a timer too (waitSync);
//   - Linux AIO (IOCB_CMD_FDSYNC, Linux 4.18+) with the same eventfd. Its
//     fsync runs in a kernel worker of the submitting core that, once the
//     core is busy, waits for the scheduler's next tick (4 ms at HZ=250):
//     with a CPU-bound process on the core, 4 ms at the median against
//     0.1 ms for the same fdatasync from a thread;
//   - the plain fsync.
type syncer struct {
	mu    sync.Mutex
	efd   int      // eventfd, non-blocking: the sync's answer
	event *os.File // efd, for the runtime's poller

	req int     // the fsync threads' request pipe; -1 without them
	ctx uintptr // aio_context_t; 0 without AIO

	blockingN atomic.Int64 // fsyncs that held their thread
	looked    atomic.Int64 // thread answers found by a look on the timer, not the poller
}

// iocb is struct iocb of linux/aio_abi.h (little-endian: key, then rw_flags).
// Only the fields an fdatasync needs are named.
type iocb struct {
	_      uint64 // aio_data
	_      uint32 // aio_key
	_      int32  // aio_rw_flags
	opcode uint16
	_      int16 // aio_reqprio
	fildes uint32
	_      uint64 // aio_buf
	_      uint64 // aio_nbytes
	_      int64  // aio_offset
	_      uint64 // aio_reserved2
	flags  uint32
	resfd  uint32
}

type ioEvent struct {
	_, _ uint64 // data, obj
	res  int64
	_    int64 // res2
}

const (
	iocbCmdFdsync = 3
	iocbFlagResfd = 1
)

func newSyncer() *syncer { return newSyncerWith(true) }

// newSyncerWith makes a syncer, with the fsync threads where threads and
// they exist.
func newSyncerWith(threads bool) *syncer {
	s := &syncer{req: -1, efd: -1}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return s
	}
	s.efd, s.event = efd, os.NewFile(uintptr(efd), "spool-fsync-eventfd")
	if threads {
		if req, err := fsyncThreadsFD(); err == nil {
			s.req = req
			return s
		}
	}
	var ctx uintptr
	if _, _, errno := syscall.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0); errno != 0 {
		s.closeLocked()
		return s
	}
	s.ctx = ctx
	return s
}

// Ways a syncer makes writes durable.
const (
	syncThread   = "thread"   // an fsync thread outside the Go runtime
	syncAIO      = "aio"      // Linux AIO
	syncBlocking = "blocking" // the plain fsync, holding its thread
)

// how says which way the syncer syncs now.
func (s *syncer) how() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.req >= 0:
		return syncThread
	case s.ctx != 0:
		return syncAIO
	}
	return syncBlocking
}

// async reports whether fsyncs leave the scheduler free (a thread or AIO).
func (s *syncer) async() bool { return s.how() != syncBlocking }

// sync makes f's written data durable.
func (s *syncer) sync(f *os.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.req >= 0:
		return s.threadSync(f)
	case s.ctx != 0:
		return s.aioSync(f)
	}
	s.blockingN.Add(1)
	return f.Sync()
}

// threadSync hands f to an fsync thread and waits for its answer
// (waitSync). f's descriptor is held (Control) until then: a Close meanwhile
// cannot give its number to another file under the thread's fdatasync.
func (s *syncer) threadSync(f *os.File) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var res uint64
	var werr error
	if err := raw.Control(func(fd uintptr) {
		var req [8]byte
		binary.NativeEndian.PutUint32(req[:4], uint32(fd))
		binary.NativeEndian.PutUint32(req[4:], uint32(s.efd))
		for {
			_, werr = unix.Write(s.req, req[:])
			if !errors.Is(werr, unix.EINTR) {
				break
			}
		}
		if werr != nil {
			return
		}
		// The request is out: an fsync thread holds fd and will answer on
		// efd. Nothing returns before that answer is read, or fd (released
		// when Control returns) could be closed and its number reused under
		// the thread's fdatasync, and a late answer would be taken for the
		// next sync's.
		res, werr = s.waitSync()
		if werr != nil {
			res, werr = waitBlocking(s.efd)
		}
	}); err != nil {
		return err
	}
	if werr != nil {
		// The answer could not be read: the thread may still write efd, so
		// it stays open (leaked), and this syncer syncs the plain way.
		s.req, s.event, s.efd = -1, nil, -1
		s.blockingN.Add(1)
		return errors.Join(fmt.Errorf("waiting for fsync: %w", werr), f.Sync())
	}
	if res == 1 {
		return nil
	}
	return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.Errno(res - 1)}
}

// readAnswer reads efd without waiting: the answer, whether there was one,
// or what went wrong.
func readAnswer(efd int) (uint64, bool, error) {
	var buf [8]byte
	_, err := unix.Read(efd, buf[:])
	switch {
	case err == nil:
		return binary.NativeEndian.Uint64(buf[:]), true, nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return 0, false, nil
	}
	return 0, false, err
}

// waitBlocking reads efd's answer, holding the thread until it comes: what
// is left when the poller cannot wait for it.
func waitBlocking(efd int) (uint64, error) {
	for {
		if res, ok, err := readAnswer(efd); ok || err != nil {
			return res, err
		}
		fds := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, err
		}
	}
}

// While a sync's answer has not come, the waiting goroutine looks at its
// eventfd after pollFirst, then at intervals doubling up to pollMax.
const (
	pollFirst = 100 * time.Microsecond
	pollMax   = time.Millisecond
)

// waitSync waits for the fsync thread's answer on the eventfd: through the
// runtime's poller, which finds it at once while the process is idle, and
// with a deadline at which the goroutine reads the eventfd itself. The
// poller is asked only once no goroutine is ready to run, and a busy
// gateway always has one: with GOMAXPROCS=1 an answer given in 0.1 ms was
// seen 10 ms later (the scheduler's own poll), while a deadline is a timer,
// and the runtime fires due timers at each switch between goroutines.
// At most ~15 looks for a 10 ms sync.
func (s *syncer) waitSync() (uint64, error) {
	var buf [8]byte
	for wait := pollFirst; ; wait = min(2*wait, pollMax) {
		if err := s.event.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return 0, err
		}
		_, err := s.event.Read(buf[:])
		if err == nil {
			return binary.NativeEndian.Uint64(buf[:]), nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, err
		}
		if res, ok, err := readAnswer(s.efd); ok || err != nil {
			if ok {
				s.looked.Add(1)
			}
			return res, err
		}
	}
}

// aioSync submits an fdatasync through AIO and waits, in the poller, for
// its completion.
func (s *syncer) aioSync(f *os.File) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var submitErr error
	if err := raw.Control(func(fd uintptr) {
		cb := iocb{opcode: iocbCmdFdsync, fildes: uint32(fd), flags: iocbFlagResfd, resfd: uint32(s.efd)}
		cbs := [1]*iocb{&cb}
		n, _, errno := syscall.Syscall(unix.SYS_IO_SUBMIT, s.ctx, 1, uintptr(unsafe.Pointer(&cbs[0])))
		switch {
		case errno != 0:
			submitErr = errno
		case n != 1:
			submitErr = fmt.Errorf("io_submit took %d of 1", n)
		}
	}); err != nil {
		return err
	}
	if submitErr != nil {
		// A kernel without AIO fsync (EINVAL before 4.18): plain fsync
		// from now on.
		s.closeLocked()
		s.blockingN.Add(1)
		return f.Sync()
	}
	var buf [8]byte
	if _, err := s.event.Read(buf[:]); err != nil { // parks the goroutine, not the thread
		return fmt.Errorf("waiting for fsync: %w", err)
	}
	var ev [1]ioEvent
	n, _, errno := syscall.Syscall6(unix.SYS_IO_GETEVENTS, s.ctx, 1, 1, uintptr(unsafe.Pointer(&ev[0])), 0, 0)
	if errno != 0 {
		return fmt.Errorf("io_getevents: %w", errno)
	}
	if n != 1 {
		return errors.New("io_getevents: no completion")
	}
	if ev[0].res < 0 {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.Errno(-ev[0].res)}
	}
	return nil
}

// blocking is how many fsyncs held their thread (neither the fsync threads
// nor AIO); 0 for a nil syncer (no fsync at all).
func (s *syncer) blocking() int64 {
	if s == nil {
		return 0
	}
	return s.blockingN.Load()
}

func (s *syncer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *syncer) closeLocked() {
	if s.ctx != 0 {
		_, _, _ = syscall.Syscall(unix.SYS_IO_DESTROY, s.ctx, 0, 0)
		s.ctx = 0
	}
	s.req = -1 // the threads are the process's: they stay for other syncers
	if s.event != nil {
		_ = s.event.Close() // and efd with it
		s.event = nil
	}
	s.efd = -1
}

// maxVec is the most buffers one pwritev takes (IOV_MAX).
const maxVec = 1024

// pwritev writes bufs at off in one system call, through the file's own
// descriptor reference (a concurrent Close cannot hand the number to
// another file meanwhile).
func pwritev(f *os.File, bufs [][]byte, off int64) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for {
			n, werr = unix.Pwritev(int(fd), bufs, off)
			if !errors.Is(werr, unix.EINTR) {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	if werr != nil {
		return n, &os.PathError{Op: "pwritev", Path: f.Name(), Err: werr}
	}
	return n, nil
}
