package tenantqueryextension

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzScopedRequest sends whatever URL query and form body the fuzzer makes
// up to each endpoint, by GET and POST, and checks what reached the store:
// exactly one extra_label, the caller's, in the URL and none in the body;
// only the endpoint's allowlisted parameters; a timeout and a limit within
// the configured ones. The seed corpus runs in `make test`.
func FuzzScopedRequest(f *testing.F) {
	for _, seed := range []struct {
		path, query, body string
		post              bool
	}{
		{"/api/v1/query", "query=up&extra_label=tenant_id=globex", "", false},
		{"/api/v1/query", "extra_label=tenant_id%3Dglobex", "query=up&extra_label=tenant_id=globex&extra_filters[]={tenant_id=~\".*\"}", true},
		{"/api/v1/query_range", "query=up&start=1&end=2&step=1&%65xtra_label=x&EXTRA_LABEL=y", "", false},
		{"/api/v1/series", "match[]={tenant_id=~\"glob.*\"}&limit=0&limit=999999999", "", false},
		{"/api/v1/labels", "", "match[]=up&extra_filters%5B%5D=a&extra_label=a&extra_label=b", true},
		{"/api/v1/label/tenant_id/values", "timeout=1e9&limit=-0", "", false},
		{"/prometheus/api/v1/query", "query=up;extra_label=x", "query=a&&&&==&%", true},
		{"/api/v1/query", "timeout=NaN&query=up", "", false},
		{"/api/v1/query", "query=up&timeout=10ms&timeout=1h", "timeout=99999999999", true},
	} {
		f.Add(seed.path, seed.query, seed.body, seed.post)
	}
	ts := newTestServer(f, nil)
	maxTimeout := ts.cfg.Limits.QueryTimeout.Seconds()
	f.Fuzz(func(t *testing.T, path, rawQuery, body string, post bool) {
		ep, _, ok := matchEndpoint(path)
		if !ok {
			return
		}
		method := http.MethodGet
		if post {
			method = http.MethodPost
		}
		req := &http.Request{
			Method: method, URL: &url.URL{Path: path, RawQuery: rawQuery}, Host: "read.example",
			Header: http.Header{"Authorization": {"Bearer " + keyAcme}, "Content-Type": {"application/x-www-form-urlencoded"}},
			Body:   io.NopCloser(strings.NewReader(body)), RemoteAddr: "192.0.2.1:1234",
		}
		req = req.WithContext(context.Background())
		rec := httptest.NewRecorder()
		ts.ServeHTTP(rec, req)
		calls := ts.store.taken()
		if rec.Code != http.StatusOK {
			require.Empty(t, calls)
			return
		}
		require.Len(t, calls, 1)
		c := calls[0]
		q, err := url.ParseQuery(c.rawQuery)
		require.NoError(t, err)
		b, err := url.ParseQuery(c.body)
		require.NoError(t, err)
		require.Equal(t, []string{"tenant_id=acme"}, q["extra_label"])
		require.NotContains(t, b, "extra_label")
		for _, vals := range []url.Values{q, b} {
			for name := range vals {
				require.True(t, name == "extra_label" || ep.params[name], "forwarded %q", name)
			}
		}
		all := q
		if post {
			all = b
		}
		timeout, err := strconv.ParseFloat(all.Get("timeout"), 64)
		require.NoError(t, err)
		require.LessOrEqual(t, timeout, maxTimeout)
		require.Positive(t, timeout)
		if ep.limited {
			limit, err := strconv.Atoi(all.Get("limit"))
			require.NoError(t, err)
			require.LessOrEqual(t, limit, ts.cfg.Limits.MaxSeries)
			require.Positive(t, limit)
		}
	})
}
