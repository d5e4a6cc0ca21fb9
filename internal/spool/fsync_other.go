//go:build !linux

package spool

import (
	"os"
	"sync/atomic"
)

// syncer is the plain fsync where Linux AIO does not exist.
type syncer struct{ blockingN atomic.Int64 }

func newSyncer() *syncer    { return &syncer{} }
func (*syncer) async() bool { return false }
func (s *syncer) sync(f *os.File) error {
	s.blockingN.Add(1)
	return f.Sync()
}

func (s *syncer) blocking() int64 {
	if s == nil {
		return 0
	}
	return s.blockingN.Load()
}
func (*syncer) close() {}

// maxVec bounds the buffers of one pwritev.
const maxVec = 1024

// pwritev writes bufs at off, one WriteAt each (no vectored write here).
func pwritev(f *os.File, bufs [][]byte, off int64) (int, error) {
	n := 0
	for _, b := range bufs {
		m, err := f.WriteAt(b, off+int64(n))
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
