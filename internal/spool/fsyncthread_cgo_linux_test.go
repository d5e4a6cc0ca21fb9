//go:build linux && cgo

package spool

import (
	"testing"

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
	s2 := newSyncer()
	defer s2.close()
	require.Equal(t, s.req, s2.req, "one set of threads per process")
}
