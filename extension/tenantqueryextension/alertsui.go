package tenantqueryextension

import (
	"bytes"
	"embed"
	"net/http"
)

// alertsUIPath is where the customers' GPU alerts page is served.
const alertsUIPath = "/alerts"

// alertsUIFiles is the alerts page: its HTML, script and style sheet, all
// served from this origin (the UI's CSP allows no inline script). The
// script reads and changes the tenant's rules, receivers and silences
// through /alerting/v1/ with the browser's session.
//
//go:embed alertsui
var alertsUIFiles embed.FS

// alertsAssets are the files under /alerts/ by name (index.html is the
// page itself, at /alerts/), with the events page's nav.css: the vmui nav
// links it from here when only alerts are served.
var alertsAssets = func() map[string]eventsAsset {
	out := pageAssets(alertsUIFiles, "alertsui")
	out["nav.css"] = eventsAssets["nav.css"]
	return out
}()

// The pages without the link to the other one, for a listener that
// serves only one of them: the line of index.html with the link's id goes.
var (
	alertsIndexNoEvents = withoutLine(alertsAssets["index.html"], `id="to-events"`)
	eventsIndexNoAlerts = withoutLine(eventsAssets["index.html"], `id="to-alerts"`)
)

// withoutLine is a with the line that has marker removed.
func withoutLine(a eventsAsset, marker string) eventsAsset {
	i := bytes.Index(a.data, []byte(marker))
	if i < 0 {
		panic("tenant_query: a page has no " + marker)
	}
	start := bytes.LastIndexByte(a.data[:i], '\n') + 1
	end := len(a.data)
	if j := bytes.IndexByte(a.data[i:], '\n'); j >= 0 {
		end = i + j + 1
	}
	data := append(append([]byte{}, a.data[:start]...), a.data[end:]...)
	return newPageAsset(a.contentType, data)
}

// serveAlertsUI answers the alerts page's paths, where alerts are served.
func (s *queryServer) serveAlertsUI(w http.ResponseWriter, r *http.Request, p string) bool {
	if s.cfg.Alerts == "" {
		return false // no alerting API: no page that would use it
	}
	index := alertsAssets["index.html"]
	if s.cfg.Events.ClientConfig.Endpoint == "" {
		index = alertsIndexNoEvents
	}
	return s.servePage(w, r, p, page{path: alertsUIPath, assets: alertsAssets, index: index})
}
