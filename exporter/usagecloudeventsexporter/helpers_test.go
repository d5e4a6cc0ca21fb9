package usagecloudeventsexporter

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/usagecloudeventsexporter/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/storagetest"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/telemetrytest"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var hour = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// rec is tenant's data_points record of hour+h.
func rec(tenant string, h int, value int64) usage.Record {
	at := hour.Add(time.Duration(h) * time.Hour)
	return usage.Record{ID: usage.RecordID(tenant, usage.DataPoints, at, 0), Tenant: tenant, Meter: usage.DataPoints, Hour: at, Value: value, Total: value}
}

// fleet is n tenants' records of one hour.
func fleet(n int) []usage.Record {
	out := make([]usage.Record, n)
	for i := range out {
		out[i] = rec(fmt.Sprintf("t%03d", i), 0, int64(100+i))
	}
	return out
}

func metrics(recs ...usage.Record) pmetric.Metrics { return usage.Metrics(recs, "test") }

// billing is the billing system: it takes CloudEvents batches, and can be
// told to refuse some ids, refuse requests over a size, or fail requests.
type billing struct {
	mu       sync.Mutex
	requests [][]Event
	taken    map[string][]Event // by id, every copy taken
	ctypes   []string
	// refuseID: a request holding it is answered refuseStatus (400 if
	// unset).
	refuseID     map[string]bool
	refuseStatus int
	// maxEvents: a request with more events is answered 413.
	maxEvents int
	// fail: the next requests are answered these statuses in turn (0:
	// as usual).
	fail       []int
	retryAfter string
}

func newBilling() *billing { return &billing{taken: map[string][]Event{}, refuseID: map[string]bool{}} }

func (b *billing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	defer b.mu.Unlock()
	var evs []Event
	if err := json.Unmarshal(raw, &evs); err != nil {
		http.Error(w, "not a CloudEvents batch", http.StatusBadRequest)
		return
	}
	b.requests = append(b.requests, evs)
	if len(b.fail) > 0 {
		status := b.fail[0]
		b.fail = b.fail[1:]
		if status != 0 {
			if b.retryAfter != "" {
				w.Header().Set("Retry-After", b.retryAfter)
			}
			http.Error(w, "try later", status)
			return
		}
	}
	if b.maxEvents > 0 && len(evs) > b.maxEvents {
		http.Error(w, "request entity too large", http.StatusRequestEntityTooLarge)
		return
	}
	for _, ev := range evs {
		if b.refuseID[ev.ID] {
			status := b.refuseStatus
			if status == 0 {
				status = http.StatusBadRequest
			}
			http.Error(w, `{"title":"invalid event","detail":"`+ev.ID+`"}`, status)
			return
		}
	}
	for _, ev := range evs {
		b.taken[ev.ID] = append(b.taken[ev.ID], ev)
	}
	b.ctypes = append(b.ctypes, r.Header.Get("Content-Type"))
}

func (b *billing) set(f func(b *billing)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

// takenOnce says every id was taken exactly once, and returns them.
func (b *billing) takenOnce(t *testing.T) map[string]Event {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]Event, len(b.taken))
	for id, copies := range b.taken {
		require.Len(t, copies, 1, "id %s taken %d times", id, len(copies))
		out[id] = copies[0]
	}
	return out
}

func (b *billing) requestCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests)
}

// harness is an exporter's push path (no queue: each push is one
// attempt) over a real file_storage in dir, with its telemetry.
type harness struct {
	e    *eventsExporter
	tel  *componenttest.Telemetry
	stop func()
}

func newHarness(t *testing.T, url, dir string, tune func(*Config)) *harness {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.ClientConfig.Endpoint = url
	cfg.DeadLetter.Path = filepath.Join(dir, "dead-letter.jsonl")
	id := component.MustNewIDWithName("file_storage", "usage")
	cfg.Delivered.Storage = &id
	if tune != nil {
		tune(cfg)
	}
	require.NoError(t, cfg.Validate())
	ext := storagetest.Start(t, dir)
	h := storagetest.NewHost(map[component.ID]component.Component{id: ext})
	tel := componenttest.NewTelemetry()
	set := exportertest.NewNopSettings(metadata.Type)
	set.ID = component.NewID(metadata.Type)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	e, err := newEventsExporter(cfg, set)
	require.NoError(t, err)
	require.NoError(t, e.start(context.Background(), h))
	var once sync.Once
	stop := func() {
		once.Do(func() {
			require.NoError(t, e.shutdown(context.Background()))
			require.NoError(t, ext.Shutdown(context.Background()))
			require.NoError(t, tel.Shutdown(context.Background()))
		})
	}
	t.Cleanup(stop)
	return &harness{e: e, tel: tel, stop: stop}
}

func (h *harness) count(name string, attrs map[string]string) int64 {
	return telemetrytest.Int64(h.tel, name, attrs)
}

// deadLetters reads the dead-letter file back.
func deadLetters(t *testing.T, dir string) []deadLetterLine {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "dead-letter.jsonl"))
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	var out []deadLetterLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l deadLetterLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "line %q", sc.Text())
		out = append(out, l)
	}
	require.NoError(t, sc.Err())
	return out
}

func eventOf(t *testing.T, raw json.RawMessage) Event {
	t.Helper()
	var ev Event
	require.NoError(t, json.Unmarshal(raw, &ev))
	return ev
}
