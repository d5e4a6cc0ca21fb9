package tenantqueryextension

import (
	"bytes"
	_ "embed" // the GPU dashboard
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantqueryextension/internal/vmui"
	"github.com/otelcol-gpu/otelcol-gpu/internal/credentials"
)

// gpuDashboard is vmui's predefined GPU dashboard (dashboards/gpu.json).
//
//go:embed dashboards/gpu.json
var gpuDashboard []byte

// uiCSP keeps the UI's pages to this origin: scripts only from here (vmui
// has no inline script), no framing, queries only to this origin's API.
const uiCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; " +
	"font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; " +
	"form-action 'self'; object-src 'none'"

// uiAssets is what the UI serves besides the API: vmui's files, the
// dashboard in the two shapes vmui asks for, and the login page.
type uiAssets struct {
	files            fs.FS
	dashboardsIndex  []byte // /vmui/dashboards/index.js
	customDashboards []byte // /prometheus/vmui/custom-dashboards
	timezone         []byte // /prometheus/vmui/timezone
	vmuiIndex        []byte // /vmui/: vmui's index.html with the nav (events, sign-out)
	vmuiIndexAlerts  []byte // the same with the alerts page's link, where tenant_query.alerts is set
	login            *template.Template
}

func newUIAssets(timezone string, events bool) (*uiAssets, error) {
	var dash json.RawMessage
	if err := json.Unmarshal(gpuDashboard, &dash); err != nil {
		return nil, fmt.Errorf("dashboards/gpu.json: %w", err)
	}
	custom, err := json.Marshal(map[string][]json.RawMessage{"dashboardsSettings": {dash}})
	if err != nil {
		return nil, err
	}
	tz, err := json.Marshal(map[string]string{"timezone": timezone})
	if err != nil {
		return nil, err
	}
	index, err := fs.ReadFile(vmui.FS(), "index.html")
	if err != nil {
		return nil, err
	}
	vmuiIndex, err := vmuiIndexWithNav(index, events, false)
	if err != nil {
		return nil, err
	}
	vmuiIndexAlerts, err := vmuiIndexWithNav(index, events, true)
	if err != nil {
		return nil, err
	}
	return &uiAssets{
		vmuiIndex:        vmuiIndex,
		vmuiIndexAlerts:  vmuiIndexAlerts,
		files:            vmui.FS(),
		dashboardsIndex:  []byte("window.__VMUI_PREDEFINED_DASHBOARDS__ = [\"gpu.json\"];\n"),
		customDashboards: custom,
		timezone:         tz,
		login:            template.Must(template.New("login").Parse(loginPage)),
	}, nil
}

// serveUI answers the UI's paths; false when path is not one of them.
func (s *queryServer) serveUI(w http.ResponseWriter, r *http.Request, p string) bool {
	if p == eventsUIPath || strings.HasPrefix(p, eventsUIPath+"/") {
		return s.serveEventsUI(w, r, p)
	}
	if p == alertsUIPath || strings.HasPrefix(p, alertsUIPath+"/") {
		return s.serveAlertsUI(w, r, p)
	}
	switch p {
	case "/":
		http.Redirect(w, r, "/vmui/", http.StatusSeeOther)
	case "/vmui":
		http.Redirect(w, r, "/vmui/", http.StatusMovedPermanently)
	case "/login":
		s.serveLogin(w, r)
	case "/logout":
		s.serveLogout(w, r)
	case "/vmui/", "/vmui/index.html":
		if _, _, res := s.identify(r); res != authOK {
			loginRedirect(w, r)
			return true
		}
		index := s.ui.vmuiIndex
		if s.cfg.Alerts != "" {
			index = s.ui.vmuiIndexAlerts
		}
		w.Header().Set("Cache-Control", "no-store")
		writeStatic(w, r, "text/html; charset=utf-8", index)
	case "/vmui/dashboards/index.js":
		writeStatic(w, r, "text/javascript; charset=utf-8", s.ui.dashboardsIndex)
	case "/vmui/dashboards/gpu.json":
		writeStatic(w, r, "application/json", gpuDashboard)
	case uiAPIPrefix + "/vmui/custom-dashboards":
		writeStatic(w, r, "application/json", s.ui.customDashboards)
	case uiAPIPrefix + "/vmui/timezone":
		writeStatic(w, r, "application/json", s.ui.timezone)
	case uiAPIPrefix + "/vmui/config.json":
		s.serveFile(w, r, "config.json")
	default:
		name, ok := strings.CutPrefix(p, "/vmui/")
		if !ok || !fs.ValidPath(name) || strings.Contains(name, "%") || name == "index.html" {
			return false
		}
		if st, err := fs.Stat(s.ui.files, name); err != nil || st.IsDir() {
			return false
		}
		if strings.HasPrefix(name, "assets/") { // content-hashed names
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		s.serveFile(w, r, name)
	}
	return true
}

func (s *queryServer) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	data, err := fs.ReadFile(s.ui.files, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	writeStatic(w, r, ct, data)
}

func writeStatic(w http.ResponseWriter, r *http.Request, contentType string, data []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Security-Policy", uiCSP)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// serveLogin shows the login form (GET) or checks a key POSTed from it and
// starts a session: the key travels once, in a form body, never in a URL;
// the browser keeps only an HttpOnly, Secure, SameSite=Strict cookie with a
// random session id. (Browsers keep Secure cookies over plain http only
// for localhost: elsewhere the UI needs TLS on this listener.)
func (s *queryServer) serveLogin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", uiCSP)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.renderLogin(w, r, http.StatusOK, "")
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if s.crossOrigin(w, r, "login") {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		s.renderLogin(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	key := strings.TrimSpace(r.PostForm.Get("key"))
	set := s.creds.Set()
	if set.Unavailable() != nil {
		s.tel.refuse(r.Context(), "", string(authUnavailable))
		w.Header().Set("Retry-After", "60")
		s.renderLogin(w, r, http.StatusServiceUnavailable, "Sign-in is unavailable right now; try again in a minute.")
		return
	}
	cred, found := set.Lookup(key)
	if key == "" || !found || cred.Scope != credentials.ScopeRead {
		source := sourceOf(r)
		if retry, blocked := s.failures.Blocked(source); blocked {
			s.tel.refuse(r.Context(), "", "throttled")
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
			s.renderLogin(w, r, http.StatusTooManyRequests, "Too many failed sign-ins from this address; try again in a minute.")
			return
		}
		s.failures.Fail(source)
		reason := "invalid"
		if found {
			reason = "wrong_scope"
		}
		s.tel.refuse(r.Context(), "", reason)
		if s.anonLog.Allow() {
			s.logger.Info("login refused", zap.String("reason", reason), zap.String("source", source))
		}
		s.renderLogin(w, r, http.StatusUnauthorized, "That is not a read API key.")
		return
	}
	s.keyUsed(cred, time.Now())
	id, err := s.sessions.create(cred)
	if errors.Is(err, errSessionsFull) {
		s.tel.refuse(r.Context(), cred.Tenant, "sessions_full")
		w.Header().Set("Retry-After", "60")
		s.renderLogin(w, r, http.StatusServiceUnavailable, "Too many browser sessions on this gateway; try again in a minute.")
		return
	}
	if err != nil {
		http.Error(w, "could not start a session", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", MaxAge: int(s.cfg.UI.SessionTTL.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	s.logger.Info("login", zap.String("tenant", cred.Tenant), zap.String("key_id", cred.ID), zap.String("source", sourceOf(r)))
	target := safeNext(r.PostForm.Get("next"))
	if target == "" {
		target = "/vmui/#/dashboards"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// crossOrigin refuses (403) what another site's page posted; true when it
// did.
func (s *queryServer) crossOrigin(w http.ResponseWriter, r *http.Request, what string) bool {
	if sameOrigin(r) {
		return false
	}
	s.tel.refuse(r.Context(), "", "cross_origin")
	http.Error(w, what+" from another origin refused", http.StatusForbidden)
	return true
}

// sameOrigin refuses a login posted by another site's page (login CSRF):
// browsers say where a request comes from in Sec-Fetch-Site, older ones in
// Origin. Clients that send neither (curl) are not browsers at risk.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// serveLogout ends the browser's session: a POST from this origin only
// (a link or a form on another site cannot log a customer out), answered
// with the cookie's removal and the login page.
func (s *queryServer) serveLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "sign out with a POST from this site's pages", http.StatusMethodNotAllowed)
		return
	}
	if s.crossOrigin(w, r, "sign-out") {
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.drop(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *queryServer) renderLogin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = s.ui.login.Execute(w, struct{ Problem, Next string }{problem, safeNext(r.FormValue("next"))})
}

// loginRedirect sends a browser without a session to the login page, which
// brings it back to what it asked for once signed in.
func loginRedirect(w http.ResponseWriter, r *http.Request) {
	target := "/login"
	if next := safeNext(r.URL.RequestURI()); next != "" && next != "/vmui/" && next != "/vmui/index.html" {
		target += "?" + url.Values{"next": {next}}.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// safeNext is where a login may send the browser: a page of this UI
// (/vmui/, /events/ or /alerts/, with its query), never another host or
// scheme; "" for anything else.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/vmui/") && !strings.HasPrefix(next, eventsUIPath+"/") && !strings.HasPrefix(next, alertsUIPath+"/") {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.ContainsAny(next, "\\\r\n") || strings.Contains(next, "//") {
		return ""
	}
	return next
}

const loginPage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Sign in: GPU metrics</title>
<style>
body { font-family: system-ui, sans-serif; background: #f4f5f7; display: flex; min-height: 100vh; margin: 0; align-items: center; justify-content: center; }
form { background: #fff; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.15); width: 22rem; }
h1 { font-size: 1.2rem; margin: 0 0 1rem; }
label { display: block; font-size: .9rem; margin-bottom: .3rem; }
input { width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; margin-bottom: 1rem; }
button { padding: .5rem 1.2rem; font-size: 1rem; }
.problem { color: #b00020; margin-bottom: 1rem; }
</style>
</head>
<body>
<form method="post" action="/login" autocomplete="off">
{{if .Next}}<input type="hidden" name="next" value="{{.Next}}">{{end}}
<h1>Your GPU metrics</h1>
{{if .Problem}}<div class="problem" id="problem">{{.Problem}}</div>{{end}}
<label for="key">Read API key</label>
<input id="key" name="key" type="password" required autofocus>
<button id="signin" type="submit">Sign in</button>
</form>
</body>
</html>
`
