package tenantqueryextension

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every allowlisted endpoint, by GET and by POST, carrying every way a
// client could try to set the scope itself: the store sees exactly one
// extra_label, the caller's, in the URL, and only allowlisted parameters.
func TestForwardedRequestsAreHeldToTheTenant(t *testing.T) {
	ts := newTestServer(t, nil)
	hostile := "extra_label=tenant_id%3Dglobex&extra_label=tenant_id=globex&extra_filters[]=%7Btenant_id%3D%22globex%22%7D" +
		"&extra_filters=%7Btenant_id%3D%22globex%22%7D&%65xtra_label=tenant_id=globex&EXTRA_LABEL=tenant_id=globex&Extra_Label=x" +
		"&extra_label%5B%5D=tenant_id=globex&extra_label%20=tenant_id=globex&+extra_label=tenant_id=globex"
	for _, path := range []string{"/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels",
		"/api/v1/label/hw.name/values", "/api/v1/label/__name__/values", "/prometheus/api/v1/query"} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			params := "query=up&match[]=up&start=1&end=2&step=15&" + hostile
			target, body := path+"?"+params, ""
			if method == http.MethodPost {
				target, body = path+"?"+hostile, params
			}
			rec := ts.do(method, target, body, bearer(keyAcme))
			require.Equal(t, http.StatusOK, rec.Code, "%s %s: %s", method, path, rec.Body)
			calls := ts.store.taken()
			require.Len(t, calls, 1)
			c := calls[0]
			require.Equal(t, method, c.method)
			require.Equal(t, strings.TrimPrefix(path, "/prometheus"), c.path, "the store gets the canonical path")
			urlScope, bodyScope, names := scopeOf(t, c)
			require.Equal(t, []string{"tenant_id=acme"}, urlScope, "%s %s", method, path)
			require.Empty(t, bodyScope)
			ep, _, _ := matchEndpoint(path)
			for name := range names {
				require.True(t, name == "extra_label" || ep.params[name], "%s %s forwarded %q", method, path, name)
			}
			require.NotContains(t, c.rawQuery+c.body, "globex")
			require.NotContains(t, c.rawQuery+c.body, "extra_filters")
		}
	}
}

func TestAllowedParametersPassAndLimitsAreApplied(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Limits.QueryTimeout = 10 * time.Second; c.Limits.MaxSeries = 100 })
	rec := ts.do(http.MethodGet, "/api/v1/query_range?query=sum(hw.power)&start=10&end=20&step=5&timeout=1m&nocache=1", "", bearer(keyAcme))
	require.Equal(t, http.StatusOK, rec.Code)
	q, _ := url.ParseQuery(ts.store.taken()[0].rawQuery)
	require.Equal(t, "sum(hw.power)", q.Get("query"), "a dotted MetricsQL name goes through untouched")
	require.Equal(t, []string{"10", "20", "5", "1"}, []string{q.Get("start"), q.Get("end"), q.Get("step"), q.Get("nocache")})
	require.Equal(t, "10", q.Get("timeout"), "a client's timeout may only shorten limits.query_timeout")

	ts.do(http.MethodGet, "/api/v1/query?query=up&timeout=2.5", "", bearer(keyAcme))
	q, _ = url.ParseQuery(ts.store.taken()[0].rawQuery)
	require.Equal(t, "2.5", q.Get("timeout"))

	for sent, want := range map[string]string{"": "100", "0": "100", "5": "5", "100000": "100"} {
		ts.do(http.MethodGet, "/api/v1/series?match[]=up&limit="+sent, "", bearer(keyAcme))
		q, _ = url.ParseQuery(ts.store.taken()[0].rawQuery)
		require.Equal(t, want, q.Get("limit"), "limit=%q", sent)
	}
	for _, bad := range []string{"/api/v1/query?query=up&timeout=never", "/api/v1/query?query=up&timeout=-1", "/api/v1/series?limit=-3", "/api/v1/query?query=%zz"} {
		rec := ts.do(http.MethodGet, bad, "", bearer(keyAcme))
		require.Equal(t, http.StatusBadRequest, rec.Code, bad)
		require.Contains(t, rec.Body.String(), `"status":"error"`)
	}
	require.Empty(t, ts.store.taken())
}

// Paths outside the allowlist, however spelled, never reach the store.
func TestEverythingElseIsRefused(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, p := range []string{
		"/api/v1/write", "/api/v1/import", "/api/v1/import/prometheus", "/api/v1/import/csv", "/api/v1/import/native",
		"/api/v1/admin/tsdb/delete_series?match[]=up", "/api/v1/admin/tsdb/snapshot", "/snapshot/create", "/snapshot/delete_all",
		"/api/v1/export?match[]=up", "/api/v1/export/native", "/federate?match[]=up", "/api/v1/metadata", "/api/v1/series/count",
		"/api/v1/status/tsdb", "/api/v1/status/top_queries", "/api/v1/status/active_queries", "/api/v1/status/buildinfo",
		"/prometheus/api/v1/write", "/prometheus/api/v1/admin/tsdb/delete_series", "/prometheus/api/v1/export",
		"/select/0/prometheus/api/v1/query?query=up", "/select/1/prometheus/api/v1/query", "/insert/0/prometheus/api/v1/write",
		"/prometheus/prometheus/api/v1/query", "/opentelemetry/v1/metrics", "/metrics", "/flags", "/-/reload", "/internal/resetRollupResultCache",
		"//api/v1/query", "/api//v1/query", "/api/v1/query/", "/api/v1/./query", "/api/v1/x/../query", "/api/v1/%71uery",
		"/api%2Fv1%2Fquery", "/API/V1/QUERY", "/api/v1/Query", "/api/v1/query%00", "/api/v1/query;x", "/api/v1/label/../../admin/tsdb/values",
		"/api/v1/label/a%2Fb/values", "/api/v1/label//values", "/api/v1/label/a/b/values", "/vmui/../api/v1/export", "/graph",
	} {
		for _, header := range []http.Header{bearer(keyAcme), nil} {
			rec := ts.do(http.MethodGet, p, "", header)
			require.Contains(t, []int{http.StatusNotFound, http.StatusBadRequest}, rec.Code, p)
		}
	}
	for _, method := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
		rec := ts.do(method, "/api/v1/query?query=up", "", bearer(keyAcme))
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	}
	require.Empty(t, ts.store.taken(), "nothing outside the allowlist reaches the store")
}

func TestKeysAndScopes(t *testing.T) {
	ts := newTestServer(t, nil)
	basic := func(user, pass string) http.Header {
		r, _ := http.NewRequest(http.MethodGet, "/", http.NoBody)
		r.SetBasicAuth(user, pass)
		return r.Header
	}
	for name, h := range map[string]http.Header{
		"bearer":             bearer(keyAcme),
		"second key":         bearer(keyAcme2),
		"lower-case scheme":  {"Authorization": {"bearer " + keyAcme}},
		"basic (grafana)":    basic("acme", keyAcme),
		"basic, other user":  basic("anything", keyAcme),
		"basic, empty users": basic("", keyAcme),
	} {
		rec := ts.do(http.MethodGet, "/api/v1/query?query=up", "", h)
		require.Equal(t, http.StatusOK, rec.Code, name)
		urlScope, _, _ := scopeOf(t, ts.store.taken()[0])
		require.Equal(t, []string{"tenant_id=acme"}, urlScope, name)
	}
	rec := ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyGlobex))
	require.Equal(t, http.StatusOK, rec.Code)
	urlScope, _, _ := scopeOf(t, ts.store.taken()[0])
	require.Equal(t, []string{"tenant_id=globex"}, urlScope)

	for name, h := range map[string]http.Header{
		"none":                nil,
		"ingest token":        bearer(tokenAcme),
		"ingest token, basic": basic("acme", tokenAcme),
		"unknown":             bearer("read-key-acme-012345678"),
		"hash as key":         bearer(hashOf(keyAcme)),
		"key as basic user":   basic(keyAcme, ""),
		"two headers":         {"Authorization": {"Bearer " + keyAcme, "Bearer " + keyGlobex}},
		"no scheme":           {"Authorization": {keyAcme}},
		"bad base64":          {"Authorization": {"Basic %%%"}},
		"key as api_key":      {"X-Api-Key": {keyAcme}},
	} {
		rec := ts.do(http.MethodGet, "/api/v1/query?query=up", "", h)
		require.Equal(t, http.StatusUnauthorized, rec.Code, name)
		require.Equal(t, `Bearer realm="otelcol-gpu"`, rec.Header().Get("WWW-Authenticate"),
			"never a Basic challenge: a browser would keep the key and send it like a cookie without SameSite")
	}
	rec = ts.do(http.MethodGet, "/api/v1/query?query=up", "", http.Header{"Sec-Fetch-Mode": {"navigate"}})
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.NotContains(t, rec.Header().Get("WWW-Authenticate"), "Basic", "no password dialog on a navigation either")
	for _, inURL := range []string{"?query=up&key=" + keyAcme, "?query=up&api_key=" + keyAcme, "?query=up&access_token=" + keyAcme} {
		require.Equal(t, http.StatusUnauthorized, ts.do(http.MethodGet, "/api/v1/query"+inURL, "", nil).Code, "keys are never taken from a URL")
	}
	require.Empty(t, ts.store.taken())

	// Revocation without restart.
	require.NoError(t, os.WriteFile(ts.credFile, []byte(credentialsYAML("acme-grafana")), 0o600))
	require.Eventually(t, func() bool {
		return ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code == http.StatusUnauthorized
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme2)).Code)

	// Keys never reach the logs.
	for _, e := range ts.logs.All() {
		for _, secret := range []string{keyAcme, keyAcme2, keyGlobex, tokenAcme} {
			require.NotContains(t, e.Message, secret)
			for _, f := range e.Context {
				require.NotContains(t, f.String, secret)
			}
		}
	}
}

func TestStoreShapesClusterAndMimir(t *testing.T) {
	cluster := newTestServer(t, func(c *Config) {
		c.Store.ClientConfig.Endpoint = "http://vmselect:8481/select/{account}/prometheus"
		c.Store.TenantLabel = ""
		c.Store.Tenants = map[string]map[string]string{"acme": {"account": "12"}, "globex": {"account": "13"}}
	})
	rec := cluster.do(http.MethodGet, "/api/v1/query?query=up&extra_label=tenant_id=globex", "", bearer(keyAcme))
	require.Equal(t, http.StatusOK, rec.Code)
	c := cluster.store.taken()[0]
	require.Equal(t, "/select/12/prometheus/api/v1/query", c.path)
	urlScope, _, _ := scopeOf(t, c)
	require.Empty(t, urlScope, "the account in the path is the scope; the client's extra_label is gone")

	mimir := newTestServer(t, func(c *Config) {
		c.Store.ClientConfig.Endpoint = "http://mimir:8080/prometheus"
		c.Store.TenantLabel = ""
		c.Store.TenantHeaders = map[string]string{"X-Scope-OrgID": "{tenant}"}
	})
	h := bearer(keyAcme)
	h.Set("X-Scope-OrgID", "globex")
	h.Set("X-Forwarded-For", "10.0.0.1")
	rec = mimir.do(http.MethodPost, "/api/v1/query", "query=up", h)
	require.Equal(t, http.StatusOK, rec.Code)
	c = mimir.store.taken()[0]
	require.Equal(t, "/prometheus/api/v1/query", c.path)
	require.Equal(t, []string{"acme"}, c.header.Values("X-Scope-Orgid"), "the org id is the key's tenant, never the client's header")
	require.Empty(t, c.header.Get("X-Forwarded-For"), "no client header reaches the store")
	require.Empty(t, c.header.Get("Authorization"), "the customer's key never reaches the store")
}

func TestStoreAnswersPassThroughAndAreAudited(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.store.answer = func(c storeCall) (int, string) {
		if strings.Contains(c.rawQuery, "bad") {
			return http.StatusUnprocessableEntity, `{"status":"error","errorType":"bad_data","error":"cannot parse"}`
		}
		if c.path == "/api/v1/series" {
			return http.StatusOK, `{"status":"success","data":[{"__name__":"a"},{"__name__":"b"},{"__name__":"c"}]}`
		}
		return http.StatusServiceUnavailable, `{"status":"error"}`
	}
	rec := ts.do(http.MethodGet, "/api/v1/series?match[]=up&extra_label=x", "", bearer(keyAcme))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `"__name__":"c"`)
	require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	require.Equal(t, http.StatusUnprocessableEntity, ts.do(http.MethodGet, "/api/v1/query?query=bad", "", bearer(keyAcme)).Code)
	require.Equal(t, http.StatusServiceUnavailable, ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Code)

	lines := ts.logs.FilterMessage("query").All()
	require.Len(t, lines, 3)
	f := lines[0].ContextMap()
	require.Equal(t, "acme", f["tenant"])
	require.Equal(t, "acme-grafana", f["key_id"])
	require.Equal(t, "series", f["endpoint"])
	require.Equal(t, "/api/v1/series", f["path"])
	require.Equal(t, int64(200), f["status"])
	require.Equal(t, int64(3), f["series"])
	require.Equal(t, int64(1), f["dropped_params"])
	require.Contains(t, f, "duration")
	require.Equal(t, int64(422), lines[1].ContextMap()["status"])
}

func TestScanAnswer(t *testing.T) {
	require.Equal(t, answerCounts{series: 2}, scanAnswer(epQuery, []byte(`{"status":"success","data":{"resultType":"matrix","result":[{},{}]}}`)))
	require.Equal(t, answerCounts{series: 0}, scanAnswer(epQuery, []byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`)))
	require.Equal(t, answerCounts{series: 3}, scanAnswer(epLabels, []byte(`{"status":"success","data":["a","b","c"]}`)))
	require.Equal(t, answerCounts{series: -1}, scanAnswer(epLabels, []byte(`not json`)))
}

// The stats VictoriaMetrics v1.151.0 writes (app/vmselect/prometheus,
// query_response.qtpl and query_range_response.qtpl: seriesFetched a
// string "for historical reasons", executionTimeMsec a number), byte for
// byte, and what is not the root's stats.
func TestScanAnswerReadsTheStoresStats(t *testing.T) {
	instant := `{"status":"success","data":{"resultType":"vector","result":[` +
		`{"metric":{"__name__":"hw.gpu.utilization","tenant_id":"acme"},"value":[1796165685,"63.8"]},` +
		`{"metric":{"__name__":"hw.gpu.utilization","tenant_id":"acme","stats":"x"},"value":[1796165685,"12"]}]},` +
		`"stats":{"seriesFetched": "17","executionTimeMsec":42}}`
	require.Equal(t, answerCounts{series: 2, seriesFetched: 17, execMS: 42}, scanAnswer(epQuery, []byte(instant)))
	matrix := `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"1"],[2,"2"]]}]},` +
		`"stats":{"seriesFetched": "1024","executionTimeMsec":0}}`
	require.Equal(t, answerCounts{series: 1, seriesFetched: 1024}, scanAnswer(epRange, []byte(matrix)))

	for name, body := range map[string]string{
		"Prometheus, no stats": `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}`,
		"stats in a label":     `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"stats":"{\"seriesFetched\":\"9\"}"},"value":[1,"1"]}]}}`,
		"stats below the root": `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"],"stats":{"seriesFetched":"9","executionTimeMsec":9}}]}}`,
		"negative":             `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]},"stats":{"seriesFetched":"-9","executionTimeMsec":-9}}`,
		"not integers":         `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]},"stats":{"seriesFetched":"1e9","executionTimeMsec":1.5}}`,
		"over int64":           `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]},"stats":{"seriesFetched":"99999999999999999999","executionTimeMsec":null}}`,
		"objects, not numbers": `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]},"stats":{"seriesFetched":{"n":9},"executionTimeMsec":[9]}}`,
	} {
		require.Equal(t, answerCounts{series: 1}, scanAnswer(epQuery, []byte(body)), name)
	}
	labels := `{"status":"success","data":["a","b"],"stats":{"seriesFetched":"5"}}`
	require.Equal(t, answerCounts{series: 2, seriesFetched: 5}, scanAnswer(epLabels, []byte(labels)), "the same on any endpoint that has them")
}

func BenchmarkScanAnswer(b *testing.B) {
	var body strings.Builder
	body.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
	for i := range 16 {
		if i > 0 {
			body.WriteString(",")
		}
		body.WriteString(`{"metric":{"host.name":"vm-1","hw.name":"nvidia0"},"values":[`)
		for j := range 60 {
			if j > 0 {
				body.WriteString(",")
			}
			body.WriteString(`[1796165685,"63.8"]`)
		}
		body.WriteString("]}")
	}
	body.WriteString(`]},"stats":{"seriesFetched": "16","executionTimeMsec":3}}`)
	data := []byte(body.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if scanAnswer(epRange, data) != (answerCounts{series: 16, seriesFetched: 16, execMS: 3}) {
			b.Fatal("count")
		}
	}
}

// scanAnswer agrees with encoding/json on whatever the fuzzer makes up
// that is an API-shaped answer.
func FuzzScanAnswer(f *testing.F) {
	for _, seed := range []string{
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"]"},"values":[[1,"2"]]},{}]}}`,
		`{"status":"success","data":["a","b\"]","c"]}`,
		`{"data":{"result":[]},"stats":{"result":[1,2]}}`,
		`{"status":"success","data":[{"__name__":"x","data":"y"},{"result":[1]}]}`,
		`{"data":{"result":[1,true,null,-2.5e3,{"result":[1,2,3]},[[]]]}}`,
		`{"data":{"x":{"result":[1,2]},"result":[1]}}`,
		`{"data":{"result":[{"stats":{"seriesFetched":"3"}}]},"stats":{"seriesFetched": "12","executionTimeMsec":7}}`,
		`not json`, `{"data":{}}`, `[]`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		// The reference: encoding/json, with keys matched exactly (as the
		// store writes them) and each key once.
		if !json.Valid([]byte(body)) {
			return
		}
		for _, k := range []string{`"data"`, `"result"`, `"stats"`, `"seriesFetched"`, `"executionTimeMsec"`} {
			if strings.Count(body, k) > 1 {
				return
			}
		}
		field := func(raw json.RawMessage, key string) (json.RawMessage, bool) {
			var m map[string]json.RawMessage
			if json.Unmarshal(raw, &m) != nil {
				return nil, false
			}
			v, ok := m[key]
			return v, ok
		}
		// Either stat may be a string or a number (the store writes
		// seriesFetched as a string).
		stat := func(key string) int64 {
			stats, _ := field(json.RawMessage(body), "stats")
			raw, _ := field(stats, key)
			var s string
			if json.Unmarshal(raw, &s) == nil {
				raw = json.RawMessage(s)
			}
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil || n < 0 {
				return 0
			}
			return n
		}
		for _, ep := range []*endpoint{epQuery, epLabels} {
			arr, ok := field(json.RawMessage(body), "data")
			if ok && ep.result {
				arr, ok = field(arr, "result")
			}
			var elems []json.RawMessage
			if !ok || !strings.HasPrefix(strings.TrimSpace(string(arr)), "[") || json.Unmarshal(arr, &elems) != nil {
				continue // not an answer of this shape; the counts are not used
			}
			got := scanAnswer(ep, []byte(body))
			require.Equal(t, len(elems), got.series, "%s", body)
			// Read in pieces (as answers arrive), the same counts.
			sc := newAnswerScanner(ep)
			for i := 0; i < len(body); i += 5 {
				sc.feed([]byte(body[i:min(i+5, len(body))]))
			}
			require.Equal(t, got, sc.counts(), "in pieces: %s", body)
			if strings.Contains(body, `\`) {
				continue // an escaped stat is not one the store writes
			}
			require.Equal(t, stat("seriesFetched"), got.seriesFetched, "%s", body)
			require.Equal(t, stat("executionTimeMsec"), got.execMS, "%s", body)
		}
	})
}

func TestTraceIsNotForwarded(t *testing.T) {
	ts := newTestServer(t, nil)
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up&trace=1", "", bearer(keyAcme)).Code)
	_, _, names := scopeOf(t, ts.store.taken()[0])
	require.NotContains(t, names, "trace")
}
