package tenantprocessor

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otelcol-gpu/otelcol-gpu/processor/tenantprocessor/internal/metadata"
)

// agentBatch is shaped like one agent request: one resource with 8 host,
// cloud and tenant attributes, 8 GPUs x 30 series plus 100 host series.
func agentBatch() pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	attrs := rm.Resource().Attributes()
	for k, v := range map[string]string{
		"host.name": "vm-1234", "host.id": "b3c1e0f2", "os.type": "linux", "cloud.provider": "gpucloud",
		"cloud.region": "eu-west-1", "cloud.instance.id": "i-0abc", "host.type": "gpu-h100x8", "tenant.id": "globex",
	} {
		attrs.PutStr(k, v)
	}
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for s := 0; s < 30; s++ {
		g := ms.AppendEmpty()
		g.SetName(fmt.Sprintf("gpu.metric.%d", s))
		dps := g.SetEmptyGauge().DataPoints()
		for gpu := 0; gpu < 8; gpu++ {
			dp := dps.AppendEmpty()
			dp.Attributes().PutStr("hw.id", fmt.Sprintf("GPU-%08d", gpu))
			dp.Attributes().PutStr("hw.name", fmt.Sprintf("nvidia%d", gpu))
			dp.SetDoubleValue(float64(gpu))
		}
	}
	for h := 0; h < 100; h++ {
		g := ms.AppendEmpty()
		g.SetName(fmt.Sprintf("system.metric.%d", h))
		g.SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(int64(h))
	}
	return stampNow(md)
}

// BenchmarkGatewayProcessor compares decoding an agent request and handing
// it on with and without the gateway-mode processor (ns per data point are
// in the ns/op divided by 340).
func BenchmarkGatewayProcessor(b *testing.B) {
	payload, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(agentBatch())
	require.NoError(b, err)
	ctx := authedCtx("acme")
	run := func(b *testing.B, next consumer.Metrics) {
		b.ReportAllocs()
		for b.Loop() {
			md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(payload)
			if err != nil {
				b.Fatal(err)
			}
			if err := next.ConsumeMetrics(ctx, md); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/340, "ns/datapoint")
	}
	// The VM identity, reserved names and the timestamp window off: what
	// the defaults add is tenant_only minus this.
	rulesOff := gatewayConfig(OnMismatchOverride)
	rulesOff.VMAttribute, rulesOff.ReservedPrefixes, rulesOff.Timestamps = "", nil, TimestampsConfig{}
	tenantOnly := func(cfg *Config) func(b *testing.B) {
		return func(b *testing.B) {
			proc := benchProcessor(b, cfg)
			md := agentBatch()
			b.ReportAllocs()
			for b.Loop() {
				if err := proc.ConsumeMetrics(ctx, md); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("decode_only", func(b *testing.B) { run(b, consumertest.NewNop()) })
	b.Run("tenant_only", tenantOnly(gatewayConfig(OnMismatchOverride)))
	b.Run("tenant_only_rules_off", tenantOnly(rulesOff))
	b.Run("decode_and_tenant", func(b *testing.B) {
		run(b, benchProcessor(b, gatewayConfig(OnMismatchOverride)))
	})
}

// benchProcessor is a started gateway-mode processor in front of a nop consumer.
func benchProcessor(b *testing.B, cfg *Config) consumer.Metrics {
	set := processortest.NewNopSettings(metadata.Type)
	set.ID = component.NewIDWithName(metadata.Type, b.Name())
	proc, err := NewFactory().CreateMetrics(context.Background(), set, cfg, consumertest.NewNop())
	require.NoError(b, err)
	require.NoError(b, proc.Start(context.Background(), componenttest.NewNopHost()))
	b.Cleanup(func() { require.NoError(b, proc.Shutdown(context.Background())) })
	return proc
}
