package tenantqueryextension

import (
	"net/http"
	"sync"
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
// slots: acme's extra queries wait and are refused, globex's go through
// while all of acme's slots are busy.
func TestConcurrencyIsPerTenant(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Limits.MaxConcurrent = 2; c.Limits.QueueWait = 50 * time.Millisecond })
	release := make(chan struct{})
	ts.store.answer = func(c storeCall) (int, string) {
		if c.rawQuery != "" && c.rawQuery[len(c.rawQuery)-4:] == "acme" {
			<-release
		}
		return http.StatusOK, `{"status":"success","data":{"resultType":"vector","result":[]}}`
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=heavy", "", bearer(keyAcme)).Code)
		})
	}
	require.Eventually(t, func() bool { return ts.limits.inFlight("acme") == 2 }, 5*time.Second, time.Millisecond)
	rec := ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme))
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), "concurrency limit")
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyGlobex)).Code)
	close(release)
	wg.Wait()
	require.Equal(t, 0, ts.limits.inFlight("acme"))
}
