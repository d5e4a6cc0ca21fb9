//go:build e2e

package readpath

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// attack is one attempt by acme (or by someone holding only what an
// attacker could) to read or write globex's data or to leave the
// allowlist. status is the refusal expected (a 4xx), or 0 for "held":
// answered, with acme's data only.
type attack struct {
	name   string
	req    request
	status int
}

func q(query string) string { return url.Values{"query": {query}}.Encode() }

// testAttacks runs the threats of shared/docs/tenancy.md ("reading")
// against the real gateway and store: every one is refused or held to
// acme, and globex's data is still all there afterwards.
func testAttacks(t *testing.T, e *env) {
	acme := bearer(e.secrets["acme-key"])
	globexSel := `{tenant_id="globex"}`
	withOrg := bearer(e.secrets["acme-key"])
	withOrg.Set("X-Scope-OrgID", "globex")
	withOrg.Set("X-Forwarded-For", "10.0.0.1")
	multipart := bearer(e.secrets["acme-key"])
	multipart.Set("Content-Type", "multipart/form-data; boundary=x")

	attacks := []attack{
		// The scope parameter from the client, every way it can be sent.
		{"extra_label in the URL", request{target: "/api/v1/query?" + q("hw.power") + "&extra_label=tenant_id=globex", header: acme}, 0},
		{"extra_label in a POST form", request{method: http.MethodPost, target: "/api/v1/query", form: q("hw.power") + "&extra_label=tenant_id%3Dglobex", header: acme}, 0},
		{"extra_label in URL and form", request{method: http.MethodPost, target: "/api/v1/query?extra_label=tenant_id=globex", form: q("hw.power") + "&extra_label=tenant_id=globex", header: acme}, 0},
		{"extra_label twice", request{target: "/api/v1/query?" + q("hw.power") + "&extra_label=tenant_id=acme&extra_label=tenant_id=globex", header: acme}, 0},
		{"extra_label percent-encoded name", request{target: "/api/v1/query?" + q("hw.power") + "&%65xtra_label=tenant_id%3Dglobex", header: acme}, 0},
		{"extra_label upper case", request{target: "/api/v1/query?" + q("hw.power") + "&EXTRA_LABEL=tenant_id=globex&Extra_Label=tenant_id=globex", header: acme}, 0},
		{"extra_label with []", request{target: "/api/v1/query?" + q("hw.power") + "&extra_label%5B%5D=tenant_id=globex", header: acme}, 0},
		{"extra_filters[] widening", request{target: "/api/v1/query?" + q("hw.power") + "&extra_filters[]=" + url.QueryEscape(`{tenant_id=~".*"}`), header: acme}, 0},
		{"extra_filters without []", request{method: http.MethodPost, target: "/api/v1/query", form: q("hw.power") + "&extra_filters=" + url.QueryEscape(globexSel), header: acme}, 0},
		// Selectors on the tenant label.
		{"selector on the other tenant", request{target: "/api/v1/query?" + q(`hw.power`+globexSel), header: acme}, 0},
		{"regex matching every tenant", request{target: "/api/v1/query?" + q(`hw.power{tenant_id=~".*"}`), header: acme}, 0},
		{"regex matching the other tenant", request{target: "/api/v1/query?" + q(`hw.power{tenant_id=~"glob.*"}`), header: acme}, 0},
		{"negative matcher on own tenant", request{target: "/api/v1/query?" + q(`hw.power{tenant_id!="acme"}`), header: acme}, 0},
		{"selector on tenant.id", request{target: "/api/v1/query?" + q(`hw.power{tenant.id="globex"}`), header: acme}, 0},
		{"every series, no name", request{target: "/api/v1/query?" + q(`count({__name__=~".+"}) by (tenant_id, host.name)`), header: acme}, 0},
		{"union with the other tenant", request{target: "/api/v1/query?" + q(`union(hw.power, hw.power`+globexSel+`)`), header: acme}, 0},
		{"subquery over the other tenant", request{target: "/api/v1/query?" + q(`max_over_time(hw.power`+globexSel+`[1h:1m])`), header: acme}, 0},
		{"query trace (dropped: the store's internals)", request{target: "/api/v1/query?" + q(`hw.power{tenant_id=~".*"}`) + "&trace=1", header: acme}, 0},
		// Endpoints without a selector.
		{"labels without a selector", request{target: "/api/v1/labels", header: acme}, 0},
		{"tenant label values", request{target: "/api/v1/label/tenant_id/values", header: acme}, 0},
		{"host label values", request{target: "/api/v1/label/host.name/values", header: acme}, 0},
		{"metric names", request{target: "/api/v1/label/__name__/values", header: acme}, 0},
		{"series of the other tenant", request{target: "/api/v1/series?match[]=" + url.QueryEscape(globexSel), header: acme}, 0},
		{"every series", request{target: "/api/v1/series?match[]=" + url.QueryEscape(`{__name__=~".+"}`), header: acme}, 0},
		{"series, regex on the tenant", request{method: http.MethodPost, target: "/api/v1/series", form: "match[]=" + url.QueryEscape(`{tenant_id=~".+"}`), header: acme}, 0},
		// The store's alias paths, path tricks, export and federate.
		{"vmui's /prometheus prefix with extra_label", request{target: "/prometheus/api/v1/query?" + q("hw.power") + "&extra_label=tenant_id=globex", header: acme}, 0},
		{"cluster select path", request{target: "/select/0/prometheus/api/v1/query?" + q("hw.power"), header: acme}, http.StatusNotFound},
		{"store alias for export", request{target: "/prometheus/api/v1/export?match[]=hw.power", header: acme}, http.StatusNotFound},
		{"export", request{target: "/api/v1/export?match[]=" + url.QueryEscape(globexSel), header: acme}, http.StatusNotFound},
		{"export csv", request{target: "/api/v1/export/csv?format=__name__&match[]=hw.power", header: acme}, http.StatusNotFound},
		{"federate", request{target: "/federate?match[]=" + url.QueryEscape(globexSel), header: acme}, http.StatusNotFound},
		{"double slash", request{target: "//api/v1/query?" + q("hw.power"), header: acme}, http.StatusNotFound},
		{"dot dot", request{target: "/api/v1/x/../query?" + q("hw.power"), header: acme}, http.StatusNotFound},
		{"dot dot to export", request{target: "/api/v1/query/../export?match[]=hw.power", header: acme}, http.StatusNotFound},
		{"encoded slashes", request{target: "/api%2Fv1%2Fquery?" + q("hw.power"), header: acme}, http.StatusNotFound},
		{"encoded letter", request{target: "/api/v1/%71uery?" + q("hw.power"), header: acme}, http.StatusNotFound},
		{"label name escaping its path", request{target: "/api/v1/label/..%2F..%2Fexport/values?match[]=hw.power", header: acme}, http.StatusNotFound},
		{"upper case path", request{target: "/API/V1/QUERY?" + q("hw.power"), header: acme}, http.StatusNotFound},
		{"metadata (not scoped by the store)", request{target: "/api/v1/metadata", header: acme}, http.StatusNotFound},
		{"series count (not scoped by the store)", request{target: "/api/v1/series/count", header: acme}, http.StatusNotFound},
		{"tsdb status", request{target: "/api/v1/status/tsdb", header: acme}, http.StatusNotFound},
		{"top queries", request{target: "/api/v1/status/top_queries", header: acme}, http.StatusNotFound},
		{"active queries", request{target: "/api/v1/status/active_queries", header: acme}, http.StatusNotFound},
		// The store's write, import, admin and delete endpoints.
		{"import", request{method: http.MethodPost, target: "/api/v1/import", form: `{"metric":{"__name__":"hw.power","tenant_id":"globex"},"values":[1],"timestamps":[1]}`, header: acme}, http.StatusNotFound},
		{"prometheus remote write", request{method: http.MethodPost, target: "/api/v1/write", form: "x", header: acme}, http.StatusNotFound},
		{"otlp write on the read listener", request{method: http.MethodPost, target: "/opentelemetry/v1/metrics", form: "x", header: acme}, http.StatusNotFound},
		{"delete series", request{method: http.MethodPost, target: "/api/v1/admin/tsdb/delete_series", form: "match[]=" + url.QueryEscape(globexSel), header: acme}, http.StatusNotFound},
		{"delete series, /prometheus", request{target: "/prometheus/api/v1/admin/tsdb/delete_series?match[]=" + url.QueryEscape(globexSel), header: acme}, http.StatusNotFound},
		{"snapshot", request{target: "/snapshot/create", header: acme}, http.StatusNotFound},
		{"flags and config", request{target: "/flags", header: acme}, http.StatusNotFound},
		{"cache reset", request{target: "/internal/resetRollupResultCache", header: acme}, http.StatusNotFound},
		{"the store's own UI", request{target: "/select/0/vmui/", header: acme}, http.StatusNotFound},
		// Credentials.
		{"no key", request{target: "/api/v1/query?" + q("hw.power")}, http.StatusUnauthorized},
		{"acme's ingest token used to read", request{target: "/api/v1/query?" + q("hw.power"), header: bearer(e.secrets["acme-token"])}, http.StatusUnauthorized},
		{"globex's ingest token used to read", request{target: "/api/v1/query?" + q("hw.power"), header: basic(e.secrets["globex-token"])}, http.StatusUnauthorized},
		{"key in the URL", request{target: "/api/v1/query?" + q("hw.power") + "&key=" + e.secrets["globex-key"] + "&api_key=" + e.secrets["globex-key"]}, http.StatusUnauthorized},
		{"a made-up session cookie", request{target: "/api/v1/query?" + q("hw.power"), header: http.Header{"Cookie": {"__Host-otelcol_gpu_session=" + e.secrets["globex-key"]}}}, http.StatusUnauthorized},
		{"a session cookie of the old name", request{target: "/api/v1/query?" + q("hw.power"), header: http.Header{"Cookie": {"otelcol_gpu_session=" + e.secrets["globex-key"]}}}, http.StatusUnauthorized},
		{"X-Scope-OrgID from the client", request{method: http.MethodPost, target: "/api/v1/query", form: q("hw.power"), header: withOrg}, 0},
		{"multipart form", request{method: http.MethodPost, target: "/api/v1/query", form: "--x--", header: multipart}, http.StatusUnsupportedMediaType},
		{"DELETE method", request{method: http.MethodDelete, target: "/api/v1/series?match[]=" + url.QueryEscape(globexSel), header: acme}, http.StatusMethodNotAllowed},
	}
	require.GreaterOrEqual(t, len(attacks), 30)
	ctx := context.Background()
	before, err := e.store.Scalar(ctx, `count({__name__=~".+"})`, "")
	require.NoError(t, err)
	held := 0
	for _, a := range attacks {
		got := e.readPatiently(a.req)
		want := a.status
		if want == 0 { // held: answered, with acme's data only
			want = http.StatusOK
		}
		require.Equal(t, want, got.status, "%s: %s", a.name, got.body)
		requireHeld(t, a.name, got)
		if got.status == http.StatusOK {
			held++
		}
	}
	t.Logf("attacks: %d, answered and held to acme: %d, refused: %d", len(attacks), held, len(attacks)-held)

	// A read key cannot write: the gateway's OTLP receiver refuses it.
	md := fleetMetrics("globex", "globex", e.sent, 1)
	require.Equal(t, http.StatusUnauthorized, e.write(e.secrets["acme-key"], md), "a read key used to write")
	require.Equal(t, http.StatusUnauthorized, e.write(e.secrets["globex-key"], pmetric.NewMetrics()), "a read key used to write")

	// Nothing was written, deleted or moved: globex's data is all there.
	_ = e.store.Flush(ctx)
	after, err := e.store.Scalar(ctx, `count({__name__=~".+"})`, "")
	require.NoError(t, err)
	require.Equal(t, before, after, "series in the store before and after the attacks")
	n, err := e.store.Scalar(ctx, "count(last_over_time(hw.gpu.utilization[1h]))", "tenant_id=globex")
	require.NoError(t, err)
	require.Equal(t, float64(gpusOf("globex")), n)
}
