//go:build e2e

package readpath

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The customers' GPU events API: the event store's LogsQL read endpoints on
// the read listener, each request held by the store to the key's tenant.

// record is one answer line of /select/logsql/query.
type record map[string]string

// records reads a /select/logsql/query answer: one JSON object a line.
func records(t *testing.T, a answer) []record {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	var out []record
	sc := bufio.NewScanner(bytes.NewReader(a.body))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "%s", sc.Bytes())
		out = append(out, r)
	}
	require.NoError(t, sc.Err())
	return out
}

// xidKey is what a record says about its XID event, for comparing sets.
func xidKey(vm, id, name, code, sev, desc string) string {
	return strings.Join([]string{vm, id, name, code, sev, desc}, "|")
}

// wantXIDs is the set of tenant's XID events as records would say them.
func wantXIDs(tenant string) []string {
	var out []string
	for _, x := range xidEvents[tenant] {
		out = append(out, xidKey(x.vm, gpuID(x.vm, x.gpu), gpuName(x.gpu), strconv.Itoa(x.code), x.severity(), x.desc))
	}
	sort.Strings(out)
	return out
}

func gotXIDs(recs []record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, xidKey(r["host.name"], r["hw.id"], r["hw.name"], r["nvidia.xid.code"], r["severity_text"], r["nvidia.xid.description"]))
	}
	sort.Strings(out)
	return out
}

// requireOwnRecords checks recs are exactly tenant's XID records: every
// one filed under tenant, from its VMs, and all of them.
func requireOwnRecords(t *testing.T, tenant string, recs []record, msgAndArgs ...any) {
	t.Helper()
	for _, r := range recs {
		require.Equal(t, tenant, r["tenant_id"], msgAndArgs...)
		require.Contains(t, fleets[tenant].vms, r["host.name"], msgAndArgs...)
		// The gateway's tenant processor sets the resource's tenant.id (a
		// stream field); the store's extra_fields the record's tenant_id.
		require.Contains(t, r["_stream"], `tenant.id="`+tenant+`"`, msgAndArgs...)
	}
	require.Equal(t, wantXIDs(tenant), gotXIDs(recs), msgAndArgs...)
}

// eventsWindow is start and end around the seeded records.
func (e *env) eventsWindow() url.Values {
	return url.Values{
		"start": {e.sent.Add(-2 * time.Hour).Format(time.RFC3339)},
		"end":   {e.sent.Add(5 * time.Minute).Format(time.RFC3339)},
	}
}

// session signs in with key through the login form, as a browser does, and
// returns the session cookie as a request header.
func (e *env) session(t *testing.T, key string) http.Header {
	t.Helper()
	a := e.read(request{method: http.MethodPost, target: "/login", form: "key=" + url.QueryEscape(key), noRedirect: true})
	require.Equal(t, http.StatusSeeOther, a.status, "%s", a.body)
	resp := http.Response{Header: a.header}
	cookies := resp.Cookies()
	require.Len(t, cookies, 1)
	return http.Header{"Cookie": {cookies[0].Name + "=" + cookies[0].Value}}
}

// eventsCase is one read of the events API and what its answer must be for
// tenant.
type eventsCase struct {
	path   string
	params url.Values
	check  func(t *testing.T, tenant string, a answer)
}

func (e *env) eventsCases() []eventsCase {
	win := e.eventsWindow()
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range win {
			v[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	values := func(t *testing.T, a answer) map[string]int {
		t.Helper()
		require.Equal(t, http.StatusOK, a.status, "%s", a.body)
		var d struct {
			Values []struct {
				Value string `json:"value"`
				Hits  int    `json:"hits"`
			} `json:"values"`
		}
		require.NoError(t, json.Unmarshal(a.body, &d), "%s", a.body)
		out := map[string]int{}
		for _, v := range d.Values {
			out[v.Value] += v.Hits
		}
		return out
	}
	vmCounts := func(tenant string) map[string]int {
		out := map[string]int{}
		for _, x := range xidEvents[tenant] {
			out[x.vm]++
		}
		return out
	}
	end := strconv.FormatInt(e.sent.Add(5*time.Minute).Unix(), 10)
	return []eventsCase{
		{"/select/logsql/query", with("query", "*"), func(t *testing.T, tenant string, a answer) {
			requireOwnRecords(t, tenant, records(t, a))
		}},
		{"/select/logsql/query", with("query", "nvidia.xid.code:=79"), func(t *testing.T, tenant string, a answer) {
			recs := records(t, a)
			require.Len(t, recs, 1)
			require.Equal(t, tenant, recs[0]["tenant_id"])
			require.Contains(t, fleets[tenant].vms, recs[0]["host.name"])
		}},
		{"/select/logsql/query", with("query", "* | stats by (tenant_id, host.name) count() n"), func(t *testing.T, tenant string, a answer) {
			got := map[string]int{}
			for _, r := range records(t, a) {
				require.Equal(t, tenant, r["tenant_id"])
				n, err := strconv.Atoi(r["n"])
				require.NoError(t, err)
				got[r["host.name"]] = n
			}
			require.Equal(t, vmCounts(tenant), got)
		}},
		{"/select/logsql/hits", with("query", "*", "step", "1h", "field", "tenant_id"), func(t *testing.T, tenant string, a answer) {
			require.Equal(t, http.StatusOK, a.status, "%s", a.body)
			var d struct {
				Hits []struct {
					Fields map[string]string `json:"fields"`
					Total  int               `json:"total"`
				} `json:"hits"`
			}
			require.NoError(t, json.Unmarshal(a.body, &d), "%s", a.body)
			require.Len(t, d.Hits, 1, "%s", a.body)
			require.Equal(t, map[string]string{"tenant_id": tenant}, d.Hits[0].Fields)
			require.Equal(t, len(xidEvents[tenant]), d.Hits[0].Total)
		}},
		{"/select/logsql/field_values", with("query", "*", "field", "tenant_id"), func(t *testing.T, tenant string, a answer) {
			require.Equal(t, map[string]int{tenant: len(xidEvents[tenant])}, values(t, a))
		}},
		{"/select/logsql/field_values", with("query", "*", "field", "host.name"), func(t *testing.T, tenant string, a answer) {
			require.Equal(t, vmCounts(tenant), values(t, a))
		}},
		{"/select/logsql/field_names", with("query", "*"), func(t *testing.T, tenant string, a answer) {
			names := values(t, a)
			for _, n := range []string{"tenant_id", "host.name", "hw.id", "hw.name", "nvidia.xid.code", "nvidia.xid.description", "severity_text", "_msg"} {
				require.Contains(t, names, n)
			}
		}},
		{"/select/logsql/streams", with("query", "*"), func(t *testing.T, tenant string, a answer) {
			streams := values(t, a)
			require.NotEmpty(t, streams)
			for s := range streams {
				require.Contains(t, s, `tenant.id="`+tenant+`"`)
			}
		}},
		{"/select/logsql/stream_field_names", with("query", "*"), func(t *testing.T, tenant string, a answer) {
			require.Contains(t, values(t, a), "tenant.id")
		}},
		{"/select/logsql/stream_field_values", with("query", "*", "field", "tenant.id"), func(t *testing.T, tenant string, a answer) {
			require.Equal(t, []string{tenant}, slices.Collect(maps.Keys(values(t, a))))
		}},
		{"/select/logsql/stats_query", url.Values{"query": {"* | stats by (tenant_id) count() n"}, "time": {end}}, func(t *testing.T, tenant string, a answer) {
			var d struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  [2]any            `json:"value"`
				} `json:"result"`
			}
			require.NoError(t, json.Unmarshal(apiData(t, a), &d))
			require.Len(t, d.Result, 1, "%s", a.body)
			require.Equal(t, tenant, d.Result[0].Metric["tenant_id"])
			require.Equal(t, strconv.Itoa(len(xidEvents[tenant])), d.Result[0].Value[1])
		}},
		{"/select/logsql/stats_query_range", with("query", "* | stats by (tenant_id) count() n", "step", "1h"), func(t *testing.T, tenant string, a answer) {
			var d struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Values [][2]any          `json:"values"`
				} `json:"result"`
			}
			require.NoError(t, json.Unmarshal(apiData(t, a), &d))
			total := 0
			for _, r := range d.Result {
				require.Equal(t, tenant, r.Metric["tenant_id"])
				for _, v := range r.Values {
					n, err := strconv.Atoi(v[1].(string))
					require.NoError(t, err)
					total += n
				}
			}
			require.Equal(t, len(xidEvents[tenant]), total)
		}},
	}
}

// testOwnEvents: each tenant reads its own XID records, with every key, by
// bearer, basic auth and browser session, GET and POST; exactly what the
// event store answers for that tenant.
func testOwnEvents(t *testing.T, e *env) {
	keys := map[string][]string{"acme": {"acme-key", "acme-key-2"}, "globex": {"globex-key"}}
	for tenant, names := range keys {
		direct, err := e.logs.Query(context.Background(), "*", tenant)
		require.NoError(t, err)
		var want []record
		for _, r := range direct {
			want = append(want, record(r))
		}
		requireOwnRecords(t, tenant, want, "the store itself, for %s", tenant)
		for _, name := range names {
			auths := map[string]http.Header{
				"bearer":  bearer(e.secrets[name]),
				"basic":   basic(e.secrets[name]),
				"session": e.session(t, e.secrets[name]),
			}
			for authName, auth := range auths {
				for _, ec := range e.eventsCases() {
					for _, method := range []string{http.MethodGet, http.MethodPost} {
						r := request{method: method, target: ec.path + "?" + ec.params.Encode(), header: auth}
						if method == http.MethodPost {
							r.target, r.form = ec.path, ec.params.Encode()
						}
						what := fmt.Sprintf("%s %s %s ?%s (%s, %s)", tenant, method, ec.path, ec.params.Encode(), name, authName)
						a := e.readPatiently(r)
						require.Equal(t, http.StatusOK, a.status, "%s: %s", what, a.body)
						ec.check(t, tenant, a)
						require.NotContains(t, string(a.body), otherTenant(tenant), what)
						if ec.path == "/select/logsql/query" && ec.params.Get("query") == "*" {
							require.ElementsMatch(t, want, records(t, a), "%s: what the store answers for %s", what, tenant)
						}
					}
				}
			}
		}
	}
}

// eventsAttack is one attempt by acme to read globex's events or to leave
// the allowlist. status: the refusal expected (a 4xx), or 0 for held
// (answered, with acme's data only); either: held or refused, whichever the
// gateway or the store prefers (ambiguous requests); all: the answer must
// be exactly acme's XID records (a parameter that must be dropped);
// rewrite: the query rewrites tenant_id in its output (the answer must
// still be acme's alone, by content).
type eventsAttack struct {
	name    string
	req     request
	status  int
	either  bool
	all     bool
	rewrite bool
}

// requireEventsHeld checks an answer is refused, or holds acme's events and
// nothing of globex's: no globex VM, GPU, stream or tenant anywhere in it.
func requireEventsHeld(t *testing.T, at eventsAttack, a answer) {
	t.Helper()
	if a.status != http.StatusOK {
		require.GreaterOrEqual(t, a.status, 400, "%s: %d %s", at.name, a.status, a.body)
		require.Less(t, a.status, 500, "%s: %d %s", at.name, a.status, a.body)
		return
	}
	body := string(a.body)
	require.NotContains(t, body, "globex", "%s leaked another tenant's events: %s", at.name, body)
	for _, marker := range []string{"Contained ECC error", "row remapping"} { // only globex's records say these
		require.NotContains(t, body, marker, "%s leaked another tenant's events: %s", at.name, body)
	}
	if !at.rewrite {
		for _, s := range []string{`"tenant_id":"`, `"tenant.id":"`, `tenant_id=\"`, `tenant.id=\"`} {
			for _, part := range strings.Split(body, s)[1:] {
				require.True(t, strings.HasPrefix(part, `acme`), "%s: an event of another tenant: %s", at.name, body)
			}
		}
	}
}

// testEventsAttacks runs the reading threats of shared/docs/tenancy.md
// against the events API: every one is refused or held to acme, and the
// event store holds the same records afterwards.
func testEventsAttacks(t *testing.T, e *env) {
	acme := bearer(e.secrets["acme-key"])
	const lq = "/select/logsql/query"
	star := url.Values{"query": {"*"}}.Encode()
	qs := func(query string) string { return url.Values{"query": {query}}.Encode() }
	enc := url.QueryEscape
	globexJSON := `{"tenant_id":"globex"}`
	withHeaders := func(kv ...string) http.Header {
		h := bearer(e.secrets["acme-key"])
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	get := func(target string) request { return request{target: target, header: acme} }
	post := func(target, form string) request {
		return request{method: http.MethodPost, target: target, form: form, header: acme}
	}
	// Globex reads first: its reads are recorded in the event store's
	// usage project (0:1), which no customer may reach either.
	require.Equal(t, http.StatusOK, e.readPatiently(request{target: lq + "?" + star, header: bearer(e.secrets["globex-key"])}).status)

	attacks := []eventsAttack{
		// The scope parameters from the client, every way they can be sent.
		{name: "extra_filters (JSON) in the URL", req: get(lq + "?" + star + "&extra_filters=" + enc(globexJSON)), all: true},
		{name: "extra_filters (LogsQL) in the URL", req: get(lq + "?" + star + "&extra_filters=" + enc("tenant_id:globex")), all: true},
		{name: "extra_filters widening", req: get(lq + "?" + star + "&extra_filters=" + enc("tenant_id:*")), all: true},
		{name: "extra_filters in a POST form", req: post(lq, star+"&extra_filters="+enc(globexJSON)), all: true},
		{name: "extra_filters in URL and form", req: post(lq+"?extra_filters="+enc(globexJSON), star+"&extra_filters="+enc(globexJSON)), all: true},
		{name: "extra_filters twice", req: get(lq + "?" + star + "&extra_filters=" + enc(`{"tenant_id":"acme"}`) + "&extra_filters=" + enc(globexJSON)), all: true},
		{name: "extra_filters percent-encoded name", req: get(lq + "?" + star + "&%65xtra_filters=" + enc(globexJSON)), all: true},
		{name: "extra_filters upper case", req: get(lq + "?" + star + "&EXTRA_FILTERS=" + enc(globexJSON) + "&Extra_Filters=" + enc(globexJSON)), all: true},
		{name: "extra_filters[]", req: get(lq + "?" + star + "&extra_filters%5B%5D=" + enc(globexJSON)), all: true},
		{name: "extra_stream_filters in the URL", req: get(lq + "?" + star + "&extra_stream_filters=" + enc(`{tenant_id="globex"}`)), all: true},
		{name: "extra_stream_filters in a POST form", req: post(lq, star+"&extra_stream_filters="+enc(`{tenant_id="globex"}`)), all: true},
		{name: "hidden_fields_filters", req: get(lq + "?" + star + "&hidden_fields_filters=tenant_id&hidden_fields_filters=" + enc("_stream*")), all: true},
		{name: "hidden_fields_filters in a POST form", req: post(lq, star+"&hidden_fields_filters=tenant_id"), all: true},
		{name: "a query arg twice", req: get(lq + "?" + star + "&" + qs("tenant_id:globex")), either: true},
		{name: "query in URL and form", req: post(lq+"?"+qs("tenant_id:globex"), star), either: true},
		{name: "the store's tenant headers from the client (usage project)", req: request{target: lq + "?" + star, header: withHeaders("AccountID", "0", "ProjectID", "1")}, all: true},
		{name: "the store's tenant headers from the client (another account)", req: request{target: lq + "?" + star, header: withHeaders("AccountID", "1", "ProjectID", "0")}, all: true},
		{name: "the store's tenant headers twice", req: request{method: http.MethodPost, target: lq, form: star, header: withHeaders("AccountID", "0", "AccountID", "7", "ProjectID", "1", "ProjectID", "1")}, all: true},
		{name: "X-Scope-OrgID from the client", req: request{target: lq + "?" + star, header: withHeaders("X-Scope-OrgID", "globex")}, all: true},
		// Queries naming the other tenant.
		{name: "tenant_id:globex", req: get(lq + "?" + qs("tenant_id:globex"))},
		{name: "tenant_id:*", req: get(lq + "?" + qs("tenant_id:*")), all: true},
		{name: "tenant_id:=globex or tenant_id:=acme", req: get(lq + "?" + qs(`tenant_id:="globex" or tenant_id:="acme"`)), all: true},
		{name: "not tenant_id:acme", req: get(lq + "?" + qs("not tenant_id:acme"))},
		{name: "tenant_id regexp", req: get(lq + "?" + qs(`tenant_id:~"."`)), all: true},
		{name: "stream filter on the other tenant", req: get(lq + "?" + qs(`{tenant_id="globex"}`))},
		{name: "stream filter regexp on every tenant", req: get(lq + "?" + qs(`{tenant_id=~".*"}`)), all: true},
		{name: "stream filter, not own tenant", req: get(lq + "?" + qs(`{tenant_id!="acme"}`))},
		{name: "_stream field filter", req: get(lq + "?" + qs(`_stream:{tenant_id="globex"}`))},
		{name: "host of the other tenant", req: get(lq + "?" + qs(`host.name:="globex-vm-1"`))},
		{name: "filter pipe on the other tenant", req: get(lq + "?" + qs("* | filter tenant_id:globex"))},
		// Subqueries.
		{name: "union with the other tenant", req: get(lq + "?" + qs("* | union (tenant_id:globex)")), all: true},
		{name: "union with everything", req: get(lq + "?" + qs("tenant_id:globex | union (*)")), all: true},
		{name: "union, stream filter", req: get(lq + "?" + qs(`tenant_id:nobody | union ({tenant_id="globex"})`))},
		{name: "join with the other tenant", req: get(lq + "?" + qs("* | join by (hw.name) (tenant_id:globex | rename host.name as other_host | fields hw.name, other_host)")), all: true},
		{name: "join with everything", req: get(lq + "?" + qs("* | join by (nvidia.xid.code) (* | rename host.name as other_host | fields nvidia.xid.code, other_host)"))},
		{name: "in() subquery on the other tenant", req: get(lq + "?" + qs("host.name:in(tenant_id:globex | fields host.name)"))},
		{name: "in() subquery on everything", req: get(lq + "?" + qs("hw.id:in(* | fields hw.id)")), all: true},
		{name: "contains_any subquery", req: get(lq + "?" + qs("host.name:contains_any(tenant_id:globex | fields host.name)")), either: true},
		{name: "options() on the other tenant", req: get(lq + "?" + qs("options(ignore_global_time_filter=true) tenant_id:globex"))},
		{name: "union with options()", req: get(lq + "?" + qs("* | union (options(ignore_global_time_filter=true) tenant_id:globex)")), all: true},
		// Rewriting the tenant field in the output.
		{name: "format over tenant_id", req: get(lq + "?" + qs(`* | format "acme" as tenant_id`)), rewrite: true},
		{name: "copy over tenant_id", req: get(lq + "?" + qs("* | copy host.name as tenant_id")), rewrite: true},
		{name: "delete tenant_id", req: get(lq + "?" + qs("* | delete tenant_id, _stream")), rewrite: true},
		{name: "stats by tenant", req: get(lq + "?" + qs("* | stats by (tenant_id, host.name) count() n"))},
		{name: "stats by tenant after a union", req: get(lq + "?" + qs("* | union (tenant_id:globex) | stats by (tenant_id) count() n"))},
		// The other read endpoints.
		{name: "field_values of tenant_id", req: get("/select/logsql/field_values?" + qs("*") + "&field=tenant_id")},
		{name: "field_values of tenant_id, globex's", req: get("/select/logsql/field_values?" + qs("tenant_id:globex") + "&field=tenant_id")},
		{name: "field_values with extra_filters", req: get("/select/logsql/field_values?" + qs("*") + "&field=host.name&extra_filters=" + enc(globexJSON))},
		{name: "stream_field_values of tenant_id", req: get("/select/logsql/stream_field_values?" + qs("*") + "&field=tenant_id")},
		{name: "streams", req: get("/select/logsql/streams?" + qs(`{tenant_id=~".+"}`))},
		{name: "hits by tenant", req: get("/select/logsql/hits?" + qs("*") + "&step=1h&start=1d&field=tenant_id")},
		{name: "hits with extra_stream_filters", req: post("/select/logsql/hits", qs("*")+"&step=1h&start=1d&field=host.name&extra_stream_filters="+enc(`{tenant_id="globex"}`))},
		{name: "stats_query by tenant", req: get("/select/logsql/stats_query?" + qs("* | stats by (tenant_id, host.name) count() n"))},
		{name: "stats_query_range with a union", req: get("/select/logsql/stats_query_range?" + qs("* | union (tenant_id:globex) | stats by (host.name) count() n") + "&start=1d&step=1h"), either: true},
		// Path tricks.
		{name: "double slash", req: get("//select/logsql/query?" + star), status: http.StatusNotFound},
		{name: "double slash inside", req: get("/select//logsql/query?" + star), status: http.StatusNotFound},
		{name: "dot dot", req: get("/select/logsql/../logsql/query?" + star), status: http.StatusNotFound},
		{name: "dot dot to tail", req: get("/select/logsql/query/../tail?" + star), status: http.StatusNotFound},
		{name: "dot", req: get("/select/logsql/./query?" + star), status: http.StatusNotFound},
		{name: "encoded slashes", req: get("/select%2Flogsql%2Fquery?" + star), status: http.StatusNotFound},
		{name: "encoded slash to tail", req: get("/select/logsql/query%2F..%2Ftail?" + star), status: http.StatusNotFound},
		{name: "encoded letter", req: get("/select/logsql/%71uery?" + star), status: http.StatusNotFound},
		{name: "trailing slash", req: get("/select/logsql/query/?" + star), status: http.StatusNotFound},
		{name: "upper case", req: get("/SELECT/LOGSQL/QUERY?" + star), status: http.StatusNotFound},
		{name: "mixed case", req: get("/select/LogsQL/query?" + star), status: http.StatusNotFound},
		{name: "vmui's /prometheus prefix", req: get("/prometheus/select/logsql/query?" + star), status: http.StatusNotFound},
		{name: "events page prefix", req: get("/events/select/logsql/query?" + star), status: http.StatusNotFound},
		// The event store's other endpoints.
		{name: "tail", req: get("/select/logsql/tail?" + star), status: http.StatusNotFound},
		{name: "facets", req: get("/select/logsql/facets?" + star), status: http.StatusNotFound},
		{name: "query_time_range", req: get("/select/logsql/query_time_range?" + star), status: http.StatusNotFound},
		{name: "tenant ids", req: get("/select/tenant_ids"), status: http.StatusNotFound},
		{name: "the store's UI", req: get("/select/vmui/"), status: http.StatusNotFound},
		{name: "insert jsonline", req: post("/insert/jsonline", `{"_msg":"x","tenant_id":"globex","host.name":"globex-vm-1"}`), status: http.StatusNotFound},
		{name: "insert OTLP logs", req: post("/insert/opentelemetry/v1/logs", "x"), status: http.StatusNotFound},
		{name: "insert loki", req: post("/insert/loki/api/v1/push", "x"), status: http.StatusNotFound},
		{name: "insert elasticsearch", req: post("/insert/elasticsearch/_bulk", "x"), status: http.StatusNotFound},
		{name: "internal force_flush", req: get("/internal/force_flush"), status: http.StatusNotFound},
		{name: "internal force_merge", req: get("/internal/force_merge"), status: http.StatusNotFound},
		{name: "internal select", req: get("/internal/select/query?" + star), status: http.StatusNotFound},
		{name: "delete", req: post("/delete/run_task", "filter=tenant_id:globex"), status: http.StatusNotFound},
		{name: "delete tasks", req: get("/delete/active_tasks"), status: http.StatusNotFound},
		{name: "the store's metrics", req: get("/metrics"), status: http.StatusNotFound},
		{name: "the store's flags", req: get("/flags"), status: http.StatusNotFound},
		// Credentials.
		{name: "no key", req: request{target: lq + "?" + star}, status: http.StatusUnauthorized},
		{name: "acme's ingest token", req: request{target: lq + "?" + star, header: bearer(e.secrets["acme-token"])}, status: http.StatusUnauthorized},
		{name: "globex's ingest token, basic", req: request{target: lq + "?" + star, header: basic(e.secrets["globex-token"])}, status: http.StatusUnauthorized},
		{name: "globex's key in a form field", req: request{method: http.MethodPost, target: lq, form: star + "&key=" + e.secrets["globex-key"]}, status: http.StatusUnauthorized},
		{name: "key in the URL", req: request{target: lq + "?" + star + "&key=" + e.secrets["globex-key"] + "&api_key=" + e.secrets["globex-key"]}, status: http.StatusUnauthorized},
		{name: "made-up session cookies", req: request{target: lq + "?" + star, header: http.Header{"Cookie": {
			"otelcol_gpu_session=" + e.secrets["globex-key"] + "; __Host-otelcol_gpu_session=" + e.secrets["globex-key"]}}}, status: http.StatusUnauthorized},
		{name: "DELETE method", req: request{method: http.MethodDelete, target: lq + "?" + star, header: acme}, status: http.StatusMethodNotAllowed},
		{name: "PUT method", req: request{method: http.MethodPut, target: lq + "?" + star, header: acme}, status: http.StatusMethodNotAllowed},
	}
	require.GreaterOrEqual(t, len(attacks), 60)
	ctx := context.Background()
	before, err := e.logs.Query(ctx, "*", "")
	require.NoError(t, err)
	held := 0
	for _, at := range attacks {
		got := e.readPatiently(at.req)
		want := at.status
		if want == 0 || at.all {
			want = http.StatusOK
		}
		if !at.either || got.status == http.StatusOK {
			require.Equal(t, want, got.status, "%s: %s", at.name, got.body)
		}
		requireEventsHeld(t, at, got)
		if at.either {
			t.Logf("events attacks: %s: %d", at.name, got.status)
		}
		if at.all {
			requireOwnRecords(t, "acme", records(t, got), "%s: exactly acme's records", at.name)
		}
		if got.status == http.StatusOK {
			held++
		}
	}
	t.Logf("events attacks: %d, answered and held to acme: %d, refused: %d", len(attacks), held, len(attacks)-held)

	// A read key writes no events.
	require.Equal(t, http.StatusUnauthorized, e.writeLogs(e.secrets["acme-key"], xidLogs("globex", e.sent)), "a read key used to write events")

	// Nothing was written, deleted or moved.
	after, err := e.logs.Query(ctx, "*", "")
	require.NoError(t, err)
	require.ElementsMatch(t, before, after, "the event store's records before and after the attacks")
}

// testEventsPageServed: the events page over the real listener: the login
// page without a session, the page with one.
func testEventsPageServed(t *testing.T, e *env) {
	a := e.read(request{target: "/events/?xid=79", noRedirect: true})
	require.Equal(t, http.StatusSeeOther, a.status)
	require.Equal(t, "/login?next=%2Fevents%2F%3Fxid%3D79", a.header.Get("Location"), "the login brings the browser back")
	a = e.read(request{target: "/events?xid=79", noRedirect: true})
	require.Equal(t, http.StatusMovedPermanently, a.status)
	require.Equal(t, "/events/?xid=79", a.header.Get("Location"))
	a = e.read(request{target: "/events/?xid=79", header: e.session(t, e.secrets["globex-key"]), noRedirect: true})
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	require.Contains(t, a.header.Get("Content-Security-Policy"), "script-src 'self'")
	require.Contains(t, string(a.body), "/events/events.js")
	for _, p := range []string{"/events/events.js", "/events/events.css", "/events/nav.css"} {
		require.Equal(t, http.StatusOK, e.read(request{target: p}).status, p)
	}
}
