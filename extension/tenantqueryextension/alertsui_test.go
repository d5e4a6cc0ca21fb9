package tenantqueryextension

import (
	"io/fs"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// withAlerts serves the alerting API (and so the alerts page).
func withAlerts(c *Config) { c.Alerts = "tenant_alerts" }

func TestAlertsPage(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { withAlerts(c); withEvents(c) })

	rec := ts.do(http.MethodGet, "/alerts", "", nil)
	require.Equal(t, http.StatusMovedPermanently, rec.Code)
	require.Equal(t, "/alerts/", rec.Header().Get("Location"))

	// Without a session (or with what is not a read key): the login page,
	// which brings the browser back here.
	for name, h := range map[string]http.Header{
		"nothing":        nil,
		"ingest token":   bearer(tokenAcme),
		"unknown key":    bearer("nope"),
		"forged session": {"Cookie": {sessionCookie + "=forged"}},
	} {
		for _, p := range []string{"/alerts/", "/alerts/index.html"} {
			rec := ts.do(http.MethodGet, p, "", h)
			require.Equal(t, http.StatusSeeOther, rec.Code, "%s %s", name, p)
			require.Equal(t, "/login?"+url.Values{"next": {p}}.Encode(), rec.Header().Get("Location"), "%s %s", name, p)
			require.NotContains(t, rec.Body.String(), "alerts.js", "%s %s", name, p)
		}
	}
	require.Equal(t, "/alerts/", safeNext("/alerts/"))

	// Signed in: the page, under the UI's CSP, never cached, with links to
	// the metrics and the events.
	for name, h := range map[string]http.Header{"session": loginCookie(t, ts, keyAcme), "bearer": bearer(keyGlobex)} {
		for _, p := range []string{"/alerts/", "/alerts/index.html"} {
			rec := ts.do(http.MethodGet, p, "", h)
			require.Equal(t, http.StatusOK, rec.Code, "%s %s", name, p)
			require.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
			require.Equal(t, uiCSP, rec.Header().Get("Content-Security-Policy"))
			require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
			body := rec.Body.String()
			require.Contains(t, body, `<script src="/alerts/alerts.js" defer></script>`)
			require.Contains(t, body, `id="to-events" href="/events/"`)
			require.Contains(t, body, `id="to-metrics"`)
		}
		require.Equal(t, http.StatusMethodNotAllowed, ts.do(http.MethodPost, "/alerts/", "", h).Code)
	}

	// Its script and style sheets: for everyone, revalidated by ETag.
	for p, ct := range map[string]string{
		"/alerts/alerts.js":  "text/javascript; charset=utf-8",
		"/alerts/alerts.css": "text/css; charset=utf-8",
		"/alerts/nav.css":    "text/css; charset=utf-8",
	} {
		rec := ts.do(http.MethodGet, p, "", nil)
		require.Equal(t, http.StatusOK, rec.Code, p)
		require.Equal(t, ct, rec.Header().Get("Content-Type"), p)
		require.Equal(t, "no-cache", rec.Header().Get("Cache-Control"), p)
		etag := rec.Header().Get("ETag")
		require.NotEmpty(t, etag, p)
		require.Equal(t, http.StatusNotModified, ts.do(http.MethodGet, p, "", http.Header{"If-None-Match": {etag}}).Code, p)
	}

	// Nothing else under /alerts, in any spelling.
	for _, p := range []string{
		"/alerts/nope.js", "/alerts/alertsui/alerts.js", "/alerts//alerts.js", "/alerts/./alerts.js",
		"/alerts/../vmui/", "/alerts/%2e%2e/login", "/alerts/alerts%2ejs", "/alerts/alerts.js/", "/ALERTS/", "/alertsx",
	} {
		require.Equal(t, http.StatusNotFound, ts.do(http.MethodGet, p, "", bearer(keyAcme)).Code, p)
	}

	// The events page and vmui link here.
	h := bearer(keyAcme)
	require.Contains(t, ts.do(http.MethodGet, "/events/", "", h).Body.String(), `<a id="to-alerts" href="/alerts/">Alerts</a>`)
	vmuiPage := ts.do(http.MethodGet, "/vmui/", "", h).Body.String()
	require.Contains(t, vmuiPage, vmuiNavAlerts)
	require.Contains(t, vmuiPage, vmuiNavEvents)
	require.Contains(t, vmuiPage, vmuiNavCSS)
	require.Empty(t, ts.store.taken(), "the page's files never touch the store")
}

// No page without the UI or the alerting API; no links to it either; the
// alerts page without the events page links no events.
func TestAlertsPageOff(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"no UI":     func(c *Config) { withAlerts(c); c.UI.Enabled = false },
		"no alerts": withEvents,
	} {
		ts := newTestServer(t, mutate)
		for _, p := range []string{"/alerts", "/alerts/", "/alerts/alerts.js", "/alerts/nav.css"} {
			require.Equal(t, http.StatusNotFound, ts.do(http.MethodGet, p, "", bearer(keyAcme)).Code, "%s: %s", name, p)
		}
		if ts.ui != nil {
			require.NotContains(t, ts.do(http.MethodGet, "/events/", "", bearer(keyAcme)).Body.String(), "/alerts/", name)
			require.NotContains(t, ts.do(http.MethodGet, "/vmui/", "", bearer(keyAcme)).Body.String(), "/alerts/", name)
		}
	}

	ts := newTestServer(t, withAlerts)
	page := ts.do(http.MethodGet, "/alerts/", "", bearer(keyAcme))
	require.Equal(t, http.StatusOK, page.Code)
	require.NotContains(t, page.Body.String(), "/events/")
	require.Contains(t, page.Body.String(), `id="to-metrics"`)
	vmuiPage := ts.do(http.MethodGet, "/vmui/", "", bearer(keyAcme)).Body.String()
	require.Contains(t, vmuiPage, vmuiNavAlerts)
	require.NotContains(t, vmuiPage, vmuiNavEvents)
	require.Contains(t, vmuiPage, vmuiNavCSSAlerts, "nav.css from the page that is served")
	require.Equal(t, http.StatusOK, ts.do(http.MethodGet, "/alerts/nav.css", "", nil).Code)
}

// The page runs under the UI's CSP: scripts only from files, every file it
// names is served, and its script never writes API data as HTML.
func TestAlertsPageKeepsToItsCSP(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { withAlerts(c); withEvents(c) })
	index := string(alertsAssets["index.html"].data)
	require.NotRegexp(t, `(?i)<script(?:\s+[^>]*)?>\s*[^<\s]`, index, "inline script")
	require.NotRegexp(t, `(?i)\son[a-z]+\s*=`, index, "inline event handler")
	require.NotRegexp(t, `(?i)\sstyle\s*=`, index, "inline style")
	require.NotContains(t, strings.ToLower(index), "javascript:")
	require.NotRegexp(t, `(?i)(?:src|href)="(?:https?:)?//`, index, "an external asset")
	refs := regexp.MustCompile(`(?:src|href)="(/alerts/[^"]+)"`).FindAllStringSubmatch(index, -1)
	require.Len(t, refs, 2)
	for _, ref := range refs {
		require.Equal(t, http.StatusOK, ts.do(http.MethodGet, ref[1], "", nil).Code, ref[1])
	}
	js := string(alertsAssets["alerts.js"].data)
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setTimeout('", "srcdoc", "http://", "https://"} {
		require.NotContains(t, js, sink)
	}
	require.Contains(t, js, "credentials: 'same-origin'")
	require.Contains(t, js, "'Content-Type'] = 'application/json'")
	require.Contains(t, js, "const API = '"+alertsPrefix+"'")
	for name := range alertsAssets {
		require.True(t, fs.ValidPath(name) && !strings.Contains(name, "/"), name)
	}
	// The pages for a listener without the other page lose only that link.
	require.NotContains(t, string(alertsIndexNoEvents.data), "/events/")
	require.Equal(t, strings.Count(index, "\n")-1, strings.Count(string(alertsIndexNoEvents.data), "\n"))
	require.NotContains(t, string(eventsIndexNoAlerts.data), "/alerts/")
	require.Contains(t, string(eventsIndexNoAlerts.data), `id="to-metrics"`)
}
