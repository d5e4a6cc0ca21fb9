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
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
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

// env is one store, one gateway with tenant_query, and the credentials.
type env struct {
	t       *testing.T
	root    string
	dir     string
	certs   string
	store   *vmstore.Store
	gw      *proc.Proc
	client  *http.Client // trusts the development CA
	readURL string       // https://127.0.0.1:<query port>
	otlpURL string       // https://127.0.0.1:<otlp http port>/v1/metrics
	metrics string       // the gateway's own Prometheus metrics

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

	var creds strings.Builder
	creds.WriteString("credentials:\n")
	for _, c := range []struct{ name, tenant, scope string }{
		{"acme-token", "acme", ""}, {"globex-token", "globex", ""},
		{"acme-key", "acme", "read"}, {"acme-key-2", "acme", "read"}, {"globex-key", "globex", "read"},
	} {
		e.secrets[c.name] = randomSecret(t)
		sum := sha256.Sum256([]byte(e.secrets[c.name]))
		fmt.Fprintf(&creds, "  - id: %s\n    tenant: %s\n    sha256: %s\n", c.name, c.tenant, hex.EncodeToString(sum[:]))
		if c.scope != "" {
			fmt.Fprintf(&creds, "    scope: %s\n", c.scope)
		}
	}
	credFile := filepath.Join(e.dir, "credentials.yaml")
	require.NoError(t, os.WriteFile(credFile, []byte(creds.String()), 0o600))

	e.gw, err = proc.RetryBind(bindAttempts, t.Logf, func() (*proc.Proc, error) {
		health, httpPort, query, metrics := proc.Port(t), proc.Port(t), proc.Port(t), proc.Port(t)
		e.readURL = "https://" + proc.Addr(query)
		e.otlpURL = "https://" + proc.Addr(httpPort) + "/v1/metrics"
		e.metrics = "http://" + proc.Addr(metrics) + "/metrics"
		gw := proc.StartTest(t, "gateway", proc.Binary(t), []string{"--config", filepath.Join(e.root, "config", "gateway.yaml")},
			"OTELCOL_GPU_GRPC_ENDPOINT="+proc.Addr(proc.Port(t)),
			"OTELCOL_GPU_HTTP_ENDPOINT="+proc.Addr(httpPort),
			"OTELCOL_GPU_QUERY_ENDPOINT="+proc.Addr(query),
			"OTELCOL_GPU_TLS_CERT_FILE="+filepath.Join(e.certs, devcerts.ServerCertFile),
			"OTELCOL_GPU_TLS_KEY_FILE="+filepath.Join(e.certs, devcerts.ServerKeyFile),
			"OTELCOL_GPU_CREDENTIALS_FILE="+credFile,
			"OTELCOL_GPU_STORE_URL="+e.store.URL,
			"OTELCOL_GPU_STATE_DIR="+filepath.Join(e.dir, "gateway-state"),
			"OTELCOL_GPU_HEALTH_ENDPOINT="+proc.Addr(health),
			"OTELCOL_GPU_METRICS_PORT="+strconv.Itoa(metrics),
		)
		return gw, gw.WaitHTTPOK(context.Background(), "http://"+proc.Addr(health)+"/", 30*time.Second)
	})
	require.NoError(t, err)
	return e
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
	req, err := http.NewRequest(http.MethodPost, e.otlpURL, bytes.NewReader(body))
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
// waits until the store has every series.
func (e *env) seed() {
	e.t.Helper()
	e.sent = time.Now().Truncate(time.Second)
	require.Equal(e.t, http.StatusOK, e.write(e.secrets["acme-token"], fleetMetrics("acme", "", e.sent, 30)))
	require.Equal(e.t, http.StatusOK, e.write(e.secrets["globex-token"], fleetMetrics("globex", "acme", e.sent, 30)))
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
	resp, err := e.client.Do(req)
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
