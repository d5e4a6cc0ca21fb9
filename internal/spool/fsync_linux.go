//go:build linux

package spool

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// syncer makes a file's writes durable (fdatasync) without holding the Go
// scheduler's P while the disk works: the fsync is submitted through Linux
// AIO (IOCB_CMD_FDSYNC, Linux 4.18+) with an eventfd that the runtime's
// poller waits on, so the gateway's other goroutines keep running during
// it. A plain fsync blocks its thread, and with GOMAXPROCS=1 (a gateway
// with one CPU) nothing else runs until the runtime notices: the parts that
// should have joined the next group never arrive, and every group is one
// part (measured: 1.07 parts a write, half the CPU idle). Where AIO is not
// available the syncer falls back to the plain fsync.
type syncer struct {
	mu    sync.Mutex
	ctx   uintptr  // aio_context_t; 0 without AIO
	event *os.File // eventfd, non-blocking: read through the poller
	efd   int

	blockingN atomic.Int64 // fsyncs that held their thread
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

func newSyncer() *syncer {
	s := &syncer{}
	var ctx uintptr
	if _, _, errno := syscall.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0); errno != 0 {
		return s
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_, _, _ = syscall.Syscall(unix.SYS_IO_DESTROY, ctx, 0, 0)
		return s
	}
	s.ctx, s.efd, s.event = ctx, efd, os.NewFile(uintptr(efd), "spool-fsync-eventfd")
	return s
}

// async reports whether fsyncs go through AIO.
func (s *syncer) async() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx != 0
}

// sync makes f's written data durable.
func (s *syncer) sync(f *os.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == 0 {
		s.blockingN.Add(1)
		return f.Sync()
	}
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

// blocking is how many fsyncs held their thread (no AIO); 0 for a nil
// syncer (no fsync at all).
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
	if s.ctx == 0 {
		return
	}
	_, _, _ = syscall.Syscall(unix.SYS_IO_DESTROY, s.ctx, 0, 0)
	_ = s.event.Close()
	s.ctx, s.event = 0, nil
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
			if werr != unix.EINTR {
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
