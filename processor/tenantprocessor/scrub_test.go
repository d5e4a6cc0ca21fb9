package tenantprocessor

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLikeName(t *testing.T) {
	l := newLikeName("tenant.id")
	for _, k := range []string{"tenant.id", "tenant_id", "Tenant.ID", "TENANT-ID", "tenant/id", "tenant id"} {
		require.True(t, l.matches(k), k)
	}
	for _, k := range []string{"tenant", "tenant.ids", "tenantid", "x.tenant.id", "", "tenant.i"} {
		require.False(t, l.matches(k), k)
	}
}

// spoof puts attributes named like the tenant's, claiming globex, at every
// level below (and beside) the resource's own.
func spoof(m pcommon.Map) {
	m.PutStr("tenant.id", "globex")
	m.PutStr("tenant_id", "globex")
	m.PutStr("Tenant-ID", "globex")
}

func spoofedMetrics() pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("tenant.id", "acme")
	rm.Resource().Attributes().PutStr("tenant_id", "globex")
	sm := rm.ScopeMetrics().AppendEmpty()
	spoof(sm.Scope().Attributes())
	g := sm.Metrics().AppendEmpty().SetEmptyGauge().DataPoints()
	for i := 0; i < 3; i++ {
		dp := g.AppendEmpty()
		dp.SetDoubleValue(1)
		dp.Attributes().PutStr("hw.id", "GPU-0")
		spoof(dp.Attributes())
	}
	spoof(sm.Metrics().AppendEmpty().SetEmptySum().DataPoints().AppendEmpty().Attributes())
	spoof(sm.Metrics().AppendEmpty().SetEmptyHistogram().DataPoints().AppendEmpty().Attributes())
	spoof(sm.Metrics().AppendEmpty().SetEmptyExponentialHistogram().DataPoints().AppendEmpty().Attributes())
	spoof(sm.Metrics().AppendEmpty().SetEmptySummary().DataPoints().AppendEmpty().Attributes())
	return stampNow(md)
}

func spoofedLogs() plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("tenant_id", "globex")
	sl := rl.ScopeLogs().AppendEmpty()
	spoof(sl.Scope().Attributes())
	spoof(sl.LogRecords().AppendEmpty().Attributes())
	return ld
}

func spoofedTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	ss := rs.ScopeSpans().AppendEmpty()
	spoof(ss.Scope().Attributes())
	sp := ss.Spans().AppendEmpty()
	spoof(sp.Attributes())
	spoof(sp.Events().AppendEmpty().Attributes())
	spoof(sp.Links().AppendEmpty().Attributes())
	return td
}

// keyRe finds every attribute key in OTLP JSON.
var keyRe = regexp.MustCompile(`"key":"([^"]*)","value":\{"stringValue":"([^"]*)"`)

// tenantKeys lists key=value of every attribute named like the tenant's,
// at any level of an OTLP JSON document.
func tenantKeys(t *testing.T, b []byte, err error) []string {
	t.Helper()
	require.NoError(t, err)
	l := newLikeName(defaultAttribute)
	var out []string
	for _, m := range keyRe.FindAllStringSubmatch(string(b), -1) {
		if l.matches(m[1]) {
			out = append(out, m[1]+"="+m[2])
		}
	}
	return out
}

func TestGatewayRemovesAttributesNamedLikeTheTenantAtEveryLevel(t *testing.T) {
	type sent struct {
		name    string
		send    func(p *pipeline) error
		out     func(p *pipeline) ([]byte, error)
		removed int64
	}
	cases := []sent{
		{"metrics", func(p *pipeline) error { return p.metrics.ConsumeMetrics(authedCtx("acme"), spoofedMetrics()) },
			func(p *pipeline) ([]byte, error) {
				return (&pmetric.JSONMarshaler{}).MarshalMetrics(p.mSink.AllMetrics()[0])
			}, 1 + 3*(1+3+4)},
		{"logs", func(p *pipeline) error { return p.logs.ConsumeLogs(authedCtx("acme"), spoofedLogs()) },
			func(p *pipeline) ([]byte, error) { return (&plog.JSONMarshaler{}).MarshalLogs(p.lSink.AllLogs()[0]) }, 1 + 3*2},
		{"traces", func(p *pipeline) error { return p.traces.ConsumeTraces(authedCtx("acme"), spoofedTraces()) },
			func(p *pipeline) ([]byte, error) {
				return (&ptrace.JSONMarshaler{}).MarshalTraces(p.tSink.AllTraces()[0])
			}, 3 * 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
			require.NoError(t, c.send(p))
			b, err := c.out(p)
			require.Equal(t, []string{"tenant.id=acme"}, tenantKeys(t, b, err),
				"only the resource's own tenant attribute, with the authenticated tenant, is left")
			require.Equal(t, c.removed, counter(t, p.tel, "otelcol_processor_tenant_removed_attributes", map[string]string{"tenant": "acme"}))
			require.True(t, strings.Contains(string(b), "hw.id") || c.name != "metrics", "other attributes stay")

			r := newPipeline(t, gatewayConfig(OnMismatchReject)).mustStart(t)
			err = c.send(r)
			require.True(t, consumererror.IsPermanent(err), "%v", err)
			require.Equal(t, codes.PermissionDenied, status.Code(err))
		})
	}
}

// An attribute named like the tenant that repeats the authenticated tenant
// is removed too (it would still be a second label), but claims nothing.
func TestAnHonestLookAlikeIsRemovedNotRejected(t *testing.T) {
	r := newPipeline(t, gatewayConfig(OnMismatchReject)).mustStart(t)
	md := pmetric.NewMetrics()
	dp := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty()
	dp.Attributes().PutStr("tenant_id", "acme")
	require.NoError(t, r.metrics.ConsumeMetrics(authedCtx("acme"), stampNow(md)))
	b, err := (&pmetric.JSONMarshaler{}).MarshalMetrics(r.mSink.AllMetrics()[0])
	require.Equal(t, []string{"tenant.id=acme"}, tenantKeys(t, b, err))
	require.Equal(t, int64(1), counter(t, r.tel, "otelcol_processor_tenant_removed_attributes", map[string]string{"tenant": "acme"}))
}

// processorhelper gives the standard otelcol_processor_* telemetry.
func TestStandardProcessorTelemetry(t *testing.T) {
	p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), buildMetrics(defaultAttribute, []any{"acme", "globex"})))
	require.Positive(t, counter(t, p.tel, "otelcol_processor_incoming_items", map[string]string{"otel.signal": "metrics"}))
	require.Positive(t, counter(t, p.tel, "otelcol_processor_outgoing_items", map[string]string{"otel.signal": "metrics"}))
}
