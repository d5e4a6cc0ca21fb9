// Package spool is an append-only, group-committed log of queued parts on
// disk: the tenant exporter's persistent queue.
//
// Parts of every queue are appended to one active segment file; parts that
// arrive while a write is under way go into the next write together (group
// commit), so a thousand tenants' parts cost a few writes, not a thousand
// transactions. A part is read back by position (pread), never mapped, so
// the queue on disk costs no resident memory. A sent part is released; a
// segment whose parts are all released is deleted, or kept as a spare (at
// most maxSpares) that a later segment is written over. How far each queue
// was sent (its head) is appended too, and every new segment starts with
// all heads, so a restart replays exactly the parts not yet sent.
//
// Spares are why a segment file starts with a header naming its segment,
// and why every record's checksum is seeded with that id: what a spare
// held before is still in it past the new segment's end, and none of it
// checks out as the new segment's (as PostgreSQL recycles WAL segments).
// Deleting a file is not free: its pages leave the page cache, its blocks
// are freed (and, on a filesystem mounted with discard and no journal,
// trimmed before unlink returns: 5 ms for 8 MiB, measured); a new file's
// blocks are allocated again as it is written. Meanwhile the goroutine in
// the syscall holds the Go scheduler's P, which with GOMAXPROCS=1 is the
// whole gateway.
//
// The next segment file is created (and, with Fsync, its name made durable)
// ahead, while the active one fills: switching to it costs no syscall, and
// its first group write carries the heads. No fsync ever holds the lock
// that appends, releases and reads take.
//
// Durability: Append's result comes once the part is written to the file
// (in the kernel's page cache): it survives the process being killed or
// crashing. With Fsync it comes once the write is also on the disk (one
// fsync per group), so it survives a power cut too. A write or fsync that
// fails fails every part of its group, and the group's bytes are cut off
// again, so a part whose Append failed does not come back at Open.
// FORMAT.md describes the files, and what recovery does with each kind of
// damage.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options of a spool.
type Options struct {
	Dir string
	// SegmentBytes: a segment is closed, and a new one started, once it is
	// this large (default 8 MiB).
	SegmentBytes int64
	// Fsync each group before its parts are acknowledged.
	Fsync bool
	// Written, if set, is told of every group write once it is done (its
	// sync too), before its parts' Appends get their results: the log's
	// own telemetry. It runs on the writer and must not block.
	Written func(Group)
}

// Group is one group write, as Options.Written is told of it.
type Group struct {
	Parts int   // parts in it
	Bytes int64 // written (records, heads, a new segment's header)
	// Write is how long the vectored write took, Sync the fdatasync
	// after it (0 without Fsync, or when the write failed).
	Write, Sync time.Duration
	Err         error // the write's or the sync's; the group's parts failed
}

// Loc is where a part's data is: segment and offset. The zero Loc is none.
type Loc struct {
	Seg uint64
	Off int64
	Len int
}

// Part is one queued part, as appended and as recovered.
type Part struct {
	Queue string
	Seq   uint64
	Items int
	Data  []byte // Append: the data, written from where it is (not to be changed until the Result); recovered: nil (read it at Loc)
	Loc   Loc
}

// Result of an Append: where the part was written, or why not.
type Result struct {
	Loc Loc
	Err error
}

// Stats of a spool.
type Stats struct {
	Segments  int
	DiskBytes int64 // of every segment file
	LiveBytes int64 // of the parts not yet released
	Writes    int64 // group writes since Open
	Parts     int64 // parts in them
	Rotations int64 // segments started since Open
	Recycled  int64 // of them, written over a spare instead of a new file
	// BlockingSyncs: fsyncs since Open that held their thread (neither
	// the fsync threads nor Linux AIO were available); otherwise every
	// fsync leaves the scheduler free.
	BlockingSyncs int64
}

const (
	recPart  = 1
	recHeads = 2

	headerLen = 8 // body length, CRC-32C of the body

	// A segment file starts with segHeaderLen bytes: segMagic, the
	// segment's id, flags, and their CRC-32C. Its records' CRCs are seeded
	// with the id (segSeed). A file whose header does not check out, or
	// names another segment, holds none of this segment's records.
	segMagic     = "OGSPOOL\x02"
	segHeaderLen = 24
	segRecycled  = 1 // flag: written over a spare (bytes past its end are an earlier segment's)

	// maxSpares is how many fully sent segment files are kept to be
	// written over, instead of being deleted.
	maxSpares = 2
)

// segSeed is the CRC-32C that a segment's records' checksums start from:
// that of its id, so a record left from another segment never checks out.
func segSeed(id uint64) uint32 {
	return crc32.Checksum(binary.BigEndian.AppendUint64(nil, id), castagnoli)
}

func appendSegHeader(buf []byte, id uint64, flags uint32) []byte {
	start := len(buf)
	buf = append(buf, segMagic...)
	buf = binary.BigEndian.AppendUint64(buf, id)
	buf = binary.BigEndian.AppendUint32(buf, flags)
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

// parseSegHeader is the id and flags of the header data starts with, if
// it checks out (ok).
func parseSegHeader(data []byte) (id uint64, flags uint32, ok bool) {
	if len(data) < segHeaderLen || string(data[:len(segMagic)]) != segMagic ||
		crc32.Checksum(data[:segHeaderLen-4], castagnoli) != binary.BigEndian.Uint32(data[segHeaderLen-4:]) {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(data[8:]), binary.BigEndian.Uint32(data[16:]), true
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Test hooks: called, when set, before the directory's fsync, before a
// group write (allHeads: the write that starts a segment), and before a
// part is read.
var (
	testHookDirSync func()
	testHookWrite   func(allHeads bool)
	testHookRead    func()
)

// fault, set by tests only, is called at each step that changes the files
// (the steps of FORMAT.md's crash table): an error it returns is the
// step's own, as if the disk had refused it (ENOSPC, EIO), and a crash
// test kills the process in it. Nil otherwise: a nil check a step.
var fault func(step string) error

// Steps that fault is called at.
const (
	stepCreate   = "create"   // a segment file is created
	stepDirSync  = "dirsync"  // the directory is synced (a created or renamed segment's name)
	stepReuse    = "reuse"    // a spare is renamed to a new segment's name
	stepWrite    = "write"    // a group (or Open's first segment) is written
	stepSync     = "sync"     // the group is synced (with Fsync)
	stepAck      = "ack"      // written (and synced): the group's parts are acknowledged
	stepTruncate = "truncate" // a failed group's bytes are cut off again
	stepSpare    = "spare"    // a fully sent segment is renamed to a spare
	stepDelete   = "delete"   // a segment or spare file is deleted
)

func at(step string) error {
	if fault == nil {
		return nil
	}
	return fault(step)
}

// ErrClosed is Append's result, and Read's, after Close.
var ErrClosed = errors.New("spool: closed")

type segment struct {
	id        uint64
	f         *os.File
	size      int64
	live      int // parts written and not released
	liveBytes int64
	seed      uint32 // segSeed(id)
	flags     uint32 // of its header
}

func newSegment(id uint64, f *os.File, flags uint32) *segment {
	return &segment{id: id, f: f, seed: segSeed(id), flags: flags}
}

func (seg *segment) pwritev(bufs [][]byte, off int64) (int, error) {
	if err := at(stepWrite); err != nil {
		return 0, err
	}
	return pwritev(seg.f, bufs, off)
}

type pending struct {
	p  Part
	ch chan Result
}

// prepared is a segment file created ahead of its use.
type prepared struct {
	id       uint64
	f        *os.File
	recycled bool // a spare, renamed
	err      error
}

// Spool is an open spool.
type Spool struct {
	opts Options

	mu       sync.Mutex
	segs     map[uint64]*segment
	active   *segment
	heads    map[string]uint64 // first unsent seq of each queue
	dirty    map[string]bool   // heads changed since last written
	queue    []pending
	closed   bool
	diskSize int64
	live     int64

	// Segments switched to by the loop: the active one's first write must
	// carry every head (needHeads), and the one before it stays on disk
	// until then (retired), even with nothing in it left to send.
	needHeads bool
	retired   *segment

	// Fully sent segment files kept to be written over (renamed to
	// spareName), at most maxSpares; the oldest is taken first.
	spares []*segment

	kick chan struct{}
	done chan struct{}
	next chan prepared // the next segment, created ahead (one always under way)
	sync *syncer       // the groups' fsyncs
	dirs *syncer       // the directory's, for created segments

	writes, parts, rotations, recycled atomic.Int64
}

// Open opens (creating it if needed) the spool in opts.Dir and returns the
// parts not yet sent, by queue in sequence order, and each queue's head
// (the next sequence number of a queue is at least its head).
func Open(opts Options) (*Spool, []Part, map[string]uint64, []string, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 8 << 20
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{opts: opts, segs: map[uint64]*segment{}, heads: map[string]uint64{}, dirty: map[string]bool{},
		kick: make(chan struct{}, 1), done: make(chan struct{}), next: make(chan prepared, 1)}
	if opts.Fsync {
		s.sync, s.dirs = newSyncer(), newSyncer()
	}
	parts, warnings, err := s.recover()
	if err != nil {
		return nil, nil, nil, nil, errors.Join(err, s.closeFiles())
	}
	if err := s.rotate(); err != nil {
		return nil, nil, nil, nil, errors.Join(err, s.closeFiles())
	}
	// Segments left with nothing to send go now.
	for _, seg := range s.segs {
		if seg.live == 0 && seg != s.active {
			s.remove(seg)
		}
	}
	heads := make(map[string]uint64, len(s.heads))
	for q, h := range s.heads {
		heads[q] = h
	}
	go s.prepare(s.active.id + 1)
	go s.loop()
	return s, parts, heads, warnings, nil
}

func segName(id uint64) string { return fmt.Sprintf("%016x.seg", id) }

// spareName is a spare's file name: not a segment's, so a restart does not
// read it (Open deletes it).
func spareName(id uint64) string { return segName(id) + ".spare" }

// recover reads every segment in order: parts, heads. A record that does
// not check out ends its segment (a write cut short by a crash or power
// cut); what followed it in that segment is not used. A part found twice
// (written again by a compaction) is its copy read last.
func (s *Spool) recover() ([]Part, []string, error) {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".spare") && !e.IsDir() {
			// A spare of the last run: nothing in it is needed.
			if err := at(stepDelete); err != nil {
				return nil, nil, fmt.Errorf("spool: %w", err)
			}
			if err := os.Remove(filepath.Join(s.opts.Dir, e.Name())); err != nil {
				return nil, nil, fmt.Errorf("spool: %w", err)
			}
			continue
		}
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok || e.IsDir() {
			continue
		}
		id, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	type key struct {
		q   string
		seq uint64
	}
	found := map[key]Part{}
	var warnings []string
	for _, id := range ids {
		path := filepath.Join(s.opts.Dir, segName(id))
		f, err := os.OpenFile(path, os.O_RDWR, 0o600)
		if err != nil {
			return nil, warnings, fmt.Errorf("spool: %w", err)
		}
		data, err := io.ReadAll(f)
		if err != nil {
			_ = f.Close()
			return nil, warnings, fmt.Errorf("spool: %s: %w", path, err)
		}
		seg := newSegment(id, f, 0)
		s.segs[id] = seg
		off, end := segHeaderLen, len(data)
		hid, flags, ok := parseSegHeader(data)
		switch {
		case ok && hid == id:
			seg.flags = flags
		case ok || len(data) == 0:
			// Created ahead, or renamed from a spare, and never written
			// as this segment: nothing in it is this segment's (Open
			// deletes it).
			off, end = 0, 0
		default:
			// Its first write cut short (the header is in it): nothing in
			// it was acknowledged.
			warnings = append(warnings, fmt.Sprintf("segment %s: its header does not check out (a first write cut short); its %d bytes are not used", path, len(data)))
			off, end = 0, 0
		}
		for off < end {
			if end-off < headerLen {
				break
			}
			n := int(binary.BigEndian.Uint32(data[off:]))
			sum := binary.BigEndian.Uint32(data[off+4:])
			if n < 1 || n > end-off-headerLen || crc32.Update(seg.seed, castagnoli, data[off+headerLen:off+headerLen+n]) != sum {
				break
			}
			body := data[off+headerLen : off+headerLen+n]
			bodyOff := int64(off + headerLen)
			off += headerLen + n
			switch body[0] {
			case recPart:
				p, dataOff, ok := decodePart(body)
				if !ok {
					continue
				}
				p.Loc = Loc{Seg: id, Off: bodyOff + int64(dataOff), Len: len(body) - dataOff}
				found[key{p.Queue, p.Seq}] = p
			case recHeads:
				decodeHeads(body, func(q string, h uint64) {
					if h > s.heads[q] {
						s.heads[q] = h
					}
				})
			}
		}
		switch {
		case off < end && seg.flags&segRecycled != 0:
			// Past a segment written over a spare is what the spare held
			// (or a write cut short: the two cannot be told apart, and
			// neither was acknowledged).
			end = off
		case off < end:
			warnings = append(warnings, fmt.Sprintf("segment %s: %d bytes at its end do not check out (a write cut short); the parts before them are kept", path, end-off))
		}
		seg.size = int64(end)
		s.diskSize += seg.size
	}
	parts := make([]Part, 0, len(found))
	for k, p := range found {
		if k.seq < s.heads[k.q] {
			continue
		}
		parts = append(parts, p)
		seg := s.segs[p.Loc.Seg]
		seg.live++
		seg.liveBytes += int64(p.Loc.Len)
		s.live += int64(p.Loc.Len)
	}
	slices.SortFunc(parts, func(a, b Part) int {
		if c := strings.Compare(a.Queue, b.Queue); c != 0 {
			return c
		}
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return parts, warnings, nil
}

func decodePart(body []byte) (Part, int, bool) {
	// type, seq u64, items u32, queue length u16, queue, data
	if len(body) < 15 {
		return Part{}, 0, false
	}
	seq := binary.BigEndian.Uint64(body[1:])
	items := binary.BigEndian.Uint32(body[9:])
	ql := int(binary.BigEndian.Uint16(body[13:]))
	if len(body) < 15+ql {
		return Part{}, 0, false
	}
	return Part{Queue: string(body[15 : 15+ql]), Seq: seq, Items: int(items)}, 15 + ql, true
}

// appendPartHeader appends a part's record up to its data, which the
// group write takes from where it is (no copy); the CRC covers the data.
func appendPartHeader(buf []byte, seed uint32, p Part) []byte {
	n := 15 + len(p.Queue) + len(p.Data)
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	buf = binary.BigEndian.AppendUint32(buf, 0)
	buf = append(buf, recPart)
	buf = binary.BigEndian.AppendUint64(buf, p.Seq)
	buf = binary.BigEndian.AppendUint32(buf, uint32(p.Items))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(p.Queue)))
	buf = append(buf, p.Queue...)
	crc := crc32.Update(crc32.Update(seed, castagnoli, buf[start+headerLen:]), castagnoli, p.Data)
	binary.BigEndian.PutUint32(buf[start+4:], crc)
	return buf
}

func appendHeads(buf []byte, seed uint32, heads map[string]uint64, only map[string]bool) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, recHeads)
	for q, h := range heads {
		if only != nil && !only[q] {
			continue
		}
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(q)))
		buf = append(buf, q...)
		buf = binary.BigEndian.AppendUint64(buf, h)
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start-headerLen))
	binary.BigEndian.PutUint32(buf[start+4:], crc32.Update(seed, castagnoli, buf[start+headerLen:]))
	return buf
}

func decodeHeads(body []byte, f func(string, uint64)) {
	b := body[1:]
	for len(b) >= 2 {
		ql := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+ql+8 {
			return
		}
		f(string(b[2:2+ql]), binary.BigEndian.Uint64(b[2+ql:]))
		b = b[2+ql+8:]
	}
}

// rotate starts the first segment, with every queue's head: Open's, before
// anything else runs. Later segments are prepared ahead (switchSegment).
func (s *Spool) rotate() error {
	var id uint64 = 1
	for sid := range s.segs {
		id = max(id, sid+1)
	}
	f, err := s.createSegment(id)
	if err != nil {
		return err
	}
	seg := newSegment(id, f, 0)
	buf := appendHeads(appendSegHeader(nil, id, seg.flags), seg.seed, s.heads, nil)
	if err = at(stepWrite); err == nil {
		_, err = f.WriteAt(buf, 0)
	}
	if err == nil && s.opts.Fsync {
		if err = at(stepSync); err == nil {
			err = s.sync.sync(f)
		}
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return fmt.Errorf("spool: %w", err)
	}
	clear(s.dirty)
	seg.size = int64(len(buf))
	s.active = seg
	s.segs[id] = s.active
	s.diskSize += int64(len(buf))
	s.rotations.Add(1)
	return nil
}

// syncDir makes the directory's entries (a created segment's name) durable.
func (s *Spool) syncDir() error {
	if testHookDirSync != nil {
		testHookDirSync()
	}
	if err := at(stepDirSync); err != nil {
		return err
	}
	d, err := os.Open(s.opts.Dir)
	if err != nil {
		return err
	}
	return errors.Join(s.dirs.sync(d), d.Close())
}

// createSegment creates segment id's file, empty; with Fsync its name is
// on the disk before anything written in it is acknowledged (a power cut
// cannot lose the file).
func (s *Spool) createSegment(id uint64) (*os.File, error) {
	path := filepath.Join(s.opts.Dir, segName(id))
	var f *os.File
	err := at(stepCreate)
	if err == nil {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err == nil && s.opts.Fsync {
		if err = s.syncDir(); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}

// prepare makes segment id's file ahead of its use, from a spare if there
// is one, and hands it to the loop (s.next). One is always under way from
// Open to Close.
func (s *Spool) prepare(id uint64) {
	s.mu.Lock()
	var spare *segment
	if len(s.spares) > 0 {
		spare = s.spares[0]
		s.spares = slices.Delete(s.spares, 0, 1)
	}
	s.mu.Unlock()
	if spare != nil {
		f, err := s.reuse(spare, id)
		if err == nil {
			s.next <- prepared{id: id, f: f, recycled: true}
			return
		}
	}
	f, err := s.createSegment(id)
	s.next <- prepared{id: id, f: f, err: err}
}

// reuse renames a spare to segment id's name; with Fsync the name is on the
// disk before anything written in it is acknowledged, as a created one's.
// A spare that cannot be reused is deleted.
func (s *Spool) reuse(spare *segment, id uint64) (*os.File, error) {
	from, to := filepath.Join(s.opts.Dir, spareName(spare.id)), filepath.Join(s.opts.Dir, segName(id))
	err := at(stepReuse)
	if err == nil {
		err = os.Rename(from, to)
	}
	if err == nil && s.opts.Fsync {
		if err = s.syncDir(); err != nil {
			from = to
		}
	}
	if err != nil {
		_ = spare.f.Close()
		_ = os.Remove(from)
		return nil, err
	}
	return spare.f, nil
}

// switchSegment makes the prepared segment the active one; the loop's next
// write starts it with every head. Only the loop calls it, without s.mu.
// On failure (the file could not be created) the log goes on in the active
// segment and switching is tried again after the next group.
func (s *Spool) switchSegment() {
	p := <-s.next
	if p.err != nil {
		go s.prepare(p.id)
		return
	}
	s.mu.Lock()
	s.retired = s.active
	var flags uint32
	if p.recycled {
		flags = segRecycled
	}
	s.active = newSegment(p.id, p.f, flags)
	s.segs[p.id] = s.active
	s.needHeads = true
	s.mu.Unlock()
	s.rotations.Add(1)
	if p.recycled {
		s.recycled.Add(1)
	}
	s.signal() // the heads are written now, with whatever parts are waiting
	go s.prepare(p.id + 1)
}

// remove deletes a segment with nothing left to send. Callers hold s.mu.
func (s *Spool) remove(seg *segment) {
	s.detach(seg)
	s.deleteFile(seg)
}

// detach forgets a segment with nothing left to send; its file is then
// deleted (deleteFile), which needs no lock. Callers hold s.mu.
func (s *Spool) detach(seg *segment) {
	delete(s.segs, seg.id)
	s.diskSize -= seg.size
}

// deleteFile closes and deletes a detached segment's file. Not deleted (a
// failure), it is read again at the next Open: what it holds was sent, or
// is held by a later segment too.
func (s *Spool) deleteFile(seg *segment) {
	_ = seg.f.Close()
	if at(stepDelete) == nil {
		_ = os.Remove(filepath.Join(s.opts.Dir, segName(seg.id)))
	}
}

// drop is deleteFile where a detached segment may become a spare instead:
// renamed (no sync: if a crash undoes the rename, a restart finds a
// segment with nothing left to send, as before it), kept open. Not under
// s.mu.
func (s *Spool) drop(seg *segment) {
	s.mu.Lock()
	keep := !s.closed && len(s.spares) < maxSpares
	s.mu.Unlock()
	if keep && at(stepSpare) == nil && os.Rename(filepath.Join(s.opts.Dir, segName(seg.id)), filepath.Join(s.opts.Dir, spareName(seg.id))) == nil {
		s.mu.Lock()
		if !s.closed && len(s.spares) < maxSpares {
			s.spares = append(s.spares, seg)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.deleteSpare(seg)
		return
	}
	s.deleteFile(seg)
}

// deleteSpare closes and deletes a spare (renamed to spareName).
func (s *Spool) deleteSpare(seg *segment) {
	_ = seg.f.Close()
	if at(stepDelete) == nil {
		_ = os.Remove(filepath.Join(s.opts.Dir, spareName(seg.id)))
	}
}

// Append queues a part for the next group write; the channel gets its
// location once written (and, with Fsync, synced), or the error. Parts
// may come in any order. A part appended again (the same queue and
// sequence number, as a compaction writes an old part again at the log's
// end) must have the same data: Open returns one of them, the copy written
// last, and the segment of the other is not held by it.
func (s *Spool) Append(p Part) <-chan Result {
	ch := make(chan Result, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ch <- Result{Err: ErrClosed}
		return ch
	}
	s.queue = append(s.queue, pending{p: p, ch: ch})
	s.signal()
	return ch
}

// Ack records that a queue was sent up to (not including) head; it is
// written with the next group, unwaited: lost in a crash, it only means
// the parts are sent again.
func (s *Spool) Ack(queue string, head uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if head > s.heads[queue] {
		s.heads[queue] = head
		s.dirty[queue] = true
		s.signal()
	}
}

func (s *Spool) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Head is the first unsent sequence number of a queue: a queue created
// anew (after it was released as idle) continues from it.
func (s *Spool) Head(queue string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heads[queue]
}

// Release says a part written at loc is no longer needed (sent, or
// written again elsewhere); its segment goes once nothing in it is needed.
// After Close it does nothing: the files are left as Close left them.
func (s *Spool) Release(loc Loc) {
	if loc.Seg == 0 {
		return
	}
	s.mu.Lock()
	seg, ok := s.segs[loc.Seg]
	if !ok || s.closed {
		s.mu.Unlock()
		return
	}
	seg.live--
	seg.liveBytes -= int64(loc.Len)
	s.live -= int64(loc.Len)
	done := seg.live <= 0 && seg != s.active && seg != s.retired
	if done {
		s.detach(seg)
	}
	s.mu.Unlock()
	if done {
		// Outside the lock: appends go on meanwhile. A reader that looked
		// the segment up before it was detached reads nothing it needs.
		s.drop(seg)
	}
}

// Read reads a part's data at loc.
func (s *Spool) Read(loc Loc) ([]byte, error) {
	buf := make([]byte, loc.Len)
	if err := s.ReadInto(loc, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadInto reads a part's data at loc into dst, which must be loc.Len
// long: a sender reads its parts straight into the request body.
func (s *Spool) ReadInto(loc Loc, dst []byte) error {
	if len(dst) != loc.Len {
		return fmt.Errorf("spool: reading %d bytes into %d", loc.Len, len(dst))
	}
	s.mu.Lock()
	seg, ok := s.segs[loc.Seg]
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !ok {
		return fmt.Errorf("spool: segment %d is gone", loc.Seg)
	}
	if testHookRead != nil {
		testHookRead()
	}
	if _, err := seg.f.ReadAt(dst, loc.Off); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	// Detached meanwhile (everything in it released), its file may be a
	// spare already written over: what was read is not the part. Still
	// attached now, it was all through the read (a detached segment never
	// comes back under its id).
	s.mu.Lock()
	still := s.segs[loc.Seg] == seg
	s.mu.Unlock()
	if !still {
		return fmt.Errorf("spool: segment %d is gone", loc.Seg)
	}
	return nil
}

// Oldest is the oldest segment and how much of it is still needed, for
// compaction: a segment held by a few parts of a queue that cannot send
// can have them written again (Append) and released.
func (s *Spool) Oldest() (seg uint64, liveBytes, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, x := range s.segs {
		if x != s.active && (seg == 0 || id < seg) {
			seg, liveBytes, size = id, x.liveBytes, x.size
		}
	}
	return seg, liveBytes, size
}

// AsyncFsync reports whether fsyncs leave the scheduler free while the disk
// works (the fsync threads, or Linux AIO) rather than block a thread of it.
func (s *Spool) AsyncFsync() bool { return s.sync != nil && s.sync.async() }

// Stats of the spool now.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Segments: len(s.segs), DiskBytes: s.diskSize, LiveBytes: s.live, Writes: s.writes.Load(), Parts: s.parts.Load(),
		Rotations: s.rotations.Load(), Recycled: s.recycled.Load(), BlockingSyncs: s.sync.blocking() + s.dirs.blocking()}
}

// loop writes groups: everything appended (and every changed head) while
// the previous write was under way.
func (s *Spool) loop() {
	defer close(s.done)
	var (
		buf     []byte   // the group's head records and part headers
		hdrs    [][2]int // each part's header in buf: start, end
		vec     [][]byte // what the group write writes, in order
		dirtied []string // the queues whose heads the group writes
	)
	for range s.kick {
		for {
			s.mu.Lock()
			group := s.queue
			s.queue = nil
			closed := s.closed
			if len(group) == 0 && len(s.dirty) == 0 && !s.needHeads {
				s.mu.Unlock()
				if closed {
					return
				}
				break
			}
			// The group's records are written with one vectored write: the
			// headers (and head records) from buf, each part's data from
			// where it is. Copying the data into buf first cost half as much
			// CPU as the kernel's copy into the page cache, under s.mu.
			buf = buf[:0]
			allHeads := s.needHeads
			seg := s.active
			base := seg.size
			if base == 0 {
				buf = appendSegHeader(buf, seg.id, seg.flags)
			}
			written := dirtied[:0] // the heads this group writes, dirty again if it fails
			switch {
			case allHeads:
				buf = appendHeads(buf, seg.seed, s.heads, nil)
				clear(s.dirty)
			case len(s.dirty) > 0:
				buf = appendHeads(buf, seg.seed, s.heads, s.dirty)
				for q := range s.dirty {
					written = append(written, q)
				}
				clear(s.dirty)
			}
			dirtied = written
			headsLen := len(buf)
			hdrs = hdrs[:0]
			locs := make([]Loc, len(group))
			pos := base + int64(headsLen)
			for i, g := range group {
				start := len(buf)
				buf = appendPartHeader(buf, seg.seed, g.p)
				hdrs = append(hdrs, [2]int{start, len(buf)})
				pos += int64(len(buf) - start)
				locs[i] = Loc{Seg: seg.id, Off: pos, Len: len(g.p.Data)}
				pos += int64(len(g.p.Data))
			}
			s.mu.Unlock()
			vec = vec[:0]
			if headsLen > 0 {
				vec = append(vec, buf[:headsLen])
			}
			for i, g := range group {
				vec = append(vec, buf[hdrs[i][0]:hdrs[i][1]])
				if len(g.p.Data) > 0 {
					vec = append(vec, g.p.Data)
				}
			}
			size := pos - base

			if testHookWrite != nil {
				testHookWrite(allHeads)
			}
			t0 := time.Now()
			err := writeVec(seg.pwritev, vec, base)
			clear(vec) // the parts' data is not the spool's to keep
			t1 := time.Now()
			var synced time.Duration
			if err == nil && s.opts.Fsync {
				if err = at(stepSync); err == nil {
					err = s.sync.sync(seg.f)
					synced = time.Since(t1)
				}
			}
			if err == nil {
				_ = at(stepAck)
			} else {
				// The group fails, and its bytes go: a part whose Append
				// failed does not come back at Open, and the next group,
				// written at base too, is not followed by a record of
				// this one. Should the truncate fail too (the disk
				// failing), those records may come back: parts their
				// caller still holds, as after a crash between a write
				// and its acknowledgement (sent twice at worst).
				if at(stepTruncate) == nil {
					_ = seg.f.Truncate(base)
				}
			}
			s.writes.Add(1)
			s.parts.Add(int64(len(group)))

			s.mu.Lock()
			var gone *segment
			if err == nil && allHeads {
				// The new segment has every head: the one before it is
				// not needed for them any more.
				s.needHeads = false
				if r := s.retired; r != nil {
					s.retired = nil
					if r.live <= 0 {
						s.detach(r)
						gone = r
					}
				}
			}
			if err == nil {
				seg.size = base + size
				s.diskSize += size
				for _, l := range locs {
					seg.live++
					seg.liveBytes += int64(l.Len)
					s.live += int64(l.Len)
				}
			} else {
				err = fmt.Errorf("spool: %w", err)
				for _, q := range dirtied {
					s.dirty[q] = true
				}
			}
			full := err == nil && seg.size >= s.opts.SegmentBytes && seg == s.active
			s.mu.Unlock()
			if s.opts.Written != nil {
				s.opts.Written(Group{Parts: len(group), Bytes: size, Write: t1.Sub(t0), Sync: synced, Err: err})
			}
			for i, g := range group {
				if err != nil {
					g.ch <- Result{Err: err}
				} else {
					g.ch <- Result{Loc: locs[i]}
				}
			}
			if gone != nil {
				s.drop(gone)
			}
			if full {
				s.switchSegment()
			}
			if err != nil {
				// The heads left to write wait for the next Append or Ack
				// (or Close, which tries once more), not retried at once:
				// a disk that stays full would have the loop spin.
				if closed {
					return
				}
				break
			}
		}
	}
}

// writeVec writes bufs at off through write (pwritev), in order, all of
// them: at most maxVec buffers a call, a short write continued.
func writeVec(write func([][]byte, int64) (int, error), bufs [][]byte, off int64) error {
	owned := false // bufs is the caller's until a short write trims it
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), maxVec)]
		n, err := write(chunk, off)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		off += int64(n)
		for n > 0 && len(bufs) > 0 {
			if n < len(bufs[0]) {
				if !owned {
					bufs, owned = slices.Clone(bufs), true
				}
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return nil
}

// Close writes what was appended and acknowledged so far and closes the
// files. Appends after Close fail with ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.signal()
	s.mu.Unlock()
	<-s.done
	// The segment prepared ahead was never used.
	if p := <-s.next; p.err == nil {
		s.deleteFile(&segment{id: p.id, f: p.f})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range s.spares {
		s.deleteSpare(sp)
	}
	s.spares = nil
	return s.closeFiles()
}

func (s *Spool) closeFiles() error {
	if s.sync != nil {
		s.sync.close()
		s.dirs.close()
	}
	var errs []error
	for _, seg := range s.segs {
		errs = append(errs, seg.f.Close())
	}
	return errors.Join(errs...)
}
