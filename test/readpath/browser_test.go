//go:build e2e

package readpath

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/outbound"
)

// testBrowser logs in to the UI as a customer would, in Debian's Chromium:
// the GPU dashboard shows acme's VMs and none of globex's; a wrong key gets
// the login page again and no data; the session cookie is out of the
// page's reach. It leaves a screenshot of the dashboard at
// $READPATH_SCREENSHOT (make screenshot puts it in docs/img).
func testBrowser(t *testing.T, e *env) {
	chromium := os.Getenv("CHROMIUM_BIN")
	if chromium == "" {
		var err error
		chromium, err = exec.LookPath("chromium")
		require.NoError(t, err, "Chromium is needed (Debian: apt-get install chromium; make readpath installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1500, 1100),
		// The gateway's certificate is from the tests' development CA.
		chromedp.Flag("ignore-certificate-errors", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	// The first Run starts the browser; it lives as long as ctx.
	t.Logf("browser: starting %s", chromium)
	_, err := chromedp.Run(ctx, chromedp.Title())
	require.NoError(t, err)
	text := func() string {
		v, err := within(ctx, 20*time.Second, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
		require.NoError(t, err)
		return v
	}
	location := func() string {
		v, err := within(ctx, 20*time.Second, chromedp.Location())
		require.NoError(t, err)
		return v
	}
	do := func(step string, steps ...chromedp.Action[chromedp.Void]) {
		t.Logf("browser: %s", step)
		_, err := within(ctx, 30*time.Second, chromedp.Steps(steps...))
		if err != nil {
			loc, _ := within(ctx, 5*time.Second, chromedp.Location())
			html, _ := within(ctx, 5*time.Second, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
			t.Fatalf("%s: %v\nthe browser is at %s, showing:\n%s", step, err, loc, html)
		}
	}

	// Not logged in: the UI sends the browser to the login page.
	do("open the UI", chromedp.Navigate(e.readURL+"/vmui/"), chromedp.WaitVisible(chromedp.ID("key")))
	require.Equal(t, e.readURL+"/login", location())

	// A wrong key (here: acme's ingest token) gets no session and no data.
	login := func(step, key, then string) {
		do(step, chromedp.SendKeys(chromedp.ID("key"), key), chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID(then)))
	}
	login("log in with a wrong key", e.secrets["acme-token"], "problem")
	problem, err := within(ctx, 20*time.Second, chromedp.Text(chromedp.ID("problem")))
	require.NoError(t, err)
	require.Contains(t, problem, "not a read API key")
	require.Equal(t, 401, fetchStatus(t, ctx, "/prometheus/api/v1/query?query=hw.power"), "no data without a login")
	do("open the UI again", chromedp.Navigate(e.readURL+"/vmui/"), chromedp.WaitVisible(chromedp.ID("key")))
	require.Equal(t, e.readURL+"/login", location())

	// acme logs in and lands on the GPU dashboard.
	login("log in as acme", e.secrets["acme-key"], "root")
	loc := location()
	require.NotContains(t, loc, e.secrets["acme-key"], "the key never goes into a URL")
	require.Contains(t, loc, "/vmui/")
	var page string
	require.Eventually(t, func() bool {
		page = text()
		return strings.Contains(page, "GPU utilization") && strings.Contains(page, "acme-vm-1") && strings.Contains(page, "acme-vm-2")
	}, 60*time.Second, 500*time.Millisecond, "the GPU dashboard with acme's VMs; the page says:\n%s", page)
	// Every panel (one row, open) with acme's VMs in its legend.
	require.Eventually(t, func() bool {
		page = text()
		return strings.Contains(page, "Power draw") && strings.Contains(page, "GPUs not healthy") && strings.Count(page, "acme-vm-1") >= 8
	}, 60*time.Second, 500*time.Millisecond, "every panel with acme's VMs; the page says:\n%s", page)
	require.NotContains(t, page, "globex", "another tenant's VM on acme's dashboard")
	for _, panel := range []string{"GPU memory used", "Power draw", "Temperature", "SM clock", "XID errors", "GPUs not healthy"} {
		require.Contains(t, page, panel)
	}

	// The session cookie: HttpOnly (the page's scripts cannot read it),
	// Secure, SameSite=Strict, host-only on path / (the __Host- prefix,
	// which browsers take only so: no sibling host can plant or shadow
	// it), and not the key.
	cookies, err := within(ctx, 20*time.Second, func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
		return res.Cookies, err
	})
	require.NoError(t, err)
	require.Len(t, cookies, 1)
	c := cookies[0]
	require.Equal(t, "__Host-otelcol_gpu_session", c.Name)
	require.True(t, c.HTTPOnly)
	require.True(t, c.Secure)
	require.Equal(t, network.CookieSameSiteStrict, c.SameSite)
	require.Equal(t, "/", c.Path)
	readHost, err := url.Parse(e.readURL)
	require.NoError(t, err)
	require.Equal(t, readHost.Hostname(), c.Domain, "a host-only cookie")
	require.False(t, c.Session, "the session lasts ui.session_ttl, not the browser's life")
	require.NotContains(t, c.Value, e.secrets["acme-key"])
	setCookie := e.read(request{method: http.MethodPost, target: "/login", form: "key=" + url.QueryEscape(e.secrets["acme-key-2"]), noRedirect: true}).header.Values("Set-Cookie")
	require.Len(t, setCookie, 1)
	for _, attr := range []string{"Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		require.Contains(t, setCookie[0], attr)
	}
	require.NotContains(t, strings.ToLower(setCookie[0]), "domain=", "no Domain: a __Host- cookie")
	jsCookies, err := within(ctx, 20*time.Second, chromedp.Evaluate[string](`document.cookie`))
	require.NoError(t, err)
	require.Empty(t, jsCookies)

	// From the logged-in page, a script asking for globex gets acme's data.
	body, err := within(ctx, 20*time.Second, chromedp.Evaluate[string](
		`fetch('/prometheus/api/v1/series?match[]=hw.power&extra_label=tenant_id%3Dglobex').then(r => r.text())`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	require.Contains(t, body, "acme-vm-1")
	require.NotContains(t, body, "globex")

	if out := os.Getenv("READPATH_SCREENSHOT"); out != "" {
		png, err := within(ctx, 30*time.Second, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(out), 0o755))
		require.NoError(t, os.WriteFile(out, png, 0o644))
		t.Logf("screenshot: %s", out)
	}

	b := &browser{t: t, ctx: ctx, e: e, do: do, text: text, location: location}
	b.events()
	b.crossOriginLogout()
	b.signOut()
	b.dashboardNav()
	b.alerts()
}

// browser is one logged-in Chromium and the steps testBrowser shares.
type browser struct {
	t        *testing.T
	ctx      context.Context
	e        *env
	do       func(step string, steps ...chromedp.Action[chromedp.Void])
	text     func() string
	location func() string
}

// eval runs a script in the page and returns its value.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := within(b.ctx, 20*time.Second, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	require.NoError(b.t, err, js)
	return v
}

// rowsJS is the text of the events table's rows, one string (cells joined
// by " | ") a row; null while the table is not shown.
const rowsJS = `(() => {
	const s = document.getElementById('records-section');
	if (!s || s.hidden) return null;
	return [...document.querySelectorAll('#records tbody tr')].map(tr => [...tr.cells].map(td => td.innerText.replace(/\s+/g, ' ').trim()).join(' | '));
})()`

// rows is the events table's rows (rowsJS); none while a page loads.
func (b *browser) rows() []string {
	v, err := within(b.ctx, 5*time.Second, chromedp.Evaluate[[]string](rowsJS))
	if err != nil {
		return nil
	}
	return v
}

// waitRows waits for the events table to show n records.
func (b *browser) waitRows(n int) []string {
	b.t.Helper()
	var rows []string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if rows = b.rows(); len(rows) == n {
			return rows
		}
		time.Sleep(250 * time.Millisecond)
	}
	b.t.Fatalf("the events table with %d records; it has %q; the page at %s says:\n%s", n, rows, b.location(), b.text())
	return nil
}

// events follows the GPU dashboard's XID panel to the events page and
// checks it shows acme's XID records, and nothing of globex's.
func (b *browser) events() {
	t, e := b.t, b.e
	// The XID panel's description (markdown in a tooltip on its info icon,
	// shown while the pointer is over the icon) links to the events page.
	icon := eval[[2]float64](b, `(() => {
		const panel = [...document.querySelectorAll('.vm-predefined-panel')].find(p => p.querySelector('h3').textContent.startsWith('XID errors'));
		const icon = panel.querySelector('.vm-predefined-panel-header__info');
		icon.scrollIntoView({block: 'center'});
		const r = icon.getBoundingClientRect();
		return [r.left + r.width / 2, r.top + r.height / 2];
	})()`)
	b.do("point at the XID panel's info icon", chromedp.MouseEvent(chromedp.MouseMoved, icon[0], icon[1]), chromedp.WaitVisible(chromedp.CSS(`.vm-tooltip a[href^="/events/"]`)))
	link := eval[string](b, `document.querySelector('.vm-tooltip a[href^="/events/"]').getAttribute('href')`)
	require.True(t, strings.HasPrefix(link, "/events/"), link)
	// vmui closes that tooltip as soon as the pointer leaves the icon, so
	// no pointer reaches the link: the test goes where it points (the link
	// on every vmui page is checked in dashboardNav).
	b.do("follow the XID panel's link", chromedp.Navigate(e.readURL+link), chromedp.WaitVisible(chromedp.ID("records-section")))
	require.Equal(t, e.readURL+link, b.location())

	rows := b.waitRows(len(xidEvents["acme"]))
	page := b.text()
	for _, x := range xidEvents["acme"] {
		want := []string{x.vm, gpuName(x.gpu), gpuID(x.vm, x.gpu), strconv.Itoa(x.code), x.desc, x.severity()}
		found := false
		for _, r := range rows {
			has := true
			for _, w := range want {
				has = has && strings.Contains(r, w)
			}
			found = found || has
		}
		require.True(t, found, "a row with %q in %q", want, rows)
	}
	require.NotContains(t, page, "globex", "another tenant's events on acme's page")
	require.NotContains(t, page, "Contained ECC error")
	// The records are customer data: markup in them is shown, not run.
	require.Contains(t, page, `<img id="xss"`)
	require.False(t, eval[bool](b, `document.getElementById('xss') !== null`), "markup from a record became an element")
	require.Equal(t, "acme-vm-1 3\nacme-vm-2 2", eval[string](b,
		`[...document.querySelectorAll('#by-vm tr')].map(tr => tr.cells[0].innerText + ' ' + tr.cells[1].innerText).join('\n')`))

	// A count is a link to the records it counts.
	b.do("follow the count of XID 13", chromedp.Click(chromedp.CSS(`#by-xid a.count[href*="xid=13"]`)), chromedp.WaitVisible(chromedp.CSS(".chip")))
	require.Contains(t, b.location(), "xid=13")
	rows = b.waitRows(2)
	for _, r := range rows {
		require.Contains(t, r, "acme-vm-1")
		require.Contains(t, r, "Graphics Engine Exception")
	}
	require.Equal(t, int64(1), eval[int64](b, `document.querySelectorAll('#by-vm tbody tr').length`))
	b.do("follow the count of a GPU", chromedp.Click(chromedp.CSS(`#by-gpu a.count`)))
	require.Eventually(t, func() bool { return strings.Contains(b.location(), "gpu=GPU-acme-vm-1-1") }, 10*time.Second, 100*time.Millisecond)
	b.waitRows(2)
	b.do("remove the XID filter", chromedp.Click(chromedp.CSS(`.chip a.remove[href$="gpu=GPU-acme-vm-1-1"]`)))
	require.Eventually(t, func() bool { return !strings.Contains(b.location(), "xid=") }, 10*time.Second, 100*time.Millisecond)
	b.waitRows(2) // GPU-acme-vm-1-1 has XID 13 twice and nothing else
	b.do("follow a VM", chromedp.Navigate(e.readURL+"/events/?start=1h"), chromedp.WaitVisible(chromedp.ID("records-section")))
	b.waitRows(len(xidEvents["acme"]))
	b.do("follow the count of acme-vm-2", chromedp.Click(chromedp.CSS(`#by-vm a.count[href*="host=acme-vm-2"]`)))
	rows = b.waitRows(2)
	for _, r := range rows {
		require.Contains(t, r, "acme-vm-2")
	}

	// Filters from the URL stay values: none names another tenant.
	for _, hostile := range []string{
		`acme-vm-1" or tenant_id:* or "`,
		`x" or host.name:="globex-vm-1`,
		`") | union (tenant_id:globex`,
		`acme-vm-1\" or tenant_id:globex or \"`,
	} {
		target := e.readURL + "/events/?start=1h&host=" + url.QueryEscape(hostile)
		b.do("open the page with the filter "+hostile, chromedp.Navigate(target))
		require.Eventually(t, func() bool {
			return eval[string](b, `document.getElementById('status').textContent`) != "Loading..."
		}, 30*time.Second, 250*time.Millisecond)
		page := b.text()
		require.Contains(t, page, "No XID errors", "%s: %s", hostile, page)
		require.Empty(t, b.rows(), hostile)
		// The filter itself is shown (in its chip); no record or count is.
		shown := eval[string](b, `document.getElementById('summary').innerText + document.getElementById('records').innerText`)
		require.NotContains(t, shown, "globex", hostile)
		require.False(t, eval[bool](b, `!document.getElementById('summary').hidden || !document.getElementById('records-section').hidden`), hostile)
	}

	// A script on the page asking the events API for globex gets acme's.
	body := eval[string](b, `fetch('/select/logsql/query?query=*&extra_filters=' + encodeURIComponent('{"tenant_id":"globex"}')).then(r => r.text())`)
	require.Contains(t, body, "acme-vm-1")
	require.NotContains(t, body, "globex")

	if out := os.Getenv("READPATH_EVENTS_SCREENSHOT"); out != "" {
		b.do("open the events page", chromedp.Navigate(e.readURL+"/events/"), chromedp.WaitVisible(chromedp.ID("records-section")))
		b.waitRows(len(xidEvents["acme"]))
		png, err := within(b.ctx, 30*time.Second, chromedp.CaptureScreenshot())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(out, png, 0o644))
	}
}

// crossOriginLogout: a page on another origin, or a plain link, cannot
// sign the customer out (logout is a same-origin POST).
func (b *browser) crossOriginLogout() {
	t, e := b.t, b.e
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/form":
			fmt.Fprintf(w, `<!DOCTYPE html><title>evil</title><form id="f" method="post" action="%s/logout"><input name="x" value="1"></form>`+
				`<script>document.getElementById('f').submit()</script>`, e.readURL)
		case "/link":
			fmt.Fprintf(w, `<!DOCTYPE html><title>evil</title><a id="go" href="%s/logout">go</a><img src="%s/logout" alt="">`, e.readURL, e.readURL)
		}
	}))
	defer evil.Close()
	signedIn := func(step string) {
		t.Helper()
		b.do(step, chromedp.Navigate(e.readURL+"/events/"), chromedp.WaitVisible(chromedp.ID("records-section")))
		require.Equal(t, e.readURL+"/events/", b.location(), "%s: still signed in", step)
		b.waitRows(len(xidEvents["acme"]))
	}
	b.do("a page on another origin posts a form to /logout", chromedp.Navigate(evil.URL+"/form"))
	require.Eventually(t, func() bool { return strings.HasPrefix(b.location(), e.readURL) }, 20*time.Second, 100*time.Millisecond, "the form was submitted")
	signedIn("after another origin's logout form")
	b.do("a page on another origin links and embeds /logout", chromedp.Navigate(evil.URL+"/link"), chromedp.Click(chromedp.ID("go")))
	require.Eventually(t, func() bool { return strings.HasPrefix(b.location(), e.readURL) }, 20*time.Second, 100*time.Millisecond, "the link was followed")
	signedIn("after another origin's logout link")
	b.do("open /logout", chromedp.Navigate(e.readURL+"/logout"))
	signedIn("after a GET of /logout")
}

// signOut: the events page's own sign-out button ends the session.
func (b *browser) signOut() {
	t, e := b.t, b.e
	b.do("sign out from the events page", chromedp.Navigate(e.readURL+"/events/"), chromedp.WaitVisible(chromedp.ID("records-section")), chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("key")))
	require.Equal(t, e.readURL+"/login", b.location())
	require.Equal(t, 401, fetchStatus(t, b.ctx, "/select/logsql/query?query=*"), "no events after signing out")
	b.do("open the events page signed out", chromedp.Navigate(e.readURL+"/events/?xid=79"), chromedp.WaitVisible(chromedp.ID("key")))
	require.Equal(t, e.readURL+"/login?next=%2Fevents%2F%3Fxid%3D79", b.location(), "the login page brings the browser back")
}

// dashboardNav: every vmui page links to the events page, and the link
// works (vmui itself cannot show a followable link: see b.events).
func (b *browser) dashboardNav() {
	t, e := b.t, b.e
	b.do("sign in as globex", chromedp.SendKeys(chromedp.ID("key"), e.secrets["globex-key"]), chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("records-section")))
	require.Equal(t, e.readURL+"/events/?xid=79", b.location(), "back to the page asked for before signing in")
	b.do("open the dashboards", chromedp.Navigate(e.readURL+"/vmui/#/dashboards"), chromedp.WaitVisible(chromedp.ID("root")))
	require.Eventually(t, func() bool { return strings.Contains(b.text(), "globex-vm-1") }, 60*time.Second, 500*time.Millisecond, "globex's dashboard")
	_, err := within(b.ctx, 10*time.Second, chromedp.WaitVisible(chromedp.ID("otelcol-gpu-nav-events")))
	require.NoError(t, err, "vmui's page has no link to the events page: ui.go must serve /vmui/ as vmuiIndexWithNav(index.html, events) (eventsui.go)")
	b.do("follow the link to the events page", chromedp.Click(chromedp.ID("otelcol-gpu-nav-events")), chromedp.WaitVisible(chromedp.ID("records-section")))
	require.True(t, strings.HasPrefix(b.location(), e.readURL+"/events/"), b.location())
	b.waitRows(len(xidEvents["globex"]))
	page := b.text()
	require.Contains(t, page, "globex-vm-1")
	require.NotContains(t, page, "acme")

	// vmui's pages sign out too (the same nav).
	b.do("back to the dashboard", chromedp.Click(chromedp.ID("to-metrics")), chromedp.WaitVisible(chromedp.ID("otelcol-gpu-nav-signout")))
	b.do("sign out from vmui", chromedp.Click(chromedp.ID("otelcol-gpu-nav-signout")), chromedp.WaitVisible(chromedp.ID("key")))
	require.Equal(t, e.readURL+"/login", b.location())
	require.Equal(t, 401, fetchStatus(t, b.ctx, "/prometheus/api/v1/query?query=hw.power"), "no data after signing out")
}

func fetchStatus(t *testing.T, ctx context.Context, path string) int {
	t.Helper()
	status, err := within(ctx, 20*time.Second, chromedp.Evaluate[int](`fetch('`+path+`').then(r => r.status)`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	return status
}

// within runs one action with a timeout of its own: the browser lives as
// long as ctx, a stuck step must not hold the test.
func within[T any](ctx context.Context, d time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// alertRowsJS is the text of the firing alerts' rows (cells joined by
// " | "), one string a row.
const alertRowsJS = `[...document.querySelectorAll('#firing tbody tr')].map(tr => [...tr.cells].map(td => td.innerText.replace(/\s+/g, ' ').trim()).join(' | '))`

// alertsLoaded is true once the alerts page has loaded everything once.
const alertsLoaded = `(() => { const s = document.getElementById('status'); return !!s && s.textContent !== 'Loading...'; })()`

// alerts: the alerts page is behind the login; acme adds a rule that
// fires on its own data and a webhook through the page's forms, sees the
// webhook's signing secret once, then its alerts in the firing list, and
// its webhook receives them, signed; a silence from the list mutes one
// GPU's alert; globex's page shows none of it.
func (b *browser) alerts() {
	t, e := b.t, b.e
	b.do("open the alerts page signed out", chromedp.Navigate(e.readURL+"/alerts/"), chromedp.WaitVisible(chromedp.ID("key")))
	require.Equal(t, e.readURL+"/login?next=%2Falerts%2F", b.location(), "the alerts page needs a login")
	require.Equal(t, 401, fetchStatus(t, b.ctx, "/alerting/v1/alerts"), "no alerts without a login")
	b.do("sign in as acme", chromedp.SendKeys(chromedp.ID("key"), e.secrets["acme-key"]), chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("firing-section")))
	require.Equal(t, e.readURL+"/alerts/", b.location(), "back to the alerts page")
	b.waitFor("the page loaded", alertsLoaded)
	require.False(t, eval[bool](b, `document.getElementById('status').classList.contains('error')`), "the page says: %s", b.text())
	// The default pack, with why each rule is there and what to do.
	require.Positive(t, eval[int64](b, `document.querySelectorAll('#pack tbody tr').length`), "the default pack is listed")
	require.NotEmpty(t, eval[string](b, `document.querySelector('#pack tbody tr').cells[3].innerText`), "a default rule's reason")

	// A mistake gets the API's own words.
	b.do("add a rule with a bad for", chromedp.SendKeys(chromedp.ID("rule-name"), "PowerSeen"),
		chromedp.SendKeys(chromedp.ID("rule-expr"), "last_over_time(hw.power[1d]) > 0"),
		chromedp.SendKeys(chromedp.ID("rule-for"), "soon"), chromedp.Click(chromedp.ID("rule-add")),
		chromedp.WaitVisible(chromedp.ID("rule-error")))
	problem := eval[string](b, `document.getElementById('rule-error').textContent`)
	require.Contains(t, problem, `"soon" is not a duration`)

	// The rule: every one of acme's GPUs has drawn power in the last day
	// (the seeded points are minutes old by now).
	eval[bool](b, `(document.getElementById('rule-for').value = '') === ''`)
	b.do("fix the for and add the rule", chromedp.SendKeys(chromedp.ID("rule-summary"), "<b>GPU draws power</b>"), chromedp.Click(chromedp.ID("rule-add")),
		chromedp.WaitVisible(chromedp.CSS(`#rules tr[data-rule="PowerSeen"]`)))
	added := time.Now()
	require.True(t, eval[bool](b, `document.getElementById('rule-error').hidden`))
	require.Contains(t, eval[string](b, `document.querySelector('#rules tr[data-rule="PowerSeen"]').innerText`), "last_over_time(hw.power[1d]) > 0")

	// A webhook to the customer's HTTPS endpoint: its signing secret once.
	hook := e.sink.url + "/hooks/gpu"
	b.do("add a webhook", chromedp.SendKeys(chromedp.ID("receiver-name"), "oncall"), chromedp.SendKeys(chromedp.ID("receiver-url"), hook),
		chromedp.Click(chromedp.ID("receiver-add")), chromedp.WaitVisible(chromedp.ID("receiver-secret")))
	secret := eval[string](b, `document.getElementById('receiver-secret-value').textContent`)
	require.Regexp(t, `^[0-9a-f]{64}$`, secret)
	require.Contains(t, eval[string](b, `document.getElementById('receiver-secret').innerText`), "store it now")
	require.Contains(t, eval[string](b, `document.querySelector('#receivers tr[data-receiver="oncall"]').innerText`), hook)
	b.do("put the secret away", chromedp.Click(chromedp.ID("receiver-secret-done")))
	require.NotContains(t, b.text(), secret)
	require.NotContains(t, eval[string](b, `fetch('/alerting/v1/receivers', {credentials: 'same-origin'}).then(r => r.text())`), secret, "the secret is shown once")

	// The alerts, in the firing list (refreshed every 10 s).
	var rows []string
	require.Eventually(t, func() bool {
		rows = nil
		for _, r := range eval[[]string](b, alertRowsJS) {
			if strings.HasPrefix(r, "PowerSeen") {
				rows = append(rows, r)
			}
		}
		return len(rows) == gpusOf("acme")
	}, 60*time.Second, 500*time.Millisecond, "acme's %d GPUs' PowerSeen alerts in the firing list; the page says:\n%s", gpusOf("acme"), b.text())
	t.Logf("alerts page: PowerSeen firing for every GPU %s after the rule was added (evaluation every %s)", time.Since(added).Round(100*time.Millisecond), alertsEvaluationInterval)
	for _, vm := range fleets["acme"].vms {
		for gpu := range fleets["acme"].gpus {
			want := []string{"warning", gpuName(gpu), gpuID(vm, gpu), vm, "<b>GPU draws power</b>", "firing", "Silence 1h"}
			require.True(t, slices.ContainsFunc(rows, func(r string) bool {
				for _, w := range want {
					if !strings.Contains(r, w) {
						return false
					}
				}
				return true
			}), "a row with %q in %q", want, rows)
		}
	}
	require.False(t, eval[bool](b, `document.querySelector('#firing b') !== null`), "a summary's markup became an element")
	require.NotContains(t, b.text(), "globex")

	// The webhook gets them, signed with the secret it was shown.
	var got sinkRequest
	require.Eventually(t, func() bool {
		for _, r := range e.sink.received() {
			if strings.Contains(string(r.body), "PowerSeen") {
				got = r
				return true
			}
		}
		return false
	}, 60*time.Second, 250*time.Millisecond, "the webhook is notified")
	t.Logf("alerts page: the webhook was notified %s after the rule was added", time.Since(added).Round(100*time.Millisecond))
	require.Equal(t, "/hooks/gpu", got.path)
	key, err := hex.DecodeString(secret)
	require.NoError(t, err)
	require.NoError(t, outbound.Verify(key, got.header.Get(outbound.SignatureHeader), got.body, time.Now(), 5*time.Minute))
	require.Contains(t, string(got.body), "acme-vm-1")
	require.NotContains(t, string(got.body), "globex")

	// Silence one GPU's alert from the list: it shows silenced, the
	// silence is listed, and expiring it brings the alert back.
	target := gpuID("acme-vm-2", 1)
	require.True(t, eval[bool](b, `(() => {
		const tr = [...document.querySelectorAll('#firing tr[data-alert="PowerSeen"]')].find(tr => tr.innerText.includes('`+target+`'));
		const button = tr && [...tr.querySelectorAll('button')].find(b => b.textContent === 'Silence 1h');
		if (!button) return false;
		button.click();
		return true;
	})()`), "the Silence 1h button of %s's alert", target)
	b.do("silence one GPU's alert", chromedp.WaitVisible(chromedp.CSS(`#silences tbody tr`)))
	silence := eval[string](b, `document.querySelector('#silences tbody tr').innerText`)
	require.Contains(t, silence, `alertname="PowerSeen"`)
	require.Contains(t, silence, target)
	b.waitFor("the alert shows silenced", `[...document.querySelectorAll('#firing tbody tr')].some(tr => tr.innerText.includes('`+target+`') && tr.innerText.includes('silenced'))`)
	b.do("expire the silence", chromedp.Click(chromedp.CSS(`#silences tbody tr button`)))
	b.waitFor("the silence is gone", `document.querySelectorAll('#silences tbody tr').length === 0`)

	// The events page links here; so does vmui's nav.
	b.do("open the events page", chromedp.Navigate(e.readURL+"/events/"), chromedp.WaitVisible(chromedp.ID("records-section")))
	b.do("follow its link to the alerts", chromedp.Click(chromedp.ID("to-alerts")), chromedp.WaitVisible(chromedp.ID("firing-section")))
	require.Equal(t, e.readURL+"/alerts/", b.location())
	b.do("open the dashboards", chromedp.Navigate(e.readURL+"/vmui/#/dashboards"), chromedp.WaitVisible(chromedp.ID("otelcol-gpu-nav-alerts")))
	b.do("follow vmui's link to the alerts", chromedp.Click(chromedp.ID("otelcol-gpu-nav-alerts")), chromedp.WaitVisible(chromedp.ID("firing-section")))
	b.waitFor("the page loaded", alertsLoaded)

	if out := os.Getenv("READPATH_ALERTS_SCREENSHOT"); out != "" {
		b.waitFor("the alerts listed", `document.querySelectorAll('#firing tbody tr').length > 0`)
		png, err := within(b.ctx, 30*time.Second, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(out, png, 0o644))
	}

	// globex sees none of acme's rules, receivers or alerts.
	b.do("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("key")))
	b.do("open the alerts page as globex", chromedp.Navigate(e.readURL+"/alerts/"), chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), e.secrets["globex-key"]), chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("firing-section")))
	b.waitFor("the page loaded", alertsLoaded)
	time.Sleep(2 * alertsEvaluationInterval)
	b.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("firing-section")))
	b.waitFor("the page loaded", alertsLoaded)
	page := b.text()
	require.NotContains(t, page, "PowerSeen", "acme's rule or alert on globex's page")
	require.NotContains(t, page, "acme")
	require.NotContains(t, page, "oncall")
	require.Equal(t, int64(0), eval[int64](b, `document.querySelectorAll('#rules tbody tr, #receivers tbody tr, #silences tbody tr').length`))

	// Back as acme: the rule and the webhook go.
	b.do("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("key")))
	b.do("sign in as acme again", chromedp.Navigate(e.readURL+"/alerts/"), chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), e.secrets["acme-key"]), chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("delete-rule-PowerSeen")))
	b.do("delete the rule", chromedp.Click(chromedp.ID("delete-rule-PowerSeen")))
	b.waitFor("the rule is gone", `document.querySelector('#rules tr[data-rule="PowerSeen"]') === null`)
	b.do("delete the webhook", chromedp.Click(chromedp.ID("delete-receiver-oncall")))
	b.waitFor("the webhook is gone", `document.querySelector('#receivers tr[data-receiver="oncall"]') === null`)
}

// waitFor waits until js is true in the page.
func (b *browser) waitFor(what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if v, err := within(b.ctx, 5*time.Second, chromedp.Evaluate[bool](js)); err == nil && v {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.t.Fatalf("%s: not so after 30s; the page at %s says:\n%s", what, b.location(), b.text())
}
