package tenantprocessor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// FuzzGatewayMetrics feeds arbitrary OTLP metrics payloads through the
// gateway processor: whatever reaches the next consumer carries only the
// authenticated tenant, and a refusal is always permanent.
func FuzzGatewayMetrics(f *testing.F) {
	m := &pmetric.ProtoMarshaler{}
	for _, claims := range [][]any{{}, {noAttr{}}, {"globex"}, {"acme", 5, noAttr{}}, {"x", "y", "z", "acme"}} {
		b, err := m.MarshalMetrics(buildMetrics(defaultAttribute, claims))
		require.NoError(f, err)
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, reject bool) {
		md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(data)
		if err != nil {
			return
		}
		mode := OnMismatchOverride
		if reject {
			mode = OnMismatchReject
		}
		p := newPipeline(t, gatewayConfig(mode)).mustStart(t)
		err = p.metrics.ConsumeMetrics(authedCtx("acme"), md)
		if err != nil {
			require.True(t, reject, "override mode never refuses an authenticated request: %v", err)
			require.True(t, consumererror.IsPermanent(err))
			require.Empty(t, p.mSink.AllMetrics())
			return
		}
		for _, got := range signals[0].got(p, defaultAttribute) {
			require.Equal(t, "acme", got)
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
