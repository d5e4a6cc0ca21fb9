package tenantotlphttpexporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.uber.org/zap"
)

// Sending: a shared pool of senders, each taking one ready tenant queue at a
// time, posting its head as one request and applying the retry rules.

func (e *tenantExporter) sendLoop() {
	defer e.senders.Done()
	for {
		select {
		case <-e.stop:
			return
		case q := <-e.ready:
			e.send(q)
		}
	}
}

// send posts the oldest records of a tenant's queue that no other sender
// has as one request: up to batch.max_items and max_bytes of parts,
// concatenated.
func (e *tenantExporter) send(q *tenantQueue) {
	q.mu.Lock()
	start := 0
	for start < len(q.records) && q.records[start].inflight {
		start++
	}
	n, items, size := 0, 0, 0
	for start+n < len(q.records) {
		r := q.records[start+n]
		if r.inflight || (n > 0 && (items+r.items > e.cfg.Batch.MaxItems || size+r.size > e.cfg.Batch.MaxBytes)) {
			break
		}
		n++
		items += r.items
		size += r.size
	}
	if n == 0 { // taken by the other senders meanwhile
		q.slots--
		q.mu.Unlock()
		return
	}
	for i := start; i < start+n; i++ {
		q.records[i].inflight = true
	}
	q.takenItems += items
	q.takenBytes += size
	batch := append([]record(nil), q.records[start:start+n]...)
	q.mu.Unlock()

	b, err := e.body(q.key, batch, size)
	if err == nil {
		err = e.post(e.sendCtx, q, b)
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	q.slots--
	q.takenItems -= items
	q.takenBytes -= size
	// The batch is still contiguous: records only leave by whole batches
	// and only arrive at the end.
	i := q.find(batch[0].seq)
	for j := i; j < i+n; j++ {
		q.records[j].inflight = false
	}
	switch {
	case err == nil:
		e.sent.Add(context.Background(), int64(items), e.attrs(q.key))
		q.attempt, q.failingFor, q.retryAt = 0, time.Time{}, time.Time{}
	case consumererror.IsPermanent(err):
		e.failed.Add(context.Background(), int64(items), e.attrs(q.key))
		if e.dropLog.Allow() {
			e.logger.Warn("the store refused a request for good; dropped (logged at most every 10s, every one is counted in otelcol_exporter_tenant_failed_items)",
				zap.String("tenant", q.key.tenant), zap.String("signal", q.key.sig.String()), zap.Int("items", items), zap.Error(err))
		}
	default:
		if q.attempt == 0 {
			q.failingFor = time.Now()
			e.logger.Warn("sending failed; retrying with backoff (other tenants are not affected)",
				zap.String("tenant", q.key.tenant), zap.String("signal", q.key.sig.String()), zap.Error(err))
		}
		if mx := e.cfg.RetryOnFailure.MaxElapsedTime; mx > 0 && time.Since(q.failingFor) > mx {
			e.failed.Add(context.Background(), int64(items), e.attrs(q.key))
			if e.dropLog.Allow() {
				e.logger.Warn("retries exhausted; dropped (logged at most every 10s, every one is counted in otelcol_exporter_tenant_failed_items)",
					zap.String("tenant", q.key.tenant), zap.Int("items", items), zap.Error(err))
			}
			q.attempt, q.failingFor = 0, time.Time{}
		} else {
			q.attempt++
			q.retryAt = time.Now().Add(e.backoff(q.attempt, err))
			return
		}
	}
	e.remove(q, i, n, size)
	if q.items-q.takenItems >= e.cfg.Batch.MaxItems || q.bytes-q.takenBytes >= e.cfg.Batch.MaxBytes {
		e.markReady(q)
	}
}

func (e *tenantExporter) body(k queueKey, batch []record, size int) (*body, error) {
	if len(batch) == 1 && batch[0].data != nil {
		return wrap(batch[0].data), nil
	}
	b := newBody(size)
	buf := b.data
	for _, r := range batch {
		data := r.data
		if data == nil {
			// On disk only: read straight into the body, no copy of its own.
			n := len(buf)
			buf = slices.Grow(buf, r.loc.Len)[:n+r.loc.Len]
			if err := e.parts.readInto(r.loc, buf[n:]); err != nil {
				b.done()
				return nil, fmt.Errorf("tenant_otlp_http: queue log: record %d of %s: %w", r.seq, k, err)
			}
			continue
		}
		buf = append(buf, data...)
	}
	b.data = buf
	return b, nil
}

// post sends one request. Transport errors and the statuses in
// retry_on_status are retryable (Retry-After honoured); any other answer is
// permanent. ctx ends the request when shutdown's drain time is up.
func (e *tenantExporter) post(ctx context.Context, q *tenantQueue, b *body) error {
	defer b.done()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.url, b.reader())
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	req.ContentLength = int64(len(b.data))
	req.GetBody = func() (io.ReadCloser, error) { return b.reader(), nil }
	req.Header = q.headers.Clone()
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	err = fmt.Errorf("%s answered %s: %s", q.url, resp.Status, strings.TrimSpace(string(msg)))
	if !slices.Contains(e.cfg.RetryOnStatus, resp.StatusCode) {
		return consumererror.NewPermanent(err)
	}
	if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
		return retryAfter{err: err, after: time.Duration(s) * time.Second}
	}
	return err
}

type retryAfter struct {
	err   error
	after time.Duration
}

func (r retryAfter) Error() string { return r.err.Error() }

// backoff is the exponential delay before attempt n, with jitter.
func (e *tenantExporter) backoff(n int, err error) time.Duration {
	var ra retryAfter
	if errors.As(err, &ra) {
		return ra.after
	}
	rc := e.cfg.RetryOnFailure
	d := float64(rc.InitialInterval)
	for i := 1; i < n && d < float64(rc.MaxInterval); i++ {
		d *= rc.Multiplier
	}
	d = min(d, float64(rc.MaxInterval))
	if rc.RandomizationFactor > 0 {
		d *= 1 + rc.RandomizationFactor*(2*rand.Float64()-1)
	}
	return time.Duration(d)
}
