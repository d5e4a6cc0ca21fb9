package tenantprocessor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gatewayConfig is the default gateway without the VM-minute stamp (its
// extra resource is tested on its own, TestGatewayStampsTheMinuteItSawTheVM),
// counting per tenant, so the tests see which tenant each count is
// charged to (the default, without it, has its own test,
// TestOwnMetricsCarryTheTenantOnlyWhenAskedTo).
func gatewayConfig(onMismatch string) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Mode = ModeGateway
	cfg.OnMismatch = onMismatch
	cfg.VMMinutesMetric = ""
	cfg.Telemetry.PerTenant = true
	return cfg
}

func TestGatewayEnforcesTheAuthenticatedTenant(t *testing.T) {
	cases := []struct {
		name       string
		claims     []any
		override   []any // what lands with on_mismatch: override
		mismatched int64
	}{
		{name: "empty request", claims: []any{}, override: nil},
		{name: "no attribute", claims: []any{noAttr{}}, override: []any{"acme"}},
		{name: "same tenant", claims: []any{"acme"}, override: []any{"acme"}},
		{name: "other tenant", claims: []any{"globex"}, override: []any{"acme"}, mismatched: 1},
		{name: "not a string", claims: []any{42}, override: []any{"acme"}, mismatched: 1},
		{name: "case differs", claims: []any{"ACME"}, override: []any{"acme"}, mismatched: 1},
		{
			name:     "several resources, mixed",
			claims:   []any{noAttr{}, "globex", "acme", "initech", noAttr{}},
			override: []any{"acme", "acme", "acme", "acme", "acme"}, mismatched: 2,
		},
	}
	for _, sig := range signals {
		for _, tc := range cases {
			t.Run(sig.name+"/"+tc.name, func(t *testing.T) {
				// override: every resource lands as the authenticated tenant.
				p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
				require.NoError(t, sig.send(authedCtx("acme"), p, defaultAttribute, tc.claims))
				require.Equal(t, tc.override, sig.got(p, defaultAttribute))
				require.Equal(t, tc.mismatched, counter(t, p.tel, "otelcol_processor_tenant_mismatched_resources", map[string]string{"tenant": "acme"}))

				// reject: a request with any mismatch is refused whole, permanently.
				r := newPipeline(t, gatewayConfig(OnMismatchReject)).mustStart(t)
				err := sig.send(authedCtx("acme"), r, defaultAttribute, tc.claims)
				if tc.mismatched > 0 {
					require.Error(t, err)
					require.True(t, consumererror.IsPermanent(err), "a spoofed payload will never be accepted: %v", err)
					require.Empty(t, sig.got(r, defaultAttribute), "nothing of a rejected request goes on")
					require.Equal(t, int64(1), counter(t, r.tel, "otelcol_processor_tenant_refused_requests", map[string]string{"reason": "mismatch"}))
				} else {
					require.NoError(t, err)
					require.Equal(t, tc.override, sig.got(r, defaultAttribute))
				}
			})
		}
	}
}

func TestGatewayRefusesRequestsWithoutAuthenticatedTenant(t *testing.T) {
	contexts := map[string]context.Context{
		"no client info": context.Background(),
		"no auth data":   client.NewContext(context.Background(), client.Info{}),
		"no tenant":      client.NewContext(context.Background(), client.Info{Auth: testAuth{"subject": "x"}}),
		"bad tenant":     client.NewContext(context.Background(), client.Info{Auth: testAuth{"tenant": "../acme"}}),
		"tenant not str": client.NewContext(context.Background(), client.Info{Auth: testAuth{"tenant": 7}}),
	}
	for _, sig := range signals {
		for name, ctx := range contexts {
			t.Run(sig.name+"/"+name, func(t *testing.T) {
				p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
				err := sig.send(ctx, p, defaultAttribute, []any{"acme", noAttr{}})
				require.Error(t, err)
				require.True(t, consumererror.IsPermanent(err))
				require.Equal(t, codes.Unauthenticated, status.Code(err), "the receiver answers 401 / Unauthenticated")
				require.Empty(t, sig.got(p, defaultAttribute))
				require.Equal(t, int64(1), counter(t, p.tel, "otelcol_processor_tenant_refused_requests", map[string]string{"reason": "no_auth"}))
			})
		}
	}
}

func TestGatewayLogsMismatchesAtABoundedRate(t *testing.T) {
	p := newPipeline(t, gatewayConfig(OnMismatchOverride)).mustStart(t)
	long := "x" + string(make([]byte, 500))
	for i := 0; i < 100; i++ {
		require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), buildMetrics(defaultAttribute, []any{"globex", long})))
	}
	require.Equal(t, int64(200), counter(t, p.tel, "otelcol_processor_tenant_mismatched_resources", nil))
	entries := p.logsObs.FilterMessageSnippet("payload claimed another tenant").All()
	require.Len(t, entries, 1, "one log line per interval, however many spoofed requests")
	fields := entries[0].ContextMap()
	require.Equal(t, "acme", fields["tenant"])
	require.Equal(t, "vm-acme", fields["credential_id"])
	require.Equal(t, "globex", fields["claimed"])
}

func TestGatewaySetMetadata(t *testing.T) {
	cfg := gatewayConfig(OnMismatchOverride)
	cfg.SetMetadata = true
	for _, sig := range signals {
		t.Run(sig.name, func(t *testing.T) {
			p := newPipeline(t, cfg).mustStart(t)
			ctx := authedCtx("acme")
			info := client.FromContext(ctx)
			info.Metadata = client.NewMetadata(map[string][]string{"X-Other": {"kept"}, "tenant.id": {"globex"}})
			require.NoError(t, sig.send(client.NewContext(ctx, info), p, defaultAttribute, []any{"globex"}))
			ctxs := sig.ctxs(p)
			require.Len(t, ctxs, 1)
			md := client.FromContext(ctxs[0]).Metadata
			require.Equal(t, []string{"acme"}, md.Get("tenant.id"), "the header a client sent is replaced, never trusted")
			require.Equal(t, []string{"kept"}, md.Get("x-other"))
			require.Equal(t, "acme", client.FromContext(ctxs[0]).Auth.GetAttribute("tenant"))
		})
	}
}

func TestCustomAttribute(t *testing.T) {
	cfg := gatewayConfig(OnMismatchOverride)
	cfg.Attribute = "customer"
	p := newPipeline(t, cfg).mustStart(t)
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), buildMetrics("customer", []any{"globex", noAttr{}})))
	require.Equal(t, []any{"acme", "acme"}, signals[0].got(p, "customer"))
	require.Equal(t, []any{noAttr{}, noAttr{}}, signals[0].got(p, defaultAttribute))
}

// The tenant is on the processor's own metrics only with
// telemetry.per_tenant: off, a gateway's series do not grow with its
// tenants.
func TestOwnMetricsCarryTheTenantOnlyWhenAskedTo(t *testing.T) {
	for _, perTenant := range []bool{false, true} {
		cfg := gatewayConfig(OnMismatchOverride)
		cfg.Telemetry.PerTenant = perTenant
		p := newPipeline(t, cfg).mustStart(t)
		require.NoError(t, signals[0].send(authedCtx("acme"), p, defaultAttribute, []any{"globex"}))
		require.Equal(t, int64(1), counter(t, p.tel, "otelcol_processor_tenant_mismatched_resources", nil))
		tagged := counter(t, p.tel, "otelcol_processor_tenant_mismatched_resources", map[string]string{"tenant": "acme"})
		if perTenant {
			require.Equal(t, int64(1), tagged)
		} else {
			require.Zero(t, tagged, "no tenant attribute")
		}
	}
}
