package tenantprocessor

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
	"github.com/otelcol-gpu/otelcol-gpu/internal/testkit/telemetrytest"
	"github.com/otelcol-gpu/otelcol-gpu/processor/tenantprocessor/internal/metadata"
)

// noAttr marks a resource that carries no tenant attribute at all.
type noAttr struct{}

// pipeline is one configured tenant processor id in all three signals.
type pipeline struct {
	metrics processor.Metrics
	logs    processor.Logs
	traces  processor.Traces
	mSink   *consumertest.MetricsSink
	lSink   *consumertest.LogsSink
	tSink   *consumertest.TracesSink
	logsObs *observer.ObservedLogs
	tel     *componenttest.Telemetry
	id      component.ID
}

var idSeq atomic.Int64

// newPipeline creates (not starts) the three processors under a fresh id.
func newPipeline(t testing.TB, cfg *Config) *pipeline {
	t.Helper()
	require.NoError(t, cfg.Validate())
	core, obs := observer.New(zap.DebugLevel)
	p := &pipeline{
		mSink: new(consumertest.MetricsSink), lSink: new(consumertest.LogsSink), tSink: new(consumertest.TracesSink),
		logsObs: obs, tel: componenttest.NewTelemetry(),
	}
	t.Cleanup(func() { require.NoError(t, p.tel.Shutdown(context.Background())) })
	set := processortest.NewNopSettings(metadata.Type)
	set.ID = component.NewIDWithName(metadata.Type, fmt.Sprintf("t%d", idSeq.Add(1)))
	p.id = set.ID
	set.TelemetrySettings = p.tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	f := NewFactory()
	var err error
	p.metrics, err = f.CreateMetrics(context.Background(), set, cfg, p.mSink)
	require.NoError(t, err)
	p.logs, err = f.CreateLogs(context.Background(), set, cfg, p.lSink)
	require.NoError(t, err)
	p.traces, err = f.CreateTraces(context.Background(), set, cfg, p.tSink)
	require.NoError(t, err)
	return p
}

func (p *pipeline) start(t testing.TB) error {
	t.Helper()
	var firstErr error
	for _, c := range []component.Component{p.metrics, p.logs, p.traces} {
		if err := c.Start(context.Background(), componenttest.NewNopHost()); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	t.Cleanup(func() {
		for _, c := range []component.Component{p.metrics, p.logs, p.traces} {
			require.NoError(t, c.Shutdown(context.Background()))
		}
	})
	return firstErr
}

func (p *pipeline) mustStart(t testing.TB) *pipeline {
	t.Helper()
	require.NoError(t, p.start(t))
	return p
}

// setClock makes the pipeline's processor measure the timestamp window
// against now instead of the wall clock.
func (p *pipeline) setClock(t testing.TB, now time.Time) *pipeline {
	t.Helper()
	c, err := processors.LoadOrStore(p.id, func() (*tenantProcessor, error) { return nil, errors.New("the pipeline's processor is gone") })
	require.NoError(t, err)
	c.Unwrap.now = func() time.Time { return now }
	return p
}

// stampNow sets every data point's timestamp to the wall clock: the
// processor's default clock accepts it.
func stampNow(md pmetric.Metrics) pmetric.Metrics {
	ts := pcommon.NewTimestampFromTime(time.Now())
	eachPoint(md, func(p timedPoint) { p.SetTimestamp(ts) })
	return md
}

type timedPoint interface {
	Timestamp() pcommon.Timestamp
	SetTimestamp(pcommon.Timestamp)
}

// eachPoint calls f with every data point of md, of every type.
func eachPoint(md pmetric.Metrics, f func(timedPoint)) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					for _, dp := range m.Gauge().DataPoints().All() {
						f(dp)
					}
				case pmetric.MetricTypeSum:
					for _, dp := range m.Sum().DataPoints().All() {
						f(dp)
					}
				case pmetric.MetricTypeHistogram:
					for _, dp := range m.Histogram().DataPoints().All() {
						f(dp)
					}
				case pmetric.MetricTypeExponentialHistogram:
					for _, dp := range m.ExponentialHistogram().DataPoints().All() {
						f(dp)
					}
				case pmetric.MetricTypeSummary:
					for _, dp := range m.Summary().DataPoints().All() {
						f(dp)
					}
				}
			}
		}
	}
}

func putClaim(attrs pcommon.Map, attr string, claim any) {
	switch c := claim.(type) {
	case noAttr:
	case string:
		attrs.PutStr(attr, c)
	case int:
		attrs.PutInt(attr, int64(c))
	default:
		panic(fmt.Sprintf("claim %T", claim))
	}
	attrs.PutStr("host.name", "vm-1")
}

func buildMetrics(attr string, claims []any) pmetric.Metrics {
	md := pmetric.NewMetrics()
	for _, c := range claims {
		rm := md.ResourceMetrics().AppendEmpty()
		putClaim(rm.Resource().Attributes(), attr, c)
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("hw.gpu.utilization")
		m.SetEmptyGauge().DataPoints().AppendEmpty().SetDoubleValue(0.5)
	}
	return stampNow(md)
}

func buildLogs(attr string, claims []any) plog.Logs {
	ld := plog.NewLogs()
	for _, c := range claims {
		rl := ld.ResourceLogs().AppendEmpty()
		putClaim(rl.Resource().Attributes(), attr, c)
		rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("xid 79")
	}
	return ld
}

func buildTraces(attr string, claims []any) ptrace.Traces {
	td := ptrace.NewTraces()
	for _, c := range claims {
		rs := td.ResourceSpans().AppendEmpty()
		putClaim(rs.Resource().Attributes(), attr, c)
		rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("train-step")
	}
	return td
}

// signal runs one request through one signal's processor and reads back the
// tenant attribute of every resource that reached the sink.
type signal struct {
	name string
	send func(ctx context.Context, p *pipeline, attr string, claims []any) error
	got  func(p *pipeline, attr string) []any
	ctxs func(p *pipeline) []context.Context
}

func tenantsOf(n int, res func(i int) pcommon.Resource, attr string) []any {
	out := make([]any, 0, n)
	for i := 0; i < n; i++ {
		if v, ok := res(i).Attributes().Get(attr); ok {
			out = append(out, v.AsRaw())
		} else {
			out = append(out, noAttr{})
		}
	}
	return out
}

var signals = []signal{
	{
		name: "metrics",
		send: func(ctx context.Context, p *pipeline, attr string, claims []any) error {
			return p.metrics.ConsumeMetrics(ctx, buildMetrics(attr, claims))
		},
		got: func(p *pipeline, attr string) []any {
			var out []any
			for _, md := range p.mSink.AllMetrics() {
				rms := md.ResourceMetrics()
				out = append(out, tenantsOf(rms.Len(), func(i int) pcommon.Resource { return rms.At(i).Resource() }, attr)...)
			}
			return out
		},
		ctxs: func(p *pipeline) []context.Context { return p.mSink.Contexts() },
	},
	{
		name: "logs",
		send: func(ctx context.Context, p *pipeline, attr string, claims []any) error {
			return p.logs.ConsumeLogs(ctx, buildLogs(attr, claims))
		},
		got: func(p *pipeline, attr string) []any {
			var out []any
			for _, ld := range p.lSink.AllLogs() {
				rls := ld.ResourceLogs()
				out = append(out, tenantsOf(rls.Len(), func(i int) pcommon.Resource { return rls.At(i).Resource() }, attr)...)
			}
			return out
		},
		ctxs: func(p *pipeline) []context.Context { return p.lSink.Contexts() },
	},
	{
		name: "traces",
		send: func(ctx context.Context, p *pipeline, attr string, claims []any) error {
			return p.traces.ConsumeTraces(ctx, buildTraces(attr, claims))
		},
		got: func(p *pipeline, attr string) []any {
			var out []any
			for _, td := range p.tSink.AllTraces() {
				rss := td.ResourceSpans()
				out = append(out, tenantsOf(rss.Len(), func(i int) pcommon.Resource { return rss.At(i).Resource() }, attr)...)
			}
			return out
		},
		ctxs: func(p *pipeline) []context.Context { return p.tSink.Contexts() },
	},
}

// testAuth is what tenant_auth puts into client.Info.Auth.
type testAuth map[string]any

func (a testAuth) GetAttribute(name string) any { return a[name] }
func (a testAuth) GetAttributeNames() []string {
	names := make([]string, 0, len(a))
	for k := range a {
		names = append(names, k)
	}
	return names
}

// authedCtx is a request of tenant's VM i-<tenant>, with credential vm-<tenant>.
func authedCtx(tenant string) context.Context {
	return client.NewContext(context.Background(), client.Info{
		Auth: testAuth{
			tenantid.AuthAttributeTenant: tenant, tenantid.AuthAttributeCredential: "vm-" + tenant,
			tenantid.AuthAttributeInstance: "i-" + tenant,
		},
	})
}

// counter sums a counter's data points whose attributes include want.
func counter(t *testing.T, tel *componenttest.Telemetry, name string, want map[string]string) int64 {
	t.Helper()
	return telemetrytest.Int64(tel, name, want)
}
