package usagecloudeventsexporter

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

type eventsExporter struct {
	cfg *Config
	set exporter.Settings
	tel *telemetry
	now func() time.Time

	// mu makes pushes one at a time: each reads the memory, sends, and
	// writes it, and two at once could send one id twice.
	mu     sync.Mutex
	client *http.Client
	memory *memory
	dead   *deadLetter
}

func newEventsExporter(cfg *Config, set exporter.Settings) (*eventsExporter, error) {
	tel, err := newTelemetry(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &eventsExporter{cfg: cfg, set: set, tel: tel, now: time.Now}, nil
}

func (e *eventsExporter) start(ctx context.Context, host component.Host) error {
	c, err := e.cfg.ClientConfig.ToClient(ctx, host.GetExtensions(), e.set.TelemetrySettings)
	if err != nil {
		return err
	}
	e.client = c
	id := e.cfg.Delivered.Storage
	if id == nil {
		return errors.New("delivered.storage is not set")
	}
	ext, ok := host.GetExtensions()[*id]
	if !ok {
		return fmt.Errorf("delivered.storage %q is not an extension of this collector", id)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return fmt.Errorf("delivered.storage: extension %q is not a storage extension", id)
	}
	client, err := se.GetClient(ctx, component.KindExporter, e.set.ID, "delivered")
	if err != nil {
		return fmt.Errorf("delivered.storage: %w", err)
	}
	e.memory = &memory{client: client, keep: e.cfg.Delivered.Keep, logger: e.set.Logger, now: e.now}
	if e.dead, err = openDeadLetter(e.cfg.DeadLetter.Path); err != nil {
		return fmt.Errorf("dead_letter.path: %w", err)
	}
	return nil
}

func (e *eventsExporter) shutdown(ctx context.Context) error {
	var errs []error
	if e.dead != nil {
		errs = append(errs, e.dead.close())
	}
	if e.memory != nil {
		errs = append(errs, e.memory.client.Close(ctx))
	}
	return errors.Join(errs...)
}

func (e *eventsExporter) push(ctx context.Context, md pmetric.Metrics) error {
	recs, err := usage.Records(md)
	if err != nil {
		// Not usage records: sending them would bill nonsense; they are
		// dropped with an error that names them (the pipeline is
		// misconfigured).
		if len(recs) == 0 {
			return consumererror.NewPermanent(err)
		}
		e.set.Logger.Error("data that is not usage records was left out; connect this exporter to tenant_usage only", zap.Error(err))
	}
	evs := e.encodeAll(Events(recs, e.cfg.Source, e.cfg.TypePrefix))
	if len(evs) == 0 {
		return nil
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	send, err := e.screen(ctx, evs)
	if err != nil {
		return err
	}
	for _, batch := range batches(send, e.cfg.MaxBatchEvents, e.cfg.MaxBatchBytes) {
		if err := e.deliver(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// encodeAll encodes the events. One that encoding/json refuses is left
// out with an error log naming it: no billing system could take it.
func (e *eventsExporter) encodeAll(evs []Event) []encoded {
	out := make([]encoded, 0, len(evs))
	for _, ev := range evs {
		enc, err := encode(ev)
		if err != nil {
			e.set.Logger.Error("a usage record cannot be written as an event and was left out", zap.String("id", ev.ID), zap.Error(err))
			continue
		}
		out = append(out, enc)
	}
	return out
}

// screen keeps an id to one value: it leaves out the events settled with
// the same value before or seen earlier in this push, and sends to the
// dead-letter file those whose id is bound to another value (settled
// before, or an earlier event of this push). What it returns is to be
// sent, one event per id.
func (e *eventsExporter) screen(ctx context.Context, evs []encoded) ([]encoded, error) {
	verdicts, prior, err := e.memory.classify(ctx, evs)
	if err != nil {
		return nil, fmt.Errorf("reading delivered ids: %w", err)
	}
	first := make(map[string]encoded, len(evs))
	conflicts := map[string]bool{}
	out := evs[:0:0]
	for i, ev := range evs {
		switch verdicts[i] {
		case same, knownConflict:
			continue
		case conflict:
			if conflicts[conflictKey(ev.id, ev.digest)] {
				continue
			}
			conflicts[conflictKey(ev.id, ev.digest)] = true
			p := prior[i]
			if err := e.deadLetterConflict(ctx, ev, settledLine{SHA256: p.digest, State: p.state, Time: p.at.Format(time.RFC3339)}); err != nil {
				return nil, err
			}
			continue
		}
		f, seen := first[ev.id]
		switch {
		case !seen:
			first[ev.id] = ev
			out = append(out, ev)
		case f.digest != ev.digest && !conflicts[conflictKey(ev.id, ev.digest)]:
			conflicts[conflictKey(ev.id, ev.digest)] = true
			if err := e.deadLetterConflict(ctx, ev, settledLine{SHA256: hex.EncodeToString(f.digest[:]), State: stateQueued}); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// deadLetterConflict writes an event whose id is bound to another value
// to the dead-letter file and remembers that this value was written.
func (e *eventsExporter) deadLetterConflict(ctx context.Context, ev encoded, with settledLine) error {
	if err := e.dead.append(deadLetterLine{Reason: reasonConflict, Settled: &with, Event: ev.body}, e.now()); err != nil {
		return fmt.Errorf("writing the conflicting event %s to the dead-letter file: %w", ev.id, err)
	}
	e.tel.deadLettered(ctx, reasonConflict)
	e.set.Logger.Error("a usage event's id is bound to another value; it is in the dead-letter file and is not sent",
		zap.String("id", ev.id), zap.String("settled_as", with.State), zap.String("settled_sha256", with.SHA256),
		zap.String("file", e.dead.path))
	if err := e.memory.settleConflict(ctx, ev); err != nil {
		e.set.Logger.Error("remembering a conflicting value failed; a retry may write its line again", zap.String("id", ev.id), zap.Error(err))
	}
	return nil
}
