package tenantprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzGatewayMetrics feeds arbitrary OTLP metrics payloads through the
// gateway processor: whatever reaches the next consumer carries only the
// authenticated tenant and VM, no reserved metric name and no point outside
// the timestamp window; a refusal is always permanent, and in override
// mode only for a request with nothing in the window.
func FuzzGatewayMetrics(f *testing.F) {
	m := &pmetric.ProtoMarshaler{}
	for _, claims := range [][]any{{}, {noAttr{}}, {"globex"}, {"acme", 5, noAttr{}}, {"x", "y", "z", "acme"}} {
		b, err := m.MarshalMetrics(buildMetrics(defaultAttribute, claims))
		require.NoError(f, err)
		f.Add(b, false)
		f.Add(b, true)
	}
	mixed := namedMetrics("usage.x", "Usage_y", "hw.gpu.utilization")
	mixed.ResourceMetrics().At(0).Resource().Attributes().PutStr("host.id", "forged")
	eachPoint(mixed, func(dp timedPoint) { dp.SetTimestamp(dp.Timestamp() - pcommon.Timestamp(defaultMaxAge/2)) })
	b, err := m.MarshalMetrics(mixed)
	require.NoError(f, err)
	f.Add(b, false)
	f.Fuzz(func(t *testing.T, data []byte, reject bool) {
		md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(data)
		if err != nil {
			return
		}
		mode := OnMismatchOverride
		if reject {
			mode = OnMismatchReject
		}
		now := time.Now()
		p := newPipeline(t, gatewayConfig(mode)).mustStart(t).setClock(t, now)
		err = p.metrics.ConsumeMetrics(authedCtx("acme"), md)
		if err != nil {
			require.True(t, consumererror.IsPermanent(err))
			require.Contains(t, []codes.Code{codes.PermissionDenied, codes.InvalidArgument}, status.Code(err))
			require.True(t, reject || status.Code(err) == codes.InvalidArgument, "override mode refuses only for the window: %v", err)
			require.Empty(t, p.mSink.AllMetrics())
			return
		}
		for _, got := range signals[0].got(p, defaultAttribute) {
			require.Equal(t, "acme", got)
		}
		for _, got := range signals[0].got(p, defaultVMAttribute) {
			require.Equal(t, "i-acme", got)
		}
		reserved := newLikeName(defaultReservedPrefix)
		for _, name := range metricNames(p) {
			require.False(t, len(name) >= len(reserved) && reserved.matches(name[:len(reserved)]), "reserved name %q", name)
		}
		w := windowAt(TimestampsConfig{MaxAge: defaultMaxAge, MaxFuture: defaultMaxFuture}, now)
		for _, out := range p.mSink.AllMetrics() {
			eachPoint(out, func(dp timedPoint) { require.Equal(t, inWindow, w.place(dp.Timestamp())) })
		}
	})
}

// FuzzAgentMetrics: the agent never fails and stamps every resource.
func FuzzAgentMetrics(f *testing.F) {
	b, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(buildMetrics(defaultAttribute, []any{noAttr{}, "globex"}))
	require.NoError(f, err)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(data)
		if err != nil {
			return
		}
		p := newPipeline(t, agentConfig(SourceConfig{Type: SourceStatic, Value: "acme"})).mustStart(t)
		require.NoError(t, p.metrics.ConsumeMetrics(context.Background(), md))
		for _, got := range signals[0].got(p, defaultAttribute) {
			require.Equal(t, "acme", got)
		}
	})
}
