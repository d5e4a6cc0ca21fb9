package tenantotlphttpexporter

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/tenantotlphttpexporter/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/bufpool"
)

func TestMain(m *testing.M) {
	// Every request body comes from a poisoned pool: a body that let the
	// store read a byte it did not write would fail these tests' decoding
	// and comparisons (no tenant's bytes reach another through a reused
	// buffer).
	bufpool.Poison(true)
	goleak.VerifyTestMain(m)
}

// store is a fake OTLP/HTTP store: it decodes every request and records it
// per URL path and query; a tenant's answers can be switched to an error or
// to hanging.
type store struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []storeRequest
	status   map[string]int  // tenant -> status to answer
	hang     map[string]bool // tenant -> hold the request until released
	release  chan struct{}
	points   map[string]int // tenant -> points stored
	attempts map[string]int // tenant -> requests received, whatever the answer
	arrival  map[string][]time.Time
}

type storeRequest struct {
	path, query string
	header      http.Header
	points      int
	tenants     map[string]int
}

func newStore(t *testing.T) *store {
	s := &store{status: map[string]int{}, hang: map[string]bool{}, release: make(chan struct{}), points: map[string]int{}, attempts: map[string]int{}, arrival: map[string][]time.Time{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		s.mu.Lock()
		select {
		case <-s.release:
		default:
			close(s.release)
		}
		s.mu.Unlock()
		s.srv.Close()
	})
	return s
}

// tenantOfPath reads the tenant out of "/t/<tenant>/..." or "?tenant=".
func tenantOfRequest(r *http.Request) string {
	if t := r.URL.Query().Get("tenant"); t != "" {
		return t
	}
	parts := strings.Split(r.URL.Path, "/")
	if len(parts) > 2 && parts[1] == "t" {
		return parts[2]
	}
	return r.Header.Get("X-Scope-OrgID")
}

func (s *store) serve(w http.ResponseWriter, r *http.Request) {
	tenant := tenantOfRequest(r)
	s.mu.Lock()
	hang, code := s.hang[tenant], s.status[tenant]
	s.attempts[tenant]++
	s.mu.Unlock()
	if hang {
		s.mu.Lock()
		release := s.release
		s.mu.Unlock()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		if r.Context().Err() != nil {
			return // the client gave up: not stored
		}
	}
	if code != 0 {
		w.WriteHeader(code)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body = gz
	}
	b, _ := io.ReadAll(body)
	md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(b)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	req := storeRequest{path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(), points: md.DataPointCount(), tenants: map[string]int{}}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		v, _ := rms.At(i).Resource().Attributes().Get("tenant.id")
		req.tenants[v.Str()] += countPoints(rms.At(i))
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.points[tenant] += req.points
	s.arrival[tenant] = append(s.arrival[tenant], time.Now())
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func countPoints(rm pmetric.ResourceMetrics) int {
	md := pmetric.NewMetrics()
	rm.CopyTo(md.ResourceMetrics().AppendEmpty())
	return md.DataPointCount()
}

func (s *store) set(tenant string, status int, hang bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[tenant] = status
	s.hang[tenant] = hang
	if !hang {
		select {
		case <-s.release:
		default:
			close(s.release)
		}
		s.release = make(chan struct{})
	}
}

func (s *store) attemptsOf(tenant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[tenant]
}

func (s *store) pointsOf(tenant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.points[tenant]
}

// batch is n data points for tenant, one resource.
func batch(tenant string, n int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	if tenant != "" {
		rm.Resource().Attributes().PutStr("tenant.id", tenant)
	}
	dps := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints()
	for i := 0; i < n; i++ {
		dp := dps.AppendEmpty()
		dp.SetIntValue(int64(i))
		dp.Attributes().PutStr("hw.id", fmt.Sprintf("GPU-%d", i%8))
	}
	return md
}

var idSeq atomic.Int64

func testConfig(s *store) *Config {
	cfg := createDefaultConfig().(*Config)
	// Most tests exercise the split by attribute; routing by the
	// authenticated tenant has its own (TestRoutesByTheAuthenticatedTenant).
	cfg.RouteBy = RouteByAttribute
	cfg.MetricsEndpoint = s.srv.URL + "/t/{tenant}/opentelemetry/v1/metrics"
	cfg.LogsEndpoint = s.srv.URL + "/t/{tenant}/logs"
	cfg.TracesEndpoint = s.srv.URL + "/t/{tenant}/traces"
	cfg.Batch.FlushInterval = 20 * time.Millisecond
	cfg.RetryOnFailure.InitialInterval = 50 * time.Millisecond
	cfg.RetryOnFailure.MaxInterval = 200 * time.Millisecond
	cfg.ClientConfig.Timeout = 2 * time.Second
	return cfg
}

// startMetrics starts a metrics exporter; queueDir, when set, keeps its
// queues in the queue log there (under one id, so a restart on the same
// folder finds them).
func startMetrics(t *testing.T, cfg *Config, queueDir string) exporter.Metrics {
	t.Helper()
	if queueDir != "" {
		cfg.Queue.Directory = queueDir
		return startMetricsID(t, cfg, nil, component.NewIDWithName(metadata.Type, "disk"))
	}
	return startMetricsID(t, cfg, nil, component.NewIDWithName(metadata.Type, fmt.Sprintf("t%d", idSeq.Add(1))))
}

// startMetricsID starts a metrics exporter with a given id: with
// queue.directory, its queue log is the id's subfolder, so a restarted
// exporter must keep its id to find it.
func startMetricsID(t *testing.T, cfg *Config, h component.Host, id component.ID) exporter.Metrics {
	t.Helper()
	require.NoError(t, cfg.Validate())
	if h == nil {
		h = componenttest.NewNopHost()
	}
	set := exportertest.NewNopSettings(metadata.Type)
	set.ID = id
	exp, err := NewFactory().CreateMetrics(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), h))
	return exp
}

// startMetricsWithTelemetry starts a metrics exporter whose own metrics
// the returned telemetry reads.
func startMetricsWithTelemetry(t *testing.T, cfg *Config) (exporter.Metrics, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	set := exportertest.NewNopSettings(metadata.Type)
	set.ID = component.NewIDWithName(metadata.Type, fmt.Sprintf("t%d", idSeq.Add(1)))
	set.TelemetrySettings = tel.NewTelemetrySettings()
	exp, err := NewFactory().CreateMetrics(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	return exp, tel
}

func stop(t *testing.T, exp exporter.Metrics) {
	t.Helper()
	require.NoError(t, exp.Shutdown(context.Background()))
}
