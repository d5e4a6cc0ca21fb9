//go:build e2e

package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"google.golang.org/grpc/codes"

	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/loadgen"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// gpuID is the UUID of GPU i of simulated VM n (test/nvmlsim: fleet key host).
func gpuID(host, gpu int) string {
	return fmt.Sprintf("GPU-5e1f%04x-%04x-4000-8000-%012x", host, gpu, 0x51a000+gpu)
}

// 1. GPU and host metrics of every agent arrive with the right tenant
// label; a read scoped to one tenant sees none of the other's series.
func TestScenario1TenantsLandUnderTheirOwnLabel(t *testing.T) {
	e := newEnv(t, "acme", "globex")
	ta, tg := e.provision("acme"), e.provision("globex")
	e.startGateway()
	e.startAgent(agentOpts{tenant: "acme", token: ta})   // host 1
	e.startAgent(agentOpts{tenant: "globex", token: tg}) // host 2
	rep := e.loadInBackground(loadgen.Config{Agents: 20, Tenants: 2, Rate: 40, Duration: 10 * time.Second, Retry: true})()
	ctx := context.Background()
	sent, stored := e.requireAllStored(rep, loadSel, settle)
	for host, tn := range map[int]string{1: "acme", 2: "globex"} {
		other := map[string]string{"acme": "globex", "globex": "acme"}[tn]
		if !assert.Eventually(t, func() bool {
			n, err := e.store.Scalar(ctx, fmt.Sprintf(`count(count by (hw.id) (last_over_time(hw.gpu.utilization{hw.id=~"GPU-5e1f%04x-.*",tenant_id=%q}[5m])))`, host, tn), "")
			return err == nil && n == 8
		}, settle, time.Second, "the 8 GPUs of the %s agent under tenant_id=%s", tn, tn) {
			res, err := e.store.Query(ctx, `count(last_over_time(hw.gpu.utilization{hw.id=~"GPU-5e1f.*"}[5m])) by (tenant_id, hw.id)`, "")
			t.Fatalf("stored GPU series (%v): %v", err, res)
		}
		n, err := e.store.Scalar(ctx, fmt.Sprintf(`count(last_over_time({hw.id=~"GPU-5e1f%04x-.*",tenant_id!=%q}[1h]))`, host, tn), "")
		require.NoError(t, err)
		require.Zero(t, n, "no GPU series of the %s agent under another tenant", tn)
		n, err = e.store.Scalar(ctx, fmt.Sprintf(`count(last_over_time(system.cpu.time{host.name!~"loadgen-.*",tenant_id=%q}[5m]))`, tn), "")
		require.NoError(t, err)
		require.Positive(t, n, "host metrics of the %s agent", tn)

		// The read path: scoped to tn, nothing of the other tenant is visible.
		series, err := e.store.Series(ctx, `{__name__!=""}`, "tenant_id="+tn)
		require.NoError(t, err)
		require.NotEmpty(t, series)
		for _, s := range series {
			require.Equal(t, tn, s["tenant_id"], "a read scoped to %s returned %v", tn, s)
			require.NotContains(t, s["hw.id"], fmt.Sprintf("GPU-5e1f%04x", 3-host), "%s's GPUs visible to %s", other, tn)
		}
		v, err := e.store.Scalar(ctx, fmt.Sprintf(`count(last_over_time({tenant_id=%q}[1h]))`, other), "tenant_id="+tn)
		require.NoError(t, err)
		require.Zero(t, v, "a query for %s's series, scoped to %s, must find nothing", other, tn)
	}
	e.summary("1 tenants under their own label", sent, stored, fmt.Sprintf("agents=2real+%d", rep.Agents))
}

// 2. An agent claiming another tenant lands as the tenant of its token (or
// is refused with on_mismatch: reject); no token, a wrong token and a
// revoked token are refused with Unauthenticated / 401 and nothing is stored.
func TestScenario2SpoofingAndBadTokens(t *testing.T) {
	e := newEnv(t, "acme", "globex")
	acmeToken := e.provision("acme")
	e.addCredential("vm-revoked", "acme", "soon-revoked-token")
	e.startGateway()
	ctx := context.Background()

	// A real agent whose tenant file says globex, holding acme's token.
	e.startAgent(agentOpts{tenant: "globex", token: acmeToken}) // host 1
	require.Eventually(t, func() bool {
		n, err := e.store.Scalar(ctx, `count(count by (hw.id) (last_over_time(hw.gpu.utilization{hw.id=~"GPU-5e1f0001-.*"}[5m])))`, "tenant_id=acme")
		return err == nil && n == 8
	}, settle, time.Second, "the spoofing agent's GPUs stored as acme")
	labels, err := e.store.Series(ctx, `{hw.id=~"GPU-5e1f0001-.*"}`, "")
	require.NoError(t, err)
	for _, l := range labels {
		require.Equal(t, "acme", l["tenant_id"], "%v", l)
		require.Equal(t, "acme", l["tenant.id"], "the payload's claim is overwritten: %v", l)
	}
	require.Zero(t, e.stored("globex", ""), "nothing at all under globex")

	// Loadgen agents of acme claiming globex: stored as acme.
	spoof := e.load(ctx, loadgen.Config{Agents: 2, Tenants: 1, Requests: 5, Retry: true, FirstAgent: 100,
		TenantName: func(int) string { return "acme" }, Claim: func(string) string { return "globex" }})
	require.Zero(t, spoof.Failed, spoof.LastError)
	got := e.waitStored("acme", `{host.name=~"loadgen-vm-10[01]"}`, spoof.Points, settle)
	require.Equal(t, spoof.Points, got)
	require.Zero(t, e.stored("globex", ""))

	// Claims below the resource: a scope and data points carrying the
	// tenant attribute (and its label spelling) for globex. In the store
	// every series says acme under both names.
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("host.name", "spoof-points-vm")
	rm.Resource().Attributes().PutStr("tenant_id", "globex")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().Attributes().PutStr("tenant.id", "globex")
	g := sm.Metrics().AppendEmpty()
	g.SetName("spoof.points")
	now := pcommon.NewTimestampFromTime(time.Now())
	dps := g.SetEmptyGauge().DataPoints()
	for i := 0; i < 3; i++ {
		dp := dps.AppendEmpty()
		dp.SetTimestamp(now)
		dp.SetDoubleValue(float64(i))
		dp.Attributes().PutInt("n", int64(i))
		dp.Attributes().PutStr("tenant.id", "globex")
		dp.Attributes().PutStr("tenant_id", "globex")
	}
	body, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	require.NoError(t, err)
	tr, err := loadgen.NewTransport(loadgen.TransportConfig{Protocol: "grpc", Endpoint: proc.Addr(e.gwGRPC),
		CAFile: filepath.Join(e.certs, devcerts.CAFile), ServerName: "localhost"})
	require.NoError(t, err)
	defer func() { _ = tr.Close() }()
	require.NoError(t, tr.Send(ctx, body, acmeToken, "").Err)
	var pointLabels []map[string]string
	require.Eventually(t, func() bool {
		_ = e.store.Flush(ctx)
		pointLabels, err = e.store.Series(ctx, `{__name__="spoof.points"}`, "")
		return err == nil && len(pointLabels) == 3
	}, settle, time.Second, "the three spoofing points stored")
	for _, l := range pointLabels {
		require.Equal(t, "acme", l["tenant_id"], "%v", l)
		require.Equal(t, "acme", l["tenant.id"], "no attribute below the resource overrides the tenant's label: %v", l)
	}

	// Bad tokens, over gRPC and HTTP.
	bad := func(name string, first int, token func(string) string) {
		for _, proto := range []string{"grpc", "http"} {
			rep := e.load(ctx, loadgen.Config{Agents: 1, Tenants: 1, Requests: 3, FirstAgent: first, Token: token,
				TenantName: func(int) string { return "acme" }, Transport: loadgen.TransportConfig{Protocol: proto}})
			require.Zero(t, rep.Points, "%s over %s accepted", name, proto)
			require.EqualValues(t, 3, rep.Failed, "%s over %s", name, proto)
			want := map[string]string{"grpc": "Unauthenticated", "http": "401"}[proto]
			require.Equal(t, map[string]int64{want: 3}, rep.Codes, "%s over %s", name, proto)
			first++
		}
	}
	bad("no token", 200, func(string) string { return "" })
	bad("wrong token", 210, func(string) string { return "not-a-provisioned-token" })

	// Revocation: a provisioned token works, then is removed from the file.
	ok := e.load(ctx, loadgen.Config{Agents: 1, Tenants: 1, Requests: 2, Retry: true, FirstAgent: 220,
		TenantName: func(int) string { return "acme" }, Token: func(string) string { return "soon-revoked-token" }})
	require.EqualValues(t, 2*ok.PointsPerReq, ok.Points, ok.LastError)
	e.revoke("vm-revoked")
	require.Eventually(t, func() bool {
		rep := e.load(ctx, loadgen.Config{Agents: 1, Tenants: 1, Requests: 1, FirstAgent: 221,
			TenantName: func(int) string { return "acme" }, Token: func(string) string { return "soon-revoked-token" }})
		return rep.Codes["Unauthenticated"] == 1
	}, 20*time.Second, 2*time.Second, "the revoked token is refused once the gateway reloads its credentials")
	bad("revoked token", 230, func(string) string { return "soon-revoked-token" })

	refused, err := e.store.Scalar(ctx, `count(last_over_time({host.name=~"loadgen-vm-(20[0-9]|21[0-9]|23[0-9])"}[1h]))`, "")
	require.NoError(t, err)
	require.Zero(t, refused, "nothing of a refused request is stored")
	require.EqualValues(t, 2*ok.PointsPerReq, e.stored("acme", `{host.name="loadgen-vm-220"}`), "what the token sent before revocation is kept")

	// on_mismatch: reject refuses the claim whole (PermissionDenied), counted.
	require.NoError(t, e.gw.Stop(15*time.Second))
	e.gwExtraEnv = []string{"OTELCOL_GPU_ON_MISMATCH=reject"}
	e.startGateway()
	rej := e.load(ctx, loadgen.Config{Agents: 1, Tenants: 1, Requests: 3, FirstAgent: 300,
		TenantName: func(int) string { return "acme" }, Claim: func(string) string { return "globex" }})
	require.Zero(t, rej.Points)
	require.Equal(t, map[string]int64{"PermissionDenied": 3}, rej.Codes)
	rejected, err := e.store.Scalar(ctx, `count(last_over_time({host.name="loadgen-vm-300"}[1h]))`, "")
	require.NoError(t, err)
	require.Zero(t, rejected)
	e.summary("2 spoofing and bad tokens", spoof.Points+ok.Points, got+e.stored("acme", `{host.name="loadgen-vm-220"}`),
		"refused=no-token,wrong,revoked(grpc+http),reject-mode")
}

// 3. The gateway killed with SIGKILL under load and restarted: every point
// the agents had acknowledged is in the store.
func TestScenario3GatewaySIGKILLUnderLoad(t *testing.T) {
	e := newEnv(t, "acme", "globex")
	e.startGateway()
	wait := e.loadInBackground(loadgen.Config{Agents: 10, Tenants: 2, Rate: 100, Duration: 20 * time.Second, Retry: true})
	time.Sleep(7 * time.Second)
	require.NoError(t, e.gw.Signal(syscall.SIGKILL))
	_ = e.gw.Wait(10 * time.Second)
	time.Sleep(2 * time.Second)
	e.startGateway()
	rep := wait()
	require.Zero(t, rep.Unacked, "every request was acknowledged once the gateway was back")
	require.Positive(t, rep.Retries, "the kill was under load: some requests had to be re-sent")
	sent, stored := e.requireAllStored(rep, loadSel, settle)
	e.summary("3 gateway SIGKILL under load", sent, stored, fmt.Sprintf("retries=%d", rep.Retries))
}

// 4. The store down for 30 s under load, then back: everything arrives.
func TestScenario4StoreDown30s(t *testing.T) {
	e := newEnv(t, "acme", "globex")
	e.startGateway()
	wait := e.loadInBackground(loadgen.Config{Agents: 10, Tenants: 2, Rate: 50, Duration: 45 * time.Second, Retry: true})
	time.Sleep(8 * time.Second)
	require.NoError(t, e.store.Stop())
	time.Sleep(30 * time.Second)
	require.NoError(t, e.store.Start(context.Background()))
	rep := wait()
	sent, stored := e.requireAllStored(rep, loadSel, 2*settle)
	require.True(t, e.gw.WaitHTTPOK(context.Background(), fmt.Sprintf("http://%s/", proc.Addr(e.gwHealth)), time.Second) == nil, "gateway still healthy")
	e.summary("4 store down 30s under load", sent, stored, fmt.Sprintf("agent_retries=%d", rep.Retries))
}

// 5. An agent killed with SIGKILL while its persistent queue holds data (the
// gateway is down), restarted: nothing lost.
func TestScenario5AgentSIGKILLWithQueuedData(t *testing.T) {
	e := newEnv(t, "acme")
	// No gateway yet: the agent queues on disk.
	started := time.Now()
	a := e.startAgent(agentOpts{tenant: "acme", token: e.provision("acme")}) // host 1
	// Customer apps in the VM send to the agent's local OTLP receiver.
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		Transport: loadgen.TransportConfig{Protocol: "grpc", Endpoint: proc.Addr(a.otlpGRPC)},
		Agents:    4, Tenants: 1, Requests: 25, Retry: true, Rate: 50,
		TenantName: func(int) string { return "acme" }, Token: func(string) string { return "" },
	})
	require.NoError(t, err)
	require.Zero(t, rep.Failed, rep.LastError)
	require.EqualValues(t, 100*rep.PointsPerReq, rep.Points)
	time.Sleep(5 * time.Second) // more scrapes queue up
	killed := time.Now()
	require.NoError(t, a.proc.Signal(syscall.SIGKILL))
	_ = a.proc.Wait(10 * time.Second)

	a.restart(e) // same state directory and ports
	e.startGateway()
	// The agent stamps its own host.name on what apps send it (the tenant
	// processor's host_attributes); loadgen's series keep their cloud.provider.
	got := e.waitStored("acme", `{cloud.provider="gpu-cloud"}`, rep.Points, settle)
	require.Equal(t, rep.Points, got, "every point the agent accepted before the kill")

	// Every scrape from before the kill: one GPU-0 sample per second, no gap.
	ctx := context.Background()
	require.NoError(t, e.store.Flush(ctx))
	before := killed.Sub(started).Seconds()
	res, err := e.store.QueryAt(ctx, fmt.Sprintf(`count_over_time(hw.gpu.utilization{hw.id=%q,hw.gpu.task="general"}[%ds])`, gpuID(1, 0), int(before)+5), "tenant_id=acme", killed)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.GreaterOrEqual(t, res[0].Value, before-3, "GPU scrapes before the kill (%.0f s of 1 s scrapes)", before)
	e.summary("5 agent SIGKILL with queued data", rep.Points, got, fmt.Sprintf("gpu_scrapes_before_kill=%.0f/%.0fs", res[0].Value, before))
}

// 6. Bad input at the gateway: 4xx (or the gRPC equivalent), the gateway
// stays up with bounded memory, nothing is stored.
func TestScenario6BadInput(t *testing.T) {
	e := newEnv(t, "mallory")
	gw := e.startGateway()
	token := loadgen.DefaultToken("mallory")
	pem, err := os.ReadFile(filepath.Join(e.certs, devcerts.CAFile))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}, Timeout: 30 * time.Second}
	url := "https://" + proc.Addr(e.gwHTTP) + "/v1/metrics"
	post := func(ctype, encoding string, body []byte) int {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", ctype)
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	valid, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(loadgen.Request(loadgen.Agent{Index: 900, Tenant: "mallory"}, loadgen.DefaultShape, time.Now(), 1))
	require.NoError(t, err)
	deep := nested(t, 40)
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for i := 0; i < 256; i++ {
		_, _ = zw.Write(zero)
	}
	require.NoError(t, zw.Close())
	big := make([]byte, 5<<20)
	copy(big, valid)

	cases := []struct {
		name, ctype, enc string
		body             []byte
		want             int
	}{
		{"malformed protobuf", "application/x-protobuf", "", []byte("\x0a\xff\xff\xff\xff\x0fnot protobuf at all"), http.StatusBadRequest},
		{"wrong content type", "text/plain", "", valid, http.StatusUnsupportedMediaType},
		{"body over 4 MiB", "application/x-protobuf", "", big, http.StatusRequestEntityTooLarge},
		{"gzip bomb (256 MiB of zeros)", "application/x-protobuf", "gzip", bomb.Bytes(), http.StatusRequestEntityTooLarge},
		{"nesting 40 deep (limit 16)", "application/x-protobuf", "", deep, http.StatusBadRequest},
	}
	var summary []string
	for _, c := range cases {
		got := post(c.ctype, c.enc, c.body)
		assert.Equal(t, c.want, got, c.name)
		summary = append(summary, strconv.Itoa(got))
	}

	// The same over gRPC: loadgen's transport sends the bytes as they are.
	tr, err := loadgen.NewTransport(loadgen.TransportConfig{Protocol: "grpc", Endpoint: proc.Addr(e.gwGRPC),
		CAFile: filepath.Join(e.certs, devcerts.CAFile), ServerName: "localhost"})
	require.NoError(t, err)
	defer func() { _ = tr.Close() }()
	grpcCases := []struct {
		name string
		body []byte
		want codes.Code
	}{
		{"malformed protobuf", []byte("\x0a\xff\xff\xff\xff\x0fnot protobuf at all"), codes.InvalidArgument},
		{"nesting 40 deep", deep, codes.InvalidArgument},
		{"message over 4 MiB", big, codes.ResourceExhausted},
	}
	for _, c := range grpcCases {
		r := tr.Send(context.Background(), c.body, token, "")
		assert.Equal(t, c.want.String(), r.Code, "%s: %v", c.name, r.Err)
		summary = append(summary, r.Code)
	}

	require.False(t, gw.Exited(), "the gateway survived every bad request")
	require.NoError(t, gw.WaitHTTPOK(context.Background(), fmt.Sprintf("http://%s/", proc.Addr(e.gwHealth)), 5*time.Second))
	peak := proc.PeakRSSMiB(gw.Pid())
	require.Positive(t, peak)
	require.Less(t, peak, 300.0, "gateway peak RSS after the bad input, MiB")
	require.Zero(t, e.stored("mallory", ""), "nothing of the bad input is stored")

	// And the same tenant's good request still lands: the zero above means something.
	require.Equal(t, http.StatusOK, post("application/x-protobuf", "", valid))
	got := e.waitStored("mallory", "", int64(loadgen.DefaultShape.Points()), settle)
	require.EqualValues(t, loadgen.DefaultShape.Points(), got)
	e.summary("6 bad input", int64(loadgen.DefaultShape.Points()), got,
		fmt.Sprintf("answers=%s peak_rss=%.0fMiB", strings.Join(summary, ","), peak))
}

// nested is a metrics request whose one attribute nests depth array values.
func nested(t *testing.T, depth int) []byte {
	md := pmetric.NewMetrics()
	dp := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	v := dp.Attributes().PutEmpty("deep")
	for i := 0; i < depth; i++ {
		v = v.SetEmptySlice().AppendEmpty()
	}
	v.SetStr("bottom")
	b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	require.NoError(t, err)
	return b
}

// 7. A simulated GPU lost mid-run: the others keep arriving, hw.status
// shows it failed, and it comes back after its injected recovery.
func TestScenario7GPULost(t *testing.T) {
	e := newEnv(t)
	const lostAt, lostFor = 8, 12
	token := e.provision("acme")
	e.startGateway()
	loaded := time.Now()
	e.startAgent(agentOpts{tenant: "acme", token: token, fleet: fmt.Sprintf("gpus = 8\nhost = 1\nsignal.utilization = const 50\nfault = %d 3 lost %d\n", lostAt, lostFor)})
	ctx := context.Background()
	// max(): the failed point carries its reason (nvidia.gpu.health.reason), a series of its own.
	failed := fmt.Sprintf(`max(max_over_time(hw.status{hw.id=%q,hw.state="failed"}[1h]))`, gpuID(1, 3))
	require.Eventually(t, func() bool {
		v, err := e.store.Scalar(ctx, failed, "tenant_id=acme")
		return err == nil && v == 1
	}, settle, time.Second, "hw.status{hw.state=failed} of the lost GPU")
	// Back: its utilization arrives again after the recovery.
	back := loaded.Add((lostAt + lostFor + 1) * time.Second)
	require.Eventually(t, func() bool {
		_ = e.store.Flush(ctx)
		res, err := e.store.Query(ctx, fmt.Sprintf(`timestamp(hw.gpu.utilization{hw.id=%q,hw.gpu.task="general"})`, gpuID(1, 3)), "tenant_id=acme")
		return err == nil && len(res) == 1 && res[0].Value > float64(back.Unix())
	}, settle, time.Second, "the lost GPU reports again after its recovery")
	okNow, err := e.store.Scalar(ctx, fmt.Sprintf(`last_over_time(hw.status{hw.id=%q,hw.state="ok"}[10s])`, gpuID(1, 3)), "tenant_id=acme")
	require.NoError(t, err)
	require.EqualValues(t, 1, okNow, "hw.status back to ok")
	failedMax, err := e.store.Scalar(ctx, failed, "tenant_id=acme")
	require.NoError(t, err)

	// While it was lost (the middle 8 s of the 12), the other seven kept
	// reporting every second and the lost one did not.
	mid := loaded.Add((lostAt + 10) * time.Second)
	require.NoError(t, e.store.Flush(ctx))
	res, err := e.store.QueryAt(ctx, `count_over_time(hw.gpu.utilization{hw.gpu.task="general"}[8s])`, "tenant_id=acme", mid)
	require.NoError(t, err)
	var others []float64
	for _, r := range res {
		if r.Labels["hw.id"] == gpuID(1, 3) {
			t.Fatalf("the lost GPU reported utilization while lost: %v", r)
		}
		others = append(others, r.Value)
	}
	require.Len(t, others, 7, "the seven healthy GPUs reported while one was lost")
	require.GreaterOrEqual(t, slices.Min(others), 6.0, "each healthy GPU at least 6 scrapes of 8 s at 1 s")
	// Nothing is sent by loadgen here: the line counts the GPUs instead,
	// every value as measured in the store.
	fmt.Printf("e2e: %-34s sent=n/a stored=n/a lost=n/a dup=n/a healthy_gpus_during=%d min_scrapes_8s=%.0f failed_max=%.0f ok_after=%.0f\n",
		"7 GPU lost and back", len(others), slices.Min(others), failedMax, okNow)
}

// 8. One tenant's route failing (the store answering 503 for it alone): the
// other tenant's data keeps arriving on time, and all of the failing
// tenant's data arrives after recovery.
func TestScenario8OneTenantRouteFailing(t *testing.T) {
	e := newEnv(t, "steady", "flaky")
	e.startGateway()
	wait := e.loadInBackground(loadgen.Config{Agents: 10, Tenants: 2, Rate: 40, Duration: 45 * time.Second, Retry: true})
	time.Sleep(3 * time.Second)
	e.proxy.takeDelays("steady")
	time.Sleep(10 * time.Second)
	base := e.proxy.takeDelays("steady")
	e.proxy.fail("flaky", http.StatusServiceUnavailable)
	e.proxy.takeDelays("flaky")
	time.Sleep(25 * time.Second)
	during := e.proxy.takeDelays("steady")
	flakyDuring := e.proxy.takeDelays("flaky")
	e.proxy.fail("flaky", 0)
	rep := wait()
	require.Empty(t, flakyDuring, "nothing of flaky was forwarded while its route failed")
	require.NotEmpty(t, base)
	require.NotEmpty(t, during)
	mb, md := median(base), median(during)
	bound := max(2*mb, mb+50*time.Millisecond)
	require.LessOrEqual(t, md, bound, "steady's median delivery delay while flaky's route failed (baseline %s)", mb)

	sent, stored := e.requireAllStored(rep, loadSel, 2*settle)
	e.summary("8 one tenant's route failing", sent, stored, fmt.Sprintf("steady_median_delay=%s->%s (bound %s)",
		mb.Round(time.Millisecond), md.Round(time.Millisecond), bound.Round(time.Millisecond)))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// 9. GPU events to their tenant's logs: an XID on acme's VM and another on
// globex's (whose VM claims to be acme's) reach the event store, each under
// its own tenant only, with the GPU it happened on.
func TestScenario9XIDEventsToTheirTenantsLogs(t *testing.T) {
	e := newEnv(t)
	e.startLogStore()
	acme, globex := e.provision("acme"), e.provision("globex")
	e.startGateway()
	e.startAgent(agentOpts{tenant: "acme", token: acme, fleet: "gpus = 2\nhost = 1\nsignal.utilization = const 50\nfault = 3 1 xid 79\n"})
	e.startAgent(agentOpts{tenant: "acme", token: globex, fleet: "gpus = 2\nhost = 2\nsignal.utilization = const 50\nfault = 3 0 xid 31\nfault = 4 0 xid 31\n"})

	ctx := context.Background()
	xids := func(tenant string) []map[string]string {
		recs, err := e.logs.Query(ctx, `nvidia.xid.code:*`, tenant)
		require.NoError(t, err)
		return recs
	}
	var own map[string][]map[string]string
	require.Eventually(t, func() bool {
		own = map[string][]map[string]string{"acme": xids("acme"), "globex": xids("globex")}
		return len(own["acme"]) >= 1 && len(own["globex"]) >= 2
	}, settle, time.Second, "each tenant's XID records in the event store")
	require.Len(t, own["acme"], 1, "one XID on acme's VM: %v", own["acme"])
	a := own["acme"][0]
	require.Equal(t, "79", a["nvidia.xid.code"])
	require.Equal(t, gpuID(1, 1), a["hw.id"])
	require.Equal(t, "acme", a["tenant_id"])
	require.Equal(t, "acme", a["tenant.id"])
	require.Contains(t, a["_msg"], "XID 79")
	require.Len(t, own["globex"], 2, "two XIDs on globex's VM: %v", own["globex"])
	for _, g := range own["globex"] {
		require.Equal(t, "31", g["nvidia.xid.code"])
		require.Equal(t, gpuID(2, 0), g["hw.id"])
		require.Equal(t, "globex", g["tenant_id"], "filed under the token's tenant")
		require.Equal(t, "globex", g["tenant.id"], "the VM's claim overwritten")
	}
	all := xids("")
	require.Len(t, all, 3, "nothing else in the store: %v", all)
	fmt.Printf("e2e: %-34s sent=n/a stored=n/a lost=n/a dup=n/a xid_records=acme:%d,globex:%d (each tenant's own only)\n",
		"9 XID events to their tenant", len(own["acme"]), len(own["globex"]))
}
