//go:build e2e

package readpath

import (
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testLimits floods the store with acme's expensive queries while globex
// asks its dashboard's: acme is held to its limits (429 with Retry-After),
// globex gets every answer. Latencies are logged, not asserted (make bench
// measures).
func testLimits(t *testing.T, e *env) {
	heavy := q(`count(count_over_time({__name__=~".+"}[1h:1s]))`)
	var mu sync.Mutex
	statuses := map[int]int{}
	retryAfter := true
	var wg sync.WaitGroup
	for range 120 {
		wg.Go(func() {
			a := e.read(request{target: "/api/v1/query?" + heavy, header: bearer(e.secrets["acme-key"])})
			mu.Lock()
			defer mu.Unlock()
			statuses[a.status]++
			if a.status == http.StatusTooManyRequests {
				if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 {
					retryAfter = false
				}
			}
		})
	}
	var globex []time.Duration
	for range 20 {
		start := time.Now()
		a := e.read(request{target: "/api/v1/query?" + q("max by (hw.name) (hw.gpu.utilization)"), header: bearer(e.secrets["globex-key"])})
		globex = append(globex, time.Since(start))
		require.Equal(t, http.StatusOK, a.status, "globex's query while acme floods: %s", a.body)
	}
	wg.Wait()
	t.Logf("acme's flood: statuses %v; globex's 20 queries meanwhile: all 200, median %s, max %s", statuses, median(globex), slicesMax(globex))
	require.Positive(t, statuses[http.StatusTooManyRequests], "acme must be held to its limits")
	require.True(t, retryAfter, "every 429 says when to retry")
	require.Zero(t, statuses[http.StatusInternalServerError]+statuses[http.StatusBadGateway])

	// The gateway's own counters say who was refused.
	resp, err := http.Get(e.metrics)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	refused := regexp.MustCompile(`otelcol_tenant_query_refused\{[^}]*reason="(rate_limited|concurrency)"[^}]*tenant="(\w+)"[^}]*\} (\d+)`).FindAllStringSubmatch(string(body), -1)
	require.NotEmpty(t, refused, "%s", body)
	for _, m := range refused {
		require.Equal(t, "acme", m[2], "only acme was over its limits")
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func slicesMax(d []time.Duration) time.Duration {
	m := d[0]
	for _, v := range d {
		m = max(m, v)
	}
	return m
}
