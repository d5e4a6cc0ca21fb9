package tenantotlphttpexporter

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/otelcol-gpu/otelcol-gpu/internal/tenantid"
)

type signal int

const (
	sigMetrics signal = iota
	sigLogs
	sigTraces
	numSignals
)

func (s signal) String() string { return [...]string{"metrics", "logs", "traces"}[s] }

// part is one tenant's share of a request, encoded as OTLP protobuf. Export
// requests of one signal concatenate into a valid request (their only field
// is repeated), which is how parts are batched without re-encoding.
type part struct {
	tenant string
	data   []byte
	items  int
}

// split groups a request's resources by tenant. The common gateway case, one
// tenant per request, encodes the request as it is, without copying.
// untagged counts the items of resources without a valid tenant, which are
// left out.
type splitResult struct {
	parts    []part
	untagged int
}

func tenantOf(res pcommon.Resource, attr string) (string, bool) {
	v, ok := res.Attributes().Get(attr)
	if !ok || v.Type() != pcommon.ValueTypeStr || tenantid.Validate(v.Str()) != nil {
		return "", false
	}
	return v.Str(), true
}

// whole is the request as one tenant's part, encoded as it is.
func whole[T any, R any](sp splitter[T, R], data T, tenant string) (splitResult, error) {
	n := sp.resources(data)
	if n == 0 {
		return splitResult{}, nil
	}
	b, err := sp.marshal(data)
	if err != nil {
		return splitResult{}, err
	}
	items := 0
	for i := 0; i < n; i++ {
		items += sp.items(sp.resource(data, i))
	}
	return splitResult{parts: []part{{tenant: tenant, data: b, items: items}}}, nil
}

// splitter is what split needs of one signal's pdata.
type splitter[T any, R any] struct {
	resources func(T) int
	resource  func(T, int) R
	res       func(R) pcommon.Resource
	items     func(R) int
	empty     func() T
	appendTo  func(R, T)
	marshal   func(T) ([]byte, error)
	// drop lets go of the request's data once it is encoded (the
	// exporter mutates data): the pipeline's callers still hold the
	// request while its parts wait for the queue log's sync.
	drop func(T)
}

func splitGeneric[T any, R any](sp splitter[T, R], data T, attr string) (splitResult, error) {
	var out splitResult
	n := sp.resources(data)
	first, same := "", true
	for i := 0; i < n; i++ {
		t, ok := tenantOf(sp.res(sp.resource(data, i)), attr)
		if !ok || (i > 0 && t != first) {
			same = false
			break
		}
		first = t
	}
	if n > 0 && same {
		return whole(sp, data, first)
	}
	groups := map[string]T{}
	counts := map[string]int{}
	var order []string
	for i := 0; i < n; i++ {
		r := sp.resource(data, i)
		t, ok := tenantOf(sp.res(r), attr)
		if !ok {
			out.untagged += sp.items(r)
			continue
		}
		g, seen := groups[t]
		if !seen {
			g = sp.empty()
			groups[t] = g
			order = append(order, t)
		}
		sp.appendTo(r, g)
		counts[t] += sp.items(r)
	}
	for _, t := range order {
		b, err := sp.marshal(groups[t])
		if err != nil {
			return out, err
		}
		out.parts = append(out.parts, part{tenant: t, data: b, items: counts[t]})
	}
	return out, nil
}

var metricsSplitter = splitter[pmetric.Metrics, pmetric.ResourceMetrics]{
	resources: func(md pmetric.Metrics) int { return md.ResourceMetrics().Len() },
	resource:  func(md pmetric.Metrics, i int) pmetric.ResourceMetrics { return md.ResourceMetrics().At(i) },
	res:       pmetric.ResourceMetrics.Resource,
	items: func(rm pmetric.ResourceMetrics) int {
		n := 0
		sms := rm.ScopeMetrics()
		for i := 0; i < sms.Len(); i++ {
			ms := sms.At(i).Metrics()
			for j := 0; j < ms.Len(); j++ {
				n += dataPoints(ms.At(j))
			}
		}
		return n
	},
	empty:    pmetric.NewMetrics,
	appendTo: func(rm pmetric.ResourceMetrics, md pmetric.Metrics) { rm.CopyTo(md.ResourceMetrics().AppendEmpty()) },
	marshal:  (&pmetric.ProtoMarshaler{}).MarshalMetrics,
	drop:     func(md pmetric.Metrics) { md.ResourceMetrics().MoveAndAppendTo(pmetric.NewResourceMetricsSlice()) },
}

func dataPoints(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeHistogram:
		return m.Histogram().DataPoints().Len()
	case pmetric.MetricTypeExponentialHistogram:
		return m.ExponentialHistogram().DataPoints().Len()
	case pmetric.MetricTypeSummary:
		return m.Summary().DataPoints().Len()
	default:
		return 0
	}
}

var logsSplitter = splitter[plog.Logs, plog.ResourceLogs]{
	resources: func(ld plog.Logs) int { return ld.ResourceLogs().Len() },
	resource:  func(ld plog.Logs, i int) plog.ResourceLogs { return ld.ResourceLogs().At(i) },
	res:       plog.ResourceLogs.Resource,
	items: func(rl plog.ResourceLogs) int {
		n := 0
		for i := 0; i < rl.ScopeLogs().Len(); i++ {
			n += rl.ScopeLogs().At(i).LogRecords().Len()
		}
		return n
	},
	empty:    plog.NewLogs,
	appendTo: func(rl plog.ResourceLogs, ld plog.Logs) { rl.CopyTo(ld.ResourceLogs().AppendEmpty()) },
	marshal:  (&plog.ProtoMarshaler{}).MarshalLogs,
	drop:     func(ld plog.Logs) { ld.ResourceLogs().MoveAndAppendTo(plog.NewResourceLogsSlice()) },
}

var tracesSplitter = splitter[ptrace.Traces, ptrace.ResourceSpans]{
	resources: func(td ptrace.Traces) int { return td.ResourceSpans().Len() },
	resource:  func(td ptrace.Traces, i int) ptrace.ResourceSpans { return td.ResourceSpans().At(i) },
	res:       ptrace.ResourceSpans.Resource,
	items: func(rs ptrace.ResourceSpans) int {
		n := 0
		for i := 0; i < rs.ScopeSpans().Len(); i++ {
			n += rs.ScopeSpans().At(i).Spans().Len()
		}
		return n
	},
	empty:    ptrace.NewTraces,
	appendTo: func(rs ptrace.ResourceSpans, td ptrace.Traces) { rs.CopyTo(td.ResourceSpans().AppendEmpty()) },
	marshal:  (&ptrace.ProtoMarshaler{}).MarshalTraces,
	drop:     func(td ptrace.Traces) { td.ResourceSpans().MoveAndAppendTo(ptrace.NewResourceSpansSlice()) },
}
