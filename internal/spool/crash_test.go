package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// small is a small part's data: a log of a few of them is a few hundred
// bytes, so every offset of it can be tried.
func small(q string, seq uint64) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%s%d;", q, seq)), 4)
}

// copyDir copies a spool's folder, every file cut at its length in cut.
func copyDir(t *testing.T, from, to string, cut map[string]int) {
	t.Helper()
	entries, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		require.NoError(t, err)
		if n, ok := cut[e.Name()]; ok {
			b = b[:n]
		}
		require.NoError(t, os.WriteFile(filepath.Join(to, e.Name()), b, 0o600))
	}
}

type qs struct {
	q   string
	seq uint64
}

// A log of a few small parts over several segments, every segment cut at
// every offset in turn (a write cut short, a lost tail): the log comes
// back with exactly the parts whose records are wholly in what is left,
// less those its heads say were sent, each read back as written, and
// goes on.
func TestEverySegmentCutAtEveryOffset(t *testing.T) {
	dir := t.TempDir()
	s, _, _, _ := open(t, Options{Dir: dir, SegmentBytes: 200})
	type rec struct {
		qs
		loc Loc
		end int64 // of its record
	}
	var recs []rec
	add := func(q string, seq uint64) {
		res := <-s.Append(Part{Queue: q, Seq: seq, Items: int(seq) + 1, Data: small(q, seq)})
		require.NoError(t, res.Err)
		recs = append(recs, rec{qs{q, seq}, res.Loc, res.Loc.Off + int64(res.Loc.Len)})
	}
	for seq := uint64(0); seq < 3; seq++ {
		add("a", seq)
		add("b", seq)
	}
	s.Ack("a", 2) // a sent up to 2: written with the next group, and at the start of every later segment
	for seq := uint64(3); seq < 7; seq++ {
		add("a", seq)
		add("b", seq)
	}
	require.NoError(t, s.Close())

	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(names), 3, "several segments")
	// Where the head of a ends in each segment (-1: not in it).
	ackEnd := map[uint64]int{}
	size := map[uint64]int{}
	for _, name := range names {
		id, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), ".seg"), 16, 64)
		require.NoError(t, err)
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		size[id] = len(b)
		rec := appendHeads(nil, segSeed(id), map[string]uint64{"a": 2}, nil)
		ackEnd[id] = -1
		if i := bytes.Index(b, rec); i >= 0 {
			ackEnd[id] = i + len(rec)
		}
	}

	start := time.Now()
	opens := 0
	for id, n := range size {
		for c := 0; c <= n; c++ {
			acked := false
			for other, end := range ackEnd {
				acked = acked || (other != id && end >= 0) || (other == id && end >= 0 && end <= c)
			}
			var want []string
			for _, r := range recs {
				if (r.loc.Seg == id && r.end > int64(c)) || (acked && r.q == "a" && r.seq < 2) {
					continue
				}
				want = append(want, fmt.Sprintf("%s#%d", r.q, r.seq))
			}
			slices.Sort(want)

			cutDir := filepath.Join(t.TempDir(), "cut")
			require.NoError(t, os.Mkdir(cutDir, 0o700))
			copyDir(t, dir, cutDir, map[string]int{segName(id): c})
			s, parts, _, _, err := Open(Options{Dir: cutDir, SegmentBytes: 200})
			require.NoError(t, err, "segment %d cut at %d", id, c)
			opens++
			var got []string
			for _, p := range parts {
				b, err := s.Read(p.Loc)
				require.NoError(t, err)
				require.Equal(t, small(p.Queue, p.Seq), b, "segment %d cut at %d: %s#%d read back as written", id, c, p.Queue, p.Seq)
				require.Equal(t, int(p.Seq)+1, p.Items)
				got = append(got, fmt.Sprintf("%s#%d", p.Queue, p.Seq))
			}
			slices.Sort(got)
			require.Equal(t, want, got, "segment %d (of %d bytes) cut at %d", id, n, c)
			// The log goes on past the damage.
			res := <-s.Append(Part{Queue: "c", Seq: 0, Data: small("c", 0)})
			require.NoError(t, res.Err)
			b, err := s.Read(res.Loc)
			require.NoError(t, err)
			require.Equal(t, small("c", 0), b)
			require.NoError(t, s.Close())
			if c%16 == 0 { // and comes back with what it had and the new part
				s, parts, _, _, err := Open(Options{Dir: cutDir, SegmentBytes: 200})
				require.NoError(t, err)
				require.Len(t, parts, len(want)+1)
				require.NoError(t, s.Close())
			}
		}
	}
	t.Logf("%d segments, %d cuts in %v", len(size), opens, time.Since(start))
}

// The crash test: a child process (this test binary again, crashEnv set
// to "step n") runs a log through rotations, spares, a compaction and
// Close, and kills itself (SIGKILL: no deferred function, no Close) at the
// n-th time it comes to the step; the parent reopens what it left.
const (
	crashEnv    = "SPOOL_CRASH_AT"
	crashDirEnv = "SPOOL_CRASH_DIR"
)

// crashChild is the child's run. It says on stdout, unbuffered, what it
// did: "append q seq" before an Append, "ok q seq" once acknowledged,
// "head q h" after an Ack, "step name" as it dies, "done" if it got to
// the end.
func crashChild() {
	var (
		at    string
		n     int64
		steps atomic.Int64
	)
	_, _ = fmt.Sscanf(os.Getenv(crashEnv), "%s %d", &at, &n)
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(os.Stdout, format+"\n", args...) }
	fault = func(step string) error {
		if step == at && steps.Add(1) == n {
			// What was acknowledged before the step is said before the
			// process dies: a part acknowledged too early shows as lost.
			time.Sleep(5 * time.Millisecond)
			say("step %s", step)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
		return nil
	}
	fail := func(err error) {
		say("error %v", err)
		os.Exit(2)
	}
	s, _, _, _, err := Open(Options{Dir: os.Getenv(crashDirEnv), SegmentBytes: 160, Fsync: true})
	if err != nil {
		fail(err)
	}
	add := func(q string, seq uint64) Loc {
		say("append %s %d", q, seq)
		res := <-s.Append(Part{Queue: q, Seq: seq, Items: 1, Data: small(q, seq)})
		if res.Err != nil {
			fail(res.Err)
		}
		say("ok %s %d", q, seq)
		return res.Loc
	}
	// slow's parts wait (its store is down) while fast's are sent as they
	// come: segments fill, go, become spares and are written over.
	var slow []Loc
	for seq := uint64(0); seq < 3; seq++ {
		slow = append(slow, add("slow", seq))
	}
	fast := func(from, to uint64) {
		for seq := from; seq < to; seq++ {
			l := add("fast", seq)
			say("head fast %d", seq+1) // sent: said before the release, which may delete its segment
			s.Release(l)
			s.Ack("fast", seq+1)
		}
	}
	fast(0, 8)
	// The compaction: slow's parts written again at the log's end, the
	// old copies released, so their segment goes.
	for i, l := range slow {
		b, err := s.Read(l)
		if err != nil {
			fail(err)
		}
		say("append slow %d", i)
		res := <-s.Append(Part{Queue: "slow", Seq: uint64(i), Items: 1, Data: b})
		if res.Err != nil {
			fail(res.Err)
		}
		s.Release(l)
	}
	fast(8, 16)
	if err := s.Close(); err != nil {
		fail(err)
	}
	say("done")
	os.Exit(0)
}

// Killed at every step of appending, rotating, making and reusing spares,
// compacting and closing, the log comes back with every part that was
// acknowledged and not since sent, each as written, and nothing that was
// never appended; heads never past what was sent.
func TestKilledAtEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("a process a step")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	start := time.Now()
	crashed := map[string]int{}
	for _, at := range []string{stepCreate, stepDirSync, stepReuse, stepWrite, stepSync, stepAck, stepSpare, stepDelete} {
		killedAt(t, exe, at, crashed)
	}
	t.Logf("killed in a child at each of %v in %v", crashed, time.Since(start))
	for _, step := range []string{stepCreate, stepDirSync, stepReuse, stepWrite, stepSync, stepAck, stepSpare, stepDelete} {
		require.Positive(t, crashed[step], "killed at least once at step %q: %v", step, crashed)
	}
}

// killedAt runs the child killed at each time it comes to step in turn,
// until it gets to its end, and checks what each left.
func killedAt(t *testing.T, exe, at string, crashed map[string]int) {
	for n := 1; ; n++ {
		require.Less(t, n, 1000, "the child never got to its end")
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", crashEnv, at, n), crashDirEnv+"="+dir)
		out, err := cmd.Output()
		cancel()
		var (
			appended  = map[qs]bool{}
			acked     = map[qs]bool{}
			sent      = map[string]uint64{}
			step      string
			completed bool
		)
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch f[0] {
			case "append", "ok", "head":
				v, perr := strconv.ParseUint(f[2], 10, 64)
				require.NoError(t, perr)
				switch f[0] {
				case "append":
					appended[qs{f[1], v}] = true
				case "ok":
					acked[qs{f[1], v}] = true
				case "head":
					sent[f[1]] = v
				}
			case "step":
				step = f[1]
			case "done":
				completed = true
			default:
				t.Fatalf("step %d: the child says %q", n, sc.Text())
			}
		}
		if completed {
			require.NoError(t, err)
			return
		}
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "step %d", n)
		require.Equal(t, "signal: killed", ee.Error(), "step %d (%s): killed, no other end: %s", n, step, out)
		crashed[step]++

		s, parts, heads, _, err := Open(Options{Dir: dir})
		require.NoError(t, err, "killed at step %d (%s)", n, step)
		got := map[qs]bool{}
		for _, p := range parts {
			k := qs{p.Queue, p.Seq}
			require.True(t, appended[k], "killed at step %d (%s): %s#%d was never appended", n, step, p.Queue, p.Seq)
			require.False(t, got[k], "once each")
			got[k] = true
			b, err := s.Read(p.Loc)
			require.NoError(t, err)
			require.Equal(t, small(p.Queue, p.Seq), b, "killed at step %d (%s): %s#%d as written", n, step, p.Queue, p.Seq)
		}
		for k := range acked {
			if k.seq >= sent[k.q] {
				require.True(t, got[k], "killed at step %d (%s): %s#%d was acknowledged and not sent: lost", n, step, k.q, k.seq)
			}
		}
		for q, h := range heads {
			require.LessOrEqual(t, h, sent[q], "killed at step %d (%s): a head past what was sent", n, step)
		}
		res := <-s.Append(Part{Queue: "fast", Seq: 99, Data: small("fast", 99)})
		require.NoError(t, res.Err, "the log goes on")
		require.NoError(t, s.Close())
	}
}
