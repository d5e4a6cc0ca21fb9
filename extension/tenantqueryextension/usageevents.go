package tenantqueryextension

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/periodic"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// readEvent is one answered query, as the event store keeps it. The usage
// job reads these names: they are part of the record's contract (README).
type readEvent struct {
	Time          string `json:"_time"`
	Msg           string `json:"_msg"`
	Source        string `json:"source"`
	Tenant        string `json:"tenant_id"`
	QueryID       string `json:"query_id"`
	KeyID         string `json:"key_id"`
	Endpoint      string `json:"endpoint"`
	Series        int64  `json:"series"`
	SeriesFetched int64  `json:"series_fetched"`
	ExecMS        int64  `json:"exec_ms"`
}

// usageRecorder writes a read event to the usage log before its answer
// goes out, and sends the log to the event store every flush_interval:
// the same batch again while it fails (a retry whose first attempt had
// landed is counted once, by query_id).
type usageRecorder struct {
	url      string
	client   *http.Client
	interval time.Duration
	drop     bool // on_full: drop
	dir      string
	log      *usageLog
	logger   *zap.Logger
	tel      *tel
	warnKeep periodic.Every
	warnSend periodic.Every

	stop   chan struct{}      // closed at shutdown: the loop ends after its send
	cancel context.CancelFunc // abandons the send in flight
	done   chan struct{}
}

func newUsageRecorder(cfg UsageEventsConfig, client *http.Client, logger *zap.Logger, tel *tel) (*usageRecorder, error) {
	log, rec, err := openUsageLog(cfg.Directory, cfg.MaxBytes)
	if err != nil {
		return nil, err
	}
	if rec.offsetReset {
		logger.Warn("usage events: the offset file is unreadable; sending the whole usage log again (the usage job counts each query_id once)",
			zap.String("directory", cfg.Directory))
	}
	if rec.torn > 0 {
		tel.usageDropped.Add(context.Background(), int64(rec.torn), dropReason("torn"))
		logger.Warn("usage events: skipped the torn last line of a usage log segment (a write cut short by a crash or a full disk)",
			zap.Int("segments", rec.torn), zap.String("directory", cfg.Directory))
	}
	if rec.pending > 0 {
		logger.Info("usage events: sending what the last run left in the usage log", zap.Int64("bytes", rec.pending))
	}
	return &usageRecorder{
		url:      strings.TrimRight(cfg.ClientConfig.Endpoint, "/") + "/insert/jsonline?_stream_fields=" + usage.ReadEventsStreamFields,
		client:   client,
		interval: cfg.FlushInterval,
		drop:     cfg.OnFull == onFullDrop,
		dir:      cfg.Directory,
		log:      log,
		logger:   logger,
		tel:      tel,
		warnKeep: periodic.Every{Interval: 10 * time.Second},
		warnSend: periodic.Every{Interval: 10 * time.Second},
		stop:     make(chan struct{}),
		cancel:   func() {},
		done:     make(chan struct{}),
	}, nil
}

func dropReason(reason string) metric.AddOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason)))
}

// record writes the event of one answered query to the usage log. An
// error means it could not be kept and on_full is refuse: the query must
// not be answered.
func (u *usageRecorder) record(tenant, keyID, endpoint string, a answerCounts) error {
	var id [12]byte
	_, _ = rand.Read(id[:])
	line, err := json.Marshal(readEvent{
		Time: time.Now().UTC().Format(time.RFC3339Nano), Msg: "query", Source: usage.ReadEventsSource,
		Tenant: tenant, QueryID: hex.EncodeToString(id[:]), KeyID: keyID, Endpoint: endpoint,
		Series: int64(max(a.series, 0)), SeriesFetched: a.seriesFetched, ExecMS: a.execMS,
	})
	if err == nil {
		err = u.log.append(append(line, '\n'))
	}
	if err == nil {
		return nil
	}
	reason := "write_error"
	if errors.Is(err, errUsageLogFull) {
		reason = "full"
	}
	if u.drop {
		u.tel.usageDropped.Add(context.Background(), 1, dropReason(reason))
		if u.warnKeep.Allow() {
			u.logger.Warn("usage events: cannot keep read events; answering the queries and dropping their events (reads go unbilled)", zap.Error(err))
		}
		return nil
	}
	if u.warnKeep.Allow() {
		u.logger.Warn("usage events: cannot keep read events; refusing queries (503) until it can (usage_events.on_full: refuse)", zap.Error(err))
	}
	return err
}

func (u *usageRecorder) start() {
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	go u.run(ctx)
}

func (u *usageRecorder) run(ctx context.Context) {
	defer close(u.done)
	t := time.NewTicker(u.interval)
	defer t.Stop()
	var backoff time.Duration
	var retryAt time.Time
	for {
		select {
		case <-u.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := u.log.sync(); err != nil && u.warnSend.Allow() {
			u.logger.Warn("usage events: fsync of the usage log failed", zap.Error(err))
		}
		if time.Now().Before(retryAt) {
			continue
		}
		if err := u.send(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, u.interval), 30*time.Second)
			retryAt = time.Now().Add(backoff)
			if u.warnSend.Allow() {
				u.logger.Warn("usage events: the event store did not take a batch; retrying (the events stay in the usage log)", zap.Error(err))
			}
			continue
		}
		backoff = 0
	}
}

// send sends the fsynced events the event store has not taken, a batch at
// a time; the offset moves past a batch only once the event store took it.
func (u *usageRecorder) send(ctx context.Context) error {
	for {
		b, err := u.log.next()
		if err != nil {
			return fmt.Errorf("reading the usage log: %w", err)
		}
		if b.lines == 0 && b.skipped == 0 {
			return nil
		}
		if b.lines > 0 {
			if err := u.post(ctx, b.body); err != nil {
				return err
			}
		}
		if err := u.log.commit(b.next); err != nil {
			return fmt.Errorf("recording the usage log's offset: %w", err)
		}
		u.tel.usageSent.Add(ctx, int64(b.lines))
		if b.skipped > 0 {
			u.tel.usageDropped.Add(ctx, int64(b.skipped), dropReason("corrupt"))
			u.logger.Warn("usage events: skipped usage log lines that are not JSON objects", zap.Int("lines", b.skipped))
		}
	}
}

func (u *usageRecorder) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(body))
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
	return nil
}

// shutdown stops the loop (its send in flight finishes, within ctx) and
// sends what is left, within ctx; what the event store does not take
// stays in the log for the next start.
func (u *usageRecorder) shutdown(ctx context.Context) {
	close(u.stop)
	select {
	case <-u.done:
	case <-ctx.Done():
		u.cancel()
		<-u.done
	}
	if err := errors.Join(u.log.sync(), u.send(ctx)); err != nil {
		u.logger.Warn("usage events: events not yet taken stay in the usage log and are sent at the next start",
			zap.String("directory", u.dir), zap.Error(err))
	}
	if err := u.log.close(); err != nil {
		u.logger.Warn("usage events: closing the usage log", zap.Error(err))
	}
	u.client.CloseIdleConnections()
}
