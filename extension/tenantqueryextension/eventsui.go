package tenantqueryextension

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// eventsUIPath is where the customers' GPU events page is served.
const eventsUIPath = "/events"

// eventsUIFiles is the events page: its HTML, script and style sheet, all
// served from this origin (the UI's CSP allows no inline script). The
// script reads the tenant's XID records from /select/logsql/query with the
// browser's session, like vmui reads metrics from /prometheus/api/v1.
//
//go:embed eventsui
var eventsUIFiles embed.FS

// eventsAsset is one file of the page, ready to serve.
type eventsAsset struct {
	contentType string
	etag        string
	data        []byte
}

// eventsAssets are the files under /events/ by name; index.html is the
// page itself (at /events/).
var eventsAssets = pageAssets(eventsUIFiles, "eventsui")

// pageAssets reads a page's embedded files (under dir) by name, each with
// its content type and ETag.
func pageAssets(files embed.FS, dir string) map[string]eventsAsset {
	out := map[string]eventsAsset{}
	err := fs.WalkDir(files, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			return errors.New(p + ": no content type")
		}
		out[strings.TrimPrefix(p, dir+"/")] = newPageAsset(ct, data)
		return nil
	})
	if err != nil {
		panic("tenant_query: the " + dir + " page's files: " + err.Error())
	}
	return out
}

func newPageAsset(contentType string, data []byte) eventsAsset {
	sum := sha256.Sum256(data)
	return eventsAsset{contentType: contentType, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, data: data}
}

// page is one of the listener's own pages beside vmui (events, alerts):
// its path, its files, and the index it serves here.
type page struct {
	path   string
	assets map[string]eventsAsset
	index  eventsAsset
}

// servePage answers a page's paths; false when p is not one. The page
// needs a session (else: the login page, as /vmui/ does); its script and
// style sheets are the same for everyone and need none. p is the path as
// sent (escaped): only the exact spellings below are served.
func (s *queryServer) servePage(w http.ResponseWriter, r *http.Request, p string, pg page) bool {
	name, ok := strings.CutPrefix(p, pg.path+"/")
	switch {
	case p == pg.path:
		if !getOrHead(w, r) {
			return true
		}
		// The filters (?host=&gpu=&xid=&start=&end=) go along.
		target := pg.path + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
		return true
	case !ok:
		return false
	case name == "" || name == "index.html":
		if !getOrHead(w, r) {
			return true
		}
		if _, _, res := s.identify(r); res != authOK {
			loginRedirect(w, r)
			return true
		}
		w.Header().Set("Cache-Control", "no-store")
		writeStatic(w, r, pg.index.contentType, pg.index.data)
		return true
	}
	a, found := pg.assets[name]
	if !found {
		return false
	}
	// Not content-hashed names: the browser asks again, and gets a 304
	// while the file is the same.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", a.etag)
	writeStatic(w, r, a.contentType, a.data)
	return true
}

// serveEventsUI answers the events page's paths, where events are served.
func (s *queryServer) serveEventsUI(w http.ResponseWriter, r *http.Request, p string) bool {
	if s.cfg.Events.ClientConfig.Endpoint == "" {
		return false // no events endpoints: no page that would read them
	}
	index := eventsAssets["index.html"]
	if s.cfg.Alerts == "" {
		index = eventsIndexNoAlerts // no alerts page to link to
	}
	return s.servePage(w, r, p, page{path: eventsUIPath, assets: eventsAssets, index: index})
}

// getOrHead refuses (405) any other method.
func getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// vmuiNavEvents, vmuiNavAlerts and vmuiNavSignOut are what vmuiIndexWithNav puts into
// vmui's page: a link to the events page, which vmui itself has no way to
// show (its panels render links only in a hover tooltip that closes before
// the pointer reaches them), and a sign-out button (logout is a
// same-origin POST, and vmui has none). Styled by /events/nav.css; no
// script.
const (
	vmuiNavEvents  = `<a id="otelcol-gpu-nav-events" href="/events/">GPU events (XID errors)</a>`
	vmuiNavAlerts  = `<a id="otelcol-gpu-nav-alerts" href="/alerts/">Alerts</a>`
	vmuiNavSignOut = `<form method="post" action="/logout"><button id="otelcol-gpu-nav-signout" type="submit">Sign out</button></form>`
	vmuiNavCSS     = `<link rel="stylesheet" href="/events/nav.css">`
	// vmuiNavCSSAlerts is the same style sheet where only the alerts page
	// is served (alertsui.go serves nav.css too).
	vmuiNavCSSAlerts = `<link rel="stylesheet" href="/alerts/nav.css">`
)

// vmuiIndexWithNav returns vmui's index.html with the nav (the events and
// alerts links where they are served, and the sign-out button) and its
// style sheet added: for ui.go to serve at /vmui/ instead of the file as
// shipped. An index.html without </head> followed by <body> (a vmui release
// of another shape) is an error, not a page without the nav.
func vmuiIndexWithNav(index []byte, events, alerts bool) ([]byte, error) {
	head := bytes.Index(index, []byte("</head>"))
	body := bytes.Index(index, []byte("<body>"))
	if head < 0 || body < head {
		return nil, errors.New("vmui's index.html has no </head> followed by <body>")
	}
	body += len("<body>")
	nav := `<nav id="otelcol-gpu-nav" class="otelcol-gpu-nav" aria-label="GPU events, alerts and sign-out">`
	if events {
		nav += vmuiNavEvents
	}
	if alerts {
		nav += vmuiNavAlerts
	}
	nav += vmuiNavSignOut + `</nav>`
	css := vmuiNavCSS
	if alerts && !events {
		css = vmuiNavCSSAlerts
	}
	out := make([]byte, 0, len(index)+len(css)+len(nav))
	out = append(out, index[:head]...)
	out = append(out, css...)
	out = append(out, index[head:body]...)
	out = append(out, nav...)
	out = append(out, index[body:]...)
	return out, nil
}
