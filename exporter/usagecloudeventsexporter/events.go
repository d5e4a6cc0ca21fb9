package usagecloudeventsexporter

import (
	"crypto/sha256"
	"encoding/json"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// ContentType is the CloudEvents JSON batch media type.
const ContentType = "application/cloudevents-batch+json"

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
	Tenant string      `json:"tenant"`
	Meter  usage.Meter `json:"meter"`
	Hour   string      `json:"hour"`
	// Value and Total are written as usage.FormatValue writes them: an
	// integer without a decimal point or exponent, which is what a
	// billing system that takes whole units (Stripe) accepts.
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

// encoded is an event as it goes out: its canonical JSON (encoding/json of
// Event: fixed field order, no insignificant space), the very bytes in
// the request body, and their SHA-256, the value the id is bound to.
type encoded struct {
	id     string
	body   []byte
	digest [sha256.Size]byte
}

func encode(ev Event) (encoded, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return encoded{}, err
	}
	return encoded{id: ev.ID, body: b, digest: sha256.Sum256(b)}, nil
}
