package tenantusagereceiver

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/extension/xextension/storage"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// Storage layout: "cursor" is the next hour to close (RFC 3339); "h/<hour>"
// is a closed hour still to be rechecked: the totals its records gave and
// the revision each (tenant, meter) has reached. A closed hour and the
// cursor past it are written in one transaction.

const cursorKey = "cursor"

func hourKey(h time.Time) string { return "h/" + h.UTC().Format(usage.HourLayout) }

// hourState is what a closed hour's rechecks need.
type hourState struct {
	Hour time.Time `json:"hour"`
	// Done is the number of rechecks done.
	Done int `json:"done"`
	// Totals is tenant -> meter -> the hour's value as billed so far.
	Totals map[string]map[usage.Meter]float64 `json:"totals"`
	// Revisions is tenant -> meter -> the last revision sent (absent: 0).
	Revisions map[string]map[usage.Meter]int `json:"revisions,omitempty"`
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

func newHourState(hour time.Time, recs []usage.Record) *hourState {
	h := &hourState{Hour: hour, Totals: map[string]map[usage.Meter]float64{}}
	for _, r := range recs {
		if h.Totals[r.Tenant] == nil {
			h.Totals[r.Tenant] = map[usage.Meter]float64{}
		}
		h.Totals[r.Tenant][r.Meter] = r.Total
	}
	return h
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
