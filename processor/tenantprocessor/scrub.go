package tenantprocessor

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// A store turns attribute names into label names: VictoriaMetrics and the
// Prometheus family replace what a label may not hold with '_', and a
// point's label wins over its resource's. So a data point attribute
// "tenant.id", "tenant_id" or "Tenant-ID" would become (or override) the
// tenant's label in the store. In gateway mode every attribute whose name
// normalises like the tenant attribute is removed below the resource, and
// on the resource every one but the authenticated attribute itself.

// likeName matches attribute names that normalise to the same label as the
// tenant attribute: letters lower-cased, anything but a letter or digit '_'.
type likeName string

func newLikeName(attr string) likeName {
	b := []byte(attr)
	for i, c := range b {
		b[i] = normalizeByte(c)
	}
	return likeName(b)
}

func normalizeByte(c byte) byte {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return c
	case c >= 'A' && c <= 'Z':
		return c + 'a' - 'A'
	default:
		return '_'
	}
}

// matches compares without allocating: it runs for every attribute of every
// data point the gateway forwards.
func (l likeName) matches(key string) bool {
	if len(key) != len(l) {
		return false
	}
	for i := 0; i < len(key); i++ {
		if normalizeByte(key[i]) != l[i] {
			return false
		}
	}
	return true
}

// scrubTally is what a scrub removed: every attribute, and how many of them
// named a tenant other than the authenticated one.
type scrubTally struct{ removed, claims int }

// remove drops the attributes like the tenant's from m, except keep.
func (l likeName) remove(m pcommon.Map, keep, tenant string, t *scrubTally) {
	m.RemoveIf(func(k string, v pcommon.Value) bool {
		if k == keep || !l.matches(k) {
			return false
		}
		t.removed++
		if v.Type() != pcommon.ValueTypeStr || v.Str() != tenant {
			t.claims++
		}
		return true
	})
}

// The per-signal walks below a resource: scopes and items, and for spans
// their events and links.

func scrubMetrics(rm pmetric.ResourceMetrics, l likeName, tenant string, t *scrubTally) {
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		sm := sms.At(i)
		l.remove(sm.Scope().Attributes(), "", tenant, t)
		ms := sm.Metrics()
		for j := 0; j < ms.Len(); j++ {
			scrubMetric(ms.At(j), l, tenant, t)
		}
	}
}

func scrubMetric(m pmetric.Metric, l likeName, tenant string, t *scrubTally) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		scrubEach(m.Gauge().DataPoints(), l, tenant, t)
	case pmetric.MetricTypeSum:
		scrubEach(m.Sum().DataPoints(), l, tenant, t)
	case pmetric.MetricTypeHistogram:
		scrubEach(m.Histogram().DataPoints(), l, tenant, t)
	case pmetric.MetricTypeExponentialHistogram:
		scrubEach(m.ExponentialHistogram().DataPoints(), l, tenant, t)
	case pmetric.MetricTypeSummary:
		scrubEach(m.Summary().DataPoints(), l, tenant, t)
	}
}

// scrubEach scrubs every element of a pdata slice (data points, records,
// spans, events, links).
func scrubEach[E interface{ Attributes() pcommon.Map }, S interface {
	Len() int
	At(int) E
}](s S, l likeName, tenant string, t *scrubTally) {
	for i := 0; i < s.Len(); i++ {
		l.remove(s.At(i).Attributes(), "", tenant, t)
	}
}

func scrubLogs(rl plog.ResourceLogs, l likeName, tenant string, t *scrubTally) {
	sls := rl.ScopeLogs()
	for i := 0; i < sls.Len(); i++ {
		sl := sls.At(i)
		l.remove(sl.Scope().Attributes(), "", tenant, t)
		scrubEach(sl.LogRecords(), l, tenant, t)
	}
}

func scrubTraces(rs ptrace.ResourceSpans, l likeName, tenant string, t *scrubTally) {
	sss := rs.ScopeSpans()
	for i := 0; i < sss.Len(); i++ {
		ss := sss.At(i)
		l.remove(ss.Scope().Attributes(), "", tenant, t)
		spans := ss.Spans()
		for j := 0; j < spans.Len(); j++ {
			sp := spans.At(j)
			l.remove(sp.Attributes(), "", tenant, t)
			scrubEach(sp.Events(), l, tenant, t)
			scrubEach(sp.Links(), l, tenant, t)
		}
	}
}
