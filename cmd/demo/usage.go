package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// billingSink is the demo's billing system: it takes the usage job's
// CloudEvents batches (the shape OpenMeter ingests at POST /api/v1/events)
// and keeps each record once, by id, as a billing system does.
type billingSink struct {
	mu      sync.Mutex
	records map[string]json.RawMessage
	batches int
	srv     *http.Server
	url     string
}

func startBillingSink() (*billingSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &billingSink{records: map[string]json.RawMessage{}}
	b.url = "http://" + ln.Addr().String() + "/api/v1/events"
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

func (b *billingSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/events" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var events []struct {
		ID   string          `json:"id"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &events); err != nil {
		http.Error(w, "not a CloudEvents batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches++
	for _, ev := range events {
		b.records[ev.ID] = ev.Data
	}
	w.WriteHeader(http.StatusNoContent)
}

func (b *billingSink) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.records)
}

func (b *billingSink) close() { _ = b.srv.Close() }

// usageTable prints, per tenant, the current hour's usage so far: what the
// usage job will bill for the hour when it closes (computed the same way,
// from the same stores), and what the billing system has received.
func usageTable(ctx context.Context, src *usage.Source, billing *billingSink) {
	hour := time.Now().UTC().Truncate(time.Hour)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hr, err := src.Compute(ctx, hour)
	if err != nil {
		fmt.Printf("usage: %v\n", err)
		return
	}
	for t, err := range hr.Deferred {
		fmt.Printf("usage: %s: %v\n", t, err)
	}
	vals := map[string]map[usage.Meter]int64{}
	for _, r := range hr.Records {
		if vals[r.Tenant] == nil {
			vals[r.Tenant] = map[usage.Meter]int64{}
		}
		vals[r.Tenant][r.Meter] = r.Total
	}
	tenants := make([]string, 0, len(vals))
	for t := range vals {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	fmt.Printf("usage, hour %s so far (billed when it closes; %d records at the billing system so far):\n",
		hour.Format(usage.HourLayout), billing.count())
	head := []string{"tenant"}
	for _, m := range usage.AllMeters {
		head = append(head, string(m))
	}
	fmt.Println("  " + row(head))
	for _, t := range tenants {
		cells := []string{t}
		for _, m := range usage.AllMeters {
			cells = append(cells, usage.FormatValue(vals[t][m]))
		}
		fmt.Println("  " + row(cells))
	}
}

func row(cells []string) string {
	var b strings.Builder
	for i, c := range cells {
		if i == 0 {
			fmt.Fprintf(&b, "%-9s", c)
			continue
		}
		fmt.Fprintf(&b, " %14s", c)
	}
	return b.String()
}
