package tenantqueryextension

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failingWriter is a disk that fails: a write longer than `after` bytes
// puts only those in the file and reports ENOSPC; Sync reports syncErr.
type failingWriter struct {
	path    string
	after   int
	syncErr error
}

func (w *failingWriter) Write(b []byte) (int, error) {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	if len(b) <= w.after {
		return f.Write(b)
	}
	n, _ := f.Write(b[:w.after])
	return n, syscall.ENOSPC
}

func (w *failingWriter) Sync() error  { return w.syncErr }
func (w *failingWriter) Close() error { return nil }

func ev(id string) string { return `{"query_id":"` + id + `"}` + "\n" }

func openLog(t *testing.T, dir string, maxBytes int64) (*usageLog, usageRecovery) {
	t.Helper()
	l, rec, err := openUsageLog(dir, maxBytes)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.close() })
	return l, rec
}

// drain sends what the log holds as the sender does (fsync, then batches,
// each committed) and returns the lines and how many were skipped.
func drain(t *testing.T, l *usageLog) (sent []string, skipped int) {
	t.Helper()
	require.NoError(t, l.sync())
	for {
		b, err := l.next()
		require.NoError(t, err)
		if b.lines == 0 && b.skipped == 0 {
			return sent, skipped
		}
		lines := strings.SplitAfter(string(b.body), "\n")
		sent = append(sent, lines[:len(lines)-1]...)
		require.Len(t, lines[:len(lines)-1], b.lines)
		skipped += b.skipped
		require.NoError(t, l.commit(b.next))
	}
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	require.NoError(t, err)
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	return names
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

// Whatever a crash left in the directory, opening it sends every whole
// event the event store had not taken, once, and nothing else.
func TestUsageLogCrashMatrix(t *testing.T) {
	seg := func(dir string, seq uint64, content string) { writeFile(t, segmentPath(dir, seq), content) }
	offset := func(dir, content string) { writeFile(t, filepath.Join(dir, offsetName), content) }
	a, b, c := ev("a"), ev("b"), ev("c")
	for _, tc := range []struct {
		name    string
		setup   func(dir string)
		want    []string
		torn    int
		skipped int
		reset   bool
	}{
		{name: "a fresh directory", setup: func(string) {}},
		{name: "nothing sent yet", setup: func(d string) { seg(d, 1, a+b+c) }, want: []string{a, b, c}},
		{name: "killed mid-segment", setup: func(d string) { seg(d, 1, a+b+c); offset(d, "1 "+strconv.Itoa(len(a))+"\n") }, want: []string{b, c}},
		{name: "killed before retiring a segment", setup: func(d string) {
			seg(d, 1, a)
			seg(d, 2, b)
			offset(d, "1 "+strconv.Itoa(len(a))+"\n")
		}, want: []string{b}},
		{name: "killed after the offset moved past segments, before deleting them", setup: func(d string) {
			seg(d, 1, a)
			seg(d, 2, b)
			seg(d, 3, c)
			offset(d, "3 0\n")
		}, want: []string{c}},
		{name: "a torn last line", setup: func(d string) { seg(d, 1, a+`{"query_id":"x`) }, want: []string{a}, torn: 1},
		{name: "a torn only line", setup: func(d string) { seg(d, 1, `{"q`) }, torn: 1},
		{name: "torn lines in two segments", setup: func(d string) { seg(d, 1, a+`{"q`); seg(d, 2, b+`{`) }, want: []string{a, b}, torn: 2},
		{name: "an unreadable offset", setup: func(d string) { seg(d, 1, a+b); offset(d, "garbage") }, want: []string{a, b}, reset: true},
		{name: "a torn offset", setup: func(d string) { seg(d, 1, a+b); offset(d, "1 ") }, want: []string{a, b}, reset: true},
		{name: "an offset past the segment's end (a power cut)", setup: func(d string) {
			seg(d, 1, a)
			seg(d, 2, b)
			offset(d, "1 9999\n")
		}, want: []string{b}},
		{name: "a leftover offset.tmp", setup: func(d string) {
			seg(d, 1, a)
			writeFile(t, filepath.Join(d, offsetName+".tmp"), "1 9999\n")
		}, want: []string{a}},
		{name: "a line that is not JSON", setup: func(d string) { seg(d, 1, a+"\x00\x00\x00\n"+"[1]\n"+"\n"+b) }, want: []string{a, b}, skipped: 3},
		{name: "an empty segment", setup: func(d string) { seg(d, 1, ""); seg(d, 2, a) }, want: []string{a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "read-events")
			require.NoError(t, os.MkdirAll(dir, 0o700))
			writeFile(t, filepath.Join(dir, "notes.txt"), "not a segment")
			tc.setup(dir)
			l, rec := openLog(t, dir, 1<<20)
			assert.Equal(t, tc.torn, rec.torn)
			assert.Equal(t, tc.reset, rec.offsetReset)
			sent, skipped := drain(t, l)
			assert.Equal(t, tc.want, sent)
			assert.Equal(t, tc.skipped, skipped)
			assert.Len(t, segmentFiles(t, dir), 1, "every segment but the writer's is deleted once sent")
			assert.FileExists(t, filepath.Join(dir, "notes.txt"))

			// A new event goes on after the crash; a restart then sends
			// only it.
			require.NoError(t, l.append([]byte(ev("new"))))
			require.NoError(t, l.close())
			l2, rec2 := openLog(t, dir, 1<<20)
			assert.Zero(t, rec2.torn)
			sent, _ = drain(t, l2)
			assert.Equal(t, []string{ev("new")}, sent)
		})
	}
}

func TestUsageLogSendsOnlyFsyncedEvents(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), 1<<20)
	require.NoError(t, l.append([]byte(ev("a"))))
	b, err := l.next()
	require.NoError(t, err)
	require.Zero(t, b.lines, "not fsynced yet: a power cut could take it back after the event store took it")
	sent, _ := drain(t, l)
	require.Equal(t, []string{ev("a")}, sent)
}

// The log holds at most max_bytes; a new segment starts at max_bytes/8,
// and a sent one is deleted once the writer has left it.
func TestUsageLogBoundsAndRotates(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, minUsageLogBytes)
	line := []byte(ev(strings.Repeat("x", 90))) // 106 bytes
	var n int
	for ; ; n++ {
		err := l.append(line)
		if errors.Is(err, errUsageLogFull) {
			break
		}
		require.NoError(t, err)
	}
	require.Equal(t, minUsageLogBytes/len(line), n)
	require.Len(t, segmentFiles(t, dir), (n+4)/5, "five 106-byte lines pass 512 bytes, max_bytes/8")
	sent, _ := drain(t, l)
	require.Len(t, sent, n)
	require.Len(t, segmentFiles(t, dir), 1, "the sent segments are deleted; the writer's stays")
	require.NoError(t, l.append(line), "room again")
}

func TestUsageLogDiskErrors(t *testing.T) {
	t.Run("a write cut short", func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openLog(t, dir, 1<<20)
		require.NoError(t, l.append([]byte(ev("a"))))
		l.mu.Lock()
		require.NoError(t, l.w.Close())
		torn := segmentPath(dir, l.segs[len(l.segs)-1].seq)
		l.w = &failingWriter{path: torn, after: 9}
		l.mu.Unlock()
		err := l.append([]byte(ev("b")))
		require.ErrorIs(t, err, syscall.ENOSPC)
		require.NotErrorIs(t, err, errUsageLogFull)
		require.NoError(t, l.append([]byte(ev("c"))), "the next event starts a new segment")
		sent, skipped := drain(t, l)
		require.Equal(t, []string{ev("a"), ev("c")}, sent, "the torn bytes are never sent")
		require.Zero(t, skipped)
		require.NoFileExists(t, torn, "and go with their segment")
	})
	t.Run("an fsync that fails", func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openLog(t, dir, 1<<20)
		l.mu.Lock()
		require.NoError(t, l.w.Close())
		l.w = &failingWriter{path: segmentPath(dir, l.segs[0].seq), after: 1 << 10, syncErr: syscall.EIO}
		l.mu.Unlock()
		require.NoError(t, l.append([]byte(ev("a"))))
		require.ErrorIs(t, l.sync(), syscall.EIO)
		b, err := l.next()
		require.NoError(t, err)
		require.Zero(t, b.lines, "what is not known to be on disk is not sent")
	})
	t.Run("a segment that cannot be created", func(t *testing.T) {
		l, _ := openLog(t, t.TempDir(), 1<<20)
		var fail atomic.Bool
		fail.Store(true)
		create := l.create
		l.create = func(path string) (segmentWriter, error) {
			if fail.Load() {
				return nil, syscall.EROFS
			}
			return create(path)
		}
		l.mu.Lock()
		require.NoError(t, l.w.Close())
		l.w = nil
		l.mu.Unlock()
		require.ErrorIs(t, l.append([]byte(ev("a"))), syscall.EROFS)
		fail.Store(false)
		require.NoError(t, l.append([]byte(ev("b"))))
		sent, _ := drain(t, l)
		require.Equal(t, []string{ev("b")}, sent)
	})
	t.Run("an offset that cannot be written", func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openLog(t, dir, 1<<20)
		require.NoError(t, l.append([]byte(ev("a"))))
		require.NoError(t, l.sync())
		require.NoError(t, os.Mkdir(filepath.Join(dir, offsetName+".tmp"), 0o700))
		b, err := l.next()
		require.NoError(t, err)
		require.Error(t, l.commit(b.next))
		again, err := l.next()
		require.NoError(t, err)
		require.Equal(t, b.body, again.body, "the batch is sent again: nothing is lost")
		require.NoError(t, os.Remove(filepath.Join(dir, offsetName+".tmp")))
		require.NoError(t, l.commit(again.next))
		sent, _ := drain(t, l)
		require.Empty(t, sent)
	})
	t.Run("closed", func(t *testing.T) {
		l, _ := openLog(t, t.TempDir(), 1<<20)
		require.NoError(t, l.close())
		require.ErrorIs(t, l.append([]byte(ev("a"))), errUsageLogClosed)
	})
}

// Whatever a segment and the offset file hold, opening the log neither
// fails nor panics, sends only whole JSON-object lines it holds (never a
// torn one), and a new event after it is sent once, last.
func FuzzUsageLogRecovery(f *testing.F) {
	f.Add([]byte(ev("a")+ev("b")), "")
	f.Add([]byte(ev("a")+`{"query_id":"b`), "1 0\n")
	f.Add([]byte(ev("a")+ev("b")), "1 "+strconv.Itoa(len(ev("a")))+"\n")
	f.Add([]byte(ev("a")+"\x00\x00\n"+ev("b")), "1 99\n")
	f.Add([]byte("\n\n{}\n[]\n"), "0 0\n")
	f.Add([]byte(ev("a")), "2 0\n")
	f.Add([]byte(`{"a":"{}\n"}`+"\n"), "1 6\n")
	f.Add([]byte(ev("a")), "18446744073709551615 0\n")
	f.Add([]byte(ev("a")), "1 -5\n")
	f.Fuzz(func(t *testing.T, seg []byte, offset string) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(segmentPath(dir, 1), seg, 0o600))
		if offset != "" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, offsetName), []byte(offset), 0o600))
		}
		l, _, err := openUsageLog(dir, 1<<30)
		require.NoError(t, err)
		defer func() { _ = l.close() }()
		require.NoError(t, l.append([]byte(ev("new"))))
		sent, _ := drain(t, l)
		require.NotEmpty(t, sent)
		require.Equal(t, ev("new"), sent[len(sent)-1])
		whole := seg[:bytes.LastIndexByte(seg, '\n')+1]
		for _, line := range sent[:len(sent)-1] {
			require.True(t, strings.HasPrefix(line, "{") && json.Valid([]byte(line)), "%q", line)
			require.True(t, bytes.Contains(whole, []byte(line)), "%q is not a whole line of the segment", line)
		}
		if offset == "" {
			var want []string
			for _, line := range strings.SplitAfter(string(whole), "\n") {
				if strings.HasPrefix(line, "{") && json.Valid([]byte(line)) {
					want = append(want, line)
				}
			}
			require.Equal(t, append(want, ev("new")), sent)
		}
	})
}
