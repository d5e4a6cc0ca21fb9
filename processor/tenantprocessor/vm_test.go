package tenantprocessor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
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
