package tenantotlphttpexporter

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/spool"
)

// Storage layout: one client for every tenant. "index" lists the queues;
// "m/<signal>/<tenant>" holds a queue's head and next sequence numbers;
// "r/<signal>/<tenant>/<seq>" holds a record: 4 bytes of item count, then
// the protobuf.

func recordKey(k queueKey, seq uint64) string {
	return "r/" + k.String() + "/" + strconv.FormatUint(seq, 10)
}
func metaKey(k queueKey) string { return "m/" + k.String() }

func encodeRecord(items int, data []byte) []byte {
	b := make([]byte, 4, 4+len(data))
	binary.BigEndian.PutUint32(b, uint32(items))
	return append(b, data...)
}

func encodeMeta(head, next uint64) []byte {
	return []byte(strconv.FormatUint(head, 10) + " " + strconv.FormatUint(next, 10))
}

// saveIndex has the list of queues written with the next transaction: a
// new queue's first part, submitted after it, is written in that one or a
// later one. Callers hold e.mu.
func (e *tenantExporter) saveIndex() {
	if e.commits != nil {
		e.commits.markIndex()
	}
}

// index is the list of queues as stored.
func (e *tenantExporter) index() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	keys := make([]string, 0, len(e.queues))
	for k := range e.queues {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	return []byte(strings.Join(keys, "\n"))
}

// restore rebuilds every queue that has data on disk, so a restarted
// gateway sends it even for tenants that send nothing new.
func (e *tenantExporter) restore(ctx context.Context) error {
	idx, err := e.store.Get(ctx, "index")
	if err != nil {
		return fmt.Errorf("tenant_otlp_http: queue storage: %w", err)
	}
	restored := 0
	for _, line := range strings.Split(string(idx), "\n") {
		k, ok := parseQueueKey(line)
		if !ok {
			continue
		}
		meta, err := e.store.Get(ctx, metaKey(k))
		if err != nil {
			return fmt.Errorf("tenant_otlp_http: queue storage: %w", err)
		}
		var head, next uint64
		if _, err := fmt.Sscanf(string(meta), "%d %d", &head, &next); err != nil {
			continue
		}
		q, err := e.newQueue(k)
		if err != nil {
			e.logger.Warn("cannot restore a queue", zap.String("queue", k.String()), zap.Error(err))
			continue
		}
		q.head, q.next = head, next
		now := time.Now()
		for seq := head; seq < next; seq++ {
			v, err := e.store.Get(ctx, recordKey(k, seq))
			if err != nil {
				return fmt.Errorf("tenant_otlp_http: queue storage: %w", err)
			}
			if len(v) < 4 {
				continue
			}
			restored += e.restoreRecord(q, record{seq: seq, items: int(binary.BigEndian.Uint32(v)), size: len(v) - 4, added: now})
		}
		e.queues[k] = q
	}
	if restored > 0 {
		e.logger.Info("restored queued data from storage", zap.Int("items", restored), zap.Int("queues", len(e.queues)))
	}
	return nil
}

// committer writes the queue's storage operations in groups: every
// operation submitted while a transaction is being written goes into the
// next one (group commit). Many tenants' parts arriving together cost one
// storage transaction, not one each, and an enqueue still returns only once
// its own part is written. Operations are applied in the order they were
// submitted, so a queue's meta key ends at its latest value.
type committer struct {
	store storage.Client
	index func() []byte // the list of queues, written once per transaction when it changed

	mu         sync.Mutex
	ops        []*storage.Operation
	waiters    []chan error
	indexDirty bool
	closed     bool
	kick       chan struct{}
	done       chan struct{}

	groups, parts atomic.Int64 // transactions written, and operations in them
}

func newCommitter(store storage.Client, index func() []byte) *committer {
	c := &committer{store: store, index: index, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go c.loop()
	return c
}

// markIndex has the index written with the next transaction.
func (c *committer) markIndex() {
	c.mu.Lock()
	c.indexDirty = true
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// submit adds operations to the next transaction. With wait it returns a
// channel that gets the transaction's result; without, nil (deletes of sent
// data, whose loss only means sending it again after a crash).
func (c *committer) submit(wait bool, ops ...*storage.Operation) chan error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ch chan error
	if c.closed {
		if wait {
			ch = make(chan error, 1)
			ch <- errStopped
		}
		return ch
	}
	c.ops = append(c.ops, ops...)
	if wait {
		ch = make(chan error, 1)
		c.waiters = append(c.waiters, ch)
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return ch
}

func (c *committer) loop() {
	defer close(c.done)
	for range c.kick {
		for {
			c.mu.Lock()
			ops, waiters, dirty := c.ops, c.waiters, c.indexDirty
			c.ops, c.waiters, c.indexDirty = nil, nil, false
			closed := c.closed
			c.mu.Unlock()
			if dirty {
				ops = append(ops, storage.SetOperation("index", c.index()))
			}
			if len(ops) == 0 {
				for _, w := range waiters {
					w <- nil
				}
				if closed {
					return
				}
				break
			}
			err := c.store.Batch(context.Background(), ops...)
			c.groups.Add(1)
			c.parts.Add(int64(len(ops)))
			for _, w := range waiters {
				w <- err
			}
		}
	}
}

// close writes what was submitted and stops.
func (c *committer) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	<-c.done
}

// openSpool opens the queue log in the exporter's subfolder of directory
// and rebuilds the queues that have parts in it.
func (e *tenantExporter) openSpool() error {
	dir := filepath.Join(e.cfg.Queue.Directory, strings.ReplaceAll(e.id.String(), "/", "_"))
	sp, parts, heads, warnings, err := spool.Open(spool.Options{Dir: dir, Fsync: e.cfg.Queue.Fsync, SegmentBytes: spoolSegmentBytes})
	if err != nil {
		return fmt.Errorf("tenant_otlp_http: queue.directory: %w", err)
	}
	for _, w := range warnings {
		e.logger.Warn("queue log: "+w, zap.String("directory", dir))
	}
	e.spool = sp
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

// compact writes again, at the log's end, the parts that hold the oldest
// segment when little of it is still needed (a tenant whose store refuses
// for hours would otherwise keep every segment it has a part in), so the
// segment can go. Run from the flusher, one at a time.
func (e *tenantExporter) compact() {
	st := e.spool.Stats()
	seg, live, size := e.spool.Oldest()
	if seg == 0 || st.DiskBytes < compactAbove || live*4 > size || !e.compacting.CompareAndSwap(false, true) {
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
	e.compactions.Go(func() {
		defer e.compacting.Store(false)
		for _, m := range moves {
			select {
			case <-e.stop: // shutting down: the rest stays where it is
				return
			default:
			}
			data, err := e.spool.Read(m.rec.loc)
			if err != nil {
				continue // sent and released meanwhile
			}
			res := <-e.spool.Append(spool.Part{Queue: m.q.key.String(), Seq: m.rec.seq, Items: m.rec.items, Data: data})
			if res.Err != nil {
				return
			}
			m.q.mu.Lock()
			if i := m.q.find(m.rec.seq); i >= 0 && m.q.records[i].loc == m.rec.loc {
				m.q.records[i].loc = res.Loc
				e.spool.Release(m.rec.loc)
			} else {
				e.spool.Release(res.Loc)
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
