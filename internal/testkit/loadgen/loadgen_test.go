package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

func TestAgentShape(t *testing.T) {
	require.Equal(t, 444, DefaultShape.Points(), "8 GPUs x 43 series + 100 host series")
	md := Request(Agent{Index: 7, Tenant: "acme"}, DefaultShape, time.Now(), 3)
	require.Equal(t, 444, md.DataPointCount())
	require.Equal(t, 1, md.ResourceMetrics().Len())
	attrs := md.ResourceMetrics().At(0).Resource().Attributes()
	require.Equal(t, 8, attrs.Len(), "host, cloud and tenant attributes")
	tenant, _ := attrs.Get("tenant.id")
	require.Equal(t, "acme", tenant.Str())
	host, _ := attrs.Get("host.name")
	require.Equal(t, "loadgen-vm-7", host.Str())
	gpus := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	require.Equal(t, len(GPUMetrics), gpus.Len())
	for i := 0; i < gpus.Len(); i++ {
		m := gpus.At(i)
		var dps pmetric.NumberDataPointSlice
		if m.Type() == pmetric.MetricTypeSum {
			dps = m.Sum().DataPoints()
		} else {
			dps = m.Gauge().DataPoints()
		}
		require.Equal(t, 8, dps.Len(), m.Name())
		ids := map[string]bool{}
		for j := 0; j < dps.Len(); j++ {
			id, ok := dps.At(j).Attributes().Get("hw.id")
			require.True(t, ok)
			_, ok = dps.At(j).Attributes().Get("hw.name")
			require.True(t, ok)
			ids[id.Str()] = true
		}
		require.Len(t, ids, 8, "one series per GPU")
	}
	require.Equal(t, 2*43+(100-8*8+8), Shape{GPUs: 2, CPUs: 1}.Points(), "cpu time is 8 series per CPU")
}

func TestCountDataPointsMatchesPdata(t *testing.T) {
	for _, s := range []Shape{DefaultShape, {GPUs: 0, CPUs: 1}, {GPUs: 64, CPUs: 96}} {
		md := Request(Agent{Index: 1, Tenant: "t"}, s, time.Now(), 1)
		// Other kinds of metric count too.
		m := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().AppendEmpty()
		m.SetEmptyHistogram().DataPoints().AppendEmpty()
		m = md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().AppendEmpty()
		m.SetEmptySummary().DataPoints().AppendEmpty()
		m = md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().AppendEmpty()
		m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty()
		b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
		require.NoError(t, err)
		n, err := CountDataPoints(b)
		require.NoError(t, err)
		require.Equal(t, md.DataPointCount(), n)
	}
	_, err := CountDataPoints([]byte{0x0a, 0xff})
	require.ErrorIs(t, err, ErrMalformed)
}

func FuzzCountDataPoints(f *testing.F) {
	b, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(Request(Agent{Tenant: "t"}, Shape{GPUs: 1, CPUs: 1}, time.Now(), 1))
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := CountDataPoints(b)
		md, perr := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(b)
		if err == nil && perr == nil {
			require.Equal(t, md.DataPointCount(), n)
		}
		if perr == nil && err != nil {
			t.Fatalf("pdata decodes what the counter calls malformed: %v", err)
		}
	})
}

func TestRunAgainstSink(t *testing.T) {
	sink := NewSink()
	srv := httptest.NewServer(sink)
	defer srv.Close()
	rep, err := Run(context.Background(), Config{
		Transport: TransportConfig{Protocol: "http", Endpoint: srv.URL + "/insert/0/opentelemetry"},
		Agents:    6, Tenants: 3, Requests: 5,
	})
	require.NoError(t, err)
	require.EqualValues(t, 6*5, rep.Requests)
	require.EqualValues(t, 6*5*444, rep.Points)
	require.Len(t, rep.PerTenant, 3)
	for name, tr := range rep.PerTenant {
		require.True(t, strings.HasPrefix(name, "tenant-"), name)
		require.EqualValues(t, 2*5*444, tr.Points, name)
	}
	c := sink.Counts()
	require.EqualValues(t, rep.Points, c.Points)
	require.EqualValues(t, 30, c.Requests)
	require.Contains(t, rep.LatencyMS, "p99")
}

// InFlight caps the requests open at once over every agent: the server
// never sees more, and every agent still has its turn.
func TestInFlightCapsConcurrentRequests(t *testing.T) {
	sink := NewSink()
	var open, most atomic.Int64
	var hold atomic.Int64 // how long a request waits for a 4th to be open beside it
	four := make(chan struct{})
	var fourOnce sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := open.Add(1)
		defer open.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if n >= 4 {
			fourOnce.Do(func() { close(four) })
		}
		select {
		case <-four:
		case <-time.After(time.Duration(hold.Load())):
		}
		sink.ServeHTTP(w, r)
	}))
	defer srv.Close()
	// Without a cap the requests wait for each other until 4 are open at
	// once (for at most 10 s each): the server can see more than 3.
	hold.Store(int64(10 * time.Second))
	cfg := Config{Transport: TransportConfig{Protocol: "http", Endpoint: srv.URL, Conns: 16}, Agents: 16, Tenants: 4, Requests: 5}
	rep, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	require.EqualValues(t, 16*5, rep.Requests)
	require.Greater(t, most.Load(), int64(3), "without a cap, more than 3 requests are open at once")

	// With a cap of 3 each request is held 20 ms, time for a 4th to
	// arrive were the cap not kept.
	most.Store(0)
	hold.Store(int64(20 * time.Millisecond))
	four = make(chan struct{})
	fourOnce = sync.Once{}
	cfg.InFlight = 3
	rep, err = Run(context.Background(), cfg)
	require.NoError(t, err)
	require.EqualValues(t, 16*5, rep.Requests)
	require.LessOrEqual(t, most.Load(), int64(3))
	for name, tr := range rep.PerTenant {
		require.EqualValues(t, 4*5, tr.Requests, name)
	}

	cfg.InFlight = -1
	_, err = Run(context.Background(), cfg)
	require.ErrorContains(t, err, "in-flight cap")
}

// A gateway that refuses retryably at first: with Retry every request is
// eventually accepted (and counted once); without, refusals are failures.
func TestRetry(t *testing.T) {
	var calls atomic.Int64
	sink := NewSink()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%2 == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		sink.ServeHTTP(w, r)
	}))
	defer srv.Close()
	cfg := Config{Transport: TransportConfig{Protocol: "http", Endpoint: srv.URL}, Agents: 1, Tenants: 1, Requests: 4, Retry: true}
	rep, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	require.EqualValues(t, 4*444, rep.Points)
	require.EqualValues(t, 4, rep.Retries)
	require.EqualValues(t, map[string]int64{"200": 4, "503": 4}, rep.Codes)

	cfg.Retry = false
	rep, err = Run(context.Background(), cfg)
	require.NoError(t, err)
	require.EqualValues(t, 2, rep.Failed)
	require.EqualValues(t, 2*444, rep.Points)

	// A permanent refusal is never retried.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer bad.Close()
	rep, err = Run(context.Background(), Config{Transport: TransportConfig{Protocol: "http", Endpoint: bad.URL}, Agents: 1, Tenants: 1, Requests: 3, Retry: true})
	require.NoError(t, err)
	require.EqualValues(t, 3, rep.Failed)
	require.Zero(t, rep.Retries)
	require.Contains(t, rep.LastError, "401")
}

func TestTimestampsNeverRepeat(t *testing.T) {
	a := &agentState{}
	var last time.Time
	for i := 0; i < 1000; i++ {
		_, ts, ok := a.next()
		require.True(t, ok)
		require.True(t, ts.After(last))
		require.Zero(t, ts.Sub(ts.Truncate(time.Millisecond)))
		last = ts
	}
	a = &agentState{limit: 2}
	_, _, ok1 := a.next()
	_, _, ok2 := a.next()
	_, _, ok3 := a.next()
	require.Equal(t, []bool{true, true, false}, []bool{ok1, ok2, ok3})
}

func TestConfigErrors(t *testing.T) {
	_, err := Run(context.Background(), Config{Agents: 0, Tenants: 1})
	require.ErrorContains(t, err, "agents")
	_, err = Run(context.Background(), Config{Agents: 2, Tenants: 3})
	require.ErrorContains(t, err, "tenants")
	_, err = Run(context.Background(), Config{Agents: 1, Tenants: 1, Transport: TransportConfig{Protocol: "udp"}})
	require.ErrorContains(t, err, `protocol "udp"`)
}

func TestCredentialsMatchTokens(t *testing.T) {
	c := Credentials(2, nil)
	require.Contains(t, c, "tenant: tenant-0000")
	require.Contains(t, c, "tenant: tenant-0001")
	require.Equal(t, 2, strings.Count(c, "sha256: "))
}
