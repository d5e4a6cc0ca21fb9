package tenantprocessor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clock is the gateway's "now" in these tests.
var clock = time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)

func at(d time.Duration) pcommon.Timestamp { return pcommon.NewTimestampFromTime(clock.Add(d)) }

// Points at these offsets from the clock, against the default window
// (max_age 23h, max_future 5m, both ends included).
var (
	inWindowOffsets = []time.Duration{0, -time.Hour, -defaultMaxAge, -defaultMaxAge + 1, defaultMaxFuture, defaultMaxFuture - 1, -time.Second}
	tooOldOffsets   = []time.Duration{-defaultMaxAge - 1, -defaultMaxAge - time.Second, -48 * time.Hour, -365 * 24 * time.Hour}
	tooNewOffsets   = []time.Duration{defaultMaxFuture + 1, defaultMaxFuture + time.Second, 24 * time.Hour}
)

// pointSetters append one point of each type to a new metric of that type.
var pointTypes = map[string]func(ms pmetric.MetricSlice, ts []pcommon.Timestamp){
	"gauge": func(ms pmetric.MetricSlice, ts []pcommon.Timestamp) {
		dps := named(ms, "gauge").SetEmptyGauge().DataPoints()
		for _, t := range ts {
			dps.AppendEmpty().SetTimestamp(t)
		}
	},
	"sum": func(ms pmetric.MetricSlice, ts []pcommon.Timestamp) {
		dps := named(ms, "sum").SetEmptySum().DataPoints()
		for _, t := range ts {
			dps.AppendEmpty().SetTimestamp(t)
		}
	},
	"histogram": func(ms pmetric.MetricSlice, ts []pcommon.Timestamp) {
		dps := named(ms, "histogram").SetEmptyHistogram().DataPoints()
		for _, t := range ts {
			dps.AppendEmpty().SetTimestamp(t)
		}
	},
	"exponential_histogram": func(ms pmetric.MetricSlice, ts []pcommon.Timestamp) {
		dps := named(ms, "exponential_histogram").SetEmptyExponentialHistogram().DataPoints()
		for _, t := range ts {
			dps.AppendEmpty().SetTimestamp(t)
		}
	},
	"summary": func(ms pmetric.MetricSlice, ts []pcommon.Timestamp) {
		dps := named(ms, "summary").SetEmptySummary().DataPoints()
		for _, t := range ts {
			dps.AppendEmpty().SetTimestamp(t)
		}
	},
}

func named(ms pmetric.MetricSlice, name string) pmetric.Metric {
	m := ms.AppendEmpty()
	m.SetName(name)
	return m
}

func stamps(ds ...time.Duration) []pcommon.Timestamp {
	out := make([]pcommon.Timestamp, len(ds))
	for i, d := range ds {
		out[i] = at(d)
	}
	return out
}

// timestampsOut lists every point timestamp that reached the sink, as an
// offset from the clock.
func timestampsOut(p *pipeline) []time.Duration {
	var out []time.Duration
	for _, md := range p.mSink.AllMetrics() {
		eachPoint(md, func(dp timedPoint) { out = append(out, dp.Timestamp().AsTime().Sub(clock)) })
	}
	return out
}

func windowPipeline(t *testing.T, cfg *Config) *pipeline {
	return newPipeline(t, cfg).mustStart(t).setClock(t, clock)
}

func TestWindowKeepsItsEdgesAndRefusesBeyond(t *testing.T) {
	for name, tc := range map[string]struct {
		offsets []time.Duration
		reason  string
	}{"in": {inWindowOffsets, ""}, "too old": {tooOldOffsets, "too_old"}, "too new": {tooNewOffsets, "too_new"}} {
		for _, d := range tc.offsets {
			t.Run(name+"/"+d.String(), func(t *testing.T) {
				p := windowPipeline(t, gatewayConfig(OnMismatchOverride))
				md := pmetric.NewMetrics()
				ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
				pointTypes["gauge"](ms, stamps(d))
				pointTypes["sum"](ms, stamps(0)) // one point always in, so the request itself goes on
				require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), md))
				if tc.reason == "" {
					require.ElementsMatch(t, []time.Duration{d, 0}, timestampsOut(p))
					require.Zero(t, counter(t, p.tel, "otelcol_processor_tenant_refused_points", nil))
					return
				}
				require.Equal(t, []time.Duration{0}, timestampsOut(p))
				require.Equal(t, int64(1), counter(t, p.tel, "otelcol_processor_tenant_refused_points", map[string]string{"reason": tc.reason}))
			})
		}
	}
}

// A point without a timestamp is refused as too old: VictoriaMetrics stores
// it at the epoch, where its retention drops it, not at its receive time.
func TestWindowRefusesPointsWithoutTimestamp(t *testing.T) {
	p := windowPipeline(t, gatewayConfig(OnMismatchOverride))
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	pointTypes["gauge"](ms, []pcommon.Timestamp{0, at(0)})
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), md))
	require.Equal(t, []time.Duration{0}, timestampsOut(p))
	require.Equal(t, int64(1), counter(t, p.tel, "otelcol_processor_tenant_refused_points", map[string]string{"reason": "too_old"}))
}

// Every point type is filtered; a mixed request keeps exactly the points in
// the window, and the metrics, scopes and resources left without points go.
func TestWindowFiltersEveryPointTypeAndKeepsTheRest(t *testing.T) {
	md := pmetric.NewMetrics()
	// Resource 0: every type, each with in, old and new points.
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for _, add := range pointTypes {
		add(ms, stamps(-time.Hour, -30*time.Hour, time.Hour, 0))
	}
	// Resource 1: a scope of out-of-window metrics only, beside a scope
	// with one good metric and one emptied.
	rm1 := md.ResourceMetrics().AppendEmpty()
	for _, add := range pointTypes {
		add(rm1.ScopeMetrics().AppendEmpty().Metrics(), stamps(-30*time.Hour))
	}
	mixed := rm1.ScopeMetrics().AppendEmpty().Metrics()
	pointTypes["sum"](mixed, stamps(-time.Minute))
	pointTypes["gauge"](mixed, stamps(time.Hour))
	// Resource 2: nothing in the window; it goes.
	pointTypes["summary"](md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics(), stamps(time.Hour, -time.Hour*24))
	// Resource 3: no metrics at all, as sent; it stays.
	md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()

	p := windowPipeline(t, gatewayConfig(OnMismatchOverride))
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), md))
	require.Len(t, p.mSink.AllMetrics(), 1)
	out := p.mSink.AllMetrics()[0]
	require.Equal(t, 3, out.ResourceMetrics().Len(), "the resource left without points is removed")

	got0 := out.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	require.Equal(t, len(pointTypes), got0.Len(), "every type keeps its in-window points")
	for _, m := range got0.All() {
		require.Equal(t, 2, pointsOf(m), m.Name())
	}
	got1 := out.ResourceMetrics().At(1).ScopeMetrics()
	require.Equal(t, 1, got1.Len(), "the scopes left without metrics are removed")
	require.Equal(t, 1, got1.At(0).Metrics().Len())
	require.Equal(t, "sum", got1.At(0).Metrics().At(0).Name())
	require.Equal(t, 1, out.ResourceMetrics().At(2).ScopeMetrics().Len(), "what was empty as sent is left alone")
	require.Equal(t, 0, out.ResourceMetrics().At(2).ScopeMetrics().At(0).Metrics().Len())
	require.Equal(t, 2*len(pointTypes)+1, out.DataPointCount())

	require.Equal(t, int64(len(pointTypes)+len(pointTypes)+1), counter(t, p.tel, "otelcol_processor_tenant_refused_points", map[string]string{"reason": "too_old"}))
	require.Equal(t, int64(len(pointTypes)+1+1), counter(t, p.tel, "otelcol_processor_tenant_refused_points", map[string]string{"reason": "too_new"}))
	for _, sig := range []string{"incoming_items", "outgoing_items"} {
		require.Positive(t, counter(t, p.tel, "otelcol_processor_"+sig, map[string]string{"otel.signal": "metrics"}))
	}
	require.Equal(t, int64(out.DataPointCount()), counter(t, p.tel, "otelcol_processor_outgoing_items", map[string]string{"otel.signal": "metrics"}),
		"what leaves the processor is what the store gets")
}

func pointsOf(m pmetric.Metric) int {
	md := pmetric.NewMetrics()
	m.CopyTo(md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty())
	return md.DataPointCount()
}

func TestWindowRefusesARequestWithNothingInIt(t *testing.T) {
	for name, offsets := range map[string][]time.Duration{
		"too old":  {-30 * time.Hour, -25 * time.Hour},
		"too new":  {time.Hour, 24 * time.Hour},
		"both":     {-30 * time.Hour, time.Hour},
		"no stamp": {-time.Duration(clock.UnixNano()), -time.Duration(clock.UnixNano())},
	} {
		for typ, add := range pointTypes {
			t.Run(name+"/"+typ, func(t *testing.T) {
				p := windowPipeline(t, gatewayConfig(OnMismatchOverride))
				md := pmetric.NewMetrics()
				add(md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics(), stamps(offsets...))
				err := p.metrics.ConsumeMetrics(authedCtx("acme"), md)
				require.True(t, consumererror.IsPermanent(err), "a retry cannot succeed: %v", err)
				require.Equal(t, codes.InvalidArgument, status.Code(err))
				require.ErrorContains(t, err, "all 2", "the count")
				require.ErrorContains(t, err, "at most 23h0m0s old and 5m0s ahead of the gateway's clock")
				require.Empty(t, p.mSink.AllMetrics())
				require.Equal(t, int64(1), counter(t, p.tel, "otelcol_processor_tenant_refused_requests", map[string]string{"reason": "out_of_window"}))
				require.Equal(t, int64(2), counter(t, p.tel, "otelcol_processor_tenant_refused_points", nil))
			})
		}
	}
}

func TestWindowLeavesRequestsWithoutPointsAlone(t *testing.T) {
	p := windowPipeline(t, gatewayConfig(OnMismatchOverride))
	md := pmetric.NewMetrics()
	md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge()
	require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), md))
	require.Len(t, p.mSink.AllMetrics(), 1)
}

func TestWindowSidesTurnOff(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  TimestampsConfig
		kept []time.Duration
	}{
		"max_age 0":    {TimestampsConfig{MaxFuture: defaultMaxFuture}, []time.Duration{-48 * time.Hour, -time.Duration(clock.UnixNano()), 0}},
		"max_future 0": {TimestampsConfig{MaxAge: defaultMaxAge}, []time.Duration{0, 48 * time.Hour}},
		"both 0":       {TimestampsConfig{}, []time.Duration{-48 * time.Hour, -time.Duration(clock.UnixNano()), 0, 48 * time.Hour}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := gatewayConfig(OnMismatchOverride)
			cfg.Timestamps = tc.cfg
			p := windowPipeline(t, cfg)
			md := pmetric.NewMetrics()
			pointTypes["gauge"](md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics(),
				stamps(-48*time.Hour, -time.Duration(clock.UnixNano()), 0, 48*time.Hour))
			require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), md))
			require.Equal(t, tc.kept, timestampsOut(p))
		})
	}
}

func TestWindowLogsAtABoundedRate(t *testing.T) {
	p := windowPipeline(t, gatewayConfig(OnMismatchOverride))
	for i := 0; i < 20; i++ {
		md := pmetric.NewMetrics()
		pointTypes["gauge"](md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics(),
			stamps(-30*time.Hour, -25*time.Hour, 0, time.Hour))
		require.NoError(t, p.metrics.ConsumeMetrics(authedCtx("acme"), md))
	}
	require.Equal(t, int64(40), counter(t, p.tel, "otelcol_processor_tenant_refused_points", map[string]string{"reason": "too_old"}))
	require.Equal(t, int64(20), counter(t, p.tel, "otelcol_processor_tenant_refused_points", map[string]string{"reason": "too_new"}))
	entries := p.logsObs.FilterMessageSnippet("outside the timestamp window").All()
	require.Len(t, entries, 1)
	f := entries[0].ContextMap()
	require.Equal(t, "acme", f["tenant"])
	require.Equal(t, "vm-acme", f["credential_id"])
	require.Equal(t, int64(3), f["refused"])
	require.Equal(t, clock.Add(-30*time.Hour), f["oldest"].(time.Time).UTC())
	require.Equal(t, clock.Add(time.Hour), f["newest"].(time.Time).UTC())
	require.Equal(t, clock.Add(-defaultMaxAge), f["window_start"].(time.Time).UTC())
	require.Equal(t, clock.Add(defaultMaxFuture), f["window_end"].(time.Time).UTC())
}

// Logs and traces have no window: an XID record is an event, whenever the
// agent could send it.
func TestWindowIsForMetricsOnly(t *testing.T) {
	p := windowPipeline(t, gatewayConfig(OnMismatchOverride))
	ld := plog.NewLogs()
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().SetTimestamp(at(-48 * time.Hour))
	require.NoError(t, p.logs.ConsumeLogs(authedCtx("acme"), ld))
	require.Equal(t, 1, p.lSink.LogRecordCount())
}
