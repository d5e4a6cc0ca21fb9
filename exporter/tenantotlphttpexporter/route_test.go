package tenantotlphttpexporter

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

// authData is what tenant_auth puts into a request's client.Info.
type authData struct{ tenant string }

func (a authData) GetAttribute(name string) any {
	if name == tenantid.AuthAttributeTenant {
		return a.tenant
	}
	return nil
}

func (authData) GetAttributeNames() []string { return []string{tenantid.AuthAttributeTenant} }

func authenticated(tenant string) context.Context {
	return client.NewContext(context.Background(), client.Info{Auth: authData{tenant: tenant}})
}

func inner(exp exporter.Metrics) *tenantExporter { return exp.(*metricsExporter).Unwrap }

// Whatever the payload says, under whatever attribute name the exporter or
// the processor was configured with, a request is filed under the tenant its
// credential names.
func TestRoutesByTheAuthenticatedTenant(t *testing.T) {
	s := newStore(t)
	for _, attr := range []string{"tenant.id", "x.tenant"} {
		before := s.pointsOf("acme")
		cfg := testConfig(s)
		cfg.RouteBy, cfg.Attribute = RouteByAuth, attr
		exp := startMetrics(t, cfg, "")
		md := batch("globex", 3) // claims globex under tenant.id
		batch("", 2).ResourceMetrics().At(0).CopyTo(md.ResourceMetrics().AppendEmpty())
		md.ResourceMetrics().At(1).Resource().Attributes().PutStr("x.tenant", "initech")
		require.NoError(t, exp.ConsumeMetrics(authenticated("acme"), md))
		require.Eventually(t, func() bool { return s.pointsOf("acme") == before+5 }, 5*time.Second, 10*time.Millisecond)
		stop(t, exp)
	}
	require.Zero(t, s.pointsOf("globex"))
	require.Zero(t, s.pointsOf("initech"))
	require.Zero(t, s.attemptsOf("globex")+s.attemptsOf("initech"), "no request ever went to a claimed tenant's route")
}

func TestWithoutAnAuthenticatedTenantNothingIsSent(t *testing.T) {
	s := newStore(t)
	cfg := testConfig(s)
	cfg.RouteBy = RouteByAuth
	exp := startMetrics(t, cfg, "")
	defer stop(t, exp)
	for name, ctx := range map[string]context.Context{
		"no auth":         context.Background(),
		"invalid id":      authenticated("Acme Corp"),
		"empty tenant id": authenticated(""),
	} {
		err := exp.ConsumeMetrics(ctx, batch("acme", 3))
		require.ErrorIs(t, err, errNoAuthTenant, name)
		require.True(t, consumererror.IsPermanent(err), name)
	}
	require.Zero(t, inner(exp).queuedItems(), "nothing was accepted")
}

// A 500 is a bug, not a "later": dropped after one attempt, as upstream's
// otlp_http exporter does, unless the operator lists it.
func TestOnlyTheConfiguredStatusesAreRetried(t *testing.T) {
	s := newStore(t)
	s.set("acme", http.StatusInternalServerError, false)
	exp := startMetrics(t, testConfig(s), "")
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 4)))
	require.Eventually(t, func() bool { return s.attemptsOf("acme") == 1 && inner(exp).queuedItems() == 0 },
		5*time.Second, 10*time.Millisecond, "sent once, then dropped")
	stop(t, exp)

	cfg := testConfig(s)
	cfg.RetryOnStatus = []int{http.StatusInternalServerError}
	exp = startMetrics(t, cfg, "")
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 4)))
	require.Eventually(t, func() bool { return s.attemptsOf("acme") >= 4 }, 5*time.Second, 10*time.Millisecond, "retried")
	require.Equal(t, 4, inner(exp).queuedItems(), "kept while retried")
	s.set("acme", 0, false)
	require.Eventually(t, func() bool { return s.pointsOf("acme") == 4 }, 5*time.Second, 10*time.Millisecond)
	stop(t, exp)

	// And the default set still retries a 503 (upstream's list).
	s.set("globex", http.StatusServiceUnavailable, false)
	exp = startMetrics(t, testConfig(s), "")
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("globex", 2)))
	require.Eventually(t, func() bool { return s.attemptsOf("globex") >= 3 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 2, inner(exp).queuedItems())
	s.set("globex", 0, false)
	require.Eventually(t, func() bool { return s.pointsOf("globex") == 2 }, 5*time.Second, 10*time.Millisecond)
	stop(t, exp)
}

// A store that holds a request open cannot hold shutdown past drain_timeout:
// the request is ended (its data stays queued, on disk with storage).
func TestShutdownEndsARequestInFlightAtTheDrainTimeout(t *testing.T) {
	s := newStore(t)
	s.set("acme", 0, true)
	cfg := testConfig(s)
	cfg.ClientConfig.Timeout = 10 * time.Minute
	cfg.DrainTimeout = 200 * time.Millisecond
	dir := t.TempDir()
	exp := startMetrics(t, cfg, dir)
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 6)))
	require.Eventually(t, func() bool { return s.attemptsOf("acme") == 1 }, 5*time.Second, 10*time.Millisecond, "the request is at the store")

	done := make(chan error, 1)
	go func() { done <- exp.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("shutdown is held by a request the client would wait 10 minutes for")
	}
	require.Zero(t, s.pointsOf("acme"))

	// The data was kept: the next start sends it.
	s.set("acme", 0, false)
	exp = startMetrics(t, testConfig(s), dir)
	require.Eventually(t, func() bool { return s.pointsOf("acme") == 6 }, 5*time.Second, 10*time.Millisecond)
	stop(t, exp)
}

// A tenant with a backlog is sent it by up to senders_per_tenant requests
// at once; without one, by one at a time (its order kept).
func TestABacklogIsSentBySeveralSenders(t *testing.T) {
	var now, peak atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n := now.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		now.Add(-1)
	}))
	defer srv.Close()
	defer close(release)
	cfg := createDefaultConfig().(*Config)
	cfg.RouteBy = RouteByAttribute
	cfg.MetricsEndpoint = srv.URL + "/{tenant}"
	cfg.Batch.MaxItems = 10
	cfg.Batch.FlushInterval = time.Hour // batches leave when full only
	cfg.SendersPerTenant = 3
	exp := startMetrics(t, cfg, "")
	defer func() { _ = exp.Shutdown(context.Background()) }()

	e := inner(exp)
	slots := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, q := range e.queues {
			q.mu.Lock()
			defer q.mu.Unlock()
			return q.slots
		}
		return 0
	}
	require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 10)))
	require.Eventually(t, func() bool { return now.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 1, slots(), "one full batch: one request")

	for i := 0; i < 10; i++ { // a backlog of ten batches
		require.NoError(t, exp.ConsumeMetrics(context.Background(), batch("acme", 10)))
	}
	require.Eventually(t, func() bool { return now.Load() == 3 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 3, slots(), "the queue is at senders_per_tenant: no sender more is handed it")
	require.EqualValues(t, 3, peak.Load(), "never more than senders_per_tenant")
}

// Every tenant goes to one store host: the senders keep their connections
// between requests instead of dialing again (net/http keeps 2 idle per
// host by default, so 8 senders at once closed 6 connections each time).
func TestSendersKeepTheirConnectionsToTheStore(t *testing.T) {
	var dials atomic.Int64
	var inFlight, most atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(5 * time.Millisecond) // so the senders' requests overlap
		w.WriteHeader(http.StatusOK)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	cfg := testConfig(&store{srv: srv})
	cfg.Senders = 8
	exp := startMetrics(t, cfg, "")
	defer stop(t, exp)
	for round := 0; round < 10; round++ {
		for i := 0; i < 40; i++ {
			require.NoError(t, exp.ConsumeMetrics(context.Background(), batch(fmt.Sprintf("t%d", i), 3)))
		}
		require.Eventually(t, func() bool { return inner(exp).queuedItems() == 0 }, 10*time.Second, 5*time.Millisecond)
	}
	require.Greater(t, most.Load(), int64(2), "the senders' requests overlapped (else this test shows nothing)")
	t.Logf("%d connections for %d senders (most requests at once: %d)", dials.Load(), cfg.Senders, most.Load())
	// About one connection per sender; net/http may dial one more when a
	// request finds none idle just as another is being put back. With
	// net/http's default of 2 idle connections per host it is about 62.
	require.LessOrEqual(t, dials.Load(), int64(2*cfg.Senders), "a connection per sender, kept between requests")
}

// The exporter lets go of a request's decoded data once its parts are
// encoded, before they are queued (with the queue on disk, before they wait
// for the log's sync): the receiver and processors up the call still hold
// the request all that time. It says it mutates data, so a pipeline that
// fans a request out to it and to another consumer gives it its own copy.
func TestARequestsDataIsLetGoBeforeItsPartsWait(t *testing.T) {
	s := newStore(t)
	for _, routeBy := range []string{RouteByAuth, RouteByAttribute} {
		t.Run(routeBy, func(t *testing.T) {
			cfg := testConfig(s)
			cfg.RouteBy = routeBy
			exp := startMetrics(t, cfg, t.TempDir())
			defer stop(t, exp)
			require.True(t, exp.Capabilities().MutatesData)
			md := batch("acme", 40)
			var left []int
			testHookEnqueue = func() { left = append(left, md.ResourceMetrics().Len()) }
			defer func() { testHookEnqueue = nil }()
			require.NoError(t, exp.ConsumeMetrics(authenticated("acme"), md))
			require.Equal(t, []int{0}, left, "the request's resources when its part was queued")
			require.Eventually(t, func() bool { return s.pointsOf("acme") >= 40 }, 5*time.Second, 10*time.Millisecond, "its part is sent all the same")
		})
	}
}

// A request that spans tenants (route_by: attribute) has its tenants' parts
// queued at once: with the queue on disk and synced, ten tenants' parts go
// into a few group writes (the first may start alone), not ten written and
// synced one after another.
func TestATenantsSpanningRequestIsWrittenTogether(t *testing.T) {
	s := newStore(t)
	cfg := testConfig(s)
	cfg.Queue.Directory, cfg.Queue.Fsync = t.TempDir(), true
	exp := startMetrics(t, cfg, "")
	defer stop(t, exp)
	md := batch("t0", 3)
	for i := 1; i < 10; i++ {
		batch(fmt.Sprintf("t%d", i), 3).ResourceMetrics().At(0).CopyTo(md.ResourceMetrics().AppendEmpty())
	}
	before := inner(exp).parts.(*logParts).spool.Stats()
	require.NoError(t, exp.ConsumeMetrics(context.Background(), md))
	after := inner(exp).parts.(*logParts).spool.Stats()
	require.Equal(t, int64(10), after.Parts-before.Parts)
	require.LessOrEqual(t, after.Writes-before.Writes, int64(5), "group writes for 10 tenants' parts (one after another: 10)")
	require.Eventually(t, func() bool {
		for i := 0; i < 10; i++ {
			if s.pointsOf(fmt.Sprintf("t%d", i)) != 3 {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond)
}
