package tenantqueryextension

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoginSessionAndLogout(t *testing.T) {
	ts := newTestServer(t, nil)
	rec := ts.do(http.MethodGet, "/vmui/", "", nil)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	require.Equal(t, "/login", rec.Header().Get("Location"), "vmui's own start: the login lands on the dashboard")

	rec = ts.do(http.MethodGet, "/login", "", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `method="post"`)
	require.Contains(t, rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'")

	for name, form := range map[string]string{"wrong": "key=nope", "ingest token": "key=" + tokenAcme, "empty": "key="} {
		rec = ts.do(http.MethodPost, "/login", form, nil)
		require.Equal(t, http.StatusUnauthorized, rec.Code, name)
		require.Empty(t, rec.Result().Cookies(), name)
	}
	for _, h := range []http.Header{
		{"Origin": {"https://evil.example"}},
		{"Origin": {"null"}},
		{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://read.example"}},
		{"Sec-Fetch-Site": {"same-site"}},
	} {
		rec = ts.do(http.MethodPost, "/login", "key="+url.QueryEscape(keyAcme), h)
		require.Equal(t, http.StatusForbidden, rec.Code, "a login posted from another origin: %v", h)
		require.Empty(t, rec.Result().Cookies())
	}
	require.Equal(t, http.StatusSeeOther, ts.do(http.MethodPost, "/login", "key="+url.QueryEscape(keyAcme),
		http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"null"}}).Code, "what Chromium sends")

	rec = ts.do(http.MethodPost, "/login", "key="+url.QueryEscape(keyAcme), http.Header{"Origin": {"http://read.example"}})
	require.Equal(t, http.StatusSeeOther, rec.Code)
	require.NotContains(t, rec.Header().Get("Location"), keyAcme)
	cookies := rec.Result().Cookies()
	require.Len(t, cookies, 1)
	c := cookies[0]
	require.Equal(t, "__Host-otelcol_gpu_session", c.Name, "a sibling subdomain cannot plant a __Host- cookie")
	require.Equal(t, "/", c.Path)
	require.Empty(t, c.Domain)
	require.True(t, c.HttpOnly)
	require.True(t, c.Secure)
	require.Equal(t, http.SameSiteStrictMode, c.SameSite)
	require.NotContains(t, c.Value, keyAcme)
	withCookie := http.Header{"Cookie": {sessionCookie + "=" + c.Value}}

	rec = ts.do(http.MethodGet, "/vmui/", "", withCookie)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `<div id="root"`)
	rec = ts.do(http.MethodPost, "/prometheus/api/v1/query", "query=up&extra_label=tenant_id%3Dglobex", withCookie)
	require.Equal(t, http.StatusOK, rec.Code)
	urlScope, bodyScope, _ := scopeOf(t, ts.store.taken()[0])
	require.Equal(t, []string{"tenant_id=acme"}, urlScope)
	require.Empty(t, bodyScope)

	forged := http.Header{"Cookie": {sessionCookie + "=" + c.Value + "x"}}
	require.Equal(t, http.StatusUnauthorized, ts.do(http.MethodGet, "/api/v1/query?query=up", "", forged).Code)

	// Revoking the key ends the session.
	require.NoError(t, os.WriteFile(ts.credFile, []byte(credentialsYAML("acme-grafana")), 0o600))
	require.Eventually(t, func() bool {
		return ts.do(http.MethodGet, "/api/v1/query?query=up", "", withCookie).Code == http.StatusUnauthorized
	}, 5*time.Second, 10*time.Millisecond)

	// Logout ends a session.
	rec = ts.do(http.MethodPost, "/login", "key="+url.QueryEscape(keyAcme2), nil)
	withCookie = http.Header{"Cookie": {sessionCookie + "=" + rec.Result().Cookies()[0].Value}}
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", withCookie).Code)
	// Not by a link or another site's form: GET, and a POST from another
	// origin, leave the session alone.
	require.Equal(t, http.StatusMethodNotAllowed, ts.do(http.MethodGet, "/logout", "", withCookie).Code)
	crossSite := http.Header{"Cookie": withCookie["Cookie"], "Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}
	require.Equal(t, http.StatusForbidden, ts.do(http.MethodPost, "/logout", "", crossSite).Code)
	crossOrigin := http.Header{"Cookie": withCookie["Cookie"], "Origin": {"https://evil.example"}}
	require.Equal(t, http.StatusForbidden, ts.do(http.MethodPost, "/logout", "", crossOrigin).Code)
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", withCookie).Code, "still signed in")
	rec = ts.do(http.MethodPost, "/logout", "", http.Header{"Cookie": withCookie["Cookie"], "Sec-Fetch-Site": {"same-origin"}})
	require.Equal(t, http.StatusSeeOther, rec.Code)
	require.Equal(t, -1, rec.Result().Cookies()[0].MaxAge)
	require.Equal(t, http.StatusUnauthorized, ts.do(http.MethodGet, "/api/v1/query?query=up", "", withCookie).Code)
}

func TestSessionsExpireAndAreBounded(t *testing.T) {
	s := newSessions(time.Hour, 3, 2)
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	creds := newTestServer(t, nil).creds.Set()
	a, _ := creds.Lookup(keyAcme)
	g, _ := creds.Lookup(keyGlobex)
	id1, err := s.create(a)
	require.NoError(t, err)
	now = now.Add(time.Minute)
	id2, _ := s.create(g)
	got, ok := s.get(id1)
	require.True(t, ok)
	require.Equal(t, "acme", got.Tenant)
	now = now.Add(time.Minute)
	id3, _ := s.create(a)
	// acme at its own bound: its own oldest (id1) goes, not globex's.
	id4, err := s.create(a)
	require.NoError(t, err)
	require.Equal(t, 3, s.len())
	_, ok = s.get(id1)
	require.False(t, ok)
	_, ok = s.get(id2)
	require.True(t, ok, "another tenant's login never ends globex's session")
	// A logged-out session no longer counts against its tenant.
	s.drop(id3)
	id5, err := s.create(a)
	require.NoError(t, err)
	_, ok = s.get(id4)
	require.True(t, ok)
	// The table is full (acme 2, globex 1): a third tenant's login is
	// refused rather than ending anyone's session, until they expire.
	h := *g
	h.Tenant = "initech"
	_, err = s.create(&h)
	require.ErrorIs(t, err, errSessionsFull)
	_, ok = s.get(id2)
	require.True(t, ok)
	now = now.Add(2 * time.Hour)
	_, err = s.create(&h)
	require.NoError(t, err, "expired sessions make room")
	_, ok = s.get(id5)
	require.False(t, ok, "expired")
}

// One tenant posting its own key again and again (ten thousand logins)
// holds at most its own bound of sessions and never logs out another.
func TestALoginFloodEndsNoOtherTenantsSession(t *testing.T) {
	ts := newTestServer(t, nil)
	login := func(key string) *httptest.ResponseRecorder {
		return ts.do(http.MethodPost, "/login", "key="+url.QueryEscape(key), nil)
	}
	rec := login(keyGlobex)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	globex := http.Header{"Cookie": {sessionCookie + "=" + rec.Result().Cookies()[0].Value}}
	for i := 0; i < 10_000; i++ {
		require.Equal(t, http.StatusSeeOther, login(keyAcme).Code)
	}
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/api/v1/query?query=up", "", globex).Code, "globex is still logged in")
	require.Equal(t, defaultMaxSessionsPerTenant+1, ts.sessions.len(), "acme holds its bound, globex its one")
}

// The UI's own files are served, what vmui asks the server for at its
// /prometheus prefix is answered here, and every asset index.html names is
// in the embedded tree.
func TestUIAssets(t *testing.T) {
	ts := newTestServer(t, nil)
	index, err := fs.ReadFile(ts.ui.files, "index.html")
	require.NoError(t, err)
	refs := regexp.MustCompile(`(?:src|href)="\./([^"]+)"`).FindAllStringSubmatch(string(index), -1)
	require.NotEmpty(t, refs)
	for _, ref := range refs {
		rec := ts.do(http.MethodGet, "/vmui/"+ref[1], "", nil)
		require.Equal(t, http.StatusOK, rec.Code, ref[1])
		require.NotEmpty(t, rec.Header().Get("Content-Type"), ref[1])
	}
	rec := ts.do(http.MethodGet, "/prometheus/vmui/custom-dashboards", "", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `"dashboardsSettings":[{"title":"GPUs"`)
	rec = ts.do(http.MethodGet, "/prometheus/vmui/timezone", "", nil)
	require.JSONEq(t, `{"timezone":"UTC"}`, rec.Body.String())
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/prometheus/vmui/config.json", "", nil).Code)
	rec = ts.do(http.MethodGet, "/vmui/dashboards/index.js", "", nil)
	require.Contains(t, rec.Body.String(), `"gpu.json"`)

	for _, p := range []string{"/vmui/../config.json", "/vmui/assets/", "/vmui/assets", "/vmui/%2e%2e/LICENSE", "/vmui/nope.js", "/vmui/dashboards/perJobUsage.json"} {
		require.Equal(t, http.StatusNotFound, ts.do(http.MethodGet, p, "", nil).Code, p)
	}
	require.Equal(t, http.StatusMethodNotAllowed, ts.do(http.MethodPost, "/vmui/manifest.json", "", nil).Code)
	require.Empty(t, ts.store.taken())
}

func TestUIOff(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.UI.Enabled = false })
	for _, p := range []string{"/vmui/", "/login", "/prometheus/vmui/custom-dashboards"} {
		require.Equal(t, http.StatusNotFound, ts.do(http.MethodGet, p, "", nil).Code, p)
	}
	require.Equal(t, http.StatusUnauthorized, ts.do(http.MethodGet, "/api/v1/query?query=up", "", http.Header{"Cookie": {sessionCookie + "=x"}}).Code)
	require.True(t, strings.HasPrefix(ts.do(http.MethodGet, "/api/v1/query?query=up", "", bearer(keyAcme)).Body.String(), `{"status":"success"`))
}

// The Grafana dashboard shipped for customers who bring their own Grafana
// draws the same queries as the UI's dashboard.
func TestGrafanaDashboardMatchesTheUIs(t *testing.T) {
	var ui struct {
		Rows []struct {
			Panels []struct {
				Title string   `json:"title"`
				Expr  []string `json:"expr"`
			} `json:"panels"`
		} `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(gpuDashboard, &ui))
	raw, err := os.ReadFile(filepath.Join("dashboards", "grafana-gpu.json"))
	require.NoError(t, err)
	var graf struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &graf))
	want := map[string]string{}
	for _, r := range ui.Rows {
		for _, p := range r.Panels {
			require.Len(t, p.Expr, 1, p.Title)
			want[p.Title] = p.Expr[0]
		}
	}
	got := map[string]string{}
	for _, p := range graf.Panels {
		require.Len(t, p.Targets, 1, p.Title)
		got[p.Title] = p.Targets[0].Expr
	}
	require.Equal(t, want, got)
}

// A browser sent to the login page comes back to the page it asked for,
// and only to a page of this UI.
func TestLoginReturnsToThePageAsked(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Events.ClientConfig.Endpoint = "http://vlogs.example:9428" })
	rec := ts.do(http.MethodGet, "/events/?xid=79&host=acme-vm-1", "", nil)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	loc := rec.Header().Get("Location")
	require.Equal(t, "/login?next="+url.QueryEscape("/events/?xid=79&host=acme-vm-1"), loc)
	page := ts.do(http.MethodGet, loc, "", nil).Body.String()
	require.Contains(t, page, `name="next" value="/events/?xid=79&amp;host=acme-vm-1"`)
	rec = ts.do(http.MethodPost, "/login", url.Values{"key": {keyAcme}, "next": {"/events/?xid=79&host=acme-vm-1"}}.Encode(), nil)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	require.Equal(t, "/events/?xid=79&host=acme-vm-1", rec.Header().Get("Location"))
	for _, evil := range []string{"https://evil.example/", "//evil.example/vmui/", "/vmui//evil.example", "/\\evil.example", "/api/v1/query?query=up", "javascript:alert(1)", "/vmui/\r\nSet-Cookie: x=y"} {
		rec = ts.do(http.MethodPost, "/login", url.Values{"key": {keyAcme}, "next": {evil}}.Encode(), nil)
		require.Equal(t, "/vmui/#/dashboards", rec.Header().Get("Location"), evil)
		require.NotContains(t, ts.do(http.MethodGet, "/login?"+url.Values{"next": {evil}}.Encode(), "", nil).Body.String(), `name="next"`, evil)
	}
}
