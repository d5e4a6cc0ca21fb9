package tenantqueryextension

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// eventStore is a fake VictoriaLogs /insert/jsonline: it keeps the records
// it took; while failing it answers 503.
type eventStore struct {
	mu      sync.Mutex
	records []readEvent
	posts   []string
	failing atomic.Bool
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
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		var ev readEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.records = append(s.records, ev)
	}
}

func (s *eventStore) taken() []readEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]readEvent(nil), s.records...)
}

func withUsageEvents(t *testing.T, es *eventStore, maxPending int) *testServer {
	srv := httptest.NewServer(es)
	t.Cleanup(srv.Close)
	ts := newTestServer(t, func(c *Config) {
		c.UsageEvents.ClientConfig.Endpoint = srv.URL
		c.UsageEvents.FlushInterval = 10 * time.Millisecond
		c.UsageEvents.MaxPending = maxPending
	})
	ts.usage = newUsageRecorder(ts.cfg.UsageEvents, srv.Client(), ts.logger, ts.tel)
	ts.usage.start()
	return ts
}

func TestUsageEventsRecordAnsweredQueriesOnly(t *testing.T) {
	es := &eventStore{}
	ts := withUsageEvents(t, es, 1000)
	ts.store.answer = func(c storeCall) (int, string) {
		if strings.Contains(c.rawQuery, "bad") {
			return http.StatusBadRequest, `{"status":"error","errorType":"bad_data","error":"parse error"}`
		}
		return http.StatusOK, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"1"]},{"metric":{"a":"3"},"value":[1,"1"]}]}}`
	}
	for i := 0; i < 3; i++ {
		require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code)
	}
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyGlobex)).Code)
	// Not answered: refused by the store, no key, an ingest token.
	require.Equal(t, http.StatusBadRequest, ts.do(http.MethodGet, "/api/v1/query?query=bad", "", bearer(keyAcme)).Code)
	require.Equal(t, http.StatusUnauthorized, ts.do(http.MethodGet, "/api/v1/query?query=up", "", nil).Code)
	require.Equal(t, http.StatusUnauthorized, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(tokenAcme)).Code)

	ts.usage.shutdown(context.Background())
	recs := es.taken()
	require.Len(t, recs, 4)
	perTenant := map[string]int{}
	ids := map[string]bool{}
	for _, r := range recs {
		perTenant[r.Tenant]++
		assert.Equal(t, 3, r.Series)
		assert.Equal(t, "tenant_query", r.Source)
		assert.Equal(t, "query", r.Endpoint)
		assert.False(t, ids[r.QueryID], "query ids are unique")
		ids[r.QueryID] = true
		_, err := time.Parse(time.RFC3339Nano, r.Time)
		assert.NoError(t, err)
	}
	assert.Equal(t, map[string]int{"acme": 3, "globex": 1}, perTenant)
	es.mu.Lock()
	assert.Contains(t, es.posts[0], "/insert/jsonline?_stream_fields=source application/stream+json")
	es.mu.Unlock()
	for _, r := range recs {
		assert.NotContains(t, r.KeyID, keyAcme, "the key itself is never recorded")
	}
}

func TestUsageEventsRetriedWhileTheEventStoreIsDown(t *testing.T) {
	es := &eventStore{}
	es.failing.Store(true)
	ts := withUsageEvents(t, es, 1000)
	for i := 0; i < 5; i++ {
		require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code)
	}
	require.Eventually(t, func() bool { return es.refused.Load() >= 2 }, 10*time.Second, 5*time.Millisecond,
		"the batch was offered and refused")
	require.Empty(t, es.taken())
	es.failing.Store(false)
	require.Eventually(t, func() bool { return len(es.taken()) == 5 }, 10*time.Second, 10*time.Millisecond,
		"every record of the outage arrives once the event store is back")
	ts.usage.shutdown(context.Background())
	assert.Len(t, es.taken(), 5, "and none twice")
}

func TestUsageEventsBoundedWhileDown(t *testing.T) {
	es := &eventStore{}
	es.failing.Store(true)
	ts := withUsageEvents(t, es, 3)
	for i := 0; i < 5; i++ {
		require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code,
			"a full record queue never fails the customer's query")
	}
	ts.usage.mu.Lock()
	assert.Len(t, ts.usage.pending, 3)
	ts.usage.mu.Unlock()
	es.failing.Store(false)
	ts.usage.shutdown(context.Background())
	assert.Len(t, es.taken(), 3)
	assert.Equal(t, 1, ts.logs.FilterMessageSnippet("dropping new ones").Len(), "the drop is logged, once")
}

func TestUsageEventsConfigErrors(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.CredentialsFile = "/x"
	cfg.UsageEvents.ClientConfig.Endpoint = "localhost:9428"
	cfg.UsageEvents.FlushInterval = 0
	cfg.UsageEvents.MaxPending = 0
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{"usage_events.endpoint", "usage_events.flush_interval", "usage_events.max_pending"} {
		assert.Contains(t, err.Error(), want)
	}
}
