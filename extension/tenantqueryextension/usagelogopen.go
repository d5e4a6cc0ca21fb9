package tenantqueryextension

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Opening the usage log is its crash recovery: what a killed or
// power-cut gateway left is sorted out here (the format is described in
// usagelog.go).

// usageRecovery is what opening a log found.
type usageRecovery struct {
	torn        int   // segments whose last line was cut short
	offsetReset bool  // the offset was unreadable: the whole log is sent again
	pending     int64 // bytes of whole lines not yet taken
}

func openUsageLog(dir string, maxBytes int64) (*usageLog, usageRecovery, error) {
	var rec usageRecovery
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, rec, err
	}
	l := &usageLog{dir: dir, maxBytes: maxBytes, segmentBytes: max(maxBytes/segmentsPerLog, 1), create: createSegment}
	pos, err := readOffset(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		rec.offsetReset = true
	}
	l.pos = pos
	entries, err := os.ReadDir(dir) // sorted by name: by number
	if err != nil {
		return nil, rec, err
	}
	for _, e := range entries {
		seq, ok := segmentSeq(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if seq < pos.seq {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, rec, err
			}
			continue
		}
		s, err := scanSegment(filepath.Join(dir, e.Name()), seq)
		if err != nil {
			return nil, rec, err
		}
		if s.end < s.size {
			rec.torn++
		}
		l.segs = append(l.segs, s)
		l.total += s.size
	}
	l.nextSeq = pos.seq + 1
	for i, s := range l.segs {
		if s.seq == pos.seq {
			// A power cut can leave a segment shorter than what was sent.
			l.pos.off = min(pos.off, s.end)
			rec.pending += s.end - l.pos.off
		} else {
			rec.pending += s.end
		}
		if i == len(l.segs)-1 {
			l.nextSeq = max(l.nextSeq, s.seq+1)
		}
	}
	l.mu.Lock()
	err = l.startSegmentLocked()
	l.mu.Unlock()
	if err != nil {
		return nil, rec, err
	}
	return l, rec, nil
}

func segmentSeq(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil
}

// scanSegment finds where a segment's last whole line ends.
func scanSegment(path string, seq uint64) (segment, error) {
	f, err := os.Open(path)
	if err != nil {
		return segment{}, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return segment{}, err
	}
	s := segment{seq: seq, size: fi.Size()}
	buf := make([]byte, 64<<10)
	for at := s.size; at > 0; {
		n := min(at, int64(len(buf)))
		at -= n
		if _, err := f.ReadAt(buf[:n], at); err != nil {
			return segment{}, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			s.end = at + int64(i) + 1
			break
		}
	}
	return s, nil
}

// readOffset reads the offset file; anything but what writeOffset writes
// is an error.
func readOffset(dir string) (logPosition, error) {
	b, err := os.ReadFile(filepath.Join(dir, offsetName))
	if err != nil {
		return logPosition{}, err
	}
	var p logPosition
	fields := strings.Fields(string(b))
	if len(fields) == 2 {
		seq, err1 := strconv.ParseUint(fields[0], 10, 64)
		off, err2 := strconv.ParseInt(fields[1], 10, 64)
		p = logPosition{seq: seq, off: off}
		// The largest number would leave none for the next segment.
		if err1 == nil && err2 == nil && off >= 0 && seq < math.MaxUint64 && string(b) == formatOffset(p) {
			return p, nil
		}
	}
	return logPosition{}, fmt.Errorf("%s: not %q", offsetName, "<segment> <offset>\\n")
}
