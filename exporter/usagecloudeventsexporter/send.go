package usagecloudeventsexporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.uber.org/zap"
)

// answerLimit is how much of an answer is kept for errors and the
// dead-letter file.
const answerLimit = 1024

// refusal is an answer saying the billing system will never take these
// bytes as they are: 400, 413, 415 or 422.
type refusal struct {
	status int
	answer string
}

func (r *refusal) Error() string {
	return fmt.Sprintf("the billing system refused the request with %d: %s", r.status, r.answer)
}

func refuses(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// post sends one batch: nil when the billing system took it (2xx), a
// *refusal when it never will, any other error when a retry may pass
// (5xx, 429, 401/403 while a key is rotated, the network).
func (e *eventsExporter) post(ctx context.Context, batch []encoded) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.ClientConfig.Endpoint, bytes.NewReader(body(batch)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("%d events: %w", len(batch), err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, answerLimit))
	// The rest is read (up to a bound) so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	if refuses(resp.StatusCode) {
		return &refusal{status: resp.StatusCode, answer: string(answer)}
	}
	err = fmt.Errorf("the billing system answered %s to %d events: %s", resp.Status, len(batch), strings.TrimSpace(string(answer)))
	if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
		return exporterhelper.NewThrottleRetry(err, time.Duration(s)*time.Second)
	}
	return err
}

// deliver sends a batch and settles what the billing system took. A
// refused batch is cut in two and each half sent again, down to single
// events: one bad event costs its neighbours a few requests, never their
// delivery. A refused single event goes to the dead-letter file. The first
// error a retry may pass is returned as it is: the push is retried, and
// what was settled meanwhile is not sent again.
func (e *eventsExporter) deliver(ctx context.Context, batch []encoded) error {
	err := e.post(ctx, batch)
	var ref *refusal
	switch {
	case err == nil:
		e.tel.delivered.Add(ctx, int64(len(batch)))
		if err := e.memory.settle(ctx, batch, stateDelivered); err != nil {
			// Delivered; only the memory failed. A copy of these records
			// queued again may go again (OpenMeter deduplicates by id).
			e.set.Logger.Error("remembering delivered ids failed", zap.Int("events", len(batch)), zap.Error(err))
		}
		return nil
	case !errors.As(err, &ref):
		return err
	case len(batch) == 1:
		return e.deadLetterRefused(ctx, batch[0], ref)
	}
	e.tel.bisected.Add(ctx, 1)
	half := len(batch) / 2
	if err := e.deliver(ctx, batch[:half]); err != nil {
		return err
	}
	return e.deliver(ctx, batch[half:])
}

// deadLetterRefused writes an event the billing system refused to the
// dead-letter file, then settles its id as refused so that it is not sent
// again. The line is written first: a failed write is an error a retry
// may pass, and the event is not settled.
func (e *eventsExporter) deadLetterRefused(ctx context.Context, ev encoded, ref *refusal) error {
	line := deadLetterLine{Reason: reasonRefused, Status: ref.status, Answer: ref.answer, Event: ev.body}
	if err := e.dead.append(line, e.now()); err != nil {
		return fmt.Errorf("writing the refused event %s to the dead-letter file: %w", ev.id, err)
	}
	e.tel.deadLettered(ctx, reasonRefused)
	e.set.Logger.Error("the billing system refused a usage event; it is in the dead-letter file",
		zap.String("id", ev.id), zap.Int("status", ref.status), zap.String("answer", strings.TrimSpace(ref.answer)),
		zap.String("file", e.dead.path))
	if err := e.memory.settle(ctx, []encoded{ev}, stateRefused); err != nil {
		e.set.Logger.Error("remembering a refused id failed; a retry may write its line again", zap.String("id", ev.id), zap.Error(err))
	}
	return nil
}
