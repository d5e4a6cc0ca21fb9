package tenantalertsextension

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/otelcol-gpu/otelcol-gpu/internal/outbound"
	"github.com/otelcol-gpu/otelcol-gpu/internal/telemetry"
)

// sink is a tenant's HTTPS endpoint on loopback.
type sink struct {
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
}

func newSink(t *testing.T) *sink {
	s := &sink{}
	s.status.Store(http.StatusOK)
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, b)
		s.sigs = append(s.sigs, r.Header.Get(outbound.SignatureHeader))
		s.mu.Unlock()
		w.WriteHeader(int(s.status.Load()))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) got() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

type relayEnv struct {
	relay *relay
	srv   *httptest.Server
	state *stateStore
	dir   string
	sink  *sink
}

const testToken = "0123456789abcdef0123456789abcdef"

func newRelayEnv(t *testing.T, allowLoopback bool) *relayEnv {
	dir := t.TempDir()
	st, err := newStateStore(dir)
	require.NoError(t, err)
	sk := newSink(t)
	roots := x509.NewCertPool()
	roots.AddCert(sk.srv.Certificate())
	oc := outbound.Config{Timeout: 5 * time.Second, RootCAs: roots}
	if allowLoopback {
		oc.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}
	out, err := outbound.New(oc)
	require.NoError(t, err)
	tel, err := newTelemetry(componenttest.NewNopTelemetrySettings(), telemetry.Tenancy{})
	require.NoError(t, err)
	cfg := createDefaultConfig().(*Config)
	r := &relay{cfg: cfg, state: st, out: out, token: []byte(testToken), logger: zap.NewNop(), tel: tel,
		now: time.Now, limits: map[string]*rate.Limiter{}, deadLog: filepath.Join(dir, "dead-letter.jsonl")}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &relayEnv{relay: r, srv: srv, state: st, dir: dir, sink: sk}
}

func (e *relayEnv) addReceiver(t *testing.T, tenant string, rcv Receiver) {
	require.NoError(t, e.state.update(tenant, func(st *tenantState) error {
		st.Receivers = append(st.Receivers, rcv)
		return nil
	}))
}

func note(tenants ...string) []byte {
	n := amNotification{Receiver: "x", AlertGroup: AlertGroup{Status: "firing", GroupKey: "{}:{alertname=\"GPUFailed\"}"}}
	for _, t := range tenants {
		n.Alerts = append(n.Alerts, amNoteAlert{Status: "firing", Fingerprint: "f-" + t,
			Labels: map[string]string{"alertname": "GPUFailed", "alertgroup": t + ":pack", "tenant_id": t, "hw.id": "GPU-" + t}})
	}
	b, _ := json.Marshal(n)
	return b
}

func (e *relayEnv) post(t *testing.T, path, token string, body []byte) int {
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (e *relayEnv) deadLetters(t *testing.T) []map[string]any {
	f, err := os.Open(e.relay.deadLog)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		out = append(out, m)
	}
	return out
}

func TestRelayDeliversSignedAndOnlyTheTenantsAlerts(t *testing.T) {
	e := newRelayEnv(t, true)
	secret := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	e.addReceiver(t, "acme", Receiver{Name: "hook", Type: receiverWebhook, URL: e.sink.srv.URL + "/hook", Secret: secret})

	require.Equal(t, http.StatusUnauthorized, e.post(t, "/deliver/acme/hook", "", note("acme")))
	require.Equal(t, http.StatusUnauthorized, e.post(t, "/deliver/acme/hook", "wrong-token-wrong-token-wrong-tok", note("acme")))
	require.Zero(t, e.sink.got(), "nothing goes out without Alertmanager's token")

	// An alert of another tenant in acme's notification is dropped.
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/hook", testToken, note("acme", "globex")))
	require.Equal(t, 1, e.sink.got())
	key, _ := hex.DecodeString(secret)
	require.NoError(t, outbound.Verify(key, e.sink.sigs[0], e.sink.bodies[0], time.Now(), time.Minute))
	var n Notification
	require.NoError(t, json.Unmarshal(e.sink.bodies[0], &n))
	require.Equal(t, "acme", n.Tenant)
	require.Equal(t, "hook", n.Receiver)
	require.Len(t, n.Alerts, 1)
	require.Equal(t, "GPU-acme", n.Alerts[0].Labels["hw.id"])
	require.NotContains(t, string(e.sink.bodies[0]), "globex")
	require.NotContains(t, string(e.sink.bodies[0]), "generatorURL")

	// Only globex's alerts: nothing is sent to acme.
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/hook", testToken, note("globex")))
	require.Equal(t, 1, e.sink.got())
	// One of globex's groups whose result claims acme's tenant label (a
	// label tenant.id that vmalert turned into a second tenant_id) is
	// globex's: its group says so.
	spoof, _ := json.Marshal(amNotification{AlertGroup: AlertGroup{Status: "firing", Alerts: []amNoteAlert{{Status: "firing",
		Labels: map[string]string{"alertname": "Spoof", "alertgroup": "globex:custom", "tenant_id": "acme"}}}}})
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/hook", testToken, spoof))
	require.Equal(t, 1, e.sink.got(), "an alert of another tenant's group never reaches this tenant")
	// A group of a tenant whose name starts like acme's is not acme's.
	other, _ := json.Marshal(amNotification{AlertGroup: AlertGroup{Status: "firing", Alerts: []amNoteAlert{{Status: "firing",
		Labels: map[string]string{"alertname": "X", "alertgroup": "acme-2:pack", "tenant_id": "acme"}}}}})
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/hook", testToken, other))
	require.Equal(t, 1, e.sink.got())
	// A receiver removed since Alertmanager's config was written.
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/gone", testToken, note("acme")))
	require.Equal(t, 1, e.sink.got())
}

func TestRelayRetriesTransientFailuresAndDeadLettersPermanentOnes(t *testing.T) {
	e := newRelayEnv(t, true)
	secret := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	e.addReceiver(t, "acme", Receiver{Name: "hook", Type: receiverWebhook, URL: e.sink.srv.URL, Secret: secret})

	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusRequestTimeout} {
		e.sink.status.Store(int32(status))
		require.Equal(t, http.StatusBadGateway, e.post(t, "/deliver/acme/hook", testToken, note("acme")),
			"an endpoint answering %d is tried again by Alertmanager", status)
	}
	require.Empty(t, e.deadLetters(t))

	e.sink.status.Store(http.StatusBadRequest)
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/hook", testToken, note("acme")), "a refused body is not retried")
	dead := e.deadLetters(t)
	require.Len(t, dead, 1)
	require.Equal(t, "acme", dead[0]["tenant"])
	require.Equal(t, "the receiver answered 400", dead[0]["reason"])
	require.NotContains(t, dead[0], "secret")
}

// Without the operator's exception loopback is refused at delivery, even
// for a receiver that is already stored.
func TestRelayRefusesForbiddenDestinations(t *testing.T) {
	e := newRelayEnv(t, false)
	e.addReceiver(t, "acme", Receiver{Name: "inside", Type: receiverWebhook, URL: e.sink.srv.URL,
		Secret: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"})
	e.addReceiver(t, "acme", Receiver{Name: "chat", Type: receiverSlack, URL: e.sink.srv.URL + "/services/T/B/secret"})
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/inside", testToken, note("acme")))
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/chat", testToken, note("acme")))
	require.Zero(t, e.sink.got())
	dead := e.deadLetters(t)
	require.Len(t, dead, 2)
	require.Contains(t, dead[0]["reason"], "loopback")
	line, _ := json.Marshal(dead[1])
	require.NotContains(t, string(line), "/services/T/B/secret", "a Slack URL is a secret: only its host is recorded")
}

func TestRelaySlackBodyAndRate(t *testing.T) {
	e := newRelayEnv(t, true)
	e.relay.cfg.Delivery.PerTenantPerMinute = 1
	e.relay.cfg.Delivery.Burst = 2
	e.addReceiver(t, "acme", Receiver{Name: "chat", Type: receiverSlack, URL: e.sink.srv.URL + "/services/T/B/x"})
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/chat", testToken, note("acme")))
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/acme/chat", testToken, note("acme")))
	require.Equal(t, http.StatusServiceUnavailable, e.post(t, "/deliver/acme/chat", testToken, note("acme")),
		"over the tenant's rate: Alertmanager tries again later")
	require.Equal(t, 2, e.sink.got())
	var body map[string]string
	require.NoError(t, json.Unmarshal(e.sink.bodies[0], &body))
	require.Contains(t, body["text"], "[FIRING] 1 alert(s) for acme")
	require.Empty(t, e.sink.sigs[0], "Slack bodies are not signed")
	// Another tenant's rate is its own.
	e.addReceiver(t, "globex", Receiver{Name: "chat", Type: receiverSlack, URL: e.sink.srv.URL + "/services/T/B/y"})
	require.Equal(t, http.StatusOK, e.post(t, "/deliver/globex/chat", testToken, note("globex")))
}

func TestRelayRefusesOtherMethodsAndPaths(t *testing.T) {
	e := newRelayEnv(t, true)
	resp, err := http.Get(e.srv.URL + "/deliver/acme/hook")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, http.StatusNotFound, e.post(t, "/deliver/acme", testToken, note("acme")))
	require.Equal(t, http.StatusNotFound, e.post(t, "/deliver/acme/a/b", testToken, note("acme")))
	require.Equal(t, http.StatusBadRequest, e.post(t, "/deliver/acme/hook", testToken, []byte("{")))
	// Names are as the extension writes them: an escaped or odd one is no
	// receiver (and never a path to another file).
	for _, p := range []string{"/deliver/..%2fx/hook", "/deliver/acme/..%2f..%2fx", "/deliver/ACME/hook", "/deliver/acme/ho%6Bk"} {
		require.Equal(t, http.StatusNotFound, e.post(t, p, testToken, note("acme")), p)
	}
}
