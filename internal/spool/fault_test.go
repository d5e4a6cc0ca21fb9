package spool

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// inject has fault return err at step while on is set, and counts the
// step's calls.
func inject(t *testing.T, step string, err error) (on *atomic.Bool, calls *atomic.Int64) {
	t.Helper()
	on, calls = new(atomic.Bool), new(atomic.Int64)
	fault = func(s string) error {
		if s != step {
			return nil
		}
		calls.Add(1)
		if on.Load() {
			return err
		}
		return nil
	}
	t.Cleanup(func() { fault = nil })
	return on, calls
}

func reopenParts(t *testing.T, dir string) ([]string, map[string]uint64) {
	t.Helper()
	s, parts, heads, _ := open(t, Options{Dir: dir})
	defer func() { require.NoError(t, s.Close()) }()
	var got []string
	for _, p := range parts {
		b, err := s.Read(p.Loc)
		require.NoError(t, err)
		require.Equal(t, data(p.Queue, p.Seq), b)
		got = append(got, fmt.Sprintf("%s#%d", p.Queue, p.Seq))
	}
	return got, heads
}

// A disk that refuses a write (full, failing) fails the group's parts,
// with the error the disk gave: the exporter refuses the request
// retryably, and the client sends it again. Nothing of the failed group
// is kept, nothing acknowledged is lost, and the log goes on once the
// disk takes writes again.
func TestARefusedWriteFailsItsGroupAndTheLogGoesOn(t *testing.T) {
	for _, c := range []struct {
		step string
		err  syscall.Errno
	}{{stepWrite, syscall.ENOSPC}, {stepWrite, syscall.EIO}, {stepSync, syscall.EIO}, {stepSync, syscall.ENOSPC}} {
		t.Run(c.step+"/"+c.err.Error(), func(t *testing.T) {
			dir := t.TempDir()
			on, _ := inject(t, c.step, c.err)
			s, _, _, _ := open(t, Options{Dir: dir, Fsync: true})
			appendAll(t, s, "a", 0, 2)
			on.Store(true)
			res := <-s.Append(Part{Queue: "a", Seq: 2, Data: data("a", 2)})
			require.ErrorIs(t, res.Err, c.err, "the disk's error, to tell apart")
			require.NotErrorIs(t, res.Err, ErrClosed)
			on.Store(false)
			appendAll(t, s, "a", 3, 5)
			require.NoError(t, s.Close())

			got, _ := reopenParts(t, dir)
			require.Equal(t, []string{"a#0", "a#1", "a#3", "a#4"}, got, "a#2 failed: not kept")
		})
	}
}

// A group written whole whose fsync then fails (EIO) leaves its records in
// the file. They are cut off again: else the next group, written at the
// same place and shorter, would be followed by a failed part whose record
// checks out, and a restart would take it for stored.
func TestAFailedSyncsGroupIsCutOff(t *testing.T) {
	dir := t.TempDir()
	var failSync, syncs atomic.Int64 // fail the failSync-th sync from now
	held, free := make(chan struct{}), make(chan struct{})
	var hold atomic.Bool
	fault = func(step string) error {
		switch step {
		case stepWrite:
			if hold.CompareAndSwap(true, false) {
				held <- struct{}{}
				<-free
			}
		case stepSync:
			if n := syncs.Add(1); n == failSync.Load() {
				return syscall.EIO
			}
		}
		return nil
	}
	defer func() { fault = nil }()
	s, _, _, _ := open(t, Options{Dir: dir, Fsync: true})
	// The loop held before writing a#0: a#1 and a#2, appended meanwhile,
	// go together into the next group, whose sync fails.
	hold.Store(true)
	first := s.Append(Part{Queue: "a", Seq: 0, Data: data("a", 0)})
	<-held
	second, third := s.Append(Part{Queue: "a", Seq: 1, Data: data("a", 1)}), s.Append(Part{Queue: "a", Seq: 2, Data: data("a", 2)})
	failSync.Store(syncs.Load() + 2)
	close(free)
	require.NoError(t, (<-first).Err)
	require.ErrorIs(t, (<-second).Err, syscall.EIO)
	require.ErrorIs(t, (<-third).Err, syscall.EIO)
	// As long as a#1: written where a#1 was, a#2's record right after it.
	appendAll(t, s, "a", 3, 4)
	require.NoError(t, s.Close())

	got, _ := reopenParts(t, dir)
	require.Equal(t, []string{"a#0", "a#3"}, got, "a#1 and a#2 failed: neither comes back")
}

// The heads a failed group was to write are written with a later one: a
// sent queue is not sent again for the failure.
func TestAFailedGroupsHeadsAreWrittenLater(t *testing.T) {
	dir := t.TempDir()
	on, _ := inject(t, stepWrite, syscall.ENOSPC)
	s, _, _, _ := open(t, Options{Dir: dir})
	locs := appendAll(t, s, "a", 0, 2)
	on.Store(true)
	s.Release(locs[0])
	s.Ack("a", 1)
	res := <-s.Append(Part{Queue: "a", Seq: 2, Data: data("a", 2)})
	require.ErrorIs(t, res.Err, syscall.ENOSPC)
	on.Store(false)
	appendAll(t, s, "a", 3, 4)
	require.NoError(t, s.Close())

	got, heads := reopenParts(t, dir)
	require.Equal(t, uint64(1), heads["a"])
	require.Equal(t, []string{"a#1", "a#3"}, got)
}

// A disk that stays full does not have the log retry in a loop: a failed
// group's heads wait for the next Append, Ack or Close, and Close returns.
func TestAFullDiskIsNotRetriedInALoop(t *testing.T) {
	dir := t.TempDir()
	on, calls := inject(t, stepWrite, syscall.ENOSPC)
	s, _, _, _ := open(t, Options{Dir: dir})
	appendAll(t, s, "a", 0, 1)
	on.Store(true)
	base := calls.Load()
	s.Ack("a", 1)
	require.Eventually(t, func() bool { return calls.Load() > base }, 10*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	// Once, or twice where the Ack's kick was taken after the write it
	// joined: not over and over.
	n := calls.Load()
	require.LessOrEqual(t, n, base+2, "tried once, not over and over")
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, n, calls.Load(), "and not again until something changes")
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close retries a write the disk keeps refusing")
	}
}

// The next segment cannot be created (the disk is full): the log goes on
// in the active one, past its size, and switches once it can.
func TestASegmentThatCannotBeCreatedIsTriedAgain(t *testing.T) {
	dir := t.TempDir()
	on, calls := inject(t, stepCreate, syscall.ENOSPC)
	s, _, _, _ := open(t, Options{Dir: dir, SegmentBytes: 2048})
	on.Store(true)
	// Whatever was prepared before the fault is used up first.
	appendAll(t, s, "a", 0, 30)
	require.Greater(t, calls.Load(), int64(1))
	st := s.Stats()
	on.Store(false)
	appendAll(t, s, "a", 30, 40)
	require.Greater(t, s.Stats().Rotations, st.Rotations, "switched once the disk took the file")
	require.NoError(t, s.Close())
	got, _ := reopenParts(t, dir)
	require.Len(t, got, 40)
}

// Open fails when its first segment cannot be written, and leaves nothing
// running (goleak, TestMain).
func TestOpenFailsOnARefusedFirstWrite(t *testing.T) {
	on, _ := inject(t, stepWrite, syscall.EIO)
	on.Store(true)
	_, _, _, _, err := Open(Options{Dir: t.TempDir()})
	require.ErrorIs(t, err, syscall.EIO)
	require.False(t, errors.Is(err, ErrClosed))
}

// After Close, reads fail and releases leave the files alone (a
// compaction still running when its exporter shut down).
func TestReadAndReleaseAfterClose(t *testing.T) {
	dir, seg := oneSegment(t)
	s, parts, _, _ := open(t, Options{Dir: dir})
	require.NoError(t, s.Close())
	_, err := s.Read(parts[0].Loc)
	require.ErrorIs(t, err, ErrClosed)
	for _, p := range parts {
		s.Release(p.Loc)
	}
	require.FileExists(t, seg, "released after Close: not deleted")
	got, _ := reopenParts(t, dir)
	require.Len(t, got, 5)
}

// Written is told of every group: its parts, its bytes, how long the
// write and the sync took, and a failure with the disk's error (the
// exporter's own metrics of the log come from it).
func TestWrittenIsToldOfEveryGroup(t *testing.T) {
	var mu sync.Mutex
	var groups []Group
	written := func(g Group) {
		mu.Lock()
		defer mu.Unlock()
		groups = append(groups, g)
	}
	on, _ := inject(t, stepSync, syscall.EIO)
	s, _, _, _ := open(t, Options{Dir: t.TempDir(), Fsync: true, Written: written})
	defer func() { require.NoError(t, s.Close()) }()
	appendAll(t, s, "q", 0, 10)
	on.Store(true)
	r := <-s.Append(Part{Queue: "q", Seq: 10, Items: 1, Data: data("q", 10)})
	require.ErrorIs(t, r.Err, syscall.EIO)

	mu.Lock()
	defer mu.Unlock()
	parts, bytes := 0, int64(0)
	for _, g := range groups[:len(groups)-1] {
		require.NoError(t, g.Err)
		require.Positive(t, g.Sync, "synced: the sync took time")
		parts += g.Parts
		bytes += g.Bytes
	}
	require.Equal(t, 10, parts, "every appended part in one group or another")
	require.Greater(t, bytes, int64(10*len(data("q", 0))), "the records, with their headers")
	last := groups[len(groups)-1]
	require.Equal(t, 1, last.Parts)
	require.ErrorIs(t, last.Err, syscall.EIO, "the failed group, with the disk's error")
	require.Zero(t, last.Sync, "a sync that failed is not timed as one")
}
