package tenantqueryextension

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The keys and tokens of the tests' credentials file.
const (
	keyAcme    = "read-key-acme-0123456789"
	keyAcme2   = "read-key-acme-second"
	keyGlobex  = "read-key-globex-abcdef"
	tokenAcme  = "ingest-token-acme-vm-1"
	tokenOther = "ingest-token-globex-vm-1"
)

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func credentialsYAML(revoked ...string) string {
	var b strings.Builder
	b.WriteString("credentials:\n")
	for _, c := range []struct{ id, tenant, secret, scope string }{
		{"vm-1", "acme", tokenAcme, ""},
		{"vm-2", "globex", tokenOther, "ingest"},
		{"acme-grafana", "acme", keyAcme, "read"},
		{"acme-laptop", "acme", keyAcme2, "read"},
		{"globex-grafana", "globex", keyGlobex, "read"},
	} {
		skip := false
		for _, r := range revoked {
			skip = skip || r == c.id
		}
		if skip {
			continue
		}
		fmt.Fprintf(&b, "  - id: %s\n    tenant: %s\n    sha256: %s\n", c.id, c.tenant, hashOf(c.secret))
		if c.scope != "" {
			fmt.Fprintf(&b, "    scope: %s\n", c.scope)
		}
	}
	return b.String()
}

// storeCall is one request the fake store received.
type storeCall struct {
	method, path, rawQuery, body string
	header                       http.Header
}

// fakeStore records what reaches the store and answers like its read API.
type fakeStore struct {
	mu     sync.Mutex
	calls  []storeCall
	answer func(storeCall) (int, string)
}

func (f *fakeStore) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
	}
	c := storeCall{method: req.Method, path: req.URL.Path, rawQuery: req.URL.RawQuery, body: string(body), header: req.Header.Clone()}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	answer := f.answer
	f.mu.Unlock()
	status, out := http.StatusOK, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}`
	if answer != nil {
		status, out = answer(c)
	}
	return &http.Response{
		StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(out)), Request: req,
	}, nil
}

func (f *fakeStore) taken() []storeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

type testServer struct {
	*queryServer
	store    *fakeStore
	credFile string
	logs     *observer.ObservedLogs
	metrics  *componenttest.Telemetry
}

// newTestServer runs the extension's handler (not its listener) against a
// fake store, with the tests' credentials file loaded.
func newTestServer(t testing.TB, mutate func(*Config)) *testServer {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.CredentialsFile = filepath.Join(t.TempDir(), "credentials.yaml")
	require.NoError(t, os.WriteFile(cfg.CredentialsFile, []byte(credentialsYAML()), 0o600))
	cfg.ReloadInterval = 20 * time.Millisecond
	if mutate != nil {
		mutate(cfg)
	}
	require.NoError(t, cfg.Validate())
	core, logs := observer.New(zap.InfoLevel)
	metrics := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, metrics.Shutdown(context.Background())) })
	set := metrics.NewTelemetrySettings()
	set.Logger = zap.New(core)
	s, err := newQueryServer(cfg, set)
	require.NoError(t, err)
	require.NoError(t, s.creds.Start())
	t.Cleanup(s.creds.Stop)
	store := &fakeStore{}
	s.client = &http.Client{Transport: store}
	return &testServer{queryServer: s, store: store, credFile: cfg.CredentialsFile, logs: logs, metrics: metrics}
}

// do sends one request to the handler: target is the request line's URI as
// a client would send it, byte for byte.
func (ts *testServer) do(method, target, body string, header http.Header) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" || method == http.MethodPost {
		rd = bytes.NewBufferString(body)
	}
	req := httptest.NewRequestWithContext(context.Background(), method, "http://read.example"+target, rd)
	if method == http.MethodPost && header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	ts.ServeHTTP(rec, req)
	return rec
}

func bearer(key string) http.Header { return http.Header{"Authorization": {"Bearer " + key}} }

// scopeOf returns the extra_label values the store received, from the URL
// and the body, and every parameter name it received.
func scopeOf(t *testing.T, c storeCall) (urlScope, bodyScope []string, names map[string]bool) {
	t.Helper()
	q, err := url.ParseQuery(c.rawQuery)
	require.NoError(t, err)
	b, err := url.ParseQuery(c.body)
	require.NoError(t, err)
	names = map[string]bool{}
	for k := range q {
		names[k] = true
	}
	for k := range b {
		names[k] = true
	}
	return q["extra_label"], b["extra_label"], names
}
