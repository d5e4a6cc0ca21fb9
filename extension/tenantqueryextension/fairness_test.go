package tenantqueryextension

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/telemetrytest"
)

// A tenant whose answers fill its answer memory has its next large answer
// refused (503, retryable); another tenant's answers still come, and every
// byte is given back once the answers are written.
func TestAnswerMemoryIsBoundedPerTenant(t *testing.T) {
	big := `{"status":"success","data":{"resultType":"vector","result":[` + strings.Repeat(`{"metric":{},"value":[1,"1"]},`, 40_000) + `{"metric":{},"value":[1,"1"]}]}}`
	ts := newTestServer(t, func(c *Config) {
		c.Store.MaxResponseBytes = 2 << 20
		c.Limits.MaxAnswerBytes = 2 << 20
		c.Limits.MaxAnswerBytesTotal = 4 << 20
		c.Telemetry.PerTenant = true // as config/gateway.yaml: who was refused
	})
	hold := make(chan struct{})
	var held atomic.Int32
	ts.store.answer = func(c storeCall) (int, string) {
		if strings.Contains(c.rawQuery, "acme") && strings.Contains(c.rawQuery, "big") {
			return http.StatusOK, big
		}
		return http.StatusOK, `{"status":"success","data":{"resultType":"vector","result":[]}}`
	}
	require.Greater(t, len(big), 1<<20)
	// acme's first big answer is held in memory while its client is slow to
	// take it (its write blocks on hold).
	done := make(chan int, 1)
	go func() {
		rec := &blockingWriter{ResponseRecorder: httptest.NewRecorder(), hold: hold, wrote: &held}
		req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "http://read.example/api/v1/query?query=big", http.NoBody)
		req.Header.Set("Authorization", "Bearer "+keyAcme)
		ts.ServeHTTP(rec, req)
		done <- rec.Code
	}()
	require.Eventually(t, func() bool { return held.Load() == 1 }, 5*time.Second, time.Millisecond)
	tenantHeld, total := ts.answers.inUse("acme")
	require.Greater(t, tenantHeld, int64(len(big)))
	require.Equal(t, tenantHeld, total)

	rec := ts.do(http.MethodGet, "/api/v1/query?query=big", "", bearer(keyAcme))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "acme's second big answer does not fit its budget: %s", rec.Body)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), "limits.max_answer_bytes")
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyGlobex)).Code, "globex is not held by acme's answers")
	assert.Equal(t, int64(1), telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_refused", map[string]string{"tenant": "acme", "reason": "answer_memory"}))
	assert.Equal(t, total, telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_answer_bytes", nil))

	close(hold)
	require.Equal(t, http.StatusOK, <-done)
	tenantHeld, total = ts.answers.inUse("acme")
	require.Zero(t, tenantHeld)
	require.Zero(t, total, "every answer's bytes are given back")
}

// blockingWriter holds the first Write until hold is closed: a client that
// reads its answer slowly.
type blockingWriter struct {
	*httptest.ResponseRecorder
	hold  chan struct{}
	wrote *atomic.Int32
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	b.wrote.Add(1)
	<-b.hold
	return b.ResponseRecorder.Write(p)
}

// The gateway-wide bound holds too: the answers of many tenants together
// stay under max_answer_bytes_total.
func TestAnswerBudgetBounds(t *testing.T) {
	b := newAnswerBudget(10, 15)
	ok, _ := b.take("a", 10)
	require.True(t, ok)
	ok, tenantFull := b.take("a", 1)
	require.False(t, ok)
	require.True(t, tenantFull)
	ok, _ = b.take("b", 5)
	require.True(t, ok)
	ok, tenantFull = b.take("c", 1)
	require.False(t, ok)
	require.False(t, tenantFull, "the gateway's bound, not c's")
	b.give("a", 10)
	ok, _ = b.take("c", 1)
	require.True(t, ok)
	b.give("b", 5)
	b.give("c", 1)
	_, total := b.inUse("")
	require.Zero(t, total)
	require.Empty(t, b.tenant)
}

// Behind three replicas each takes a third of the tenant's limits, so the
// tenant's total over the tier is its limit (rounded up per replica).
func TestReplicasShareTheTenantsLimits(t *testing.T) {
	l := newTenantLimits(LimitsConfig{MaxConcurrent: 8, MaxQueued: 4, QueueWait: time.Millisecond, QueriesPerSecond: 30, Burst: 40, Replicas: 3})
	require.Equal(t, 2, l.cfg.MaxConcurrent, "8/3 rounded down: the tier holds 6 of the tenant's 8")
	require.Equal(t, 13, l.cfg.Burst)
	require.InDelta(t, 10, l.cfg.QueriesPerSecond, 1e-9)
	var releases []func()
	for range 2 {
		release, _, refused := l.admit(context.Background(), "acme")
		require.Nil(t, refused)
		releases = append(releases, release)
	}
	_, _, refused := l.admit(context.Background(), "acme")
	require.NotNil(t, refused, "a third query at once on this replica waits its queue_wait and is refused")
	require.Equal(t, "concurrency", refused.reason)
	for _, r := range releases {
		r()
	}
	one := newTenantLimits(LimitsConfig{MaxConcurrent: 1, Burst: 1, QueriesPerSecond: 1, Replicas: 3})
	require.Equal(t, 1, one.cfg.MaxConcurrent, "never below one query at once")
}

// A half-sent body is never read before the tenant has a query slot: with
// acme's slots and queue full, its next POST is refused without a byte of
// its body read, and a body that stops arriving is cut at read_timeout by
// the listener (see TestStalledBodiesHoldNothing).
func TestBodyIsReadOnlyAfterAdmission(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.Limits.MaxConcurrent, c.Limits.MaxQueued, c.Limits.QueueWait = 1, 0, time.Second
	})
	release := make(chan struct{})
	ts.store.answer = func(storeCall) (int, string) {
		<-release
		return http.StatusOK, `{"status":"success","data":{"resultType":"vector","result":[]}}`
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme))
	}()
	require.Eventually(t, func() bool { return ts.limits.inFlight("acme") == 1 }, 5*time.Second, time.Millisecond)
	body := &countingBody{r: strings.NewReader("query=up")}
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "http://read.example/api/v1/query", body)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	rec := httptest.NewRecorder()
	ts.ServeHTTP(rec, req)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Zero(t, body.read.Load(), "the body of a refused query is not read")
	close(release)
	<-done
}

type countingBody struct {
	r    io.Reader
	read atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// Against the real listener: a tenant's stalled bodies and header-less
// connections are cut by the listener's read timeouts, and while they
// stall another tenant's queries are answered.
func TestStalledBodiesHoldNothing(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.ServerConfig.ReadHeaderTimeout = 300 * time.Millisecond
		c.ServerConfig.ReadTimeout = 500 * time.Millisecond
	})
	srv := httptest.NewUnstartedServer(ts)
	srv.Config.ReadHeaderTimeout = ts.cfg.ServerConfig.ReadHeaderTimeout
	srv.Config.ReadTimeout = ts.cfg.ServerConfig.ReadTimeout
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var wg sync.WaitGroup
	closedAfter := make(chan time.Duration, 40)
	for i := range 40 {
		wg.Go(func() {
			conn, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", addr)
			if !assert.NoError(t, err) {
				return
			}
			defer func() { _ = conn.Close() }()
			start := time.Now()
			if i%2 == 0 { // headers, then half a body
				_, _ = io.WriteString(conn, "POST /api/v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+keyAcme+
					"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nquery=")
			} else { // half the headers
				_, _ = io.WriteString(conn, "GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\n")
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.Copy(io.Discard, conn)
			closedAfter <- time.Since(start)
		})
	}
	for range 5 {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/api/v1/query?query=up", http.NoBody)
		req.Header.Set("Authorization", "Bearer "+keyGlobex)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	wg.Wait()
	close(closedAfter)
	for d := range closedAfter {
		require.Less(t, d, 5*time.Second, "every stalled connection is closed by the read timeouts")
	}
	require.Zero(t, ts.limits.inFlight("acme"), "no slot is left held")
}

// A query that runs out its time gets a 504, not a cut connection: the
// handler ends before write_timeout whatever the store does.
func TestASlowQueryEndsIn504(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.Limits.QueryTimeout = time.Second
		c.Limits.QueueWait = 0
		c.ServerConfig.WriteTimeout = time.Second + queryTimeoutGrace + writeMargin
	})
	ts.client.Transport = slowTransport{ts.store}
	start := time.Now()
	rec := ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme))
	require.Equal(t, http.StatusGatewayTimeout, rec.Code, "%s", rec.Body)
	require.Less(t, time.Since(start), ts.cfg.ServerConfig.WriteTimeout-writeMargin+time.Second)
	q, err := url.ParseQuery(ts.store.taken()[0].rawQuery)
	require.NoError(t, err)
	told, err := strconv.ParseFloat(q.Get("timeout"), 64)
	require.NoError(t, err)
	require.InDelta(t, 1, told, 0.05, "the store is told the time the query has")
}

// slowTransport is a store that honours the request's context.
type slowTransport struct{ f *fakeStore }

func (s slowTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s.f.mu.Lock()
	s.f.calls = append(s.f.calls, storeCall{method: req.Method, path: req.URL.Path, rawQuery: req.URL.RawQuery})
	s.f.mu.Unlock()
	<-req.Context().Done()
	return nil, req.Context().Err()
}

// Failed keys from one address are refused retryably past
// failure_limit.per_minute, failed logins too; a valid key from the same
// address (a team behind the guesser's NAT) still reads.
func TestFailedKeysAreThrottledPerAddress(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.FailureLimit.PerMinute = 5 })
	for range 5 {
		require.Equal(t, http.StatusUnauthorized, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer("guess-0123456789")).Code)
	}
	rec := ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer("guess-0123456789"))
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	rec = ts.do(http.MethodPost, "/login", "key=guess-0123456789", nil)
	require.Equal(t, http.StatusTooManyRequests, rec.Code, "failed logins count in the same budget")
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code, "valid keys always pass")
	require.Equal(t, http.StatusSeeOther, ts.do(http.MethodPost, "/login", "key="+url.QueryEscape(keyGlobex), nil).Code)
	require.Equal(t, http.StatusUnauthorized, ts.do(http.MethodGet, "/api/v1/query?query=up", "", nil).Code, "a request without a key is not a failure")
	assert.Equal(t, int64(2), telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_refused", map[string]string{"reason": "throttled"}))
}

// The label APIs carry the tenant's own match[] when the client sends
// none, so they stay scoped even on a store that ignores extra_label there.
func TestLabelAPIsGetTheTenantsMatch(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, path := range []string{"/api/v1/labels", "/api/v1/label/host.name/values"} {
		require.Equal(t, http.StatusOK, ts.do(http.MethodGet, path, "", bearer(keyAcme)).Code)
		q, err := url.ParseQuery(ts.store.taken()[0].rawQuery)
		require.NoError(t, err)
		require.Equal(t, []string{`{tenant_id="acme"}`}, q["match[]"], path)
		require.Equal(t, []string{"tenant_id=acme"}, q["extra_label"])

		require.Equal(t, http.StatusOK, ts.do(http.MethodGet, path+"?match[]=hw.power", "", bearer(keyAcme)).Code)
		q, _ = url.ParseQuery(ts.store.taken()[0].rawQuery)
		require.Equal(t, []string{"hw.power"}, q["match[]"], "the client's selector stays, ANDed with extra_label")
	}
}

// The events endpoints reach the event store with the tenant's
// extra_filters alone: the client's scope parameters, unknown parameters
// and headers never arrive, the limit is capped, and the rest of the event
// store's API is not served.
func TestEventsEndpointsAreScoped(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.Events.ClientConfig.Endpoint = "http://vlogs.example:9428"
		c.Events.MaxRecords = 50
	})
	events := &fakeStore{answer: func(storeCall) (int, string) {
		return http.StatusOK, "{\"_msg\":\"XID 79\"}\n{\"_msg\":\"XID 48\"}\n"
	}}
	ts.eventsClient = &http.Client{Transport: events}
	sneaky := url.Values{
		"query": {`nvidia.xid.code:79`}, "limit": {"100000"},
		"extra_filters": {`{"tenant_id":"globex"}`}, "extra_stream_filters": {`{tenant_id="globex"}`},
		"hidden_fields_filters": {"tenant_id"}, "AccountID": {"1"}, "tenant": {"globex"},
	}.Encode()
	header := bearer(keyAcme)
	header.Set("AccountID", "7")
	header.Set("ProjectID", "7")
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		var rec *httptest.ResponseRecorder
		if method == http.MethodGet {
			rec = ts.do(method, "/select/logsql/query?"+sneaky, "", header)
		} else {
			rec = ts.do(method, "/select/logsql/query", sneaky, header)
		}
		require.Equal(t, http.StatusOK, rec.Code, "%s", rec.Body)
		calls := events.taken()
		require.Len(t, calls, 1)
		c := calls[0]
		require.Equal(t, "/select/logsql/query", c.path)
		q, err := url.ParseQuery(c.rawQuery)
		require.NoError(t, err)
		b, err := url.ParseQuery(c.body)
		require.NoError(t, err)
		for name := range b {
			q[name] = append(q[name], b[name]...)
		}
		require.Equal(t, []string{`{"tenant_id":"acme"}`}, q["extra_filters"], "%s: the tenant's scope, once", method)
		for _, name := range []string{"extra_stream_filters", "hidden_fields_filters", "AccountID", "tenant", "timeout"} {
			require.NotContains(t, q, name, method)
		}
		require.Equal(t, []string{"50"}, q["limit"])
		require.Empty(t, c.header.Get("AccountID"), "client headers never reach the event store")
	}
	require.Empty(t, ts.store.taken(), "nothing reaches the metrics store")
	for _, path := range []string{"/select/logsql/tail", "/select/tenant_ids", "/select/logsql/facets", "/insert/jsonline",
		"/select/logsql/query/", "//select/logsql/query", "/select/logsql/%71uery", "/select/logsql/../logsql/query",
		"/prometheus/select/logsql/query", "/select/vmui/", "/delete/run_task", "/internal/select/query"} {
		require.Equal(t, http.StatusNotFound, ts.do(http.MethodGet, path+"?query=*", "", bearer(keyAcme)).Code, path)
	}
	require.Empty(t, events.taken())
	require.Equal(t, http.StatusUnauthorized, ts.do(http.MethodGet, "/select/logsql/query?query=*", "", bearer(tokenAcme)).Code, "an ingest token reads no events")

	// Without events configured, the paths are not served.
	plain := newTestServer(t, nil)
	require.Equal(t, http.StatusNotFound, plain.do(http.MethodGet, "/select/logsql/query?query=*", "", bearer(keyAcme)).Code)
}

// The records an events query returned are counted for the read meters.
func TestEventsAnswersAreCounted(t *testing.T) {
	require.Equal(t, 2, scanAnswer(eventsEndpoints["/select/logsql/query"], []byte("{\"a\":1}\n{\"a\":2}\n")).series)
	require.Equal(t, 3, scanAnswer(eventsEndpoints["/select/logsql/query"], []byte("{}\n{}\n{}")).series)
	require.Zero(t, scanAnswer(eventsEndpoints["/select/logsql/query"], nil).series)
	require.Equal(t, 2, scanAnswer(eventsEndpoints["/select/logsql/field_values"], []byte(`{"values":[{"value":"a","hits":1},{"value":"b","hits":2}]}`)).series)
	require.Equal(t, 1, scanAnswer(eventsEndpoints["/select/logsql/stats_query"], []byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}`)).series)
}

// Every answer says nosniff and carries the CSP, the API's and the
// refusals' too.
func TestEveryAnswerHasNosniffAndCSP(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, c := range []struct {
		method, target string
		header         http.Header
	}{
		{http.MethodGet, "/api/v1/query?query=up", bearer(keyAcme)},
		{http.MethodGet, "/api/v1/query?query=up", nil},
		{http.MethodGet, "/nowhere", nil},
		{http.MethodGet, "/login", nil},
		{http.MethodGet, "/logout", nil},
		{http.MethodGet, "/vmui/", nil},
	} {
		rec := ts.do(c.method, c.target, "", c.header)
		require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"), c.target)
		require.Equal(t, uiCSP, rec.Header().Get("Content-Security-Policy"), c.target)
	}
}

// Each read key's last use is a gauge the operator can find stale keys by.
func TestKeyLastUseIsRecorded(t *testing.T) {
	for _, perTenant := range []bool{false, true} {
		ts := newTestServer(t, func(c *Config) { c.Telemetry.PerTenant = perTenant })
		before := time.Now().Unix()
		require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code)
		want := map[string]string{"key_id": "acme-grafana"}
		if perTenant {
			want["tenant"] = "acme"
		}
		require.GreaterOrEqual(t, telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_key_last_used", want), before)
		require.Zero(t, telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_key_last_used", map[string]string{"key_id": "globex-grafana"}))
		var logged bool
		for _, e := range ts.logs.FilterMessage("query").All() {
			if e.ContextMap()["key_id"] == "acme-grafana" {
				logged = true
			}
		}
		require.True(t, logged, "the audit line names the key")
	}
}

// A credentials file that stops loading keeps the last good keys for
// credentials_max_stale at most; then every request is answered 503
// (retryable, no verdict on the key), logins too, and browser sessions are
// kept for when the file loads again.
func TestABrokenCredentialsFileIsBoundedAndLoud(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.CredentialsMaxStale = 200 * time.Millisecond })
	rec := ts.do(http.MethodPost, "/login", "key="+url.QueryEscape(keyAcme), nil)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	session := http.Header{"Cookie": {sessionCookie + "=" + rec.Result().Cookies()[0].Value}}

	require.NoError(t, os.WriteFile(ts.credFile, []byte("credentials: [oops"), 0o600))
	require.Eventually(t, func() bool {
		return ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code == http.StatusServiceUnavailable
	}, 5*time.Second, 10*time.Millisecond)
	rec = ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme))
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Equal(t, http.StatusServiceUnavailable, ts.do(http.MethodGet, "/api/v1/query?query=up", "", session).Code)
	require.Equal(t, http.StatusServiceUnavailable, ts.do(http.MethodPost, "/login", "key="+url.QueryEscape(keyGlobex), nil).Code)
	require.Error(t, ts.creds.Err())
	require.NotEmpty(t, ts.logs.FilterLevelExact(zap.ErrorLevel).All(), "the failure is logged at error level")
	assert.Positive(t, telemetrytest.Int64(ts.metrics, "otelcol_tenant_query_refused", map[string]string{"reason": "credentials_unavailable"}))

	require.NoError(t, os.WriteFile(ts.credFile, []byte(credentialsYAML()), 0o600))
	require.Eventually(t, func() bool {
		return ts.do(http.MethodGet, "/api/v1/query?query=up", "", session).Code == http.StatusOK
	}, 5*time.Second, 10*time.Millisecond, "the session outlives the outage")
}

// A tenant's store time: its running queries count as they run, a costly
// query leaves it in debt until it has earned the time back, and another
// tenant's time is its own.
func TestStoreTimeIsBudgetedPerTenant(t *testing.T) {
	now := time.Unix(1000, 0)
	at := func(sec float64) { now = time.Unix(1000, 0).Add(time.Duration(sec * float64(time.Second))) }
	b := newTimeBucket(1, 2*time.Second)
	b.now = func() time.Time { return now }
	b.last = now
	endA, _ := b.start()
	require.NotNil(t, endA)
	at(1.5)
	endB, _ := b.start()
	require.NotNil(t, endB, "1.5 s of the 2 s spent by the running query")
	at(2.5)
	end, wait := b.start()
	require.Nil(t, end, "the two running queries have spent 3.5 s")
	require.Positive(t, wait)
	endA()
	endB()
	at(3.5)
	end, wait = b.start()
	require.Nil(t, end, "in debt: 2 - 2.5 - 1 + 1 earned")
	require.InDelta(t, 1.5, wait.Seconds(), 0.01, "until the debt is earned back, and a second")
	at(5)
	end, _ = b.start()
	require.NotNil(t, end)
	end()

	l := newTenantLimits(LimitsConfig{MaxConcurrent: 4, MaxQueued: 0, StoreTimePerSecond: 0.001, StoreTimeBurst: time.Millisecond, Replicas: 1})
	release, stop, refused := l.admit(context.Background(), "acme")
	require.Nil(t, refused)
	bucket := l.of("acme").time
	bucket.now = func() time.Time { return time.Now().Add(5 * time.Millisecond) } // the query ran 5 ms
	stop()
	release()
	_, _, refused = l.admit(context.Background(), "acme")
	require.NotNil(t, refused)
	require.Equal(t, "store_time", refused.reason)
	require.GreaterOrEqual(t, refused.retryAfter, time.Second)
	release, _, refused = l.admit(context.Background(), "globex")
	require.Nil(t, refused, "globex's time is its own")
	release()
}

// An answer is held in pooled chunks and scanned as it arrives: the counts
// match the whole answer's, a piece boundary anywhere (inside a string, an
// escape, a key, a stat) changes nothing, and a body cut short is an
// error, never a shorter answer passed on.
func TestAnswersAreScannedInPieces(t *testing.T) {
	body := []byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"x\"]}"},"values":[[1,"2"]]},{},{"metric":{"b":"\\"}}]},"stats":{"seriesFetched":"1234","executionTimeMsec":56}}`)
	whole := scanAnswer(epRange, body)
	require.Equal(t, answerCounts{series: 3, seriesFetched: 1234, execMS: 56}, whole)
	for cut := 1; cut < len(body); cut++ {
		for step := 1; step <= 3; step++ {
			sc := newAnswerScanner(epRange)
			sc.feed(body[:cut])
			for i := cut; i < len(body); i += step {
				sc.feed(body[i:min(i+step, len(body))])
			}
			require.Equal(t, whole, sc.counts(), "cut at %d, then pieces of %d", cut, step)
		}
	}
	ts := newTestServer(t, nil)
	_, _, err := ts.readAnswer(&http.Response{Body: io.NopCloser(io.MultiReader(strings.NewReader(`{"data":[`), errReader{io.ErrUnexpectedEOF})), ContentLength: -1},
		"acme", newAnswerScanner(epLabels))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	held, _ := ts.answers.inUse("acme")
	require.Zero(t, held)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
