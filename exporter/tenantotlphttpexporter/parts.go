package tenantotlphttpexporter

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/spool"
)

// partStore is where the queues' parts live besides memory: nowhere
// (memoryParts: they go with the process) or the queue log (logParts:
// internal/spool, with queue.directory). The queue code calls it at the
// same points whichever it is.
type partStore interface {
	// head is the sequence number a queue's numbering continues from: what
	// was sent before its first part (a tenant back after its queue was
	// released as idle continues, so its parts' keys stay unique).
	head(queue string) uint64
	// write keeps a part; the channel gets where it was kept once it is
	// (on disk, synced with fsync), or why it could not be.
	write(p spool.Part) <-chan spool.Result
	// keep says whether a written part's bytes stay in memory too, and
	// whether they count against the bytes so kept (released by forget).
	keep(size int) (data, counted bool)
	// forget gives back what keep counted.
	forget(size int)
	// release says the parts at locs were sent (or dropped for good) and
	// that a queue now starts at head.
	release(queue string, locs []spool.Loc, head uint64)
	// readInto reads a part that is not in memory into dst (len: its size).
	readInto(loc spool.Loc, dst []byte) error
	// maintain runs from the flusher.
	maintain(e *tenantExporter)
	// close ends it once the senders and maintain are done; left is what
	// is still queued.
	close(left int) error
}

// memoryParts keeps nothing beyond the queues in memory.
type memoryParts struct{ logger *zap.Logger }

func (memoryParts) head(string) uint64 { return 0 }

func (memoryParts) write(spool.Part) <-chan spool.Result {
	ch := make(chan spool.Result, 1)
	ch <- spool.Result{}
	return ch
}

func (memoryParts) keep(int) (bool, bool)               { return true, false }
func (memoryParts) forget(int)                          {}
func (memoryParts) release(string, []spool.Loc, uint64) {}
func (memoryParts) readInto(spool.Loc, []byte) error    { return nil }
func (memoryParts) maintain(*tenantExporter)            {}
func (m memoryParts) close(left int) error {
	if left > 0 {
		m.logger.Warn("shutdown with data still queued and no queue.directory: it is lost", zap.Int("items", left))
	}
	return nil
}

// maxHotBytes bounds the written parts kept in memory too.
const maxHotBytes = 4 << 20

// logParts keeps the queues in the queue log: group-committed appends,
// parts read back by position, a written part's bytes kept in memory too
// while they are under a bound, so a store that keeps up is sent recent
// parts without reading them back.
type logParts struct {
	spool    *spool.Spool
	logger   *zap.Logger
	dir      string
	hot      atomic.Int64
	hotLimit int64

	compacting  atomic.Bool
	compactions sync.WaitGroup
}

func (l *logParts) head(queue string) uint64                 { return l.spool.Head(queue) }
func (l *logParts) write(p spool.Part) <-chan spool.Result   { return l.spool.Append(p) }
func (l *logParts) readInto(loc spool.Loc, dst []byte) error { return l.spool.ReadInto(loc, dst) }
func (l *logParts) forget(size int)                          { l.hot.Add(-int64(size)) }

func (l *logParts) keep(size int) (bool, bool) {
	if l.hot.Add(int64(size)) <= l.hotLimit {
		return true, true
	}
	l.hot.Add(-int64(size))
	return false, false
}

func (l *logParts) release(queue string, locs []spool.Loc, head uint64) {
	for _, loc := range locs {
		l.spool.Release(loc) // none yet if not written: released when it is
	}
	l.spool.Ack(queue, head)
}

func (l *logParts) close(left int) error {
	l.compactions.Wait() // it stops at its next part once the exporter's stop is closed
	st := l.spool.Stats()
	if left > 0 {
		l.logger.Info("queued data stays on disk for the next start", zap.Int("items", left))
	}
	err := l.spool.Close()
	l.logger.Info("queue log writes", zap.Int64("writes", st.Writes), zap.Int64("parts", st.Parts), zap.Int("segments", st.Segments),
		zap.Int64("segments_started", st.Rotations), zap.Int64("segments_written_over_spares", st.Recycled))
	return err
}

// openLog opens the queue log in the exporter's subfolder of directory
// and rebuilds the queues that have parts in it.
func (e *tenantExporter) openLog() error {
	dir := filepath.Join(e.cfg.Queue.Directory, strings.ReplaceAll(e.id.String(), "/", "_"))
	sp, parts, heads, warnings, err := spool.Open(spool.Options{Dir: dir, Fsync: e.cfg.Queue.Fsync, SegmentBytes: spoolSegmentBytes, Written: e.written})
	if err != nil {
		return fmt.Errorf("tenant_otlp_http: queue.directory: %w", err)
	}
	e.log.Store(sp)
	for _, w := range warnings {
		e.logger.Warn("queue log: "+w, zap.String("directory", dir))
	}
	e.parts = &logParts{spool: sp, logger: e.logger, dir: dir, hotLimit: min(e.cfg.Queue.MaxBytes/16, maxHotBytes)}
	restored := 0
	now := time.Now()
	for i := 0; i < len(parts); {
		j := i
		for j < len(parts) && parts[j].Queue == parts[i].Queue {
			j++
		}
		k, ok := parseQueueKey(parts[i].Queue)
		var q *tenantQueue
		if ok {
			q, err = e.newQueue(k)
		}
		if !ok || err != nil {
			e.logger.Warn("cannot restore a queue; its parts are dropped", zap.String("queue", parts[i].Queue), zap.Error(err))
			for _, p := range parts[i:j] {
				sp.Release(p.Loc)
			}
			i = j
			continue
		}
		q.head, q.next = parts[i].Seq, max(parts[j-1].Seq+1, heads[parts[i].Queue])
		for _, p := range parts[i:j] {
			restored += e.restoreRecord(q, record{seq: p.Seq, items: p.Items, size: p.Loc.Len, added: now, loc: p.Loc})
		}
		e.queues[k] = q
		i = j
	}
	if restored > 0 {
		e.logger.Info("restored queued data from the queue log", zap.Int("items", restored), zap.Int("queues", len(e.queues)))
	}
	return nil
}

// restoreRecord appends a record found on disk to its queue (its data stays
// there) and returns its items.
func (e *tenantExporter) restoreRecord(q *tenantQueue, r record) int {
	q.records = append(q.records, r)
	q.items += r.items
	q.bytes += r.size
	e.queued.Add(int64(r.size))
	return r.items
}

// parseQueueKey reads "<signal>/<tenant>", as queueKey.String writes it.
func parseQueueKey(s string) (queueKey, bool) {
	sigName, tenant, ok := strings.Cut(s, "/")
	if !ok {
		return queueKey{}, false
	}
	for sig := signal(0); sig < numSignals; sig++ {
		if sig.String() == sigName {
			return queueKey{sig: sig, tenant: tenant}, true
		}
	}
	return queueKey{}, false
}

// maintain compacts: it writes again, at the log's end, the parts that
// hold the oldest segment when little of it is still needed (a tenant
// whose store refuses for hours would otherwise keep every segment it has
// a part in), so the segment can go. One compaction at a time.
func (l *logParts) maintain(e *tenantExporter) {
	st := l.spool.Stats()
	seg, live, size := l.spool.Oldest()
	if seg == 0 || st.DiskBytes < compactAbove || live*4 > size || !l.compacting.CompareAndSwap(false, true) {
		return
	}
	type move struct {
		q   *tenantQueue
		rec record
	}
	var moves []move
	e.mu.Lock()
	for _, q := range e.queues {
		q.mu.Lock()
		for _, r := range q.records {
			if r.loc.Seg == seg {
				moves = append(moves, move{q, r})
			}
		}
		q.mu.Unlock()
	}
	e.mu.Unlock()
	l.compactions.Go(func() {
		defer l.compacting.Store(false)
		for _, m := range moves {
			select {
			case <-e.stop: // shutting down: the rest stays where it is
				return
			default:
			}
			data, err := l.spool.Read(m.rec.loc)
			if err != nil {
				continue // sent and released meanwhile
			}
			res := <-l.spool.Append(spool.Part{Queue: m.q.key.String(), Seq: m.rec.seq, Items: m.rec.items, Data: data})
			if res.Err != nil {
				return
			}
			m.q.mu.Lock()
			if i := m.q.find(m.rec.seq); i >= 0 && m.q.records[i].loc == m.rec.loc {
				m.q.records[i].loc = res.Loc
				l.spool.Release(m.rec.loc)
			} else {
				l.spool.Release(res.Loc)
			}
			m.q.mu.Unlock()
		}
	})
}

// The queue log's segment size, and the size of its files below which it
// is not compacted (variables for the tests).
var (
	spoolSegmentBytes int64 = 8 << 20
	compactAbove      int64 = 64 << 20
)
