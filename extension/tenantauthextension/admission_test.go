package tenantauthextension

import (
	"context"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-gpu/otelcol-gpu/internal/admission"
)

// While a send queue is full, a request is refused retryably before its
// body is decoded, on both transports, and is taken again once it is not.
func TestFullQueuesRefuseBeforeDecoding(t *testing.T) {
	named := component.MustNewID("tenant_otlp_http")
	adm := createDefaultConfig().(*Config).Admission
	adm.Queues = []component.ID{named}
	g := startGateway(t, gatewayOpts{admission: &adm})
	var full, other atomic.Bool
	unregister := admission.Register(named, full.Load)
	defer unregister()
	// Another exporter's queue, one this guard's config does not name:
	// full, it refuses nothing here.
	other.Store(true)
	unregisterOther := admission.Register(component.MustNewIDWithName("tenant_otlp_http", "other"), other.Load)
	defer unregisterOther()
	payload := bigPayload(t, 4<<20)
	require.NoError(t, g.sendGRPC(t, goodToken, bigPayload(t, 10))) // warm-up

	accepted := allocatedBy(t, func() { require.NoError(t, g.sendGRPC(t, goodToken, payload)) })
	before := len(g.sink.AllMetrics())
	full.Store(true)
	var err error
	refused := allocatedBy(t, func() { err = g.sendGRPC(t, goodToken, payload) })
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)
	require.Contains(t, st.Message(), "send queues are full")
	require.NotNil(t, retryInfo(st), "RetryInfo makes the otlp exporter retry")
	t.Logf("4 MiB request allocated: accepted %d KiB, refused with full queues %d KiB", accepted>>10, refused>>10)
	require.Greater(t, accepted, refused+3<<20, "the refused request was not decoded")

	code, header := g.sendHTTPHeader(t, goodToken, payload)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "1", header.Get("Retry-After"))
	require.GreaterOrEqual(t, counterOf(t, g.tel, "otelcol_tenant_auth_refused_payloads", "reason", "queues_full"), int64(2), "every refusal counted")

	require.Len(t, g.sink.AllMetrics(), before, "nothing refused reached the pipeline")

	full.Store(false)
	require.NoError(t, g.sendGRPC(t, goodToken, bigPayload(t, 10)))
	require.Equal(t, http.StatusOK, g.sendHTTP(t, goodToken, bigPayload(t, 10), ""))
	require.Len(t, g.sink.AllMetrics(), before+2, "taken again once the queues have room")
}

// gated holds every request in the pipeline until released.
type gated struct {
	in      atomic.Int32
	release chan struct{}
}

func (g *gated) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (g *gated) ConsumeMetrics(context.Context, pmetric.Metrics) error {
	g.in.Add(1)
	<-g.release
	return nil
}

// The in-flight limit: requests past it wait (no decode) while their bytes
// fit the waiting limit, are refused retryably past that, and every
// admitted request gives its room back when its call ends.
func TestInFlightLimitWaitsThenRefuses(t *testing.T) {
	next := &gated{release: make(chan struct{})}
	g := startGateway(t, gatewayOpts{admission: &Admission{RequestLimitMiB: 1, WaitingLimitMiB: 1}, next: next})
	payload := bigPayload(t, 700<<10) // two do not fit in 1 MiB

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = g.sendGRPC(t, goodToken, payload) }()
		if i == 0 {
			require.Eventually(t, func() bool { return next.in.Load() == 1 }, 10*time.Second, time.Millisecond, "the first is in the pipeline")
		}
	}
	require.Eventually(t, func() bool { return g.auth.limiter.Waiting() > 0 }, 10*time.Second, time.Millisecond, "the second waits for room")
	require.EqualValues(t, 1, next.in.Load(), "and is not decoded")

	// A third would pass the waiting limit: refused before it is read.
	err := g.sendGRPC(t, goodToken, payload)
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	require.Equal(t, http.StatusServiceUnavailable, g.sendHTTP(t, goodToken, payload, ""))
	require.Positive(t, counterOf(t, g.tel, "otelcol_tenant_auth_refused_payloads", "reason", "busy"))

	close(next.release)
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.Eventually(t, func() bool { return g.auth.limiter.InFlight() == 0 }, 10*time.Second, time.Millisecond,
		"every call gave its room back")
	for i := 0; i < 5; i++ { // and the room is there for the next ones
		require.NoError(t, g.sendGRPC(t, goodToken, payload))
		require.Equal(t, http.StatusOK, g.sendHTTP(t, goodToken, payload, ""))
	}
	require.Eventually(t, func() bool { return g.auth.limiter.InFlight() == 0 }, 10*time.Second, time.Millisecond)
}

// A payload that passes the wire check but that pdata refuses to decode (a
// fixed64 field sent as a varint) fails in the codec, where grpc-go answers
// Internal without telling the stats handler: its room must come back all
// the same, or each such request would shrink the in-flight limit for good.
func TestAnUndecodableRequestGivesItsRoomBack(t *testing.T) {
	g := startGateway(t, gatewayOpts{admission: &Admission{RequestLimitMiB: 1, WaitingLimitMiB: 1}})
	dp := []byte{0x20, 0x01} // NumberDataPoint.as_double (field 4, fixed64) as a varint
	gauge := append(tagLen(nil, 1, len(dp)), dp...)
	metric := append(append(tagLen(nil, 1, 1), 'm'), append(tagLen(nil, 5, len(gauge)), gauge...)...)
	sm := append(tagLen(nil, 2, len(metric)), metric...)
	rm := append(tagLen(nil, 2, len(sm)), sm...)
	bad := append(tagLen(nil, 1, len(rm)), rm...)
	// Padded with an unknown field to half the limit: two leaked rooms
	// would leave no room for the next request.
	pad := make([]byte, 600<<10)
	bad = append(tagLen(bad, 99, len(pad)), pad...)

	for i := 0; i < 4; i++ {
		err := g.sendGRPC(t, goodToken, bad)
		require.Error(t, err)
		require.Contains(t, err.Error(), "wrong wireType", "refused by pdata's decoder, past the wire check")
		require.Eventually(t, func() bool { return g.auth.limiter.InFlight() == 0 }, 10*time.Second, time.Millisecond,
			"request %d gave its room back", i)
	}
	require.NoError(t, g.sendGRPC(t, goodToken, bigPayload(t, 600<<10)), "the limit still has room")
	left := 0
	g.auth.guard.permits.Range(func(any, any) bool { left++; return true })
	require.Zero(t, left, "no request left behind in the codec's hand-over")
}

// holding keeps every request of more than one data point in the pipeline
// until released, holding on to its data or not.
type holding struct {
	keep    bool
	mu      sync.Mutex
	kept    []pmetric.Metrics
	in      atomic.Int32
	release chan struct{}
}

func (h *holding) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }
func (h *holding) ConsumeMetrics(_ context.Context, md pmetric.Metrics) error {
	if md.DataPointCount() <= 1 {
		return nil
	}
	if h.keep {
		h.mu.Lock()
		h.kept = append(h.kept, md)
		h.mu.Unlock()
	}
	h.in.Add(1)
	<-h.release
	return nil
}

// A call whose data the pipeline is done with (its parts are bytes in a
// queue, waiting for their sync) must not keep the decoded request alive
// through the gateway's own bookkeeping: with the queue on disk every call
// waits so, and the decoded requests of all of them would be marked by the
// collector at every cycle. The same calls are held twice, once with the
// pipeline holding their data (the decoded size) and once without.
func TestAWaitingCallDoesNotHoldItsDecodedRequest(t *testing.T) {
	md := pmetric.NewMetrics()
	dps := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints()
	for i := 0; i < 20_000; i++ {
		dp := dps.AppendEmpty()
		dp.SetIntValue(int64(i))
		dp.Attributes().PutStr("gpu", "GPU-0")
	}
	payload, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	require.NoError(t, err)
	md = pmetric.Metrics{}

	live := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	const calls = 8
	held := func(keep bool) int64 {
		next := &holding{keep: keep, release: make(chan struct{})}
		g := startGateway(t, gatewayOpts{admission: &Admission{}, next: next})
		require.NoError(t, g.sendGRPC(t, goodToken, nested(2))) // warm-up
		base := live()
		var wg sync.WaitGroup
		for i := 0; i < calls; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); assert.NoError(t, g.sendGRPC(t, goodToken, payload)) }()
		}
		require.Eventually(t, func() bool { return next.in.Load() == calls }, 20*time.Second, time.Millisecond)
		grew := live() - base
		close(next.release)
		wg.Wait()
		return grew
	}
	kept, dropped := held(true), held(false)
	t.Logf("%d calls of %d KiB on the wire waiting: %d MiB live with the pipeline holding their data, %d MiB without",
		calls, len(payload)>>10, kept>>20, dropped>>20)
	require.Greater(t, kept, int64(calls*len(payload)), "the decoded requests are larger than their wire form")
	require.Less(t, dropped, kept/4, "nothing but the pipeline holds a waiting call's decoded request")
}
