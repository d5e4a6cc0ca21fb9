//go:build e2e

// Package readpath tests the customers' way in as they meet it: the real
// otelcol-gpu gateway (config/gateway.yaml, TLS) in front of a real
// VictoriaMetrics, data written through the gateway by two tenants, read
// back through tenant_query with curl-shaped requests, attacked by every
// route in shared/docs/tenancy.md, and looked at in a real headless browser
// (Debian's Chromium, driven by chromedp).
package readpath

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/alertengines"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vlstore"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vmstore"
)

const bindAttempts = 3

// What each tenant's fleet is: VMs (host.name) and GPUs per VM. The
// numbers differ so a count that leaked across tenants shows.
var fleets = map[string]struct {
	vms  []string
	gpus int
}{
	"acme":   {vms: []string{"acme-vm-1", "acme-vm-2"}, gpus: 2},
	"globex": {vms: []string{"globex-vm-1"}, gpus: 3},
}

func gpusOf(tenant string) int { return len(fleets[tenant].vms) * fleets[tenant].gpus }

// env is the two stores (metrics: VictoriaMetrics; events: VictoriaLogs),
// one gateway with tenant_query, and the credentials.
type env struct {
	t           *testing.T
	root        string
	dir         string
	certs       string
	store       *vmstore.Store
	logs        *vlstore.Store
	gw          *proc.Proc
	client      *http.Client // trusts the development CA
	readURL     string       // https://127.0.0.1:<query port>
	otlpURL     string       // https://127.0.0.1:<otlp http port>/v1/metrics
	otlpLogsURL string       // https://127.0.0.1:<otlp http port>/v1/logs
	metrics     string       // the gateway's own Prometheus metrics
	// vmalert and Alertmanager (tenant_alerts' engines), and the customer's
	// HTTPS webhook their notifications reach.
	vmalert      *alertengines.VMAlert
	alertmanager *alertengines.Alertmanager
	sink         *webhookSink

	// secrets by name: "acme-key", "acme-key-2", "globex-key", "acme-token", "globex-token"
	secrets map[string]string
	// sent is the time of the newest point each tenant wrote.
	sent time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, root: proc.RepoRoot(t), dir: t.TempDir(), secrets: map[string]string{}}
	e.certs = filepath.Join(e.dir, "certs")
	require.NoError(t, devcerts.Write(devcerts.Options{Dir: e.certs}))
	ca, err := os.ReadFile(filepath.Join(e.certs, devcerts.CAFile))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	e.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

	bin, err := vmstore.FindBinary(e.root)
	require.NoError(t, err)
	storeLog, err := os.Create(filepath.Join(e.dir, "store.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = storeLog.Close() })
	e.store, err = proc.RetryBind(bindAttempts, t.Logf, func() (*vmstore.Store, error) {
		s := vmstore.New(bin, filepath.Join(e.dir, "store-data"), proc.Addr(proc.Port(t)), storeLog)
		return s, s.Start(context.Background())
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.store.Stop() })

	vlBin, err := vlstore.FindBinary(e.root)
	require.NoError(t, err)
	logsLog, err := os.Create(filepath.Join(e.dir, "logstore.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = logsLog.Close() })
	e.logs, err = proc.RetryBind(bindAttempts, t.Logf, func() (*vlstore.Store, error) {
		return vlstore.Start(context.Background(), vlBin, filepath.Join(e.dir, "logstore-data"), proc.Addr(proc.Port(t)), logsLog)
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.logs.Stop() })

	stateDir := filepath.Join(e.dir, "gateway-state")
	e.startAlertEngines(stateDir)

	credFile := writeCredentials(t, e.dir, e.secrets, []credential{
		{"acme-token", "acme", ""}, {"globex-token", "globex", ""},
		{"acme-key", "acme", "read"}, {"acme-key-2", "acme", "read"}, {"globex-key", "globex", "read"},
	})

	e.gw, err = proc.RetryBind(bindAttempts, t.Logf, func() (*proc.Proc, error) {
		health, httpPort, query, metrics := proc.Port(t), proc.Port(t), proc.Port(t), proc.Port(t)
		e.readURL = "https://" + proc.Addr(query)
		e.otlpURL = "https://" + proc.Addr(httpPort) + "/v1/metrics"
		e.otlpLogsURL = "https://" + proc.Addr(httpPort) + "/v1/logs"
		e.metrics = "http://" + proc.Addr(metrics) + "/metrics"
		gw := proc.StartTest(t, "gateway", proc.Binary(t), []string{"--config", filepath.Join(e.root, "config", "gateway.yaml")},
			"OTELCOL_GPU_GRPC_ENDPOINT="+proc.Addr(proc.Port(t)),
			"OTELCOL_GPU_HTTP_ENDPOINT="+proc.Addr(httpPort),
			"OTELCOL_GPU_QUERY_ENDPOINT="+proc.Addr(query),
			"OTELCOL_GPU_TLS_CERT_FILE="+filepath.Join(e.certs, devcerts.ServerCertFile),
			"OTELCOL_GPU_TLS_KEY_FILE="+filepath.Join(e.certs, devcerts.ServerKeyFile),
			"OTELCOL_GPU_CREDENTIALS_FILE="+credFile,
			"OTELCOL_GPU_STORE_URL="+e.store.URL,
			"OTELCOL_GPU_LOGS_STORE_URL="+e.logs.URL,
			"OTELCOL_GPU_STATE_DIR="+stateDir,
			"OTELCOL_GPU_VMALERT_URL="+e.vmalert.URL(),
			"OTELCOL_GPU_ALERTMANAGER_URL="+e.alertmanager.URL(),
			"OTELCOL_GPU_ALERTS_RELAY_ENDPOINT="+proc.Addr(proc.Port(t)),
			"OTELCOL_GPU_ALERTS_EVALUATION_INTERVAL="+alertsEvaluationInterval.String(),
			"OTELCOL_GPU_ALERTS_GROUP_WAIT=1s",
			"OTELCOL_GPU_ALERTS_GROUP_INTERVAL=2s",
			"OTELCOL_GPU_ALERTS_REPEAT_INTERVAL=1h",
			"OTELCOL_GPU_ALERTS_ALLOW_CIDRS=["+sinkIP+"/32]",
			"OTELCOL_GPU_ALERTS_CA_FILE="+e.sink.caFile,
			"OTELCOL_GPU_HEALTH_ENDPOINT="+proc.Addr(health),
			"OTELCOL_GPU_METRICS_PORT="+strconv.Itoa(metrics),
		)
		return gw, gw.WaitHTTPOK(context.Background(), "http://"+proc.Addr(health)+"/", 30*time.Second)
	})
	require.NoError(t, err)
	return e
}

// alertsEvaluationInterval is how often vmalert evaluates the tenants'
// rules here (30s in production): an alert fires within seconds.
const alertsEvaluationInterval = 2 * time.Second

// sinkIP is the customer's webhook's address: a loopback address other
// than the gateway's, let through by delivery.allow_cidrs (loopback is
// never delivered to otherwise).
const sinkIP = "127.0.0.2"

// startAlertEngines starts the customer's webhook, Alertmanager (on a
// placeholder config: tenant_alerts writes its own into the same file at
// its start and reloads it) and vmalert (on tenant_alerts' rule files,
// none yet), for a gateway with state directory stateDir.
func (e *env) startAlertEngines(stateDir string) {
	t := e.t
	t.Helper()
	e.sink = startWebhookSink(t, filepath.Join(e.dir, "sink-certs"))
	alertsDir := filepath.Join(stateDir, "alerts")
	require.NoError(t, os.MkdirAll(filepath.Join(alertsDir, "rules"), 0o750))
	amConfig := filepath.Join(alertsDir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(amConfig, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o640))

	amBin, err := alertengines.FindAlertmanager(e.root)
	require.NoError(t, err)
	amLog, err := os.Create(filepath.Join(e.dir, "alertmanager.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = amLog.Close() })
	e.alertmanager, err = proc.RetryBind(bindAttempts, t.Logf, func() (*alertengines.Alertmanager, error) {
		return alertengines.StartAlertmanager(context.Background(), amBin, alertengines.AlertmanagerOptions{
			Addr: proc.Addr(proc.Port(t)), ConfigFile: amConfig, DataDir: filepath.Join(e.dir, "alertmanager-data"),
		}, amLog)
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.alertmanager.Stop() })

	vmalertBin, err := alertengines.FindVMAlert(e.root)
	require.NoError(t, err)
	vmalertLog, err := os.Create(filepath.Join(e.dir, "vmalert.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = vmalertLog.Close() })
	e.vmalert, err = proc.RetryBind(bindAttempts, t.Logf, func() (*alertengines.VMAlert, error) {
		return alertengines.StartVMAlert(context.Background(), vmalertBin, alertengines.VMAlertOptions{
			Addr: proc.Addr(proc.Port(t)), DatasourceURL: e.store.URL, NotifierURL: e.alertmanager.URL(),
			RulesGlob: filepath.Join(alertsDir, "rules", "*.yaml"), EvaluationInterval: alertsEvaluationInterval,
		}, vmalertLog)
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.vmalert.Stop() })
}

// webhookSink is a customer's HTTPS webhook: it keeps what it is sent.
type webhookSink struct {
	url    string // https://127.0.0.2:<port>
	caFile string // the CA of its certificate (IP SAN 127.0.0.2)
	mu     sync.Mutex
	got    []sinkRequest
}

// sinkRequest is one delivery the sink got.
type sinkRequest struct {
	path   string
	header http.Header
	body   []byte
}

func startWebhookSink(t *testing.T, certDir string) *webhookSink {
	t.Helper()
	require.NoError(t, devcerts.Write(devcerts.Options{Dir: certDir, ServerHosts: []string{sinkIP}}))
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, devcerts.ServerCertFile), filepath.Join(certDir, devcerts.ServerKeyFile))
	require.NoError(t, err)
	s := &webhookSink{caFile: filepath.Join(certDir, devcerts.CAFile)}
	ln, err := net.Listen("tcp", net.JoinHostPort(sinkIP, "0"))
	require.NoError(t, err, "a listener on %s (Linux routes all of 127/8 to loopback)", sinkIP)
	srv := &httptest.Server{
		Listener: ln,
		Config: &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			s.mu.Lock()
			s.got = append(s.got, sinkRequest{path: r.URL.Path, header: r.Header.Clone(), body: body})
			s.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		})},
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// received is what the sink has been sent so far.
func (s *webhookSink) received() []sinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkRequest(nil), s.got...)
}

// credential is one entry of the gateway's credentials file: its id (also
// the name of its secret), tenant and scope ("" for ingest).
type credential struct{ name, tenant, scope string }

// writeCredentials makes a random secret for each entry (into secrets, by
// name) and writes the credentials file with their hashes into dir.
func writeCredentials(t *testing.T, dir string, secrets map[string]string, entries []credential) string {
	t.Helper()
	var creds strings.Builder
	creds.WriteString("credentials:\n")
	for _, c := range entries {
		secrets[c.name] = randomSecret(t)
		sum := sha256.Sum256([]byte(secrets[c.name]))
		fmt.Fprintf(&creds, "  - id: %s\n    tenant: %s\n    sha256: %s\n", c.name, c.tenant, hex.EncodeToString(sum[:]))
		if c.scope != "" {
			fmt.Fprintf(&creds, "    scope: %s\n", c.scope)
		}
	}
	path := filepath.Join(dir, "credentials.yaml")
	require.NoError(t, os.WriteFile(path, []byte(creds.String()), 0o600))
	return path
}

func randomSecret(t *testing.T) string {
	var b [24]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

// fleetMetrics is what a tenant's agents would send: for every VM and GPU,
// the metrics the GPU dashboard draws, at minutes points ending at end.
// claim, when set, is put on every resource as tenant.id and tenant_id (a
// VM lying about its tenant).
func fleetMetrics(tenant, claim string, end time.Time, minutes int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	f := fleets[tenant]
	for _, vm := range f.vms {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("host.name", vm)
		if claim != "" {
			rm.Resource().Attributes().PutStr("tenant.id", claim)
			rm.Resource().Attributes().PutStr("tenant_id", claim)
		}
		sm := rm.ScopeMetrics().AppendEmpty()
		gauge := func(name string, value func(gpu, minute int) float64, attrs map[string]string) {
			m := sm.Metrics().AppendEmpty()
			m.SetName(name)
			dps := m.SetEmptyGauge().DataPoints()
			for gpu := range f.gpus {
				for i := range minutes {
					dp := dps.AppendEmpty()
					dp.SetTimestamp(pcommon.NewTimestampFromTime(end.Add(-time.Duration(minutes-1-i) * time.Minute)))
					dp.SetDoubleValue(value(gpu, i))
					dp.Attributes().PutStr("hw.id", fmt.Sprintf("GPU-%s-%d", vm, gpu))
					dp.Attributes().PutStr("hw.name", fmt.Sprintf("nvidia%d", gpu))
					for k, v := range attrs {
						dp.Attributes().PutStr(k, v)
					}
				}
			}
		}
		gauge("hw.gpu.utilization", func(g, i int) float64 { return float64(30+10*g+i%7) / 100 }, map[string]string{"hw.gpu.task": "general"})
		gauge("hw.gpu.memory.utilization", func(g, i int) float64 { return float64(40+5*g) / 100 }, nil)
		gauge("hw.power", func(g, i int) float64 { return float64(250 + 20*g + i%5) }, map[string]string{"hw.type": "gpu"})
		gauge("hw.temperature", func(g, i int) float64 { return float64(55 + g) }, map[string]string{"hw.sensor_location": "gpu"})
		gauge("nvidia.gpu.clock.frequency", func(g, i int) float64 { return 1.98e9 }, map[string]string{"nvidia.gpu.clock": "sm"})
		gauge("hw.status", func(g, i int) float64 { return 1 }, map[string]string{"hw.type": "gpu", "hw.state": "ok"})
	}
	return md
}

// write sends md through the gateway's OTLP/HTTP receiver with token.
func (e *env) write(token string, md pmetric.Metrics) int {
	e.t.Helper()
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	require.NoError(e.t, err)
	return e.postOTLP(e.otlpURL, token, body)
}

// postOTLP posts an OTLP protobuf body to the gateway with token.
func (e *env) postOTLP(target, token string, body []byte) int {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.client.Do(req)
	require.NoError(e.t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// seed writes both tenants' fleets (globex's claiming to be acme) and
// their XID records (seedEvents), and waits until the stores have every
// series and record.
func (e *env) seed() {
	e.t.Helper()
	e.sent = time.Now().Truncate(time.Second)
	require.Equal(e.t, http.StatusOK, e.write(e.secrets["acme-token"], fleetMetrics("acme", "", e.sent, 30)))
	require.Equal(e.t, http.StatusOK, e.write(e.secrets["globex-token"], fleetMetrics("globex", "acme", e.sent, 30)))
	e.seedEvents()
	require.Eventually(e.t, func() bool {
		_ = e.store.Flush(context.Background())
		for tenant := range fleets {
			n, err := e.store.Scalar(context.Background(), "count(last_over_time(hw.gpu.utilization[1h]))", "tenant_id="+tenant)
			if err != nil || int(n) != gpusOf(tenant) {
				return false
			}
		}
		return true
	}, 60*time.Second, 250*time.Millisecond, "the store must hold both tenants' series")
}

// request is one HTTP request to the read listener, spelled as sent.
type request struct {
	method string
	target string // path and query, byte for byte
	form   string // POST body
	header http.Header
	// noRedirect answers a redirect as it is, instead of following it.
	noRedirect bool
}

type answer struct {
	status int
	body   []byte
	header http.Header
}

func (e *env) read(r request) answer {
	e.t.Helper()
	u, err := url.Parse(e.readURL)
	require.NoError(e.t, err)
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.form != "" || method == http.MethodPost {
		body = strings.NewReader(r.form)
	}
	req, err := http.NewRequest(method, e.readURL+"/", body)
	require.NoError(e.t, err)
	// Opaque keeps the target's spelling ("//", "..", "%2f") as sent.
	req.URL = &url.URL{Scheme: u.Scheme, Host: u.Host, Opaque: strings.SplitN(r.target, "?", 2)[0]}
	if q := strings.SplitN(r.target, "?", 2); len(q) == 2 {
		req.URL.RawQuery = q[1]
	}
	if method == http.MethodPost && r.header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	client := e.client
	if r.noRedirect {
		c := *e.client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		client = &c
	}
	resp, err := client.Do(req)
	require.NoError(e.t, err)
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return answer{status: resp.StatusCode, body: data, header: resp.Header}
}

// readPatiently is read as a well-behaved client does it: a 429 is
// retried after its Retry-After (the tests ask faster than the tenant's
// rate; the limits have their own test).
func (e *env) readPatiently(r request) answer {
	e.t.Helper()
	for range 30 {
		a := e.read(r)
		if a.status != http.StatusTooManyRequests {
			return a
		}
		secs, err := strconv.Atoi(a.header.Get("Retry-After"))
		require.NoError(e.t, err)
		time.Sleep(time.Duration(secs) * time.Second)
	}
	e.t.Fatalf("still over the rate limit after 30 tries: %s", r.target)
	return answer{}
}

func bearer(key string) http.Header { return http.Header{"Authorization": {"Bearer " + key}} }

func basic(key string) http.Header {
	r, _ := http.NewRequest(http.MethodGet, "/", http.NoBody)
	r.SetBasicAuth("grafana", key)
	return r.Header
}

// apiData is the data of a successful Prometheus API answer.
func apiData(t *testing.T, a answer) json.RawMessage {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(a.body, &env), "%s", a.body)
	require.Equal(t, "success", env.Status)
	return env.Data
}

// storeDirect asks the store itself, with the tenant's extra_label: what
// the store answers for that tenant.
func (e *env) storeDirect(method, path string, params url.Values, tenant string) answer {
	e.t.Helper()
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	q.Set("extra_label", "tenant_id="+tenant)
	resp, err := http.Get(e.store.URL + path + "?" + q.Encode())
	require.NoError(e.t, err)
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return answer{status: resp.StatusCode, body: data}
}

// xidEvent is one XID error an agent reports (receiver/nvmlreceiver/xid.go):
// on GPU gpu of VM vm, ago before the newest metric point.
type xidEvent struct {
	vm    string
	gpu   int
	code  int
	fatal bool
	desc  string
	ago   time.Duration
	claim string // a tenant the record claims to be (resource and record attributes)
}

// xidEvents are each tenant's XID records: counts per VM, GPU and code
// differ between the tenants, so a count that leaked across shows. One of
// acme's descriptions is markup (the records are customer data: a page must
// show it as text), and records of both tenants claim the other tenant.
var xidEvents = map[string][]xidEvent{
	"acme": {
		{vm: "acme-vm-1", gpu: 0, code: 79, fatal: true, desc: "GPU has fallen off the bus", ago: 50 * time.Minute},
		{vm: "acme-vm-1", gpu: 1, code: 13, desc: "Graphics Engine Exception", ago: 40 * time.Minute},
		{vm: "acme-vm-1", gpu: 1, code: 13, desc: "Graphics Engine Exception", ago: 30 * time.Minute},
		{vm: "acme-vm-2", gpu: 0, code: 48, fatal: true, desc: "Double Bit ECC Error", ago: 20 * time.Minute},
		{vm: "acme-vm-2", gpu: 1, code: 31, desc: xssDescription, ago: 10 * time.Minute, claim: "globex"},
	},
	"globex": {
		{vm: "globex-vm-1", gpu: 0, code: 79, fatal: true, desc: "GPU has fallen off the bus", ago: 45 * time.Minute, claim: "acme"},
		{vm: "globex-vm-1", gpu: 2, code: 94, desc: "Contained ECC error", ago: 35 * time.Minute, claim: "acme"},
		{vm: "globex-vm-1", gpu: 2, code: 94, desc: "Contained ECC error", ago: 25 * time.Minute},
		{vm: "globex-vm-1", gpu: 1, code: 63, desc: "ECC page retirement or row remapping recording event", ago: 15 * time.Minute, claim: "acme"},
	},
}

// xssDescription is customer data shaped like markup and like a LogsQL
// string's end.
const xssDescription = `GPU memory page fault <img id="xss" src="/x"> " or tenant_id:*`

func gpuID(vm string, gpu int) string          { return fmt.Sprintf("GPU-%s-%d", vm, gpu) }
func gpuName(gpu int) string                   { return fmt.Sprintf("nvidia%d", gpu) }
func (x xidEvent) severity() string            { return map[bool]string{true: "FATAL", false: "ERROR"}[x.fatal] }
func (x xidEvent) at(sent time.Time) time.Time { return sent.Add(-x.ago) }

// xidLogs is what tenant's agents send for its XID events: the records of
// receiver/nvmlreceiver/xid.go, one resource per VM.
func xidLogs(tenant string, sent time.Time) plog.Logs {
	ld := plog.NewLogs()
	for _, x := range xidEvents[tenant] {
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("host.name", x.vm)
		if x.claim != "" {
			rl.Resource().Attributes().PutStr("tenant_id", x.claim)
			rl.Resource().Attributes().PutStr("tenant.id", x.claim)
		}
		sl := rl.ScopeLogs().AppendEmpty()
		sl.Scope().SetName("github.com/otelcol-gpu/otelcol-gpu/receiver/nvmlreceiver")
		lr := sl.LogRecords().AppendEmpty()
		ts := pcommon.NewTimestampFromTime(x.at(sent))
		lr.SetTimestamp(ts)
		lr.SetObservedTimestamp(ts)
		lr.SetEventName("nvidia.gpu.xid")
		lr.SetSeverityNumber(plog.SeverityNumberError)
		if x.fatal {
			lr.SetSeverityNumber(plog.SeverityNumberFatal)
		}
		lr.SetSeverityText(x.severity())
		lr.Body().SetStr(fmt.Sprintf("XID %d on %s (%s): %s", x.code, gpuName(x.gpu), gpuID(x.vm, x.gpu), x.desc))
		a := lr.Attributes()
		a.PutStr("hw.id", gpuID(x.vm, x.gpu))
		a.PutStr("hw.name", gpuName(x.gpu))
		a.PutInt("nvidia.xid.code", int64(x.code))
		a.PutStr("nvidia.xid.description", x.desc)
		if x.claim != "" {
			a.PutStr("tenant_id", x.claim)
		}
	}
	return ld
}

// writeLogs sends ld through the gateway's OTLP/HTTP receiver with token.
func (e *env) writeLogs(token string, ld plog.Logs) int {
	e.t.Helper()
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	require.NoError(e.t, err)
	return e.postOTLP(e.otlpLogsURL, token, body)
}

// seedEvents writes both tenants' XID records with their own ingest tokens
// (some claiming the other tenant) and waits until the event store holds
// each tenant's, filed under the tenant of the token.
func (e *env) seedEvents() {
	e.t.Helper()
	if e.sent.IsZero() {
		e.sent = time.Now().Truncate(time.Second)
	}
	for tenant := range xidEvents {
		require.Equal(e.t, http.StatusOK, e.writeLogs(e.secrets[tenant+"-token"], xidLogs(tenant, e.sent)), tenant)
	}
	var got map[string]int
	require.Eventually(e.t, func() bool {
		got = map[string]int{}
		recs, err := e.logs.Query(context.Background(), "*", "")
		if err != nil {
			return false
		}
		for _, r := range recs {
			got[r["tenant_id"]]++
		}
		return got["acme"] == len(xidEvents["acme"]) && got["globex"] == len(xidEvents["globex"])
	}, 60*time.Second, 250*time.Millisecond, "the event store must hold both tenants' XID records")
	require.Len(e.t, got, 2, "records under a tenant other than acme and globex: %v", got)
}
