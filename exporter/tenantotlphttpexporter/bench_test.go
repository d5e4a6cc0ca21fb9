package tenantotlphttpexporter

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otelcol-gpu/otelcol-gpu/exporter/tenantotlphttpexporter/internal/metadata"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/proc"
)

// countingSink is an OTLP/HTTP store that decodes each request to count its
// data points: the same work for both pipelines under comparison.
func countingSink(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var points atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		points.Add(int64(md.DataPointCount()))
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)
	return srv, &points
}

// agentRequests are agent-shaped requests (one resource, 340 points) for
// the given number of tenants, round robin.
func agentRequests(tenants int) []pmetric.Metrics {
	out := make([]pmetric.Metrics, tenants)
	for i := range out {
		out[i] = batch("t"+strconv.Itoa(i), 340)
	}
	return out
}

// pushAll sends b.N requests and waits until the sink has every point.
func pushAll(b *testing.B, next consumer.Metrics, reqs []pmetric.Metrics, points *atomic.Int64) {
	b.ReportAllocs()
	start := points.Load()
	b.ResetTimer()
	cpu0 := proc.SelfCPU()
	for i := 0; i < b.N; i++ {
		md := pmetric.NewMetrics()
		reqs[i%len(reqs)].CopyTo(md)
		for next.ConsumeMetrics(context.Background(), md) != nil {
			time.Sleep(time.Millisecond) // refused retryably: the queue is full, as an agent would
		}
	}
	want := start + int64(b.N)*340
	for points.Load() < want {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)*340/b.Elapsed().Seconds(), "points/s")
	// CPU of the whole process (producer, exporter, sink) per point: what
	// decides throughput on one pinned core, where wall time on two cores
	// rewards whichever pipeline uses the second core more.
	b.ReportMetric(float64((proc.SelfCPU()-cpu0).Nanoseconds())/(float64(b.N)*340), "cpu-ns/point")
}

// BenchmarkTenantExporter compares delivered throughput with the upstream
// otlp_http exporter behind the upstream batch processor, same data, same
// sink, no compression (so the exporters' own work is what differs).
func BenchmarkTenantExporter(b *testing.B) {
	for _, tenants := range []int{1, 1000} {
		reqs := agentRequests(tenants)
		b.Run(fmt.Sprintf("upstream_batch_otlphttp/tenants=%d", tenants), func(b *testing.B) {
			srv, points := countingSink(b)
			ef := otlphttpexporter.NewFactory()
			ecfg := ef.CreateDefaultConfig()
			require.NoError(b, confmap.NewFromStringMap(map[string]any{
				"metrics_endpoint": srv.URL + "/v1/metrics", "compression": "none",
			}).Unmarshal(ecfg))
			exp, err := ef.CreateMetrics(context.Background(), exportertest.NewNopSettings(ef.Type()), ecfg)
			require.NoError(b, err)
			bf := batchprocessor.NewFactory()
			bp, err := bf.CreateMetrics(context.Background(), processortest.NewNopSettings(bf.Type()), bf.CreateDefaultConfig(), exp)
			require.NoError(b, err)
			host := componenttest.NewNopHost()
			require.NoError(b, exp.Start(context.Background(), host))
			require.NoError(b, bp.Start(context.Background(), host))
			pushAll(b, bp, reqs, points)
			require.NoError(b, bp.Shutdown(context.Background()))
			require.NoError(b, exp.Shutdown(context.Background()))
		})
		b.Run(fmt.Sprintf("tenant_otlp_http/tenants=%d", tenants), func(b *testing.B) {
			srv, points := countingSink(b)
			cfg := createDefaultConfig().(*Config)
			cfg.MetricsEndpoint = srv.URL + "/t/{tenant}/v1/metrics"
			cfg.ClientConfig.Compression = "none"
			set := exportertest.NewNopSettings(metadata.Type)
			set.ID = component.NewIDWithName(metadata.Type, fmt.Sprintf("bench%d", idSeq.Add(1)))
			exp, err := NewFactory().CreateMetrics(context.Background(), set, cfg)
			require.NoError(b, err)
			require.NoError(b, exp.Start(context.Background(), componenttest.NewNopHost()))
			pushAll(b, exp, reqs, points)
			require.NoError(b, exp.Shutdown(context.Background()))
		})
	}
}
