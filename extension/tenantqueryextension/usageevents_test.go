package tenantqueryextension

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configopaque"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/telemetrytest"
)

// eventStore is a fake VictoriaLogs /insert/jsonline: it keeps the records
// it took and the headers they came with. While failing it answers 503
// without taking anything; while losing answers it takes the records and
// answers 503 (the answer lost on the way back).
type eventStore struct {
	mu      sync.Mutex
	records []readEvent
	raw     []map[string]any
	posts   []string
	headers []http.Header
	failing atomic.Bool
	losing  atomic.Bool
	refused atomic.Int64
}

func (s *eventStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.failing.Load() {
		s.refused.Add(1)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.posts = append(s.posts, r.URL.Path+"?"+r.URL.RawQuery+" "+r.Header.Get("Content-Type"))
	s.headers = append(s.headers, r.Header.Clone())
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		var ev readEvent
		var raw map[string]any
		if err := errors.Join(json.Unmarshal(sc.Bytes(), &ev), json.Unmarshal(sc.Bytes(), &raw)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.records = append(s.records, ev)
		s.raw = append(s.raw, raw)
	}
	if s.losing.Load() {
		http.Error(w, "answer lost", http.StatusServiceUnavailable)
	}
}

func (s *eventStore) taken() []readEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]readEvent(nil), s.records...)
}

// idsOf counts the records of each query id.
func idsOf(recs []readEvent) map[string]int {
	ids := map[string]int{}
	for _, r := range recs {
		ids[r.QueryID]++
	}
	return ids
}

// vmAnswer is a VictoriaMetrics v1.151.0 /api/v1/query answer with n
// series, as its query_response template writes it.
func vmAnswer(n, fetched, ms int) string {
	var b strings.Builder
	b.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"metric":{"__name__":"hw.gpu.utilization","tenant_id":"acme","hw.id":"` + string(rune('a'+i)) + `"},"value":[1796165685,"63.8"]}`)
	}
	b.WriteString(`]},"stats":{"seriesFetched": "` + strconv.Itoa(fetched) + `","executionTimeMsec":` + strconv.Itoa(ms) + `}}`)
	return b.String()
}

// withUsageEvents runs the test server with usage events going to es,
// through the client ToClient builds from the config (its headers
// included), in dir (a new one when empty).
func withUsageEvents(t *testing.T, es *eventStore, dir string, mutate func(*UsageEventsConfig)) *testServer {
	srv := httptest.NewServer(es)
	t.Cleanup(srv.Close)
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "read-events")
	}
	ts := newTestServer(t, func(c *Config) {
		c.UsageEvents.ClientConfig.Endpoint = srv.URL
		c.UsageEvents.ClientConfig.Headers = configopaque.MapList{
			{Name: "AccountID", Value: "0"}, {Name: "ProjectID", Value: "1"},
		}
		c.UsageEvents.Directory = dir
		c.UsageEvents.FlushInterval = 10 * time.Millisecond
		if mutate != nil {
			mutate(&c.UsageEvents)
		}
	})
	startUsage(t, ts)
	return ts
}

// startUsage opens a recorder on ts's usage directory, as Start does; the
// test ends it with shutdown or kill.
func startUsage(t *testing.T, ts *testServer) {
	u, err := ts.newUsage(context.Background(), componenttest.NewNopHost())
	require.NoError(t, err)
	u.start()
	ts.usage = u
	t.Cleanup(func() {
		if ts.usage == u {
			u.shutdown(context.Background())
		}
	})
}

// stopSender is the first half of a kill: the send in flight is abandoned
// and nothing more is fsynced or sent, while queries still write events.
func stopSender(ts *testServer) {
	ts.usage.cancel()
	<-ts.usage.done
}

// kill ends a recorder the way SIGKILL does: besides stopSender, nothing
// more is written and its files close (what write(2) wrote stays).
func kill(ts *testServer) {
	u := ts.usage
	stopSender(ts)
	u.log.mu.Lock()
	if u.log.w != nil {
		_ = u.log.w.Close()
		u.log.w = nil
	}
	u.log.closed = true
	u.log.mu.Unlock()
	u.client.CloseIdleConnections()
	ts.usage = nil
}

func shutdown(ts *testServer) {
	ts.usage.shutdown(context.Background())
	ts.usage = nil
}

func query(t *testing.T, ts *testServer, key string) int {
	t.Helper()
	return ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(key)).Code
}

func TestUsageEventsRecordAnsweredQueriesOnly(t *testing.T) {
	es := &eventStore{}
	ts := withUsageEvents(t, es, "", nil)
	ts.store.answer = func(c storeCall) (int, string) {
		if strings.Contains(c.rawQuery, "bad") {
			return http.StatusBadRequest, `{"status":"error","errorType":"bad_data","error":"parse error"}`
		}
		return http.StatusOK, vmAnswer(3, 40, 7)
	}
	for range 3 {
		require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
	}
	require.Equal(t, http.StatusOK, query(t, ts, keyGlobex))
	// Not answered: refused by the store, no key, an ingest token.
	require.Equal(t, http.StatusBadRequest, ts.do(http.MethodGet, "/api/v1/query?query=bad", "", bearer(keyAcme)).Code)
	require.Equal(t, http.StatusUnauthorized, query(t, ts, ""))
	require.Equal(t, http.StatusUnauthorized, query(t, ts, tokenAcme))

	shutdown(ts)
	recs := es.taken()
	require.Len(t, recs, 4)
	perTenant := map[string]int{}
	for _, r := range recs {
		perTenant[r.Tenant]++
		assert.Equal(t, int64(3), r.Series)
		assert.Equal(t, int64(40), r.SeriesFetched)
		assert.Equal(t, int64(7), r.ExecMS)
		assert.Equal(t, "tenant_query", r.Source)
		assert.Equal(t, "query", r.Endpoint)
		_, err := time.Parse(time.RFC3339Nano, r.Time)
		assert.NoError(t, err)
		assert.NotContains(t, r.KeyID, keyAcme, "the key itself is never recorded")
	}
	assert.Len(t, idsOf(recs), 4, "query ids are unique")
	assert.Equal(t, map[string]int{"acme": 3, "globex": 1}, perTenant)
	es.mu.Lock()
	defer es.mu.Unlock()
	assert.Contains(t, es.posts[0], "/insert/jsonline?_stream_fields=source application/stream+json")
	// The record's fields, as the usage job reads them (README).
	var keys []string
	for k := range es.raw[0] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	assert.Equal(t, []string{"_msg", "_time", "endpoint", "exec_ms", "key_id", "query_id", "series", "series_fetched", "source", "tenant_id"}, keys)
	assert.IsType(t, float64(0), es.raw[0]["series_fetched"], "a JSON number, not a string")
}

// The events go to the event store's own tenant (VictoriaLogs project 0:1,
// from usage_events.headers through confighttp), which customers' logs,
// exported to 0:0, never reach.
func TestUsageEventsCarryTheEventStoresTenantHeaders(t *testing.T) {
	es := &eventStore{}
	ts := withUsageEvents(t, es, "", nil)
	require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
	shutdown(ts)
	es.mu.Lock()
	defer es.mu.Unlock()
	require.NotEmpty(t, es.headers)
	for _, h := range es.headers {
		assert.Equal(t, "0", h.Get("AccountID"))
		assert.Equal(t, "1", h.Get("ProjectID"))
	}
}

// Absent stats (a Prometheus-shaped answer, other endpoints) are 0; a
// series count the answer does not give is 0, never negative.
func TestUsageEventsWithoutStats(t *testing.T) {
	es := &eventStore{}
	ts := withUsageEvents(t, es, "", nil)
	ts.store.answer = func(c storeCall) (int, string) {
		if c.path == "/api/v1/labels" {
			return http.StatusOK, `{"status":"success","data":["a","b"]}`
		}
		return http.StatusOK, `not the API's JSON`
	}
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/labels", "", bearer(keyAcme)).Code)
	require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
	shutdown(ts)
	recs := es.taken()
	require.Len(t, recs, 2)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Endpoint < recs[j].Endpoint })
	assert.Equal(t, [3]int64{2, 0, 0}, [3]int64{recs[0].Series, recs[0].SeriesFetched, recs[0].ExecMS}, recs[0].Endpoint)
	assert.Equal(t, [3]int64{0, 0, 0}, [3]int64{recs[1].Series, recs[1].SeriesFetched, recs[1].ExecMS}, recs[1].Endpoint)
}

func TestUsageEventsRetriedWhileTheEventStoreIsDown(t *testing.T) {
	es := &eventStore{}
	es.failing.Store(true)
	ts := withUsageEvents(t, es, "", nil)
	for range 5 {
		require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
	}
	require.Eventually(t, func() bool { return es.refused.Load() >= 2 }, 10*time.Second, 5*time.Millisecond,
		"the batch was offered and refused")
	require.Empty(t, es.taken())
	es.failing.Store(false)
	require.Eventually(t, func() bool { return len(es.taken()) == 5 }, 10*time.Second, 10*time.Millisecond,
		"every event of the outage arrives once the event store is back")
	shutdown(ts)
	assert.Len(t, es.taken(), 5, "and none twice")
	assert.Equal(t, int64(5), telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_usage_events_sent", nil))
}

// A gateway killed at any point loses no answered query's event: a new one
// on the same directory sends what the event store had not taken, and
// only that (a batch whose answer was lost may arrive twice, with the same
// query ids).
func TestUsageEventsSurviveAKill(t *testing.T) {
	es := &eventStore{}
	dir := filepath.Join(t.TempDir(), "read-events")
	ts := withUsageEvents(t, es, dir, nil)
	answered := 0
	// Taken before the kill.
	for range 3 {
		require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
		answered++
	}
	require.Eventually(t, func() bool { return len(es.taken()) == 3 }, 10*time.Second, 5*time.Millisecond)
	// Taken, but the answer lost: sent again.
	es.losing.Store(true)
	for range 2 {
		require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
		answered++
	}
	require.Eventually(t, func() bool { return len(es.taken()) >= 5 }, 10*time.Second, 5*time.Millisecond)
	es.losing.Store(false)
	es.failing.Store(true)
	// Not taken: the event store is down.
	for range 3 {
		require.Equal(t, http.StatusOK, query(t, ts, keyGlobex))
		answered++
	}
	// Answered the instant before the kill, never fsynced: write(2) put
	// it in the file, which outlives the process.
	stopSender(ts)
	require.Equal(t, http.StatusOK, query(t, ts, keyGlobex))
	answered++
	kill(ts)

	es.failing.Store(false)
	startUsage(t, ts)
	require.Eventually(t, func() bool { return len(idsOf(es.taken())) == answered }, 10*time.Second, 5*time.Millisecond,
		"every answered query's event arrives")
	shutdown(ts)
	ids := idsOf(es.taken())
	require.Len(t, ids, answered)
	byID := map[string]readEvent{}
	for _, r := range es.taken() {
		if prev, ok := byID[r.QueryID]; ok {
			assert.Equal(t, prev, r, "a resent event is the same event")
		}
		byID[r.QueryID] = r
	}
	first3 := es.taken()[:3]
	for _, r := range first3 {
		assert.Equal(t, 1, ids[r.QueryID], "what the event store took is not sent again after the restart")
	}
	perTenant := map[string]int{}
	for _, r := range byID {
		perTenant[r.Tenant]++
	}
	assert.Equal(t, map[string]int{"acme": 5, "globex": 4}, perTenant)
}

// A line cut short by a crash is skipped and counted, never sent; the
// lines before it are sent.
func TestUsageEventsTornLastLineIsSkipped(t *testing.T) {
	es := &eventStore{}
	es.failing.Store(true)
	dir := filepath.Join(t.TempDir(), "read-events")
	ts := withUsageEvents(t, es, dir, nil)
	require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
	require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
	kill(ts)
	segs, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"_time":"2026-01-01T00:00:00Z","_msg":"query","source":"tenant_query","tenant_id":"acme","query_id":"torn","ser`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	es.failing.Store(false)
	startUsage(t, ts)
	require.Eventually(t, func() bool { return len(es.taken()) == 2 }, 10*time.Second, 5*time.Millisecond)
	shutdown(ts)
	require.Len(t, es.taken(), 2)
	assert.NotContains(t, idsOf(es.taken()), "torn")
	assert.Equal(t, int64(1), telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_usage_events_dropped", map[string]string{"reason": "torn"}))
	assert.Equal(t, 1, ts.logs.FilterMessageSnippet("torn last line").Len())
}

// fillUntil answers queries while the event store is down until the
// usage log is full: the first status other than 200.
func fillUntil(t *testing.T, ts *testServer) (answered, status int) {
	t.Helper()
	for range 1000 {
		if code := query(t, ts, keyAcme); code != http.StatusOK {
			return answered, code
		}
		answered++
	}
	t.Fatal("the usage log never filled")
	return 0, 0
}

func TestUsageEventsFullLogRefusesQueries(t *testing.T) {
	es := &eventStore{}
	es.failing.Store(true)
	ts := withUsageEvents(t, es, "", func(c *UsageEventsConfig) { c.MaxBytes = minUsageLogBytes })
	answered, status := fillUntil(t, ts)
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Greater(t, answered, 5)
	rec := ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), "cannot record this query for billing")
	require.NotContains(t, rec.Body.String(), "hw.gpu", "the store's answer is not sent")
	assert.Equal(t, int64(2), telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_refused", map[string]string{"reason": "usage_unrecorded"}))
	assert.Equal(t, 1, ts.logs.FilterMessageSnippet("refusing queries (503)").Len(), "logged once")

	// The event store back, the log drains and queries are answered again.
	es.failing.Store(false)
	require.Eventually(t, func() bool { return query(t, ts, keyAcme) == http.StatusOK }, 10*time.Second, 10*time.Millisecond)
	shutdown(ts)
	assert.Len(t, idsOf(es.taken()), answered+1, "every answered query, none of the refused")
	entries, err := os.ReadDir(ts.cfg.UsageEvents.Directory)
	require.NoError(t, err)
	var size int64
	for _, e := range entries {
		fi, err := e.Info()
		require.NoError(t, err)
		if strings.HasSuffix(e.Name(), segmentExt) {
			size += fi.Size()
		}
	}
	assert.LessOrEqual(t, size, int64(minUsageLogBytes/segmentsPerLog+1024), "sent segments are deleted")
}

func TestUsageEventsFullLogDropsWhenToldTo(t *testing.T) {
	es := &eventStore{}
	es.failing.Store(true)
	ts := withUsageEvents(t, es, "", func(c *UsageEventsConfig) { c.MaxBytes = minUsageLogBytes; c.OnFull = onFullDrop })
	for range 40 {
		require.Equal(t, http.StatusOK, query(t, ts, keyAcme), "on_full: drop answers every query")
	}
	dropped := telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_usage_events_dropped", map[string]string{"reason": "full"})
	require.Positive(t, dropped)
	es.failing.Store(false)
	shutdown(ts)
	assert.Equal(t, int64(40), int64(len(idsOf(es.taken())))+dropped, "each answered query is sent or counted dropped")
	assert.Equal(t, 1, ts.logs.FilterMessageSnippet("dropping their events").Len(), "logged once")
}

// A disk that fails a write refuses the query (on_full: refuse); the part
// of the line it wrote is never sent, and the next query goes on in a new
// segment.
func TestUsageEventsWriteErrorRefusesTheQuery(t *testing.T) {
	es := &eventStore{}
	ts := withUsageEvents(t, es, "", nil)
	require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
	l := ts.usage.log
	l.mu.Lock()
	require.NoError(t, l.w.Close())
	l.w = &failingWriter{path: segmentPath(l.dir, l.segs[len(l.segs)-1].seq), after: 17}
	l.mu.Unlock()
	require.Equal(t, http.StatusServiceUnavailable, query(t, ts, keyAcme))
	require.Equal(t, http.StatusOK, query(t, ts, keyAcme))
	shutdown(ts)
	assert.Len(t, idsOf(es.taken()), 2)
}

func TestUsageEventsConfigErrors(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.CredentialsFile = "/x"
	cfg.UsageEvents.ClientConfig.Endpoint = "localhost:9428"
	cfg.UsageEvents.FlushInterval = 0
	cfg.UsageEvents.MaxBytes = 100
	cfg.UsageEvents.OnFull = "block"
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"usage_events.endpoint", "usage_events.flush_interval", "usage_events.directory: must be set",
		"usage_events.max_bytes: must be at least 4096", `usage_events.on_full: must be "refuse" or "drop", got "block"`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	cfg.UsageEvents.ClientConfig.Endpoint = ""
	require.NoError(t, cfg.Validate(), "without an endpoint nothing else is needed")
}
