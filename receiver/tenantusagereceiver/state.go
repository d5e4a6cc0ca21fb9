package tenantusagereceiver

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/extension/xextension/storage"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// The ledger, in the storage extension. Every record is written here before
// it is handed to the pipeline, and handed over from here, so a record id
// is bound to one value from the moment it exists: a kill anywhere re-sends
// the same values, never values computed again.
//
//	"cursor"      the next hour to close (RFC 3339)
//	"h/<hour>"    a closed hour still to be rechecked, or with tenants
//	              deferred: the totals its records gave, the revision each
//	              (tenant, meter) reached, deferred tenants, held decreases
//	"o/<n>"       an outbox entry: records written and not yet taken by the
//	              pipeline, for head <= n < tail
//	"outbox"      head and tail
//
// A closed hour, its outbox entry and the cursor past it are one
// transaction; so are a recheck's adjustments and the hour's new totals;
// so are the pipeline's taking of an entry and the head moving past it.

const (
	cursorKey = "cursor"
	outboxKey = "outbox"
)

func hourKey(h time.Time) string { return "h/" + h.UTC().Format(usage.HourLayout) }

func entryKey(n uint64) string { return "o/" + strconv.FormatUint(n, 10) }

// hourState is what a closed hour's rechecks and deferred tenants need.
type hourState struct {
	Hour time.Time `json:"hour"`
	// Done is the number of rechecks done.
	Done int `json:"done"`
	// Totals is tenant -> meter -> the hour's value as written to the
	// ledger so far (what the billing system has or will have).
	Totals map[string]map[usage.Meter]int64 `json:"totals"`
	// Revisions is tenant -> meter -> the last revision written (absent: 0).
	Revisions map[string]map[usage.Meter]int `json:"revisions,omitempty"`
	// Deferred is tenant -> why its meters could not be computed; it is
	// computed again every cycle until it can be, then billed at
	// revision 0.
	Deferred map[string]string `json:"deferred,omitempty"`
	// Held is tenant -> meter -> a recheck's value below the total billed,
	// not sent (decreases: hold), kept for review.
	Held map[string]map[usage.Meter]int64 `json:"held,omitempty"`
}

func (h *hourState) revision(tenant string, m usage.Meter) int { return h.Revisions[tenant][m] }

func (h *hourState) setRevision(tenant string, m usage.Meter, rev int) {
	if h.Revisions == nil {
		h.Revisions = map[string]map[usage.Meter]int{}
	}
	if h.Revisions[tenant] == nil {
		h.Revisions[tenant] = map[usage.Meter]int{}
	}
	h.Revisions[tenant][m] = rev
}

func (h *hourState) setHeld(tenant string, m usage.Meter, v int64, held bool) {
	if !held {
		delete(h.Held[tenant], m)
		if len(h.Held[tenant]) == 0 {
			delete(h.Held, tenant)
		}
		return
	}
	if h.Held == nil {
		h.Held = map[string]map[usage.Meter]int64{}
	}
	if h.Held[tenant] == nil {
		h.Held[tenant] = map[usage.Meter]int64{}
	}
	h.Held[tenant][m] = v
}

// bill takes revision-0 records into the totals.
func (h *hourState) bill(recs []usage.Record) {
	if h.Totals == nil {
		h.Totals = map[string]map[usage.Meter]int64{}
	}
	for _, r := range recs {
		if h.Totals[r.Tenant] == nil {
			h.Totals[r.Tenant] = map[usage.Meter]int64{}
		}
		h.Totals[r.Tenant][r.Meter] = r.Total
		delete(h.Deferred, r.Tenant)
	}
}

func (h *hourState) defer_(deferred map[string]error) {
	for t, err := range deferred {
		if h.Deferred == nil {
			h.Deferred = map[string]string{}
		}
		h.Deferred[t] = err.Error()
	}
}

func loadCursor(ctx context.Context, c storage.Client) (time.Time, bool, error) {
	b, err := c.Get(ctx, cursorKey)
	if err != nil || b == nil {
		return time.Time{}, false, err
	}
	t, err := time.Parse(time.RFC3339, string(b))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("stored cursor %q: %w", b, err)
	}
	return t.UTC(), true, nil
}

func loadHour(ctx context.Context, c storage.Client, hour time.Time) (*hourState, error) {
	b, err := c.Get(ctx, hourKey(hour))
	if err != nil || b == nil {
		return nil, err
	}
	var h hourState
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("stored hour %s: %w", hour.Format(usage.HourLayout), err)
	}
	return &h, nil
}

func setHour(h *hourState) (*storage.Operation, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	return storage.SetOperation(hourKey(h.Hour), b), nil
}

func setCursor(next time.Time) *storage.Operation {
	return storage.SetOperation(cursorKey, []byte(next.UTC().Format(time.RFC3339)))
}

// outbox is the ledger's queue of records not yet taken by the pipeline.
type outbox struct {
	Head uint64 `json:"head"`
	Tail uint64 `json:"tail"`
}

func loadOutbox(ctx context.Context, c storage.Client) (outbox, error) {
	var o outbox
	b, err := c.Get(ctx, outboxKey)
	if err != nil || b == nil {
		return o, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("stored outbox: %w", err)
	}
	return o, nil
}

func (o outbox) op() *storage.Operation {
	b, _ := json.Marshal(o)
	return storage.SetOperation(outboxKey, b)
}

// push returns the operations that append recs (none for no records) and
// the outbox after them.
func (o outbox) push(recs []usage.Record) ([]*storage.Operation, outbox, error) {
	if len(recs) == 0 {
		return nil, o, nil
	}
	b, err := json.Marshal(recs)
	if err != nil {
		return nil, o, err
	}
	next := outbox{Head: o.Head, Tail: o.Tail + 1}
	return []*storage.Operation{storage.SetOperation(entryKey(o.Tail), b), next.op()}, next, nil
}
