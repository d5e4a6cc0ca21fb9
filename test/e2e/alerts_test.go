//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/otelcol-gpu/otelcol-gpu/internal/outbound"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/alertengines"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// Alert timing of scenario 14: short enough that the scenario's checks
// take seconds, Alertmanager's repeat long enough that a repeat is a bug.
const (
	alertEval          = 5 * time.Second
	alertGroupWait     = time.Second
	alertGroupInterval = 5 * time.Second
	alertRepeat        = time.Hour
	webhookOutage      = 2*time.Minute + 5*time.Second
)

// 14. Tenants' GPU alerts through the real engines (vmalert, Alertmanager)
// and the gateway's relay: an XID 79 on acme's GPU reaches acme's webhook,
// signed, within two evaluation intervals, and its resolution after the
// reset; globex's rules written to read acme's data see none of it, and
// nothing of one tenant reaches the other's webhook; receiver URLs into
// the provider's network are refused, at creation and at a redirect; a
// webhook down for minutes gets its notification once when it is back.
func TestScenario14TenantAlerts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.addCredential(readKeyPrefix+"acme", "acme", "acme-read-key")
	e.addCredential(readKeyPrefix+"globex", "globex", "globex-read-key")
	acmeToken, globexToken := e.provision("acme"), e.provision("globex")

	// The tenants' webhooks: https on 127.0.0.2 (allowed to the relay by
	// allow_cidrs), with a certificate of a CA the relay is given.
	sinkCerts := filepath.Join(e.dir, "sink-certs")
	require.NoError(t, devcerts.Write(devcerts.Options{Dir: sinkCerts, ServerHosts: []string{"127.0.0.2", "127.0.0.1"}}))
	cert, err := tls.LoadX509KeyPair(filepath.Join(sinkCerts, devcerts.ServerCertFile), filepath.Join(sinkCerts, devcerts.ServerKeyFile))
	require.NoError(t, err)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	trap := startTrap(t, tlsCfg) // 127.0.0.1: what the relay must never reach
	acmeSink := startHookSink(t, tlsCfg, "")
	globexSink := startHookSink(t, tlsCfg, trap.url)

	vmaAddr, amAddr, relayAddr := proc.Addr(proc.Port(t)), proc.Addr(proc.Port(t)), proc.Addr(proc.Port(t))
	e.gwExtraEnv = append(e.gwExtraEnv,
		"OTELCOL_GPU_VMALERT_URL=http://"+vmaAddr,
		"OTELCOL_GPU_ALERTMANAGER_URL=http://"+amAddr,
		"OTELCOL_GPU_ALERTS_RELAY_ENDPOINT="+relayAddr,
		"OTELCOL_GPU_ALERTS_EVALUATION_INTERVAL="+alertEval.String(),
		"OTELCOL_GPU_ALERTS_GROUP_WAIT="+alertGroupWait.String(),
		"OTELCOL_GPU_ALERTS_GROUP_INTERVAL="+alertGroupInterval.String(),
		"OTELCOL_GPU_ALERTS_REPEAT_INTERVAL="+alertRepeat.String(),
		"OTELCOL_GPU_ALERTS_ALLOW_CIDRS=[127.0.0.2/32]",
		"OTELCOL_GPU_ALERTS_CA_FILE="+filepath.Join(sinkCerts, devcerts.CAFile),
	)
	// The gateway first: it writes the engines' files (its reload of the
	// engines fails until they run, and is made again at every reload).
	e.startGateway()
	alertsDir := filepath.Join(e.stateDir, "alerts")
	amFile := filepath.Join(alertsDir, "alertmanager.yml")
	require.Eventually(t, func() bool {
		_, err1 := os.Stat(amFile)
		_, err2 := os.Stat(filepath.Join(alertsDir, "rules", "acme.yaml"))
		return err1 == nil && err2 == nil
	}, 30*time.Second, 100*time.Millisecond, "the gateway wrote the engines' files")
	vma, am := startAlertEngines(t, e, vmaAddr, amAddr, filepath.Join(alertsDir, "rules", "*.yaml"), amFile)

	api := newAlertsClient(t, e)
	// Each tenant's webhook, through the read API; the secret comes once.
	acmeSecret := api.putReceiver("acme-read-key", "ops", acmeSink.url+"/hook")
	globexSecret := api.putReceiver("globex-read-key", "ops", globexSink.url+"/hook")
	require.NotEqual(t, acmeSecret, globexSecret)

	// acme: 4 GPUs, GPU 3 falls off the bus (XID 79) until it is reset.
	const faultAt = 8
	acmeAgent, release := e.startAgentReleasable(agentOpts{tenant: "acme", token: acmeToken, fleet: fmt.Sprintf(
		"gpus = 4\nhost = 1\nsignal.utilization = const 50\nfault = %d 3 lost until_reset\nfault = %d 3 xid 79\nfault = %d 3 gpu_reset\n",
		faultAt, faultAt, faultAt+2)})
	e.startAgent(agentOpts{tenant: "globex", token: globexToken, fleet: "gpus = 1\nhost = 2\nsignal.utilization = const 30\n"})

	// ---- 1. XID 79 to acme's webhook, within two evaluation intervals ----
	gpu3 := gpuID(1, 3)
	// The failed point carries its reason, a series of its own (the
	// failed series without one is 0 from the start).
	failedSel := fmt.Sprintf(`hw.status{hw.id=%q,hw.state="failed",nvidia.gpu.health.reason=~"gpu_lost|xid_79"}`, gpu3)
	require.Eventually(t, func() bool {
		_ = e.store.Flush(ctx)
		v, err := e.store.Scalar(ctx, fmt.Sprintf(`max(max_over_time(%s[1h]))`, failedSel), "tenant_id=acme")
		return err == nil && v == 1
	}, settle, 200*time.Millisecond, "GPU 3 failed in the store")
	firstFailed, err := e.store.Scalar(ctx, fmt.Sprintf(`min(tfirst_over_time(%s[1h]))`, failedSel), "tenant_id=acme")
	require.NoError(t, err)
	failedAt := time.Unix(0, int64(firstFailed*1e9))
	res, err := e.store.Query(ctx, fmt.Sprintf(`last_over_time(hw.status{hw.id=%q}[1h])`, gpu3), "tenant_id=acme")
	require.NoError(t, err)
	require.NotEmpty(t, res)
	hostName, gpuName := res[0].Labels["host.name"], res[0].Labels["hw.name"]
	require.NotEmpty(t, hostName)
	require.NotEmpty(t, gpuName)

	firing := func(name string) func(d hookDelivery, a hookAlert) bool {
		return func(d hookDelivery, a hookAlert) bool {
			return a.Status == "firing" && a.Labels["alertname"] == name && a.Labels["hw_id"] == gpu3
		}
	}
	failedNote := acmeSink.waitFor(t, 60*time.Second, "GPUFailed of GPU 3 at acme's webhook", firing("GPUFailed"))
	xidNote := acmeSink.waitFor(t, 60*time.Second, "GPUXidNeedsAction of GPU 3 at acme's webhook", firing("GPUXidNeedsAction"))
	failedLatency := failedNote.at.Sub(failedAt)
	xidLatency := xidNote.at.Sub(failedAt)
	t.Logf("first failed point %s; GPUFailed delivered %s after it, GPUXidNeedsAction %s (bound: 2 intervals = %s)",
		failedAt.Format(time.RFC3339Nano), failedLatency, xidLatency, 2*alertEval)
	require.LessOrEqual(t, failedLatency, 2*alertEval, "GPUFailed at acme's webhook within two evaluation intervals of the failed point")
	for _, d := range []hookDelivery{failedNote, xidNote} {
		require.NoError(t, outbound.Verify(mustHex(t, acmeSecret), d.sig, d.body, d.at, time.Minute), "signed with acme's secret")
		require.Error(t, outbound.Verify(mustHex(t, globexSecret), d.sig, d.body, d.at, time.Minute), "not with globex's")
		require.Equal(t, "acme", d.note.Tenant)
	}
	fa := failedNote.find(firing("GPUFailed"))
	require.Equal(t, hostName, fa.Labels["host_name"], "names the VM")
	require.Equal(t, gpuName, fa.Labels["hw_name"], "names the GPU")
	require.Contains(t, fa.Annotations["summary"], gpu3)
	require.Contains(t, fa.Annotations["summary"], hostName)
	xa := xidNote.find(firing("GPUXidNeedsAction"))
	require.Equal(t, "79", xa.Labels["nvidia_xid_code"], "names the code")
	require.Equal(t, hostName, xa.Labels["host_name"])
	require.Contains(t, xa.Annotations["summary"], "XID 79")

	// The reset: the resolved notification follows.
	resetAt := time.Now()
	require.NoError(t, os.WriteFile(release, nil, 0o600))
	require.Eventually(t, func() bool { return strings.Contains(acmeAgent.proc.Output(), "NVML released for a GPU reset") },
		30*time.Second, 100*time.Millisecond)
	require.NoError(t, os.Remove(release))
	resolved := acmeSink.waitFor(t, 90*time.Second, "GPUFailed resolved at acme's webhook", func(d hookDelivery, a hookAlert) bool {
		return a.Status == "resolved" && a.Labels["alertname"] == "GPUFailed" && a.Labels["hw_id"] == gpu3
	})
	require.NoError(t, outbound.Verify(mustHex(t, acmeSecret), resolved.sig, resolved.body, resolved.at, time.Minute))
	resolvedAfter := resolved.at.Sub(resetAt)
	fmt.Printf("e2e: %-34s sent=n/a stored=n/a lost=n/a dup=n/a gpu_failed_to_webhook=%s xid_to_webhook=%s (bound %s) resolved_after_reset=%s signed=ok\n",
		"14a XID 79 alert to acme's webhook", failedLatency.Round(10*time.Millisecond), xidLatency.Round(10*time.Millisecond),
		2*alertEval, resolvedAfter.Round(10*time.Millisecond))

	// ---- 4 (outage) starts: acme's webhook down, an alert of acme's firing ----
	acmeSink.stop()
	outageStart := time.Now()
	api.mustPut("acme-read-key", "rules/AcmeAlways", `{"expr":"max by (host.name) (hw.status) >= 0","labels":{"severity":"info"},"annotations":{"summary":"VM {{ index $labels \"host.name\" }} reports"}}`)

	// ---- 2. globex's rules that try to read acme's data ----
	attacks := map[string]string{
		"StealSelector":  `hw.status{tenant_id="acme"}`,
		"StealAnyTenant": `{tenant_id=~".+"}`,
		"StealOrOn":      `hw.status or on() hw.status{tenant_id="acme"}`,
		"StealSubquery":  `max_over_time(hw.status{tenant_id="acme"}[5m:1m])`,
		"StealWith":      `WITH (x = hw.status{tenant_id="acme"}) x`,
		"StealRelabel":   `label_replace(hw.status, "tenant_id", "acme", "", "")`,
	}
	// Rules whose results name acme in labels that vmalert turns into, or
	// that stand for, what routes an alert: tenant.id arrives at
	// Alertmanager as a second tenant_id, and an alertgroup of the result's
	// own is kept as exported_alertgroup. Routes go by the group vmalert
	// names: these fire for globex, at globex's webhook.
	spoofs := map[string]string{
		"SpoofTenantDot": `label_set(vector(1), "tenant.id", "acme")`,
		"SpoofGroup":     `label_set(vector(1), "alertgroup", "acme:pack")`,
	}
	for name, expr := range spoofs {
		body, _ := json.Marshal(map[string]any{"expr": expr, "annotations": map[string]string{"summary": "from globex"}})
		api.mustPut("globex-read-key", "rules/"+name, string(body))
	}
	accepted := 0
	for name, expr := range attacks {
		body, _ := json.Marshal(map[string]any{"expr": expr})
		code, _, msg := api.call("globex-read-key", http.MethodPut, "rules/"+name, string(body))
		require.Contains(t, []int{http.StatusOK, http.StatusBadRequest}, code, "%s: %s", name, msg)
		if code == http.StatusOK {
			accepted++
		}
	}
	refusals := map[string]string{
		"tenant_id label":       `{"expr":"hw.status","labels":{"tenant_id":"acme"}}`,
		"query template":        `{"expr":"hw.status","annotations":{"summary":"{{ query \"hw.status\" | first | value }}"}}`,
		"externalURL template":  `{"expr":"hw.status","annotations":{"summary":"{{ externalURL }}"}}`,
		"$externalURL variable": `{"expr":"hw.status","annotations":{"summary":"{{ $externalURL }}"}}`,
		"params field":          `{"expr":"hw.status","params":{"extra_label":["tenant_id=acme"]}}`,
		"headers field":         `{"expr":"hw.status","headers":{"X-Tenant":"acme"}}`,
	}
	for what, body := range refusals {
		code, _, msg := api.call("globex-read-key", http.MethodPut, "rules/Refused", body)
		require.Equal(t, http.StatusBadRequest, code, "%s refused: %s", what, msg)
	}
	code, _, _ := api.call("globex-read-key", http.MethodPut, "receivers/bad", `{"type":"webhook","url":"`+globexSink.url+`/hook","headers":{"a":"b"}}`)
	require.Equal(t, http.StatusBadRequest, code, "unknown receiver field refused")

	// ---- 3. SSRF: refused at creation ----
	port := strconv.Itoa(proc.Port(t))
	ssrf := []string{
		"https://127.0.0.1:" + port + "/", "https://localhost:" + port + "/", "http://127.0.0.2:" + port + "/",
		"https://10.0.0.1/", "https://169.254.169.254/", "https://[::1]:" + port + "/",
	}
	for _, u := range ssrf {
		code, _, msg := api.call("globex-read-key", http.MethodPut, "receivers/ssrf", `{"type":"webhook","url":"`+u+`"}`)
		require.Equal(t, http.StatusBadRequest, code, "%s refused at creation: %s", u, msg)
	}
	// ... and at delivery: an allowed webhook that redirects to 127.0.0.1.
	api.putReceiver("globex-read-key", "redir", globexSink.url+"/redirect")

	// Watch the engines for the outage's length: vmalert's state of
	// globex's rules, Alertmanager's alerts, both webhooks.
	// Both simulated VMs are called "vm": acme's is told apart by its
	// host.id, where it has one of its own.
	acmeHostID := res[0].Labels["host.id"]
	if g, err := e.store.Query(ctx, `last_over_time(hw.status[1h])`, "tenant_id=globex"); err == nil && len(g) > 0 && g[0].Labels["host.id"] == acmeHostID {
		acmeHostID = ""
	}
	t.Logf("acme's host: host.name=%s host.id=%s", hostName, res[0].Labels["host.id"])
	acmeHW := map[string]bool{}
	for i := 0; i < 4; i++ {
		acmeHW[gpuID(1, i)] = true
	}
	leak := func(labels map[string]string) string {
		for k, v := range labels {
			if acmeHW[v] || (acmeHostID != "" && v == acmeHostID) {
				return fmt.Sprintf("%s=%s", k, v)
			}
		}
		return ""
	}
	evaluated := map[string]bool{}
	samples := map[string]int{}
	lastErr := map[string]string{}
	polls := 0
	for time.Since(outageStart) < webhookOutage {
		polls++
		groups, alerts := vmalertState(t, vma.URL())
		for _, g := range groups {
			if g.Name != "globex:custom" {
				continue
			}
			for _, r := range g.Rules {
				if !r.LastEvaluation.IsZero() && r.LastEvaluation.After(outageStart) {
					evaluated[r.Name] = true
				}
				samples[r.Name] = max(samples[r.Name], r.LastSamples)
				if r.LastError != "" {
					lastErr[r.Name] = r.LastError
				}
			}
		}
		for _, a := range alerts {
			if strings.HasPrefix(a.Labels["alertgroup"], "globex:") {
				require.Equal(t, "globex", a.Labels["tenant_id"], "vmalert: a globex alert labelled for acme: %v", a.Labels)
				require.Empty(t, leak(a.Labels), "vmalert: a globex alert with acme's series: %v", a.Labels)
			}
		}
		amAlerts, err := am.Alerts(ctx)
		require.NoError(t, err)
		for _, a := range amAlerts {
			if strings.HasPrefix(a.Labels["alertgroup"], "globex:") || attacks[a.Labels["alertname"]] != "" {
				if attacks[a.Labels["alertname"]]+spoofs[a.Labels["alertname"]] != "" {
					require.Equal(t, "globex:custom", a.Labels["alertgroup"], "Alertmanager: globex's rule in another group: %v", a.Labels)
				}
				if spoofs[a.Labels["alertname"]] == "" {
					// A spoof's tenant_id is what its result claimed
					// (Alertmanager keeps the last of two): it is still
					// globex's alert, routed by its group.
					require.Equal(t, "globex", a.Labels["tenant_id"], "Alertmanager: a globex alert labelled for acme: %v", a.Labels)
				}
				require.Empty(t, leak(a.Labels), "Alertmanager: a globex alert with acme's series: %v", a.Labels)
			}
		}
		time.Sleep(time.Second)
	}
	for name := range attacks {
		require.True(t, evaluated[name], "vmalert evaluated globex's %s", name)
	}
	for _, name := range []string{"StealSelector", "StealSubquery", "StealWith"} {
		require.Zero(t, samples[name], "%s: nothing", name)
	}
	// The others read globex's own series: live rules, not broken ones.
	for _, name := range []string{"StealOrOn", "StealRelabel"} {
		require.Positive(t, samples[name], "%s: globex's own series", name)
	}
	t.Logf("globex's rules, most samples seen: %v; errors: %v", samples, lastErr)
	// {tenant_id=~".+"} saw at most globex's own series (vmalert refuses
	// its result, series that differ by name only, but counts it first).
	require.NoError(t, e.store.Flush(ctx))
	globexSeries, err := e.store.Scalar(ctx, `count(last_over_time({tenant_id="globex"}[5m]))`, "tenant_id=globex")
	require.NoError(t, err)
	acmeSeries, err := e.store.Scalar(ctx, `count(last_over_time({tenant_id="acme"}[5m]))`, "tenant_id=acme")
	require.NoError(t, err)
	require.Positive(t, samples["StealAnyTenant"])
	require.LessOrEqual(t, float64(samples["StealAnyTenant"]), globexSeries, "StealAnyTenant: globex's %v series, not acme's %v", globexSeries, acmeSeries)
	relabel := globexSink.waitFor(t, 30*time.Second, "globex's label_replace alert at globex's webhook", func(d hookDelivery, a hookAlert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "StealRelabel"
	}).find(func(d hookDelivery, a hookAlert) bool { return a.Labels["alertname"] == "StealRelabel" })
	require.Equal(t, "globex", relabel.Labels["tenant_id"], "the label_replace alert goes to globex as globex's")
	for name := range spoofs {
		got := globexSink.waitFor(t, 30*time.Second, "globex's "+name+" at globex's webhook", func(d hookDelivery, a hookAlert) bool {
			return a.Status == "firing" && a.Labels["alertname"] == name
		}).find(func(d hookDelivery, a hookAlert) bool { return a.Labels["alertname"] == name })
		require.Equal(t, "globex:custom", got.Labels["alertgroup"], "%s is globex's", name)
	}
	acmeListed := api.alerts("acme-read-key")
	for _, a := range acmeListed {
		require.True(t, strings.HasPrefix(a["alertgroup"], "acme:"), "acme's alert list holds only acme's groups' alerts: %v", a)
	}
	require.NoError(t, outbound.Verify(mustHex(t, globexSecret), globexSink.first().sig, globexSink.first().body, globexSink.first().at, 10*time.Minute))

	// Nothing of acme's at globex's webhook, nothing of globex's at acme's.
	for _, d := range globexSink.all() {
		require.Equal(t, "globex", d.note.Tenant)
		for _, a := range d.note.Alerts {
			require.True(t, strings.HasPrefix(a.Labels["alertgroup"], "globex:"), "globex's webhook got %v", a.Labels)
			require.Empty(t, leak(a.Labels), "globex's webhook got acme's series: %v", a.Labels)
		}
	}

	// The redirect to 127.0.0.1: not followed, a dead letter.
	deadFile := filepath.Join(alertsDir, "dead-letter.jsonl")
	var dead []byte
	require.Eventually(t, func() bool {
		dead, _ = os.ReadFile(deadFile)
		return bytes.Contains(dead, []byte(`"receiver":"redir"`))
	}, 30*time.Second, 500*time.Millisecond, "the redirected delivery in the dead-letter file")
	require.Contains(t, string(dead), "127.0.0.1", "the dead letter says where the redirect went")
	deadCount := gatewayMetric(t, e, "otelcol_tenant_alerts_dead_letters")
	require.Positive(t, deadCount, "the dead letters are counted")
	require.Positive(t, globexSink.count("/redirect"), "the relay called the redirecting webhook")
	require.Zero(t, trap.conns.Load(), "the redirect target on 127.0.0.1 was never connected to")

	// ---- 4 (outage) ends: acme's webhook back on the same address ----
	for _, d := range acmeSink.all() {
		for _, a := range d.note.Alerts {
			require.Equal(t, "acme", a.Labels["tenant_id"])
			require.True(t, strings.HasPrefix(a.Labels["alertgroup"], "acme:"), "acme's webhook got %v", a.Labels)
			require.Empty(t, attacks[a.Labels["alertname"]]+spoofs[a.Labels["alertname"]], "acme's webhook got globex's rule %v", a.Labels)
		}
	}
	require.Zero(t, acmeSink.countAlert("AcmeAlways", "firing"), "nothing delivered while down")
	failedTries := amFailedNotifications(t, am.URL())
	require.Positive(t, failedTries, "Alertmanager tried while the webhook was down")
	acmeSink.restart(t)
	backAt := time.Now()
	outage := backAt.Sub(outageStart)
	back := acmeSink.waitFor(t, 60*time.Second, "AcmeAlways at acme's webhook after the outage", func(d hookDelivery, a hookAlert) bool {
		return a.Status == "firing" && a.Labels["alertname"] == "AcmeAlways"
	})
	require.NoError(t, outbound.Verify(mustHex(t, acmeSecret), back.sig, back.body, back.at, time.Minute))
	// Several group intervals later, still once.
	time.Sleep(5 * alertGroupInterval)
	require.Equal(t, 1, acmeSink.countAlert("AcmeAlways", "firing"), "delivered once, not repeated within the repeat interval")
	for _, d := range acmeSink.all() {
		for _, a := range d.note.Alerts {
			require.Empty(t, attacks[a.Labels["alertname"]]+spoofs[a.Labels["alertname"]], "acme's webhook got globex's rule %v", a.Labels)
		}
	}

	fmt.Printf("e2e: %-34s sent=n/a stored=n/a lost=n/a dup=n/a rules=%d accepted=%d refused=%d samples=%v (globex_series=%.0f acme_series=%.0f) acme_series_seen=0 bad_rules_refused=%d polls=%d\n",
		"14b globex rules read only globex", len(attacks), accepted, len(attacks)-accepted, samples, globexSeries, acmeSeries, len(refusals)+1, polls)
	fmt.Printf("e2e: %-34s sent=n/a stored=n/a lost=n/a dup=n/a refused_at_creation=%d/%d redirect_calls=%d trap_conns=%d dead_letters=%.0f\n",
		"14c webhook SSRF refused", len(ssrf), len(ssrf), globexSink.count("/redirect"), trap.conns.Load(), deadCount)
	fmt.Printf("e2e: %-34s sent=n/a stored=n/a lost=n/a dup=n/a outage=%s am_failed_tries=%.0f delivered_after_back=%s deliveries=%d (watched %s after)\n",
		"14d webhook down then back", outage.Round(time.Second), failedTries, back.at.Sub(backAt).Round(10*time.Millisecond),
		acmeSink.countAlert("AcmeAlways", "firing"), 5*alertGroupInterval)
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// startAlertEngines runs vmalert on the store and Alertmanager on the
// gateway's files.
func startAlertEngines(t *testing.T, e *env, vmaAddr, amAddr, rulesGlob, amFile string) (*alertengines.VMAlert, *alertengines.Alertmanager) {
	t.Helper()
	ctx := context.Background()
	amBin, err := alertengines.FindAlertmanager(e.root)
	require.NoError(t, err)
	vmaBin, err := alertengines.FindVMAlert(e.root)
	require.NoError(t, err)
	amLog, err := os.Create(filepath.Join(e.dir, "alertmanager.log"))
	require.NoError(t, err)
	vmaLog, err := os.Create(filepath.Join(e.dir, "vmalert.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = amLog.Close(); _ = vmaLog.Close() })
	am, err := alertengines.StartAlertmanager(ctx, amBin, alertengines.AlertmanagerOptions{
		Addr: amAddr, ConfigFile: amFile, DataDir: filepath.Join(e.dir, "alertmanager-data"),
	}, amLog)
	t.Cleanup(func() { _ = am.Stop() })
	require.NoError(t, err)
	vma, err := alertengines.StartVMAlert(ctx, vmaBin, alertengines.VMAlertOptions{
		Addr: vmaAddr, DatasourceURL: e.store.URL, NotifierURL: "http://" + amAddr, RulesGlob: rulesGlob,
		EvaluationInterval: alertEval,
	}, vmaLog)
	t.Cleanup(func() { _ = vma.Stop() })
	require.NoError(t, err)
	return vma, am
}

// ---- the tenants' alerting API ----

type alertsClient struct {
	t      *testing.T
	client *http.Client
	base   string
}

func newAlertsClient(t *testing.T, e *env) *alertsClient {
	ca, err := os.ReadFile(filepath.Join(e.certs, devcerts.CAFile))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	return &alertsClient{t: t, base: fmt.Sprintf("https://localhost:%d/alerting/v1/", e.gwQuery), client: &http.Client{
		Timeout: 40 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}}
}

// call answers the status, the envelope's data and its error.
func (c *alertsClient) call(key, method, path, body string) (int, json.RawMessage, string) {
	c.t.Helper()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	require.NoError(c.t, err)
	defer func() { _ = resp.Body.Close() }()
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	require.NoError(c.t, json.Unmarshal(b, &env), "%s %s: %s", method, path, b)
	return resp.StatusCode, env.Data, env.Error
}

func (c *alertsClient) mustPut(key, path, body string) json.RawMessage {
	c.t.Helper()
	code, data, msg := c.call(key, http.MethodPut, path, body)
	require.Equal(c.t, http.StatusOK, code, "PUT %s: %s", path, msg)
	return data
}

// putReceiver sets a webhook receiver and returns its signing secret.
// alerts is the labels of each alert GET /alerting/v1/alerts lists.
func (c *alertsClient) alerts(key string) []map[string]string {
	c.t.Helper()
	code, data, msg := c.call(key, http.MethodGet, "alerts", "")
	require.Equal(c.t, http.StatusOK, code, msg)
	var list []struct {
		Labels map[string]string `json:"labels"`
	}
	require.NoError(c.t, json.Unmarshal(data, &list))
	out := make([]map[string]string, 0, len(list))
	for _, a := range list {
		out = append(out, a.Labels)
	}
	return out
}

func (c *alertsClient) putReceiver(key, name, url string) string {
	c.t.Helper()
	data := c.mustPut(key, "receivers/"+name, fmt.Sprintf(`{"type":"webhook","url":%q}`, url))
	var v struct {
		Secret string `json:"secret"`
	}
	require.NoError(c.t, json.Unmarshal(data, &v))
	require.Len(c.t, v.Secret, 64, "the receiver's secret, once")
	return v.Secret
}

// ---- the engines' state ----

type vmaRuleState struct {
	Name           string    `json:"name"`
	LastSamples    int       `json:"lastSamples"`
	LastError      string    `json:"lastError"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

type vmaGroupState struct {
	ID    string         `json:"id"`
	Name  string         `json:"name"`
	Rules []vmaRuleState `json:"rules"`
}

type vmaAlert struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// vmalertState reads vmalert's rule groups and its active alerts.
func vmalertState(t *testing.T, base string) ([]vmaGroupState, []vmaAlert) {
	t.Helper()
	var rules struct {
		Data struct {
			Groups []vmaGroupState `json:"groups"`
		} `json:"data"`
	}
	getJSONInto(t, base+"/api/v1/rules", &rules)
	var alerts struct {
		Data struct {
			Alerts []vmaAlert `json:"alerts"`
		} `json:"data"`
	}
	getJSONInto(t, base+"/api/v1/alerts", &alerts)
	return rules.Data.Groups, alerts.Data.Alerts
}

func getJSONInto(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u) //nolint:noctx // a test's local engine
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", u, b)
	require.NoError(t, json.Unmarshal(b, v), "%s", u)
}

// metricSum adds up a Prometheus text exposition's samples of a metric.
func metricSum(t *testing.T, u, name string) float64 {
	t.Helper()
	resp, err := http.Get(u) //nolint:noctx // a test's local process
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		require.NoError(t, err, line)
		sum += v
	}
	return sum
}

func gatewayMetric(t *testing.T, e *env, name string) float64 {
	return metricSum(t, fmt.Sprintf("http://localhost:%d/metrics", e.gwMetrics), name)
}

func amFailedNotifications(t *testing.T, base string) float64 {
	return metricSum(t, base+"/metrics", "alertmanager_notifications_failed_total")
}

// ---- the tenants' webhooks ----

type hookAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type hookNote struct {
	Tenant   string      `json:"tenant"`
	Receiver string      `json:"receiver"`
	Status   string      `json:"status"`
	Alerts   []hookAlert `json:"alerts"`
}

// hookDelivery is one request a webhook got.
type hookDelivery struct {
	at   time.Time
	path string
	sig  string
	body []byte
	note hookNote
}

func (d hookDelivery) find(match func(hookDelivery, hookAlert) bool) hookAlert {
	for _, a := range d.note.Alerts {
		if match(d, a) {
			return a
		}
	}
	return hookAlert{}
}

// hookSink is a tenant's https webhook on 127.0.0.2: it records every
// request; /redirect answers 307 to redirect.
type hookSink struct {
	tlsCfg   *tls.Config
	addr     string
	url      string
	redirect string

	mu  sync.Mutex
	got []hookDelivery
	srv *http.Server
}

func startHookSink(t *testing.T, tlsCfg *tls.Config, redirect string) *hookSink {
	s := &hookSink{tlsCfg: tlsCfg, redirect: redirect, addr: "127.0.0.2:0"}
	s.listen(t)
	s.url = "https://" + s.addr
	t.Cleanup(s.stop)
	return s
}

func (s *hookSink) listen(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", s.addr)
	require.NoError(t, err)
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(tls.NewListener(ln, s.tlsCfg)) }()
}

// stop closes the listener and every connection.
func (s *hookSink) stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	_ = srv.Close()
}

// restart listens again on the same address.
func (s *hookSink) restart(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return false
		}
		_ = ln.Close()
		return true
	}, 10*time.Second, 100*time.Millisecond, "the webhook's address free again")
	s.listen(t)
}

func (s *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d := hookDelivery{at: time.Now(), path: r.URL.Path, sig: r.Header.Get(outbound.SignatureHeader), body: body}
	_ = json.Unmarshal(body, &d.note)
	s.mu.Lock()
	s.got = append(s.got, d)
	s.mu.Unlock()
	if r.URL.Path == "/redirect" {
		http.Redirect(w, r, s.redirect, http.StatusTemporaryRedirect)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *hookSink) all() []hookDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hookDelivery(nil), s.got...)
}

func (s *hookSink) first() hookDelivery {
	for _, d := range s.all() {
		if d.path == "/hook" {
			return d
		}
	}
	return hookDelivery{}
}

func (s *hookSink) count(path string) int {
	n := 0
	for _, d := range s.all() {
		if d.path == path {
			n++
		}
	}
	return n
}

// countAlert counts the deliveries to /hook carrying an alert of that name and status.
func (s *hookSink) countAlert(name, status string) int {
	n := 0
	for _, d := range s.all() {
		if d.path != "/hook" {
			continue
		}
		for _, a := range d.note.Alerts {
			if a.Labels["alertname"] == name && a.Status == status {
				n++
				break
			}
		}
	}
	return n
}

// waitFor returns the first delivery to /hook with an alert that matches.
func (s *hookSink) waitFor(t *testing.T, within time.Duration, what string, match func(hookDelivery, hookAlert) bool) hookDelivery {
	t.Helper()
	var found hookDelivery
	require.Eventually(t, func() bool {
		for _, d := range s.all() {
			if d.path != "/hook" {
				continue
			}
			for _, a := range d.note.Alerts {
				if match(d, a) {
					found = d
					return true
				}
			}
		}
		return false
	}, within, 50*time.Millisecond, what)
	return found
}

// trap is an https server on 127.0.0.1 that counts the connections made to it.
type trap struct {
	url   string
	conns atomic.Int64
}

func startTrap(t *testing.T, tlsCfg *tls.Config) *trap {
	tr := &trap{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tr.url = "https://" + ln.Addr().String() + "/"
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				tr.conns.Add(1)
			}
		},
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, tlsCfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return tr
}
