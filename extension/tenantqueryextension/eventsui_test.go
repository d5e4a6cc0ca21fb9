package tenantqueryextension

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// withEvents serves the events endpoints (and so the events page).
func withEvents(c *Config) { c.Events.ClientConfig.Endpoint = "http://vlogs.example:9428" }

// loginCookie signs key in through the login form and returns the session
// cookie as a request header.
func loginCookie(t *testing.T, ts *testServer, key string) http.Header {
	t.Helper()
	rec := ts.do(http.MethodPost, "/login", "key="+url.QueryEscape(key), nil)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	cookies := rec.Result().Cookies()
	require.Len(t, cookies, 1)
	return http.Header{"Cookie": {cookies[0].Name + "=" + cookies[0].Value}}
}

func TestEventsPage(t *testing.T) {
	ts := newTestServer(t, withEvents)

	// /events keeps the page's filters on its way to /events/.
	for target, want := range map[string]string{
		"/events":                     "/events/",
		"/events?xid=79&host=acme-vm": "/events/?xid=79&host=acme-vm",
	} {
		rec := ts.do(http.MethodGet, target, "", nil)
		require.Equal(t, http.StatusMovedPermanently, rec.Code, target)
		require.Equal(t, want, rec.Header().Get("Location"), target)
	}

	// Without a session (or with what is not a read key): the login page.
	for name, h := range map[string]http.Header{
		"nothing":        nil,
		"ingest token":   bearer(tokenAcme),
		"unknown key":    bearer("nope"),
		"forged session": {"Cookie": {sessionCookie + "=forged"}},
	} {
		for _, p := range []string{"/events/", "/events/?xid=79", "/events/index.html"} {
			rec := ts.do(http.MethodGet, p, "", h)
			require.Equal(t, http.StatusSeeOther, rec.Code, "%s %s", name, p)
			require.Equal(t, "/login?"+url.Values{"next": {p}}.Encode(), rec.Header().Get("Location"), "%s %s", name, p)
			require.NotContains(t, rec.Body.String(), "events.js", "%s %s", name, p)
		}
	}

	// Signed in (browser session, or a key in the header): the page, under
	// the UI's CSP, never cached.
	for name, h := range map[string]http.Header{"session": loginCookie(t, ts, keyAcme), "bearer": bearer(keyGlobex)} {
		for _, p := range []string{"/events/", "/events/?host=acme-vm-1&gpu=GPU-1&xid=79", "/events/index.html"} {
			rec := ts.do(http.MethodGet, p, "", h)
			require.Equal(t, http.StatusOK, rec.Code, "%s %s", name, p)
			require.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
			require.Equal(t, uiCSP, rec.Header().Get("Content-Security-Policy"))
			require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
			require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
			require.Contains(t, rec.Body.String(), `<script src="/events/events.js" defer></script>`)
		}
		require.Equal(t, http.StatusOK, ts.do(http.MethodHead, "/events/", "", h).Code)
		require.Equal(t, http.StatusMethodNotAllowed, ts.do(http.MethodPost, "/events/", "", h).Code)
	}

	// Its script and style sheets: for everyone, revalidated by ETag.
	for p, ct := range map[string]string{
		"/events/events.js":  "text/javascript; charset=utf-8",
		"/events/events.css": "text/css; charset=utf-8",
		"/events/nav.css":    "text/css; charset=utf-8",
	} {
		rec := ts.do(http.MethodGet, p, "", nil)
		require.Equal(t, http.StatusOK, rec.Code, p)
		require.Equal(t, ct, rec.Header().Get("Content-Type"), p)
		require.Equal(t, uiCSP, rec.Header().Get("Content-Security-Policy"), p)
		require.Equal(t, "no-cache", rec.Header().Get("Cache-Control"), p)
		etag := rec.Header().Get("ETag")
		require.NotEmpty(t, etag, p)
		require.Equal(t, http.StatusNotModified, ts.do(http.MethodGet, p, "", http.Header{"If-None-Match": {etag}}).Code, p)
		require.Equal(t, http.StatusMethodNotAllowed, ts.do(http.MethodPost, p, "", nil).Code, p)
	}

	// Nothing else under /events, in any spelling.
	for _, p := range []string{
		"/events/nope.js", "/events/eventsui/events.js", "/events//events.js", "/events/./events.js",
		"/events/../vmui/", "/events/%2e%2e/login", "/events/events%2ejs", "/events/events.js/", "/events/EVENTS.JS",
		"/EVENTS/", "/events/index.html/", "/events/assets/", "/eventsx", "/events.js",
	} {
		require.Equal(t, http.StatusNotFound, ts.do(http.MethodGet, p, "", bearer(keyAcme)).Code, p)
	}
	require.Empty(t, ts.store.taken(), "the page's files never touch the store")
}

// No page without the UI, nor without the events endpoints it reads.
func TestEventsPageOff(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"no UI":     func(c *Config) { withEvents(c); c.UI.Enabled = false },
		"no events": nil,
	} {
		ts := newTestServer(t, mutate)
		for _, p := range []string{"/events", "/events/", "/events/events.js", "/events/nav.css"} {
			require.Equal(t, http.StatusNotFound, ts.do(http.MethodGet, p, "", bearer(keyAcme)).Code, "%s: %s", name, p)
		}
	}
}

// The page runs under the UI's CSP: scripts only from files (no inline
// script, no inline handlers), every file it names is served, and its
// script never writes records into the page as HTML.
func TestEventsPageKeepsToItsCSP(t *testing.T) {
	ts := newTestServer(t, withEvents)
	index := string(eventsAssets["index.html"].data)
	require.NotRegexp(t, `(?i)<script(?:\s+[^>]*)?>\s*[^<\s]`, index, "inline script")
	require.NotRegexp(t, `(?i)\son[a-z]+\s*=`, index, "inline event handler")
	require.NotRegexp(t, `(?i)\sstyle\s*=`, index, "inline style")
	require.NotContains(t, strings.ToLower(index), "javascript:")
	refs := regexp.MustCompile(`(?:src|href)="(/events/[^"]+)"`).FindAllStringSubmatch(index, -1)
	require.Len(t, refs, 2)
	for _, ref := range refs {
		require.Equal(t, http.StatusOK, ts.do(http.MethodGet, ref[1], "", nil).Code, ref[1])
	}
	js := string(eventsAssets["events.js"].data)
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setTimeout('", "srcdoc"} {
		require.NotContains(t, js, sink)
	}
	require.Contains(t, js, "credentials: 'same-origin'")
	require.Contains(t, js, "'/select/logsql/query?'")
	for name := range eventsAssets {
		require.True(t, fs.ValidPath(name) && !strings.Contains(name, "/"), name)
	}
}

// vmui has no way to show a link from a panel (descriptions are markdown,
// but in a tooltip that closes when the pointer leaves the panel's info
// icon), nor a sign-out button: vmuiIndexWithNav adds both to vmui's page.
func TestVMUIIndexWithNav(t *testing.T) {
	ts := newTestServer(t, nil)
	index, err := fs.ReadFile(ts.ui.files, "index.html")
	require.NoError(t, err)
	for _, events := range []bool{true, false} {
		got, err := vmuiIndexWithNav(index, events, false)
		require.NoError(t, err)
		page := string(got)
		require.Equal(t, 1, strings.Count(page, vmuiNavCSS))
		require.Less(t, strings.Index(page, vmuiNavCSS), strings.Index(page, "</head>"))
		navStart, navEnd := strings.Index(page, `<nav id="otelcol-gpu-nav"`), strings.Index(page, "</nav>")+len("</nav>")
		require.Equal(t, strings.Index(page, "<body>")+len("<body>"), navStart, "right after <body>")
		require.Less(t, navEnd, strings.Index(page, `<div id="root">`))
		nav := page[navStart:navEnd]
		require.Equal(t, string(index), strings.Replace(strings.Replace(page, nav, "", 1), vmuiNavCSS, "", 1),
			"nothing else of vmui's page changes")
		require.Equal(t, events, strings.Contains(nav, `<a id="otelcol-gpu-nav-events" href="/events/">`))
		require.Contains(t, nav, `<form method="post" action="/logout">`)
		require.NotRegexp(t, `(?i)\son[a-z]+\s*=|<script|\sstyle\s*=`, nav+vmuiNavCSS)
	}
	require.Equal(t, http.StatusOK, newTestServer(t, withEvents).do(http.MethodGet, "/events/nav.css", "", nil).Code)

	for _, bad := range []string{"", "<html><body></body></html>", "<body></body><head></head>"} {
		_, err := vmuiIndexWithNav([]byte(bad), true, false)
		require.Error(t, err, bad)
	}
}

// The GPU dashboard's XID panel points at the events page (in its
// description: markdown, which vmui renders).
func TestGPUDashboardLinksToEvents(t *testing.T) {
	var dash struct {
		Rows []struct {
			Panels []struct {
				Title       string `json:"title"`
				Description string `json:"description"`
			} `json:"panels"`
		} `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(gpuDashboard, &dash))
	found := false
	for _, r := range dash.Rows {
		for _, p := range r.Panels {
			if strings.HasPrefix(p.Title, "XID errors") {
				found = true
				require.Regexp(t, `\]\(/events/(\?[^)\s]*)?\)`, p.Description)
			}
		}
	}
	require.True(t, found, "the XID panel")
}
