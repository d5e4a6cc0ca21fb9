//go:build e2e

package readpath

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
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
		v, err := within(ctx, 20*time.Second, chromedp.Evaluate[string](`document.body.innerText`))
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
	// Secure, SameSite=Strict, and not the key.
	cookies, err := within(ctx, 20*time.Second, func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
		return res.Cookies, err
	})
	require.NoError(t, err)
	require.Len(t, cookies, 1)
	c := cookies[0]
	require.True(t, c.HTTPOnly)
	require.True(t, c.Secure)
	require.Equal(t, network.CookieSameSiteStrict, c.SameSite)
	require.NotContains(t, c.Value, e.secrets["acme-key"])
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
