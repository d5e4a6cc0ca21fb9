package tenantprocessor

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// namedMetrics is one request with a gauge of one point for each name.
func namedMetrics(names ...string) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for _, n := range names {
		m := ms.AppendEmpty()
		m.SetName(n)
		m.SetEmptyGauge().DataPoints().AppendEmpty().SetDoubleValue(1)
	}
	return stampNow(md)
}

// metricNames lists the names of every metric that reached the sink.
func metricNames(p *pipeline) []string {
	var out []string
	for _, md := range p.mSink.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					out = append(out, m.Name())
				}
			}
		}
	}
	return out
}

func TestGatewayRenamesReservedMetrics(t *testing.T) {
	renamed := map[string]string{
		"usage.data_points":       "customer.usage.data_points",
		"usage.gpu_minutes":       "customer.usage.gpu_minutes",
		"usage.":                  "customer.usage.",
		"usage_data_points":       "customer.usage_data_points", // the same name in a Prometheus-compatible store
		"Usage.Data_Points":       "customer.Usage.Data_Points",
		"USAGE-x":                 "customer.USAGE-x",
		"usage/x":                 "customer.usage/x",
		"usage.customer.usage.x":  "customer.usage.customer.usage.x",
		"usage.record_id\x00evil": "customer.usage.record_id\x00evil",
	}
	kept := []string{"usage", "usagex", "usages.x", "hw.usage.x", "gpu.usage", "customer.usage.data_points", "", "hw.gpu.utilization", "usag"}
	var sent, want []string
	for from, to := range renamed {
		sent, want = append(sent, from), append(want, to)
	}
	sent, want = append(sent, kept...), append(want, kept...)

	p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), namedMetrics(sent...)))
	require.Equal(t, want, metricNames(p))
	require.Equal(t, int64(len(renamed)), counter(t, p.tel, "otelcol_processor_tenant_renamed_metrics", nil))
	require.Equal(t, int64(len(sent)), counter(t, p.tel, "otelcol_processor_outgoing_items", map[string]string{"otel.signal": "metrics"}),
		"a renamed metric is forwarded, stored and billed like any other")

	entries := p.logsObs.FilterMessageSnippet("reserved prefix renamed").All()
	require.Len(t, entries, 1)
	fields := entries[0].ContextMap()
	require.Equal(t, "acme", fields["tenant"])
	require.Equal(t, "vm-acme", fields["credential_id"])
	require.Equal(t, int64(len(renamed)), fields["metrics"])
	require.Contains(t, renamed, fields["example"])
	require.Equal(t, renamed[fields["example"].(string)], fields["renamed_to"])
}

func TestGatewayRenamesEveryRequestLogsAtABoundedRate(t *testing.T) {
	p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
	for i := 0; i < 50; i++ {
		require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), namedMetrics("usage.a", "usage.b")))
	}
	require.Equal(t, int64(100), counter(t, p.tel, "otelcol_processor_tenant_renamed_metrics", nil))
	require.Len(t, p.logsObs.FilterMessageSnippet("reserved prefix renamed").All(), 1)
}

func TestGatewayRenamesUnderEveryConfiguredPrefix(t *testing.T) {
	cfg := gatewayConfig(OnMismatchOverride)
	cfg.ReservedPrefixes = []string{"usage.", "billing."}
	cfg.ReservedRenamePrefix = "tenant_data."
	cfg.Timestamps = TimestampsConfig{} // renaming does not need the window
	p := newPipeline(t, cfg).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), namedMetrics("usage.x", "billing.y", "customer.usage.z")))
	require.Equal(t, []string{"tenant_data.usage.x", "tenant_data.billing.y", "customer.usage.z"}, metricNames(p))
}

func TestGatewayWithoutReservedPrefixesKeepsNames(t *testing.T) {
	cfg := gatewayConfig(OnMismatchOverride)
	cfg.ReservedPrefixes = nil
	p := newPipeline(t, cfg).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), namedMetrics("usage.x")))
	require.Equal(t, []string{"usage.x"}, metricNames(p))
	require.Zero(t, counter(t, p.tel, "otelcol_processor_tenant_renamed_metrics", nil))
}

// The agent is the customer's: it renames nothing.
func TestAgentKeepsReservedNames(t *testing.T) {
	p := newPipeline(t, agentConfig(SourceConfig{Type: SourceStatic, Value: "acme"})).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(t.Context(), namedMetrics("usage.x")))
	require.Equal(t, []string{"usage.x"}, metricNames(p))
}
