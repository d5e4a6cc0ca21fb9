package tenantqueryextension

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRateLimitIsPerTenant(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Limits.QueriesPerSecond = 1; c.Limits.Burst = 3 })
	for i := range 3 {
		require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code, "burst query %d", i)
	}
	rec := ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme2)) // the same tenant's other key
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), "rate limit")
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyGlobex)).Code, "another tenant is not limited by acme's queries")
	require.Len(t, ts.store.taken(), 4)
}

// One tenant's queries that hold the store cannot take another tenant's
// slots: acme's extra query waits in its queue (max_queued: 1), the next is
// refused at once, and globex's go through while all of acme's slots are
// busy.
func TestConcurrencyIsPerTenant(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.Limits.MaxConcurrent, c.Limits.MaxQueued, c.Limits.QueueWait = 2, 1, time.Minute
		c.ServerConfig.WriteTimeout = 2 * time.Minute
	})
	release := make(chan struct{})
	ts.store.answer = func(c storeCall) (int, string) {
		if strings.HasSuffix(c.rawQuery, "acme") {
			<-release
		}
		return http.StatusOK, `{"status":"success","data":{"resultType":"vector","result":[]}}`
	}
	codes := make(chan int, 3)
	for range 2 {
		go func() { codes <- ts.do(http.MethodGet, "/api/v1/query?query=heavy", "", bearer(keyAcme)).Code }()
	}
	require.Eventually(t, func() bool { return ts.limits.inFlight("acme") == 2 }, 5*time.Second, time.Millisecond)
	go func() { codes <- ts.do(http.MethodGet, "/api/v1/query?query=queued", "", bearer(keyAcme)).Code }()
	require.Eventually(t, func() bool { return ts.limits.of("acme").waiting.Load() == 1 }, 5*time.Second, time.Millisecond)

	rec := ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme))
	require.Equal(t, http.StatusTooManyRequests, rec.Code, "over max_concurrent + max_queued: refused without waiting")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), "concurrency limit")
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyGlobex)).Code)
	require.Empty(t, codes, "acme's queries are still held")

	close(release)
	for range 3 {
		require.Equal(t, http.StatusOK, <-codes)
	}
	require.Equal(t, 0, ts.limits.inFlight("acme"))
}

func TestQueueWaitEnds(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Limits.MaxConcurrent, c.Limits.QueueWait = 1, 20*time.Millisecond })
	release := make(chan struct{})
	ts.store.answer = func(storeCall) (int, string) {
		<-release
		return http.StatusOK, `{"status":"success","data":{"resultType":"vector","result":[]}}`
	}
	done := make(chan int)
	go func() { done <- ts.do(http.MethodGet, "/api/v1/query?query=heavy", "", bearer(keyAcme)).Code }()
	require.Eventually(t, func() bool { return ts.limits.inFlight("acme") == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, http.StatusTooManyRequests, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code, "after queue_wait")
	close(release)
	require.Equal(t, http.StatusOK, <-done)
}
