package tenantprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/metricwalk"
)

// Whatever a payload says its host is, every resource leaves the gateway
// with the VM identity of the credential (auth data instance_id).
func TestGatewayStampsTheCredentialsVM(t *testing.T) {
	claims := []any{"i-globex", noAttr{}, 42, "", "i-acme"}
	for _, sig := range signals {
		t.Run(sig.name, func(t *testing.T) {
			p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
			require.NoError(t, sig.send(authedCtx("acme"), p, "host.id", claims))
			require.Equal(t, []any{"i-acme", "i-acme", "i-acme", "i-acme", "i-acme"}, sig.got(p, "host.id"))
			require.Equal(t, []any{"vm-1", "vm-1", "vm-1", "vm-1", "vm-1"}, sig.got(p, "host.name"), "other host attributes are the customer's")
		})
	}
}

func TestGatewayStampsAnotherVMAttribute(t *testing.T) {
	cfg := gatewayConfig(OnMismatchOverride)
	cfg.VMAttribute = "host.name"
	for _, sig := range signals {
		t.Run(sig.name, func(t *testing.T) {
			p := newPipeline(t, cfg).mustStart(t)
			require.NoError(t, sig.send(authedCtx("acme"), p, "host.id", []any{"forged"}))
			require.Equal(t, []any{"i-acme"}, sig.got(p, "host.name"), "the payload's host.name is overwritten")
			require.Equal(t, []any{"forged"}, sig.got(p, "host.id"), "host.id is not the VM attribute here")
		})
	}
}

func TestGatewayWithoutVMAttributeLeavesHostsAlone(t *testing.T) {
	cfg := gatewayConfig(OnMismatchOverride)
	cfg.VMAttribute = ""
	p := newPipeline(t, cfg).mustStart(t)
	ctx := client.NewContext(context.Background(), client.Info{Auth: testAuth{tenantid.AuthAttributeTenant: "acme"}})
	require.NoError(t, p.metrics.ConsumeMetrics(ctx, buildMetrics("host.id", []any{"mine", noAttr{}})))
	require.Equal(t, []any{"mine", noAttr{}}, signals[0].got(p, "host.id"))
}

// An attribute named like the VM attribute below the resource (or beside
// it) would become the series' host_id label in the store, moving points to
// another VM, or many VMs into one, for the meters. It is removed.
func TestGatewayRemovesAttributesNamedLikeTheVM(t *testing.T) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("host.id", "forged")
	rm.Resource().Attributes().PutStr("host_id", "forged")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().Attributes().PutStr("HOST-ID", "forged")
	dp := sm.Metrics().AppendEmpty().SetEmptySum().DataPoints().AppendEmpty()
	dp.Attributes().PutStr("host.id", "i-globex")
	dp.Attributes().PutStr("hw.id", "GPU-0")
	dp.Attributes().PutStr("host.ids", "kept")

	p := newPipeline(t, gatewayConfig(OnMismatchReject)).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), stampNow(md)), "a VM look-alike claims no tenant")
	got := p.mSink.AllMetrics()[0].ResourceMetrics().At(0)
	require.Equal(t, map[string]any{"tenant.id": "acme", "host.id": "i-acme"}, got.Resource().Attributes().AsRaw())
	gotSM := got.ScopeMetrics().At(0)
	require.Empty(t, gotSM.Scope().Attributes().AsRaw())
	require.Equal(t, map[string]any{"hw.id": "GPU-0", "host.ids": "kept"}, gotSM.Metrics().At(0).Sum().DataPoints().At(0).Attributes().AsRaw())
	require.Equal(t, int64(3), counter(t, p.tel, "otelcol_processor_tenant_removed_attributes", map[string]string{"tenant": "acme"}))
}

func TestGatewayRefusesRequestsWithoutVM(t *testing.T) {
	contexts := map[string]context.Context{
		"no instance": client.NewContext(context.Background(), client.Info{Auth: testAuth{tenantid.AuthAttributeTenant: "acme"}}),
		"empty instance": client.NewContext(context.Background(), client.Info{Auth: testAuth{
			tenantid.AuthAttributeTenant: "acme", tenantid.AuthAttributeInstance: "",
		}}),
		"instance not str": client.NewContext(context.Background(), client.Info{Auth: testAuth{
			tenantid.AuthAttributeTenant: "acme", tenantid.AuthAttributeInstance: 7,
		}}),
	}
	for _, sig := range signals {
		for name, ctx := range contexts {
			t.Run(sig.name+"/"+name, func(t *testing.T) {
				p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
				err := sig.send(ctx, p, "host.id", []any{"i-acme"})
				require.True(t, consumererror.IsPermanent(err), "%v", err)
				require.Equal(t, codes.Unauthenticated, status.Code(err))
				require.Empty(t, sig.got(p, "host.id"))
				require.Equal(t, int64(1), counter(t, p.tel, "otelcol_processor_tenant_refused_requests", map[string]string{"reason": "no_instance"}))
			})
		}
	}
}

// The store takes the last __name__ label as the metric's name, and writes
// a map attribute {"host": {"id": x}} as the label host.id=x: a point could
// rename itself past the reserved usage prefix and out of every meter, or
// move to another VM. Both are removed, at every level; maps that flatten
// into other names are kept.
func TestGatewayRemovesNameLabelsAndMapsThatFlattenIntoOwnedNames(t *testing.T) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("__name__", "usage.free")
	rm.Resource().Attributes().PutEmptyMap("host").PutStr("id", "forged")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().Attributes().PutStr("..NAME__", "usage.free")
	m := sm.Metrics().AppendEmpty()
	m.SetName("gpu.util")
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.Attributes().PutStr("__name__", "usage.free")
	dp.Attributes().PutEmptyMap("tenant").PutStr("id", "globex")
	dp.Attributes().PutEmptyMap("a").PutEmptyMap("b").PutStr("c", "kept")
	dp.Attributes().PutEmptyMap("deep").PutEmptyMap("x").PutStr("__name__", "no: deep.x.__name__ is another label")
	dp.Attributes().PutEmptyMap("host").PutStr("name", "kept")
	dp.Attributes().PutStr("hw.id", "GPU-0")

	p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), stampNow(md)))
	got := p.mSink.AllMetrics()[0].ResourceMetrics().At(0)
	require.Equal(t, map[string]any{"tenant.id": "acme", "host.id": "i-acme"}, got.Resource().Attributes().AsRaw())
	gotSM := got.ScopeMetrics().At(0)
	require.Empty(t, gotSM.Scope().Attributes().AsRaw())
	require.Equal(t, "gpu.util", gotSM.Metrics().At(0).Name())
	require.Equal(t, map[string]any{
		"a":     map[string]any{"b": map[string]any{"c": "kept"}},
		"deep":  map[string]any{"x": map[string]any{"__name__": "no: deep.x.__name__ is another label"}},
		"host":  map[string]any{"name": "kept"},
		"hw.id": "GPU-0",
	}, gotSM.Metrics().At(0).Gauge().DataPoints().At(0).Attributes().AsRaw())
	require.Equal(t, int64(5), counter(t, p.tel, "otelcol_processor_tenant_removed_attributes", map[string]string{"tenant": "acme"}))
}

// The gateway adds, to every metrics request that holds data, one point of
// the VM-minute metric in a resource of its own: stamped with the minute it
// received the request (not the data's timestamps, which are the
// customer's), valued at the credential's GPUs. The usage job bills
// GPU-minutes from it.
func TestGatewayStampsTheMinuteItSawTheVM(t *testing.T) {
	cfg := gatewayConfig(OnMismatchOverride)
	cfg.VMMinutesMetric = "usage.vm_minutes"
	received := time.Date(2026, 12, 1, 10, 14, 59, 999_000_000, time.UTC)
	for name, c := range map[string]struct {
		auth      testAuth
		value     int64
		gpusFrom  string
		timestamp time.Time
	}{
		"provisioned": {testAuth{tenantid.AuthAttributeTenant: "acme", tenantid.AuthAttributeInstance: "i-acme", tenantid.AuthAttributeGPUs: int64(8)}, 8, "provisioning", received.Truncate(time.Minute)},
		"not said":    {testAuth{tenantid.AuthAttributeTenant: "acme", tenantid.AuthAttributeInstance: "i-acme"}, 0, "agent", received.Truncate(time.Minute)},
	} {
		t.Run(name, func(t *testing.T) {
			p := newPipeline(t, cfg).setClock(t, received).mustStart(t)
			ctx := client.NewContext(context.Background(), client.Info{Auth: c.auth})
			md := buildMetrics("host.id", []any{"forged"})
			// Data stamped days ago and minutes ahead does not move the minute.
			metricwalk.NumberPoints(md, func(_ pmetric.Metric, dp pmetric.NumberDataPoint) {
				dp.SetTimestamp(pcommon.NewTimestampFromTime(received.Add(-time.Hour)))
			})
			require.NoError(t, p.metrics.ConsumeMetrics(ctx, md))
			got := p.mSink.AllMetrics()[0]
			rms := got.ResourceMetrics()
			last := rms.At(rms.Len() - 1)
			require.Equal(t, map[string]any{"tenant.id": "acme", "host.id": "i-acme"}, last.Resource().Attributes().AsRaw(), "a resource of its own: one series per VM")
			m := last.ScopeMetrics().At(0).Metrics().At(0)
			require.Equal(t, "usage.vm_minutes", m.Name())
			dp := m.Gauge().DataPoints().At(0)
			require.Equal(t, c.value, dp.IntValue())
			require.Equal(t, c.timestamp, dp.Timestamp().AsTime().UTC())
			require.Equal(t, map[string]any{"gpus_from": c.gpusFrom}, dp.Attributes().AsRaw())
		})
	}

	// A request with no data point delivers nothing: no minute.
	p := newPipeline(t, cfg).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), pmetric.NewMetrics()))
	for _, md := range p.mSink.AllMetrics() {
		require.Zero(t, md.DataPointCount())
	}
}

func TestTheVMMinuteMetricMustBeReserved(t *testing.T) {
	cfg := gatewayConfig(OnMismatchOverride)
	cfg.VMMinutesMetric = "vm_minutes"
	require.ErrorContains(t, cfg.Validate(), `vm_minutes_metric: "vm_minutes" is under no reserved prefix`)
	cfg.VMMinutesMetric, cfg.VMAttribute = "usage.vm_minutes", ""
	require.ErrorContains(t, cfg.Validate(), "vm_minutes_metric: needs vm_attribute")
}
