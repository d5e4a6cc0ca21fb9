//go:build e2e

package readpath

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadPath runs one store of each kind and one gateway for every part:
// each tenant reading its own data and events, the attacks, the limits and
// the browser.
func TestReadPath(t *testing.T) {
	e := newEnv(t)
	e.seed()
	t.Run("each tenant reads its own series", func(t *testing.T) { testOwnData(t, e) })
	t.Run("attacks", func(t *testing.T) { testAttacks(t, e) })
	// Before the events' reads: it checks no globex read was ever refused,
	// and testOwnEvents reads faster than a tenant's rate (and retries).
	t.Run("one tenant's heavy queries do not take another's", func(t *testing.T) { testLimits(t, e) })
	t.Run("each tenant reads its own events", func(t *testing.T) { testOwnEvents(t, e) })
	t.Run("events attacks", func(t *testing.T) { testEventsAttacks(t, e) })
	t.Run("events page", func(t *testing.T) { testEventsPageServed(t, e) })
	t.Run("browser", func(t *testing.T) { testBrowser(t, e) })
}

// readCase is one read through an allowlisted endpoint, and what its data
// must be for tenant.
type readCase struct {
	path   string
	params url.Values
	check  func(t *testing.T, tenant string, data json.RawMessage)
}

func (e *env) readCases() []readCase {
	at := strconv.FormatInt(e.sent.Unix(), 10)
	from := strconv.FormatInt(e.sent.Add(-50*60e9).Unix(), 10)
	return []readCase{
		{"/api/v1/query", url.Values{"query": {"count(last_over_time(hw.gpu.utilization[1h]))"}, "time": {at}}, func(t *testing.T, tenant string, data json.RawMessage) {
			var d struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			}
			require.NoError(t, json.Unmarshal(data, &d))
			require.Len(t, d.Result, 1)
			require.Equal(t, strconv.Itoa(gpusOf(tenant)), d.Result[0].Value[1], "GPUs counted for %s", tenant)
		}},
		{"/api/v1/query_range", url.Values{"query": {"hw.gpu.utilization"}, "start": {from}, "end": {at}, "step": {"60"}}, func(t *testing.T, tenant string, data json.RawMessage) {
			requireOwnSeries(t, tenant, data, "result", gpusOf(tenant))
		}},
		{"/api/v1/series", url.Values{"match[]": {"hw.power"}, "start": {from}, "end": {at}}, func(t *testing.T, tenant string, data json.RawMessage) {
			var series []map[string]string
			require.NoError(t, json.Unmarshal(data, &series))
			require.Len(t, series, gpusOf(tenant))
			for _, s := range series {
				require.Equal(t, tenant, s["tenant_id"])
				require.Contains(t, fleets[tenant].vms, s["host.name"])
			}
		}},
		{"/api/v1/labels", url.Values{"start": {from}, "end": {at}}, func(t *testing.T, tenant string, data json.RawMessage) {
			var names []string
			require.NoError(t, json.Unmarshal(data, &names))
			require.Subset(t, names, []string{"__name__", "host.name", "hw.name", "tenant_id"})
		}},
		{"/api/v1/label/host.name/values", url.Values{"start": {from}, "end": {at}}, func(t *testing.T, tenant string, data json.RawMessage) {
			var values []string
			require.NoError(t, json.Unmarshal(data, &values))
			want := slices.Clone(fleets[tenant].vms)
			sort.Strings(want)
			require.Equal(t, want, values)
		}},
		{"/api/v1/label/tenant_id/values", url.Values{"start": {from}, "end": {at}}, func(t *testing.T, tenant string, data json.RawMessage) {
			var values []string
			require.NoError(t, json.Unmarshal(data, &values))
			require.Equal(t, []string{tenant}, values)
		}},
	}
}

// requireOwnSeries checks a query answer's series are n, all the tenant's.
func requireOwnSeries(t *testing.T, tenant string, data json.RawMessage, field string, n int) {
	t.Helper()
	var d map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &d))
	var result []struct {
		Metric map[string]string `json:"metric"`
	}
	require.NoError(t, json.Unmarshal(d[field], &result))
	require.Len(t, result, n)
	for _, s := range result {
		require.Equal(t, tenant, s.Metric["tenant_id"])
		require.Contains(t, fleets[tenant].vms, s.Metric["host.name"])
	}
}

func testOwnData(t *testing.T, e *env) {
	keys := map[string][]string{"acme": {"acme-key", "acme-key-2"}, "globex": {"globex-key"}}
	for tenant, names := range keys {
		for _, name := range names {
			for authName, auth := range map[string]http.Header{"bearer": bearer(e.secrets[name]), "basic": basic(e.secrets[name])} {
				for _, rc := range e.readCases() {
					for _, method := range []string{http.MethodGet, http.MethodPost} {
						r := request{method: method, target: rc.path + "?" + rc.params.Encode(), header: auth}
						if method == http.MethodPost {
							r.target, r.form = rc.path, rc.params.Encode()
						}
						a := e.readPatiently(r)
						data := apiData(t, a)
						rc.check(t, tenant, data)
						// Exactly what the store answers for that tenant.
						direct := apiData(t, e.storeDirect(http.MethodGet, rc.path, rc.params, tenant))
						require.JSONEq(t, string(direct), string(data), "%s %s %s (%s)", tenant, method, rc.path, authName)
						require.NotContains(t, string(a.body), otherTenant(tenant))
					}
				}
			}
		}
	}
	// vmui's prefix reaches the same endpoints, held the same way.
	a := e.readPatiently(request{target: "/prometheus/api/v1/label/tenant_id/values", header: bearer(e.secrets["globex-key"])})
	require.JSONEq(t, `["globex"]`, string(apiData(t, a)))
}

func otherTenant(tenant string) string {
	if tenant == "acme" {
		return "globex"
	}
	return "acme"
}

// requireHeld checks an answer is refused, or holds acme's data and nothing
// of globex's: no globex label value, host or series anywhere in it.
func requireHeld(t *testing.T, name string, a answer) {
	t.Helper()
	if a.status != http.StatusOK {
		require.GreaterOrEqual(t, a.status, 400, "%s: %d %s", name, a.status, a.body)
		require.Less(t, a.status, 500, "%s: %d %s", name, a.status, a.body)
		return
	}
	body := string(a.body)
	require.NotContains(t, body, "globex", "%s leaked another tenant's data: %s", name, body)
	for _, s := range []string{`"tenant_id":"`, `"tenant.id":"`} {
		for _, part := range strings.Split(body, s)[1:] {
			require.True(t, strings.HasPrefix(part, `acme"`), "%s: a series of another tenant: %s", name, body)
		}
	}
}
