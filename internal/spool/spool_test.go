package spool

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashEnv) != "" {
		crashChild() // killed in it, or exits
	}
	// Every goroutine of a spool (the group writer, the segment prepared
	// ahead) is gone once Close returns.
	goleak.VerifyTestMain(m)
}

func open(t *testing.T, o Options) (*Spool, []Part, map[string]uint64, []string) {
	t.Helper()
	s, parts, heads, warnings, err := Open(o)
	require.NoError(t, err)
	return s, parts, heads, warnings
}

func data(q string, seq uint64) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%s#%d;", q, seq)), 20)
}

func appendAll(t *testing.T, s *Spool, q string, from, to uint64) []Loc {
	t.Helper()
	var locs []Loc
	for seq := from; seq < to; seq++ {
		res := <-s.Append(Part{Queue: q, Seq: seq, Items: int(seq) + 1, Data: data(q, seq)})
		require.NoError(t, res.Err)
		locs = append(locs, res.Loc)
	}
	return locs
}

func TestWrittenPartsReadBackAndSurviveAReopen(t *testing.T) {
	dir := t.TempDir()
	s, parts, _, _ := open(t, Options{Dir: dir, Fsync: true})
	require.Empty(t, parts)
	locs := appendAll(t, s, "metrics/acme", 0, 10)
	appendAll(t, s, "logs/globex", 0, 3)
	for i, l := range locs {
		got, err := s.Read(l)
		require.NoError(t, err)
		require.Equal(t, data("metrics/acme", uint64(i)), got)
	}
	// Read into a caller's buffer (a request body), side by side.
	body := make([]byte, locs[0].Len+locs[1].Len)
	require.NoError(t, s.ReadInto(locs[0], body[:locs[0].Len]))
	require.NoError(t, s.ReadInto(locs[1], body[locs[0].Len:]))
	require.Equal(t, append(data("metrics/acme", 0), data("metrics/acme", 1)...), body)
	require.ErrorContains(t, s.ReadInto(locs[0], body), "reading", "a buffer of the wrong length")
	// acme was sent up to 4: those parts are released and acknowledged.
	for _, l := range locs[:4] {
		s.Release(l)
	}
	s.Ack("metrics/acme", 4)
	require.NoError(t, s.Close())
	res := <-s.Append(Part{Queue: "metrics/acme", Seq: 99})
	require.ErrorIs(t, res.Err, ErrClosed)

	s, parts, heads, warnings := open(t, Options{Dir: dir})
	defer func() { require.NoError(t, s.Close()) }()
	require.Empty(t, warnings)
	require.Equal(t, uint64(4), heads["metrics/acme"])
	var got []string
	for _, p := range parts {
		b, err := s.Read(p.Loc)
		require.NoError(t, err)
		require.Equal(t, data(p.Queue, p.Seq), b)
		require.Equal(t, int(p.Seq)+1, p.Items)
		got = append(got, fmt.Sprintf("%s#%d", p.Queue, p.Seq))
	}
	require.Equal(t, []string{"logs/globex#0", "logs/globex#1", "logs/globex#2",
		"metrics/acme#4", "metrics/acme#5", "metrics/acme#6", "metrics/acme#7", "metrics/acme#8", "metrics/acme#9"}, got,
		"what was not sent, by queue in order; nothing sent comes back")
}

func segments(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	return len(m)
}

func TestSegmentsGoWhenEverythingInThemIsSentAndHeadsOutliveThem(t *testing.T) {
	dir := t.TempDir()
	s, _, _, _ := open(t, Options{Dir: dir, SegmentBytes: 2048})
	locs := appendAll(t, s, "metrics/acme", 0, 40) // ~500 bytes a part: many segments
	require.Greater(t, segments(t, dir), 5)
	for _, l := range locs[:39] {
		s.Release(l)
	}
	s.Ack("metrics/acme", 39)
	appendAll(t, s, "metrics/acme", 40, 48) // rotates again: the new segments start with the heads
	require.Equal(t, int64(0), s.Stats().LiveBytes-int64(9*len(data("metrics/acme", 40))), "9 parts left")
	require.LessOrEqual(t, segments(t, dir), 6, "the segments whose parts were all sent are deleted")
	require.NoError(t, s.Close())

	s, parts, heads, _ := open(t, Options{Dir: dir, SegmentBytes: 2048})
	defer func() { require.NoError(t, s.Close()) }()
	require.Equal(t, uint64(39), heads["metrics/acme"], "the head is known though the segment that recorded it is gone")
	require.Len(t, parts, 9)
	require.Equal(t, uint64(39), parts[0].Seq)
	require.Equal(t, uint64(47), parts[8].Seq)
}

// oneSegment is a closed spool's folder with one segment, of 5 parts.
func oneSegment(t *testing.T) (dir, seg string) {
	t.Helper()
	dir = t.TempDir()
	s, _, _, _ := open(t, Options{Dir: dir})
	appendAll(t, s, "metrics/acme", 0, 5)
	require.NoError(t, s.Close())
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.Len(t, m, 1)
	return dir, m[0]
}

func TestAWriteCutShortEndsItsSegment(t *testing.T) {
	for _, damage := range []string{"truncated", "flipped"} {
		t.Run(damage, func(t *testing.T) {
			dir, seg := oneSegment(t)
			b, err := os.ReadFile(seg)
			require.NoError(t, err)
			if damage == "truncated" {
				b = b[:len(b)-7] // the last part's write cut short
			} else {
				b[len(b)-3] ^= 0xff // the last part's bytes changed
			}
			require.NoError(t, os.WriteFile(seg, b, 0o600))

			s, parts, _, warnings := open(t, Options{Dir: dir})
			defer func() { require.NoError(t, s.Close()) }()
			require.Len(t, parts, 4, "the parts before the damaged one are kept")
			require.Len(t, warnings, 1)
			require.Contains(t, warnings[0], "do not check out")
			// New parts go to a new segment, never after the damage.
			appendAll(t, s, "metrics/acme", 5, 6)
		})
	}
}

func TestConcurrentAppendsAreGrouped(t *testing.T) {
	s, _, _, _ := open(t, Options{Dir: t.TempDir(), Fsync: true})
	defer func() { require.NoError(t, s.Close()) }()
	var wg sync.WaitGroup
	for q := 0; q < 50; q++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(0); seq < 20; seq++ {
				res := <-s.Append(Part{Queue: fmt.Sprintf("metrics/t%d", q), Seq: seq, Data: data("x", seq)})
				if res.Err != nil {
					t.Error(res.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	require.EqualValues(t, 1000, st.Parts)
	t.Logf("1000 parts from 50 writers in %d writes", st.Writes)
	require.Less(t, st.Writes, st.Parts, "parts that arrive during a write go together into the next")
}

// On Linux the group's fsync runs on an fsync thread (or through AIO): the
// goroutine waits on an eventfd in the runtime's poller instead of holding
// its thread (and, with GOMAXPROCS=1, the only P) while the disk works.
func TestFsyncLeavesTheSchedulerFree(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux: fsync threads or AIO")
	}
	dir := t.TempDir()
	s, _, _, _ := open(t, Options{Dir: dir, Fsync: true})
	require.True(t, s.AsyncFsync(), "the fsync threads (cgo) or AIO fsync (Linux 4.18+) are available here")
	appendAll(t, s, "metrics/acme", 0, 20)
	require.True(t, s.AsyncFsync(), "and stayed in use: the fsyncs succeeded")
	require.NoError(t, s.Close())
	s, parts, _, _ := open(t, Options{Dir: dir, Fsync: true})
	defer func() { require.NoError(t, s.Close()) }()
	require.Len(t, parts, 20)
}

// Creating the next segment (its name made durable: a directory fsync) may
// take the disk's time; appends, reads and releases go on meanwhile: the
// segment is created ahead, and no fsync holds the lock they take.
func TestACreatedSegmentsSyncNeverStopsAppends(t *testing.T) {
	dir := t.TempDir()
	stuck, free := make(chan struct{}, 1), make(chan struct{})
	var calls atomic.Int32
	testHookDirSync = func() {
		if calls.Add(1) == 2 { // Open's own is the first
			stuck <- struct{}{}
			<-free
		}
	}
	defer func() { testHookDirSync = nil }()
	o := Options{Dir: dir, Fsync: true, SegmentBytes: 16 << 10}
	s, _, _, _ := open(t, o)
	select {
	case <-stuck: // the next segment's directory fsync is under way, and stays so
	case <-time.After(30 * time.Second):
		t.Fatal("no segment was created ahead of its use")
	}
	done := make(chan error, 1)
	var locs []Loc
	go func() {
		for seq := uint64(0); seq < 20; seq++ { // ~7 KiB: all in the active segment
			res := <-s.Append(Part{Queue: "metrics/acme", Seq: seq, Data: data("metrics/acme", seq)})
			if res.Err != nil {
				done <- res.Err
				return
			}
			locs = append(locs, res.Loc)
		}
		for _, l := range locs[:10] {
			if _, err := s.Read(l); err != nil {
				done <- err
				return
			}
			s.Release(l)
		}
		s.Ack("metrics/acme", 10)
		done <- nil
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("appends waited on a segment's creation")
	}
	close(free)
	appendAll(t, s, "metrics/acme", 20, 300) // ~100 KiB: the log switches segments
	st := s.Stats()
	require.Greater(t, st.Rotations, int64(4))
	if runtime.GOOS == "linux" {
		require.Zero(t, st.BlockingSyncs, "every fsync on a thread or through AIO: none held the only P")
	}
	require.NoError(t, s.Close())

	s, parts, heads, _ := open(t, o)
	defer func() { require.NoError(t, s.Close()) }()
	require.Equal(t, uint64(10), heads["metrics/acme"])
	require.Len(t, parts, 290)
	require.Equal(t, uint64(10), parts[0].Seq)
}

// A segment whose parts were all sent stays on disk until the segment
// after it has had every head written: deleted before, a crash between the
// two would forget how far each queue was sent.
func TestASegmentOutlivesItsPartsUntilTheNextHasTheHeads(t *testing.T) {
	dir := t.TempDir()
	held, free := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookWrite = func(allHeads bool) {
		if allHeads {
			once.Do(func() {
				close(held)
				<-free
			})
		}
	}
	defer func() { testHookWrite = nil }()
	s, _, _, _ := open(t, Options{Dir: dir, SegmentBytes: 2048})
	res := <-s.Append(Part{Queue: "logs/globex", Seq: 0, Data: data("x", 0)}) // globex sent up to 1, then idle
	require.NoError(t, res.Err)
	s.Release(res.Loc)
	s.Ack("logs/globex", 1)
	// One part at a time until the first segment is full and the next
	// one's first write (the heads) is held; the part appended last waits
	// for it.
	var locs []Loc
	var last <-chan Result
	for seq := uint64(0); last == nil; seq++ {
		ch := s.Append(Part{Queue: "metrics/acme", Seq: seq, Data: data("metrics/acme", seq)})
		select {
		case res := <-ch:
			require.NoError(t, res.Err)
			locs = append(locs, res.Loc)
		case <-held:
			last = ch
		case <-time.After(30 * time.Second):
			t.Fatal("the log did not start its next segment")
		}
	}
	for _, l := range locs {
		s.Release(l)
	}
	s.Ack("metrics/acme", uint64(len(locs)))
	first := filepath.Join(dir, segName(locs[0].Seg))
	_, err := os.Stat(first)
	require.NoError(t, err, "its parts are sent, but the next segment has no heads yet")
	close(free)
	require.NoError(t, (<-last).Err)
	require.Eventually(t, func() bool {
		_, err := os.Stat(first)
		return os.IsNotExist(err)
	}, 10*time.Second, 10*time.Millisecond, "deleted once the next segment has the heads")
	require.NoError(t, s.Close())

	s, parts, heads, _ := open(t, Options{Dir: dir})
	defer func() { require.NoError(t, s.Close()) }()
	require.Equal(t, uint64(1), heads["logs/globex"], "globex's head outlived the segment that recorded it")
	require.Equal(t, uint64(len(locs)), heads["metrics/acme"])
	require.Len(t, parts, 1, "the part appended last, not sent")
}

// A group write of more buffers than one pwritev takes, through a writer
// that writes a few bytes a call, still writes every byte in order.
func TestAGroupWriteIsWholeWhateverTheCallsTake(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "vec"))
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	var bufs [][]byte
	var want []byte
	for i := 0; i < 2*maxVec+7; i++ {
		b := bytes.Repeat([]byte{byte(i)}, 1+i%5)
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	calls, most := 0, 0
	short := func(chunk [][]byte, off int64) (int, error) {
		calls++
		most = max(most, len(chunk))
		var b []byte
		for _, c := range chunk {
			b = append(b, c...)
		}
		return f.WriteAt(b[:min(len(b), 7)], off) // at most 7 bytes a call
	}
	require.NoError(t, writeVec(short, bufs, 3))
	got, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.Equal(t, want, got[3:])
	require.LessOrEqual(t, most, maxVec)
	require.Equal(t, (len(want)+6)/7, calls)

	// The real one, over the limit of one call.
	require.NoError(t, f.Truncate(0))
	require.NoError(t, writeVec((&segment{f: f}).pwritev, bufs, 0))
	got, err = os.ReadFile(f.Name())
	require.NoError(t, err)
	require.Equal(t, want, got)

	stuck := func([][]byte, int64) (int, error) { return 0, nil }
	require.ErrorIs(t, writeVec(stuck, bufs, 0), io.ErrShortWrite)
}

// A sent segment's file is written over by a later segment (a spare)
// instead of deleted. What the spare held is still in it past the new
// segment's end, here a whole record that starts exactly where the new
// segment's first write (its header and heads) ends: parts released but
// whose head was never written (a crash before the next group). A restart
// must not take them for the new segment's.
func TestWhatASpareHeldNeverComesBack(t *testing.T) {
	dir := t.TempDir()
	s, _, _, _ := open(t, Options{Dir: dir, SegmentBytes: 2048})
	big := func(seq uint64) []byte { return bytes.Repeat([]byte{byte('a' + seq%26)}, 2100) } // one part fills a segment
	var stale int64
	for seq := uint64(0); ; seq++ {
		require.Less(t, seq, uint64(200), "no segment was written over a spare")
		res := <-s.Append(Part{Queue: "logs/b", Seq: seq, Data: big(seq)})
		require.NoError(t, res.Err)
		s.Release(res.Loc) // sent; no Ack: the head of logs/b stays 0 on disk
		var active *segment
		require.Eventually(t, func() bool { // the next segment's first write (heads) is done
			s.mu.Lock()
			defer s.mu.Unlock()
			active = s.active
			return !s.needHeads && active.id != res.Loc.Seg
		}, 10*time.Second, time.Millisecond)
		if active.flags&segRecycled == 0 {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, segName(active.id)))
		require.NoError(t, err)
		s.mu.Lock()
		stale = fi.Size() - active.size
		s.mu.Unlock()
		break
	}
	require.Greater(t, stale, int64(2100), "the spare's old part is past the new segment's end")
	st := s.Stats()
	require.Positive(t, st.Recycled)
	require.NoError(t, s.Close())
	spares, _ := filepath.Glob(filepath.Join(dir, "*.spare"))
	require.Empty(t, spares, "Close deletes the spares")

	s, parts, heads, warnings := open(t, Options{Dir: dir, SegmentBytes: 2048})
	defer func() { require.NoError(t, s.Close()) }()
	require.Empty(t, warnings, "bytes past a segment written over a spare are expected")
	require.Empty(t, parts, "every part was sent; none comes back from a spare's old bytes")
	require.Zero(t, heads["logs/b"])
	// The log goes on after them.
	appendAll(t, s, "logs/b", 100, 103)
}

// Spares are used while the log runs: in steady state (parts sent as fast
// as they come) segments are written over spares, not created, and the
// files on disk stay few.
func TestSentSegmentsAreWrittenOverNotCreated(t *testing.T) {
	dir := t.TempDir()
	s, _, _, _ := open(t, Options{Dir: dir, SegmentBytes: 2048})
	defer func() { require.NoError(t, s.Close()) }()
	for seq := uint64(0); seq < 200; seq++ {
		res := <-s.Append(Part{Queue: "metrics/acme", Seq: seq, Data: data("metrics/acme", seq)})
		require.NoError(t, res.Err)
		s.Release(res.Loc)
		s.Ack("metrics/acme", seq+1)
	}
	st := s.Stats()
	require.Greater(t, st.Rotations, int64(20))
	require.Greater(t, st.Recycled, st.Rotations/2, "most segments were written over spares: %+v", st)
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	require.LessOrEqual(t, len(files), 3+maxSpares, "active, retired, prepared and the spares: %v", files)
}

// A spare renamed to its new segment's name but not yet written (a crash
// between the two) holds none of that segment's records: its header names
// the segment it was.
func TestASpareRenamedButNotWrittenIsEmpty(t *testing.T) {
	dir, seg := oneSegment(t)
	require.NoError(t, os.Rename(seg, filepath.Join(dir, segName(77))))

	s, parts, _, warnings := open(t, Options{Dir: dir})
	defer func() { require.NoError(t, s.Close()) }()
	require.Empty(t, warnings)
	require.Empty(t, parts, "segment 77's file is still segment 1's")
	_, err := os.Stat(filepath.Join(dir, segName(77)))
	require.True(t, os.IsNotExist(err), "a segment with nothing to send goes at Open")
}

// A spare left by a run that did not close (a crash) is deleted at Open.
func TestASpareOfTheLastRunIsDeletedAtOpen(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, spareName(9))
	require.NoError(t, os.WriteFile(left, appendSegHeader(nil, 9, 0), 0o600))
	s, parts, _, warnings := open(t, Options{Dir: dir})
	defer func() { require.NoError(t, s.Close()) }()
	require.Empty(t, parts)
	require.Empty(t, warnings)
	_, err := os.Stat(left)
	require.True(t, os.IsNotExist(err))
}

// A part read while its segment is let go (everything in it released: a
// compaction reading a part that a sender just sent) is not returned: the
// file may be a spare written over by the time the read runs.
func TestAReadRacingItsSegmentsReleaseFails(t *testing.T) {
	dir := t.TempDir()
	s, _, _, _ := open(t, Options{Dir: dir, SegmentBytes: 2048})
	defer func() { require.NoError(t, s.Close()) }()
	locs := appendAll(t, s, "metrics/acme", 0, 12) // several segments
	for i, l := range locs[:4] {
		got, err := s.Read(l)
		require.NoError(t, err)
		require.Equal(t, data("metrics/acme", uint64(i)), got)
	}
	first := locs[0].Seg
	var once sync.Once
	testHookRead = func() {
		once.Do(func() {
			for _, l := range locs {
				if l.Seg == first {
					s.Release(l)
				}
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			require.NotContains(t, s.segs, first, "released: detached")
		})
	}
	defer func() { testHookRead = nil }()
	_, err := s.Read(locs[0])
	require.ErrorContains(t, err, "is gone")
}

// Parts may come in any order, and a part may be appended again (a
// compaction writes an old part again at the log's end): Open returns
// each part once, the copy written last, in sequence order, and the
// segment of the copy written before is not held by it.
func TestAPartAppendedAgainComesBackOnceFromItsLastCopy(t *testing.T) {
	dir := t.TempDir()
	s, _, _, _ := open(t, Options{Dir: dir, SegmentBytes: 400})
	locs := appendAll(t, s, "a", 0, 4)
	appendAll(t, s, "a", 5, 6)
	appendAll(t, s, "a", 4, 5) // after 5
	appendAll(t, s, "a", 6, 12)
	old := locs[1]
	b, err := s.Read(old)
	require.NoError(t, err)
	res := <-s.Append(Part{Queue: "a", Seq: 1, Items: 2, Data: b})
	require.NoError(t, res.Err)
	require.Greater(t, res.Loc.Seg, old.Seg, "written again in a later segment")
	copied := res.Loc
	require.NoError(t, s.Close()) // before the old copy is released: both are on disk

	s, parts, _, _ := open(t, Options{Dir: dir, SegmentBytes: 400})
	defer func() { require.NoError(t, s.Close()) }()
	var seqs []uint64
	for _, p := range parts {
		seqs = append(seqs, p.Seq)
		got, err := s.Read(p.Loc)
		require.NoError(t, err)
		require.Equal(t, data("a", p.Seq), got)
		if p.Seq == 1 {
			require.Equal(t, copied, p.Loc, "the copy written last")
		}
	}
	require.Equal(t, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, seqs, "once each, in sequence order")
	// The first segment's other parts sent: nothing holds it any more.
	for _, p := range parts {
		if p.Loc.Seg == old.Seg {
			s.Release(p.Loc)
		}
	}
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, segName(old.Seg)))
		return os.IsNotExist(err)
	}, 10*time.Second, time.Millisecond, "the old copy of a#1 does not hold its segment")
}
