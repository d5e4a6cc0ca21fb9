package tenantotlphttpexporter

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
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

// saveIndex writes the list of queues. Callers hold e.mu.
func (e *tenantExporter) saveIndex() error {
	if e.store == nil {
		return nil
	}
	keys := make([]string, 0, len(e.queues))
	for k := range e.queues {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	return e.store.Set(context.Background(), "index", []byte(strings.Join(keys, "\n")))
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
		sigName, tenant, ok := strings.Cut(line, "/")
		if !ok {
			continue
		}
		var k queueKey
		found := false
		for s := signal(0); s < numSignals; s++ {
			if s.String() == sigName {
				k, found = queueKey{sig: s, tenant: tenant}, true
			}
		}
		if !found {
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
			r := record{seq: seq, items: int(binary.BigEndian.Uint32(v)), size: len(v) - 4, added: now}
			q.records = append(q.records, r)
			q.items += r.items
			q.bytes += r.size
			e.queued.Add(int64(r.size))
			restored += r.items
		}
		e.queues[k] = q
	}
	if restored > 0 {
		e.logger.Info("restored queued data from storage", zap.Int("items", restored), zap.Int("queues", len(e.queues)))
	}
	return nil
}
