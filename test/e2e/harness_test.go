//go:build e2e

// Package e2e proves the product the way an operator meets it: the real
// otelcol-gpu binary as agents (on the simulated NVML library) and as the
// gateway (config/agent.yaml and config/gateway.yaml, unchanged, configured
// through their environment variables), the real VictoriaMetrics as the
// store, and the load generator of internal/testkit/loadgen as many more agents; all
// real processes on loopback, killed and restarted for real. Everything is
// asserted through the store's query API.
//
// Counting: loadgen gives every agent's requests distinct millisecond
// timestamps, and the store keeps one sample per series and millisecond
// (-dedup.minScrapeInterval=1ms, see internal/testkit/vmstore), so "stored" is the
// number of distinct data points in the store and a batch the gateway
// delivered twice (a re-send after a crash) is counted once; the proxy in
// front of the store counts what was delivered, re-sends included, and the
// difference is reported as "dup".
package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/metricwalk"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vlstore"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/vmstore"
	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

const (
	window = 2 * time.Hour // every count looks this far back: all of a test's data
	settle = 90 * time.Second
)

// env is one scenario's world: a store, a fault proxy in front of it, a
// gateway, certificates and credentials.
type env struct {
	t     *testing.T
	dir   string
	certs string
	root  string

	store *vmstore.Store
	proxy *faultProxy
	// logs is the event store (VictoriaLogs), started by the scenarios
	// that need it; without it the gateway's logs route points at a
	// reserved port nothing listens on.
	logs       *vlstore.Store
	noLogStore int

	creds                               map[string]string   // credential id -> "tenant\x00token"
	vms                                 map[string]vmRecord // credential id -> its VM's provisioning record
	gwGRPC, gwHTTP, gwHealth, gwMetrics int
	gwQuery                             int
	gw                                  *proc.Proc
	gwExtraEnv                          []string
	stateDir                            string
	agentSeq, agents                    int
	loadgenTenants                      []string
}

func newEnv(t *testing.T, loadTenants ...string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), root: proc.RepoRoot(t), creds: map[string]string{}, vms: map[string]vmRecord{}, loadgenTenants: loadTenants}
	e.certs = filepath.Join(e.dir, "certs")
	require.NoError(t, devcerts.Write(devcerts.Options{Dir: e.certs}))
	bin, err := vmstore.FindBinary(e.root)
	require.NoError(t, err)
	storeLog, err := os.Create(filepath.Join(e.dir, "store.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = storeLog.Close() })
	store, err := proc.RetryBind(bindAttempts, t.Logf, func() (*vmstore.Store, error) {
		s := vmstore.New(bin, filepath.Join(e.dir, "store-data"), proc.Addr(proc.Port(t)), storeLog)
		return s, s.Start(context.Background())
	})
	require.NoError(t, err)
	e.store = store
	t.Cleanup(func() { _ = e.store.Stop() })
	e.proxy = startFaultProxy(t, e.store.URL)
	for _, tn := range loadTenants {
		e.creds["loadgen-"+tn] = tn + "\x00" + loadgen.DefaultToken(tn)
	}
	// Reserved now: an agent may be started (and pointed at the gateway)
	// before the gateway is.
	e.reserveGatewayPorts()
	e.noLogStore = proc.Port(t)
	e.stateDir = filepath.Join(e.dir, "gateway-state")
	e.writeCredentials()
	return e
}

// startLogStore runs VictoriaLogs for the gateway's logs route; call it
// before startGateway.
func (e *env) startLogStore() {
	e.t.Helper()
	bin, err := vlstore.FindBinary(e.root)
	require.NoError(e.t, err)
	log, err := os.Create(filepath.Join(e.dir, "logstore.log"))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = log.Close() })
	e.logs, err = proc.RetryBind(bindAttempts, e.t.Logf, func() (*vlstore.Store, error) {
		return vlstore.Start(context.Background(), bin, filepath.Join(e.dir, "logstore-data"), proc.Addr(proc.Port(e.t)), log)
	})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = e.logs.Stop() })
}

func (e *env) logStoreURL() string {
	if e.logs != nil {
		return e.logs.URL
	}
	return "http://" + proc.Addr(e.noLogStore)
}

// addCredential provisions a token for a tenant (a VM being set up).
func (e *env) addCredential(id, tenant, token string) {
	e.creds[id] = tenant + "\x00" + token
	e.writeCredentials()
}

// vmRecord is what the provider's provisioning says of a VM: the identity
// the gateway stamps on its data and the GPUs it is billed for (negative:
// the record does not say).
type vmRecord struct {
	instanceID string
	gpus       int
}

// addVM provisions one VM's token with its instance id and GPUs.
func (e *env) addVM(id, tenant, token string, vm vmRecord) {
	e.vms[id] = vm
	e.addCredential(id, tenant, token)
}

// revoke removes a credential (the gateway notices within reload_interval).
func (e *env) revoke(id string) {
	delete(e.creds, id)
	e.writeCredentials()
}

func (e *env) writeCredentials() {
	var b strings.Builder
	b.WriteString("credentials:\n")
	for id, v := range e.creds {
		tenant, token, _ := strings.Cut(v, "\x00")
		sum := sha256.Sum256([]byte(token))
		fmt.Fprintf(&b, "  - id: %s\n    tenant: %s\n    sha256: %s\n", id, tenant, hex.EncodeToString(sum[:]))
		if strings.HasPrefix(id, readKeyPrefix) {
			b.WriteString("    scope: read\n")
		}
		if vm, ok := e.vms[id]; ok {
			fmt.Fprintf(&b, "    instance_id: %s\n", vm.instanceID)
			if vm.gpus >= 0 {
				fmt.Fprintf(&b, "    gpus: %d\n", vm.gpus)
			}
		}
	}
	path := filepath.Join(e.dir, "credentials.yaml")
	require.NoError(e.t, os.WriteFile(path+".tmp", []byte(b.String()), 0o600))
	require.NoError(e.t, os.Rename(path+".tmp", path))
}

// readKeyPrefix starts the id of a credential that is a read key.
const readKeyPrefix = "read-"

// bindAttempts bounds the first starts of a process whose reserved port was
// taken anyway (by a program outside the project, between the reservation's
// check and the bind). A restart keeps its ports: agents point at them.
const bindAttempts = 3

// startGateway runs config/gateway.yaml against the proxy in front of the
// store, with persistent queues in a state directory that outlives restarts.
// Its first start reserves its ports.
func (e *env) startGateway() *proc.Proc {
	e.t.Helper()
	if e.gw != nil {
		return e.launchGateway()
	}
	attempt := 0
	gw, err := proc.RetryBind(bindAttempts, e.t.Logf, func() (*proc.Proc, error) {
		if attempt++; attempt > 1 {
			e.reserveGatewayPorts()
		}
		gw := e.startGatewayProcess()
		return gw, gw.WaitHTTPOK(context.Background(), fmt.Sprintf("http://%s/", proc.Addr(e.gwHealth)), 30*time.Second)
	})
	require.NoError(e.t, err)
	e.gw = gw
	return gw
}

func (e *env) reserveGatewayPorts() {
	for _, p := range []*int{&e.gwGRPC, &e.gwHTTP, &e.gwHealth, &e.gwMetrics, &e.gwQuery} {
		*p = proc.Port(e.t)
	}
}

// launchGateway restarts the gateway on its ports.
func (e *env) launchGateway() *proc.Proc {
	e.t.Helper()
	gw := e.startGatewayProcess()
	require.NoError(e.t, gw.WaitHTTPOK(context.Background(), fmt.Sprintf("http://%s/", proc.Addr(e.gwHealth)), 30*time.Second))
	e.gw = gw
	return gw
}

func (e *env) startGatewayProcess() *proc.Proc {
	envv := append([]string{
		"OTELCOL_GPU_GRPC_ENDPOINT=" + proc.Addr(e.gwGRPC),
		"OTELCOL_GPU_HTTP_ENDPOINT=" + proc.Addr(e.gwHTTP),
		"OTELCOL_GPU_TLS_CERT_FILE=" + filepath.Join(e.certs, devcerts.ServerCertFile),
		"OTELCOL_GPU_TLS_KEY_FILE=" + filepath.Join(e.certs, devcerts.ServerKeyFile),
		"OTELCOL_GPU_CREDENTIALS_FILE=" + filepath.Join(e.dir, "credentials.yaml"),
		"OTELCOL_GPU_STORE_URL=" + e.proxy.URL,
		"OTELCOL_GPU_LOGS_STORE_URL=" + e.logStoreURL(),
		"OTELCOL_GPU_STATE_DIR=" + e.stateDir,
		"OTELCOL_GPU_HEALTH_ENDPOINT=" + proc.Addr(e.gwHealth),
		"OTELCOL_GPU_QUERY_ENDPOINT=" + proc.Addr(e.gwQuery),
		"OTELCOL_GPU_METRICS_PORT=" + strconv.Itoa(e.gwMetrics),
	}, e.gwExtraEnv...)
	return proc.StartTest(e.t, "gateway", proc.Binary(e.t), []string{"--config", filepath.Join(e.root, "config", "gateway.yaml")}, envv...)
}

// agent is a real otelcol-gpu agent (config/agent.yaml) on the simulated
// NVML library.
type agent struct {
	proc                       *proc.Proc
	env                        []string
	health, otlpGRPC, otlpHTTP int
}

type agentOpts struct {
	tenant      string // what the VM's tenant file says
	token       string // from provision
	fleet       string // default: 8 H100s
	gatewayPort int    // default: the env's gateway
}

// provision creates a VM's token for a tenant, as an operator's
// provisioning does. Provision before startGateway: a running gateway
// learns new credentials only at its next reload (5 s), and an agent that
// starts sending before then is refused for good (Unauthenticated is a
// permanent error for the upstream otlp exporter).
func (e *env) provision(tenant string) string {
	e.agentSeq++
	token := fmt.Sprintf("vm-%d-token-%d", e.agentSeq, time.Now().UnixNano())
	e.addCredential(fmt.Sprintf("vm-%d", e.agentSeq), tenant, token)
	return token
}

func (e *env) startAgent(o agentOpts) *agent {
	e.t.Helper()
	e.agents++
	n := e.agents
	dir := filepath.Join(e.dir, fmt.Sprintf("agent-%d", n))
	require.NoError(e.t, os.MkdirAll(dir, 0o700))
	if o.fleet == "" {
		o.fleet = fmt.Sprintf("gpus = 8\nmodel = h100\nhost = %d\nsignal.utilization = wave 20 90 60 %d\nsignal.memory_used = const 40000\n", n, 7*n)
	}
	if o.gatewayPort == 0 {
		o.gatewayPort = e.gwGRPC
	}
	require.NoError(e.t, os.WriteFile(filepath.Join(dir, "token"), []byte(o.token+"\n"), 0o600))
	require.NoError(e.t, os.WriteFile(filepath.Join(dir, "tenant"), []byte(o.tenant+"\n"), 0o600))
	require.NoError(e.t, os.WriteFile(filepath.Join(dir, "fleet"), []byte(o.fleet), 0o600))
	a := &agent{}
	p, err := proc.RetryBind(bindAttempts, e.t.Logf, func() (*proc.Proc, error) {
		a.health, a.otlpGRPC, a.otlpHTTP = proc.Port(e.t), proc.Port(e.t), proc.Port(e.t)
		a.env = a.environment(e, o, dir)
		a.proc = proc.StartTest(e.t, "agent", proc.Binary(e.t), []string{"--config", filepath.Join(e.root, "config", "agent.yaml")}, a.env...)
		return a.proc, a.proc.WaitHTTPOK(context.Background(), fmt.Sprintf("http://%s/", proc.Addr(a.health)), 30*time.Second)
	})
	require.NoError(e.t, err)
	a.proc = p
	return a
}

func (a *agent) environment(e *env, o agentOpts, dir string) []string {
	return []string{
		"LD_LIBRARY_PATH=" + filepath.Dir(simLibrary(e.t)),
		"NVMLSIM_FLEET=" + filepath.Join(dir, "fleet"),
		"OTELCOL_GPU_GATEWAY_ENDPOINT=localhost:" + strconv.Itoa(o.gatewayPort),
		"OTELCOL_GPU_CA_FILE=" + filepath.Join(e.certs, devcerts.CAFile),
		"OTELCOL_GPU_TOKEN_FILE=" + filepath.Join(dir, "token"),
		"OTELCOL_GPU_TENANT_FILE=" + filepath.Join(dir, "tenant"),
		"OTELCOL_GPU_STATE_DIR=" + filepath.Join(dir, "state"),
		"OTELCOL_GPU_INTERVAL=1s",
		"OTELCOL_GPU_OTLP_GRPC=" + proc.Addr(a.otlpGRPC),
		"OTELCOL_GPU_OTLP_HTTP=" + proc.Addr(a.otlpHTTP),
		"OTELCOL_GPU_HEALTH_ENDPOINT=" + proc.Addr(a.health),
		"OTELCOL_GPU_METRICS_PORT=" + strconv.Itoa(proc.Port(e.t)),
	}
}

// restart starts the agent again on its ports and state.
func (a *agent) restart(e *env) {
	e.t.Helper()
	a.proc = proc.StartTest(e.t, "agent", proc.Binary(e.t), []string{"--config", filepath.Join(e.root, "config", "agent.yaml")}, a.env...)
	require.NoError(e.t, a.proc.WaitHTTPOK(context.Background(), fmt.Sprintf("http://%s/", proc.Addr(a.health)), 30*time.Second))
}

func simLibrary(t *testing.T) string {
	path := os.Getenv("NVMLSIM_LIB")
	if path == "" {
		path = filepath.Join(proc.RepoRoot(t), "build", "nvmlsim", "libnvidia-ml.so.1")
	}
	_, err := os.Stat(path)
	require.NoError(t, err, "build the simulated library with 'make nvmlsim'")
	return path
}

// load drives the gateway with loadgen agents over OTLP/gRPC (or HTTP) with TLS.
func (e *env) load(ctx context.Context, c loadgen.Config) loadgen.Report {
	e.t.Helper()
	rep, err := loadgen.Run(ctx, e.loadConfig(c))
	require.NoError(e.t, err)
	return rep
}

// loadInBackground starts a load run; the returned function waits for its
// report (call it from the test goroutine).
func (e *env) loadInBackground(c loadgen.Config) func() loadgen.Report {
	c = e.loadConfig(c)
	var (
		rep  loadgen.Report
		err  error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		rep, err = loadgen.Run(context.Background(), c)
	}()
	return func() loadgen.Report {
		e.t.Helper()
		<-done
		require.NoError(e.t, err)
		require.Zero(e.t, rep.Failed, rep.LastError)
		return rep
	}
}

// requireAllStored waits until the store holds every point loadgen had
// acknowledged, tenant by tenant, and asserts it; it returns the totals.
func (e *env) requireAllStored(rep loadgen.Report, selector string, within time.Duration) (sent, stored int64) {
	e.t.Helper()
	for _, tn := range e.loadgenTenants {
		want := rep.PerTenant[tn].Points
		require.Positive(e.t, want, "tenant %s sent nothing", tn)
		got := e.waitStored(tn, selector, want, within)
		assert.Equal(e.t, want, got, "tenant %s: every acknowledged point stored, under its own label", tn)
		sent, stored = sent+want, stored+got
	}
	return sent, stored
}

func (e *env) loadConfig(c loadgen.Config) loadgen.Config {
	if c.Transport.Protocol == "" {
		c.Transport.Protocol = "grpc"
	}
	if c.Transport.Endpoint == "" {
		if c.Transport.Protocol == "grpc" {
			c.Transport.Endpoint = proc.Addr(e.gwGRPC)
		} else {
			c.Transport.Endpoint = "https://" + proc.Addr(e.gwHTTP)
		}
	}
	c.Transport.CAFile = filepath.Join(e.certs, devcerts.CAFile)
	c.Transport.ServerName = "localhost"
	if c.TenantName == nil {
		names := e.loadgenTenants
		c.TenantName = func(i int) string { return names[i] }
	}
	return c
}

// stored is the number of distinct data points the store holds for a
// tenant (selector narrows it further: `{host.name=~"loadgen-.*"}`).
func (e *env) stored(tenant, selector string) int64 {
	e.t.Helper()
	ctx := context.Background()
	require.NoError(e.t, e.store.Flush(ctx))
	// The tenant's data, not the usage series the gateway and the usage
	// job write beside it.
	sel := fmt.Sprintf(`{tenant_id=%q,__name__!~"usage\\..*"}`, tenant)
	if selector != "" {
		sel = strings.TrimSuffix(selector, "}") + fmt.Sprintf(`,tenant_id=%q,__name__!~"usage\\..*"}`, tenant)
	}
	n, err := e.store.CountSamples(ctx, sel, "", window)
	require.NoError(e.t, err)
	return n
}

// waitStored polls until the store holds want points for the tenant (or
// the deadline), and returns what it holds then.
func (e *env) waitStored(tenant, selector string, want int64, within time.Duration) int64 {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := e.stored(tenant, selector)
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(500 * time.Millisecond)
	}
}

const loadSel = `{host.name=~"loadgen-vm-.*"}`

// summary prints the scenario's one line: what loadgen had accepted, what
// the store holds of it, what is missing, and how many points (of every
// source) the store was delivered more than once: delivered through the
// proxy less distinct points stored, over the loadgen tenants.
func (e *env) summary(scenario string, sent, stored int64, extra string) {
	var dup int64
	for _, tn := range e.loadgenTenants {
		dup += e.proxy.deliveredTo(tn) - e.stored(tn, "")
	}
	line := fmt.Sprintf("e2e: %-34s sent=%d stored=%d lost=%d dup=%d", scenario, sent, stored, sent-stored, dup)
	if extra != "" {
		line += " " + extra
	}
	fmt.Println(line)
}

// ---- fault proxy in front of the store ----

// faultProxy forwards the gateway's writes to the store; per tenant (the
// extra_label of the request) it can answer 503 instead, and it counts what
// it forwarded and when each request arrived, with the newest data point's
// timestamp in it (the delivery delay of that request).
type faultProxy struct {
	URL string

	mu        sync.Mutex
	failing   map[string]int // tenant -> HTTP status to answer instead of forwarding
	forwarded map[string]int64
	delays    map[string][]time.Duration
	// window counts a tenant's switches (fail, takeDelays): a request's
	// delay is recorded only if it finished in the window it started in, so
	// a request admitted just before a failure began, or before the delays
	// were taken, never lands in the next window.
	window map[string]int
}

func startFaultProxy(t *testing.T, target string) *faultProxy {
	u, err := url.Parse(target)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(u)
	// A store that is down (scenario 4) answers 502 through the proxy;
	// the per-request log lines of that are noise here.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p := &faultProxy{failing: map[string]int{}, forwarded: map[string]int64{}, delays: map[string][]time.Duration{}, window: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.URL = "http://" + l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenant := strings.TrimPrefix(r.URL.Query().Get("extra_label"), "tenant_id=")
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		code, window := p.failing[tenant], p.window[tenant]
		p.mu.Unlock()
		if code != 0 {
			http.Error(w, "fault proxy: injected failure for tenant "+tenant, code)
			return
		}
		points, newest := inspect(r.Header.Get("Content-Encoding"), body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		rp.ServeHTTP(rec, r)
		if rec.code/100 == 2 && strings.HasSuffix(r.URL.Path, "/v1/metrics") {
			p.mu.Lock()
			p.forwarded[tenant] += int64(points)
			if !newest.IsZero() && p.window[tenant] == window {
				p.delays[tenant] = append(p.delays[tenant], time.Since(newest))
			}
			p.mu.Unlock()
		}
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// inspect counts the points of an OTLP/HTTP body and finds its newest timestamp.
func inspect(encoding string, body []byte) (int, time.Time) {
	var raw []byte
	switch encoding {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return 0, time.Time{}
		}
		raw, _ = io.ReadAll(zr)
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			return 0, time.Time{}
		}
		raw, _ = io.ReadAll(zr)
		zr.Close()
	default:
		raw = body
	}
	md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(raw)
	if err != nil {
		return 0, time.Time{}
	}
	// The agents' points: the gateway's own (usage.vm_minutes, one per VM
	// and minute, the same point again in every request of a minute) are
	// not what the scenarios send.
	var newest time.Time
	points := 0
	metricwalk.NumberPoints(md, func(m pmetric.Metric, dp pmetric.NumberDataPoint) {
		if strings.HasPrefix(m.Name(), usage.MetricPrefix) {
			return
		}
		points++
		if ts := dp.Timestamp().AsTime(); ts.After(newest) {
			newest = ts
		}
	})
	return points, newest
}

// fail makes the proxy answer code for the tenant's writes (0: forward again).
func (p *faultProxy) fail(tenant string, code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.window[tenant]++
	if code == 0 {
		delete(p.failing, tenant)
	} else {
		p.failing[tenant] = code
	}
}

func (p *faultProxy) deliveredTo(tenant string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forwarded[tenant]
}

// takeDelays returns and forgets the delivery delays recorded for a tenant.
func (p *faultProxy) takeDelays(tenant string) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.delays[tenant]
	p.delays[tenant] = nil
	p.window[tenant]++
	return d
}
