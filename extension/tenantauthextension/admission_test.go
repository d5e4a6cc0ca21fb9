package tenantauthextension

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-gpu/otelcol-gpu/internal/admission"
)

// While a send queue is full, a request is refused retryably before its
// body is decoded, on both transports, and is taken again once it is not.
func TestFullQueuesRefuseBeforeDecoding(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	var full atomic.Bool
	unregister := admission.Register(full.Load)
	defer unregister()
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
