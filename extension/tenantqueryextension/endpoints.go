package tenantqueryextension

import (
	"strings"
)

// endpoint is one read endpoint of the Prometheus API that is forwarded.
// Everything not listed here is refused: the store's write, import, admin,
// delete, snapshot, status and UI paths, and whatever a later store
// release adds.
type endpoint struct {
	name string // for logs and metrics: query, query_range, series, labels, label_values
	// path on the store, after the store endpoint.
	path string
	// params the client may send; anything else is dropped, so no
	// parameter a store understands (extra_label, extra_filters[], ...)
	// can change what the query sees. trace is not among them: a query
	// trace describes the store's internals (a cluster's storage nodes).
	params map[string]bool
	// limited endpoints take limit=, capped at limits.max_series.
	limited bool
	// result says where the series are in the answer: data.result
	// (query, query_range) or data itself (series, labels, values).
	result bool
	// events endpoints go to the event store (VictoriaLogs LogsQL API),
	// scoped by extra_filters; the others to the metrics store.
	events bool
	// count says how to count an events answer for the usage meters:
	// "lines" (JSON lines, one per record), or the key of the root
	// object's array ("values", "hits"); "" counts data.result.
	count string
	// matchScoped endpoints (labels, label values) get the tenant's own
	// match[] when the client sends none.
	matchScoped bool
}

func paramSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

var (
	queryParams = paramSet("query", "time", "step", "timeout", "nocache", "round_digits", "latency_offset", "max_lookback")
	rangeParams = paramSet("query", "start", "end", "step", "timeout", "nocache", "round_digits", "latency_offset", "max_lookback")
	matchParams = paramSet("match[]", "start", "end", "limit", "timeout")

	epQuery  = &endpoint{name: "query", path: "/api/v1/query", params: queryParams, result: true}
	epRange  = &endpoint{name: "query_range", path: "/api/v1/query_range", params: rangeParams, result: true}
	epSeries = &endpoint{name: "series", path: "/api/v1/series", params: matchParams, limited: true}
	epLabels = &endpoint{name: "labels", path: "/api/v1/labels", params: matchParams, limited: true, matchScoped: true}
	// epValues's path is completed with the label name per request.
	epValues = &endpoint{name: "label_values", params: matchParams, limited: true, matchScoped: true}

	fixedEndpoints = map[string]*endpoint{
		epQuery.path:  epQuery,
		epRange.path:  epRange,
		epSeries.path: epSeries,
		epLabels.path: epLabels,
	}

	// The event store's LogsQL read endpoints that its UI and Grafana's
	// VictoriaLogs data source use. Not among them: tail (a stream held
	// open), facets and query_time_range (not needed), tenant_ids (names
	// the store's tenants), and every insert, delete and internal path.
	logsParams      = paramSet("query", "start", "end", "time", "limit", "step", "offset", "field")
	eventsPrefix    = "/select/logsql/"
	eventsEndpoints = map[string]*endpoint{}
)

func init() {
	for _, e := range []struct{ name, count string }{
		{"query", "lines"}, {"hits", "hits"}, {"stats_query", ""}, {"stats_query_range", ""},
		{"field_names", "values"}, {"field_values", "values"}, {"streams", "values"},
		{"stream_field_names", "values"}, {"stream_field_values", "values"},
	} {
		path := eventsPrefix + e.name
		eventsEndpoints[path] = &endpoint{name: "logsql_" + e.name, path: path, params: logsParams, events: true, count: e.count, limited: e.name != "hits" && e.count != ""}
	}
}

// uiAPIPrefix is where vmui sends its queries: it takes the page's origin
// and appends /prometheus. Requests there reach exactly the same endpoints
// and the same enforcement as /api/v1; they never reach the store's own
// /prometheus alias, whose other paths (write, admin, ...) are not served.
const uiAPIPrefix = "/prometheus"

// matchEndpoint finds the endpoint of a request path, given as sent
// (escaped). Only the exact canonical spelling matches: "//", "..", "./",
// a trailing slash, percent-encoding and case variants do not, so no
// spelling reaches a store path that is not on the list.
func matchEndpoint(escapedPath string) (*endpoint, string, bool) {
	if ep, ok := eventsEndpoints[escapedPath]; ok {
		return ep, ep.path, true
	}
	p := strings.TrimPrefix(escapedPath, uiAPIPrefix)
	if ep, ok := fixedEndpoints[p]; ok {
		return ep, ep.path, true
	}
	const pre, post = "/api/v1/label/", "/values"
	if strings.HasPrefix(p, pre) && strings.HasSuffix(p, post) && len(p) > len(pre)+len(post) {
		name := p[len(pre) : len(p)-len(post)]
		if labelName.MatchString(name) {
			return epValues, pre + name + post, true
		}
	}
	return nil, "", false
}
