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
// tenant's label in the store, and one named like the VM attribute
// ("host.id", "host_id") would move points to another VM, or many VMs
// into one, for the meters that count VMs and GPUs. In gateway mode every
// attribute whose name normalises like the tenant attribute or the VM
// attribute is removed below the resource, and on the resource every one
// but the authenticated attributes themselves. So is every attribute
// named like __name__ (the store takes the last __name__ label as the
// metric's name: a point could rename itself past the reserved prefix and
// the meters), and every map-valued attribute that the store would flatten
// into such a name (VictoriaMetrics writes {"host": {"id": "x"}} as the
// label host.id="x").

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

// lookalikes are the names the gateway owns: the tenant attribute and the
// VM attribute, exactly and as the store would see them.
type lookalikes struct {
	tenantAttr string
	tenant     likeName
	vmAttr     string
	vm         likeName // empty: vm_attribute is off
	name       likeName // __name__, the metric name label
	// lengths has bit n set when a name above is n bytes long (n < 64):
	// most keys are told apart by their length alone, in one test.
	lengths uint64
}

func newLookalikes(cfg *Config) *lookalikes {
	l := &lookalikes{tenantAttr: cfg.Attribute, tenant: newLikeName(cfg.Attribute), vmAttr: cfg.VMAttribute, name: newLikeName(metricNameLabel)}
	if cfg.VMAttribute != "" {
		l.vm = newLikeName(cfg.VMAttribute)
	}
	for _, n := range []likeName{l.tenant, l.vm, l.name} {
		if n != "" {
			l.lengths |= lengthBit(len(n))
		}
	}
	return l
}

// metricNameLabel is the label the store keeps a metric's name in.
const metricNameLabel = "__name__"

// lengthBit is n's bit in lookalikes.lengths; names of 64 bytes or more
// all share the top one.
func lengthBit(n int) uint64 { return 1 << min(n, 63) }

// scrubTally is what a scrub removed: every attribute, and how many of them
// named a tenant other than the authenticated one; for metrics also what
// the metric rules found on the same walk.
type scrubTally struct {
	removed, claims int
	metrics         metricChecks
}

// remove drops the look-alikes from m; on a resource it keeps the two
// attributes themselves (the gateway overwrites them).
func (l *lookalikes) remove(m pcommon.Map, onResource bool, tenant string, t *scrubTally) {
	m.RemoveIf(func(k string, v pcommon.Value) bool {
		if v.Type() == pcommon.ValueTypeMap && l.flattensLike(k, v.Map()) {
			t.removed++
			return true
		}
		if l.lengths&lengthBit(len(k)) == 0 {
			return false
		}
		switch {
		case l.name.matches(k):
			t.removed++
			return true
		case l.tenant.matches(k):
			if onResource && k == l.tenantAttr {
				return false
			}
			t.removed++
			if v.Type() != pcommon.ValueTypeStr || v.Str() != tenant {
				t.claims++
			}
			return true
		case l.vm != "" && l.vm.matches(k):
			if onResource && k == l.vmAttr {
				return false
			}
			t.removed++
			return true
		}
		return false
	})
}

// flattensLike tells whether the store would turn the map attribute named
// prefix into a label named like one the gateway owns: each entry is
// written as prefix.key, nested maps the same way down.
func (l *lookalikes) flattensLike(prefix string, m pcommon.Map) bool {
	found := false
	m.Range(func(k string, v pcommon.Value) bool {
		name := prefix + "." + k
		if v.Type() == pcommon.ValueTypeMap {
			found = l.flattensLike(name, v.Map())
		} else {
			found = l.name.matches(name) || l.tenant.matches(name) || (l.vm != "" && l.vm.matches(name))
		}
		return !found
	})
	return found
}

// The per-signal walks below a resource: scopes and items, and for spans
// their events and links.

func scrubMetrics(rm pmetric.ResourceMetrics, l *lookalikes, tenant string, t *scrubTally) {
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		sm := sms.At(i)
		l.remove(sm.Scope().Attributes(), false, tenant, t)
		ms := sm.Metrics()
		for j := 0; j < ms.Len(); j++ {
			m := ms.At(j)
			t.metrics.name(m)
			scrubMetric(m, l, tenant, t)
		}
	}
}

func scrubMetric(m pmetric.Metric, l *lookalikes, tenant string, t *scrubTally) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		scrubPoints(m.Gauge().DataPoints(), l, tenant, t)
	case pmetric.MetricTypeSum:
		scrubPoints(m.Sum().DataPoints(), l, tenant, t)
	case pmetric.MetricTypeHistogram:
		scrubPoints(m.Histogram().DataPoints(), l, tenant, t)
	case pmetric.MetricTypeExponentialHistogram:
		scrubPoints(m.ExponentialHistogram().DataPoints(), l, tenant, t)
	case pmetric.MetricTypeSummary:
		scrubPoints(m.Summary().DataPoints(), l, tenant, t)
	}
}

// scrubPoints scrubs every data point of a metric and, with a timestamp
// window, places its timestamp: the one walk over the points.
func scrubPoints[E interface {
	Attributes() pcommon.Map
	Timestamp() pcommon.Timestamp
}, S interface {
	Len() int
	At(int) E
}](s S, l *lookalikes, tenant string, t *scrubTally) {
	window, w := t.metrics.windowOn, t.metrics.w
	for i := 0; i < s.Len(); i++ {
		dp := s.At(i)
		l.remove(dp.Attributes(), false, tenant, t)
		if window {
			if ts := dp.Timestamp(); ts < w.lo || ts > w.hi {
				t.metrics.points.refuse(ts, w)
			}
		}
	}
	if window {
		t.metrics.points.points += s.Len()
	}
}

// scrubEach scrubs every element of a pdata slice (records, spans, events,
// links).
func scrubEach[E interface{ Attributes() pcommon.Map }, S interface {
	Len() int
	At(int) E
}](s S, l *lookalikes, tenant string, t *scrubTally) {
	for i := 0; i < s.Len(); i++ {
		l.remove(s.At(i).Attributes(), false, tenant, t)
	}
}

func scrubLogs(rl plog.ResourceLogs, l *lookalikes, tenant string, t *scrubTally) {
	sls := rl.ScopeLogs()
	for i := 0; i < sls.Len(); i++ {
		sl := sls.At(i)
		l.remove(sl.Scope().Attributes(), false, tenant, t)
		scrubEach(sl.LogRecords(), l, tenant, t)
	}
}

func scrubTraces(rs ptrace.ResourceSpans, l *lookalikes, tenant string, t *scrubTally) {
	sss := rs.ScopeSpans()
	for i := 0; i < sss.Len(); i++ {
		ss := sss.At(i)
		l.remove(ss.Scope().Attributes(), false, tenant, t)
		spans := ss.Spans()
		for j := 0; j < spans.Len(); j++ {
			sp := spans.At(j)
			l.remove(sp.Attributes(), false, tenant, t)
			scrubEach(sp.Events(), l, tenant, t)
			scrubEach(sp.Links(), l, tenant, t)
		}
	}
}
