package usagecloudeventsexporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// ContentType is the CloudEvents JSON batch media type.
const ContentType = "application/cloudevents-batch+json"

type eventsExporter struct {
	cfg       *Config
	set       exporter.Settings
	client    *http.Client
	delivered storage.Client // nil without delivered.storage
	pruned    time.Time
}

func (e *eventsExporter) start(ctx context.Context, host component.Host) error {
	c, err := e.cfg.ClientConfig.ToClient(ctx, host.GetExtensions(), e.set.TelemetrySettings)
	if err != nil {
		return err
	}
	e.client = c
	if id := e.cfg.Delivered.Storage; id != nil {
		ext, ok := host.GetExtensions()[*id]
		if !ok {
			return fmt.Errorf("usage_cloudevents: delivered.storage %q is not an extension of this collector", id)
		}
		se, ok := ext.(storage.Extension)
		if !ok {
			return fmt.Errorf("usage_cloudevents: extension %q is not a storage extension", id)
		}
		if e.delivered, err = se.GetClient(ctx, component.KindExporter, e.set.ID, "delivered"); err != nil {
			return fmt.Errorf("usage_cloudevents: delivered.storage: %w", err)
		}
	}
	return nil
}

func (e *eventsExporter) shutdown(ctx context.Context) error {
	if e.delivered != nil {
		return e.delivered.Close(ctx)
	}
	return nil
}

// Keys of the delivered-id memory: "d/<id>" holds the delivery time; the
// index of an hour's deliveries, "t/<unix hour>/<id>", lets old ids go.
func deliveredKey(id string) string { return "d/" + id }

// undelivered leaves out the records whose id the billing system already
// took.
func (e *eventsExporter) undelivered(ctx context.Context, recs []usage.Record) ([]usage.Record, error) {
	seen := make(map[string]bool, len(recs))
	uniq := recs[:0:0]
	for _, r := range recs {
		if !seen[r.ID] {
			seen[r.ID] = true
			uniq = append(uniq, r)
		}
	}
	recs = uniq
	if e.delivered == nil {
		return recs, nil
	}
	ops := make([]*storage.Operation, len(recs))
	for i, r := range recs {
		ops[i] = storage.GetOperation(deliveredKey(r.ID))
	}
	if err := e.delivered.Batch(ctx, ops...); err != nil {
		return nil, err
	}
	out := recs[:0:0]
	for i, r := range recs {
		if ops[i].Value == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// markDelivered remembers the ids, and every hour forgets those older than
// delivered.keep.
func (e *eventsExporter) markDelivered(ctx context.Context, recs []usage.Record) error {
	if e.delivered == nil {
		return nil
	}
	now := time.Now()
	stamp := []byte(strconv.FormatInt(now.Unix(), 10))
	bucket := strconv.FormatInt(now.Unix()/3600, 10)
	ops := make([]*storage.Operation, 0, 2*len(recs))
	for _, r := range recs {
		ops = append(ops, storage.SetOperation(deliveredKey(r.ID), stamp))
	}
	idx, err := e.delivered.Get(ctx, "t/"+bucket)
	if err != nil {
		return err
	}
	for _, r := range recs {
		idx = append(append(idx, r.ID...), '\n')
	}
	ops = append(ops, storage.SetOperation("t/"+bucket, idx))
	if err := e.delivered.Batch(ctx, ops...); err != nil {
		return err
	}
	if now.Sub(e.pruned) >= time.Hour {
		e.pruned = now
		e.prune(ctx, now)
	}
	return nil
}

// prune forgets the ids delivered in the hours past delivered.keep (it
// looks back a further week of hours; older ones were pruned before).
func (e *eventsExporter) prune(ctx context.Context, now time.Time) {
	last := now.Add(-e.cfg.Delivered.Keep).Unix() / 3600
	for h := last - 7*24; h < last; h++ {
		key := "t/" + strconv.FormatInt(h, 10)
		idx, err := e.delivered.Get(ctx, key)
		if err != nil || idx == nil {
			continue
		}
		var ops []*storage.Operation
		for _, id := range strings.Split(strings.TrimSpace(string(idx)), "\n") {
			if id != "" {
				ops = append(ops, storage.DeleteOperation(deliveredKey(id)))
			}
		}
		ops = append(ops, storage.DeleteOperation(key))
		if err := e.delivered.Batch(ctx, ops...); err != nil {
			e.set.Logger.Warn("usage_cloudevents: forgetting old delivered ids failed", zap.Error(err))
		}
	}
}

// Event is one record as a CloudEvent (specversion 1.0, structured JSON).
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            string    `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            EventData `json:"data"`
}

// EventData is what a billing meter aggregates: value (SUM over an hour's
// records gives the hour's total).
type EventData struct {
	Tenant   string      `json:"tenant"`
	Meter    usage.Meter `json:"meter"`
	Hour     string      `json:"hour"`
	Value    json.Number `json:"value"`
	Total    json.Number `json:"total"`
	Revision int         `json:"revision"`
	Unit     string      `json:"unit"`
}

// Events turns records into CloudEvents. The event's time is the hour's
// start, so a billing system windowing by time puts it in its hour; the
// subject is the tenant (OpenMeter's customer key).
func Events(recs []usage.Record, source, typePrefix string) []Event {
	out := make([]Event, len(recs))
	for i, r := range recs {
		out[i] = Event{
			SpecVersion: "1.0", ID: r.ID, Source: source, Type: typePrefix + string(r.Meter),
			Subject: r.Tenant, Time: r.Hour.UTC().Format(time.RFC3339), DataContentType: "application/json",
			Data: EventData{
				Tenant: r.Tenant, Meter: r.Meter, Hour: r.Hour.UTC().Format(usage.HourLayout),
				Value: json.Number(usage.FormatValue(r.Value)), Total: json.Number(usage.FormatValue(r.Total)),
				Revision: r.Revision, Unit: r.Meter.Unit(),
			},
		}
	}
	return out
}

func (e *eventsExporter) push(ctx context.Context, md pmetric.Metrics) error {
	recs, err := usage.Records(md)
	if err != nil {
		// Not usage records: sending them would bill nonsense; they are
		// dropped with an error that names them (the pipeline is
		// misconfigured).
		if len(recs) == 0 {
			return consumererror.NewPermanent(fmt.Errorf("usage_cloudevents: %w", err))
		}
		e.set.Logger.Error("usage_cloudevents: data that is not usage records was left out; connect this exporter to tenant_usage only")
	}
	if recs, err = e.undelivered(ctx, recs); err != nil {
		return fmt.Errorf("usage_cloudevents: reading delivered ids: %w", err)
	}
	if len(recs) == 0 {
		return nil
	}
	body, err := json.Marshal(Events(recs, e.cfg.Source, e.cfg.TypePrefix))
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.ClientConfig.Endpoint, bytes.NewReader(body))
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("usage_cloudevents: %d records: %w", len(recs), err)
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode/100 == 2 {
		if err := e.markDelivered(ctx, recs); err != nil {
			// Delivered; only the memory failed: a copy queued twice may
			// go twice (the billing system deduplicates by id).
			e.set.Logger.Warn("usage_cloudevents: remembering delivered ids failed", zap.Error(err))
		}
		return nil
	}
	err = fmt.Errorf("usage_cloudevents: the billing system answered %s to %d records: %s", resp.Status, len(recs), strings.TrimSpace(string(msg)))
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		// The billing system refuses these bytes: sending them again
		// cannot succeed. Dropped, with an error log naming the count.
		return consumererror.NewPermanent(err)
	}
	// Anything else (5xx, 429, and 401/403: a key being rotated) is
	// retried: records are money, a wrong key must not drop them.
	if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
		return exporterhelper.NewThrottleRetry(err, time.Duration(s)*time.Second)
	}
	return err
}
