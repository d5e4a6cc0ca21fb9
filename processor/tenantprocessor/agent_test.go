package tenantprocessor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/config/configopaque"
)

func agentConfig(src SourceConfig) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Mode = ModeAgent
	d := cfg.Source
	if src.Timeout == 0 {
		src.Timeout = d.Timeout
	}
	if src.RefreshInterval == 0 {
		src.RefreshInterval = d.RefreshInterval
	}
	cfg.Source = src
	return cfg
}

func TestAgentStampsEverySignal(t *testing.T) {
	cases := []struct {
		name   string
		claims []any
		want   []any
	}{
		{"empty request", []any{}, nil},
		{"no attribute", []any{noAttr{}}, []any{"acme"}},
		{"a local app claimed another tenant", []any{"globex"}, []any{"acme"}},
		{"several resources", []any{noAttr{}, "acme", 7}, []any{"acme", "acme", "acme"}},
	}
	for _, sig := range signals {
		for _, tc := range cases {
			t.Run(sig.name+"/"+tc.name, func(t *testing.T) {
				p := newPipeline(t, agentConfig(SourceConfig{Type: SourceStatic, Value: "acme"})).mustStart(t)
				// Agent mode ignores auth data entirely and never fails.
				require.NoError(t, sig.send(context.Background(), p, defaultAttribute, tc.claims))
				require.Equal(t, tc.want, sig.got(p, defaultAttribute))
			})
		}
	}
}

func TestAgentEnvSource(t *testing.T) {
	t.Setenv("TEST_TENANT", "  initech\n")
	p := newPipeline(t, agentConfig(SourceConfig{Type: SourceEnv, Env: "TEST_TENANT"})).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(context.Background(), buildMetrics(defaultAttribute, []any{noAttr{}})))
	require.Equal(t, []any{"initech"}, signals[0].got(p, defaultAttribute))
}

func TestAgentFileSourcePlainAndJSON(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "tenant")
	require.NoError(t, os.WriteFile(plain, []byte("acme\n"), 0o600))
	p := newPipeline(t, agentConfig(SourceConfig{Type: SourceFile, Path: plain})).mustStart(t)
	require.NoError(t, p.logs.ConsumeLogs(context.Background(), buildLogs(defaultAttribute, []any{noAttr{}})))
	require.Equal(t, []any{"acme"}, signals[1].got(p, defaultAttribute))

	doc := filepath.Join(dir, "instance.json")
	require.NoError(t, os.WriteFile(doc, []byte(`{"tenant":"globex","instance":{"id":"i-0abc","gpus":8},"zone":{"a/b":"us-east-1a"}}`), 0o600))
	cfg := agentConfig(SourceConfig{Type: SourceFile, Path: doc, JSONPointer: "/tenant"})
	cfg.Attributes = map[string]string{"cloud.instance.id": "/instance/id", "host.gpus": "/instance/gpus", "cloud.availability_zone": "/zone/a~1b", "cloud.region": "/region"}
	p = newPipeline(t, cfg).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(context.Background(), buildMetrics(defaultAttribute, []any{noAttr{}})))
	attrs := p.mSink.AllMetrics()[0].ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	require.Equal(t, map[string]any{
		"tenant.id": "globex", "cloud.instance.id": "i-0abc", "host.gpus": "8", "cloud.availability_zone": "us-east-1a", "host.name": "vm-1",
	}, attrs)
	logged := p.logsObs.FilterMessage("identity set").All()
	require.Len(t, logged, 1)
	require.Equal(t, []any{"cloud.region"}, logged[0].ContextMap()["attributes_not_found"], "a pointer that finds nothing is reported")
}

// metadataServer is an instance metadata service whose answer the test changes.
type metadataServer struct {
	mu     sync.Mutex
	status int
	body   string
	header http.Header
	hits   int
}

// waitHits waits until the service has answered n more requests: the
// refresher (one request at a time) has then handled at least n-1 answers
// given after the call.
func (m *metadataServer) waitHits(t *testing.T, n int) {
	t.Helper()
	m.mu.Lock()
	want := m.hits + n
	m.mu.Unlock()
	require.Eventually(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.hits >= want
	}, 10*time.Second, time.Millisecond, "refreshes of the metadata source")
}

func (m *metadataServer) set(status int, body string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status, m.body = status, body
}

func (m *metadataServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hits++
	m.header = r.Header.Clone()
	w.WriteHeader(m.status)
	_, _ = w.Write([]byte(m.body))
}

func TestAgentHTTPSourceRefreshesAndCaches(t *testing.T) {
	md := &metadataServer{status: http.StatusOK, body: `{"tags":{"tenant":"acme"},"machine_type":"gpu-h100x8"}`}
	srv := httptest.NewServer(md)
	defer srv.Close()
	cache := filepath.Join(t.TempDir(), "state", "tenant.json")

	cfg := agentConfig(SourceConfig{
		Type: SourceHTTP, URL: srv.URL, JSONPointer: "/tags/tenant", RefreshInterval: 20 * time.Millisecond,
		Headers: map[string]configopaque.String{"Metadata": "true"},
	})
	cfg.Attributes = map[string]string{"host.type": "/machine_type"}
	cfg.CacheFile = cache
	p := newPipeline(t, cfg).mustStart(t)
	send := func() map[string]any {
		p.mSink.Reset()
		require.NoError(t, p.metrics.ConsumeMetrics(context.Background(), buildMetrics(defaultAttribute, []any{noAttr{}})))
		return p.mSink.AllMetrics()[0].ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	}
	require.Equal(t, "acme", send()["tenant.id"])
	require.Equal(t, "gpu-h100x8", send()["host.type"])
	md.mu.Lock()
	require.Equal(t, "true", md.header.Get("Metadata"))
	md.mu.Unlock()
	cached, err := readCache(cache)
	require.NoError(t, err)
	require.Equal(t, &identity{Tenant: "acme", Attributes: map[string]string{"host.type": "gpu-h100x8"}}, cached)

	// The tenant changes (VM reassigned): picked up on refresh.
	md.set(http.StatusOK, `{"tags":{"tenant":"globex"},"machine_type":"gpu-h100x8"}`)
	require.Eventually(t, func() bool { return send()["tenant.id"] == "globex" }, 5*time.Second, 10*time.Millisecond)

	// The metadata service breaks: the last known tenant stays, one warning
	// however many refreshes fail.
	md.set(http.StatusServiceUnavailable, "down")
	md.waitHits(t, 5)
	require.Equal(t, "globex", send()["tenant.id"])
	require.Equal(t, 1, p.logsObs.FilterMessageSnippet("keeping the last known tenant").Len())

	// An answer outside the grammar is never stamped.
	md.set(http.StatusOK, `{"tags":{"tenant":"Globex Corp"}}`)
	md.waitHits(t, 2)
	require.Equal(t, "globex", send()["tenant.id"])
}

func TestAgentRestartWithoutMetadataUsesTheCache(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "tenant.json")
	require.NoError(t, writeCache(cache, &identity{Tenant: "acme", Attributes: map[string]string{"cloud.region": "eu-1"}}))
	md := &metadataServer{status: http.StatusInternalServerError}
	srv := httptest.NewServer(md)
	defer srv.Close()

	cfg := agentConfig(SourceConfig{Type: SourceHTTP, URL: srv.URL, JSONPointer: "/tenant"})
	cfg.Attributes = map[string]string{"cloud.region": "/region"}
	cfg.CacheFile = cache
	cfg.Required = true
	p := newPipeline(t, cfg).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(context.Background(), buildMetrics(defaultAttribute, []any{noAttr{}})))
	attrs := p.mSink.AllMetrics()[0].ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	require.Equal(t, "acme", attrs["tenant.id"])
	require.Equal(t, "eu-1", attrs["cloud.region"])
	require.Equal(t, 1, p.logsObs.FilterMessageSnippet("using the cached tenant").Len())
}

func TestAgentWithoutTenantForwardsUntagged(t *testing.T) {
	cfg := agentConfig(SourceConfig{Type: SourceEnv, Env: "TEST_TENANT_UNSET_" + t.Name()})
	p := newPipeline(t, cfg).mustStart(t)
	for i := 0; i < 3; i++ {
		for _, sig := range signals {
			require.NoError(t, sig.send(context.Background(), p, defaultAttribute, []any{noAttr{}, "claimed"}))
		}
	}
	// Untouched, and forwarded: the gateway decides the tenant from the credential.
	require.Equal(t, []any{noAttr{}, "claimed", noAttr{}, "claimed", noAttr{}, "claimed"}, signals[0].got(p, defaultAttribute))
	require.Len(t, signals[2].got(p, defaultAttribute), 6)
	require.Equal(t, int64(18), counter(t, p.tel, "otelcol_processor_tenant_untagged_resources", nil))
	require.Equal(t, 1, p.logsObs.FilterMessageSnippet("forwarding data without a tenant").Len(), "warned once, not per request")
}

func TestAgentRequiredFailsStartWithAClearError(t *testing.T) {
	cases := map[string]SourceConfig{
		"env unset":    {Type: SourceEnv, Env: "TEST_TENANT_UNSET_REQUIRED"},
		"file missing": {Type: SourceFile, Path: filepath.Join(t.TempDir(), "missing")},
		"bad id":       {Type: SourceFile, Path: writeTemp(t, "ACME\n")},
		"json no key":  {Type: SourceFile, Path: writeTemp(t, `{"other":1}`), JSONPointer: "/tenant"},
		"not json":     {Type: SourceFile, Path: writeTemp(t, `acme`), JSONPointer: "/tenant"},
	}
	wants := map[string]string{
		"env unset":    "environment variable TEST_TENANT_UNSET_REQUIRED is unset or empty",
		"file missing": "no such file or directory",
		"bad id":       `tenant id "ACME"`,
		"json no key":  `/tenant: no member "tenant"`,
		"not json":     "not a JSON document",
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := agentConfig(src)
			cfg.Required = true
			err := newPipeline(t, cfg).start(t)
			require.ErrorContains(t, err, "required is true")
			require.ErrorContains(t, err, wants[name])
		})
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestSignalsShareOneSource(t *testing.T) {
	md := &metadataServer{status: http.StatusOK, body: "acme"}
	srv := httptest.NewServer(md)
	defer srv.Close()
	p := newPipeline(t, agentConfig(SourceConfig{Type: SourceHTTP, URL: srv.URL, RefreshInterval: time.Hour})).mustStart(t)
	for _, sig := range signals {
		require.NoError(t, sig.send(context.Background(), p, defaultAttribute, []any{noAttr{}}))
		require.Equal(t, []any{"acme"}, sig.got(p, defaultAttribute))
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	require.Equal(t, 1, md.hits, "metrics, logs and traces of one id read the source once")
}

// host_attributes sets what the VM calls itself on every signal, over what
// a resource said, and before any tenant is known.
func TestAgentHostAttributes(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	for _, sig := range signals {
		t.Run(sig.name, func(t *testing.T) {
			cfg := agentConfig(SourceConfig{Type: SourceFile, Path: filepath.Join(t.TempDir(), "missing")})
			cfg.HostAttributes = true
			p := newPipeline(t, cfg).mustStart(t)
			// The resources say host.name vm-1 (putClaim): the host's own name wins.
			require.NoError(t, sig.send(context.Background(), p, defaultAttribute, []any{noAttr{}, noAttr{}}))
			require.Equal(t, []any{host, host}, sig.got(p, "host.name"))
			require.Equal(t, []any{"linux", "linux"}, sig.got(p, "os.type"))
			require.Equal(t, []any{noAttr{}, noAttr{}}, sig.got(p, defaultAttribute), "no tenant yet: host attributes all the same")
		})
	}
	cfg := agentConfig(SourceConfig{Type: SourceStatic, Value: "acme"})
	p := newPipeline(t, cfg).mustStart(t)
	require.NoError(t, signals[0].send(context.Background(), p, defaultAttribute, []any{noAttr{}}))
	require.Equal(t, []any{"vm-1"}, signals[0].got(p, "host.name"), "off by default")
	require.Equal(t, []any{noAttr{}}, signals[0].got(p, "os.type"))

	gw := createDefaultConfig().(*Config)
	gw.Mode = ModeGateway
	gw.HostAttributes = true
	require.ErrorContains(t, gw.Validate(), "host_attributes: only used in agent mode")
}
