package tenantqueryextension

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// readEvent is one answered query, as the event store keeps it.
type readEvent struct {
	Time     string `json:"_time"`
	Msg      string `json:"_msg"`
	Source   string `json:"source"`
	Tenant   string `json:"tenant_id"`
	QueryID  string `json:"query_id"`
	KeyID    string `json:"key_id"`
	Endpoint string `json:"endpoint"`
	Series   int    `json:"series"`
}

// usageRecorder sends read events to the event store in batches: every
// flush_interval, and again while a batch fails (the same batch, so a
// retry whose first attempt had landed is counted once by query_id).
type usageRecorder struct {
	url      string
	client   *http.Client
	interval time.Duration
	max      int
	logger   *zap.Logger
	tel      *telemetry
	warn     periodic.Every

	mu      sync.Mutex
	pending []readEvent
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newUsageRecorder(cfg UsageEventsConfig, client *http.Client, logger *zap.Logger, tel *telemetry) *usageRecorder {
	return &usageRecorder{
		url:      strings.TrimRight(cfg.ClientConfig.Endpoint, "/") + "/insert/jsonline?_stream_fields=" + usage.ReadEventsStreamFields,
		client:   client,
		interval: cfg.FlushInterval,
		max:      cfg.MaxPending,
		logger:   logger,
		tel:      tel,
		warn:     periodic.Every{Interval: 10 * time.Second},
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// record queues one answered query; it never blocks the answer.
func (u *usageRecorder) record(tenant, keyID, endpoint string, series int) {
	var id [12]byte
	_, _ = rand.Read(id[:])
	ev := readEvent{
		Time: time.Now().UTC().Format(time.RFC3339Nano), Msg: "query", Source: usage.ReadEventsSource,
		Tenant: tenant, QueryID: hex.EncodeToString(id[:]), KeyID: keyID, Endpoint: endpoint, Series: series,
	}
	u.mu.Lock()
	full := len(u.pending) >= u.max
	if !full {
		u.pending = append(u.pending, ev)
	}
	u.mu.Unlock()
	if full {
		u.tel.usageDropped.Add(context.Background(), 1)
		if u.warn.Allow() {
			u.logger.Warn("usage events: the event store has not taken records for a while; dropping new ones (reads go unbilled)", zap.Int("max_pending", u.max))
		}
	}
}

func (u *usageRecorder) start() { go u.run() }

func (u *usageRecorder) run() {
	defer close(u.done)
	t := time.NewTicker(u.interval)
	defer t.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-u.stop:
			return
		case <-t.C:
		}
		if backoff > 0 {
			select {
			case <-u.stop:
				return
			case <-time.After(backoff):
			}
		}
		if err := u.flush(context.Background()); err != nil {
			backoff = min(max(2*backoff, u.interval), 30*time.Second)
			if u.warn.Allow() {
				u.logger.Warn("usage events: the event store refused a batch; retrying", zap.Error(err))
			}
			continue
		}
		backoff = 0
	}
}

// flush sends what is pending (at most 10,000 records a request); the
// records leave the queue only once the event store took them.
func (u *usageRecorder) flush(ctx context.Context) error {
	for {
		u.mu.Lock()
		n := min(len(u.pending), 10_000)
		batch := u.pending[:n:n]
		u.mu.Unlock()
		if n == 0 {
			return nil
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for i := range batch {
			_ = enc.Encode(&batch[i])
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, &buf)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/stream+json")
		resp, err := u.client.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("the event store answered %s: %s", resp.Status, bytes.TrimSpace(msg))
		}
		u.tel.usageSent.Add(ctx, int64(n))
		u.mu.Lock()
		u.pending = append(u.pending[:0:0], u.pending[n:]...)
		u.mu.Unlock()
	}
}

// shutdown stops the loop and sends what is left, within ctx.
func (u *usageRecorder) shutdown(ctx context.Context) {
	close(u.stop)
	<-u.done
	if err := u.flush(ctx); err != nil {
		u.mu.Lock()
		n := len(u.pending)
		u.mu.Unlock()
		u.tel.usageDropped.Add(context.Background(), int64(n))
		u.logger.Warn("usage events: records not sent at shutdown (reads go unbilled)", zap.Int("records", n), zap.Error(err))
	}
}
