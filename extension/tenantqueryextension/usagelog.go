package tenantqueryextension

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// The usage log keeps every read event from the moment its query is
// answered until the event store has taken it, so a killed gateway loses
// none and a restarted one sends only what was not taken.
//
// In usage_events.directory:
//
//	00000000000000000007.jsonl  segments, oldest first by number; one read
//	00000000000000000008.jsonl  event a line (JSON, "\n"), one write(2) each
//	offset                      "<segment number> <byte offset>\n": the event
//	                            store took every line before this point
//
//   - Lines are appended to the newest segment only. Once it holds
//     max_bytes/8 the next line starts a new segment; the sender deletes a
//     segment once it has sent all of it and the writer has moved on. The
//     segments together hold at most max_bytes: past it append refuses.
//   - The writer's segment is fsynced at every flush tick, and when the
//     writer moves on; the sender sends only fsynced bytes, so after a power
//     cut the offset never points past what a segment kept.
//   - The offset is replaced atomically (offset.tmp, fsync, rename, fsync of
//     the directory) after each batch the event store took. A crash between
//     the two sends that batch again: harmless, the usage job counts each
//     query_id once.
//   - Segments numbered below the offset's were sent: open deletes them.
//   - Bytes after a segment's last "\n" are a torn line (a write cut short
//     by a power cut or a full disk): never sent, counted on open. A line
//     that is not a JSON object is skipped and counted likewise.
//   - A gateway starts a new segment after those it finds: nothing is ever
//     appended after a torn line.

const (
	segmentExt     = ".jsonl"
	offsetName     = "offset"
	segmentsPerLog = 8
	maxBatchLines  = 10_000
	maxBatchBytes  = 4 << 20
)

var (
	errUsageLogFull   = errors.New("the usage log is full: the event store has not taken read events for a while")
	errUsageLogClosed = errors.New("the usage log is closed")
)

// segmentWriter is what lines are appended to: an *os.File (a failing one
// in tests).
type segmentWriter interface {
	Write(b []byte) (int, error)
	Sync() error
	Close() error
}

type segment struct {
	seq  uint64
	size int64 // bytes on disk, counted against max_bytes
	end  int64 // bytes up to the last whole line: what may be sent
}

// logPosition is how far the event store has taken the log.
type logPosition struct {
	seq uint64
	off int64
}

// logBatch is the next lines to send, and where the log stands once the
// event store took them.
type logBatch struct {
	body    []byte // whole lines
	lines   int
	skipped int // lines that are not JSON objects: never sent
	next    logPosition
}

// usageLog is the log. Queries call append; the sender (one goroutine)
// calls the rest.
type usageLog struct {
	dir          string
	maxBytes     int64
	segmentBytes int64
	create       func(path string) (segmentWriter, error)

	mu      sync.Mutex
	segs    []segment     // oldest first; the last is the writer's while w != nil
	w       segmentWriter // nil after a failed write: the next append starts a segment
	synced  int64         // bytes of the writer's segment known to be on disk
	total   int64         // the segments' sizes
	nextSeq uint64
	closed  bool

	pos logPosition // the sender's
}

func segmentPath(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", seq, segmentExt))
}

func createSegment(path string) (segmentWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func formatOffset(p logPosition) string { return fmt.Sprintf("%d %d\n", p.seq, p.off) }

func (l *usageLog) writeOffset(p logPosition) error {
	tmp := filepath.Join(l.dir, offsetName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(formatOffset(p))
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, offsetName)); err != nil {
		return err
	}
	return syncDir(l.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// startSegmentLocked fsyncs and closes the writer's segment and starts the
// next one.
func (l *usageLog) startSegmentLocked() error {
	if l.w != nil {
		err := errors.Join(l.w.Sync(), l.w.Close())
		l.w = nil
		if err != nil {
			return err
		}
	}
	seq := l.nextSeq
	l.nextSeq++
	w, err := l.create(segmentPath(l.dir, seq))
	if err != nil {
		return err
	}
	l.segs = append(l.segs, segment{seq: seq})
	l.w, l.synced = w, 0
	return syncDir(l.dir)
}

// append writes one line, ending in "\n", with one write(2): once it
// returns nil a killed process has lost nothing of it.
func (l *usageLog) append(line []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errUsageLogClosed
	}
	if l.total+int64(len(line)) > l.maxBytes {
		return errUsageLogFull
	}
	if l.w == nil || l.segs[len(l.segs)-1].size >= l.segmentBytes {
		if err := l.startSegmentLocked(); err != nil {
			return fmt.Errorf("starting a usage log segment: %w", err)
		}
	}
	s := &l.segs[len(l.segs)-1]
	n, err := l.w.Write(line)
	s.size += int64(n)
	l.total += int64(n)
	if err != nil {
		// Part of the line may be on disk: the segment ends before it (a
		// torn line, never sent) and the next line starts a new segment.
		_ = l.w.Close()
		l.w = nil
		return fmt.Errorf("writing the usage log: %w", err)
	}
	s.end = s.size
	return nil
}

// sync fsyncs the writer's segment: what it held then may be sent.
func (l *usageLog) sync() error {
	l.mu.Lock()
	w := l.w
	var end int64
	if w != nil {
		end = l.segs[len(l.segs)-1].end
	}
	l.mu.Unlock()
	if w == nil {
		return nil
	}
	if err := w.Sync(); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil // the writer moved on, and fsynced it first
		}
		return err
	}
	l.mu.Lock()
	if l.w == w {
		l.synced = max(l.synced, end)
	}
	l.mu.Unlock()
	return nil
}

// next reads the next batch to send; an empty one (no lines, none
// skipped) when everything fsynced has been taken. Segments wholly taken
// that the writer has left are deleted on the way.
func (l *usageLog) next() (logBatch, error) {
	for {
		l.mu.Lock()
		if len(l.segs) == 0 {
			l.mu.Unlock()
			return logBatch{}, nil
		}
		s := l.segs[0]
		writing := l.w != nil && len(l.segs) == 1
		limit := s.end
		if writing {
			limit = min(limit, l.synced)
		}
		l.mu.Unlock()
		off := int64(0)
		if s.seq == l.pos.seq {
			off = l.pos.off
		}
		if off < limit {
			return l.read(s.seq, off, limit)
		}
		if writing {
			return logBatch{}, nil
		}
		if err := l.retire(s); err != nil {
			return logBatch{}, err
		}
	}
}

// read reads whole lines of segment seq from off, up to limit (a line end).
func (l *usageLog) read(seq uint64, off, limit int64) (logBatch, error) {
	f, err := os.Open(segmentPath(l.dir, seq))
	if err != nil {
		return logBatch{}, err
	}
	defer func() { _ = f.Close() }()
	buf := make([]byte, min(limit-off, maxBatchBytes))
	if _, err := f.ReadAt(buf, off); err != nil {
		return logBatch{}, err
	}
	b := logBatch{next: logPosition{seq: seq, off: off}}
	kept, at := 0, 0
	for at < len(buf) && b.lines < maxBatchLines {
		i := bytes.IndexByte(buf[at:], '\n')
		if i < 0 {
			if b.lines+b.skipped > 0 {
				break // the next batch starts with it
			}
			i = len(buf) - at - 1 // one line over a batch: never one of ours
		}
		line := buf[at : at+i+1]
		at += len(line)
		if line[0] != '{' || !json.Valid(line) {
			b.skipped++
			continue
		}
		kept += copy(buf[kept:], line)
		b.lines++
	}
	b.body = buf[:kept]
	b.next.off += int64(at)
	return b, nil
}

// commit records that the event store took everything before p.
func (l *usageLog) commit(p logPosition) error {
	if err := l.writeOffset(p); err != nil {
		return err
	}
	l.pos = p
	return nil
}

// retire deletes a segment the event store took wholly and the writer
// left: the offset moves past it first, so a crash in between deletes it
// on open.
func (l *usageLog) retire(s segment) error {
	l.mu.Lock()
	next := logPosition{seq: l.nextSeq}
	if len(l.segs) > 1 {
		next.seq = l.segs[1].seq
	}
	l.mu.Unlock()
	if err := l.commit(next); err != nil {
		return err
	}
	l.mu.Lock()
	l.segs = l.segs[1:]
	l.total -= s.size
	l.mu.Unlock()
	if err := os.Remove(segmentPath(l.dir, s.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// close fsyncs and closes the writer's segment; append refuses after it.
func (l *usageLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.w == nil {
		return nil
	}
	err := errors.Join(l.w.Sync(), l.w.Close())
	l.w = nil
	return err
}
