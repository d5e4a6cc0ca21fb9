package tenantauthextension

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/devcerts"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/telemetrytest"
)

const goodToken = "token-acme"

type hostWith struct {
	component.Host
	ext map[component.ID]component.Component
}

func (h hostWith) GetExtensions() map[component.ID]component.Component { return h.ext }

// gateway is the real otlp receiver with tenant_auth as authenticator and,
// unless unguarded, as middleware.
type gateway struct {
	grpcAddr, httpAddr string
	sink               *consumertest.MetricsSink
	auth               *authenticator
	tel                *componenttest.Telemetry
	certs              string
	credentials        string // the credentials file
}

type gatewayOpts struct {
	unguarded  bool
	perMinute  int
	tls        bool // server TLS with reload, client certificates required
	maxBodyMiB int
	admission  *Admission       // default: the factory's
	next       consumer.Metrics // default: the sink
	clock      func() time.Time // default: the wall clock (the failure throttle's minutes)
	reload     time.Duration    // default: the factory's reload_interval
	maxStale   time.Duration    // default: the factory's credentials_max_stale
}

func startGateway(t *testing.T, o gatewayOpts) *gateway {
	t.Helper()
	g := &gateway{grpcAddr: proc.Addr(proc.Port(t)), httpAddr: proc.Addr(proc.Port(t)), sink: new(consumertest.MetricsSink)}
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials.yaml")
	writeFile(t, creds, "credentials:\n"+credLine("vm-1", "acme", goodToken))
	g.credentials = creds

	g.tel = componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, g.tel.Shutdown(context.Background())) })
	set := extensiontest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = g.tel.NewTelemetrySettings()
	cfg := createDefaultConfig().(*Config)
	cfg.CredentialsFile = creds
	cfg.FailureLimit.PerMinute = o.perMinute
	if o.admission != nil {
		cfg.Admission = *o.admission
	}
	if o.reload != 0 {
		cfg.ReloadInterval = o.reload
	}
	if o.maxStale != 0 {
		cfg.CredentialsMaxStale = o.maxStale
	}
	ext, err := NewFactory().Create(context.Background(), set, cfg)
	require.NoError(t, err)
	g.auth = ext.(*authenticator)
	if o.clock != nil && g.auth.throttle != nil {
		// Set before anything serves, so every request handler sees it.
		g.auth.throttle.Now = o.clock
	}
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })

	if o.maxBodyMiB == 0 {
		o.maxBodyMiB = 64
	}
	proto := func(endpoint string) map[string]any {
		m := map[string]any{"endpoint": endpoint, "auth": map[string]any{"authenticator": "tenant_auth"}}
		if !o.unguarded {
			m["middlewares"] = []any{map[string]any{"id": "tenant_auth"}}
		}
		if o.tls {
			g.certs = filepath.Join(dir, "certs")
			require.NoError(t, devcerts.Write(devcerts.Options{Dir: g.certs}))
			m["tls"] = map[string]any{
				"cert_file": filepath.Join(g.certs, devcerts.ServerCertFile), "key_file": filepath.Join(g.certs, devcerts.ServerKeyFile),
				"client_ca_file": filepath.Join(g.certs, devcerts.CAFile), "reload_interval": "100ms",
			}
		}
		return m
	}
	grpcCfg := proto(g.grpcAddr)
	grpcCfg["max_recv_msg_size_mib"] = o.maxBodyMiB
	httpCfg := proto(g.httpAddr)
	httpCfg["max_request_body_size"] = o.maxBodyMiB << 20
	rf := otlpreceiver.NewFactory()
	rcfg := rf.CreateDefaultConfig()
	require.NoError(t, confmap.NewFromStringMap(map[string]any{"protocols": map[string]any{"grpc": grpcCfg, "http": httpCfg}}).Unmarshal(rcfg))
	next := consumer.Metrics(g.sink)
	if o.next != nil {
		next = o.next
	}
	rcv, err := rf.CreateMetrics(context.Background(), receivertest.NewNopSettings(rf.Type()), rcfg, next)
	require.NoError(t, err)
	host := hostWith{Host: componenttest.NewNopHost(), ext: map[component.ID]component.Component{component.NewID(metadata.Type): ext}}
	require.NoError(t, rcv.Start(context.Background(), host))
	t.Cleanup(func() { require.NoError(t, rcv.Shutdown(context.Background())) })
	return g
}

func (g *gateway) sendGRPC(t *testing.T, token string, payload []byte, opts ...grpc.CallOption) error {
	t.Helper()
	conn, err := grpc.NewClient(g.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if token != "" {
		ctx = grpcmd.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	// Raw bytes: the test client must not decode what would crash it.
	in, out := rawMessage(payload), rawMessage(nil)
	return conn.Invoke(ctx, "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", &in, &out, opts...)
}

// rawMessage goes through the collector's gRPC codec as the bytes it is.
type rawMessage []byte

func (m *rawMessage) SizeProto() int                { return len(*m) }
func (m *rawMessage) MarshalProto(b []byte) int     { return copy(b, *m) }
func (m *rawMessage) UnmarshalProto(b []byte) error { *m = append((*m)[:0], b...); return nil }

func (g *gateway) sendHTTP(t *testing.T, token string, body []byte, encoding string) int {
	t.Helper()
	code, _ := g.sendHTTPWith(t, token, body, encoding)
	return code
}

func (g *gateway) sendHTTPHeader(t *testing.T, token string, body []byte) (int, http.Header) {
	t.Helper()
	return g.sendHTTPWith(t, token, body, "")
}

func (g *gateway) sendHTTPWith(t *testing.T, token string, body []byte, encoding string) (int, http.Header) {
	t.Helper()
	code, header, _ := g.sendHTTPTo(t, "/v1/metrics", token, body, encoding)
	return code, header
}

// sendHTTPTo posts body to path and returns the answer's status, headers
// and body.
func (g *gateway) sendHTTPTo(t *testing.T, path, token string, body []byte, encoding string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+g.httpAddr+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	answer, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header, string(answer)
}

// heapAllocated is the total bytes the process has allocated so far.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func bigPayload(t *testing.T, size int) []byte {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("blob", strings.Repeat("x", size))
	rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(1)
	b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	require.NoError(t, err)
	return b
}

// allocatedBy is the least the process allocated over five runs of f, each
// right after an unmeasured run that fills the buffer pools (the gRPC client
// marshals into pooled buffers, which a GC empties): background work and
// pool misses only ever add.
func allocatedBy(t *testing.T, f func()) uint64 {
	least := ^uint64(0)
	for i := 0; i < 5; i++ {
		f()
		before := heapAllocated()
		f()
		least = min(least, heapAllocated()-before)
	}
	return least
}

func TestGRPCStrangersAreRefusedBeforeDecoding(t *testing.T) {
	payload := bigPayload(t, 4<<20)
	guarded := startGateway(t, gatewayOpts{})
	unguarded := startGateway(t, gatewayOpts{unguarded: true})

	// Warm both up so connection set-up is not measured.
	require.NoError(t, guarded.sendGRPC(t, goodToken, bigPayload(t, 10)))
	require.NoError(t, unguarded.sendGRPC(t, goodToken, bigPayload(t, 10)))

	var err error
	upstream := allocatedBy(t, func() { err = unguarded.sendGRPC(t, "", payload) })
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	refused := allocatedBy(t, func() { err = guarded.sendGRPC(t, "", payload) })
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Contains(t, err.Error(), "missing bearer token")
	accepted := allocatedBy(t, func() { err = guarded.sendGRPC(t, goodToken, payload) })
	require.NoError(t, err)

	t.Logf("4 MiB request allocated: without the tap handle %d KiB, refused by it %d KiB, authenticated %d KiB",
		upstream>>10, refused>>10, accepted>>10)
	// The client marshals the 4 MiB once itself in every case; the
	// difference is what the server spent.
	require.Greater(t, upstream, refused+2<<20, "without the tap handle the server decodes a stranger's 4 MiB")
	require.Greater(t, accepted, refused+3<<20, "an authenticated request is decoded")
	require.Len(t, guarded.sink.AllMetrics(), 11, "only the authenticated requests arrived (warm-up and ten measured)")
}

// nested builds metrics whose one attribute nests array values depth deep
// (depth 1 is a plain value), as raw protobuf, so any size can be built.
func nested(depth int) []byte {
	leaf := []byte{0x0a, 0x01, 'x'}
	sizes := make([]int, depth)
	sizes[0] = len(leaf)
	for i := 1; i < depth; i++ {
		arr := hdr(1, sizes[i-1]) + sizes[i-1]
		sizes[i] = hdr(5, arr) + arr
	}
	var v []byte
	for i := depth - 1; i >= 1; i-- {
		v = tagLen(v, 5, hdr(1, sizes[i-1])+sizes[i-1])
		v = tagLen(v, 1, sizes[i-1])
	}
	v = append(v, leaf...)
	kv := append(tagLen(nil, 1, 1), 'k')
	kv = append(tagLen(kv, 2, len(v)), v...)
	res := append(tagLen(nil, 1, len(kv)), kv...)
	rm := append(tagLen(nil, 1, len(res)), res...)
	// scope_metrics { metrics { name: "m", gauge { data_points { as_int: 1 } } } }:
	// the receiver skips requests without data points.
	rm = append(rm, 0x12, 18, 0x12, 16, 0x0a, 0x01, 'm', 0x2a, 11, 0x0a, 9, 0x31, 1, 0, 0, 0, 0, 0, 0, 0)
	return append(tagLen(nil, 1, len(rm)), rm...)
}

func tagLen(b []byte, field, n int) []byte {
	b = binary.AppendUvarint(b, uint64(field<<3|2))
	return binary.AppendUvarint(b, uint64(n))
}

func hdr(field, n int) int { return len(tagLen(nil, field, n)) }

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	_, err = w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestNestingLimitOnBothTransports(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	ok, deep := nested(16), nested(17)

	require.NoError(t, g.sendGRPC(t, goodToken, ok))
	require.NoError(t, g.sendGRPC(t, goodToken, ok, grpc.UseCompressor(grpcgzip.Name)))
	require.Equal(t, http.StatusOK, g.sendHTTP(t, goodToken, ok, ""))
	require.Equal(t, http.StatusOK, g.sendHTTP(t, goodToken, gz(t, ok), "gzip"))
	require.Len(t, g.sink.AllMetrics(), 4)

	err := g.sendGRPC(t, goodToken, deep)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, err.Error(), "nesting too deep")
	err = g.sendGRPC(t, goodToken, deep, grpc.UseCompressor(grpcgzip.Name))
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Equal(t, http.StatusBadRequest, g.sendHTTP(t, goodToken, deep, ""))
	require.Equal(t, http.StatusBadRequest, g.sendHTTP(t, goodToken, gz(t, deep), "gzip"))
	require.Len(t, g.sink.AllMetrics(), 4, "nothing refused reached the pipeline")
	require.Equal(t, int64(4), counterOf(t, g.tel, "otelcol_tenant_auth_refused_payloads", "reason", "too_deep"))
}

func TestTheProcessKillingPayloadIsRefused(t *testing.T) {
	g := startGateway(t, gatewayOpts{maxBodyMiB: 64})
	payload := nested(2_000_000) // ~16 MB of nested array_values: aborts an unguarded gateway
	require.Greater(t, len(payload), 15<<20)
	var code codes.Code
	grew := allocatedBy(t, func() { code = status.Code(g.sendGRPC(t, goodToken, payload)) })
	require.Equal(t, codes.InvalidArgument, code)
	require.Equal(t, http.StatusBadRequest, g.sendHTTP(t, goodToken, payload, ""))
	t.Logf("16 MB nested payload over gRPC: %d MiB allocated in all (client included)", grew>>20)
	// Still alive, still serving.
	require.NoError(t, g.sendGRPC(t, goodToken, nested(3)))
}

// bombs compress 256 MiB of zeros with gzip and zstd.
func bombs(t *testing.T) (gzBomb, zstdBomb []byte) {
	zeros := make([]byte, 256<<20)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	require.NoError(t, err)
	zstdBomb = enc.EncodeAll(zeros, nil)
	require.NoError(t, enc.Close())
	return gz(t, zeros), zstdBomb
}

func TestCompressionBombsAreBounded(t *testing.T) {
	g := startGateway(t, gatewayOpts{maxBodyMiB: 4})
	gzBomb, zstdBomb := bombs(t)
	t.Logf("bombs: gzip %d KiB, zstd %d KiB, each 256 MiB inflated", len(gzBomb)>>10, len(zstdBomb)>>10)

	for name, bomb := range map[string][]byte{"gzip": gzBomb, "zstd": zstdBomb} {
		var code int
		grew := allocatedBy(t, func() { code = g.sendHTTP(t, goodToken, bomb, name) })
		require.GreaterOrEqual(t, code, 400, name)
		require.Less(t, code, 500, name)
		require.Less(t, grew, uint64(64<<20), "%s: decompression is bounded by max_request_body_size", name)
		t.Logf("%s bomb: HTTP %d, %d MiB allocated", name, code, grew>>20)
	}
	require.Empty(t, g.sink.AllMetrics())
}

// VMs behind one NAT share an address: one sending a wrong token must not
// cost the others their data. The failing one is throttled, retryably; the
// good one, from the same address, is never refused.
func TestAuthFailuresThrottleTheFailingNotTheAddress(t *testing.T) {
	// The budget is per clock minute: a test that crossed a minute boundary
	// would see it renewed halfway (CI did, once). The clock is held still in
	// the middle of a minute.
	mid := time.Unix(time.Now().Unix()/60*60+30, 0)
	g := startGateway(t, gatewayOpts{perMinute: 3, clock: func() time.Time { return mid }})
	for i := 0; i < 3; i++ {
		err := g.sendGRPC(t, "guess-"+string(rune('a'+i)), nested(2))
		require.Equal(t, codes.Unauthenticated, status.Code(err))
		require.Contains(t, err.Error(), "invalid bearer token")
	}
	good := 0
	for i := 0; i < 20; i++ {
		// The misconfigured neighbour keeps trying...
		err := g.sendGRPC(t, "wrong-token", nested(2))
		st := status.Convert(err)
		require.Equal(t, codes.ResourceExhausted, st.Code(), "a throttled failure is retryable")
		require.Contains(t, st.Message(), "too many failed authentication attempts")
		retry := retryInfo(st)
		require.NotNil(t, retry, "RetryInfo tells the agent's exporter to retry (without it ResourceExhausted is final)")
		require.Positive(t, retry.GetRetryDelay().AsDuration())
		require.Equal(t, 30*time.Second, retry.GetRetryDelay().AsDuration(), "until the next minute's budget")

		// ...while the good VM behind the same address loses nothing.
		require.NoError(t, g.sendGRPC(t, goodToken, nested(2)))
		require.Equal(t, http.StatusOK, g.sendHTTP(t, goodToken, nested(2), ""))
		good += 2
	}
	require.Len(t, g.sink.AllMetrics(), good, "every request of the good token stored")
	// Over HTTP the collector's auth layer answers every refusal with 401.
	require.Equal(t, http.StatusUnauthorized, g.sendHTTP(t, "wrong-token", nested(2), ""))
	require.Equal(t, int64(21), counterOf(t, g.tel, "otelcol_tenant_auth_requests", "result", "throttled"))
}

// A credentials file that fails to load for longer than
// credentials_max_stale leaves the gateway not knowing which tokens are
// valid: every request is refused, retryably on both transports (an
// agent keeps its data), until the file loads again.
func TestCredentialsUnavailablePastMaxStaleAreRetryable(t *testing.T) {
	const maxStale = 1500 * time.Millisecond
	g := startGateway(t, gatewayOpts{reload: 20 * time.Millisecond, maxStale: maxStale})
	require.NoError(t, g.sendGRPC(t, goodToken, nested(2)))
	// The HTTP server's middleware learns its server from a request.
	require.Equal(t, http.StatusOK, g.sendHTTP(t, goodToken, nested(2), ""))
	stored := len(g.sink.AllMetrics())
	stale := func() int64 { return telemetrytest.Int64(g.tel, "otelcol_tenant_auth_credentials_stale", nil) }
	require.Zero(t, stale())

	// Broken: within the bound the last good credentials hold.
	writeFile(t, g.credentials, "credentials: [\n")
	require.Eventually(t, func() bool { return g.auth.creds.Err() != nil }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, g.sendGRPC(t, goodToken, nested(2)))
	stored++

	// Past it: refused, retryably, on both transports.
	require.Eventually(t, func() bool { return g.auth.creds.Set().Unavailable() != nil }, 10*time.Second, 10*time.Millisecond)
	st := status.Convert(g.sendGRPC(t, goodToken, nested(2)))
	require.Equal(t, codes.Unavailable, st.Code(), "retryable: the token may well be good")
	require.Equal(t, "unavailable: the gateway cannot check credentials now; try again later", st.Message(), "nothing about the file")
	retry := retryInfo(st)
	require.NotNil(t, retry)
	require.Equal(t, time.Second, retry.GetRetryDelay().AsDuration(), "a reload_interval, at least a second")
	code, header, body := g.sendHTTPTo(t, "/v1/metrics", goodToken, nested(2), "")
	require.Equal(t, http.StatusServiceUnavailable, code, "retryable: an OTLP/HTTP exporter drops its data on a 401")
	require.Equal(t, "1", header.Get("Retry-After"))
	require.Contains(t, body, "unavailable: the gateway cannot check credentials now")
	code, header, _ = g.sendHTTPTo(t, "/anything", goodToken, nil, "")
	require.Equal(t, http.StatusServiceUnavailable, code, "on every path of the server")
	require.Equal(t, "1", header.Get("Retry-After"))
	// An unknown token is no better: the gateway cannot tell it from a good one now.
	require.Equal(t, codes.Unavailable, status.Code(g.sendGRPC(t, "token-x", nested(2))))
	require.Equal(t, http.StatusServiceUnavailable, g.sendHTTP(t, "token-x", nested(2), ""))
	// A request without a token is refused for good, as ever.
	require.Equal(t, codes.Unauthenticated, status.Code(g.sendGRPC(t, "", nested(2))))
	require.Equal(t, http.StatusUnauthorized, g.sendHTTP(t, "", nested(2), ""))

	require.Len(t, g.sink.AllMetrics(), stored, "nothing refused reached the pipeline")
	require.Equal(t, int64(5), counterOf(t, g.tel, "otelcol_tenant_auth_requests", "result", "credentials_unavailable"))
	require.GreaterOrEqual(t, stale(), int64(maxStale/time.Second))

	// Repaired: valid again, on both transports.
	writeFile(t, g.credentials, "credentials:\n"+credLine("vm-1", "acme", goodToken))
	require.Eventually(t, func() bool { return g.auth.creds.Set().Unavailable() == nil }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, g.sendGRPC(t, goodToken, nested(2)))
	require.Equal(t, http.StatusOK, g.sendHTTP(t, goodToken, nested(2), ""))
	require.Equal(t, codes.Unauthenticated, status.Code(g.sendGRPC(t, "token-x", nested(2))))
	require.Len(t, g.sink.AllMetrics(), stored+2)
	require.Zero(t, stale())
}

// Without tenant_auth as middleware the collector's own auth layers answer:
// gRPC keeps the authenticator's Unavailable; HTTP answers every refusal
// with 401.
func TestCredentialsUnavailableWithoutMiddleware(t *testing.T) {
	g := startGateway(t, gatewayOpts{unguarded: true, reload: 20 * time.Millisecond, maxStale: 100 * time.Millisecond})
	require.Equal(t, http.StatusOK, g.sendHTTP(t, goodToken, nested(2), ""))
	require.NoError(t, os.Remove(g.credentials))
	require.Eventually(t, func() bool { return g.auth.creds.Set().Unavailable() != nil }, 10*time.Second, 10*time.Millisecond)
	st := status.Convert(g.sendGRPC(t, goodToken, nested(2)))
	require.Equal(t, codes.Unavailable, st.Code())
	require.NotNil(t, retryInfo(st))
	code, _, body := g.sendHTTPTo(t, "/v1/metrics", goodToken, nested(2), "")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, body, "unavailable: the gateway cannot check credentials now")
	require.Len(t, g.sink.AllMetrics(), 1)
}

func TestMutualTLSAndCertificateReload(t *testing.T) {
	g := startGateway(t, gatewayOpts{tls: true})
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(g.certs, devcerts.CAFile))
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(ca))
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(g.certs, devcerts.ClientCertFile), filepath.Join(g.certs, devcerts.ClientKeyFile))
	require.NoError(t, err)

	dial := func(withCert bool) (*x509.Certificate, error) {
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		if withCert {
			cfg.Certificates = []tls.Certificate{clientCert}
		}
		conn, err := grpc.NewClient(g.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		require.NoError(t, err)
		defer func() { _ = conn.Close() }()
		ctx, cancel := context.WithTimeout(grpcmd.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+goodToken), 5*time.Second)
		defer cancel()
		req := pmetricotlp.NewExportRequestFromMetrics(pmetric.NewMetrics())
		_, err = pmetricotlp.NewGRPCClient(conn).Export(ctx, req)
		if err != nil {
			return nil, err
		}
		raw, err := tls.Dial("tcp", g.grpcAddr, cfg)
		if err != nil {
			return nil, err
		}
		defer func() { _ = raw.Close() }()
		return raw.ConnectionState().PeerCertificates[0], nil
	}

	_, err = dial(false)
	require.Error(t, err, "without a provider-issued client certificate the handshake fails")
	first, err := dial(true)
	require.NoError(t, err)

	// Rotate the server certificate on disk (same CA): new connections get it.
	require.NoError(t, devcerts.ReissueServer(g.certs, nil, time.Now()))
	rotated, err := tls.LoadX509KeyPair(filepath.Join(g.certs, devcerts.ServerCertFile), filepath.Join(g.certs, devcerts.ServerKeyFile))
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(rotated.Certificate[0])
	require.NoError(t, err)
	require.NotEqual(t, first.SerialNumber, leaf.SerialNumber)
	require.Eventually(t, func() bool {
		c, err := dial(true)
		return err == nil && c.SerialNumber.Cmp(leaf.SerialNumber) == 0
	}, 10*time.Second, 200*time.Millisecond, "the rotated certificate was not picked up without a restart")
}

// counterOf sums the points of one of the extension's counters whose
// attribute key has value.
// retryInfo is the RetryInfo detail of a status, or nil.
func retryInfo(st *status.Status) *errdetails.RetryInfo {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri
		}
	}
	return nil
}

func counterOf(t *testing.T, tel *componenttest.Telemetry, name, key, value string) int64 {
	t.Helper()
	return telemetrytest.Int64(tel, name, map[string]string{key: value})
}
